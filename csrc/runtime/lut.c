/* mcuq runtime: elementwise activation through a table (the exporter
 * tabulates sigmoid, tanh, ... for the layer's qparams): every level for
 * int8, 513 interpolated samples over a window of the int16 range. */
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

mcuq_status mcuq_lut_s16(const mcuq_lut_s16_params *params, const int16_t *table, const int16_t *input,
                         int16_t *output) {
#ifndef MCUQ_NO_CHECKS
  if (params == 0 || table == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (params->size <= 0) return MCUQ_ERROR_SHAPE;
  if (params->step_shift < 0 || params->step_shift > 7 || params->start < INT16_MIN || params->start > INT16_MAX)
    return MCUQ_ERROR_ARGUMENT;
#endif
  const int32_t shift = params->step_shift, start = params->start;
  const int32_t last = (int32_t)512 << shift; /* offset of the last sample (int is 16 bits on AVR) */
  const int32_t mask = (1 << shift) - 1, half = (1 << shift) >> 1;
  for (int32_t i = 0; i < params->size; ++i) {
    /* Outside the window the function is flat: the end samples. */
    int32_t offset = (int32_t)input[i] - start;
    offset = offset < 0 ? 0 : offset > last ? last : offset;
    const int32_t index = offset >> shift;
    const int32_t base = MCUQ_READ_S16(&table[index]);
    if (index == 512) {
      output[i] = (int16_t)base;
      continue;
    }
    const int32_t slope = (int32_t)MCUQ_READ_S16(&table[index + 1]) - base; /* |slope| < 2^16 */
    /* Between base and next, so inside the int16 range. */
    output[i] = (int16_t)(base + ((slope * (offset & mask) + half) >> shift));
  }
  return MCUQ_OK;
}
