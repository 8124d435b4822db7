// Meta kernels of quantize_multiplier and requantize: the CPU kernels'
// argument checks (minus those that read values) and output shapes.
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

namespace mcuq::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_multiplier_meta(const at::Tensor& real_multiplier) {
  check_quantize_multiplier_args("quantize_multiplier", real_multiplier);
  const auto options = real_multiplier.options().dtype(at::kInt);
  return {at::empty_symint(real_multiplier.sym_sizes(), options),
          at::empty_symint(real_multiplier.sym_sizes(), options)};
}

at::Tensor requantize_meta(
    const at::Tensor& input,
    const at::Tensor& multiplier,
    const at::Tensor& shift,
    int64_t zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    c10::string_view rounding) {
  check_requantize_args(
      "requantize", input, multiplier, shift, zero_point, quant_min, quant_max, axis, rounding);
  return at::empty_symint(input.sym_sizes(), input.options().dtype(at::kInt));
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Meta, m) {
  m.impl("quantize_multiplier", quantize_multiplier_meta);
  m.impl("requantize", requantize_meta);
}

}  // namespace mcuq::ops
