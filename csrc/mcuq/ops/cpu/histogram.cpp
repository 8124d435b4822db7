// CPU kernels of the histogram observer ops: observe_histogram_ (updates the
// state in place), _histogram_rebin_ (moves it onto a wider range, for DDP
// sync) and histogram_range (picks a clipping range from it).
//
// State (allocated by the caller, e.g. the Python observer):
//   histogram        int64   [bins] per-tensor, [C, bins] per-channel (bins >= 2)
//   histogram_range  float64 [2] = (lo, hi) the bins cover; [C, 2] per-channel
//   min_val, max_val float32 [1] (or 0-d); [C] per-channel: extremes of the
//                    finite values seen, +inf / -inf before any
//   nonfinite_count  int64, one element: NaN / ±inf values skipped, in all
//   histogram_sum    float64, histogram's shape, optional: the sum of the
//                    values counted in each bin (as binned: float64,
//                    saturated to ±FLT_MAX); "mse" spreads each bin's mass
//                    around its mean (histogram_error.h). Pass it to every
//                    call that updates the state, or to none: without it
//                    (older callers) nothing is summed and "mse" spreads
//                    each bin's mass uniformly over the bin.
// Per-channel, C == input.size(axis) and every channel has its own range.
// Initial state: histogram, histogram_range and histogram_sum zeros,
// min/max +inf/-inf.
//
// Binning on canonical grids (CanonicalGrid in histogram_math.h): bins of
// width w = 2^e starting at lo = k w (k integer), hi = (k + bins) w; a value
// x goes to bin floor(x / w) - k, in double (exact: w is a power of two),
// float64 values saturated to ±FLT_MAX first. The grid of a histogram that
// saw the finite values S is G(S): with m = min S, M = max S and
// A = max(|min_val|, |max_val|) (the float32 state extremes), the smallest
// e >= min_grid_exponent(A) (A's float32 ulp, so that a constant batch, even
// 0, has a width) such that floor(m / w) w + bins w > M, and k = floor(m / w):
// every value of S lies strictly inside, no clamping needed.
//
// Resolution: unless the floor on e decides, [m, M] spans more than
// (bins - 1) / 2 bins. The width w / 2 did not fit: with w' = w / 2,
// floor(m / w') w' + bins w' <= M, and floor(m / w') w' > m - w', so
// (bins - 1) w' < M - m, i.e. (M - m) / w > (bins - 1) / 2. This is why
// mcuq.HistogramObserver(bins=B) keeps 2 B + 1 counts: more than B bins across
// the data, as torch.ao's B bins across [min, max].
//
// Order independence: the state after any sequence of batches is G(S) with
// every value of S counted in its bin, whatever the order or chunking.
// By induction: let the state be G(S) (grid e0, k0) and a batch B arrive.
// (a) e of G(S ∪ B) >= e0: its extremes are wider and A larger, and a grid
//     exponent that works for a range works for any range inside it.
// (b) For e >= e0 each old bin [a, a + w0) nests in one new bin (2^e is a
//     multiple of 2^e0, and k w a multiple of w0), so floor(a / w) =
//     floor(x / w) for every value x counted in that bin. With a_first,
//     a_last the lower edges of the lowest and highest non-empty old bins
//     (which hold min S and max S), the search over e >= e0 on the points
//     [min(a_first, min B), max(a_last, max B)] therefore tests exactly the
//     conditions it tests on [min(S ∪ B), max(S ∪ B)], and finds G(S ∪ B).
// (c) Moving old bin i to new bin floor(a_i / w) - k is then where each of
//     its values would have been binned directly, so the counts are those of
//     binning S ∪ B at once. Counts are integers: the result is exact.
// Sums move with their bins' counts (the sums of the bins merged into one
// add), so each bin's sum is the sum of the same values, whatever the order
// or chunking; but float64 additions in another order round differently, so
// sums agree only up to float64 rounding, not bit for bit (a bin's values
// share a sign, as no bin straddles 0: n additions in another order move its
// sum by at most ~n 2^-53 relative). The grid and counts never depend on
// them.
// The same makes histograms mergeable: _histogram_rebin_ moves a histogram to
// the grid of [min(a_first, min_val), max(a_last, max_val)] (e >= its own e and
// >= min_grid_exponent of the given extremes); after an all-reduce of min_val
// (MIN) and max_val (MAX), every rank lands on G(all ranks' values), and the
// SUM of the histograms is the histogram of one process that saw everything
// (the SUM of the sums, too, up to float64 rounding).
// (With float64 input the all-reduced float32 extremes are rounded outwards,
// so the merged grid may be coarser than one process's.)
//
// A state whose non-empty range is not a canonical grid (saved by an older
// version, or made by hand) is moved approximately, once: each bin's mass (and
// sum) goes to the new bin of its centre, on a grid no finer than its bins.
//
// histogram_range methods ("minmax", "percentile", "mse", "entropy") are
// described at their functions below; each channel is handled on its own.
//
// The argument checks (declared in histogram_math.h) are defined here and
// shared with the Meta kernels.
#include "mcuq/ops/checks.h"
#include "mcuq/ops/cpu/histogram_error.h"
#include "mcuq/ops/cpu/histogram_math.h"
#ifdef MCUQ_WITH_CUDA
#include "mcuq/ops/cuda/histogram.h"
#endif
#include "mcuq/ops/qparams.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

namespace mcuq::ops {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    s += (d ? ", " : "") + std::to_string(concrete(t.sym_size(d)));
  }
  return s + "]";
}

// The shapes both ops share: histogram [bins] / [C, bins], histogram_range
// [2] / [C, 2], min_val and max_val one element / [C]. Dtypes and devices are
// checked before (against the input or the histogram).
HistogramLayout check_state_shapes(
    const char* op,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val) {
  HistogramLayout layout;
  TORCH_CHECK_VALUE(
      histogram.dim() == 1 || histogram.dim() == 2,
      fmt::format(
          "mcuq::{}: expected histogram to be 1-d ([bins], per-tensor) or 2-d ([channels, "
          "bins], per-channel), but got shape {}",
          op, shape_str(histogram)));
  layout.per_channel = histogram.dim() == 2;
  layout.bins = concrete(histogram.sym_size(-1));
  layout.channels = layout.per_channel ? concrete(histogram.sym_size(0)) : 1;
  TORCH_CHECK_VALUE(
      layout.bins >= 2,
      fmt::format("mcuq::{}: expected histogram to have at least 2 bins, but got {}", op, layout.bins));
  TORCH_CHECK_VALUE(
      layout.channels >= 1,
      fmt::format(
          "mcuq::{}: expected histogram to have at least one channel, but got shape {}", op,
          shape_str(histogram)));
  if (!layout.per_channel) {
    TORCH_CHECK_VALUE(
        histogram_range.dim() == 1 && concrete(histogram_range.sym_size(0)) == 2,
        fmt::format(
            "mcuq::{}: expected histogram_range of shape [2] for a per-tensor histogram, but got "
            "shape {}",
            op, shape_str(histogram_range)));
    for (const auto& [name, t] : {std::pair{"min_val", &min_val}, std::pair{"max_val", &max_val}}) {
      TORCH_CHECK_VALUE(
          t->dim() <= 1 && concrete(t->sym_numel()) == 1,
          fmt::format(
              "mcuq::{}: expected {} to have one element for a per-tensor histogram, but got "
              "shape {}",
              op, name, shape_str(*t)));
    }
  } else {
    const int64_t c = layout.channels;
    TORCH_CHECK_VALUE(
        histogram_range.dim() == 2 && concrete(histogram_range.sym_size(0)) == c &&
            concrete(histogram_range.sym_size(1)) == 2,
        fmt::format(
            "mcuq::{}: expected histogram_range of shape [{}, 2] for a histogram of {} "
            "channels, but got shape {}",
            op, c, c, shape_str(histogram_range)));
    for (const auto& [name, t] : {std::pair{"min_val", &min_val}, std::pair{"max_val", &max_val}}) {
      TORCH_CHECK_VALUE(
          t->dim() == 1 && concrete(t->sym_size(0)) == c,
          fmt::format(
              "mcuq::{}: expected {} of shape [{}] for a histogram of {} channels, but got shape {}",
              op, name, c, c, shape_str(*t)));
    }
  }
  return layout;
}

// histogram_sum, if given: float64, on `ref`'s device, the histogram's shape.
void check_histogram_sum(
    const char* op,
    const c10::optional<at::Tensor>& histogram_sum,
    const at::Tensor& histogram,
    const at::Tensor& ref,
    const char* ref_name) {
  if (!histogram_sum.has_value()) return;
  const at::Tensor& sum = *histogram_sum;
  check_tensor(op, "histogram_sum", sum, at::kDouble, ref, ref_name);
  bool same = sum.dim() == histogram.dim();
  for (int64_t d = 0; same && d < sum.dim(); ++d) {
    same = concrete(sum.sym_size(d)) == concrete(histogram.sym_size(d));
  }
  TORCH_CHECK_VALUE(
      same,
      fmt::format(
          "mcuq::{}: expected histogram_sum to have the histogram's shape {}, but got shape {}", op,
          shape_str(histogram), shape_str(sum)));
}

}  // namespace

HistogramLayout check_observe_histogram_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    const c10::optional<at::Tensor>& histogram_sum) {
  check_float_input(op, input);
  check_tensor(op, "histogram", histogram, at::kLong, input, "input");
  check_tensor(op, "histogram_range", histogram_range, at::kDouble, input, "input");
  check_tensor(op, "min_val", min_val, at::kFloat, input, "input");
  check_tensor(op, "max_val", max_val, at::kFloat, input, "input");
  check_tensor(op, "nonfinite_count", nonfinite_count, at::kLong, input, "input");
  HistogramLayout layout = check_state_shapes(op, histogram, histogram_range, min_val, max_val);
  check_histogram_sum(op, histogram_sum, histogram, input, "input");
  TORCH_CHECK_VALUE(
      concrete(nonfinite_count.sym_numel()) == 1,
      fmt::format(
          "mcuq::{}: expected nonfinite_count to have one element, but got shape {}", op,
          shape_str(nonfinite_count)));
  if (layout.per_channel) {
    const int64_t dim = input.dim();
    TORCH_CHECK_VALUE(
        dim >= 1,
        fmt::format(
            "mcuq::{}: expected an input with a channel axis for a per-channel (2-d) histogram, "
            "but got a 0-d input",
            op));
    TORCH_CHECK_VALUE(
        axis >= -dim && axis < dim,
        fmt::format(
            "mcuq::{}: expected axis in [{}, {}) for a {}-d input, but got {}", op, -dim, dim, dim,
            axis));
    layout.axis = axis < 0 ? axis + dim : axis;
    const int64_t channels = concrete(input.sym_size(layout.axis));
    TORCH_CHECK_VALUE(
        channels == layout.channels,
        fmt::format(
            "mcuq::{}: expected histogram to have input.size({}) = {} rows (one per channel), "
            "but got {}",
            op, axis, channels, layout.channels));
  }
  return layout;
}

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
    const c10::optional<at::Tensor>& histogram_sum) {
  check_tensor(op, "histogram", histogram, at::kLong, histogram, "histogram");
  check_tensor(op, "histogram_range", histogram_range, at::kDouble, histogram, "histogram");
  check_tensor(op, "min_val", min_val, at::kFloat, histogram, "histogram");
  check_tensor(op, "max_val", max_val, at::kFloat, histogram, "histogram");
  HistogramRangeArgs args;
  args.layout = check_state_shapes(op, histogram, histogram_range, min_val, max_val);
  check_histogram_sum(op, histogram_sum, histogram, histogram, "histogram");
  check_quant_range(op, quant_min, quant_max);
  if (method == "minmax") {
    args.method = RangeMethod::kMinMax;
  } else if (method == "percentile") {
    args.method = RangeMethod::kPercentile;
  } else if (method == "mse") {
    args.method = RangeMethod::kMse;
  } else if (method == "entropy") {
    args.method = RangeMethod::kEntropy;
  } else {
    TORCH_CHECK_VALUE(
        false,
        fmt::format(
            "mcuq::{}: expected method to be one of 'minmax', 'percentile', 'mse', 'entropy', "
            "but got '{}'",
            op, method));
  }
  if (args.method == RangeMethod::kPercentile) {
    TORCH_CHECK_VALUE(
        percentile > 0.0 && percentile <= 100.0,
        fmt::format("mcuq::{}: expected percentile in (0, 100], but got {}", op, percentile));
  }
  return args;
}

HistogramLayout check_histogram_rebin_args(
    const char* op,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const c10::optional<at::Tensor>& histogram_sum) {
  check_tensor(op, "histogram", histogram, at::kLong, histogram, "histogram");
  check_tensor(op, "histogram_range", histogram_range, at::kDouble, histogram, "histogram");
  check_tensor(op, "min_val", min_val, at::kFloat, histogram, "histogram");
  check_tensor(op, "max_val", max_val, at::kFloat, histogram, "histogram");
  const HistogramLayout layout = check_state_shapes(op, histogram, histogram_range, min_val, max_val);
  check_histogram_sum(op, histogram_sum, histogram, histogram, "histogram");
  return layout;
}

namespace {

// ---- observe_histogram_ ------------------------------------------------------

// float32 bounds that contain a double: rounded outwards, so min_val and
// max_val stay true bounds for float64 input (saturating at ±FLT_MAX).
float float_at_most(double v) {
  const double clamped = std::clamp(v, -static_cast<double>(FLT_MAX), static_cast<double>(FLT_MAX));
  float f = static_cast<float>(clamped);
  if (static_cast<double>(f) > clamped) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

float float_at_least(double v) {
  const double clamped = std::clamp(v, -static_cast<double>(FLT_MAX), static_cast<double>(FLT_MAX));
  float f = static_cast<float>(clamped);
  if (static_cast<double>(f) < clamped) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// Moves one histogram row (`range` = its lo, hi; `sums` its bin sums, or
// null) in place onto the canonical grid of its non-empty bins plus the
// points [new_min, new_max] (ignored when new_min > new_max), with
// e >= e_min; returns the grid. An empty row with no points keeps its range
// and returns a default grid (bins == 0).
CanonicalGrid regrid(
    int64_t* hist, double* sums, int64_t bins, double* range, double new_min, double new_max, int e_min) {
  int64_t first = -1, last = -1;
  for (int64_t i = 0; i < bins; ++i) {
    if (hist[i] != 0) {
      if (first < 0) first = i;
      last = i;
    }
  }
  // Each non-empty old bin's point: its lower edge on a canonical grid (any
  // point of the bin maps to the same coarser bin), else its centre.
  CanonicalGrid old;
  const bool canonical = first >= 0 && grid_of_range(range[0], range[1], bins, old);
  const double old_w = (range[1] - range[0]) / static_cast<double>(bins);
  const auto point = [&](int64_t i) {
    if (canonical) return old.lo + static_cast<double>(i) * old.w;
    const double centre = old_w > 0.0 ? range[0] + (static_cast<double>(i) + 0.5) * old_w : range[0];
    return to_float_range(centre);
  };
  double m = new_min, M = new_max;
  if (first >= 0) {
    if (canonical) {
      e_min = std::max(e_min, old.e);
    } else if (old_w > 0.0 && std::isfinite(old_w)) {
      e_min = std::max(e_min, std::ilogb(old_w) + 1);  // no finer than the old bins
    }
    m = std::min(m, point(first));
    M = std::max(M, point(last));
  }
  if (!(m <= M)) {
    return {};
  }
  const CanonicalGrid grid = canonical_grid(m, M, e_min, bins);
  if (first >= 0 && !(canonical && grid.e == old.e && grid.k == old.k)) {
    std::vector<int64_t> moved(bins, 0);
    std::vector<double> moved_sums(sums != nullptr ? bins : 0, 0.0);
    for (int64_t i = first; i <= last; ++i) {
      if (hist[i] == 0) continue;
      const int64_t j = grid.bin(point(i));
      moved[j] += hist[i];
      if (sums != nullptr) moved_sums[j] += sums[i];
    }
    std::copy(moved.begin(), moved.end(), hist);
    if (sums != nullptr) std::copy(moved_sums.begin(), moved_sums.end(), sums);
  }
  range[0] = grid.lo;
  range[1] = grid.hi;
  return grid;
}

// Folds a batch's finite range [bmin, bmax] into one histogram row's state:
// min_val / max_val, and the row (with its sums, if not null) re-binned onto
// the canonical grid that covers the batch; returns that grid, into which
// the batch's values are then counted (bins == 0: no finite value, nothing
// to count). Shared by the CPU kernel and the CUDA one (which counts on the GPU).
CanonicalGrid begin_row(
    double bmin, double bmax, int64_t* hist, double* sums, int64_t bins, double* range, float* min_val, float* max_val) {
  if (!(bmin <= bmax)) {
    return {};  // nothing finite in this batch
  }
  *min_val = std::min(*min_val, float_at_most(bmin));
  *max_val = std::max(*max_val, float_at_least(bmax));
  const int e_min = min_grid_exponent(std::max(std::fabs(*min_val), std::fabs(*max_val)));
  return regrid(hist, sums, bins, range, to_float_range(bmin), to_float_range(bmax), e_min);
}

// Folds n values into one histogram row (and its sums, if not null) and its
// range / min / max; returns how many were not finite. Serial within the
// row, so its sums are the same on every run.
template <typename scalar_t>
int64_t observe_row(
    const scalar_t* x,
    int64_t n,
    int64_t* hist,
    double* sums,
    int64_t bins,
    double* range,
    float* min_val,
    float* max_val) {
  double bmin = kInf, bmax = -kInf;
  int64_t nonfinite = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    if (!std::isfinite(v)) {
      ++nonfinite;
      continue;
    }
    bmin = std::min(bmin, v);
    bmax = std::max(bmax, v);
  }
  const CanonicalGrid grid = begin_row(bmin, bmax, hist, sums, bins, range, min_val, max_val);
  if (grid.bins == 0) {
    return nonfinite;
  }
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    if (std::isfinite(v)) {
      const double f = to_float_range(v);
      const int64_t b = grid.bin(f);
      ++hist[b];
      if (sums != nullptr) sums[b] += f;
    }
  }
  return nonfinite;
}

// The kernels update contiguous copies of non-contiguous state tensors
// (t.contiguous() is t itself otherwise); this copies them back.
void write_back(const at::Tensor& work, const at::Tensor& t) {
  if (!work.is_same(t)) t.copy_(work);
}

// A non-empty histogram must come with the range of its bins.
void check_ranges_of_nonempty(const char* op, const HistogramLayout& layout, const int64_t* ph, const double* pr) {
  const int64_t bins = layout.bins;
  for (int64_t c = 0; c < layout.channels; ++c) {
    int64_t mass = 0;
    for (int64_t k = 0; k < bins; ++k) mass += ph[c * bins + k];
    TORCH_CHECK_VALUE(
        mass == 0 || (std::isfinite(pr[2 * c]) && std::isfinite(pr[2 * c + 1]) && pr[2 * c] <= pr[2 * c + 1]),
        fmt::format(
            "mcuq::{}: expected histogram_range to be a finite (lo, hi) with lo <= hi for a "
            "non-empty histogram, but got ({}, {}){}",
            op, pr[2 * c], pr[2 * c + 1], layout.per_channel ? fmt::format(" for channel {}", c) : ""));
  }
}

// observe_histogram_'s state as the kernels update it: contiguous tensors on
// the host, the state's own where they are that, else copies that
// write_back() copies back (into non-contiguous state, or to the GPU).
struct HistogramState {
  at::Tensor hist, range, mn, mx, sum;

  HistogramState(
      const at::Tensor& histogram,
      const at::Tensor& histogram_range,
      const at::Tensor& min_val,
      const at::Tensor& max_val,
      const c10::optional<at::Tensor>& histogram_sum)
      : hist(histogram.cpu().contiguous()),
        range(histogram_range.cpu().contiguous()),
        mn(min_val.cpu().contiguous()),
        mx(max_val.cpu().contiguous()),
        sum(histogram_sum.has_value() ? histogram_sum->cpu().contiguous() : at::Tensor()) {}

  int64_t* counts() const { return hist.data_ptr<int64_t>(); }
  double* sums() const { return sum.defined() ? sum.data_ptr<double>() : nullptr; }
  double* ranges() const { return range.data_ptr<double>(); }
  float* mins() const { return mn.data_ptr<float>(); }
  float* maxs() const { return mx.data_ptr<float>(); }

  void write_back(
      const at::Tensor& histogram,
      const at::Tensor& histogram_range,
      const at::Tensor& min_val,
      const at::Tensor& max_val,
      const c10::optional<at::Tensor>& histogram_sum) const {
    mcuq::ops::write_back(hist, histogram);
    mcuq::ops::write_back(range, histogram_range);
    mcuq::ops::write_back(mn, min_val);
    mcuq::ops::write_back(mx, max_val);
    if (sum.defined()) mcuq::ops::write_back(sum, *histogram_sum);
  }
};

// One contiguous row of values per channel ([channels, n]), in float or double.
at::Tensor rows_of(const at::Tensor& input, const HistogramLayout& layout) {
  at::Tensor x = input.detach();
  if (x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16) {
    x = x.to(at::kFloat);
  }
  x = layout.per_channel ? x.movedim(layout.axis, 0).contiguous() : x.contiguous();
  return x.view({layout.channels, -1});
}

void observe_histogram_cpu(
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    const c10::optional<at::Tensor>& histogram_sum) {
  const char* op = "observe_histogram_";
  const HistogramLayout layout = check_observe_histogram_args(
      op, input, histogram, histogram_range, min_val, max_val, nonfinite_count, axis, histogram_sum);
  const int64_t channels = layout.channels, bins = layout.bins;

  HistogramState state(histogram, histogram_range, min_val, max_val, histogram_sum);
  int64_t* ph = state.counts();
  double* ps = state.sums();
  double* pr = state.ranges();
  float* pmin = state.mins();
  float* pmax = state.maxs();
  check_ranges_of_nonempty(op, layout, ph, pr);
  if (input.numel() == 0) {
    return;
  }
  const at::Tensor x = rows_of(input, layout);
  const int64_t n = x.numel() / channels;

  std::vector<int64_t> nonfinite(channels, 0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mcuq::observe_histogram_", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    // Channels are independent, so the result does not depend on threads.
    at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        nonfinite[c] = observe_row<scalar_t>(
            px + c * n, n, ph + c * bins, ps != nullptr ? ps + c * bins : nullptr, bins, pr + 2 * c,
            pmin + c, pmax + c);
      }
    });
  });

  state.write_back(histogram, histogram_range, min_val, max_val, histogram_sum);
  int64_t total = 0;
  for (int64_t v : nonfinite) total += v;
  *nonfinite_count.data_ptr<int64_t>() += total;
}

// ---- _histogram_rebin_ -------------------------------------------------------

// Moves each row (and its sums, if given) onto the canonical grid covering its
// non-empty bins and [min_val, max_val] (see the top of the file); a row whose
// min_val > max_val (no values to cover) only covers its own bins, and an
// empty one then gets the initial range (0, 0), so that ranks that saw
// nothing agree.
void histogram_rebin_cpu(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const c10::optional<at::Tensor>& histogram_sum) {
  const char* op = "_histogram_rebin_";
  const HistogramLayout layout =
      check_histogram_rebin_args(op, histogram, histogram_range, min_val, max_val, histogram_sum);
  const int64_t channels = layout.channels, bins = layout.bins;
  at::Tensor hist = histogram.contiguous();
  at::Tensor range = histogram_range.contiguous();
  at::Tensor sum = histogram_sum.has_value() ? histogram_sum->contiguous() : at::Tensor();
  double* ps = sum.defined() ? sum.data_ptr<double>() : nullptr;
  const at::Tensor mn = min_val.contiguous();
  const at::Tensor mx = max_val.contiguous();
  int64_t* ph = hist.data_ptr<int64_t>();
  double* pr = range.data_ptr<double>();
  const float* pmin = mn.data_ptr<float>();
  const float* pmax = mx.data_ptr<float>();
  check_ranges_of_nonempty(op, layout, ph, pr);
  for (int64_t c = 0; c < channels; ++c) {
    const double lo = pmin[c], hi = pmax[c];
    TORCH_CHECK_VALUE(
        !std::isnan(lo) && !std::isnan(hi) && (lo > hi || (std::isfinite(lo) && std::isfinite(hi))),
        fmt::format(
            "mcuq::{}: expected min_val <= max_val both finite, or min_val > max_val (nothing to "
            "cover), but got ({}, {}){}",
            op, lo, hi, layout.per_channel ? fmt::format(" for channel {}", c) : ""));
  }
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const bool points = pmin[c] <= pmax[c];
      const int e_min = points ? min_grid_exponent(std::max(std::fabs(pmin[c]), std::fabs(pmax[c]))) : -149;
      const CanonicalGrid grid = regrid(
          ph + c * bins, ps != nullptr ? ps + c * bins : nullptr, bins, pr + 2 * c,
          points ? pmin[c] : kInf, points ? pmax[c] : -kInf, e_min);
      if (grid.bins == 0) {
        pr[2 * c] = 0.0;
        pr[2 * c + 1] = 0.0;
      }
    }
  });
  write_back(hist, histogram);
  write_back(range, histogram_range);
  if (ps != nullptr) write_back(sum, *histogram_sum);
}

// ---- histogram_range ---------------------------------------------------------

// One channel's histogram as the range methods see it.
struct Row {
  const int64_t* m;   // counts
  const double* s;    // sums of the values in each bin, or null
  int64_t bins;
  double lo, w;       // bin i covers [lo + i w, lo + (i + 1) w]
  double min_val, max_val;
  double total;       // sum of counts
};

struct Range {
  double lo, hi;
};

// Q(q): the q-quantile of the histogram, mass spread uniformly in each bin.
double quantile(const Row& r, double q) {
  const double target = q * r.total;
  double cum = 0.0;
  for (int64_t k = 0; k < r.bins; ++k) {
    const double mk = static_cast<double>(r.m[k]);
    if (mk <= 0.0) continue;
    if (cum + mk >= target) {
      const double frac = std::clamp((target - cum) / mk, 0.0, 1.0);
      return r.lo + (static_cast<double>(k) + frac) * r.w;
    }
    cum += mk;
  }
  return r.lo + static_cast<double>(r.bins) * r.w;
}

// "percentile": [Q(1 - p/100), Q(p/100)] clamped to the observed range
// (ordered, should p < 50 swap them); symmetric: [-a, a] with a the larger
// magnitude of the two.
Range percentile_range(const Row& r, double percentile, bool symmetric) {
  const double p = percentile / 100.0;
  double a = std::clamp(quantile(r, 1.0 - p), r.min_val, r.max_val);
  double b = std::clamp(quantile(r, p), r.min_val, r.max_val);
  if (a > b) std::swap(a, b);
  if (symmetric) {
    const double amax = std::max(std::fabs(a), std::fabs(b));
    return {-amax, amax};
  }
  return {a, b};
}

// Prefix sums over bins of m, m t and m t^2, where t = i + 0.5 is the bin
// centre in units of w from lo: the clipping error of any range is O(1).
// Working in these units keeps the sums well conditioned even when the data
// sit far from 0.
struct Moments {
  std::vector<double> m0, m1, m2;  // [bins + 1], prefix sums
  explicit Moments(const Row& r) : m0(r.bins + 1, 0.0), m1(r.bins + 1, 0.0), m2(r.bins + 1, 0.0) {
    for (int64_t i = 0; i < r.bins; ++i) {
      const double m = static_cast<double>(r.m[i]);
      const double t = static_cast<double>(i) + 0.5;
      m0[i + 1] = m0[i] + m;
      m1[i + 1] = m1[i] + m * t;
      m2[i + 1] = m2[i] + m * t * t;
    }
  }
  // Sum over bins [a, b) of m (t - x)^2, never negative.
  double sq_err(int64_t a, int64_t b, double x) const {
    const double s0 = m0[b] - m0[a], s1 = m1[b] - m1[a], s2 = m2[b] - m2[a];
    return std::max(0.0, s2 - 2.0 * x * s1 + x * x * s0);
  }
  double mass(int64_t a, int64_t b) const {
    return m0[b] - m0[a];
  }
};

// Bins whose centre t = i + 0.5 lies below u: i < u - 0.5.
int64_t bins_below(double u, int64_t bins) {
  return static_cast<int64_t>(std::clamp(std::ceil(u - 0.5), 0.0, static_cast<double>(bins)));
}
// Bins whose centre lies at or below u: i <= u - 0.5.
int64_t bins_at_or_below(double u, int64_t bins) {
  return static_cast<int64_t>(std::clamp(std::floor(u - 0.5) + 1.0, 0.0, static_cast<double>(bins)));
}

// One side of a candidate range: its position in bin units from lo, its
// value, the first bin not clipped by it (low side) or the first clipped
// (high side), and that side's clipping error.
struct Endpoint {
  double u, value;
  int64_t k = 0;
  double err = 0.0;
};

// "mse": the range that minimizes the expected squared quantization error
// estimated from the histogram, in two stages.
//
// 1. Search every candidate with a model that costs O(1) per candidate
//    (prefix sums), each bin's mass at its centre. The effective range
//    [lo', hi'] = [min(lo, 0), max(hi, 0)] includes 0, since choose_qparams
//    widens it so; with Δ = (hi' - lo') / (quant_max - quant_min), values
//    outside it cost their squared distance to it (clipping), values within
//    Δ/2 of 0 their squared distance to 0 (0 is always a level: the spike of
//    zeros after a ReLU quantizes exactly), other values inside Δ²/12
//    (rounding noise). Candidates: bin edges inside the observed range plus
//    the observed min and max; affine: every (lo, hi) pair (on fine
//    histograms, of every stride-th candidate: kStage1Candidates); symmetric:
//    every a, with range [-a, a] and Δ = 2a / (quant_max - quant_min).
// 2. Δ²/12 ignores where the grid's levels fall among the bins, which moves
//    the real error by a few percent, and on coarse grids it is biased: when
//    Δ is not small against the data's spread (a heavy tail stretching an
//    8-bit range), the error near the peak is not Δ²/12, and stage 1 can
//    prefer a range tens of percent wider than the best. So candidates are
//    re-scored with the exact error of the binned mass (histogram_error.h:
//    each bin spread linearly around its mean where histogram_sum is given,
//    else uniformly): symmetric: every a on grids of at most kExactLevels
//    levels, else the ±kRefineSymmetric around the stage-1 optimum; affine:
//    starting from the stage-1 pair, each end alone over every candidate (the
//    other fixed; ±kSweepAffine on finer grids), then alternately over
//    ±kSweepAffine until neither moves, then ±kRefineAffine lows × highs.
//    Finally, between bin edges near the best.
//
// Ties keep the first candidate in ascending order. Returns the effective
// range clamped to the observed one.
constexpr int64_t kRefineAffine = 16;
// Finer grids than this are modelled well by Δ²/12 (Δ is small against any
// smooth density), and scoring every candidate exactly costs O(bins) each.
constexpr int64_t kExactLevels = 1024;
// Affine, on finer grids: each end alone over ±kSweepAffine candidates. Where
// the levels fall can move the error by tens of percent (a spike of equal
// values, e.g. a constant background, lands nearer or farther from a level),
// several steps away from the stage-1 optimum.
constexpr int64_t kSweepAffine = 64;
// Affine stage 1 tries at most about this many candidates per end: its cost
// grows with their product.
constexpr int64_t kStage1Candidates = 1024;
constexpr int64_t kRefineSymmetric = 64;
// Coordinate rounds of the affine sweep; each round that changes the pair
// lowers the error, and on real data two or three settle it.
constexpr int kSweepRounds = 8;
// Sub-bin steps of the final refinement (between neighbouring bin edges).
constexpr int kSubBinSteps = 32;

Range mse_range(const Row& r, int64_t quant_min, int64_t quant_max, bool symmetric) {
  const Moments mom(r);
  const HistogramGridError grid_error(r.m, r.bins, r.lo, r.w, r.s);
  const bool exact_everywhere = quant_max - quant_min + 1 <= kExactLevels;
  const double nq = static_cast<double>(quant_max - quant_min);
  const double zero_u = -r.lo / r.w;
  const int64_t bins = r.bins;
  const auto u_of = [&](double v) { return (v - r.lo) / r.w; };
  // Error inside [l, h] (bin units): bins [kl, kh) are not clipped.
  const auto inside_err = [&](double l, double h, int64_t kl, int64_t kh) {
    const double d = (h - l) / nq;
    const int64_t b1 = std::max(kl, bins_at_or_below(zero_u - d / 2, bins));
    const int64_t b2 = std::max(b1, std::min(kh, bins_below(zero_u + d / 2, bins)));
    return mom.sq_err(b1, b2, zero_u) + (mom.mass(kl, kh) - mom.mass(b1, b2)) * d * d / 12.0;
  };
  const auto low_side = [&](double u, double value) {
    Endpoint e{u, value};
    e.k = bins_below(u, bins);
    e.err = mom.sq_err(0, e.k, u);
    return e;
  };
  const auto high_side = [&](double u, double value) {
    Endpoint e{u, value};
    e.k = bins_at_or_below(u, bins);
    e.err = mom.sq_err(e.k, bins, u);
    return e;
  };

  if (symmetric) {
    const double amax = std::max(std::fabs(r.min_val), std::fabs(r.max_val));
    std::vector<double> cands{amax};
    for (int64_t k = 0; k <= bins; ++k) {
      const double a = std::fabs(r.lo + static_cast<double>(k) * r.w);
      if (a > 0.0 && a < amax) cands.push_back(a);
    }
    std::sort(cands.begin(), cands.end());
    cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
    const int64_t n = static_cast<int64_t>(cands.size());
    double best = kInf;
    int64_t best_j = n - 1;
    for (int64_t j = 0; j < n; ++j) {
      const double a = cands[j];
      const Endpoint l = low_side(u_of(-a), -a), h = high_side(u_of(a), a);
      const double err = l.err + h.err + inside_err(l.u, h.u, l.k, h.k);
      if (err < best) {
        best = err;
        best_j = j;
      }
    }
    best = kInf;
    float best_a = static_cast<float>(amax);
    int64_t refined_j = best_j;
    const int64_t radius = exact_everywhere ? n : kRefineSymmetric;
    for (int64_t j = std::max<int64_t>(0, best_j - radius); j <= std::min(n - 1, best_j + radius); ++j) {
      const float a = static_cast<float>(cands[j]);
      const double err = grid_error(-a, a, quant_min, quant_max, true);
      if (err < best) {
        best = err;
        best_a = a;
        refined_j = j;
      }
    }
    // Bin edges are coarse next to a flat optimum: search between the
    // neighbouring edges too.
    const double from = cands[std::max<int64_t>(0, refined_j - 1)];
    const double to = cands[std::min(n - 1, refined_j + 1)];
    for (int step = 1; step < kSubBinSteps; ++step) {
      const float a = static_cast<float>(from + (to - from) * step / kSubBinSteps);
      const double err = grid_error(-a, a, quant_min, quant_max, true);
      if (err < best) {
        best = err;
        best_a = a;
      }
    }
    return {-best_a, best_a};
  }

  // Candidate lows and highs, ascending; a candidate beyond 0 stands for 0.
  std::vector<Endpoint> lows, highs;
  const auto add = [&](double u, double value) {
    lows.push_back(value > 0.0 ? low_side(zero_u, 0.0) : low_side(u, value));
    highs.push_back(value < 0.0 ? high_side(zero_u, 0.0) : high_side(u, value));
  };
  add(u_of(r.min_val), r.min_val);
  for (int64_t k = 0; k <= bins; ++k) {
    const double v = r.lo + static_cast<double>(k) * r.w;
    if (v > r.min_val && v < r.max_val) add(static_cast<double>(k), v);
  }
  add(u_of(r.max_val), r.max_val);
  lows.pop_back();  // max_val is no low, min_val no high
  highs.erase(highs.begin());
  // Seeded with the last pair (min_val, max_val), so that clipping errors
  // alone rule out most pairs early; an earlier pair that ties the seed
  // still wins, as the order says.
  const int64_t nl = static_cast<int64_t>(lows.size()), nh = static_cast<int64_t>(highs.size());
  const Endpoint& lo0 = lows.front();
  const Endpoint& hi0 = highs.back();
  double best = lo0.err + hi0.err + inside_err(lo0.u, hi0.u, lo0.k, hi0.k);
  int64_t best_l = 0, best_h = nh - 1;
  bool seeded = true;
  // Running minimum of the highs' clipping errors (which fall as the high
  // end rises): the pairs of a low before the first high with
  // l.err + h.err <= best are exactly those before the first running minimum
  // that passes, found by bisection; the loop would skip them one by one.
  std::vector<double> min_high_err(nh);
  for (int64_t hi = 0; hi < nh; ++hi) {
    min_high_err[hi] = hi == 0 ? highs[0].err : std::min(min_high_err[hi - 1], highs[hi].err);
  }
  // On fine histograms stage 1 tries every stride-th candidate of each end,
  // plus min_val and max_val: it only has to find the region of the optimum.
  // Stage 2 then sweeps each end over every candidate on coarse grids, and
  // over ±kSweepAffine (more than a stride) on fine ones, where Δ²/12 holds.
  const int64_t stride = (std::max(nl, nh) + kStage1Candidates - 1) / kStage1Candidates;
  for (int64_t li = 0; li < nl; li += stride) {
    const Endpoint& l = lows[li];
    const int64_t first = std::partition_point(
        min_high_err.begin(), min_high_err.end(), [&](double e) { return l.err + e > best; }) -
        min_high_err.begin();
    for (int64_t hi = first; hi < nh; ++hi) {
      if (hi % stride != 0 && hi != nh - 1) continue;
      const Endpoint& h = highs[hi];
      if (!(h.u > l.u) || l.err + h.err > best) continue;
      const double err = l.err + h.err + inside_err(l.u, h.u, l.k, h.k);
      if (err < best || (err == best && seeded)) {
        best = err;
        best_l = li;
        best_h = hi;
        seeded = false;
      }
    }
  }
  // The range returned for a pair, as float32 (what choose_qparams will see).
  const auto returned = [&](int64_t li, int64_t hi) {
    return std::pair<float, float>{
        static_cast<float>(std::max(lows[li].value, r.min_val)),
        static_cast<float>(std::min(highs[hi].value, r.max_val))};
  };
  const auto pair_error = [&](int64_t li, int64_t hi) {
    if (!(highs[hi].u > lows[li].u)) return kInf;
    const auto [lo_f, hi_f] = returned(li, hi);
    return grid_error(lo_f, hi_f, quant_min, quant_max, false);
  };
  // Each end alone, alternately: see kExactLevels and kSweepAffine. The
  // first round settles where along each end the optimum lies; later ones
  // only move it a little.
  best = pair_error(best_l, best_h);
  for (int round = 0; round < kSweepRounds; ++round) {
    const int64_t radius = exact_everywhere && round == 0 ? std::max(nl, nh) : kSweepAffine;
    const int64_t l0 = best_l, h0 = best_h;
    for (int64_t hi = std::max<int64_t>(0, h0 - radius); hi <= std::min(nh - 1, h0 + radius); ++hi) {
      const double err = pair_error(best_l, hi);
      if (err < best) {
        best = err;
        best_h = hi;
      }
    }
    for (int64_t li = std::max<int64_t>(0, l0 - radius); li <= std::min(nl - 1, l0 + radius); ++li) {
      const double err = pair_error(li, best_h);
      if (err < best) {
        best = err;
        best_l = li;
      }
    }
    if (best_l == l0 && best_h == h0) break;
  }
  auto [best_lo, best_hi] = returned(best_l, best_h);
  best = kInf;
  for (int64_t li = std::max<int64_t>(0, best_l - kRefineAffine);
       li <= std::min(nl - 1, best_l + kRefineAffine); ++li) {
    for (int64_t hi = std::max<int64_t>(0, best_h - kRefineAffine);
         hi <= std::min(nh - 1, best_h + kRefineAffine); ++hi) {
      if (!(highs[hi].u > lows[li].u)) continue;
      const auto [lo_f, hi_f] = returned(li, hi);
      const double err = grid_error(lo_f, hi_f, quant_min, quant_max, false);
      if (err < best) {
        best = err;
        best_lo = lo_f;
        best_hi = hi_f;
      }
    }
  }
  // Between bin edges too, around the best pair (within one bin each way).
  const float edge_lo = best_lo, edge_hi = best_hi;
  const double sub = r.w / (kSubBinSteps / 4);
  for (int dl = -kSubBinSteps / 4; dl <= kSubBinSteps / 4; ++dl) {
    for (int dh = -kSubBinSteps / 4; dh <= kSubBinSteps / 4; ++dh) {
      const float lo_f = static_cast<float>(std::max<double>(edge_lo + dl * sub, r.min_val));
      const float hi_f = static_cast<float>(std::min<double>(edge_hi + dh * sub, r.max_val));
      if (!(hi_f > lo_f)) continue;
      const double err = grid_error(lo_f, hi_f, quant_min, quant_max, false);
      if (err < best) {
        best = err;
        best_lo = lo_f;
        best_hi = hi_f;
      }
    }
  }
  return {best_lo, best_hi};
}

// The histogram folded onto |x|: kEntropyBins bins over [0, amax], amax =
// max(|min_val|, |max_val|) > 0, as TensorRT's calibrator histograms |x|.
// Each bin's mass is spread uniformly over its interval of |x| (a bin
// straddling 0 splits its mass between its negative and positive parts in
// proportion) and shared among the folded bins it overlaps (overlaps under
// 1e-9 of its interval are rounding noise and skipped).
constexpr int64_t kEntropyBins = 2048;

std::vector<double> fold_abs(const Row& r, double amax, double& fold_width) {
  const int64_t bins = kEntropyBins;
  const double wa = amax / static_cast<double>(bins);
  fold_width = wa;
  std::vector<double> f(bins, 0.0);
  const auto spread = [&](double a, double b, double mass) {
    // No value exceeds amax: the part of a bin beyond it is empty.
    const double ua = std::min(a, amax) / wa, ub = std::min(b, amax) / wa;
    if (!(ub > ua)) {  // a bin starting at amax: its values are amax
      f[bins - 1] += mass;
      return;
    }
    const int64_t j0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(ua)));
    const int64_t j1 = std::min<int64_t>(bins - 1, static_cast<int64_t>(std::ceil(ub)) - 1);
    for (int64_t j = j0; j <= j1; ++j) {
      const double overlap = std::min(ub, static_cast<double>(j + 1)) - std::max(ua, static_cast<double>(j));
      if (overlap > 1e-9 * (ub - ua)) f[j] += mass * overlap / (ub - ua);
    }
  };
  for (int64_t i = 0; i < r.bins; ++i) {
    if (r.m[i] == 0) continue;
    const double m = static_cast<double>(r.m[i]);
    const double e0 = r.lo + static_cast<double>(i) * r.w;
    const double e1 = r.lo + static_cast<double>(i + 1) * r.w;
    if (e1 <= 0.0) {
      spread(-e1, -e0, m);
    } else if (e0 >= 0.0) {
      spread(e0, e1, m);
    } else {
      spread(0.0, -e0, m * (-e0 / r.w));
      spread(0.0, e1, m * (e1 / r.w));
    }
  }
  return f;
}

// "entropy": TensorRT's KL-divergence calibration (Migacz, GTC 2017) on the
// |x| histogram f (fold_abs: a fixed 2048 bins over [0, amax], as TensorRT,
// whatever the observer's resolution: KL thresholds on heavy tails scale
// with the bin count) with h = (quant_max - quant_min + 1) / 2 levels. For
// each threshold i = h .. bins: the reference P is f[0, i) with the tail
// f[i, bins) added to its last bin; the candidate Q quantizes the clipped
// f[0, i) (without the tail, as TensorRT does: quantizing P itself would give
// Q == P at i == h) into h groups, group g holding bins
// [ceil(g i / h), ceil((g + 1) i / h)), and spreads each group's mass evenly
// over the group's bins where P > 0 (MXNet's variant). The score is
// KL(P / |P| || Q / |Q|); the threshold with the smallest (the first, on
// ties) gives a = i * (fold width). Q is constant on each group, so
// sum P log Q = sum_g G_g log(G'_g / n_g) (G: P's mass in the group, G': Q's,
// n: bins with P > 0), and with prefix sums each threshold costs O(h).
double entropy_threshold(const Row& r, int64_t quant_min, int64_t quant_max) {
  const int64_t h = (quant_max - quant_min + 1) / 2;
  const double amax = std::max(std::fabs(r.min_val), std::fabs(r.max_val));
  const int64_t bins = kEntropyBins;
  if (bins < h || !(amax > 0.0)) {
    return amax;  // more levels than bins, or all zeros: no clipping
  }
  double wa = 0.0;
  const std::vector<double> f = fold_abs(r, amax, wa);
  std::vector<double> mass(bins + 1, 0.0), plogp(bins + 1, 0.0), nonzero(bins + 1, 0.0);
  for (int64_t k = 0; k < bins; ++k) {
    mass[k + 1] = mass[k] + f[k];
    plogp[k + 1] = plogp[k] + (f[k] > 0.0 ? f[k] * std::log(f[k]) : 0.0);
    nonzero[k + 1] = nonzero[k] + (f[k] > 0.0 ? 1.0 : 0.0);
  }
  const double total = mass[bins];
  double best = kInf;
  int64_t best_i = bins;
  for (int64_t i = h; i <= bins; ++i) {
    const double tail = mass[bins] - mass[i];
    const double last = f[i - 1] + tail;  // P's last bin
    const double clipped_total = mass[i];
    if (!(clipped_total > 0.0)) continue;  // Q would be empty
    double score = plogp[i - 1] + (last > 0.0 ? last * std::log(last) : 0.0);
    bool finite = true;
    for (int64_t g = 0; g < h && finite; ++g) {
      const int64_t start = (g * i + h - 1) / h;
      const int64_t stop = ((g + 1) * i + h - 1) / h;
      const double q_mass = mass[stop] - mass[start];
      double p_mass = q_mass;
      double p_nonzero = nonzero[stop] - nonzero[start];
      if (g == h - 1) {  // holds bin i - 1, which carries the tail
        p_mass += tail;
        p_nonzero += (last > 0.0 ? 1.0 : 0.0) - (f[i - 1] > 0.0 ? 1.0 : 0.0);
      }
      if (p_mass > 0.0) {
        finite = q_mass > 0.0;  // else P has mass where Q has none: KL = inf
        score -= p_mass * std::log(q_mass / p_nonzero);
      }
    }
    if (!finite) continue;
    score = score / total + std::log(clipped_total / total);
    if (score < best) {
      best = score;
      best_i = i;
    }
  }
  return std::min(static_cast<double>(best_i) * wa, amax);
}

std::tuple<at::Tensor, at::Tensor> histogram_range_cpu(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    c10::string_view method,
    double percentile,
    const c10::optional<at::Tensor>& histogram_sum) {
  const char* op = "histogram_range";
  const HistogramRangeArgs args = check_histogram_range_args(
      op, histogram, histogram_range, min_val, max_val, quant_min, quant_max,
      std::string(method.data(), method.size()), percentile, histogram_sum);
  const int64_t channels = args.layout.channels, bins = args.layout.bins;
  const at::Tensor hist = histogram.contiguous();
  const at::Tensor range = histogram_range.contiguous();
  const at::Tensor mn = min_val.contiguous();
  const at::Tensor mx = max_val.contiguous();
  const int64_t* ph = hist.data_ptr<int64_t>();
  const double* pr = range.data_ptr<double>();
  const float* pmin = mn.data_ptr<float>();
  const float* pmax = mx.data_ptr<float>();
  // Only "mse" reads the sums.
  const at::Tensor sum = histogram_sum.has_value() && args.method == RangeMethod::kMse
      ? histogram_sum->contiguous()
      : at::Tensor();
  const double* ps = sum.defined() ? sum.data_ptr<double>() : nullptr;

  std::vector<Row> rows(channels);
  for (int64_t c = 0; c < channels; ++c) {
    const std::string where = args.layout.per_channel ? fmt::format("channel {}", c) : "it";
    const std::string for_channel = args.layout.per_channel ? fmt::format(" for channel {}", c) : "";
    TORCH_CHECK_VALUE(
        !std::isnan(pmin[c]) && !std::isnan(pmax[c]),
        fmt::format(
            "mcuq::{}: expected min_val and max_val not NaN, but got ({}, {}){}", op, pmin[c],
            pmax[c], for_channel));
    TORCH_CHECK_VALUE(
        pmin[c] <= pmax[c],
        fmt::format(
            "mcuq::{}: expected a histogram that saw at least one finite value, but {} saw none",
            op, where));
    Row& r = rows[c];
    r.m = ph + c * bins;
    r.s = ps != nullptr ? ps + c * bins : nullptr;
    r.bins = bins;
    r.lo = pr[2 * c];
    r.w = (pr[2 * c + 1] - pr[2 * c]) / static_cast<double>(bins);
    r.min_val = pmin[c];
    r.max_val = pmax[c];
    r.total = 0.0;
    for (int64_t k = 0; k < bins; ++k) r.total += static_cast<double>(r.m[k]);
    if (args.method != RangeMethod::kMinMax) {
      TORCH_CHECK_VALUE(
          r.total > 0.0,
          fmt::format(
              "mcuq::{}: expected a histogram holding the values it saw, but got an empty "
              "histogram{}",
              op, for_channel));
      TORCH_CHECK_VALUE(
          std::isfinite(r.lo) && std::isfinite(r.w) && r.w >= 0.0,
          fmt::format(
              "mcuq::{}: expected histogram_range to be a finite (lo, hi) with lo <= hi, but got "
              "({}, {}){}",
              op, pr[2 * c], pr[2 * c + 1], for_channel));
    }
    for (int64_t k = 0; r.s != nullptr && k < bins; ++k) {
      TORCH_CHECK_VALUE(
          std::isfinite(r.s[k]),
          fmt::format(
              "mcuq::{}: expected histogram_sum to be finite, but got {} in bin {}{}", op, r.s[k], k,
              for_channel));
    }
  }

  at::Tensor out_min = at::empty(min_val.sizes(), min_val.options().dtype(at::kFloat));
  at::Tensor out_max = at::empty(min_val.sizes(), min_val.options().dtype(at::kFloat));
  float* po_min = out_min.data_ptr<float>();
  float* po_max = out_max.data_ptr<float>();
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const Row& r = rows[c];
      Range result{r.min_val, r.max_val};
      // One value seen (min_val == max_val; its bin has a width) or a
      // zero-width histogram: nothing to choose from.
      if (args.method == RangeMethod::kPercentile) {
        result = percentile_range(r, percentile, symmetric);
      } else if (args.method == RangeMethod::kMse && r.w > 0.0 && r.max_val > r.min_val) {
        result = mse_range(r, quant_min, quant_max, symmetric);
      } else if (args.method == RangeMethod::kEntropy && r.w > 0.0 && r.max_val > r.min_val) {
        const double a = entropy_threshold(r, quant_min, quant_max);
        result = symmetric ? Range{-a, a} : Range{std::max(r.min_val, -a), std::min(r.max_val, a)};
        // One-signed data wholly beyond the threshold: every value clips to
        // ±a, which is the range (choose_qparams adds 0).
        if (result.lo > result.hi) {
          result = r.min_val > 0.0 ? Range{a, a} : Range{-a, -a};
        }
      } else if (symmetric && args.method != RangeMethod::kMinMax) {
        const double a = std::max(std::fabs(r.min_val), std::fabs(r.max_val));
        result = {-a, a};
      }
      po_min[c] = static_cast<float>(result.lo);
      po_max[c] = static_cast<float>(result.hi);
    }
  });
  return {out_min, out_max};
}

}  // namespace

#ifdef MCUQ_WITH_CUDA
// observe_histogram_ on CUDA tensors: the batch's range per row and the
// counting pass run on the GPU (cuda/histogram.cu); the state (a few
// thousand bins per row) is folded and re-binned on the host by the CPU
// kernel's own functions, so the counts equal the CPU's exactly.
void observe_histogram_cuda(
    const at::Tensor& input,
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    const c10::optional<at::Tensor>& histogram_sum) {
  const char* op = "observe_histogram_";
  const HistogramLayout layout = check_observe_histogram_args(
      op, input, histogram, histogram_range, min_val, max_val, nonfinite_count, axis, histogram_sum);
  const int64_t channels = layout.channels, bins = layout.bins;
  HistogramState state(histogram, histogram_range, min_val, max_val, histogram_sum);
  int64_t* ph = state.counts();
  double* ps = state.sums();
  double* pr = state.ranges();
  check_ranges_of_nonempty(op, layout, ph, pr);
  if (input.numel() == 0) {
    return;
  }
  const at::Tensor x = rows_of(input, layout);

  // Each row's finite range: plain min / max unless they show a NaN or an
  // infinity, as in the CPU observers.
  auto [lo, hi] = at::aminmax(x, 1);
  at::Tensor bounds = at::stack({lo.to(at::kDouble), hi.to(at::kDouble)}).cpu();
  int64_t nonfinite = 0;
  if (!at::isfinite(bounds).all().item<bool>()) {
    const at::Tensor finite = at::isfinite(x);
    nonfinite = x.numel() - finite.sum().item<int64_t>();
    lo = at::where(finite, x, kInf).amin(1);
    hi = at::where(finite, x, -kInf).amax(1);
    bounds = at::stack({lo.to(at::kDouble), hi.to(at::kDouble)}).cpu();
  }
  const double* pb = bounds.data_ptr<double>();
  at::Tensor grids = at::zeros({2, channels}, bounds.options());
  double* pg = grids.data_ptr<double>();
  for (int64_t c = 0; c < channels; ++c) {
    const CanonicalGrid grid = begin_row(
        pb[c], pb[channels + c], ph + c * bins, ps != nullptr ? ps + c * bins : nullptr, bins, pr + 2 * c,
        state.mins() + c, state.maxs() + c);
    if (grid.bins != 0) {
      pg[c] = grid.k;
      pg[channels + c] = grid.inv_w;
    }
  }
  // The re-binned counts (and sums) go to the GPU, where the batch is counted in.
  const at::Tensor device_grids = grids.to(input.device());
  state.hist = state.hist.to(input.device());
  if (state.sum.defined()) state.sum = state.sum.to(input.device());
  cuda::count_histogram(x, device_grids[0], device_grids[1], state.hist, state.sum);
  state.write_back(histogram, histogram_range, min_val, max_val, histogram_sum);
  nonfinite_count.add_(nonfinite);
}

// histogram_range and _histogram_rebin_ work on the state alone (a few
// thousand bins per row): on CUDA tensors, the CPU kernels run on host copies.
std::tuple<at::Tensor, at::Tensor> histogram_range_cuda(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    c10::string_view method,
    double percentile,
    const c10::optional<at::Tensor>& histogram_sum) {
  check_histogram_range_args(
      "histogram_range", histogram, histogram_range, min_val, max_val, quant_min, quant_max,
      std::string(method.data(), method.size()), percentile, histogram_sum);
  const c10::optional<at::Tensor> sum =
      histogram_sum.has_value() ? c10::optional<at::Tensor>(histogram_sum->cpu()) : c10::nullopt;
  auto [lo, hi] = histogram_range_cpu(
      histogram.cpu(), histogram_range.cpu(), min_val.cpu(), max_val.cpu(), quant_min, quant_max, symmetric,
      method, percentile, sum);
  return {lo.to(histogram.device()), hi.to(histogram.device())};
}

void histogram_rebin_cuda(
    const at::Tensor& histogram,
    const at::Tensor& histogram_range,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const c10::optional<at::Tensor>& histogram_sum) {
  check_histogram_rebin_args("_histogram_rebin_", histogram, histogram_range, min_val, max_val, histogram_sum);
  const at::Tensor hist = histogram.cpu(), range = histogram_range.cpu();
  const c10::optional<at::Tensor> sum =
      histogram_sum.has_value() ? c10::optional<at::Tensor>(histogram_sum->cpu()) : c10::nullopt;
  histogram_rebin_cpu(hist, range, min_val.cpu(), max_val.cpu(), sum);
  histogram.copy_(hist);
  histogram_range.copy_(range);
  if (sum.has_value()) histogram_sum->copy_(*sum);
}
#endif  // MCUQ_WITH_CUDA

TORCH_LIBRARY_IMPL(mcuq, CPU, m) {
  m.impl("observe_histogram_", &observe_histogram_cpu);
  m.impl("histogram_range", &histogram_range_cpu);
  m.impl("_histogram_rebin_", &histogram_rebin_cpu);
}

#ifdef MCUQ_WITH_CUDA
TORCH_LIBRARY_IMPL(mcuq, CUDA, m) {
  m.impl("observe_histogram_", &observe_histogram_cuda);
  m.impl("histogram_range", &histogram_range_cuda);
  m.impl("_histogram_rebin_", &histogram_rebin_cuda);
}
#endif

}  // namespace mcuq::ops
