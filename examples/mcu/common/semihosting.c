/* The platform of the QEMU targets (Cortex-M, RISC-V): console and exit
 * through semihosting (SYS_WRITE0; SYS_EXIT_EXTENDED returns the exit code
 * to the host), instructions counted by the host: the TCG plugin
 * (cortex_m/icount_plugin.c) counts every executed instruction between the
 * two marker functions below and prints the counts for examples/mcu/mcu.py.
 * The trap into the debugger is per architecture: mcuq_semihost() in
 * cortex_m/semihost.c or riscv/semihost.c. */
#include <stdint.h>

#include "platform.h"

int mcuq_semihost(int op, const void *arg);

const char platform_count_unit[] = ""; /* counted by the host */

void platform_init(void) {}

void platform_puts(const char *text) {
  mcuq_semihost(0x04, text); /* SYS_WRITE0 */
}

/* The plugin's markers: out of line, never merged (different bodies, no
 * interprocedural optimization), so that each has its own address. */
__attribute__((noinline, noipa, used)) void mcuq_count_start(void) { __asm__ volatile(""); }
__attribute__((noinline, noipa, used)) void mcuq_count_stop(void) { __asm__ volatile("nop"); }

void platform_count_start(void) { mcuq_count_start(); }

uint32_t platform_count(void) {
  mcuq_count_stop();
  return 0;
}

void platform_exit(int code) {
  const uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
  mcuq_semihost(0x20, block); /* SYS_EXIT_EXTENDED */
  for (;;) {
  }
}
