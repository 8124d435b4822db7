// CPU kernels of the non-uniform ops: fake_quantize_levels, quantize_levels,
// dequantize_levels and the fake_quantize_levels gradient. The rule of one
// element is lv::level_index (levels_math.h); the codebook's values are
// checked here (finite, sorted per row), its shapes in checks.cpp.
#include "mcuq/ops/checks.h"
#include "mcuq/ops/levels_math.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

namespace mcuq::ops {
namespace {

// The codebook in the form the loops read: levels and thresholds (given, or
// the midpoints of neighbouring levels, in double: exact) per row, and the
// index NaN maps to.
struct Codebook {
  int64_t rows = 1, n = 1;
  std::vector<float> levels;
  std::vector<double> thresholds;
  std::vector<int64_t> nan_index;

  const float* row_levels(int64_t row) const { return levels.data() + row * n; }
  const double* row_thresholds(int64_t row) const { return thresholds.data() + row * (n - 1); }
};

Codebook codebook_of(const char* op, const at::Tensor& levels, const c10::optional<at::Tensor>& thresholds, int64_t n) {
  Codebook cb;
  cb.n = n;
  cb.rows = levels.dim() == 2 ? levels.size(0) : 1;
  check_codebook_values(op, levels, thresholds);
  const at::Tensor l = levels.detach().contiguous();
  cb.levels.assign(l.data_ptr<float>(), l.data_ptr<float>() + cb.rows * n);
  cb.thresholds.resize(cb.rows * (n - 1));
  if (thresholds.has_value()) {
    const at::Tensor t = thresholds->detach().contiguous();
    for (int64_t i = 0; i < cb.rows * (n - 1); ++i) cb.thresholds[i] = t.data_ptr<float>()[i];
  } else {
    for (int64_t r = 0; r < cb.rows; ++r) {
      for (int64_t i = 0; i + 1 < n; ++i) {
        cb.thresholds[r * (n - 1) + i] =
            (static_cast<double>(cb.levels[r * n + i]) + static_cast<double>(cb.levels[r * n + i + 1])) / 2;
      }
    }
  }
  cb.nan_index.resize(cb.rows);
  for (int64_t r = 0; r < cb.rows; ++r) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i) {
      if (std::fabs(cb.levels[r * n + i]) < std::fabs(cb.levels[r * n + best])) best = i;
    }
    cb.nan_index[r] = best;
  }
  return cb;
}

// Calls f(begin, count, row) for runs of contiguous elements of a contiguous
// tensor that share one codebook row, in parallel unless `serial`.
template <typename F>
void for_each_run(const at::Tensor& x, const QParamLayout& layout, bool serial, const F& f) {
  const int64_t numel = x.numel();
  if (numel == 0) return;
  int64_t outer = 1, channels = 1, inner = numel;
  if (!layout.per_tensor) {
    channels = layout.channels;
    inner = 1;
    for (int64_t d = layout.axis + 1; d < x.dim(); ++d) inner *= x.size(d);
    outer = numel / (channels * inner);
  }
  const auto row_of = [&](int64_t block) { return (block % channels) / layout.group_size; };
  if (serial) {
    for (int64_t block = 0; block < outer * channels; ++block) f(block * inner, inner, row_of(block));
  } else if (inner >= at::internal::GRAIN_SIZE) {  // long runs: split each
    for (int64_t block = 0; block < outer * channels; ++block) {
      at::parallel_for(0, inner, at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
        f(block * inner + begin, end - begin, row_of(block));
      });
    }
  } else {
    at::parallel_for(0, outer * channels, std::max<int64_t>(1, at::internal::GRAIN_SIZE / inner),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t block = begin; block < end; ++block) f(block * inner, inner, row_of(block));
                     });
  }
}

at::Tensor fake_quantize_levels_cpu(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size) {
  const char* op = "fake_quantize_levels";
  check_float_input(op, input);
  int64_t n = 0;
  const QParamLayout layout = check_levels_args(op, input, levels, thresholds, axis, group_size, &n);
  const Codebook cb = codebook_of(op, levels, thresholds, n);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq_levels", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    for_each_run(x, layout, false, [&](int64_t begin, int64_t count, int64_t row) {
      const float* l = cb.row_levels(row);
      const double* t = cb.row_thresholds(row);
      for (int64_t i = begin; i < begin + count; ++i) {
        const int64_t k = lv::level_index(static_cast<double>(in[i]), t, n, -1);
        o[i] = k < 0 ? in[i] : static_cast<scalar_t>(l[k]);  // NaN stays NaN
      }
    });
  });
  return out;
}

at::Tensor quantize_levels_cpu(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  const char* op = "quantize_levels";
  check_float_input(op, input);
  int64_t n = 0;
  const QParamLayout layout = check_levels_args(op, input, levels, thresholds, axis, group_size, &n);
  const at::ScalarType out_dtype = index_dtype(op, dtype, n);
  const Codebook cb = codebook_of(op, levels, thresholds, n);
  const at::Tensor x = input.contiguous();
  at::Tensor indices = at::empty(x.sizes(), x.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq_levels", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    int32_t* o = indices.data_ptr<int32_t>();
    for_each_run(x, layout, false, [&](int64_t begin, int64_t count, int64_t row) {
      const double* t = cb.row_thresholds(row);
      for (int64_t i = begin; i < begin + count; ++i) {
        o[i] = static_cast<int32_t>(lv::level_index(static_cast<double>(in[i]), t, n, cb.nan_index[row]));
      }
    });
  });
  return indices.to(out_dtype);
}

at::Tensor dequantize_levels_cpu(
    const at::Tensor& input,
    const at::Tensor& levels,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  const char* op = "dequantize_levels";
  check_integer_input(op, input);
  int64_t n = 0;
  const QParamLayout layout = check_levels_args(op, input, levels, c10::nullopt, axis, group_size, &n);
  const at::ScalarType out_dtype = dequantized_dtype(op, dtype);
  const Codebook cb = codebook_of(op, levels, c10::nullopt, n);
  const at::Tensor q = input.to(at::kLong).contiguous();
  at::Tensor out = at::empty(q.sizes(), q.options().dtype(at::kFloat));
  const int64_t* in = q.data_ptr<int64_t>();
  float* o = out.data_ptr<float>();
  for_each_run(q, layout, true, [&](int64_t begin, int64_t count, int64_t row) {
    const float* l = cb.row_levels(row);
    for (int64_t i = begin; i < begin + count; ++i) {
      TORCH_CHECK_VALUE(
          in[i] >= 0 && in[i] < n,
          fmt::format("mcuq::{}: expected indices in [0, {}), but got {} at flat index {}", op, n, in[i], i));
      o[i] = l[in[i]];
    }
  });
  return out.to(out_dtype);
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_levels_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    bool need_levels_grad) {
  const char* op = "fake_quantize_levels";
  check_float_input(op, input);
  int64_t n = 0;
  const QParamLayout layout = check_levels_args(op, input, levels, thresholds, axis, group_size, &n);
  TORCH_CHECK_VALUE(
      grad.sizes() == input.sizes(),
      fmt::format(
          "mcuq::{}: expected grad of the input's shape [{}], but got [{}]", op, fmt::join(input.sizes(), ", "),
          fmt::join(grad.sizes(), ", ")));
  const Codebook cb = codebook_of(op, levels, thresholds, n);
  const at::Tensor x = input.contiguous();
  const at::Tensor g = grad.to(x.scalar_type()).contiguous();
  at::Tensor grad_input = at::empty_like(x);
  std::vector<double> grad_levels(need_levels_grad ? cb.rows * n : 0, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq_levels", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    // The levels' sums must not race: one thread when they are asked for.
    for_each_run(x, layout, need_levels_grad, [&](int64_t begin, int64_t count, int64_t row) {
      const float* l = cb.row_levels(row);
      const double* t = cb.row_thresholds(row);
      for (int64_t i = begin; i < begin + count; ++i) {
        const double v = static_cast<double>(in[i]);
        // Straight-through inside [first level, last level]; NaN passes nothing.
        gi[i] = v >= l[0] && v <= l[n - 1] ? gp[i] : static_cast<scalar_t>(0);
        if (need_levels_grad && v == v) {
          grad_levels[row * n + lv::level_index(v, t, n, 0)] += static_cast<double>(gp[i]);
        }
      }
    });
  });
  at::Tensor grad_levels_t = at::zeros(levels.sizes(), levels.options().dtype(at::kFloat));
  if (need_levels_grad) {
    grad_levels_t.copy_(at::tensor(grad_levels, at::kDouble).reshape(levels.sizes()));
  }
  return {grad_input.view(input.sizes()), grad_levels_t};
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, CPU, m) {
  m.impl("fake_quantize_levels", &fake_quantize_levels_cpu);
  m.impl("quantize_levels", &quantize_levels_cpu);
  m.impl("dequantize_levels", &dequantize_levels_cpu);
  m.impl("_fake_quantize_levels_backward", &fake_quantize_levels_backward_cpu);
}

}  // namespace mcuq::ops
