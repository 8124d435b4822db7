/* RV32 under QEMU (virt): console and exit through RISC-V semihosting (the
 * slli/ebreak/srai sequence, uncompressed and aligned); instructions are
 * counted by the host with the same TCG plugin as Cortex-M (markers below). */
#include <stdint.h>

#include "platform.h"

const char platform_count_unit[] = ""; /* counted by the host */

static int semihost(int op, const void *arg) {
  register int a0 __asm__("a0") = op;
  register const void *a1 __asm__("a1") = arg;
  __asm__ volatile(
      ".option push\n"
      ".option norvc\n"
      ".balign 16\n"
      "slli x0, x0, 0x1f\n"
      "ebreak\n"
      "srai x0, x0, 7\n"
      ".option pop\n"
      : "+r"(a0)
      : "r"(a1)
      : "memory");
  return a0;
}

void platform_init(void) {}

void platform_puts(const char *text) {
  semihost(0x04, text); /* SYS_WRITE0 */
}

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
