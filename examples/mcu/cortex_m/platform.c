/* Cortex-M under QEMU: console and exit through semihosting (bkpt 0xAB;
 * SYS_EXIT_EXTENDED returns the exit code to the host). Instructions are
 * counted by the host: the TCG plugin icount_plugin.c counts every executed
 * instruction between the marker functions below and prints the counts,
 * which examples/mcu/mcu.py reads. */
#include <stdint.h>

#include "platform.h"

const char platform_count_unit[] = ""; /* counted by the host */

static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void platform_init(void) {}

void platform_puts(const char *text) {
  semihost(0x04, text); /* SYS_WRITE0 */
}

/* The plugin's markers: kept out of line so each has one address. */
__attribute__((noinline, used)) void mcuq_count_start(void) { __asm__ volatile(""); }
__attribute__((noinline, used)) void mcuq_count_stop(void) { __asm__ volatile(""); }

void platform_count_start(void) { mcuq_count_start(); }

uint32_t platform_count(void) {
  mcuq_count_stop();
  return 0;
}

void platform_exit(int code) {
  const uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
  semihost(0x20, block); /* SYS_EXIT_EXTENDED */
  for (;;) {
  }
}
