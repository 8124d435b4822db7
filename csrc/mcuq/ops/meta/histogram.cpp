// Meta kernels of the histogram observer ops: the same argument checks as the
// CPU kernels (minus those that read values: a histogram that saw nothing, a
// corrupt histogram_range or histogram_sum) and the output shapes.
#include "mcuq/ops/cpu/histogram_math.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>

namespace mcuq::ops {
namespace {

void observe_histogram_meta(
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    const c10::optional<at::Tensor>& histogram_sum) {
  check_observe_histogram_args(
      "observe_histogram_", input, histogram, histogram_range, min_val, max_val, nonfinite_count,
      axis, histogram_sum);
}

std::tuple<at::Tensor, at::Tensor> histogram_range_meta(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool /*symmetric*/,
    c10::string_view method,
    double percentile,
    const c10::optional<at::Tensor>& histogram_sum) {
  check_histogram_range_args(
      "histogram_range", histogram, histogram_range, min_val, max_val, quant_min, quant_max,
      std::string(method.data(), method.size()), percentile, histogram_sum);
  const auto options = min_val.options().dtype(at::kFloat);
  return {at::empty_symint(min_val.sym_sizes(), options), at::empty_symint(min_val.sym_sizes(), options)};
}

void histogram_rebin_meta(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const c10::optional<at::Tensor>& histogram_sum) {
  check_histogram_rebin_args("_histogram_rebin_", histogram, histogram_range, min_val, max_val, histogram_sum);
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, Meta, m) {
  m.impl("observe_histogram_", &observe_histogram_meta);
  m.impl("histogram_range", &histogram_range_meta);
  m.impl("_histogram_rebin_", &histogram_rebin_meta);
}

}  // namespace mcuq::ops
