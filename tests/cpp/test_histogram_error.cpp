// The histogram "mse" search's error model (ops/cpu/histogram_error.h): its
// two evaluations (per bin, per grid cell) agree, without sums (mass uniform
// in each bin) and with them (a linear density around each bin's mean), and
// known values.
#include "mcuq/ops/cpu/histogram_error.h"

#include <gtest/gtest.h>

#include <cmath>
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

TEST(HistogramGridError, SumsShapeEachBinAroundItsMean) {
  // One bin [0, 1) of mass 3, levels 4 apart (symmetric int8 on [-510, 510]):
  // all of it rounds to 0, so the error is 3 E[x^2] = 3 (mean^2 + variance).
  const std::vector<int64_t> counts{3};
  const auto error = [&](double mean) {
    const std::vector<double> sums{3.0 * mean};
    const HistogramGridError e(counts.data(), 1, 0.0, 1.0, sums.data());
    const double by_bins = e.by_bins(-510.0f, 510.0f, -128, 127, true);
    EXPECT_NEAR(e.by_cells(-510.0f, 510.0f, -128, 127, true), by_bins, 1e-12) << mean;
    return by_bins;
  };
  // At the centre: uniform (variance 1/12), as without sums.
  EXPECT_NEAR(error(0.5), 3.0 * (0.25 + 1.0 / 12.0), 1e-12);
  const HistogramGridError uniform(counts.data(), 1, 0.0, 1.0);
  EXPECT_NEAR(uniform.by_bins(-510.0f, 510.0f, -128, 127, true), 3.0 * (0.25 + 1.0 / 12.0), 1e-12);
  // Within 1/6 of it: the linear density 1 + 12 (mean - 1/2) (x - 1/2),
  // variance 1/12 - (mean - 1/2)^2.
  EXPECT_NEAR(error(0.6), 3.0 * (0.36 + 1.0 / 12.0 - 0.01), 1e-12);
  // At 2/3: the triangle 2x on [0, 1], variance 1/18.
  EXPECT_NEAR(error(2.0 / 3.0), 3.0 * (4.0 / 9.0 + 1.0 / 18.0), 1e-12);
  // At 0.9: the triangle rising to 1 on [0.7, 1], variance 0.3^2 / 18.
  EXPECT_NEAR(error(0.9), 3.0 * (0.81 + 0.09 / 18.0), 1e-12);
  // At 0.2: the triangle falling from 0 on [0, 0.6], variance 0.6^2 / 18.
  EXPECT_NEAR(error(0.2), 3.0 * (0.04 + 0.36 / 18.0), 1e-12);
  // On the lower edge: a point.
  EXPECT_NEAR(error(0.0), 0.0, 1e-12);
}

TEST(HistogramGridError, PointsCostTheirDistanceToTheirLevel) {
  // Bins of width 1/4 from -2; levels at multiples of s = 1/2 (symmetric
  // int8 on [-63.75, 63.75]: s = 63.75 / 127.5). All values on lower bin
  // edges: bin 9 ([0.25, 0.5)) 4 values at 0.25 (on a decision boundary:
  // 4 * 0.25^2 either way), bin 10 2 values at 0.5 (on a level: 0), bin 0
  // 1 value at -2 (on a level: 0), bin 15 ([1.75, 2)) 3 at 1.75 (3 * 0.25^2).
  std::vector<int64_t> counts(16, 0);
  std::vector<double> sums(16, 0.0);
  counts[9] = 4, sums[9] = 1.0;
  counts[10] = 2, sums[10] = 1.0;
  counts[0] = 1, sums[0] = -2.0;
  counts[15] = 3, sums[15] = 5.25;
  const HistogramGridError error(counts.data(), 16, -2.0, 0.25, sums.data());
  const double expected = 4 * 0.0625 + 3 * 0.0625;
  EXPECT_NEAR(error.by_bins(-63.75f, 63.75f, -128, 127, true), expected, 1e-12);
  EXPECT_NEAR(error.by_cells(-63.75f, 63.75f, -128, 127, true), expected, 1e-12);
  // Without sums the same counts are spread over their bins.
  const HistogramGridError uniform(counts.data(), 16, -2.0, 0.25);
  EXPECT_GT(std::fabs(uniform.by_bins(-63.75f, 63.75f, -128, 127, true) - expected), 0.1);
}

TEST(HistogramGridError, ClippedMassAroundItsMean) {
  // 3 values of mean 300.25 in [300, 301), levels 0..255 (s = 1): the
  // triangle falling from 300 on [300, 300.75] (variance 0.75^2 / 18), all
  // clipped to 255: 3 (45.25^2 + 0.75^2 / 18).
  const std::vector<int64_t> counts{3};
  const std::vector<double> sums{900.75};
  const HistogramGridError error(counts.data(), 1, 300.0, 1.0, sums.data());
  const double expected = 3 * (45.25 * 45.25 + 0.5625 / 18.0);
  EXPECT_NEAR(error.by_bins(0.0f, 255.0f, 0, 255, false), expected, 1e-9);
  EXPECT_NEAR(error.by_cells(0.0f, 255.0f, 0, 255, false), expected, 1e-9);
}

TEST(HistogramGridError, MeansAreClampedIntoTheirBin) {
  // Sums that put the mean outside [a, a + w) (rounding, or a corrupt state)
  // count as a point at the nearer edge: here bin [1, 2) with means 0.5 and
  // 7 count as 1 and (just below) 2; levels at the integers.
  const std::vector<int64_t> counts{0, 1};
  for (const double sum : {0.5, 7.0}) {
    const std::vector<double> sums{0.0, sum};
    const HistogramGridError error(counts.data(), 2, 0.0, 1.0, sums.data());
    EXPECT_NEAR(error.by_bins(-127.5f, 127.5f, -128, 127, true), 0.0, 1e-12) << sum;
    EXPECT_NEAR(error.by_cells(-127.5f, 127.5f, -128, 127, true), 0.0, 1e-12) << sum;
  }
}

// Random histograms (fine and coarse, sparse and dense; with sums, means
// anywhere: near the centre, at the edges, points on levels and on
// decision boundaries) and random ranges: by_cells == by_bins.
void check_agreement(bool with_sums) {
  std::mt19937_64 rng(with_sums ? 20260201 : 20261126);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t bins = trial % 10 == 0 ? 4097 : std::uniform_int_distribution<int64_t>(1, 600)(rng);
    const double w = std::ldexp(1.0, std::uniform_int_distribution<int>(-8, 3)(rng));
    const double lo = w * std::uniform_int_distribution<int64_t>(-bins, 0)(rng);
    const double fill = std::uniform_real_distribution<double>(0.01, 1.0)(rng);
    std::vector<int64_t> counts(bins, 0);
    std::vector<double> sums(bins, 0.0);
    for (int64_t i = 0; i < bins; ++i) {
      if (std::uniform_real_distribution<double>(0.0, 1.0)(rng) < fill) {
        counts[i] = std::uniform_int_distribution<int64_t>(1, 100000)(rng);
        // The mean: anywhere in the bin, near its centre (a linear density),
        // on its lower edge (a point) or rounded up to its upper edge.
        const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
        const double f = kind == 0 ? 0.0
            : kind == 1           ? 1.0
            : kind <= 4           ? std::uniform_real_distribution<double>(1.0 / 3.0, 2.0 / 3.0)(rng)
                                  : std::uniform_real_distribution<double>(0.0, 1.0)(rng);
        sums[i] = static_cast<double>(counts[i]) * (lo + (static_cast<double>(i) + f) * w);
      }
    }
    const HistogramGridError error(counts.data(), bins, lo, w, with_sums ? sums.data() : nullptr);
    const double hi = lo + w * static_cast<double>(bins);
    std::uniform_real_distribution<double> in(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo));
    const int64_t qmax = (trial % 3 == 0) ? 7 : (trial % 3 == 1 ? 127 : 255);
    const int64_t qmin = qmax == 255 ? 0 : -qmax - 1;
    for (int k = 0; k < 10; ++k) {
      float a = static_cast<float>(in(rng)), b = static_cast<float>(in(rng));
      if (a > b) std::swap(a, b);
      if (k == 6 || k == 8) {
        // Affine, the step w or 2 w where the range includes 0: means on
        // lower bin edges sit on levels (k == 8) or on cell boundaries.
        const double step = k == 8 ? w : 2 * w;
        a = static_cast<float>(lo);
        b = static_cast<float>(lo + step * static_cast<double>(qmax - qmin));
      }
      const bool symmetric = k % 2 == 1;
      const double by_bins = error.by_bins(a, b, qmin, qmax, symmetric);
      const double by_cells = error.by_cells(a, b, qmin, qmax, symmetric);
      // by_cells loses ~1e-8 relative to cancellation on 4097 bins (see the header).
      EXPECT_NEAR(by_cells, by_bins, 1e-7 * by_bins + 1e-12)
          << (with_sums ? "with sums" : "uniform") << ", trial " << trial << " range " << a << ", " << b;
    }
  }
}

TEST(HistogramGridError, PerBinAndPerCellAgree) {
  check_agreement(false);
}

TEST(HistogramGridError, PerBinAndPerCellAgreeWithSums) {
  check_agreement(true);
}

}  // namespace
