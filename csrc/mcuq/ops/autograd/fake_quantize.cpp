// Autograd for fake_quantize, in C++ so C++ and TorchScript users get
// gradients too: straight-through to the input, LSQ/LSQ+ to scale and a
// floating zero point. The gradient is itself an op (_fake_quantize_backward),
// and differentiating it again fails with a clear message.
#include "mcuq/ops.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace mcuq::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class FakeQuantizeBackwardFunction : public torch::autograd::Function<FakeQuantizeBackwardFunction> {
 public:
  static variable_list forward(
      AutogradContext* /*ctx*/,
      const at::Tensor& grad,
      const at::Tensor& input,
      const at::Tensor& scale,
      const at::Tensor& zero_point,
      int64_t quant_min,
      int64_t quant_max,
      int64_t axis,
      int64_t group_size,
      bool need_scale_grad,
      bool need_zero_point_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gi, gs, gz] = mcuq::detail::fake_quantize_backward(
        grad, input, scale, zero_point, quant_min, quant_max, axis, group_size, need_scale_grad,
        need_zero_point_grad);
    return {gi, gs, gz};
  }

  static variable_list backward(AutogradContext* /*ctx*/, const variable_list& /*grads*/) {
    TORCH_CHECK_NOT_IMPLEMENTED(
        false,
        "mcuq::fake_quantize: double backward is not supported (its straight-through gradient "
        "is piecewise constant)");
  }
};

class FakeQuantizeFunction : public torch::autograd::Function<FakeQuantizeFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx,
      const at::Tensor& input,
      const at::Tensor& scale,
      const at::Tensor& zero_point,
      int64_t quant_min,
      int64_t quant_max,
      int64_t axis,
      int64_t group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    // Observers update qparams in place between steps; saving a copy of the
    // (tiny) qparams keeps this graph's backward valid when they do. Learned
    // qparams are saved as they are, so autograd still sees their versions.
    const auto keep = [](const at::Tensor& t) { return t.requires_grad() ? t : t.clone(); };
    ctx->save_for_backward({input, keep(scale), keep(zero_point)});
    ctx->saved_data["quant_min"] = quant_min;
    ctx->saved_data["quant_max"] = quant_max;
    ctx->saved_data["axis"] = axis;
    ctx->saved_data["group_size"] = group_size;
    return mcuq::fake_quantize(input, scale, zero_point, quant_min, quant_max, axis, group_size);
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    const auto saved = ctx->get_saved_variables();
    const bool need_input = ctx->needs_input_grad(0);
    const bool need_scale = ctx->needs_input_grad(1);
    const bool need_zero_point = ctx->needs_input_grad(2);
    // Goes through the dispatcher so that create_graph=True reaches the
    // backward op's own autograd kernel (and its clear error).
    auto [gi, gs, gz] = mcuq::detail::fake_quantize_backward(
        grad_output[0], saved[0], saved[1], saved[2], ctx->saved_data["quant_min"].toInt(),
        ctx->saved_data["quant_max"].toInt(), ctx->saved_data["axis"].toInt(),
        ctx->saved_data["group_size"].toInt(), need_scale, need_zero_point);
    return {
        need_input ? gi : at::Tensor(), need_scale ? gs : at::Tensor(),
        need_zero_point ? gz : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
        at::Tensor()};
  }
};

at::Tensor fake_quantize_autograd(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  return FakeQuantizeFunction::apply(input, scale, zero_point, quant_min, quant_max, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_backward_autograd(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    bool need_scale_grad,
    bool need_zero_point_grad) {
  auto r = FakeQuantizeBackwardFunction::apply(
      grad, input, scale, zero_point, quant_min, quant_max, axis, group_size, need_scale_grad,
      need_zero_point_grad);
  return {r[0], r[1], r[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Autograd, m) {
  m.impl("fake_quantize", &fake_quantize_autograd);
  m.impl("_fake_quantize_backward", &fake_quantize_backward_autograd);
  // Not differentiable (integer levels; dequantize is for inference): a
  // backward through them raises instead of silently giving no gradient.
  m.impl("quantize", torch::autograd::autogradNotImplementedFallback());
  m.impl("dequantize", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace mcuq::ops
