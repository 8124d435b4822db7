// The non-uniform ops from ATen ops, for any device (levels_composite.h).
#include "mcuq/ops/levels_composite.h"

#include "mcuq/ops.h"
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <vector>

namespace mcuq::ops::levels_composite {
namespace {

// The input as [channels, elements] rows with each row's levels [channels,
// n] and thresholds [channels, n - 1] (double), and how to undo the view.
struct Rows {
  at::Tensor x, levels, thresholds;
  int64_t n = 1, axis = 0;
  bool per_tensor = true;
  std::vector<int64_t> moved_sizes;  // of input.movedim(axis, 0)

  at::Tensor restore(const at::Tensor& rows, const at::Tensor& input) const {
    return per_tensor ? rows.reshape(input.sizes()) : rows.reshape(moved_sizes).movedim(0, axis);
  }
};

Rows rows_of(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size) {
  Rows r;
  const QParamLayout layout = check_levels_args(op, input, levels, thresholds, axis, group_size, &r.n);
  check_codebook_values(
      op, levels.detach().cpu(),
      thresholds.has_value() ? c10::optional<at::Tensor>(thresholds->detach().cpu()) : c10::nullopt);
  const int64_t n = r.n;
  const at::Tensor l = levels.detach().reshape({-1, n});
  at::Tensor t = thresholds.has_value()
                     ? thresholds->detach().reshape({-1, n - 1}).to(at::kDouble)
                     : (l.narrow(1, 0, n - 1).to(at::kDouble) + l.narrow(1, 1, n - 1).to(at::kDouble)) / 2;
  r.per_tensor = layout.per_tensor;
  if (layout.per_tensor) {
    r.x = input.reshape({1, -1});
    r.levels = l.reshape({1, n});
    r.thresholds = t.reshape({1, n - 1});
  } else {
    r.axis = layout.axis;
    const at::Tensor moved = input.movedim(layout.axis, 0);
    r.moved_sizes = moved.sizes().vec();
    r.x = moved.reshape({layout.channels, -1});
    r.levels = l.repeat_interleave(layout.group_size, 0);
    r.thresholds = t.repeat_interleave(layout.group_size, 0);
  }
  return r;
}

// Index of every element among its row's levels (NaN: -1).
at::Tensor indices_of(const Rows& r) {
  const at::Tensor xd = r.x.to(at::kDouble).contiguous();
  at::Tensor index = r.n == 1 ? at::zeros_like(xd, xd.options().dtype(at::kLong))
                              : at::searchsorted(r.thresholds.contiguous(), xd, /*out_int32=*/false, /*right=*/true);
  return at::where(xd.isnan(), at::full_like(index, -1), index);
}

}  // namespace

at::Tensor fake_quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size) {
  check_float_input("fake_quantize_levels", input);
  const Rows r = rows_of("fake_quantize_levels", input, levels, thresholds, axis, group_size);
  const at::Tensor index = indices_of(r);
  const at::Tensor value = r.levels.gather(1, index.clamp_min(0)).to(input.scalar_type());
  return r.restore(at::where(index < 0, r.x, value), input).contiguous();
}

at::Tensor quantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  check_float_input("quantize_levels", input);
  const Rows r = rows_of("quantize_levels", input, levels, thresholds, axis, group_size);
  const at::ScalarType out = index_dtype("quantize_levels", dtype, r.n);
  const at::Tensor index = indices_of(r);
  const at::Tensor nearest_zero = r.levels.abs().argmin(1, /*keepdim=*/true).expand_as(index);
  return r.restore(at::where(index < 0, nearest_zero, index), input).to(out).contiguous();
}

at::Tensor dequantize_levels(
    const at::Tensor& input,
    const at::Tensor& levels,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  const char* op = "dequantize_levels";
  check_integer_input(op, input);
  const Rows r = rows_of(op, input, levels, c10::nullopt, axis, group_size);
  const at::ScalarType out = dequantized_dtype(op, dtype);
  const at::Tensor index = r.x.to(at::kLong);
  const at::Tensor bad = ((index < 0) | (index >= r.n)).reshape(-1).nonzero();
  if (bad.numel() > 0) {
    const int64_t at_index = bad[0].item<int64_t>();
    TORCH_CHECK_VALUE(
        false, fmt::format("mcuq::{}: expected indices in [0, {}), but got {} at flat index {}", op, r.n,
                           input.reshape(-1)[at_index].item<int64_t>(), at_index));
  }
  return r.restore(r.levels.gather(1, index), input).to(out).contiguous();
}

std::tuple<at::Tensor, at::Tensor> fake_quantize_levels_backward(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    bool need_levels_grad) {
  const char* op = "fake_quantize_levels";
  check_float_input(op, input);
  const Rows r = rows_of(op, input, levels, thresholds, axis, group_size);
  TORCH_CHECK_VALUE(
      grad.sizes() == input.sizes(), fmt::format("mcuq::{}: expected grad of the input's shape", op));
  const at::Tensor g = (r.per_tensor ? grad.reshape({1, -1}) : grad.movedim(r.axis, 0).reshape(r.x.sizes()))
                           .to(input.scalar_type());
  const at::Tensor xd = r.x.to(at::kDouble);
  const at::Tensor first = r.levels.narrow(1, 0, 1).to(at::kDouble), last = r.levels.narrow(1, r.n - 1, 1).to(at::kDouble);
  const at::Tensor grad_input = r.restore(at::where((xd >= first) & (xd <= last), g, at::zeros_like(g)), input);
  at::Tensor grad_levels = at::zeros(levels.sizes(), levels.options().dtype(at::kFloat));
  if (need_levels_grad) {
    const at::Tensor index = indices_of(r);
    const at::Tensor gd = at::where(index < 0, at::zeros_like(xd), g.to(at::kDouble));
    const at::Tensor sums = at::zeros({r.x.size(0), r.n}, xd.options()).scatter_add_(1, index.clamp_min(0), gd);
    // Channels of one group share a row of levels.
    grad_levels = sums.reshape({levels.dim() == 2 ? levels.size(0) : 1, -1, r.n}).sum(1).to(at::kFloat).reshape(
        levels.sizes());
  }
  return {grad_input.contiguous(), grad_levels};
}

std::tuple<at::Tensor, at::Tensor> uniform_levels(
    const at::Tensor& scale, const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max) {
  auto [levels, thresholds] = mcuq::uniform_levels(scale.cpu(), zero_point.cpu(), quant_min, quant_max);
  return {levels.to(scale.device()), thresholds.to(scale.device())};
}

std::tuple<at::Tensor, at::Tensor> fit_levels(
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method,
    c10::optional<int64_t> axis,
    int64_t group_size,
    int64_t iterations) {
  auto [levels, thresholds] = mcuq::fit_levels(input.cpu(), bits, method, axis, group_size, iterations);
  return {levels.to(input.device()), thresholds.to(input.device())};
}

}  // namespace mcuq::ops::levels_composite
