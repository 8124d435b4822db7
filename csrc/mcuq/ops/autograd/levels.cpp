// Autograd for fake_quantize_levels, in C++ so C++ and TorchScript users get
// gradients too: straight-through to the input inside [first level, last
// level], and to each level the sum of the gradients of the values it took
// (a codebook learned in QAT). Thresholds get none (they are a rule, not a
// parameter). The gradient is itself an op; differentiating it again fails
// with a clear message.
#include "mcuq/ops.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace mcuq::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LevelsBackwardFunction : public torch::autograd::Function<LevelsBackwardFunction> {
 public:
  static variable_list forward(
      AutogradContext* /*ctx*/,
      const at::Tensor& grad,
      const at::Tensor& input,
      const at::Tensor& levels,
      const c10::optional<at::Tensor>& thresholds,
      int64_t axis,
      int64_t group_size,
      bool need_levels_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gi, gl] = mcuq::detail::fake_quantize_levels_backward(
        grad, input, levels, thresholds, axis, group_size, need_levels_grad);
    return {gi, gl};
  }

  static variable_list backward(AutogradContext* /*ctx*/, const variable_list& /*grads*/) {
    TORCH_CHECK_NOT_IMPLEMENTED(
        false,
        "mcuq::fake_quantize_levels: double backward is not supported (its straight-through "
        "gradient is piecewise constant)");
  }
};

class LevelsFunction : public torch::autograd::Function<LevelsFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx,
      const at::Tensor& input,
      const at::Tensor& levels,
      const c10::optional<at::Tensor>& thresholds,
      int64_t axis,
      int64_t group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    // A codebook updated in place between steps (an observer's) must not
    // change this graph's backward: a copy of the (small) tensors is saved
    // unless autograd tracks them.
    const auto keep = [](const at::Tensor& t) { return t.requires_grad() ? t : t.clone(); };
    const bool has_thresholds = thresholds.has_value();
    ctx->save_for_backward({input, keep(levels), has_thresholds ? keep(*thresholds) : at::Tensor()});
    ctx->saved_data["has_thresholds"] = has_thresholds;
    ctx->saved_data["axis"] = axis;
    ctx->saved_data["group_size"] = group_size;
    return mcuq::fake_quantize_levels(input, levels, thresholds, axis, group_size);
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    const auto saved = ctx->get_saved_variables();
    const bool need_levels = ctx->needs_input_grad(1);
    const c10::optional<at::Tensor> thresholds =
        ctx->saved_data["has_thresholds"].toBool() ? c10::optional<at::Tensor>(saved[2]) : c10::nullopt;
    auto [gi, gl] = mcuq::detail::fake_quantize_levels_backward(
        grad_output[0], saved[0], saved[1], thresholds, ctx->saved_data["axis"].toInt(),
        ctx->saved_data["group_size"].toInt(), need_levels);
    return {
        ctx->needs_input_grad(0) ? gi : at::Tensor(), need_levels ? gl : at::Tensor(), at::Tensor(),
        at::Tensor(), at::Tensor()};
  }
};

at::Tensor fake_quantize_levels_autograd(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size) {
  return LevelsFunction::apply(input, levels, thresholds, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_levels_backward_autograd(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    bool need_levels_grad) {
  auto r = LevelsBackwardFunction::apply(grad, input, levels, thresholds, axis, group_size, need_levels_grad);
  return {r[0], r[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Autograd, m) {
  m.impl("fake_quantize_levels", &fake_quantize_levels_autograd);
  m.impl("_fake_quantize_levels_backward", &fake_quantize_levels_backward_autograd);
  // Indices and codebook generators are not differentiable: a backward
  // through them raises instead of silently giving no gradient.
  m.impl("quantize_levels", torch::autograd::autogradNotImplementedFallback());
  m.impl("dequantize_levels", torch::autograd::autogradNotImplementedFallback());
  m.impl("uniform_levels", torch::autograd::autogradNotImplementedFallback());
  m.impl("fit_levels", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace mcuq::ops
