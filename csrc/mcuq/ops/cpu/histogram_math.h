// Shared by the CPU and Meta kernels of the histogram observer ops
// (observe_histogram_, histogram_range): their argument checks, which read no
// tensor data (defined in cpu/histogram.cpp), and the binning / re-binning
// arithmetic, kept here as small pure functions so the rule is stated once.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace mcuq::ops {

// How a histogram state maps onto its input.
struct HistogramLayout {
  bool per_channel = false;  // histogram is [channels, bins]
  int64_t channels = 1;      // 1 when per-tensor
  int64_t bins = 0;
  int64_t axis = 0;          // canonical (non-negative) channel axis, per-channel only
};

enum class RangeMethod { kMinMax, kPercentile, kMse, kEntropy };

// observe_histogram_: dtypes, devices and shapes of the input and the state.
HistogramLayout check_observe_histogram_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis);

// histogram_range: the state, the integer range, the method and (for
// "percentile") the percentile.
struct HistogramRangeArgs {
  HistogramLayout layout;
  RangeMethod method = RangeMethod::kMse;
};
HistogramRangeArgs check_histogram_range_args(
    const char* op,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    const std::string& method,
    double percentile);

// The bin of a finite x in a histogram of `bins` bins of `width` from `lo`:
// floor((x - lo) / width), clamped to [0, bins - 1]. A zero-width range puts
// everything in bin 0.
inline int64_t bin_index(double x, double lo, double width, int64_t bins) {
  if (!(width > 0.0)) {
    return 0;
  }
  const double t = std::floor((x - lo) / width);
  if (!(t >= 0.0)) {
    return 0;  // also catches NaN from overflowing ranges
  }
  if (t >= static_cast<double>(bins - 1)) {
    return bins - 1;
  }
  return static_cast<int64_t>(t);
}

// How to re-bin a histogram over [lo, hi] so that it covers [new_min,
// new_max] (which contains [lo, hi]).
//
// Exact rule: with w = (hi - lo) / bins, the new histogram has width f * w
// and starts j old widths below lo, so new bin edges are old bin edges and
// old bin i moves whole into new bin (i + j) / f. j is the smallest shift
// that covers new_min, then f the smallest factor that also covers new_max
// (a larger j only moves the range away from new_max, so this is also the
// smallest f overall).
//
// Fallback (factor == 0): when the old range has zero width, or the growth
// is so large (f > 2^40) that old bins collapse anyway, the new range is
// exactly [new_min, new_max] and each old bin's mass goes to the new bin of
// its centre (of lo, for a zero-width range).
struct RebinPlan {
  double lo = 0.0, hi = 0.0;  // the new range
  int64_t factor = 0;         // f; 0 selects the fallback
  int64_t shift = 0;          // j
};

inline RebinPlan plan_rebin(double lo, double hi, int64_t bins, double new_min, double new_max) {
  // 2^40: beyond it old bins collapse into one or two new ones anyway.
  constexpr double kMaxFactor = 1099511627776.0;
  const double b = static_cast<double>(bins);
  const double w = (hi - lo) / b;
  if (w > 0.0 && std::isfinite(w)) {
    double j = std::max(0.0, std::ceil((lo - new_min) / w));
    double f = std::max(1.0, std::ceil((j + (new_max - lo) / w) / b));
    // The estimates above can be off by one through rounding; the stored
    // range must really cover [new_min, new_max] (else the next batch would
    // re-bin again for nothing). A few steps fix that; more means the
    // arithmetic is hopeless (|lo| >> w) and the fallback takes over.
    for (int step = 0; step < 4 && lo - j * w > new_min; ++step) j += 1.0;
    f = std::max(f, std::ceil((j + (new_max - lo) / w) / b));
    for (int step = 0; step < 4 && lo + (b * f - j) * w < new_max; ++step) f += 1.0;
    if (f <= kMaxFactor && j <= b * f - b && lo - j * w <= new_min &&
        lo + (b * f - j) * w >= new_max) {
      return {lo - j * w, lo + (b * f - j) * w, static_cast<int64_t>(f), static_cast<int64_t>(j)};
    }
  }
  return {new_min, new_max, 0, 0};
}

}  // namespace mcuq::ops
