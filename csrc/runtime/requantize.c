/* mcuq runtime: requantize a tensor to new qparams (also how concatenation
 * writes each input into its slice of the output). */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
static mcuq_status check_requantize(const mcuq_requantize_params *p, const void *input, const void *output,
                                    int32_t type_min, int32_t type_max) {
  if (p == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->size <= 0) return MCUQ_ERROR_SHAPE;
  if (!mcuq_valid_rounding(p->rounding) || !mcuq_valid_shift(p->shift, p->rounding, 0)) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_in_range(p->in_zero_point, type_min, type_max) || !mcuq_in_range(p->out_zero_point, type_min, type_max))
    return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_valid_clamp(p->act_min, p->act_max, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  return MCUQ_OK;
}
#endif

static int32_t requantize_one(const mcuq_requantize_params *p, int32_t x) {
  return mcuq_requantize_s32(x - p->in_zero_point, p->multiplier, (int)p->shift, p->rounding, p->out_zero_point,
                             p->act_min, p->act_max);
}

mcuq_status mcuq_requantize_s8(const mcuq_requantize_params *params, const int8_t *input, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_requantize(params, input, output, INT8_MIN, INT8_MAX);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t i = 0; i < params->size; ++i) output[i] = (int8_t)requantize_one(params, input[i]);
  return MCUQ_OK;
}

mcuq_status mcuq_requantize_s16(const mcuq_requantize_params *params, const int16_t *input, int16_t *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_requantize(params, input, output, INT16_MIN, INT16_MAX);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t i = 0; i < params->size; ++i) output[i] = (int16_t)requantize_one(params, input[i]);
  return MCUQ_OK;
}
