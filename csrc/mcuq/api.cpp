// The C++ API: thin calls through the dispatcher (see ops.h).
#include "mcuq/mcuq.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace mcuq {
namespace {

template <typename Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

const char* version() {
  return MCUQ_VERSION;
}

at::Tensor fake_quantize(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  static const auto op = op_handle<decltype(fake_quantize)>("mcuq::fake_quantize");
  return op.call(input, scale, zero_point, quant_min, quant_max, axis, group_size);
}

at::Tensor quantize(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  static const auto op = op_handle<decltype(quantize)>("mcuq::quantize");
  return op.call(input, scale, zero_point, quant_min, quant_max, axis, group_size, dtype);
}

at::Tensor dequantize(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  static const auto op = op_handle<decltype(dequantize)>("mcuq::dequantize");
  return op.call(input, scale, zero_point, quant_min, quant_max, axis, group_size, dtype);
}

namespace detail {
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
    bool need_zero_point_grad) {
  static const auto op = op_handle<decltype(fake_quantize_backward)>("mcuq::_fake_quantize_backward");
  return op.call(
      grad, input, scale, zero_point, quant_min, quant_max, axis, group_size, need_scale_grad,
      need_zero_point_grad);
}
}  // namespace detail

}  // namespace mcuq
