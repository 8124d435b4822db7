// Meta kernels of the range ops: the same argument checks as the CPU kernels
// (minus those that read values) and output shapes.
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

namespace mcuq::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> choose_qparams_meta(
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool /*symmetric*/,
    bool /*power_of_two*/) {
  check_choose_qparams_args("choose_qparams", min_val, max_val, quant_min, quant_max);
  const std::vector<c10::SymInt> shape = min_val.dim() == 0
      ? std::vector<c10::SymInt>{c10::SymInt(1)}
      : std::vector<c10::SymInt>(min_val.sym_sizes().begin(), min_val.sym_sizes().end());
  return {
      at::empty_symint(shape, min_val.options().dtype(at::kFloat)),
      at::empty_symint(shape, min_val.options().dtype(at::kInt))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> finite_aminmax_meta(
    const at::Tensor& input,
    c10::optional<int64_t> axis,
    int64_t group_size) {
  check_float_input("_finite_aminmax", input);
  const QParamLayout layout = slice_layout("_finite_aminmax", input, axis, group_size);
  const int64_t entries = layout.per_tensor ? 1 : layout.channels / layout.group_size;
  const auto options = input.options().dtype(at::kFloat);
  return {
      at::empty({entries}, options), at::empty({entries}, options),
      at::empty({}, input.options().dtype(at::kLong))};
}

void observe_minmax_meta(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    c10::optional<double> averaging_constant,
    int64_t axis,
    int64_t group_size) {
  check_float_input("observe_minmax_", input);
  check_averaging_constant("observe_minmax_", averaging_constant);
  check_range_state("observe_minmax_", input, min_val, max_val, nonfinite_count, axis, group_size);
}

at::Tensor observe_fake_quantize_meta(
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
    bool /*symmetric*/,
    bool /*power_of_two*/,
    int64_t axis,
    int64_t group_size) {
  check_observe_fake_quantize_args(
      "observe_fake_quantize", input, min_val, max_val, nonfinite_count, scale, zero_point,
      observer_enabled, fake_quant_enabled, averaging_constant, quant_min, quant_max, axis,
      group_size);
  return at::empty_like(input);
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Meta, m) {
  m.impl("choose_qparams", &choose_qparams_meta);
  m.impl("_finite_aminmax", &finite_aminmax_meta);
  m.impl("observe_minmax_", &observe_minmax_meta);
  m.impl("observe_fake_quantize", &observe_fake_quantize_meta);
}

}  // namespace mcuq::ops
