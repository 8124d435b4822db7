// mcuq's ops for C++ callers. Each function calls through the PyTorch
// dispatcher, exactly like torch.ops.mcuq.* from Python, so C++ callers get
// the same kernels, checks and autograd. Semantics: README.md, "Op reference".
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

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

namespace detail {
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
}  // namespace detail

}  // namespace mcuq
