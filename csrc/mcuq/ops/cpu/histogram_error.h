// The error the histogram "mse" range search minimizes: the histogram's
// values quantized on the grid of a candidate range (choose_qparams' float32
// scale and zero point; levels (q - z) s, decision boundaries halfway
// between, clipping beyond the end levels), each bin's mass spread over the
// bin with a density that is linear in x:
//   without sums  uniform over the bin [a, a + w);
//   with sums     the bin's mean mu = sum / count (clamped into the bin)
//                 kept: the linear density on the bin with mean mu where
//                 |mu - centre| <= w / 6, else a triangle rising to the
//                 bin's near edge on the support that gives mean mu (3 times
//                 mu's distance to that edge; a point at mu on the edge).
// The mean places a spike of equal values (a bias where the input is all
// zeros) where it is, where the uniform model misjudges its error by up to
// half a bin; the spread keeps smooth data smooth (point masses at the means
// would see the grid's levels line up with the bins at some scales and
// misjudge the rounding error there).
// The error is in closed form and computed one of two ways, whichever is
// cheaper:
//   by_bins   one closed form per non-empty bin: O(non-empty bins), whatever
//             the number of levels (16- and 32-bit grids);
//   by_cells  one closed form per grid cell from cumulative moments of the
//             mass: O(cells that meet the data), at most the number of levels
//             (8-bit grids over fine histograms). Differences of large
//             cumulative moments cost it precision: about 1e-8 relative on
//             4097 bins, against 1e-13 per bin; far below what separates
//             the candidate ranges.
// A point exactly on a decision boundary is equally far from the levels on
// both sides, so the two ways agree whichever side each puts it on.
// Pure C++ on raw counts and sums, so tests can compare the two.
#pragma once

#include "mcuq/ops/qparams.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mcuq::ops {

class HistogramGridError {
 public:
  // counts[i] is the mass of [lo + i w, lo + (i + 1) w); sums[i], if given,
  // the sum of its values.
  HistogramGridError(const int64_t* counts, int64_t bins, double lo, double w, const double* sums = nullptr)
      : m_(counts), bins_(bins), lo_(lo), w_(w), shape_(bins), partial_(bins), f0_(bins + 1, 0.0),
        f1_(bins + 1, 0.0), f2_(bins + 1, 0.0) {
    for (int64_t i = 0; i < bins; ++i) {
      const double m = static_cast<double>(counts[i]);
      const double u = static_cast<double>(i);
      Shape& sh = shape_[i];
      sh = {u, u + 1.0, 0.0};
      if (sums != nullptr && counts[i] != 0) {
        // The mean in bin units, in [i, i + 1): a sum rounded up to the
        // upper edge (or a corrupt one) stays in its bin, so that supports
        // are disjoint and ascend with i, and all lie below data_hi().
        double t = (sums[i] / m - lo) / w;
        t = std::isnan(t) ? u + 0.5 : std::clamp(t, u, std::nextafter(u + 1.0, u));
        const double d = t - (u + 0.5);
        if (d > 1.0 / 6.0) {
          sh = {u + 1.0 - 3.0 * (u + 1.0 - t), u + 1.0, 1.0};
        } else if (d < -1.0 / 6.0) {
          sh = {u, u + 3.0 * (t - u), -1.0};
        } else {
          sh.k = 6.0 * d;
        }
        if (!(sh.q > sh.p)) sh = {t, t, 0.0};  // a point on the lower edge
      }
      // Mean and variance of the bin's density: the support's centre plus
      // k L / 6, and L^2 / 12 - k^2 L^2 / 36.
      const double len = sh.q - sh.p, mean = 0.5 * (sh.p + sh.q) + sh.k * len / 6.0;
      const double var = len * len * (1.0 / 12.0 - sh.k * sh.k / 36.0);
      // The moments of the part of the bin below p + e, e in [0, L], as
      // polynomials in e (see moments_at): the mass density there is
      // c0 + c1 e, G0 = c0 e + c1 e^2 / 2, G1 = c0 e^2 / 2 + c1 e^3 / 3 and
      // G2 = c0 e^3 / 3 + c1 e^4 / 4 are the moments about p, and
      // F0 = G0, F1 = p G0 + G1, F2 = p^2 G0 + 2 p G1 + G2.
      Partial& pa = partial_[i];
      pa.p = sh.p;
      pa.len = len;
      if (len > 0.0) {
        const double c0 = m * (1.0 - sh.k) / len, c1 = m * 2.0 * sh.k / (len * len), pp = sh.p;
        pa.a = {c0, 0.5 * c1};
        pa.b = {pp * c0, 0.5 * (pp * c1 + c0), c1 / 3.0};
        pa.c = {pp * pp * c0, pp * (0.5 * pp * c1 + c0), (2.0 * pp * c1 + c0) / 3.0, 0.25 * c1};
      } else {
        pa.a = {0.0, 0.0};
        pa.b = {0.0, 0.0, 0.0};
        pa.c = {0.0, 0.0, 0.0, 0.0};
        pa.point = {m, m * sh.p, m * sh.p * sh.p};
      }
      f0_[i + 1] = f0_[i] + m;
      f1_[i + 1] = f1_[i] + m * mean;
      f2_[i + 1] = f2_[i] + m * (mean * mean + var);
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
  // A bin's mass: density (1 + k xi) / L on its support [p, q] (bin units,
  // L = q - p, xi = 2 (y - centre) / L in [-1, 1], k in [-1, 1]); a point
  // at p where p == q.
  struct Shape {
    double p, q, k;
  };

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

  // The data's extent (the non-empty bins) and the cells of the grid it
  // meets (rounding interval).
  double data_lo() const { return lo_ + static_cast<double>(first_) * w_; }
  double data_hi() const { return lo_ + static_cast<double>(last_ + 1) * w_; }
  double cells(const Grid& g) const {
    if (nonempty_ == 0) return 0.0;
    const double a = std::max(data_lo(), g.low_edge), b = std::min(data_hi(), g.high_edge);
    if (!(b > a)) return 0.0;
    return std::floor(b / g.s + 0.5) - std::floor(a / g.s + 0.5) + 1.0;
  }

  // For a density (1 + kappa (x - centre)) / len (data units): the integral
  // of (x - level)^2 times it over [u, v], around the piece's middle c so
  // that nothing cancels: with h = (v - u) / 2, E = c - level,
  // F = c - centre, it is 2 h / len (E^2 + h^2 / 3 + kappa (E^2 F +
  // (2 E + F) h^2 / 3)).
  static double piece(double u, double v, double level, double centre, double len, double kappa) {
    const double h = 0.5 * (v - u), c = 0.5 * (u + v), E = c - level, F = c - centre;
    return 2.0 * h / len * (E * E + h * h / 3.0 + kappa * (E * E * F + (2.0 * E + F) * h * h / 3.0));
  }

  double by_bins(const Grid& g) const {
    const double s = g.s, cell = s * s * s / 12.0;
    double total = 0.0;
    for (int64_t i = first_; i <= last_; ++i) {
      if (m_[i] == 0) continue;
      const double m = static_cast<double>(m_[i]);
      const Shape& sh = shape_[i];
      const double a = lo_ + sh.p * w_, b = lo_ + sh.q * w_;
      if (!(b > a)) {  // a point
        double level = g.low_level;
        if (a > g.high_edge) {
          level = g.high_level;
        } else if (a >= g.low_edge) {
          level = std::clamp(std::floor(a / s + 0.5) * s, g.low_level, g.high_level);
        }
        total += m * (a - level) * (a - level);
        continue;
      }
      const double len = b - a, centre = 0.5 * (a + b), kappa = 2.0 * sh.k / len;
      double acc = 0.0;
      if (a < g.low_edge) acc += piece(a, std::min(b, g.low_edge), g.low_level, centre, len, kappa);
      if (b > g.high_edge) acc += piece(std::max(a, g.high_edge), b, g.high_level, centre, len, kappa);
      const double u = std::max(a, g.low_edge), v = std::min(b, g.high_edge);
      if (v > u) {
        // The cells [(n - 1/2) s, (n + 1/2) s) from u's to v's: partial ones
        // at both ends, whole ones between (each s^3 / 12 (1 + kappa
        // (n s - centre)) / len, an arithmetic series).
        const double nu = std::floor(u / s + 0.5), nv = std::floor(v / s + 0.5);
        if (nu == nv) {
          acc += piece(u, v, nu * s, centre, len, kappa);
        } else {
          acc += piece(u, std::max(u, (nu + 0.5) * s), nu * s, centre, len, kappa);
          acc += piece(std::min(v, (nv - 0.5) * s), v, nv * s, centre, len, kappa);
          const double whole = nv - nu - 1.0;
          if (whole > 0.0) {
            acc += whole * cell / len * (1.0 + kappa * (0.5 * (nu + nv) * s - centre));
          }
        }
      }
      total += m * acc;
    }
    return total;
  }

  // Cumulative moments at u (bin units from lo) of t^k times the mass: the
  // bins before u's in full (f0_, f1_, f2_) plus the part of u's bin below
  // u, polynomials in e = min(u, q) - p (Partial); a point counts in full
  // once u passes it.
  void moments_at(double u, double& F0, double& F1, double& F2) const {
    u = std::clamp(u, 0.0, static_cast<double>(bins_));
    const int64_t i = std::min<int64_t>(static_cast<int64_t>(u), bins_ - 1);
    const Partial& pa = partial_[i];
    F0 = f0_[i];
    F1 = f1_[i];
    F2 = f2_[i];
    if (!(u > pa.p)) return;
    if (!(pa.len > 0.0)) {
      F0 += pa.point[0];
      F1 += pa.point[1];
      F2 += pa.point[2];
      return;
    }
    const double e = std::min(u - pa.p, pa.len);
    F0 += e * (pa.a[0] + e * pa.a[1]);
    F1 += e * (pa.b[0] + e * (pa.b[1] + e * pa.b[2]));
    F2 += e * (pa.c[0] + e * (pa.c[1] + e * (pa.c[2] + e * pa.c[3])));
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
  // For moments_at: bin i's support start and length (bin units), and the
  // coefficients of the moments of its part below p + e, or a point's mass
  // times 1, p and p^2.
  struct Partial {
    double p = 0.0, len = 0.0;
    std::array<double, 2> a{};
    std::array<double, 3> b{};
    std::array<double, 4> c{};
    std::array<double, 3> point{};
  };
  std::vector<Shape> shape_;          // [bins]
  std::vector<Partial> partial_;      // [bins]
  std::vector<double> f0_, f1_, f2_;  // cumulative moments at the bin edges [bins + 1]
  int64_t first_ = INT64_MAX, last_ = -1, nonempty_ = 0;
};

}  // namespace mcuq::ops
