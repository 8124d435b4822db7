/* mcuq runtime: elementwise add of two tensors with their own qparams
 * (TFLite's scheme): both inputs are brought to a common scale with
 * left_shift bits of headroom, summed, then requantized to the output. */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
static mcuq_status check_add(const mcuq_add_params *p, const void *a, const void *b, const void *output,
                             int32_t type_min, int32_t type_max) {
  if (p == 0 || a == 0 || b == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->size <= 0) return MCUQ_ERROR_SHAPE;
  /* Headroom beyond 31 bits means nothing for int32 values (and keeps the
   * saturating shift's int64 product in range). */
  if (p->left_shift < 0 || p->left_shift > 31) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_valid_rounding(p->rounding)) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_valid_shift(p->a_shift, p->rounding, 0) || !mcuq_valid_shift(p->b_shift, p->rounding, 0) ||
      !mcuq_valid_shift(p->out_shift, p->rounding, 0))
    return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_in_range(p->a_zero_point, type_min, type_max) || !mcuq_in_range(p->b_zero_point, type_min, type_max) ||
      !mcuq_in_range(p->out_zero_point, type_min, type_max))
    return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_valid_clamp(p->act_min, p->act_max, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  return MCUQ_OK;
}
#endif

/* One input on the common scale: (x - zero point) with left_shift bits of
 * headroom, times the input's multiplier. */
static int32_t scale_input(const mcuq_add_params *p, int32_t x, int32_t zero_point, int32_t multiplier, int32_t shift) {
  const int32_t shifted = mcuq_saturating_left_shift(x - zero_point, (int)p->left_shift);
  return mcuq_scale_s32(shifted, multiplier, (int)shift, p->rounding);
}

/* One output element from the two quantized inputs. */
static int32_t add_one(const mcuq_add_params *p, int32_t a, int32_t b) {
  const int32_t a_scaled = scale_input(p, a, p->a_zero_point, p->a_multiplier, p->a_shift);
  const int32_t b_scaled = scale_input(p, b, p->b_zero_point, p->b_multiplier, p->b_shift);
  const int32_t sum = mcuq_saturate_s64_to_s32((int64_t)a_scaled + b_scaled);
  return mcuq_requantize_s32(sum, p->out_multiplier, (int)p->out_shift, p->rounding, p->out_zero_point, p->act_min,
                             p->act_max);
}

mcuq_status mcuq_add_s8(const mcuq_add_params *params, const int8_t *a, const int8_t *b, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_add(params, a, b, output, INT8_MIN, INT8_MAX);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t i = 0; i < params->size; ++i) output[i] = (int8_t)add_one(params, a[i], b[i]);
  return MCUQ_OK;
}

mcuq_status mcuq_add_s16(const mcuq_add_params *params, const int16_t *a, const int16_t *b, int16_t *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_add(params, a, b, output, INT16_MIN, INT16_MAX);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t i = 0; i < params->size; ++i) output[i] = (int16_t)add_one(params, a[i], b[i]);
  return MCUQ_OK;
}
