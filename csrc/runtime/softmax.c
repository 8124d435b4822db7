/* mcuq runtime: softmax over the last dimension of int8 activations.
 *
 * Integer-only: with d = max(row) - x in [0, 255], e = exp_table[d], the
 * exporter's table of round(2^15 exp(-s_in d)) (so e(0) = 2^15 and the sum
 * of a row is at least 2^15); each probability is the rounded quotient
 * p = round(e 2^16 / sum), in [0, 2^16], requantized to the output's
 * qparams like any accumulator (multiplier * 2^(shift - 31) = 2^-16 / s_out).
 * The integer reference computes the same steps with LibTorch's ops. */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
static mcuq_status check_softmax(const mcuq_softmax_params *p, const int32_t *exp_table, const int8_t *input,
                                 const int8_t *output) {
  if (p == 0 || exp_table == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  /* depth * 2^15 must fit the int32 sum. */
  if (p->rows <= 0 || p->depth <= 0 || p->depth > 65535 || p->rows > INT32_MAX / p->depth) return MCUQ_ERROR_SHAPE;
  if (!mcuq_valid_rounding(p->rounding) || !mcuq_valid_shift(p->shift, p->rounding, 0)) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_in_range(p->out_zero_point, INT8_MIN, INT8_MAX)) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_valid_clamp(p->act_min, p->act_max, INT8_MIN, INT8_MAX)) return MCUQ_ERROR_ARGUMENT;
  return MCUQ_OK;
}
#endif

/* A table entry, held to [0, 2^15] so that no table can overflow the sum. */
static int32_t exp_of(const int32_t *exp_table, int32_t d) {
  const int32_t e = MCUQ_READ_S32(&exp_table[d]);
  return e < 0 ? 0 : e > 32768 ? 32768 : e;
}

mcuq_status mcuq_softmax_s8(const mcuq_softmax_params *params, const int32_t *exp_table, const int8_t *input,
                            int8_t *output) {
  const mcuq_softmax_params *p = params;
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_softmax(params, exp_table, input, output);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t r = 0; r < p->rows; ++r, input += p->depth, output += p->depth) {
    int32_t max = INT8_MIN, sum = 0;
    for (int32_t i = 0; i < p->depth; ++i) max = input[i] > max ? input[i] : max;
    for (int32_t i = 0; i < p->depth; ++i) sum += exp_of(exp_table, max - input[i]);
    if (sum <= 0) return MCUQ_ERROR_ARGUMENT; /* a table whose entry 0 is not positive */
    for (int32_t i = 0; i < p->depth; ++i) {
      const int64_t scaled = (int64_t)exp_of(exp_table, max - input[i]) << 16;
      const int32_t probability = (int32_t)((scaled + sum / 2) / sum);
      output[i] = (int8_t)mcuq_requantize_s32(probability, p->multiplier, (int)p->shift, p->rounding,
                                              p->out_zero_point, p->act_min, p->act_max);
    }
  }
  return MCUQ_OK;
}
