// Meta kernels: shapes and dtypes without data, for shape inference, fake
// tensors and torch.compile. They run the same argument checks as the CPU
// kernels, minus the ones that read values (scale > 0, zero point in range).
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

namespace mcuq::ops {
namespace {

at::Tensor fake_quantize_meta(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  check_float_input("fake_quantize", input);
  check_qparam_args("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  return at::empty_like(input);
}

at::Tensor quantize_meta(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  check_float_input("quantize", input);
  check_qparam_args("quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  return at::empty_like(input, input.options().dtype(quantized_dtype("quantize", dtype, quant_min, quant_max)));
}

at::Tensor dequantize_meta(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  check_integer_input("dequantize", input);
  check_qparam_args("dequantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  return at::empty_like(input, input.options().dtype(dequantized_dtype("dequantize", dtype)));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_backward_meta(
    const at::Tensor& /*grad*/,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    bool /*need_scale_grad*/,
    bool /*need_zero_point_grad*/) {
  check_float_input("fake_quantize", input);
  check_qparam_args("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  return {at::empty_like(input), at::empty_like(scale), at::empty_like(zero_point)};
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Meta, m) {
  m.impl("fake_quantize", &fake_quantize_meta);
  m.impl("quantize", &quantize_meta);
  m.impl("dequantize", &dequantize_meta);
  m.impl("_fake_quantize_backward", &fake_quantize_backward_meta);
}

}  // namespace mcuq::ops
