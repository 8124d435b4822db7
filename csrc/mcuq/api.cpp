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

std::tuple<at::Tensor, at::Tensor> choose_qparams(
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two) {
  static const auto op = op_handle<decltype(choose_qparams)>("mcuq::choose_qparams");
  return op.call(min_val, max_val, quant_min, quant_max, symmetric, power_of_two);
}

void observe_minmax_(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    c10::optional<double> averaging_constant,
    int64_t axis,
    int64_t group_size) {
  static const auto op = op_handle<decltype(observe_minmax_)>("mcuq::observe_minmax_");
  op.call(input, min_val, max_val, nonfinite_count, averaging_constant, axis, group_size);
}

void observe_histogram_(
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    const c10::optional<at::Tensor>& histogram_sum) {
  static const auto op = op_handle<decltype(observe_histogram_)>("mcuq::observe_histogram_");
  op.call(input, histogram, histogram_range, min_val, max_val, nonfinite_count, axis, histogram_sum);
}

std::tuple<at::Tensor, at::Tensor> histogram_range(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    c10::string_view method,
    double percentile,
    const c10::optional<at::Tensor>& histogram_sum) {
  static const auto op = op_handle<decltype(mcuq::histogram_range)>("mcuq::histogram_range");
  return op.call(
      histogram, histogram_range, min_val, max_val, quant_min, quant_max, symmetric, method,
      percentile, histogram_sum);
}

at::Tensor observe_fake_quantize(
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
  static const auto op = op_handle<decltype(observe_fake_quantize)>("mcuq::observe_fake_quantize");
  return op.call(
      input, min_val, max_val, nonfinite_count, scale, zero_point, observer_enabled,
      fake_quant_enabled, averaging_constant, quant_min, quant_max, symmetric, power_of_two, axis,
      group_size);
}

at::Tensor fake_quantize_dynamic(
    const at::Tensor& input,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    c10::optional<int64_t> axis) {
  static const auto op = op_handle<decltype(fake_quantize_dynamic)>("mcuq::fake_quantize_dynamic");
  return op.call(input, quant_min, quant_max, symmetric, axis);
}

at::Tensor fake_quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size) {
  static const auto op = op_handle<decltype(fake_quantize_levels)>("mcuq::fake_quantize_levels");
  return op.call(input, levels, thresholds, axis, group_size);
}

at::Tensor quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  static const auto op = op_handle<decltype(quantize_levels)>("mcuq::quantize_levels");
  return op.call(input, levels, thresholds, axis, group_size, dtype);
}

at::Tensor dequantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  static const auto op = op_handle<decltype(dequantize_levels)>("mcuq::dequantize_levels");
  return op.call(input, levels, axis, group_size, dtype);
}

std::tuple<at::Tensor, at::Tensor> uniform_levels(
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max) {
  static const auto op = op_handle<decltype(uniform_levels)>("mcuq::uniform_levels");
  return op.call(scale, zero_point, quant_min, quant_max);
}

std::tuple<at::Tensor, at::Tensor> fit_levels(
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method,
    c10::optional<int64_t> axis,
    int64_t group_size,
    int64_t iterations) {
  static const auto op = op_handle<decltype(fit_levels)>("mcuq::fit_levels");
  return op.call(input, bits, method, axis, group_size, iterations);
}

namespace detail {
std::tuple<at::Tensor, at::Tensor> fake_quantize_levels_backward(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    bool need_levels_grad) {
  static const auto op =
      op_handle<decltype(fake_quantize_levels_backward)>("mcuq::_fake_quantize_levels_backward");
  return op.call(grad, input, levels, thresholds, axis, group_size, need_levels_grad);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> finite_aminmax(
    const at::Tensor& input,
    c10::optional<int64_t> axis,
    int64_t group_size) {
  static const auto op = op_handle<decltype(finite_aminmax)>("mcuq::_finite_aminmax");
  return op.call(input, axis, group_size);
}

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

namespace mcuq {

std::tuple<at::Tensor, at::Tensor> quantize_multiplier(const at::Tensor& real_multiplier) {
  static const auto op = op_handle<decltype(quantize_multiplier)>("mcuq::quantize_multiplier");
  return op.call(real_multiplier);
}

at::Tensor requantize(
    const at::Tensor& input,
    const at::Tensor& multiplier,
    const at::Tensor& shift,
    int64_t zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    c10::string_view rounding) {
  static const auto op = op_handle<decltype(requantize)>("mcuq::requantize");
  return op.call(input, multiplier, shift, zero_point, quant_min, quant_max, axis, rounding);
}

}  // namespace mcuq
