/* Arm semihosting trap (M profile): bkpt 0xAB with the operation in r0 and
 * its argument in r1. */
int mcuq_semihost(int op, const void *arg);

int mcuq_semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}
