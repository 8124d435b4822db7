/* The platform of the QEMU targets (Cortex-M, RISC-V): console, host files
 * and exit through semihosting (SYS_EXIT_EXTENDED returns the exit code to
 * the host), instructions counted by the host: the TCG plugin
 * (cortex_m/icount_plugin.c) counts every executed instruction between the
 * two marker functions below and prints the counts for examples/mcu/mcu.py.
 * The trap into the debugger is per architecture: mcuq_semihost() in
 * cortex_m/semihost.c or riscv/semihost.c. */
#include <stdint.h>

#include "platform.h"

int mcuq_semihost(int op, const void *arg);

enum { SYS_OPEN = 0x01, SYS_CLOSE = 0x02, SYS_WRITE0 = 0x04, SYS_WRITE = 0x05, SYS_READ = 0x06, SYS_EXIT_EXTENDED = 0x20 };
enum { MODE_READ_BINARY = 1, MODE_WRITE_BINARY = 5 }; /* "rb", "wb" */

const char platform_count_unit[] = ""; /* counted by the host */

/* Stack peak: the RAM between the end of .bss and the stack pointer is
 * painted at start; at exit the lowest word that changed tells how deep the
 * stack went. Both linker scripts define the symbols. */
#define STACK_PAINT 0xA5A5A5A5u
extern uint32_t __bss_end, __stack_top;

__attribute__((noinline)) void platform_init(void) {
  volatile uint32_t here = 0; /* this frame's address: paint below it */
  uint32_t *p = &__bss_end;
  uint32_t *const limit = (uint32_t *)((uintptr_t)&here & ~(uintptr_t)3) - 16;
  while (p < limit) *p++ = STACK_PAINT;
  (void)here;
}

static void put_stack_peak(void) {
  const uint32_t *p = &__bss_end;
  if (*p != STACK_PAINT) { /* the stack reached the static data: it may have overwritten it */
    platform_puts("stack: overflow\n");
    return;
  }
  while (p < &__stack_top && *p == STACK_PAINT) ++p;
  platform_puts("stack: ");
  platform_put_u32((uint32_t)((uintptr_t)&__stack_top - (uintptr_t)p));
  platform_puts(" bytes\n");
}

void platform_puts(const char *text) { mcuq_semihost(SYS_WRITE0, text); }

static int input_file = -1, output_file = -1;

static int open_file(const char *name, uint32_t length, int mode) {
  const uint32_t block[3] = {(uint32_t)(uintptr_t)name, (uint32_t)mode, length};
  return mcuq_semihost(SYS_OPEN, block);
}

int platform_stream_open(void) {
  static const char inputs[] = "mcuq_inputs.bin", outputs[] = "mcuq_outputs.bin";
  input_file = open_file(inputs, sizeof inputs - 1, MODE_READ_BINARY);
  if (input_file < 0) return -1;
  output_file = open_file(outputs, sizeof outputs - 1, MODE_WRITE_BINARY);
  return output_file < 0 ? -1 : 0;
}

uint32_t platform_read(void *dst, uint32_t bytes) {
  const uint32_t block[3] = {(uint32_t)input_file, (uint32_t)(uintptr_t)dst, bytes};
  return bytes - (uint32_t)mcuq_semihost(SYS_READ, block); /* it returns the bytes not read */
}

void platform_write(const void *src, uint32_t bytes) {
  const uint32_t block[3] = {(uint32_t)output_file, (uint32_t)(uintptr_t)src, bytes};
  mcuq_semihost(SYS_WRITE, block);
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
  if (output_file >= 0) {
    const uint32_t handle = (uint32_t)output_file;
    mcuq_semihost(SYS_CLOSE, &handle); /* flushed before the host reads it */
  }
  put_stack_peak();
  mcuq_semihost(SYS_EXIT_EXTENDED, block);
  for (;;) {
  }
}
