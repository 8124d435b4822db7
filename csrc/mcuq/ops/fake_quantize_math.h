// The per-element formulas of fake_quantize, quantize, dequantize and their
// gradients (DESIGN.md §3), in one place for the CPU kernels (cpu/) and the
// CUDA kernels (cuda/), so that both compute the same bits: float32 inputs
// give bit-identical results on either device.
#pragma once

#include "mcuq/ops/host_device.h"

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace mcuq::ops::fq {

// Round half to even (the default rounding mode): nearbyint of the C library,
// which CUDA provides for device code under the same names.
MCUQ_HOST_DEVICE inline float round_even(float v) { return ::nearbyintf(v); }
MCUQ_HOST_DEVICE inline double round_even(double v) { return ::nearbyint(v); }

MCUQ_HOST_DEVICE inline bool is_nan(double v) { return v != v; }

// The scale's float32 reciprocal and a float zero point's integer (rounded
// half to even, then clamped into the range), as the kernels use them:
// checks.cpp derives them on the host, the CUDA kernels on the GPU.
MCUQ_HOST_DEVICE inline float reciprocal(float scale) { return 1.0f / scale; }

MCUQ_HOST_DEVICE inline int64_t zero_point_of_float(double zero_point, int64_t quant_min, int64_t quant_max) {
  const double r = round_even(zero_point);
  return static_cast<int64_t>(::fmin(::fmax(r, static_cast<double>(quant_min)), static_cast<double>(quant_max)));
}

// The level before saturation, evaluated exactly as PyTorch does: in the
// input's op-math type (float for float16/bfloat16/float32, double for
// float64), with the float32 reciprocal of the scale.
template <typename acc_t>
MCUQ_HOST_DEVICE inline acc_t raw_level(acc_t x, float inv_scale, int64_t zero_point) {
  return round_even(x * static_cast<acc_t>(inv_scale)) + static_cast<acc_t>(zero_point);
}

// Whether a level lies inside the range (false for NaN): the STE mask.
MCUQ_HOST_DEVICE inline bool in_range(double level, int64_t quant_min, int64_t quant_max) {
  return level >= static_cast<double>(quant_min) && level <= static_cast<double>(quant_max);
}

// Saturates a non-NaN level; ±inf and huge levels go to the nearest bound.
MCUQ_HOST_DEVICE inline int64_t saturate(double level, int64_t quant_min, int64_t quant_max) {
  if (level <= static_cast<double>(quant_min)) return quant_min;
  if (level >= static_cast<double>(quant_max)) return quant_max;
  return static_cast<int64_t>(level);
}

// (q - z) * s evaluated in double and rounded once to the output type, as
// PyTorch does; float16/bfloat16 outputs go through float32 as PyTorch's
// assignment does. q - z in double: exact for the int32 levels of
// fake_quantize, and no int64 overflow for whatever levels dequantize gets.
template <typename scalar_t>
MCUQ_HOST_DEVICE inline scalar_t dequantized(int64_t q, float scale, int64_t zero_point) {
  const double v = (static_cast<double>(q) - static_cast<double>(zero_point)) * static_cast<double>(scale);
  if constexpr (std::is_same_v<scalar_t, double>) {
    return v;
  } else {
    return static_cast<scalar_t>(static_cast<float>(v));
  }
}

// fake_quantize of one element: NaN stays NaN.
template <typename scalar_t, typename acc_t>
MCUQ_HOST_DEVICE inline scalar_t fake_quantized(
    scalar_t x, float scale, float inv_scale, int64_t zero_point, int64_t quant_min, int64_t quant_max) {
  const acc_t level = raw_level<acc_t>(static_cast<acc_t>(x), inv_scale, zero_point);
  return is_nan(level) ? static_cast<scalar_t>(level)
                       : dequantized<scalar_t>(saturate(level, quant_min, quant_max), scale, zero_point);
}

// quantize of one element: NaN has no level and maps to the zero point (the value 0).
template <typename acc_t>
MCUQ_HOST_DEVICE inline int64_t quantized(
    acc_t x, float inv_scale, int64_t zero_point, int64_t quant_min, int64_t quant_max) {
  const acc_t level = raw_level<acc_t>(x, inv_scale, zero_point);
  return is_nan(level) ? zero_point : saturate(level, quant_min, quant_max);
}

// The gradients of one element. Straight-through for the input: the gradient
// passes where the level is in range. LSQ (Esser et al. 2020) and LSQ+: d
// out / d scale is (q - z) - x / s inside the range and (bound - z) outside;
// d out / d z is 0 inside and -s outside. NaN inputs contribute nothing.
template <typename acc_t>
struct ElementGrads {
  acc_t input, scale, zero_point;
};

template <typename acc_t>
MCUQ_HOST_DEVICE inline ElementGrads<acc_t> lsq_grads(
    acc_t grad, acc_t x, float scale, float inv_scale, int64_t zero_point, int64_t quant_min, int64_t quant_max) {
  const acc_t level = raw_level<acc_t>(x, inv_scale, zero_point);
  ElementGrads<acc_t> g{0, 0, 0};
  if (in_range(level, quant_min, quant_max)) {
    g.input = grad;
    g.scale = grad * (static_cast<acc_t>(static_cast<int64_t>(level) - zero_point) - x / static_cast<acc_t>(scale));
  } else if (!is_nan(level)) {
    g.scale = grad * static_cast<acc_t>(saturate(level, quant_min, quant_max) - zero_point);
    g.zero_point = -grad * static_cast<acc_t>(scale);
  }
  return g;
}

// ---- the fast path: float32 arithmetic, fewer than 2^22 levels -----------
//
// For inputs whose op-math type is float (float32, float16, bfloat16) and a
// range with fewer than 2^22 levels, every step above is exact in float32:
// - nearbyint(y): for |y| < 2^23, (y + c) - c with c = copysign(2^23, y)
//   rounds to the nearest integer, ties to even, as nearbyint does in the
//   default rounding mode (y + c lies in [2^23, 2^24), where floats are the
//   integers); larger |y| are integers already, and NaN / inf pass through.
//   Only the sign of a zero result can differ, and adding the zero point
//   (+0 when it is 0) makes it +0 either way.
// - level + z and the saturation compare the same float values as above;
//   the saturated level minus z is an integer below 2^22, exact; and
//   (q - z) * s in float is the correctly rounded product, which is what
//   rounding the exact double product to float gives (and then to float16
//   or bfloat16, the same second rounding).
// NaN fails both comparisons, stays NaN through the arithmetic, and is
// outside the STE mask. The CPU's vectorized loops and the CUDA kernels use it.
constexpr int64_t kFastLevels = int64_t{1} << 22;

MCUQ_HOST_DEVICE inline bool fast_path_range(int64_t quant_min, int64_t quant_max) {
  return quant_min > -kFastLevels && quant_max < kFastLevels && quant_max - quant_min < kFastLevels;
}

MCUQ_HOST_DEVICE inline float round_half_even(float y) {
  const float c = ::copysignf(8388608.0f, y);  // 2^23
  const float r = (y + c) - c;
  return ::fabsf(y) < 8388608.0f ? r : y;
}

// The saturated level as a float (NaN stays NaN: std::min / std::max's selects).
MCUQ_HOST_DEVICE inline float fast_saturated_level(float x, float inv, float z, float lo, float hi) {
  const float level = round_half_even(x * inv) + z;
  const float above = level < lo ? lo : level;
  return hi < above ? hi : above;
}

MCUQ_HOST_DEVICE inline float fast_fake_quantized(float x, float s, float inv, float z, float lo, float hi) {
  return (fast_saturated_level(x, inv, z, lo, hi) - z) * s;
}

// The STE mask of the fast path.
MCUQ_HOST_DEVICE inline bool fast_in_range(float x, float inv, float z, float lo, float hi) {
  const float level = round_half_even(x * inv) + z;
  return (level >= lo) & (level <= hi);
}

}  // namespace mcuq::ops::fq
