// Meta kernels of the non-uniform ops: shapes and dtypes, with the CPU
// kernels' argument checks minus those that read values (sorted levels).
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

namespace mcuq::ops {
namespace {

at::Tensor fake_quantize_levels_meta(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size) {
  check_float_input("fake_quantize_levels", input);
  int64_t n = 0;
  check_levels_args("fake_quantize_levels", input, levels, thresholds, axis, group_size, &n);
  return at::empty_like(input, at::MemoryFormat::Contiguous);
}

at::Tensor quantize_levels_meta(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  check_float_input("quantize_levels", input);
  int64_t n = 0;
  check_levels_args("quantize_levels", input, levels, thresholds, axis, group_size, &n);
  return at::empty(input.sizes(), input.options().dtype(index_dtype("quantize_levels", dtype, n)));
}

at::Tensor dequantize_levels_meta(
    const at::Tensor& input,
    const at::Tensor& levels,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  check_integer_input("dequantize_levels", input);
  int64_t n = 0;
  check_levels_args("dequantize_levels", input, levels, c10::nullopt, axis, group_size, &n);
  return at::empty(input.sizes(), input.options().dtype(dequantized_dtype("dequantize_levels", dtype)));
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_levels_backward_meta(
    const at::Tensor& /*grad*/,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    bool /*need_levels_grad*/) {
  check_float_input("fake_quantize_levels", input);
  int64_t n = 0;
  check_levels_args("fake_quantize_levels", input, levels, thresholds, axis, group_size, &n);
  return {at::empty_like(input, at::MemoryFormat::Contiguous), at::empty_like(levels)};
}

std::tuple<at::Tensor, at::Tensor> uniform_levels_meta(
    const at::Tensor& scale, const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max) {
  check_uniform_levels_args("uniform_levels", scale, zero_point, quant_min, quant_max);
  const int64_t rows = scale.numel(), n = quant_max - quant_min + 1;
  const auto options = scale.options().dtype(at::kFloat);
  if (rows == 1) return {at::empty({n}, options), at::empty({n - 1}, options)};
  return {at::empty({rows, n}, options), at::empty({rows, n - 1}, options)};
}

std::tuple<at::Tensor, at::Tensor> fit_levels_meta(
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method,
    c10::optional<int64_t> axis,
    int64_t group_size,
    int64_t iterations) {
  const FitLayout fit = check_fit_levels_args("fit_levels", input, bits, method, axis, group_size, iterations);
  const auto options = input.options().dtype(at::kFloat);
  if (!axis.has_value()) return {at::empty({fit.levels}, options), at::empty({fit.levels - 1}, options)};
  return {at::empty({fit.rows, fit.levels}, options), at::empty({fit.rows, fit.levels - 1}, options)};
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Meta, m) {
  m.impl("uniform_levels", &uniform_levels_meta);
  m.impl("fit_levels", &fit_levels_meta);
  m.impl("fake_quantize_levels", &fake_quantize_levels_meta);
  m.impl("quantize_levels", &quantize_levels_meta);
  m.impl("dequantize_levels", &dequantize_levels_meta);
  m.impl("_fake_quantize_levels_backward", &fake_quantize_levels_backward_meta);
}

}  // namespace mcuq::ops
