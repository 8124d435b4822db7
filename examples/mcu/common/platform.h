/* What the firmware harness needs from a board: a console, a counter of
 * executed instructions or cycles, and a way to stop with an exit code.
 * Implemented per target family: common/semihosting.c (QEMU: Cortex-M and
 * RISC-V) and avr/platform.c. */
#ifndef MCUQ_MCU_PLATFORM_H
#define MCUQ_MCU_PLATFORM_H

#include <stdint.h>

void platform_init(void);
void platform_puts(const char *text);

/* String literals: in flash on AVR (where const data otherwise takes RAM),
 * plain literals elsewhere. platform_puts_text(TEXT("...")). */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define TEXT(literal) PSTR(literal)
void platform_puts_text(const char *flash_text);
#else
#define TEXT(literal) (literal)
#define platform_puts_text platform_puts
#endif
/* Starts (or restarts) the counter; platform_count() reads it since then. */
void platform_count_start(void);
uint32_t platform_count(void);
/* What platform_count() counts ("cycles"), or "" where the host counts
 * (the QEMU plugin) and platform_count() returns 0. */
extern const char platform_count_unit[];
void platform_exit(int code);

/* A number in decimal on the console (no printf in the firmware). */
static inline void platform_put_u32(uint32_t v) {
  char text[11];
  int i = 10;
  text[i] = '\0';
  do {
    text[--i] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v != 0u);
  platform_puts(&text[i]);
}

#endif
