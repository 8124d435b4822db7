/* mcuq runtime: fully connected layer, y[o] = requant(bias[o] + w[o] . x),
 * for 8-bit activations (int32 accumulators) and 16-bit activations (int64
 * accumulators). Weights are PyTorch's [out][in], int8; the int8 layer runs
 * two rows at a time through dot_s8.h. */
#include <stdint.h>

#include "dot_s8.h"
#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
static mcuq_status check_fully_connected(int32_t in_features, int32_t out_features, const void *input,
                                         const int8_t *weights, const void *bias, const mcuq_requant *requant,
                                         const void *output, int32_t type_min, int32_t type_max, int wide) {
  if (input == 0 || weights == 0 || bias == 0 || requant == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (in_features <= 0 || out_features <= 0) return MCUQ_ERROR_SHAPE;
  return mcuq_check_requant(requant, out_features, type_min, type_max, wide);
}
#endif

mcuq_status mcuq_fully_connected_s8(int32_t in_features, int32_t out_features, const int8_t *input,
                                    const int8_t *weights, const int32_t *bias, const mcuq_requant *requant,
                                    int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status =
      check_fully_connected(in_features, out_features, input, weights, bias, requant, output, INT8_MIN, INT8_MAX, 0);
  if (status != MCUQ_OK) return status;
#endif
  const mcuq_requant requant_copy = *requant; /* not reloaded after each int8_t store */
  int32_t o = 0;
  requant = &requant_copy;
  for (; o + 1 < out_features; o += 2) { /* two rows per pass: each input load feeds both */
    const int8_t *row = weights + o * in_features;
    int32_t acc[2];
    acc[0] = MCUQ_READ_S32(&bias[o]);
    acc[1] = MCUQ_READ_S32(&bias[o + 1]);
    mcuq_dot_2x1_s8(row, row + in_features, input, in_features, acc);
    for (int r = 0; r < 2; ++r) {
      output[o + r] = (int8_t)mcuq_requantize_fast_s32(acc[r], mcuq_requant_multiplier(requant, o + r),
                                                       mcuq_requant_shift(requant, o + r), requant);
    }
  }
  if (o < out_features) {
    const int32_t acc = mcuq_dot_1x1_s8(weights + o * in_features, input, in_features, MCUQ_READ_S32(&bias[o]));
    output[o] = (int8_t)mcuq_requantize_s32(acc, mcuq_requant_multiplier(requant, o), mcuq_requant_shift(requant, o),
                                            requant->rounding, requant->zero_point, requant->act_min, requant->act_max);
  }
  return MCUQ_OK;
}

/* W4A8: the same with weights packed two per byte; row o starts at weight
 * index o * in_features. */
mcuq_status mcuq_fully_connected_s8_w4(int32_t in_features, int32_t out_features, const int8_t *input,
                                       const int8_t *weights, const int32_t *bias, const mcuq_requant *requant,
                                       int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status =
      check_fully_connected(in_features, out_features, input, weights, bias, requant, output, INT8_MIN, INT8_MAX, 0);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t o = 0; o < out_features; ++o) {
    const int32_t row = o * in_features;
    int32_t acc = MCUQ_READ_S32(&bias[o]);
    for (int32_t i = 0; i < in_features; ++i) acc += MCUQ_READ_S4(weights, row + i) * input[i];
    output[o] = (int8_t)mcuq_requantize_s32(acc, mcuq_requant_multiplier(requant, o), mcuq_requant_shift(requant, o),
                                            requant->rounding, requant->zero_point, requant->act_min, requant->act_max);
  }
  return MCUQ_OK;
}

mcuq_status mcuq_fully_connected_s16(int32_t in_features, int32_t out_features, const int16_t *input,
                                     const int8_t *weights, const int64_t *bias, const mcuq_requant *requant,
                                     int16_t *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status =
      check_fully_connected(in_features, out_features, input, weights, bias, requant, output, INT16_MIN, INT16_MAX, 1);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t o = 0; o < out_features; ++o) {
    const int8_t *row = weights + o * in_features;
    int64_t acc = MCUQ_READ_S64(&bias[o]);
    /* Each product fits int32 (|w x| < 2^22); the sum needs int64. */
    for (int32_t i = 0; i < in_features; ++i) acc += (int32_t)MCUQ_READ_S8(&row[i]) * input[i];
    output[o] =
        (int16_t)mcuq_requantize_s64(acc, mcuq_requant_multiplier(requant, o), mcuq_requant_shift(requant, o),
                                     requant->rounding, requant->zero_point, requant->act_min, requant->act_max);
  }
  return MCUQ_OK;
}
