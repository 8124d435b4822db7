/* AVR (ATmega328P) under simavr, with examples/mcu/avr/simavr_runner.c as
 * the host: console characters go to GPIOR0, the exit code to GPIOR1
 * (then sleep with interrupts off, which stops the simulation), and Timer1
 * at the CPU clock counts cycles exactly (an overflow interrupt extends it
 * past 16 bits; its few cycles per 65536 are part of the count, as they
 * would be on the chip). */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <stdint.h>

#include "platform.h"

const char platform_count_unit[] = "cycles";

static volatile uint16_t overflows;

ISR(TIMER1_OVF_vect) { ++overflows; }

void platform_init(void) {
  TCCR1A = 0;
  TCCR1B = 0;
  TIMSK1 = (uint8_t)(1u << TOIE1);
  sei();
}

void platform_puts(const char *text) {
  while (*text) GPIOR0 = (uint8_t)*text++;
}

void platform_count_start(void) {
  TCCR1B = 0;
  TCNT1 = 0;
  overflows = 0;
  TIFR1 = (uint8_t)(1u << TOV1);
  TCCR1B = (uint8_t)(1u << CS10); /* clk/1 */
}

uint32_t platform_count(void) {
  uint16_t low;
  uint32_t high;
  cli(); /* a consistent (overflows, TCNT1) pair; the timer keeps running */
  low = TCNT1;
  high = overflows;
  if ((TIFR1 & (uint8_t)(1u << TOV1)) && low < 0x8000u) ++high; /* wrapped, not yet serviced */
  sei();
  return (high << 16) | low;
}

void platform_exit(int code) {
  GPIOR1 = (uint8_t)code;
  cli();
  sleep_enable();
  sleep_cpu();
  for (;;) {
  }
}
