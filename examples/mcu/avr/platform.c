/* AVR (ATmega328P) under simavr, with examples/mcu/avr/simavr_runner.c as
 * the host: console characters go to GPIOR0 (and the stack's high-water
 * mark is printed at exit), the exit code to GPIOR1
 * (then sleep with interrupts off, which stops the simulation), the host
 * stream's bytes come from reads of GPIOR2 and go out as writes to it (the
 * runner's input and output files), and Timer1
 * at the CPU clock counts cycles exactly (an overflow interrupt extends it
 * past 16 bits; its few cycles per 65536 are part of the count, as they
 * would be on the chip). */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <stdint.h>

#include "platform.h"

const char platform_count_unit[] = "cycles";

/* Stack high-water mark: the free RAM between the end of .bss and the stack
 * is painted at start; at exit the lowest byte that changed tells how deep
 * the stack went (reported as "stack: N bytes"). */
#define STACK_PAINT 0xA5u
extern uint8_t __heap_start;

static void paint_stack(void) {
  uint8_t *p = &__heap_start;
  uint8_t *const sp = (uint8_t *)SP;
  while (p < sp - 16) *p++ = STACK_PAINT; /* leave this function's own frame alone */
}

static void put_stack_depth(void) {
  const uint8_t *p = &__heap_start;
  char text[6];
  uint16_t depth;
  int i = 5;
  if (*p != STACK_PAINT) { /* the stack reached the end of .bss: it may have overwritten it */
    platform_puts_text(TEXT("stack: overflow\n"));
    return;
  }
  while (p <= (const uint8_t *)RAMEND && *p == STACK_PAINT) ++p;
  depth = (uint16_t)((const uint8_t *)RAMEND + 1 - p);
  text[i] = '\0';
  do {
    text[--i] = (char)('0' + depth % 10u);
    depth /= 10u;
  } while (depth != 0u && i > 0);
  platform_puts_text(TEXT("stack: "));
  platform_puts(&text[i]);
  platform_puts_text(TEXT(" bytes\n"));
}

static volatile uint16_t overflows;

ISR(TIMER1_OVF_vect) { ++overflows; }

void platform_init(void) {
  paint_stack();
  TCCR1A = 0;
  TCCR1B = 0;
  TIMSK1 = (uint8_t)(1u << TOIE1);
  sei();
}

void platform_puts(const char *text) {
  while (*text) GPIOR0 = (uint8_t)*text++;
}

void platform_puts_text(const char *flash_text) {
  char c;
  while ((c = (char)pgm_read_byte(flash_text++)) != '\0') GPIOR0 = (uint8_t)c;
}

/* The runner always offers a stream: without an input file its bytes read
 * as 0 (an empty stream of 0 inputs). */
int platform_stream_open(void) { return 0; }

uint32_t platform_read(void *dst, uint32_t bytes) {
  uint8_t *p = (uint8_t *)dst;
  uint32_t i;
  for (i = 0; i < bytes; ++i) p[i] = GPIOR2;
  return bytes;
}

void platform_write(const void *src, uint32_t bytes) {
  const uint8_t *p = (const uint8_t *)src;
  uint32_t i;
  for (i = 0; i < bytes; ++i) GPIOR2 = p[i];
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
  put_stack_depth();
  GPIOR1 = (uint8_t)code;
  cli();
  sleep_enable();
  sleep_cpu();
  for (;;) {
  }
}
