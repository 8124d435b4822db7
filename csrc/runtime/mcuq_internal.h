/* mcuq runtime: helpers shared by the kernel .c files. Not part of the API
 * (generated code includes mcuq_runtime.h only). */
#ifndef MCUQ_INTERNAL_H
#define MCUQ_INTERNAL_H

#include <stdint.h>

#include "mcuq_runtime.h"

/* Requantization shifts the integer rules of mcuq_arith.h accept. The
 * 64-bit rule (TFLite's int64 MultiplyByQuantizedMultiplier, 16-bit
 * activations) shifts right by 15 - shift, so it takes shifts up to 7 only;
 * its power-of-two path takes the full range. */
#define MCUQ_SHIFT_MIN (-31)
#define MCUQ_SHIFT_MAX 30
#define MCUQ_SHIFT_MAX_S64 7

/* The multiplier/shift table entry of a channel: per channel or shared. */
MCUQ_INLINE int32_t mcuq_requant_index(const mcuq_requant *requant, int32_t channel) {
  return requant->per_channel ? channel : 0;
}

MCUQ_INLINE int32_t mcuq_requant_multiplier(const mcuq_requant *requant, int32_t channel) {
  return MCUQ_READ_S32(&requant->multiplier[mcuq_requant_index(requant, channel)]);
}

MCUQ_INLINE int mcuq_requant_shift(const mcuq_requant *requant, int32_t channel) {
  return MCUQ_READ_S8(&requant->shift[mcuq_requant_index(requant, channel)]);
}

#if defined(__GNUC__) || defined(__clang__)
#define MCUQ_ALWAYS_INLINE static __inline__ __attribute__((always_inline, unused))
#define MCUQ_NOINLINE __attribute__((noinline))
#else
#define MCUQ_ALWAYS_INLINE static inline
#define MCUQ_NOINLINE
#endif

/* mcuq_requantize_s32 (the same integers, from the same functions) for the
 * inner loops of the fast kernels: the default double rounding with a right
 * shift (multipliers below 1: nearly every layer) inlined; the general rule
 * handles the rest. */
MCUQ_ALWAYS_INLINE int32_t mcuq_requantize_fast_s32(int32_t acc, int32_t multiplier, int shift,
                                                    const mcuq_requant *requant) {
  if (requant->rounding == MCUQ_ROUND_DOUBLE && shift <= 0) {
    const int32_t scaled = mcuq_rounding_divide_by_pot(mcuq_sat_rounding_doubling_high_mul(acc, multiplier), -shift);
    /* The kernels' checks hold z, lo and hi to the output type (int8 / int16). */
    return mcuq_add_small_zero_point_and_clamp(scaled, requant->zero_point, requant->act_min, requant->act_max);
  }
  return mcuq_requantize_s32(acc, multiplier, shift, requant->rounding, requant->zero_point, requant->act_min,
                             requant->act_max);
}

/* Runs a kernel's argument check and returns its status unless it is
 * MCUQ_OK; nothing under MCUQ_NO_CHECKS (the generated code is trusted). */
#ifndef MCUQ_NO_CHECKS
#define MCUQ_RETURN_IF_INVALID(check)        \
  do {                                       \
    const mcuq_status status_ = (check);     \
    if (status_ != MCUQ_OK) return status_;  \
  } while (0)
#else
#define MCUQ_RETURN_IF_INVALID(check) \
  do {                                \
  } while (0)
#endif

#ifndef MCUQ_NO_CHECKS

MCUQ_INLINE int mcuq_valid_rounding(mcuq_rounding rounding) {
  return rounding == MCUQ_ROUND_DOUBLE || rounding == MCUQ_ROUND_SINGLE || rounding == MCUQ_ROUND_SHIFT;
}

/* wide: the shift feeds mcuq_requantize_s64 (64-bit accumulators). */
MCUQ_INLINE int mcuq_valid_shift(int32_t shift, mcuq_rounding rounding, int wide) {
  const int32_t max = (wide && rounding != MCUQ_ROUND_SHIFT) ? MCUQ_SHIFT_MAX_S64 : MCUQ_SHIFT_MAX;
  return shift >= MCUQ_SHIFT_MIN && shift <= max;
}

/* A value (zero point) representable in the activation type. */
MCUQ_INLINE int mcuq_in_range(int32_t value, int32_t type_min, int32_t type_max) {
  return value >= type_min && value <= type_max;
}

/* A clamp range that is ordered and fits the output type, so the final cast
 * never wraps. */
MCUQ_INLINE int mcuq_valid_clamp(int32_t act_min, int32_t act_max, int32_t type_min, int32_t type_max) {
  return act_min <= act_max && act_min >= type_min && act_max <= type_max;
}

/* The output scaling of a layer with `channels` output channels. */
MCUQ_INLINE mcuq_status mcuq_check_requant(const mcuq_requant *requant, int32_t channels, int32_t type_min,
                                           int32_t type_max, int wide) {
  const int32_t entries = requant->per_channel ? channels : 1;
  if (requant->multiplier == 0 || requant->shift == 0) return MCUQ_ERROR_NULL;
  if (!mcuq_valid_rounding(requant->rounding)) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_in_range(requant->zero_point, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_valid_clamp(requant->act_min, requant->act_max, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  for (int32_t c = 0; c < entries; ++c) {
    if (!mcuq_valid_shift(MCUQ_READ_S8(&requant->shift[c]), requant->rounding, wide)) return MCUQ_ERROR_ARGUMENT;
  }
  return MCUQ_OK;
}

/* The arguments of a convolution (conv2d.c): shapes, padding, zero point,
 * requantization; type_min/max and wide as for mcuq_check_requant. */
mcuq_status mcuq_check_conv2d(const mcuq_conv2d_params *p, const void *input, const int8_t *weights, const void *bias,
                              const mcuq_requant *requant, const void *output, int32_t type_min, int32_t type_max,
                              int wide);

/* The weights every codebook kernel takes (codebook.c,
 * codebook_fully_connected.c). */
MCUQ_INLINE mcuq_status mcuq_check_codebook(const mcuq_codebook_weights *w) {
  if (w == 0 || w->indices == 0 || w->codebook == 0) return MCUQ_ERROR_NULL;
  if (w->bits < 1 || w->bits > 4 || w->row_weights <= 0) return MCUQ_ERROR_ARGUMENT;
  return MCUQ_OK;
}

#endif /* MCUQ_NO_CHECKS */

#if defined(__AVR__)
/* The generic int8 convolutions with weights in RAM (conv2d.c): codebook
 * layers (codebook.c) decode their weights into RAM, where the int8
 * kernels' MCUQ_READ_S8 would read flash. */
mcuq_status mcuq_conv2d_s8_ram(const mcuq_conv2d_params *params, const int8_t *input, const int8_t *weights,
                               const int32_t *bias, const mcuq_requant *requant, int8_t *output);
mcuq_status mcuq_depthwise_conv2d_s8_ram(const mcuq_conv2d_params *params, const int8_t *input,
                                         const int8_t *weights, const int32_t *bias, const mcuq_requant *requant,
                                         int8_t *output);
#endif

#endif /* MCUQ_INTERNAL_H */
