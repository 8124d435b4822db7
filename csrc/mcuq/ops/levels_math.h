// The per-element rule of the non-uniform ops (fake_quantize_levels,
// quantize_levels; DESIGN.md §3, eq. 3 of the method review):
// Q(x) = levels[i] for x in [thresholds[i-1], thresholds[i]), i.e. the index
// is the number of thresholds <= x. A value on a threshold goes to the upper
// level. Comparisons are in double, exact for every float32, float16 and
// bfloat16 input and float32 threshold. NaN has no interval: it maps to the
// level nearest 0 (the uniform ops map it to the zero point, the value 0).
#pragma once

#include "mcuq/ops/host_device.h"

#include <cstdint>

namespace mcuq::ops::lv {

// Index of x among n levels, given the n - 1 sorted thresholds.
MCUQ_HOST_DEVICE inline int64_t level_index(double x, const double* thresholds, int64_t n, int64_t nan_index) {
  if (x != x) return nan_index;
  int64_t lo = 0, hi = n - 1;  // the answer is in [lo, hi]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (x >= thresholds[mid]) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace mcuq::ops::lv
