// Codebooks for the non-uniform ops (docs/OPS.md, "Codebooks"):
//   uniform_levels: the uniform grid of (scale, zero_point) with the exact
//     thresholds that make fake_quantize_levels equal fake_quantize;
//   fit_levels: levels fitted to data, per tensor or per group of channels:
//     "kmeans"              Lloyd's algorithm on the data (weight clustering,
//                           Han et al. 2016): a local minimum of the data's MSE,
//                           the better of two starts (equal-mass levels, the
//                           MSE-best symmetric uniform grid);
//     "quantile"            equal mass: n levels at the (i + 1/2)/n quantiles,
//                           thresholds at the i/n quantiles; minimizes nothing;
//     "lloyd_max_gaussian"  the MSE-optimal levels of a normal law (Max 1960,
//     "lloyd_max_laplace"   Lloyd 1982) or a Laplace law, fitted by the data's
//                           mean and standard deviation (median and mean
//                           absolute deviation); minimizes the law's MSE;
//     "pow2"                0 and +-alpha 2^-j (Miyashita et al. 2016), 2^bits - 1
//                           levels, alpha minimizing the data's MSE;
//     "apot"                0 and +-alpha times sums of two powers of two
//                           (additive powers-of-two, Li et al. 2020), alpha as pow2.
#include "mcuq/ops/checks.h"
#include "mcuq/ops/fake_quantize_math.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace mcuq::ops {
namespace {

// ---- uniform ------------------------------------------------------------------

// The smallest float32 x whose fake_quantize level is >= `level` (levels
// grow with x: float multiplication and rounding are monotone).
float uniform_threshold(int64_t level, float scale, float inv_scale, int64_t zero_point, int64_t quant_min,
                        int64_t quant_max) {
  const auto reaches = [&](float x) {
    return fq::saturate(fq::raw_level<float>(x, inv_scale, zero_point), quant_min, quant_max) >= level;
  };
  float x = static_cast<float>((static_cast<double>(level - zero_point) - 0.5) * scale);
  while (reaches(x)) x = std::nextafter(x, -std::numeric_limits<float>::infinity());
  while (!reaches(x)) x = std::nextafter(x, std::numeric_limits<float>::infinity());
  return x;
}

std::tuple<at::Tensor, at::Tensor> uniform_levels_cpu(
    const at::Tensor& scale, const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max) {
  const char* op = "uniform_levels";
  check_uniform_levels_args(op, scale, zero_point, quant_min, quant_max);
  const int64_t rows = scale.numel(), n = quant_max - quant_min + 1;
  const at::Tensor s = scale.detach().to(at::kFloat).contiguous().reshape(-1);
  std::vector<float> inv(rows);
  scale_reciprocals(op, rows, s.data_ptr<float>(), inv.data(), scale);
  std::vector<int64_t> z(rows);
  if (zero_point.is_floating_point()) {
    const at::Tensor zd = zero_point.detach().to(at::kDouble).contiguous();
    zero_points_of_floats(op, rows, zd.data_ptr<double>(), quant_min, quant_max, z.data());
  } else {
    const at::Tensor zl = zero_point.detach().to(at::kLong).contiguous();
    zero_points_of_integers(op, rows, zl.data_ptr<int64_t>(), quant_min, quant_max, z.data());
  }
  at::Tensor levels = at::empty({rows, n}, at::kFloat);
  at::Tensor thresholds = at::empty({rows, n - 1}, at::kFloat);
  for (int64_t r = 0; r < rows; ++r) {
    const float sr = s.data_ptr<float>()[r];
    for (int64_t i = 0; i < n; ++i) {
      levels.data_ptr<float>()[r * n + i] = fq::dequantized<float>(quant_min + i, sr, z[r]);
      if (i + 1 < n) {
        thresholds.data_ptr<float>()[r * (n - 1) + i] =
            uniform_threshold(quant_min + i + 1, sr, inv[r], z[r], quant_min, quant_max);
      }
    }
  }
  if (rows == 1) return {levels.reshape({n}), thresholds.reshape({n - 1})};  // per tensor, as fake_quantize
  return {levels, thresholds};
}

// ---- fitted to data ------------------------------------------------------------

constexpr double kPi = 3.14159265358979323846;

// One row's finite values, sorted, with prefix sums for cell statistics.
struct Sample {
  std::vector<double> v, sum, square;  // sum[i]: v[0] + ... + v[i-1]

  explicit Sample(std::vector<double> values) : v(std::move(values)) {
    std::sort(v.begin(), v.end());
    sum.assign(v.size() + 1, 0.0);
    square.assign(v.size() + 1, 0.0);
    for (size_t i = 0; i < v.size(); ++i) {
      sum[i + 1] = sum[i] + v[i];
      square[i + 1] = square[i] + v[i] * v[i];
    }
  }
  // First index with v >= t (a value on a threshold goes up).
  size_t first_at_or_above(double t) const { return std::lower_bound(v.begin(), v.end(), t) - v.begin(); }
  double quantile(double p) const {
    const double at = p * static_cast<double>(v.size() - 1);
    const size_t i = static_cast<size_t>(std::floor(at));
    return i + 1 < v.size() ? v[i] + (at - i) * (v[i + 1] - v[i]) : v.back();
  }
  // Sum of squared errors of levels with thresholds over the sample.
  double squared_error(const std::vector<double>& levels, const std::vector<double>& thresholds) const {
    double error = 0;
    size_t begin = 0;
    for (size_t i = 0; i < levels.size(); ++i) {
      const size_t end = i + 1 < levels.size() ? first_at_or_above(thresholds[i]) : v.size();
      const double count = static_cast<double>(end - begin), l = levels[i];
      error += (square[end] - square[begin]) - 2 * l * (sum[end] - sum[begin]) + count * l * l;
      begin = end;
    }
    return error;
  }
};

std::vector<double> midpoints(const std::vector<double>& levels) {
  std::vector<double> t(levels.size() - 1);
  for (size_t i = 0; i + 1 < levels.size(); ++i) t[i] = (levels[i] + levels[i + 1]) / 2;
  return t;
}

using Codebook = std::pair<std::vector<double>, std::vector<double>>;  // levels, thresholds

// alpha * unit (sorted, largest magnitude 1), alpha minimizing the sample's
// squared error over a grid from max|x| down to max|x| / 2^6 in steps of
// 2^(1/32).
Codebook best_scaled(const Sample& s, const std::vector<double>& unit) {
  const double max_abs = std::max(std::fabs(s.v.front()), std::fabs(s.v.back()));
  Codebook best;
  double best_error = std::numeric_limits<double>::infinity();
  for (int k = 0; k < 192; ++k) {
    const double alpha = max_abs * std::exp2(-k / 32.0);
    std::vector<double> levels(unit.size());
    for (size_t i = 0; i < unit.size(); ++i) levels[i] = alpha * unit[i];
    const std::vector<double> t = midpoints(levels);
    const double error = s.squared_error(levels, t);
    if (error < best_error) {
      best_error = error;
      best = {levels, t};
    }
  }
  return best;
}

// 0 and +-magnitudes.
std::vector<double> symmetric_unit(const std::vector<double>& magnitudes) {
  std::vector<double> unit;
  for (auto it = magnitudes.rbegin(); it != magnitudes.rend(); ++it) unit.push_back(-*it);
  unit.push_back(0.0);
  unit.insert(unit.end(), magnitudes.begin(), magnitudes.end());
  return unit;
}

// The signed uniform grid of n levels: (i - n/2) / (n/2), [-1, 1 - 2/n].
std::vector<double> uniform_unit(int64_t n) {
  std::vector<double> unit(n);
  const double half = n > 1 ? static_cast<double>(n / 2) : 1.0;
  for (int64_t i = 0; i < n; ++i) unit[i] = (static_cast<double>(i) - static_cast<double>(n / 2)) / half;
  return unit;
}

Codebook quantile_levels(const Sample& s, int64_t n) {
  std::vector<double> levels(n), thresholds(n - 1);
  for (int64_t i = 0; i < n; ++i) levels[i] = s.quantile((i + 0.5) / static_cast<double>(n));
  for (int64_t i = 0; i + 1 < n; ++i) thresholds[i] = s.quantile((i + 1.0) / static_cast<double>(n));
  return {levels, thresholds};
}

// Lloyd's iterations from `levels`: each never raises the squared error.
std::vector<double> lloyd(const Sample& s, std::vector<double> levels, int64_t iterations) {
  const int64_t n = static_cast<int64_t>(levels.size());
  for (int64_t it = 0; it < iterations; ++it) {
    const std::vector<double> t = midpoints(levels);
    bool moved = false;
    size_t begin = 0;
    for (int64_t i = 0; i < n; ++i) {
      const size_t end = i + 1 < n ? s.first_at_or_above(t[i]) : s.v.size();
      if (end > begin) {  // an empty cell keeps its level
        const double centroid = (s.sum[end] - s.sum[begin]) / static_cast<double>(end - begin);
        moved = moved || centroid != levels[i];
        levels[i] = centroid;
      }
      begin = end;
    }
    std::sort(levels.begin(), levels.end());
    if (!moved) break;
  }
  return levels;
}

// The better of two starts: the equal-mass levels, and the symmetric uniform
// grid with its MSE-best clipping (so that the result is never worse than
// uniform quantization with the best clipping).
Codebook kmeans_levels(const Sample& s, int64_t n, int64_t iterations) {
  const std::vector<double> from_quantiles = lloyd(s, quantile_levels(s, n).first, iterations);
  const std::vector<double> from_uniform = lloyd(s, best_scaled(s, uniform_unit(n)).first, iterations);
  const bool uniform_wins =
      s.squared_error(from_uniform, midpoints(from_uniform)) < s.squared_error(from_quantiles, midpoints(from_quantiles));
  const std::vector<double>& levels = uniform_wins ? from_uniform : from_quantiles;
  return {levels, midpoints(levels)};
}

// Lloyd-Max levels of a standard law given its cumulative mass M and
// first moment S (the integrals of f and x f up to x).
template <typename Mass, typename Moment>
std::vector<double> lloyd_max_standard(int64_t n, double spread, const Mass& mass, const Moment& moment) {
  std::vector<double> levels(n);
  for (int64_t i = 0; i < n; ++i) levels[i] = n == 1 ? 0.0 : spread * (2.0 * i / (n - 1) - 1.0);
  const double inf = std::numeric_limits<double>::infinity();
  for (int it = 0; it < 20000; ++it) {
    const std::vector<double> t = midpoints(levels);
    double change = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double a = i == 0 ? -inf : t[i - 1], b = i + 1 == n ? inf : t[i];
      const double m = mass(b) - mass(a);
      if (m > 1e-300) {
        const double c = (moment(b) - moment(a)) / m;
        change = std::max(change, std::fabs(c - levels[i]));
        levels[i] = c;
      }
    }
    if (change < 1e-12) break;
  }
  return levels;
}

Codebook lloyd_max_levels(const Sample& s, int64_t n, bool laplace) {
  const double count = static_cast<double>(s.v.size());
  std::vector<double> levels;
  if (laplace) {
    const double median = s.quantile(0.5);
    double deviation = 0;
    for (double x : s.v) deviation += std::fabs(x - median);
    deviation /= count;
    // Laplace(0, 1): mass 1/2 e^x and moment 1/2 (x - 1) e^x for x <= 0;
    // 1 - 1/2 e^-x and -1/2 (x + 1) e^-x above.
    const auto mass = [](double x) { return x <= 0 ? 0.5 * std::exp(x) : 1 - 0.5 * std::exp(-x); };
    const auto moment = [](double x) {
      if (std::isinf(x)) return 0.0;
      return x <= 0 ? 0.5 * (x - 1) * std::exp(x) : -0.5 * (x + 1) * std::exp(-x);
    };
    levels = lloyd_max_standard(n, 4.0, mass, moment);
    for (double& l : levels) l = median + deviation * l;
  } else {
    const double mean = s.sum.back() / count;
    const double variance = std::max(0.0, s.square.back() / count - mean * mean);
    const auto mass = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
    const auto moment = [](double x) {
      return std::isinf(x) ? 0.0 : -std::exp(-x * x / 2) / std::sqrt(2 * kPi);
    };
    levels = lloyd_max_standard(n, 2.5, mass, moment);
    for (double& l : levels) l = mean + std::sqrt(variance) * l;
  }
  return {levels, midpoints(levels)};
}

// Sorted positive magnitudes with max 1.
std::vector<double> pow2_magnitudes(int64_t bits) {
  std::vector<double> m;
  for (int64_t j = (int64_t{1} << (bits - 1)) - 2; j >= 0; --j) m.push_back(std::exp2(-static_cast<double>(j)));
  return m;
}

std::vector<double> apot_magnitudes(int64_t bits) {
  // Two terms from interleaved power-of-two sets: p0 in {0, 1, 2^-2, 2^-4, ...}
  // (ceil(m/2) bits), p1 in {0, 2^-1, 2^-3, ...} (floor(m/2) bits), m = bits - 1.
  const int64_t m = bits - 1, k0 = (m + 1) / 2, k1 = m / 2;
  std::vector<double> p0{0.0}, p1{0.0};
  for (int64_t j = 0; j + 1 < (int64_t{1} << k0); ++j) p0.push_back(std::exp2(-2.0 * j));
  for (int64_t j = 0; j + 1 < (int64_t{1} << k1); ++j) p1.push_back(std::exp2(-2.0 * j - 1));
  std::set<double> sums;
  for (double a : p0) {
    for (double b : p1) {
      if (a + b > 0) sums.insert(a + b);
    }
  }
  std::vector<double> magnitudes(sums.begin(), sums.end());
  const double top = magnitudes.back();
  for (double& x : magnitudes) x /= top;
  return magnitudes;
}

std::tuple<at::Tensor, at::Tensor> fit_levels_cpu(
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method_view,
    c10::optional<int64_t> axis,
    int64_t group_size,
    int64_t iterations) {
  const char* op = "fit_levels";
  const std::string method(method_view.data(), method_view.size());
  const FitLayout fit = check_fit_levels_args(op, input, bits, method, axis, group_size, iterations);
  const int64_t n = fit.levels, rows = fit.rows;
  at::Tensor rows_data;
  if (axis.has_value()) {
    rows_data = input.detach().movedim(fit.axis, 0).contiguous().reshape({rows, -1});
  } else {
    rows_data = input.detach().reshape({1, -1});
  }
  rows_data = rows_data.to(at::kDouble).contiguous();
  at::Tensor levels = at::zeros({rows, n}, at::kFloat);
  at::Tensor thresholds = at::zeros({rows, n - 1}, at::kFloat);
  for (int64_t r = 0; r < rows; ++r) {
    const double* x = rows_data.data_ptr<double>() + r * rows_data.size(1);
    std::vector<double> finite;
    for (int64_t i = 0; i < rows_data.size(1); ++i) {
      if (std::isfinite(x[i])) finite.push_back(x[i]);
    }
    if (finite.empty()) continue;  // no data: every level 0
    const Sample s(std::move(finite));
    Codebook cb;
    if (method == "kmeans") cb = kmeans_levels(s, n, iterations);
    if (method == "quantile") cb = quantile_levels(s, n);
    if (method == "lloyd_max_gaussian") cb = lloyd_max_levels(s, n, false);
    if (method == "lloyd_max_laplace") cb = lloyd_max_levels(s, n, true);
    if (method == "pow2") cb = best_scaled(s, symmetric_unit(pow2_magnitudes(bits)));
    if (method == "apot") cb = best_scaled(s, symmetric_unit(apot_magnitudes(bits)));
    for (int64_t i = 0; i < n; ++i) levels.data_ptr<float>()[r * n + i] = static_cast<float>(cb.first[i]);
    for (int64_t i = 0; i + 1 < n; ++i) {
      thresholds.data_ptr<float>()[r * (n - 1) + i] = static_cast<float>(cb.second[i]);
    }
  }
  if (!axis.has_value()) return {levels.reshape({n}), thresholds.reshape({n - 1})};
  return {levels, thresholds};
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, CPU, m) {
  m.impl("uniform_levels", &uniform_levels_cpu);
  m.impl("fit_levels", &fit_levels_cpu);
}

}  // namespace mcuq::ops
