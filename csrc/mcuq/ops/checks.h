// Argument checks shared by the CPU and Meta kernels, so both reject the same
// inputs with the same messages. Messages name the op, the argument, the
// expectation and the value.
#pragma once

#include "mcuq_arith.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

namespace mcuq::ops {

// "float32", "int8", ...: dtype names as Python users write them.
const char* dtype_name(at::ScalarType t);

// Sizes as plain integers. Under torch.compile the Meta kernels see symbolic
// sizes, and reading them this way specializes on the concrete value.
int64_t concrete(const c10::SymInt& v);

// How the quantization parameters map onto the input.
struct QParamLayout {
  bool per_tensor = true;
  int64_t axis = 0;        // canonical (non-negative) channel axis, per-channel only
  int64_t channels = 1;    // input.size(axis), per-channel only
  int64_t group_size = 1;  // channels sharing one (scale, zero_point)
};

// Checks dtypes, devices, shapes and the integer range; reads no tensor data,
// so the Meta kernels can call it.
QParamLayout check_qparam_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size);

// The layout of `entries` per-channel values (one per group of `group_size`
// channels along `axis`, or one for the whole tensor); `what` names them.
QParamLayout channel_layout(
    const char* op,
    const at::Tensor& input,
    int64_t entries,
    int64_t axis,
    int64_t group_size,
    const char* what);

// Checks a state tensor's dtype (TypeError) and device (ValueError, against
// `ref`, named `ref_name` in the message).
void check_tensor(
    const char* op,
    const char* name,
    const at::Tensor& t,
    at::ScalarType dtype,
    const at::Tensor& ref,
    const char* ref_name = "input");

// Checks a range observer's state (float32 min_val/max_val with one entry per
// channel group or one in all, int64 nonfinite_count with one element) and
// returns how it maps onto the input.
QParamLayout check_range_state(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    int64_t group_size);

// An EMA constant, if given, lies in (0, 1].
void check_averaging_constant(const char* op, c10::optional<double> averaging_constant);

// quant_min < quant_max, both within int32.
void check_quant_range(const char* op, int64_t quant_min, int64_t quant_max);

// One range for the whole input (axis unset) or one per group of
// `group_size` channels along `axis`.
QParamLayout slice_layout(
    const char* op,
    const at::Tensor& input,
    c10::optional<int64_t> axis,
    int64_t group_size);

// choose_qparams: floating min_val/max_val of one shape (0-d or 1-d), one device.
void check_choose_qparams_args(
    const char* op,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max);

// observe_fake_quantize: the range state, float32 scale and int32 zero point
// with one entry per range, and one-element enable flags.
QParamLayout check_observe_fake_quantize_args(
    const char* op,
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
    int64_t axis,
    int64_t group_size);

// Checks that the input is a floating-point tensor (fake_quantize, quantize).
void check_float_input(const char* op, const at::Tensor& input);

// Checks that the input is an integer tensor (dequantize).
void check_integer_input(const char* op, const at::Tensor& input);

// The integer dtype quantize writes: `dtype` if given (and wide enough for
// [quant_min, quant_max]), else the narrowest of int8, uint8, int16, int32.
at::ScalarType quantized_dtype(
    const char* op,
    c10::optional<at::ScalarType> dtype,
    int64_t quant_min,
    int64_t quant_max);

// The floating dtype dequantize writes: `dtype` if given, else float32.
at::ScalarType dequantized_dtype(const char* op, c10::optional<at::ScalarType> dtype);

// Scale and zero point as the kernels use them: one entry per channel of the
// input (groups expanded), scale as float32 with its float32 reciprocal, zero
// point as int64. Checks the values (scale finite, positive and normal;
// integer zero point inside [quant_min, quant_max]); a floating zero point is
// rounded half to even and clamped into the range, since it drifts during
// training. Reads the values on the host (a copy, for tensors on a GPU) and
// returns CPU tensors.
struct ChannelQParams {
  at::Tensor scale;       // float32 [channels]
  at::Tensor inv_scale;   // float32 [channels], 1.0f / scale
  at::Tensor zero_point;  // int64 [channels]
};
ChannelQParams channel_qparams(
    const char* op,
    const QParamLayout& layout,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max);

// The checks and conversions of channel_qparams on values already on the
// host, one entry per group (the CUDA kernels read them back themselves):
// float32 scales to their reciprocals (`original`, if defined, is the scale
// tensor as given, for the message), and floating or integer zero points
// to int64.
void scale_reciprocals(const char* op, int64_t n, const float* scale, float* inv_scale, const at::Tensor& original);
void zero_points_of_floats(
    const char* op, int64_t n, const double* zero_point, int64_t quant_min, int64_t quant_max, int64_t* out);
void zero_points_of_integers(
    const char* op, int64_t n, const int64_t* zero_point, int64_t quant_min, int64_t quant_max, int64_t* out);

// `t` ([channels] or [1]) viewed so that it broadcasts against `like`
// along the layout's axis, with zero strides elsewhere.
at::Tensor broadcast_along_axis(const at::Tensor& t, const QParamLayout& layout, const at::Tensor& like);

// Sums a per-element gradient over everything but the channel axis, then
// over the channels of each group: one value per entry of `like` (a scale or
// zero point), in its dtype. The LSQ gradients of every backend.
at::Tensor reduce_to_qparam(const at::Tensor& per_element, const at::Tensor& like, int64_t axis, int64_t group_size);

// quantize_multiplier: a floating tensor of real multipliers.
void check_quantize_multiplier_args(const char* op, const at::Tensor& real_multiplier);

// requantize: an int32/int64 accumulator, int32 multiplier and shift with
// one entry or one per channel along `axis`, a known rounding rule, and an
// int32 zero point. Returns the layout.
QParamLayout check_requantize_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& multiplier,
    const at::Tensor& shift,
    int64_t zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    c10::string_view rounding);

// requantize's multipliers and shifts (n of each, on the host): multiplier
// >= 0 and shift in [-31, 30].
void check_requantize_values(const char* op, int64_t n, const int32_t* multiplier, const int32_t* shift);

// requantize's rounding rule by name (checked by check_requantize_args).
mcuq_rounding rounding_of(c10::string_view rounding);

}  // namespace mcuq::ops

namespace mcuq::ops {

// The non-uniform ops' codebook: float32 `levels` of shape [n] (per tensor)
// or [groups, n] (one row per group of `group_size` channels along `axis`),
// and optional float32 `thresholds` of shape [n - 1] or [groups, n - 1].
// Reads no tensor data (the Meta kernels call it); returns the layout and
// sets `n`.
QParamLayout check_levels_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    int64_t* n);

// The codebook's values (reads them; CPU tensors): levels finite and sorted
// in each row, thresholds not NaN and sorted.
void check_codebook_values(const char* op, const at::Tensor& levels, const c10::optional<at::Tensor>& thresholds);

// uniform_levels: a range of at most 65536 levels, and scale / zero_point
// with the same number (>= 1) of elements.
void check_uniform_levels_args(
    const char* op, const at::Tensor& scale, const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max);

// fit_levels: the method, bits and iterations, and the rows (groups of
// channels along `axis`, or 1); `levels` is how many each row gets.
struct FitLayout {
  int64_t levels = 0, rows = 1, axis = 0;
};
FitLayout check_fit_levels_args(
    const char* op,
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method,
    c10::optional<int64_t> axis,
    int64_t group_size,
    int64_t iterations);

// The narrowest of uint8, int16, int32 that holds indices [0, n), or the
// checked `dtype`.
at::ScalarType index_dtype(const char* op, c10::optional<at::ScalarType> dtype, int64_t n);

}  // namespace mcuq::ops
