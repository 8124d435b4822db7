/* Host harness for a model exported by mcuq: runs NAME_invoke on N inputs.
 *
 *   cc -std=c99 -DMCUQ_MODEL=net -DMCUQ_MODEL_UPPER=NET '-DMCUQ_MODEL_HEADER="net.h"'
 *      -I OUT -I RUNTIME OUT/net.c RUNTIME/(every .c file) run_model.c -o run_net
 *   ./run_net inputs.bin outputs.bin N
 *
 * inputs.bin holds N * NAME_INPUT_SIZE levels of the model's activation type
 * (int8 or int16, host byte order); outputs.bin receives N *
 * NAME_OUTPUT_SIZE. Buffers are allocated at their exact sizes so that
 * AddressSanitizer catches any access outside them. Exit status: 0 on
 * success, 1 on bad usage or I/O, 2 if NAME_invoke returned an error. */
#include <stdio.h>
#include <stdlib.h>

#include "model_symbols.h"

/* The header's float macros must be valid C (host-side use only). */
static const double qparams[2] = {MCUQ_CAT(MCUQ_MODEL_UPPER, _INPUT_SCALE), MCUQ_CAT(MCUQ_MODEL_UPPER, _OUTPUT_SCALE)};

int main(int argc, char **argv) {
  FILE *in, *out;
  long n, i;
  ACTIVATION_T *input, *output;
  void *arena;
  int status = 0;
  if (argc != 4 || (n = strtol(argv[3], NULL, 10)) < 0 || !(qparams[0] > 0.0 && qparams[1] > 0.0)) {
    fprintf(stderr, "usage: %s inputs.bin outputs.bin N\n", argv[0]);
    return 1;
  }
  input = (ACTIVATION_T *)malloc(sizeof(ACTIVATION_T) * INPUT_SIZE);
  output = (ACTIVATION_T *)malloc(sizeof(ACTIVATION_T) * OUTPUT_SIZE);
  arena = malloc(ARENA_SIZE);
  in = fopen(argv[1], "rb");
  out = fopen(argv[2], "wb");
  if (input == NULL || output == NULL || arena == NULL || in == NULL || out == NULL) {
    fprintf(stderr, "%s: cannot open files or allocate buffers\n", argv[0]);
    return 1;
  }
  for (i = 0; i < n && status == 0; ++i) {
    mcuq_status s;
    if (fread(input, sizeof(ACTIVATION_T), INPUT_SIZE, in) != INPUT_SIZE) {
      fprintf(stderr, "%s: %s holds fewer than %ld inputs\n", argv[0], argv[1], n);
      status = 1;
      break;
    }
    s = INVOKE(input, output, arena);
    if (s != MCUQ_OK) {
      fprintf(stderr, "%s: input %ld: invoke returned status %d\n", argv[0], i, (int)s);
      status = 2;
      break;
    }
    if (fwrite(output, sizeof(ACTIVATION_T), OUTPUT_SIZE, out) != OUTPUT_SIZE) status = 1;
  }
  fclose(in);
  if (fclose(out) != 0) status = 1;
  free(input);
  free(output);
  free(arena);
  return status;
}
