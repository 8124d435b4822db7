/* Minimal RV32 start-up for QEMU's virt machine (-bios none): everything
 * lives in RAM at 0x80000000, so there is no .data to copy; zero .bss, set
 * the stack, run main, exit through semihosting. No C library: the two
 * functions the compiler may call for struct copies are defined here. */
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

extern uint32_t __bss_start, __bss_end;
int main(void);

void *memcpy(void *dst, const void *src, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int value, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  while (n--) *d++ = (unsigned char)value;
  return dst;
}

void riscv_start(void) {
  uint32_t *p;
  for (p = &__bss_start; p < &__bss_end; ++p) *p = 0;
  platform_exit(main());
}

__asm__(
    ".section .text.start\n"
    ".global _start\n"
    "_start:\n"
    "  la sp, __stack_top\n"
    "  j riscv_start\n");
