/* mcuq integer arithmetic: the one definition of rounding, saturation,
 * fixed-point multiplication and requantization.
 *
 * Included by the MCU runtime (C99), the exporter and the LibTorch integer
 * ops (C++), so the host reference and the device compute the same bits.
 * Requantization follows TFLite's published rules (tensorflow/lite/kernels/
 * internal/common.h, quantization_util.cc) and gemmlowp's fixedpoint.h:
 *
 *   real multiplier M > 0  ->  (multiplier in [2^30, 2^31), shift) with
 *   M ~= multiplier * 2^(shift - 31)                 mcuq_quantize_multiplier
 *   x * M  ->  SaturatingRoundingDoublingHighMul then RoundingDivideByPOT
 *              (double rounding, TFLite's default)   MCUQ_ROUND_DOUBLE
 *           or one 64-bit product and one rounding   MCUQ_ROUND_SINGLE
 *           (TFLITE_SINGLE_ROUNDING)
 *   power-of-two M = 2^-n  ->  one rounding shift    MCUQ_ROUND_SHIFT
 *
 * Where TFLite leaves behaviour undefined (a left shift that overflows
 * int32) we saturate. Arithmetic right shift of negative values is assumed
 * (every compiler we target does it; checked below at compile time).
 *
 * No floating point in the inline functions the runtime calls; the
 * multiplier computation (double, frexp) is host-side and is left out when
 * MCUQ_NO_FLOAT is defined (MCU builds define it to prove the point).
 */
#ifndef MCUQ_ARITH_H
#define MCUQ_ARITH_H

#include <stdint.h>

/* Arm cores with the DSP extension (Cortex-M4/M7/M33) saturate in one
 * instruction (QADD); -DMCUQ_PORTABLE_KERNELS keeps the plain C. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCUQ_PORTABLE_KERNELS) && !defined(__CUDACC__)
#define MCUQ_ARITH_DSP 1
#include <arm_acle.h>
#else
#define MCUQ_ARITH_DSP 0
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__CUDACC__) /* the plugin's CUDA kernels compute the same bits on the GPU */
#define MCUQ_INLINE static __inline__ __host__ __device__ __attribute__((unused))
#elif defined(__GNUC__) || defined(__clang__)
#define MCUQ_INLINE static __inline__ __attribute__((unused))
#else
#define MCUQ_INLINE static inline
#endif

/* Fails to compile where >> on a negative value is not arithmetic. */
typedef char mcuq_arithmetic_right_shift_required[((-1) >> 1) == -1 ? 1 : -1];

typedef enum {
  MCUQ_ROUND_DOUBLE = 0, /* gemmlowp: rounding doubling high mul, then rounding shift */
  MCUQ_ROUND_SINGLE = 1, /* one 64-bit product, one rounding (half up) */
  MCUQ_ROUND_SHIFT = 2   /* multiplier is 2^30 exactly: a rounding shift only */
} mcuq_rounding;

MCUQ_INLINE int32_t mcuq_clamp_s32(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

MCUQ_INLINE int32_t mcuq_saturate_s64_to_s32(int64_t x) {
  return x < INT32_MIN ? INT32_MIN : (x > INT32_MAX ? INT32_MAX : (int32_t)x);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), ties
 * toward +inf (as gemmlowp and NEON VQRDMULH); the single overflow case
 * (INT32_MIN^2) saturates. */
MCUQ_INLINE int32_t mcuq_sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
#if MCUQ_ARITH_DSP
  /* floor(p / 2^31) for p = ab + 2^30 = hi 2^32 + lo is 2 hi + (lo >> 31);
   * QADD doubles hi saturating, which gives INT32_MAX in the one overflow
   * case (hi = 2^30, lo < 2^31) and is exact otherwise, where 2 hi is even
   * so the OR adds the bit: SMLAL onto 2^30, QADD, ORR, no compare. */
  const int64_t p = (int64_t)a * (int64_t)b + ((int64_t)1 << 30);
  const int32_t hi = (int32_t)(p >> 32);
  return __qadd(hi, hi) | (int32_t)((uint32_t)p >> 31);
#else
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  /* gemmlowp adds a nudge of 2^30 (ab >= 0) or 1 - 2^30 (ab < 0) and
   * divides by 2^31 truncating; for either sign that is floor((ab + 2^30) /
   * 2^31), one add and one arithmetic shift. */
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
#endif
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent, ties away from zero;
 * 0 <= exponent <= 31. */
MCUQ_INLINE int32_t mcuq_rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u); /* 32-bit: no 64-bit shift on small cores */
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^shift for shift >= 0, saturated to int32 (TFLite: undefined). */
MCUQ_INLINE int32_t mcuq_saturating_left_shift(int32_t x, int shift) {
  return mcuq_saturate_s64_to_s32((int64_t)x * ((int64_t)1 << shift));
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding), shift in [-31, 30]. */
MCUQ_INLINE int32_t mcuq_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  if (shift <= 0) { /* multipliers below 1, nearly every layer: no left shift to saturate */
    return mcuq_rounding_divide_by_pot(mcuq_sat_rounding_doubling_high_mul(x, multiplier), -shift);
  }
  return mcuq_sat_rounding_doubling_high_mul(mcuq_saturating_left_shift(x, shift), multiplier);
}

/* TFLite MultiplyByQuantizedMultiplier under TFLITE_SINGLE_ROUNDING:
 * round(x * multiplier / 2^(31 - shift)), ties toward +inf; saturated. */
MCUQ_INLINE int32_t mcuq_mul_by_quantized_multiplier_single(int32_t x, int32_t multiplier, int shift) {
  const int total_shift = 31 - shift; /* in [1, 62] */
  const int64_t round = (int64_t)1 << (total_shift - 1);
  return mcuq_saturate_s64_to_s32(((int64_t)x * multiplier + round) >> total_shift);
}

/* TFLite MultiplyByQuantizedMultiplier(int64_t x, ...) for 16x8 layers
 * (int64 accumulators, |x| < 2^47): the multiplier reduced to 16 bits, one
 * rounding (ties toward +inf); saturated to int32. */
MCUQ_INLINE int32_t mcuq_mul_by_quantized_multiplier_s64(int64_t x, int32_t multiplier, int shift) {
  const int32_t reduced = multiplier < 0x7FFF0000 ? ((multiplier + ((int32_t)1 << 15)) >> 16) : 0x7FFF;
  const int total_shift = 15 - shift; /* shift in [-31, 7]: total in [8, 46] */
  const int64_t round = (int64_t)1 << (total_shift - 1);
  const int64_t product = x * (int64_t)reduced; /* |x| < 2^47, reduced < 2^15 */
  return mcuq_saturate_s64_to_s32((product + round) >> total_shift);
}

/* The same product at full multiplier precision: round(x * multiplier /
 * 2^(31 - shift)), ties toward +inf, exact for |x| < 2^47 and shift in
 * [-31, 7] (the multiplier split in 15 + 16 bits keeps every product inside
 * int64); saturated. mcuq's "single" rounding of 16x8 layers. */
MCUQ_INLINE int32_t mcuq_mul_by_quantized_multiplier_s64_exact(int64_t x, int32_t multiplier, int shift) {
  const int total_shift = 31 - shift; /* in [24, 62] */
  const int64_t high = x * (int64_t)(multiplier >> 16);     /* |.| < 2^62 */
  const int64_t low = x * (int64_t)(multiplier & 0xFFFF);   /* |.| < 2^63 */
  /* floor((high * 2^16 + low + 2^(t-1)) / 2^t) without the 79-bit sum. */
  const int64_t sum = high + ((int64_t)1 << (total_shift - 17)) + (low >> 16);
  return mcuq_saturate_s64_to_s32(sum >> (total_shift - 16));
}

/* x * 2^shift with rounding, for multipliers that are powers of two
 * (multiplier 2^30, so M = 2^(shift - 1)): a rounding right shift (ties away
 * from zero, as RoundingDivideByPOT) or a saturating left shift. A rule of
 * its own (one rounding, ties away from zero), not DOUBLE/SINGLE with
 * multiplier 2^30: the exporter picks it per layer when every multiplier of
 * the layer is exactly a power of two, and both the reference and the
 * runtime follow that choice. Exponents below -31 flush to 0. */
MCUQ_INLINE int32_t mcuq_rounding_shift(int32_t x, int shift) {
  const int exponent = shift - 1;
  if (exponent >= 0) return mcuq_saturating_left_shift(x, exponent);
  if (exponent < -31) return 0;
  return mcuq_rounding_divide_by_pot(x, -exponent);
}

/* The requantization step of every layer: accumulator -> output scale. */
MCUQ_INLINE int32_t mcuq_scale_s32(int32_t acc, int32_t multiplier, int shift, mcuq_rounding rounding) {
  switch (rounding) {
    case MCUQ_ROUND_SINGLE: return mcuq_mul_by_quantized_multiplier_single(acc, multiplier, shift);
    case MCUQ_ROUND_SHIFT: return mcuq_rounding_shift(acc, shift);
    default: return mcuq_mul_by_quantized_multiplier(acc, multiplier, shift);
  }
}

/* As mcuq_scale_s32 for 64-bit accumulators (16x8 layers): DOUBLE follows
 * TFLite's int64 rule (multiplier reduced to 16 bits, one rounding), SINGLE
 * rounds once at the full 31-bit multiplier, SHIFT is exact in 64 bits. */
MCUQ_INLINE int32_t mcuq_scale_s64(int64_t acc, int32_t multiplier, int shift, mcuq_rounding rounding) {
  if (rounding == MCUQ_ROUND_SHIFT) {
    const int exponent = shift - 1;
    if (exponent >= 0) {
      if (exponent > 31) return acc == 0 ? 0 : (acc > 0 ? INT32_MAX : INT32_MIN);
      return mcuq_saturate_s64_to_s32(
          acc > (INT64_MAX >> exponent) ? INT64_MAX
          : acc < (INT64_MIN >> exponent) ? INT64_MIN : acc * ((int64_t)1 << exponent));
    }
    if (exponent < -62) return 0;
    {
      const int e = -exponent;
      const int64_t mask = ((int64_t)1 << e) - 1;
      const int64_t remainder = acc & mask;
      const int64_t threshold = (mask >> 1) + (acc < 0 ? 1 : 0);
      return mcuq_saturate_s64_to_s32((acc >> e) + (remainder > threshold ? 1 : 0));
    }
  }
  if (rounding == MCUQ_ROUND_SINGLE) return mcuq_mul_by_quantized_multiplier_s64_exact(acc, multiplier, shift);
  return mcuq_mul_by_quantized_multiplier_s64(acc, multiplier, shift);
}

/* clamp(saturate(x + zero_point), lo, hi) in 32-bit arithmetic: the sum
 * can only overflow past the bound on the zero point's side, where the
 * saturated value clamps to that bound. */
MCUQ_INLINE int32_t mcuq_add_zero_point_and_clamp(int32_t x, int32_t zero_point, int32_t lo, int32_t hi) {
  if (zero_point >= 0 ? x > INT32_MAX - zero_point : x < INT32_MIN - zero_point) return zero_point >= 0 ? hi : lo;
  return mcuq_clamp_s32(x + zero_point, lo, hi);
}

/* The same where |zero_point|, |lo| and |hi| are below 2^30 (int8 and int16
 * outputs): the bounds move by the zero point instead of the value, so
 * nothing can overflow and nothing is tested for it. */
MCUQ_INLINE int32_t mcuq_add_small_zero_point_and_clamp(int32_t x, int32_t zero_point, int32_t lo, int32_t hi) {
  return mcuq_clamp_s32(x, lo - zero_point, hi - zero_point) + zero_point;
}

/* Requantize: zero_point + scaled accumulator, clamped to [lo, hi]. */
MCUQ_INLINE int32_t mcuq_requantize_s32(int32_t acc, int32_t multiplier, int shift, mcuq_rounding rounding,
                                        int32_t zero_point, int32_t lo, int32_t hi) {
  return mcuq_add_zero_point_and_clamp(mcuq_scale_s32(acc, multiplier, shift, rounding), zero_point, lo, hi);
}

MCUQ_INLINE int32_t mcuq_requantize_s64(int64_t acc, int32_t multiplier, int shift, mcuq_rounding rounding,
                                        int32_t zero_point, int32_t lo, int32_t hi) {
  return mcuq_add_zero_point_and_clamp(mcuq_scale_s64(acc, multiplier, shift, rounding), zero_point, lo, hi);
}

/* Integer average as TFLite's pooling kernels round it: ties away from zero. */
MCUQ_INLINE int32_t mcuq_rounded_average(int32_t sum, int32_t count) {
  return (sum + (sum > 0 ? count / 2 : -(count / 2))) / count;
}

#ifndef MCUQ_NO_FLOAT
#include <math.h>

/* TFLite QuantizeMultiplier: M = q * 2^shift with q in [0.5, 1) (frexp),
 * multiplier = round(q * 2^31) with ties away from zero; the 2^31 carry
 * halves it and bumps the shift; shifts below -31 flush to (0, 0); shifts
 * above 30 saturate to (2^31 - 1, 30), as TFLite's single-rounding build
 * does. Returns 1 where the pair represents M (to within 2^-31, or as 0
 * below 2^-32); 0 where it cannot: M < 0, not finite (gives (0, 0)), or M
 * >= 2^30, beyond the largest multiplier * 2^(shift - 31), 2^30 - 2^-1
 * (gives the saturated pair, which callers must refuse rather than use). */
MCUQ_INLINE int mcuq_quantize_multiplier(double real_multiplier, int32_t *multiplier, int *shift) {
  int exponent = 0;
  double q;
  int64_t q_fixed;
  *multiplier = 0;
  *shift = 0;
  if (!(real_multiplier > 0.0) || !isfinite(real_multiplier)) return real_multiplier == 0.0;
  q = frexp(real_multiplier, &exponent);
  q_fixed = (int64_t)round(q * 2147483648.0); /* round(): ties away from zero */
  if (q_fixed == ((int64_t)1 << 31)) {
    q_fixed /= 2;
    ++exponent;
  }
  if (exponent < -31) {
    exponent = 0;
    q_fixed = 0;
  }
  if (exponent > 30) { /* M >= 2^30, or just below it and rounded up by the carry */
    *multiplier = (int32_t)(((int64_t)1 << 31) - 1);
    *shift = 30;
    return real_multiplier < 1073741824.0; /* 2^30 - 2^-1: within 2^-31 of M only below 2^30 */
  }
  *multiplier = (int32_t)q_fixed;
  *shift = exponent;
  return 1;
}
#endif /* MCUQ_NO_FLOAT */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MCUQ_ARITH_H */
