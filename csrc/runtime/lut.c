/* mcuq runtime: elementwise activation through a 256-entry table (the
 * exporter tabulates sigmoid, tanh, ... for the layer's qparams). */
#include <stdint.h>

#include "mcuq_runtime.h"

mcuq_status mcuq_lut_s8(int32_t size, const int8_t *table, const int8_t *input, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  if (table == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (size <= 0) return MCUQ_ERROR_SHAPE;
#endif
  /* input + 128 is in [0, 255]: every int8 has its entry. */
  for (int32_t i = 0; i < size; ++i) output[i] = MCUQ_READ_S8(&table[input[i] + 128]);
  return MCUQ_OK;
}
