/* What the firmware harnesses need from a board: a console, a counter of
 * executed instructions or cycles, a binary stream to and from the host
 * (common/stream_main.c), the stack's measured peak, and a way to stop with
 * an exit code. Implemented per target family: common/semihosting.c (QEMU:
 * Cortex-M and RISC-V) and avr/platform.c. */
#ifndef MCUQ_MCU_PLATFORM_H
#define MCUQ_MCU_PLATFORM_H

#include <stdint.h>

/* Paints the free RAM below the stack (the peak is reported at exit). */
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

/* The host stream: platform_stream_open() returns 0 when the host offers
 * one; platform_read() fills `bytes` bytes (returns how many it got: fewer
 * only at the stream's end) and platform_write() appends to the host's
 * output. QEMU: semihosting files mcuq_inputs.bin / mcuq_outputs.bin in the
 * emulator's working folder; AVR: the simavr runner's input and output
 * files, a byte at a time through GPIOR2. */
int platform_stream_open(void);
uint32_t platform_read(void *dst, uint32_t bytes);
void platform_write(const void *src, uint32_t bytes);

/* Prints "stack: N bytes" (the painted stack's peak, or "stack: overflow"
 * when it reached the static data), then stops with `code`. */
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
