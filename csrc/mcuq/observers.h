// Observers for C++ programs: the same state and ops as the Python modules
// (mcuq.MinMaxObserver, mcuq.MovingAverageMinMaxObserver, mcuq.FakeQuantize),
// without Python. State lives in tensors; each call goes through the
// dispatcher.
#pragma once

#include <mcuq/ops.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <tuple>

namespace mcuq {

struct ObserverOptions {
  int64_t quant_min = 0;
  int64_t quant_max = 255;
  bool symmetric = false;
  bool power_of_two = false;
  // One range per tensor when unset; else one per group of channels along axis.
  c10::optional<int64_t> axis = c10::nullopt;
  int64_t group_size = 1;
  // Unset: running min/max; else the EMA constant in (0, 1].
  c10::optional<double> averaging_constant = c10::nullopt;
};

// Min/max range observer (running or EMA). operator() observes and returns
// its input. Bad options (group_size < 1, an axis the input lacks, channels
// group_size does not divide) throw c10::ValueError.
class MinMaxObserver {
 public:
  explicit MinMaxObserver(ObserverOptions options = {});

  at::Tensor operator()(const at::Tensor& input);

  // (scale float32, zero_point int32); throws c10::ValueError if no finite value was seen.
  std::tuple<at::Tensor, at::Tensor> calculate_qparams() const;

  const ObserverOptions& options() const { return options_; }
  const at::Tensor& min_val() const { return min_val_; }
  const at::Tensor& max_val() const { return max_val_; }
  const at::Tensor& nonfinite_count() const { return nonfinite_count_; }

 private:
  // Sizes per-channel state on the first input, as the Python modules do.
  void size_state(const at::Tensor& input);

  ObserverOptions options_;
  at::Tensor min_val_, max_val_, nonfinite_count_;
};

// Fused EMA observer + fake quantization (the QAT building block).
class FakeQuantize {
 public:
  explicit FakeQuantize(ObserverOptions options = {});

  at::Tensor operator()(const at::Tensor& input);

  void enable_observer(bool enabled = true);
  void enable_fake_quant(bool enabled = true);

  const at::Tensor& scale() const { return scale_; }
  const at::Tensor& zero_point() const { return zero_point_; }
  const at::Tensor& min_val() const { return min_val_; }
  const at::Tensor& max_val() const { return max_val_; }

 private:
  ObserverOptions options_;
  at::Tensor min_val_, max_val_, nonfinite_count_, scale_, zero_point_;
  at::Tensor observer_enabled_, fake_quant_enabled_;
};

}  // namespace mcuq
