// Shared by the CPU and Meta kernels of the histogram observer ops
// (observe_histogram_, histogram_range, _histogram_rebin_): their argument
// checks, which read no tensor data (defined in cpu/histogram.cpp), and the
// canonical-grid arithmetic, kept here as small pure functions so the rule is
// stated once.
#pragma once

#include "mcuq/ops/host_device.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <cfloat>
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

// observe_histogram_: dtypes, devices and shapes of the input and the state
// (histogram_sum, if given: float64, the histogram's shape).
HistogramLayout check_observe_histogram_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    const c10::optional<at::Tensor>& histogram_sum);

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
    double percentile,
    const c10::optional<at::Tensor>& histogram_sum);

// _histogram_rebin_: dtypes, devices and shapes of the state.
HistogramLayout check_histogram_rebin_args(
    const char* op,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const c10::optional<at::Tensor>& histogram_sum);

// ---- canonical grids ----------------------------------------------------------
//
// A histogram's bins are a canonical grid: width w = 2^e and lo = k w (k an
// integer), hi = (k + bins) w; bin i is [lo + i w, lo + (i + 1) w). Any two
// such bins are nested or disjoint, so a histogram re-bins exactly onto any
// coarser canonical grid (see cpu/histogram.cpp for the rule and the proof
// that it makes the state order-independent).

// The bin of a finite x (in float range) on the grid of width 2^e with
// lo = k 2^e and `bins` bins (inv_w = 2^-e): floor(x / w) - k, clamped to
// [0, bins - 1] (a covering grid never needs the clamp; it guards NaN too).
// x * 2^-e is exact unless it underflows (float64 subnormals under a wide
// grid), where a negative x must still give -1. On the host and, for the
// CUDA histogram kernel, on the GPU.
MCUQ_HOST_DEVICE inline double grid_floor_units(double x, double inv_w) {
  const double t = ::floor(x * inv_w);
  return (t == 0.0 && x < 0.0) ? -1.0 : t;
}
MCUQ_HOST_DEVICE inline int64_t grid_bin(double x, double k, double inv_w, int64_t bins) {
  const double t = grid_floor_units(x, inv_w) - k;
  if (!(t >= 0.0)) return 0;
  if (t >= static_cast<double>(bins - 1)) return bins - 1;
  return static_cast<int64_t>(t);
}

// A canonical grid: e, k and the derived width, lo and hi (all exact in
// double: |k| + bins < 2^53 and w a power of two within double's range).
struct CanonicalGrid {
  int e = 0;
  double k = 0.0;       // integer-valued
  double w = 0.0;       // 2^e
  double inv_w = 0.0;   // 2^-e
  double lo = 0.0, hi = 0.0;
  int64_t bins = 0;

  CanonicalGrid() = default;
  CanonicalGrid(int e_, double k_, int64_t bins_)
      : e(e_), k(k_), w(std::ldexp(1.0, e_)), inv_w(std::ldexp(1.0, -e_)), bins(bins_) {
    lo = k * w;
    hi = (k + static_cast<double>(bins)) * w;
  }

  double floor_units(double x) const { return grid_floor_units(x, inv_w); }
  int64_t bin(double x) const { return grid_bin(x, k, inv_w, bins); }
};

// float64 values are binned saturated to the float32 range, as min_val and
// max_val saturate: the grid then always fits double's range.
MCUQ_HOST_DEVICE inline double to_float_range(double v) {
  const double limit = static_cast<double>(FLT_MAX);
  return v < -limit ? -limit : (v > limit ? limit : v);
}

// The finest width a histogram whose values reach magnitude `amax` (the
// state's float32 min_val / max_val) may have: the float32 ulp of amax,
// 2^(ilogb(amax) - 23), at least 2^-149 (the float32 ulp of 0). Finer bins
// could not separate float32 values, and it gives a constant batch (even
// all zeros) a width. Non-decreasing in amax, which order independence needs.
inline int min_grid_exponent(double amax) {
  if (!(amax > 0.0)) return -149;
  return std::max(std::ilogb(std::min(amax, static_cast<double>(FLT_MAX))) - 23, -149);
}

// The canonical grid for points [m, M] (finite, in float range, m <= M):
// the smallest e >= e_min with floor(m / 2^e) 2^e + bins 2^e > M, k =
// floor(m / 2^e); every point in [m, M] then falls strictly inside, in bins
// 0 .. bins - 1. The condition holds for every e above one that satisfies it
// (doubling w moves lo down by at most the old w and hi up by
// (bins - 1) old w), so the search just counts up from a lower bound:
// bins 2^e > M - m, less one for rounding in (M - m) / bins. It stops
// within a few steps (bins >= 2: 2^e >= (M - m) / (bins - 1) suffices).
inline CanonicalGrid canonical_grid(double m, double M, int e_min, int64_t bins) {
  int e = e_min;
  const double per_bin = (M - m) / static_cast<double>(bins);
  if (per_bin > 0.0) e = std::max(e, std::ilogb(per_bin) - 1);
  for (;; ++e) {
    CanonicalGrid g(e, 0.0, bins);
    g = CanonicalGrid(e, g.floor_units(m), bins);
    if (g.hi > M) return g;
  }
}

// Whether [lo, hi] with `bins` bins is a canonical grid, and which.
inline bool grid_of_range(double lo, double hi, int64_t bins, CanonicalGrid& grid) {
  const double w = (hi - lo) / static_cast<double>(bins);
  if (!(w > 0.0) || !std::isfinite(w) || !std::isfinite(lo)) return false;
  int exp = 0;
  if (std::frexp(w, &exp) != 0.5) return false;  // not a power of two
  const CanonicalGrid g(exp - 1, std::floor(lo / w), bins);
  if (g.lo != lo || g.hi != hi || std::fabs(g.k) >= 4503599627370496.0) return false;  // 2^52
  grid = g;
  return true;
}

}  // namespace mcuq::ops
