// Autograd registrations of the range ops. The fused observe_fake_quantize
// passes the straight-through gradient to its input; observer state updates
// are not differentiable; fake_quantize_dynamic is a composite of other ops
// and gets its gradient (straight-through, qparams constant) from them.
#include "mcuq/ops.h"
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace mcuq::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ObserveFakeQuantizeFunction : public torch::autograd::Function<ObserveFakeQuantizeFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx,
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
      bool power_of_two,
      int64_t axis,
      int64_t group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor output = mcuq::observe_fake_quantize(
        input, min_val, max_val, nonfinite_count, scale, zero_point, observer_enabled,
        fake_quant_enabled, averaging_constant, quant_min, quant_max, symmetric, power_of_two,
        axis, group_size);
    // The qparams this forward used, copied: the next forward updates them in place.
    ctx->save_for_backward({input, scale.clone(), zero_point.clone(), fake_quant_enabled.clone()});
    ctx->saved_data["quant_min"] = quant_min;
    ctx->saved_data["quant_max"] = quant_max;
    ctx->saved_data["axis"] = axis;
    ctx->saved_data["group_size"] = group_size;
    return output;
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = grad_output[0];
    const int64_t quant_min = ctx->saved_data["quant_min"].toInt();
    // Branch-free, so that tracing (torch.compile) needs no data-dependent
    // control flow. With fake-quant off the qparams may be anything (they
    // were not used): stand-ins that pass the checks take their place.
    const at::Tensor on = saved[3].ne(0);
    const at::Tensor scale = at::where(on, saved[1], at::ones_like(saved[1]));
    const at::Tensor zero_point = at::where(on, saved[2], at::full_like(saved[2], quant_min));
    auto [grad_input, unused_scale, unused_zero_point] = mcuq::detail::fake_quantize_backward(
        grad, saved[0], scale, zero_point, quant_min, ctx->saved_data["quant_max"].toInt(),
        ctx->saved_data["axis"].toInt(), ctx->saved_data["group_size"].toInt(), false, false);
    grad_input = at::where(on, grad_input, grad);
    variable_list grads(15);
    grads[0] = grad_input;
    return grads;
  }
};

at::Tensor observe_fake_quantize_autograd(
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
    bool power_of_two,
    int64_t axis,
    int64_t group_size) {
  if (!at::GradMode::is_enabled() || !input.requires_grad()) {
    // Nothing to differentiate: no saved copies of the qparams. (Inductor
    // also retraces the op here with grad off, and expects just the op.)
    at::AutoDispatchBelowADInplaceOrView guard;
    return mcuq::observe_fake_quantize(
        input, min_val, max_val, nonfinite_count, scale, zero_point, observer_enabled,
        fake_quant_enabled, averaging_constant, quant_min, quant_max, symmetric, power_of_two,
        axis, group_size);
  }
  return ObserveFakeQuantizeFunction::apply(
      input, min_val, max_val, nonfinite_count, scale, zero_point, observer_enabled,
      fake_quant_enabled, averaging_constant, quant_min, quant_max, symmetric, power_of_two, axis,
      group_size);
}

at::Tensor fake_quantize_dynamic_composite(
    const at::Tensor& input,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    c10::optional<int64_t> axis) {
  // Checked here too, so that messages name this op rather than its parts.
  check_float_input("fake_quantize_dynamic", input);
  check_quant_range("fake_quantize_dynamic", quant_min, quant_max);
  slice_layout("fake_quantize_dynamic", input, axis, 1);
  auto [lo, hi, unused_count] = mcuq::detail::finite_aminmax(input.detach(), axis, 1);
  // A slice without any finite value quantizes around 0.
  const at::Tensor empty = lo > hi;
  lo = at::where(empty, at::zeros_like(lo), lo);
  hi = at::where(empty, at::zeros_like(hi), hi);
  auto [scale, zero_point] = mcuq::choose_qparams(lo, hi, quant_min, quant_max, symmetric, false);
  return mcuq::fake_quantize(input, scale, zero_point, quant_min, quant_max, axis.value_or(0), 1);
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Autograd, m) {
  m.impl("observe_fake_quantize", &observe_fake_quantize_autograd);
  // State updates and range statistics: never differentiated.
  m.impl("observe_minmax_", torch::CppFunction::makeFallthrough());
  m.impl("observe_histogram_", torch::CppFunction::makeFallthrough());
  m.impl("_histogram_rebin_", torch::CppFunction::makeFallthrough());
  m.impl("_finite_aminmax", torch::CppFunction::makeFallthrough());
  // Float outputs that carry no gradient: backward through them raises.
  m.impl("choose_qparams", torch::autograd::autogradNotImplementedFallback());
  m.impl("histogram_range", torch::autograd::autogradNotImplementedFallback());
}

TORCH_LIBRARY_IMPL(mcuq, CompositeImplicitAutograd, m) {
  m.impl("fake_quantize_dynamic", &fake_quantize_dynamic_composite);
}

}  // namespace mcuq::ops
