/* Firmware harness: runs an exported model (NAME.c, built with the mcuq
 * runtime) on the test vectors compiled in (vectors.h: inputs and the host
 * integer reference's outputs, in flash on AVR), compares every output
 * level, prints one line per input and a summary, and exits with the number
 * of mismatching inputs (0: bit-exact).
 *
 * Build with -DMCUQ_MODEL=name -DMCUQ_MODEL_UPPER=NAME
 * '-DMCUQ_MODEL_HEADER="name.h"' and -DMCUQ_NO_FLOAT. */
#include <stdint.h>

#include "platform.h"
#include "vectors.h"
#include "model_symbols.h"

static ACTIVATION_T input[INPUT_SIZE];
static ACTIVATION_T output[OUTPUT_SIZE];
static ACTIVATION_T arena[ARENA_SIZE / sizeof(ACTIVATION_T)];

static ACTIVATION_T read_level(const ACTIVATION_T *p) {
  return sizeof(ACTIVATION_T) == 1 ? (ACTIVATION_T)MCUQ_READ_S8((const int8_t *)p)
                                   : (ACTIVATION_T)MCUQ_READ_S16((const int16_t *)p);
}

int main(void) {
  uint32_t n, i, mismatches = 0, count, total = 0, best = 0xFFFFFFFFu;
  platform_init();
  platform_puts_text(TEXT("mcuq: " MCUQ_MODEL_HEADER " on the target, "));
  platform_put_u32(MCUQ_VECTORS);
  platform_puts_text(TEXT(" inputs\n"));
  for (n = 0; n < MCUQ_VECTORS; ++n) {
    int wrong = 0;
    int best_class = 0;
    mcuq_status status;
    for (i = 0; i < INPUT_SIZE; ++i) input[i] = read_level(&mcuq_test_inputs[n][i]);
    platform_count_start();
    status = INVOKE(input, output, arena);
    count = platform_count();
    total += count;
    if (count < best) best = count;
    for (i = 0; i < OUTPUT_SIZE; ++i) {
      if (output[i] != read_level(&mcuq_test_outputs[n][i])) wrong = 1;
      if (output[i] > output[best_class]) best_class = (int)i;
    }
    if (status != MCUQ_OK || wrong) ++mismatches;
    platform_puts_text(TEXT("input "));
    platform_put_u32(n);
    platform_puts_text(status != MCUQ_OK ? TEXT(": status error") : wrong ? TEXT(": MISMATCH") : TEXT(": ok"));
    platform_puts_text(TEXT(", class "));
    platform_put_u32((uint32_t)best_class);
    if (platform_count_unit[0] != '\0') { /* else the host counts (QEMU plugin) */
      platform_puts_text(TEXT(", "));
      platform_put_u32(count);
      platform_puts_text(TEXT(" "));
      platform_puts(platform_count_unit);
    }
    platform_puts_text(TEXT("\n"));
  }
  platform_puts_text(TEXT("summary: "));
  platform_put_u32(MCUQ_VECTORS - mismatches);
  platform_puts_text(TEXT(" of "));
  platform_put_u32(MCUQ_VECTORS);
  platform_puts_text(TEXT(" bit-exact"));
  if (platform_count_unit[0] != '\0') {
    platform_puts_text(TEXT("; "));
    platform_put_u32(best);
    platform_puts_text(TEXT(" "));
    platform_puts(platform_count_unit);
    platform_puts_text(TEXT(" per inference (min), "));
    platform_put_u32(MCUQ_VECTORS ? total / MCUQ_VECTORS : 0);
    platform_puts_text(TEXT(" (mean)"));
  }
  platform_puts_text(TEXT("\n"));
  platform_exit(mismatches > 255u ? 255 : (int)mismatches);
  return 0;
}
