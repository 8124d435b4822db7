/* Streaming harness: runs an exported model (NAME.c, built with the mcuq
 * runtime) on inputs the host streams in, and streams every output back, so
 * a whole test set runs through one emulator process (examples/mcu/mcu.py's
 * evaluate_on_target compares them with the host integer reference).
 *
 * Input stream: uint32 N, then N inputs of NAME_INPUT_SIZE levels.
 * Output stream, per input: uint32 count (cycles where the firmware counts;
 * 0 where the QEMU plugin does), int32 status, NAME_OUTPUT_SIZE levels.
 * All little-endian, levels in the model's activation type. Exits with 0
 * when every invocation returned MCUQ_OK.
 *
 * Build with -DMCUQ_MODEL=name -DMCUQ_MODEL_UPPER=NAME
 * '-DMCUQ_MODEL_HEADER="name.h"' and -DMCUQ_NO_FLOAT. */
#include <stdint.h>

#include "platform.h"
#include "model_symbols.h"

static ACTIVATION_T input[INPUT_SIZE];
static ACTIVATION_T output[OUTPUT_SIZE];
static ACTIVATION_T arena[ARENA_SIZE / sizeof(ACTIVATION_T)];

int main(void) {
  uint32_t n, count, inputs = 0, failed = 0;
  int32_t status;
  platform_init();
  if (platform_stream_open() != 0 || platform_read(&inputs, sizeof inputs) != sizeof inputs) {
    platform_puts_text(TEXT("mcuq: no input stream from the host\n"));
    platform_exit(2);
  }
  platform_puts_text(TEXT("mcuq: " MCUQ_MODEL_HEADER " on the target, streaming "));
  platform_put_u32(inputs);
  platform_puts_text(TEXT(" inputs\n"));
  for (n = 0; n < inputs; ++n) {
    if (platform_read(input, sizeof input) != sizeof input) {
      platform_puts_text(TEXT("mcuq: the input stream ended early\n"));
      platform_exit(3);
    }
    platform_count_start();
    status = (int32_t)INVOKE(input, output, arena);
    count = platform_count();
    if (status != MCUQ_OK) ++failed;
    platform_write(&count, sizeof count);
    platform_write(&status, sizeof status);
    platform_write(output, sizeof output);
  }
  platform_puts_text(TEXT("summary: "));
  platform_put_u32(inputs);
  platform_puts_text(TEXT(" inputs, "));
  platform_put_u32(failed);
  platform_puts_text(TEXT(" failed\n"));
  platform_exit(failed != 0u ? 1 : 0);
  return 0;
}
