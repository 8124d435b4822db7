// The error the histogram "mse" range search minimizes: the histogram's
// values, each bin's mass spread uniformly over the bin, quantized on the grid
// of a candidate range (choose_qparams' float32 scale and zero point; levels
// (q - z) s, decision boundaries halfway between, clipping beyond the end
// levels). The integral is in closed form for that model and computed one of
// two ways, whichever is cheaper:
//   by_bins   one closed form per non-empty bin: O(non-empty bins), whatever
//             the number of levels (16- and 32-bit grids);
//   by_cells  one closed form per grid cell from cumulative moments of the
//             mass: O(cells that meet the data), at most the number of levels
//             (8-bit grids over fine histograms). Differences of large
//             cumulative moments cost it precision: about 1e-8 relative on
//             4097 bins, against 1e-13 per bin; far below what separates
//             the candidate ranges.
// Pure C++ on raw counts, so tests can compare the two.
#pragma once

#include "mcuq/ops/qparams.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mcuq::ops {

class HistogramGridError {
 public:
  // counts[i] is the mass of [lo + i w, lo + (i + 1) w).
  HistogramGridError(const int64_t* counts, int64_t bins, double lo, double w)
      : m_(counts), bins_(bins), lo_(lo), w_(w), f0_(bins + 1, 0.0), f1_(bins + 1, 0.0), f2_(bins + 1, 0.0) {
    for (int64_t i = 0; i < bins; ++i) {
      const double m = static_cast<double>(counts[i]);
      const double u = static_cast<double>(i);
      f0_[i + 1] = f0_[i] + m;
      f1_[i + 1] = f1_[i] + m * (u + 0.5);
      f2_[i + 1] = f2_[i] + m * (u * u + u + 1.0 / 3.0);
      if (counts[i] != 0) {
        first_ = std::min(first_, i);
        last_ = i;
        ++nonempty_;
      }
    }
  }

  // Squared error times mass, in the data's units.
  double operator()(float range_min, float range_max, int64_t quant_min, int64_t quant_max, bool symmetric) const {
    const Grid g = grid(range_min, range_max, quant_min, quant_max, symmetric);
    return cells(g) <= static_cast<double>(nonempty_) ? by_cells(g) : by_bins(g);
  }
  double by_bins(float range_min, float range_max, int64_t quant_min, int64_t quant_max, bool symmetric) const {
    return by_bins(grid(range_min, range_max, quant_min, quant_max, symmetric));
  }
  double by_cells(float range_min, float range_max, int64_t quant_min, int64_t quant_max, bool symmetric) const {
    return by_cells(grid(range_min, range_max, quant_min, quant_max, symmetric));
  }

 private:
  struct Grid {
    double s;                     // scale
    double low_level, high_level; // the end levels
    double low_edge, high_edge;   // rounding happens between these
  };

  static Grid grid(float range_min, float range_max, int64_t quant_min, int64_t quant_max, bool symmetric) {
    const QParams qp = qparams_from_range(range_min, range_max, quant_min, quant_max, symmetric, false);
    Grid g;
    g.s = qp.scale;
    g.low_level = static_cast<double>(quant_min - qp.zero_point) * g.s;
    g.high_level = static_cast<double>(quant_max - qp.zero_point) * g.s;
    g.low_edge = g.low_level + 0.5 * g.s;
    g.high_edge = g.high_level - 0.5 * g.s;
    return g;
  }

  // The data's extent and the cells of the grid it meets (rounding interval).
  double data_lo() const { return lo_ + static_cast<double>(first_) * w_; }
  double data_hi() const { return lo_ + static_cast<double>(last_ + 1) * w_; }
  double cells(const Grid& g) const {
    if (nonempty_ == 0) return 0.0;
    const double a = std::max(data_lo(), g.low_edge), b = std::min(data_hi(), g.high_edge);
    if (!(b > a)) return 0.0;
    return std::floor(b / g.s + 0.5) - std::floor(a / g.s + 0.5) + 1.0;
  }

  double by_bins(const Grid& g) const {
    const double cell = g.s * g.s * g.s / 12.0, inv_s = 1.0 / g.s;
    // The integral over [u, v] of (x - level)^2.
    const auto clipped = [](double u, double v, double level) {
      const double d0 = u - level, d1 = v - level;
      return (v - u) * (d1 * d1 + d1 * d0 + d0 * d0) / 3.0;
    };
    // The integral over [u, v] of (x - s round(x / s))^2: whole cells give
    // s^3 / 12 each, plus the partial cells at both ends.
    const auto rounded = [&](double u, double v) {
      const double nu = std::floor(u * inv_s + 0.5), nv = std::floor(v * inv_s + 0.5);
      const double cu = u - nu * g.s, cv = v - nv * g.s;
      return (nv - nu) * cell + (cv * cv * cv - cu * cu * cu) / 3.0;
    };
    double total = 0.0;
    for (int64_t i = first_; i <= last_; ++i) {
      if (m_[i] == 0) continue;
      const double a = lo_ + static_cast<double>(i) * w_, b = a + w_;
      double acc = 0.0;
      if (a < g.low_edge) acc += clipped(a, std::min(b, g.low_edge), g.low_level);
      if (b > g.high_edge) acc += clipped(std::max(a, g.high_edge), b, g.high_level);
      const double u = std::max(a, g.low_edge), v = std::min(b, g.high_edge);
      if (v > u) acc += rounded(u, v);
      total += static_cast<double>(m_[i]) / w_ * acc;
    }
    return total;
  }

  // Cumulative moments at u (bin units from lo): the integrals over [0, u] of
  // t^k times the mass density (m_i per unit on [i, i + 1)).
  void moments_at(double u, double& F0, double& F1, double& F2) const {
    u = std::clamp(u, 0.0, static_cast<double>(bins_));
    const int64_t i = std::min<int64_t>(static_cast<int64_t>(u), bins_ - 1);
    const double m = static_cast<double>(m_[i]), b = static_cast<double>(i), d = u - b;
    F0 = f0_[i] + m * d;
    F1 = f1_[i] + m * d * (b + 0.5 * d);
    F2 = f2_[i] + m * d * (b * b + b * d + d * d / 3.0);
  }
  struct Moments {
    double f0, f1, f2;
  };
  // In bin units: u = (x - lo) / w.
  Moments moments_at_x(double x) const {
    Moments mo;
    moments_at((x - lo_) / w_, mo.f0, mo.f1, mo.f2);
    return mo;
  }
  // The integral between two points (their cumulative moments) of
  // (x - level)^2 times the mass density, in data units.
  double square(const Moments& a, const Moments& b, double level) const {
    const double d0 = b.f0 - a.f0;
    if (d0 == 0.0) return 0.0;  // no mass: sparse tails cost nothing
    const double l = (level - lo_) / w_;
    return std::max(0.0, (b.f2 - a.f2) - 2.0 * l * (b.f1 - a.f1) + l * l * d0) * w_ * w_;
  }
  double square(double x0, double x1, double level) const {
    return x1 > x0 ? square(moments_at_x(x0), moments_at_x(x1), level) : 0.0;
  }

  double by_cells(const Grid& g) const {
    if (nonempty_ == 0) return 0.0;
    const double lo = data_lo(), hi = data_hi();
    double total = square(lo, std::min(hi, g.low_edge), g.low_level) +
        square(std::max(lo, g.high_edge), hi, g.high_level);
    const double a = std::max(lo, g.low_edge), b = std::min(hi, g.high_edge);
    if (b > a) {
      // Cells [(n - 1/2) s, (n + 1/2) s), cut to [a, b]; each boundary's
      // moments are computed once.
      const double n0 = std::floor(a / g.s + 0.5), n1 = std::floor(b / g.s + 0.5);
      Moments left = moments_at_x(a);
      for (double n = n0; n <= n1; n += 1.0) {
        const Moments right = moments_at_x(std::min(b, (n + 0.5) * g.s));
        total += square(left, right, n * g.s);
        left = right;
      }
    }
    return total;
  }

  const int64_t* m_;
  int64_t bins_;
  double lo_, w_;
  std::vector<double> f0_, f1_, f2_;  // at the bin edges [bins + 1]
  int64_t first_ = INT64_MAX, last_ = -1, nonempty_ = 0;
};

}  // namespace mcuq::ops
