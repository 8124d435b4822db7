#include "mcuq/observers.h"

#include <ATen/ATen.h>

#include <limits>

namespace mcuq {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Entries of the range state for this input: 1, or the channel groups along
// axis (checked as the ops check them, before dividing by group_size).
int64_t range_entries(const ObserverOptions& o, const at::Tensor& input) {
  if (!o.axis.has_value()) return 1;
  return std::get<0>(detail::finite_aminmax(
                         at::empty(input.sizes(), input.options().device(at::kMeta)), o.axis,
                         o.group_size))
      .numel();
}

// Re-creates state tensors with n entries when the input needs another size.
void resize_state(int64_t n, at::Tensor& min_val, at::Tensor& max_val) {
  if (n > 0 && min_val.numel() != n) {
    min_val = at::full({n}, kInf, min_val.options());
    max_val = at::full({n}, -kInf, max_val.options());
  }
}

}  // namespace

MinMaxObserver::MinMaxObserver(ObserverOptions options)
    : options_(options),
      min_val_(at::full({1}, kInf, at::kFloat)),
      max_val_(at::full({1}, -kInf, at::kFloat)),
      nonfinite_count_(at::zeros({1}, at::kLong)) {}

void MinMaxObserver::size_state(const at::Tensor& input) {
  resize_state(range_entries(options_, input), min_val_, max_val_);
}

at::Tensor MinMaxObserver::operator()(const at::Tensor& input) {
  size_state(input);
  observe_minmax_(
      input.detach(), min_val_, max_val_, nonfinite_count_, options_.averaging_constant,
      options_.axis.value_or(0), options_.group_size);
  return input;
}

std::tuple<at::Tensor, at::Tensor> MinMaxObserver::calculate_qparams() const {
  return choose_qparams(
      min_val_, max_val_, options_.quant_min, options_.quant_max, options_.symmetric,
      options_.power_of_two);
}

FakeQuantize::FakeQuantize(ObserverOptions options)
    : options_(options),
      min_val_(at::full({1}, kInf, at::kFloat)),
      max_val_(at::full({1}, -kInf, at::kFloat)),
      nonfinite_count_(at::zeros({1}, at::kLong)),
      scale_(at::ones({1}, at::kFloat)),
      zero_point_(at::zeros({1}, at::kInt)),
      observer_enabled_(at::ones({1}, at::kByte)),
      fake_quant_enabled_(at::ones({1}, at::kByte)) {
  if (!options_.averaging_constant.has_value()) {
    options_.averaging_constant = 0.01;  // torch.ao's FakeQuantize default
  }
}

at::Tensor FakeQuantize::operator()(const at::Tensor& input) {
  const int64_t n = range_entries(options_, input);
  if (n > 0 && min_val_.numel() != n) {
    resize_state(n, min_val_, max_val_);
    scale_ = at::ones({n}, at::kFloat);
    zero_point_ = at::zeros({n}, at::kInt);
  }
  return observe_fake_quantize(
      input, min_val_, max_val_, nonfinite_count_, scale_, zero_point_, observer_enabled_,
      fake_quant_enabled_, options_.averaging_constant, options_.quant_min, options_.quant_max,
      options_.symmetric, options_.power_of_two, options_.axis.value_or(0), options_.group_size);
}

void FakeQuantize::enable_observer(bool enabled) {
  observer_enabled_.fill_(enabled ? 1 : 0);
}

void FakeQuantize::enable_fake_quant(bool enabled) {
  fake_quant_enabled_.fill_(enabled ? 1 : 0);
}

}  // namespace mcuq
