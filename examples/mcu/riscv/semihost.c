/* RISC-V semihosting trap: the slli/ebreak/srai sequence (uncompressed, not
 * crossing a page), operation in a0, argument in a1. */
int mcuq_semihost(int op, const void *arg);

int mcuq_semihost(int op, const void *arg) {
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
