// Range → quantization parameters (DESIGN.md §3), in float32 arithmetic
// exactly as torch.ao's observers compute them, so that scales and zero
// points match PyTorch's bit for bit where the settings coincide.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace mcuq::ops {

// The smallest scale: torch.finfo(torch.float32).eps, as PyTorch's observers.
constexpr float kScaleEps = 1.1920928955078125e-07f;  // 2^-23

struct QParams {
  float scale;
  int32_t zero_point;
};

// 2^ceil(log2 s), exact: shift-only requantization needs power-of-two scales.
// (inf above 2^127: callers reject non-finite scales.)
inline float power_of_two_at_least(float s) {
  if (!std::isfinite(s)) return s;  // frexp's exponent is unspecified there
  int exponent = 0;
  const float mantissa = std::frexp(s, &exponent);  // s = mantissa * 2^exponent, mantissa in [0.5, 1)
  return mantissa == 0.5f ? s : std::ldexp(1.0f, exponent);
}

// The range always includes 0. Symmetric: s = max(|min|, |max|) / ((qmax - qmin) / 2),
// zero point 0 for signed ranges and the middle of the range for unsigned ones.
// Affine: s = (max - min) / (qmax - qmin), z = clamp(qmin - round(min / s)).
// Callers check that min_val <= max_val are finite.
inline QParams qparams_from_range(
    float min_val,
    float max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two) {
  const float min_neg = std::min(min_val, 0.0f);
  const float max_pos = std::max(max_val, 0.0f);
  float scale = symmetric
      ? std::max(-min_neg, max_pos) / static_cast<float>(static_cast<double>(quant_max - quant_min) / 2)
      : (max_pos - min_neg) / static_cast<float>(quant_max - quant_min);
  scale = std::max(scale, kScaleEps);
  if (power_of_two) {
    scale = power_of_two_at_least(scale);
  }
  int64_t zero_point = 0;
  if (symmetric) {
    zero_point = quant_min < 0 ? 0 : (quant_min + quant_max + 1) / 2;
  } else {
    zero_point = quant_min - static_cast<int64_t>(std::nearbyint(min_neg / scale));
    zero_point = std::clamp(zero_point, quant_min, quant_max);
  }
  return {scale, static_cast<int32_t>(zero_point)};
}

}  // namespace mcuq::ops
