// mcuq's ops for C++ callers. Each function calls through the PyTorch
// dispatcher, exactly like torch.ops.mcuq.* from Python, so C++ callers get
// the same kernels, checks and autograd. Semantics: docs/OPS.md.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace mcuq {

// Uniform affine fake quantization: q = clamp(z + round(x / s), quant_min,
// quant_max), returns (q - z) * s. One-element scale/zero_point: per-tensor;
// otherwise one (scale, zero_point) per group of `group_size` consecutive
// channels along `axis`. Straight-through gradient to `input`; LSQ gradients
// to `scale` and a floating `zero_point` when they require grad.
at::Tensor fake_quantize(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis = 0,
    int64_t group_size = 1);

// The integer levels q of fake_quantize, as `dtype` (default: the narrowest
// of int8, uint8, int16, int32 that holds [quant_min, quant_max]).
at::Tensor quantize(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis = 0,
    int64_t group_size = 1,
    c10::optional<at::ScalarType> dtype = c10::nullopt);

// (q - z) * s for integer levels q, as `dtype` (default float32).
// dequantize(quantize(x)) == fake_quantize(x) bit for bit.
at::Tensor dequantize(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis = 0,
    int64_t group_size = 1,
    c10::optional<at::ScalarType> dtype = c10::nullopt);

// Non-uniform fake quantization (eq. 3): each value becomes one of n sorted
// float32 `levels` ([n] per tensor, or [groups, n]: one row per group of
// `group_size` channels along `axis`), the one whose interval
// [thresholds[i-1], thresholds[i]) holds it; `thresholds` ([n - 1] or
// [groups, n - 1]) default to the midpoints, and a value on one goes up.
// NaN stays NaN. Straight-through gradient to `input` inside [first level,
// last level]; `levels` that require grad get the sum of the gradients of
// the values they took (a learnable codebook).
at::Tensor fake_quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds = c10::nullopt,
    int64_t axis = 0,
    int64_t group_size = 1);

// The indices of fake_quantize_levels (uint8 for up to 256 levels, else
// int16 or int32, or `dtype`); NaN takes the level nearest 0.
at::Tensor quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds = c10::nullopt,
    int64_t axis = 0,
    int64_t group_size = 1,
    c10::optional<at::ScalarType> dtype = c10::nullopt);

// levels[index] (float32 unless `dtype`): dequantize_levels(quantize_levels(x))
// equals fake_quantize_levels(x) bit for bit for non-NaN x.
at::Tensor dequantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    int64_t axis = 0,
    int64_t group_size = 1,
    c10::optional<at::ScalarType> dtype = c10::nullopt);

// The uniform grid as a codebook: levels (q - z) * s for q in [quant_min,
// quant_max] and the thresholds with which fake_quantize_levels equals
// fake_quantize bit for bit on float32, float16 and bfloat16 inputs. [n] for
// one-element qparams, else [channels, n].
std::tuple<at::Tensor, at::Tensor> uniform_levels(
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max);

// A codebook of at most 2^bits levels fitted to `input` (per tensor, or per
// group of channels along `axis`) by `method`: "kmeans", "quantile",
// "lloyd_max_gaussian", "lloyd_max_laplace", "pow2", "apot" (docs/OPS.md:
// what each minimizes). Returns (levels, thresholds).
std::tuple<at::Tensor, at::Tensor> fit_levels(
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method,
    c10::optional<int64_t> axis = c10::nullopt,
    int64_t group_size = 1,
    int64_t iterations = 100);

// Quantization parameters for ranges [min_val, max_val] (0-d or 1-d; the
// range is widened to include 0), as torch.ao's observers compute them:
// (scale float32, zero_point int32), one per entry (a 0-d range gives one).
std::tuple<at::Tensor, at::Tensor> choose_qparams(
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two = false);

// Folds the finite values of `input` into a min/max observer's state, in
// place: float32 min_val/max_val (one entry, or one per group of channels
// along `axis`; +inf/-inf before the first finite value) and an int64 count
// of skipped non-finite values. No averaging constant: running min/max;
// otherwise an exponential moving average with that constant.
void observe_minmax_(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    c10::optional<double> averaging_constant = c10::nullopt,
    int64_t axis = 0,
    int64_t group_size = 1);

// Folds the finite values of `input` into a histogram observer's state, in
// place: int64 histogram [bins] (or [channels, bins] per channel along
// `axis`), float64 histogram_range [2] (or [channels, 2]), float32
// min_val/max_val and int64 nonfinite_count; optionally float64
// histogram_sum (the histogram's shape: the sum of each bin's values).
// Re-binning is exact. A histogram of S counts spans the values seen with
// more than (S - 1) / 2 bins (power-of-two widths): S = 2 B + 1 for B bins
// across the data.
void observe_histogram_(
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis = 0,
    const c10::optional<at::Tensor>& histogram_sum = c10::nullopt);

// The clipping range a histogram suggests for [quant_min, quant_max]:
// method "minmax", "percentile", "mse" or "entropy" ("mse" spreads each bin
// around its mean when given histogram_sum, else uniformly over the bin).
std::tuple<at::Tensor, at::Tensor> histogram_range(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    c10::string_view method = "mse",
    double percentile = 99.99,
    const c10::optional<at::Tensor>& histogram_sum = c10::nullopt);

// The QAT hot path in one op: if observer_enabled, update the range state
// and recompute scale (float32) / zero_point (int32) in place; then, if
// fake_quant_enabled, fake-quantize the input with them (else a copy of it).
// Straight-through gradient to the input.
at::Tensor observe_fake_quantize(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    const at::Tensor& observer_enabled,
    const at::Tensor& fake_quant_enabled,
    c10::optional<double> averaging_constant,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two = false,
    int64_t axis = 0,
    int64_t group_size = 1);

// Fake quantization with a range taken from this input alone (per tensor, or
// per slice along `axis`); straight-through gradient.
at::Tensor fake_quantize_dynamic(
    const at::Tensor& input,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    c10::optional<int64_t> axis = c10::nullopt);

// TFLite's QuantizeMultiplier for each real multiplier (>= 0): int32
// multipliers in [2^30, 2^31) and shifts with M ~= multiplier * 2^(shift - 31).
std::tuple<at::Tensor, at::Tensor> quantize_multiplier(const at::Tensor& real_multiplier);

// Requantizes int32 (or int64, 16x8) accumulators: zero_point +
// MultiplyByQuantizedMultiplier(input, multiplier, shift), clamped to
// [quant_min, quant_max], as int32. One multiplier/shift, or one per channel
// along `axis`. rounding: "double" (TFLite's default), "single" or "shift"
// (power-of-two multipliers). Same arithmetic as the MCU runtime.
at::Tensor requantize(
    const at::Tensor& input,
    const at::Tensor& multiplier,
    const at::Tensor& shift,
    int64_t zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis = 1,
    c10::string_view rounding = "double");

namespace detail {
// Min and max of the finite values (float32, one entry or one per group of
// slices along axis; +inf/-inf where none) and the count of the others.
std::tuple<at::Tensor, at::Tensor, at::Tensor> finite_aminmax(
    const at::Tensor& input,
    c10::optional<int64_t> axis,
    int64_t group_size);

// The gradient of fake_quantize: (grad_input, grad_scale, grad_zero_point).
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_backward(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    bool need_scale_grad,
    bool need_zero_point_grad);

// The gradient of fake_quantize_levels: (grad_input, grad_levels).
std::tuple<at::Tensor, at::Tensor> fake_quantize_levels_backward(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    bool need_levels_grad);
}  // namespace detail

}  // namespace mcuq
