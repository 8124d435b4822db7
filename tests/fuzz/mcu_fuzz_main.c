/* The kernel fuzzers' replay as firmware (tests/python/test_fuzz_kernels_mcu.py):
 * the kernels as the target's compiler builds them (on the Cortex-M4 with
 * the DSP paths, SXTB16/SMLAD, that no host build reaches) against the
 * references, on MCUQ_FUZZ_INPUTS pseudo-random inputs of one family
 * (MCUQ_FUZZ_FAMILY). Prints
 *   fuzz_kernels FAMILY: N inputs, K kernel calls compared, 0 failed
 * and exits 0, or prints the first failure and exits 1.
 * Build with -DMCUQ_FUZZ_FAIL=mcuq_fuzz_fail. */
#include <stdint.h>

#include "platform.h"

#ifndef MCUQ_FUZZ_INPUTS
#define MCUQ_FUZZ_INPUTS 1000
#endif

long mcuq_fuzz_replay(long n);
const char *mcuq_fuzz_family(void);
void mcuq_fuzz_fail(const char *message);

void mcuq_fuzz_fail(const char *message) {
  platform_puts("fuzz_kernels: FAIL ");
  platform_puts(message);
  platform_puts("\n");
  platform_exit(1);
}

int main(void) {
  long calls;
  platform_init();
  platform_count_start();
  calls = mcuq_fuzz_replay(MCUQ_FUZZ_INPUTS);
  (void)platform_count();
  platform_puts("fuzz_kernels ");
  platform_puts(mcuq_fuzz_family());
  platform_puts(": ");
  platform_put_u32(MCUQ_FUZZ_INPUTS);
  platform_puts(" inputs, ");
  platform_put_u32((uint32_t)calls);
  platform_puts(" kernel calls compared, 0 failed\n");
  platform_exit(0);
  return 0;
}
