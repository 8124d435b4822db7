/* mcuq runtime: elementwise ops on two tensors with their own qparams, as
 * TFLite's ADD, SUB and MUL compute them. Add and subtract bring both inputs
 * to a common scale with left_shift bits of headroom, combine them, then
 * requantize to the output; multiply requantizes the product of the
 * zero-point-shifted inputs. */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
/* Zero points and the output clamp representable in the activation type. */
static int valid_levels(int32_t a_zero_point, int32_t b_zero_point, int32_t out_zero_point, int32_t act_min,
                        int32_t act_max, int32_t type_min, int32_t type_max) {
  return mcuq_in_range(a_zero_point, type_min, type_max) && mcuq_in_range(b_zero_point, type_min, type_max) &&
         mcuq_in_range(out_zero_point, type_min, type_max) && mcuq_valid_clamp(act_min, act_max, type_min, type_max);
}

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
  return valid_levels(p->a_zero_point, p->b_zero_point, p->out_zero_point, p->act_min, p->act_max, type_min, type_max)
             ? MCUQ_OK
             : MCUQ_ERROR_ARGUMENT;
}
#endif

/* One input on the common scale: (x - zero point) with left_shift bits of
 * headroom, times the input's multiplier. */
MCUQ_ALWAYS_INLINE int32_t scale_input(const mcuq_add_params *p, int32_t x, int32_t zero_point, int32_t multiplier,
                                       int32_t shift) {
  const int32_t shifted = mcuq_saturating_left_shift(x - zero_point, (int)p->left_shift);
  return mcuq_scale_s32(shifted, multiplier, (int)shift, p->rounding);
}

/* One output element from the two quantized inputs: a + b, or a - b when
 * `subtract` (the sum saturates to int32, as TFLite leaves it undefined).
 * Both helpers are inlined into each kernel, where `subtract` is a constant:
 * left to GCC, four call sites made the add kernel up to 3 % slower on the
 * M4 than the single-purpose add.c it replaced (bench_mcu's residual CNN). */
MCUQ_ALWAYS_INLINE int32_t add_one(const mcuq_add_params *p, int32_t a, int32_t b, int subtract) {
  const int32_t a_scaled = scale_input(p, a, p->a_zero_point, p->a_multiplier, p->a_shift);
  const int32_t b_scaled = scale_input(p, b, p->b_zero_point, p->b_multiplier, p->b_shift);
  const int32_t sum = mcuq_saturate_s64_to_s32(subtract ? (int64_t)a_scaled - b_scaled : (int64_t)a_scaled + b_scaled);
  return mcuq_requantize_s32(sum, p->out_multiplier, (int)p->out_shift, p->rounding, p->out_zero_point, p->act_min,
                             p->act_max);
}

/* add or sub for one activation type. */
#define MCUQ_ADD_KERNEL(NAME, T, TYPE_MIN, TYPE_MAX, SUBTRACT)                                                     \
  mcuq_status NAME(const mcuq_add_params *params, const T *a, const T *b, T *output) {                             \
    MCUQ_RETURN_IF_INVALID(check_add(params, a, b, output, TYPE_MIN, TYPE_MAX));                                  \
    for (int32_t i = 0; i < params->size; ++i) output[i] = (T)add_one(params, a[i], b[i], SUBTRACT);              \
    return MCUQ_OK;                                                                                                \
  }

MCUQ_ADD_KERNEL(mcuq_add_s8, int8_t, INT8_MIN, INT8_MAX, 0)
MCUQ_ADD_KERNEL(mcuq_add_s16, int16_t, INT16_MIN, INT16_MAX, 0)
MCUQ_ADD_KERNEL(mcuq_sub_s8, int8_t, INT8_MIN, INT8_MAX, 1)
MCUQ_ADD_KERNEL(mcuq_sub_s16, int16_t, INT16_MIN, INT16_MAX, 1)

/* ---- multiply ---------------------------------------------------------------- */

#ifndef MCUQ_NO_CHECKS
static mcuq_status check_mul(const mcuq_mul_params *p, const void *a, const void *b, const void *output,
                             int32_t type_min, int32_t type_max, int wide) {
  if (p == 0 || a == 0 || b == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->outer <= 0 || p->inner <= 0 || p->outer > INT32_MAX / p->inner) return MCUQ_ERROR_SHAPE;
  if ((p->b_inner_stride != 0 && p->b_inner_stride != 1) ||
      (p->b_outer_stride != 0 && p->b_outer_stride != 1 && p->b_outer_stride != p->inner))
    return MCUQ_ERROR_SHAPE;
  if (!mcuq_valid_rounding(p->rounding) || !mcuq_valid_shift(p->shift, p->rounding, wide)) return MCUQ_ERROR_ARGUMENT;
  return valid_levels(p->a_zero_point, p->b_zero_point, p->out_zero_point, p->act_min, p->act_max, type_min, type_max)
             ? MCUQ_OK
             : MCUQ_ERROR_ARGUMENT;
}
#endif

/* The int8 product (a - z_a)(b - z_b) is at most 255^2 and fits int32
 * (mcuq_requantize_s32), the int16 one (up to 65535^2) takes int64 and the
 * 16x8 layers' int64 rule (mcuq_requantize_s64). */
#define MCUQ_MUL_KERNEL(NAME, T, PRODUCT, REQUANTIZE, TYPE_MIN, TYPE_MAX, WIDE)                                   \
  mcuq_status NAME(const mcuq_mul_params *p, const T *a, const T *b, T *output) {                                 \
    MCUQ_RETURN_IF_INVALID(check_mul(p, a, b, output, TYPE_MIN, TYPE_MAX, WIDE));                                 \
    for (int32_t o = 0; o < p->outer; ++o) {                                                                      \
      const T *b_at = b + o * p->b_outer_stride;                                                                  \
      for (int32_t i = 0; i < p->inner; ++i, ++a, ++output, b_at += p->b_inner_stride) {                          \
        const PRODUCT product = (PRODUCT)(*a - p->a_zero_point) * (PRODUCT)(*b_at - p->b_zero_point);             \
        *output = (T)REQUANTIZE(product, p->multiplier, (int)p->shift, p->rounding, p->out_zero_point, p->act_min, \
                                p->act_max);                                                                      \
      }                                                                                                           \
    }                                                                                                             \
    return MCUQ_OK;                                                                                               \
  }

MCUQ_MUL_KERNEL(mcuq_mul_s8, int8_t, int32_t, mcuq_requantize_s32, INT8_MIN, INT8_MAX, 0)
MCUQ_MUL_KERNEL(mcuq_mul_s16, int16_t, int64_t, mcuq_requantize_s64, INT16_MIN, INT16_MAX, 1)
