// Argument checks shared by the CPU and Meta kernels, so both reject the same
// inputs with the same messages. Messages name the op, the argument, the
// expectation and the value.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

namespace mcuq::ops {

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
// training. CPU only: it reads tensor data.
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

// `t` ([channels] or [1]) viewed so that it broadcasts against `like`
// along the layout's axis, with zero strides elsewhere.
at::Tensor broadcast_along_axis(const at::Tensor& t, const QParamLayout& layout, const at::Tensor& like);

}  // namespace mcuq::ops
