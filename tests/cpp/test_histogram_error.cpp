// The histogram "mse" search's error model (ops/cpu/histogram_error.h): its
// two evaluations (per bin, per grid cell) agree, and known integrals.
#include "mcuq/ops/cpu/histogram_error.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace {

using mcuq::ops::HistogramGridError;

TEST(HistogramGridError, UniformMassOnUnitLevelsIsOneTwelfth) {
  // Mass 6 spread over [0, 1); levels at the integers (s = 1): the integral
  // of (x - round(x))^2 over [0, 1) is 1/12.
  const std::vector<int64_t> counts{6};
  const HistogramGridError error(counts.data(), 1, 0.0, 1.0);
  EXPECT_NEAR(error.by_bins(-127.5f, 127.5f, -128, 127, true), 0.5, 1e-12);
  EXPECT_NEAR(error.by_cells(-127.5f, 127.5f, -128, 127, true), 0.5, 1e-12);
}

TEST(HistogramGridError, ClippedMassCostsItsDistanceToTheEndLevel) {
  // Mass 3 uniform on [300, 301), levels 0..255 with s = 1 (range [0, 255]):
  // all of it clips to 255, costing 3 * integral over [45, 46] of t^2 = 46^3 - 45^3.
  const std::vector<int64_t> counts{3};
  const HistogramGridError error(counts.data(), 1, 300.0, 1.0);
  EXPECT_NEAR(error.by_bins(0.0f, 255.0f, 0, 255, false), 6211.0, 1e-9);
  EXPECT_NEAR(error.by_cells(0.0f, 255.0f, 0, 255, false), 6211.0, 1e-9);
}

TEST(HistogramGridError, PerBinAndPerCellAgree) {
  std::mt19937_64 rng(20261126);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t bins = trial % 10 == 0 ? 4097 : std::uniform_int_distribution<int64_t>(1, 600)(rng);
    const double w = std::ldexp(1.0, std::uniform_int_distribution<int>(-8, 3)(rng));
    const double lo = w * std::uniform_int_distribution<int64_t>(-bins, 0)(rng);
    const double fill = std::uniform_real_distribution<double>(0.01, 1.0)(rng);
    std::vector<int64_t> counts(bins, 0);
    for (auto& c : counts) {
      if (std::uniform_real_distribution<double>(0.0, 1.0)(rng) < fill) {
        c = std::uniform_int_distribution<int64_t>(1, 100000)(rng);
      }
    }
    const HistogramGridError error(counts.data(), bins, lo, w);
    const double hi = lo + w * static_cast<double>(bins);
    std::uniform_real_distribution<double> in(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo));
    const int64_t qmax = (trial % 3 == 0) ? 7 : (trial % 3 == 1 ? 127 : 255);
    const int64_t qmin = qmax == 255 ? 0 : -qmax - 1;
    for (int k = 0; k < 10; ++k) {
      float a = static_cast<float>(in(rng)), b = static_cast<float>(in(rng));
      if (a > b) std::swap(a, b);
      const bool symmetric = k % 2 == 1;
      const double by_bins = error.by_bins(a, b, qmin, qmax, symmetric);
      const double by_cells = error.by_cells(a, b, qmin, qmax, symmetric);
      // by_cells loses ~1e-8 relative to cancellation on 4097 bins (see the header).
      EXPECT_NEAR(by_cells, by_bins, 1e-7 * by_bins + 1e-12) << "trial " << trial << " range " << a << ", " << b;
    }
  }
}

}  // namespace
