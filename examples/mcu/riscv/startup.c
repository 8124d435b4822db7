/* Minimal RV32 start-up for QEMU's virt machine (-bios none): everything
 * lives in RAM at 0x80000000, so there is no .data to copy; zero .bss, set
 * the stack, run main, exit through semihosting. No C library: the two
 * functions the compiler may call for struct copies are defined here. */
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

extern uint32_t __bss_start, __bss_end;
int main(void);

/* The empty asm keeps GCC from turning these loops into calls to
 * themselves (-ftree-loop-distribute-patterns). */
void *memcpy(void *dst, const void *src, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  while (n--) {
    *d++ = *s++;
    __asm__ volatile("" ::: "memory");
  }
  return dst;
}

void *memset(void *dst, int value, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  while (n--) {
    *d++ = (unsigned char)value;
    __asm__ volatile("" ::: "memory");
  }
  return dst;
}

/* Any exception (illegal instruction, access fault) ends the run with 254
 * instead of trapping forever. */
__attribute__((aligned(4))) void riscv_trap(void) {
  platform_puts("mcuq: trap\n");
  platform_exit(254);
}

void riscv_start(void) {
  uint32_t *p;
  for (p = &__bss_start; p < &__bss_end; ++p) *p = 0;
  platform_exit(main());
}

__asm__(
    ".pushsection .text.start, \"ax\"\n"
    ".global _start\n"
    "_start:\n"
    "  la sp, __stack_top\n"
    "  la t0, riscv_trap\n"
    "  .option push\n"
    "  .option arch, +zicsr\n" /* rv32imac without the CSR extension's name */
    "  csrw mtvec, t0\n"
    "  .option pop\n"
    "  j riscv_start\n"
    ".popsection\n");
