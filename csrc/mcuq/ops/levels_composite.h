// The non-uniform ops written with ATen ops (searchsorted, gather,
// scatter_add), so they run on any device: the CUDA registration
// (ops/cuda/levels.cpp) uses them, and tests/cpp compares them on the CPU
// with the CPU kernels (ops/cpu/levels.cpp), bit for bit. Same rule
// (levels_math.h): comparisons in double, a value on a threshold goes up,
// NaN stays NaN (fake) or takes the level nearest 0 (indices). Codebook
// generators run on the CPU and return on the input's device.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace mcuq::ops::levels_composite {

at::Tensor fake_quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size);

at::Tensor quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype);

at::Tensor dequantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype);

std::tuple<at::Tensor, at::Tensor> fake_quantize_levels_backward(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    bool need_levels_grad);

std::tuple<at::Tensor, at::Tensor> uniform_levels(
    const at::Tensor& scale, const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max);

std::tuple<at::Tensor, at::Tensor> fit_levels(
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method,
    c10::optional<int64_t> axis,
    int64_t group_size,
    int64_t iterations);

}  // namespace mcuq::ops::levels_composite
