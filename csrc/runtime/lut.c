/* mcuq runtime: elementwise activation through a table (the exporter
 * tabulates sigmoid, tanh, ... for the layer's qparams): every level for
 * int8, 513 interpolated samples for int16 (TFLite's scheme). */
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

mcuq_status mcuq_lut_s16(int32_t size, const int16_t *table, const int16_t *input, int16_t *output) {
#ifndef MCUQ_NO_CHECKS
  if (table == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (size <= 0) return MCUQ_ERROR_SHAPE;
#endif
  for (int32_t i = 0; i < size; ++i) {
    const int32_t x = input[i];
    const int32_t index = (x >> 7) + 256; /* in [0, 511]; arithmetic shift */
    const int32_t base = MCUQ_READ_S16(&table[index]);
    const int32_t slope = (int32_t)MCUQ_READ_S16(&table[index + 1]) - base; /* |slope| < 2^16 */
    /* Between base and next, so inside the int16 range. */
    output[i] = (int16_t)(base + ((slope * (x & 0x7F) + 64) >> 7));
  }
  return MCUQ_OK;
}
