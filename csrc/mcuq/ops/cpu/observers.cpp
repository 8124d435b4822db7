// CPU and CUDA kernels of the range ops: choose_qparams, _finite_aminmax,
// observe_minmax_ (running or EMA min/max state, updated in place) and the
// fused observe_fake_quantize used on the QAT hot path.
//
// One implementation serves both devices: the passes over the input are ATen
// reductions (and mcuq::fake_quantize), which run on the input's device; the
// per-entry state (one min, max, scale and zero point per channel group) is
// updated on the host, on copies for GPU tensors, by the same few lines.
//
// Observers skip non-finite values and count them. Running min/max is exact;
// the EMA update is PyTorch's, in float32: m + c * (batch_m - m), where the
// first finite batch of a slice sets its state.
#include "mcuq/ops.h"
#include "mcuq/ops/checks.h"
#include "mcuq/ops/qparams.h"
#ifdef MCUQ_WITH_CUDA
#include "mcuq/ops/cuda/fake_quantize.h"
#endif

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/library.h>

#include <cfloat>
#include <limits>
#include <tuple>

namespace mcuq::ops {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct FiniteRange {
  at::Tensor min, max;  // float32 [entries]; +inf / -inf where a slice has no finite value
  int64_t nonfinite = 0;
};

int64_t entries_of(const QParamLayout& layout) {
  return layout.per_tensor ? 1 : layout.channels / layout.group_size;
}

// min and max of `low` and `high` (the input, or it with non-finite values
// masked) per range entry, as float32 [entries].
std::pair<at::Tensor, at::Tensor> reduce_range(
    const at::Tensor& low, const at::Tensor& high, const QParamLayout& layout) {
  at::Tensor lo, hi;
  // One pass where low and high are the same (aminmax has no float16 kernel).
  const bool one_pass =
      low.is_same(high) && (low.scalar_type() == at::kFloat || low.scalar_type() == at::kDouble);
  if (layout.per_tensor) {
    if (one_pass) {
      std::tie(lo, hi) = at::aminmax(low);
    } else {
      lo = low.min();
      hi = high.max();
    }
    lo = lo.reshape({1});
    hi = hi.reshape({1});
  } else {
    if (one_pass && layout.axis == 0 && low.is_contiguous()) {
      std::tie(lo, hi) = at::aminmax(low.view({low.size(0), -1}), 1);
    } else {
      std::vector<int64_t> dims;
      for (int64_t d = 0; d < low.dim(); ++d) {
        if (d != layout.axis) dims.push_back(d);
      }
      lo = dims.empty() ? low : low.amin(dims);
      hi = dims.empty() ? high : high.amax(dims);
    }
    if (layout.group_size > 1) {
      lo = lo.view({-1, layout.group_size}).amin(1);
      hi = hi.view({-1, layout.group_size}).amax(1);
    }
  }
  // float32 state: finite float64 values beyond its range saturate.
  // (±inf marks a slice without finite values and stays.)
  if (lo.scalar_type() == at::kDouble) {
    lo = at::where(at::isinf(lo), lo, lo.clamp(-FLT_MAX, FLT_MAX));
    hi = at::where(at::isinf(hi), hi, hi.clamp(-FLT_MAX, FLT_MAX));
  }
  return std::pair{lo.to(at::kFloat).contiguous(), hi.to(at::kFloat).contiguous()};
}

// The range of the finite values, per entry, counting the others.
FiniteRange masked_range(const at::Tensor& input, const QParamLayout& layout) {
  const at::Tensor finite = at::isfinite(input);
  const int64_t nonfinite = input.numel() - finite.sum().item<int64_t>();
  auto [lo, hi] = reduce_range(at::where(finite, input, kInf), at::where(finite, input, -kInf), layout);
  return {lo, hi, nonfinite};
}

FiniteRange finite_range(const at::Tensor& input, const QParamLayout& layout) {
  const int64_t entries = entries_of(layout);
  const auto options = input.options().dtype(at::kFloat);
  if (input.numel() == 0) {
    return {at::full({entries}, kInf, options), at::full({entries}, -kInf, options), 0};
  }
  // Usually every value is finite: then plain min/max are finite too (a NaN
  // or an infinity would show in them), and no mask is needed.
  auto [lo, hi] = reduce_range(input, input, layout);
  if ((at::isfinite(lo).all() & at::isfinite(hi).all()).item<bool>()) {
    return {lo, hi, 0};
  }
  return masked_range(input, layout);
}

// Folds a batch's range into range state, all float32 [entries] on the host.
void fold_range(
    const at::Tensor& batch_min,
    const at::Tensor& batch_max,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    c10::optional<double> averaging_constant) {
  float* pmin = min_val.data_ptr<float>();
  float* pmax = max_val.data_ptr<float>();
  const float* blo = batch_min.data_ptr<float>();
  const float* bhi = batch_max.data_ptr<float>();
  // PyTorch multiplies by the constant as a float32 scalar.
  const float c = static_cast<float>(averaging_constant.value_or(1.0));
  for (int64_t i = 0; i < min_val.numel(); ++i) {
    if (!(blo[i] <= bhi[i])) {
      continue;  // no finite value in this slice of the batch
    }
    if (!averaging_constant.has_value()) {
      pmin[i] = std::min(pmin[i], blo[i]);
      pmax[i] = std::max(pmax[i], bhi[i]);
    } else if (pmin[i] == kInf && pmax[i] == -kInf) {
      pmin[i] = blo[i];
      pmax[i] = bhi[i];
    } else {
      const float dmin = blo[i] - pmin[i];
      const float dmax = bhi[i] - pmax[i];
      pmin[i] = pmin[i] + c * dmin;
      pmax[i] = pmax[i] + c * dmax;
    }
  }
}

// Folds a batch's range into the observer state (CPU tensors; the CUDA
// kernels below bring theirs to the host with fold_on_host).
void update_range_state(
    const FiniteRange& batch,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    c10::optional<double> averaging_constant) {
  at::Tensor mn = min_val.contiguous().view({-1});
  at::Tensor mx = max_val.contiguous().view({-1});
  fold_range(batch.min, batch.max, mn, mx, averaging_constant);
  if (!mn.is_same(min_val)) min_val.copy_(mn.view_as(min_val));
  if (!mx.is_same(max_val)) max_val.copy_(mx.view_as(max_val));
  nonfinite_count.add_(batch.nonfinite);
}

enum class IfNoRange { kError, kKeep };

// qparams for each (min, max) entry (float32 [entries] on the host), written
// into s (float32) / z (int32) on the host.
void qparams_into(
    const char* op,
    const at::Tensor& lo,
    const at::Tensor& hi,
    const at::Tensor& s,
    const at::Tensor& z,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two,
    IfNoRange if_no_range) {
  const float* plo = lo.data_ptr<float>();
  const float* phi = hi.data_ptr<float>();
  float* ps = s.data_ptr<float>();
  int32_t* pz = z.data_ptr<int32_t>();
  const int64_t n = lo.numel();
  for (int64_t i = 0; i < n; ++i) {
    const auto where = [&] { return n > 1 ? fmt::format(" at index {}", i) : std::string(); };
    if (plo[i] == kInf && phi[i] == -kInf) {
      TORCH_CHECK_VALUE(
          if_no_range == IfNoRange::kKeep,
          fmt::format(
              "mcuq::{}: expected a range, but got min_val=inf, max_val=-inf{} (an observer that "
              "saw no finite value)",
              op, where()));
      continue;
    }
    TORCH_CHECK_VALUE(
        std::isfinite(plo[i]) && std::isfinite(phi[i]) && plo[i] <= phi[i],
        fmt::format(
            "mcuq::{}: expected finite min_val <= max_val, but got min_val={}, max_val={}{}", op,
            plo[i], phi[i], where()));
    const QParams q = qparams_from_range(plo[i], phi[i], quant_min, quant_max, symmetric, power_of_two);
    TORCH_CHECK_VALUE(
        std::isfinite(q.scale),
        fmt::format(
            "mcuq::{}: expected a range whose scale fits float32, but got min_val={}, "
            "max_val={}{} (scale would be inf)",
            op, plo[i], phi[i], where()));
    ps[i] = q.scale;
    pz[i] = q.zero_point;
  }
}

// qparams for each (min, max) entry, written into scale / zero_point.
void write_qparams(
    const char* op,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two,
    IfNoRange if_no_range) {
  const at::Tensor lo = min_val.detach().to(at::kCPU, at::kFloat).contiguous().view({-1});
  const at::Tensor hi = max_val.detach().to(at::kCPU, at::kFloat).contiguous().view({-1});
  at::Tensor s = scale.contiguous().view({-1}).cpu();
  at::Tensor z = zero_point.contiguous().view({-1}).cpu();
  qparams_into(op, lo, hi, s, z, quant_min, quant_max, symmetric, power_of_two, if_no_range);
  if (!s.is_same(scale)) scale.copy_(s.view_as(scale));
  if (!z.is_same(zero_point)) zero_point.copy_(z.view_as(zero_point));
}

bool flag_on(const at::Tensor& flag) {
  return flag.item().toDouble() != 0.0;
}

std::tuple<at::Tensor, at::Tensor> choose_qparams_kernel(
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two) {
  check_choose_qparams_args("choose_qparams", min_val, max_val, quant_min, quant_max);
  // A 0-d range gives one-element qparams, as PyTorch's observers return.
  const std::vector<int64_t> shape =
      min_val.dim() == 0 ? std::vector<int64_t>{1} : min_val.sizes().vec();
  at::Tensor scale = at::empty(shape, min_val.options().dtype(at::kFloat));
  at::Tensor zero_point = at::empty(shape, min_val.options().dtype(at::kInt));
  write_qparams(
      "choose_qparams", min_val, max_val, scale, zero_point, quant_min, quant_max, symmetric,
      power_of_two, IfNoRange::kError);
  return {scale, zero_point};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> finite_aminmax_kernel(
    const at::Tensor& input,
    c10::optional<int64_t> axis,
    int64_t group_size) {
  check_float_input("_finite_aminmax", input);
  const FiniteRange r =
      finite_range(input.detach(), slice_layout("_finite_aminmax", input, axis, group_size));
  return {r.min, r.max, at::full({}, r.nonfinite, input.options().dtype(at::kLong))};
}

void observe_minmax_kernel(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    c10::optional<double> averaging_constant,
    int64_t axis,
    int64_t group_size) {
  const char* op = "observe_minmax_";
  check_float_input(op, input);
  check_averaging_constant(op, averaging_constant);
  const QParamLayout layout =
      check_range_state(op, input, min_val, max_val, nonfinite_count, axis, group_size);
  update_range_state(
      finite_range(input.detach(), layout), min_val, max_val, nonfinite_count, averaging_constant);
}

at::Tensor observe_fake_quantize_kernel(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    const at::Tensor& observer_enabled,
    const at::Tensor& fake_quant_enabled,
    c10::optional<double> averaging_constant,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two,
    int64_t axis,
    int64_t group_size) {
  const char* op = "observe_fake_quantize";
  const QParamLayout layout = check_observe_fake_quantize_args(
      op, input, min_val, max_val, nonfinite_count, scale, zero_point, observer_enabled,
      fake_quant_enabled, averaging_constant, quant_min, quant_max, axis, group_size);
  // Two passes over the input, as in torch.ao's FakeQuantize: this batch's
  // range sets the qparams this batch is quantized with.
  if (flag_on(observer_enabled)) {
    update_range_state(
        finite_range(input.detach(), layout), min_val, max_val, nonfinite_count, averaging_constant);
    write_qparams(
        op, min_val, max_val, scale, zero_point, quant_min, quant_max, symmetric, power_of_two,
        IfNoRange::kKeep);
  }
  if (flag_on(fake_quant_enabled)) {
    return mcuq::fake_quantize(input, scale, zero_point, quant_min, quant_max, axis, group_size);
  }
  return input.clone();
}

#ifdef MCUQ_WITH_CUDA
// The range ops on CUDA tensors: the same steps, arranged so that the host
// waits for the GPU once per call (plus once for the enable flags of the
// fused op), where reading each tensor back in turn would wait a dozen times.

// The batch's range (reduced on the GPU) folded into host copies of the
// state. One transfer brings the range, the state and `also` (the fused
// op's scale and zero point) as float64, which holds each exactly.
struct HostFold {
  at::Tensor min, max;  // float32 [entries], folded
  at::Tensor also;      // float64, `also` concatenated
  int64_t nonfinite = 0;
};

HostFold fold_on_host(
    const at::Tensor& input,
    const QParamLayout& layout,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    c10::optional<double> averaging_constant,
    const std::vector<at::Tensor>& also = {}) {
  const int64_t e = entries_of(layout);
  const at::Tensor x = input.detach();
  FiniteRange batch;
  if (x.numel() == 0) {
    batch = finite_range(x, layout);
  } else {
    std::tie(batch.min, batch.max) = reduce_range(x, x, layout);
  }
  std::vector<at::Tensor> parts = {batch.min.to(at::kDouble), batch.max.to(at::kDouble),
                                   min_val.reshape(-1).to(at::kDouble), max_val.reshape(-1).to(at::kDouble)};
  for (const auto& t : also) parts.push_back(t.reshape(-1).to(at::kDouble));
  const at::Tensor host = at::cat(parts).cpu();
  at::Tensor bmin = host.slice(0, 0, e).to(at::kFloat), bmax = host.slice(0, e, 2 * e).to(at::kFloat);
  if (x.numel() != 0 && !(at::isfinite(bmin).all().item<bool>() && at::isfinite(bmax).all().item<bool>())) {
    batch = masked_range(x, layout);  // a NaN or an infinity showed
    bmin = batch.min.cpu();
    bmax = batch.max.cpu();
  }
  HostFold f{host.slice(0, 2 * e, 3 * e).to(at::kFloat), host.slice(0, 3 * e, 4 * e).to(at::kFloat),
             host.slice(0, 4 * e), batch.nonfinite};
  fold_range(bmin, bmax, f.min, f.max, averaging_constant);
  return f;
}

void observe_minmax_cuda(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    c10::optional<double> averaging_constant,
    int64_t axis,
    int64_t group_size) {
  const char* op = "observe_minmax_";
  check_float_input(op, input);
  check_averaging_constant(op, averaging_constant);
  const QParamLayout layout =
      check_range_state(op, input, min_val, max_val, nonfinite_count, axis, group_size);
  const HostFold f = fold_on_host(input, layout, min_val, max_val, averaging_constant);
  min_val.copy_(f.min.view_as(min_val));
  max_val.copy_(f.max.view_as(max_val));
  if (f.nonfinite != 0) nonfinite_count.add_(f.nonfinite);
}

// The qparams it computes go to the fake-quantize kernel from the host, not
// read back again.
at::Tensor observe_fake_quantize_cuda(
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    const at::Tensor& observer_enabled,
    const at::Tensor& fake_quant_enabled,
    c10::optional<double> averaging_constant,
    int64_t quant_min,
    int64_t quant_max,
    bool symmetric,
    bool power_of_two,
    int64_t axis,
    int64_t group_size) {
  const char* op = "observe_fake_quantize";
  const QParamLayout layout = check_observe_fake_quantize_args(
      op, input, min_val, max_val, nonfinite_count, scale, zero_point, observer_enabled,
      fake_quant_enabled, averaging_constant, quant_min, quant_max, axis, group_size);
  const at::Tensor flags = at::stack({observer_enabled.reshape(-1)[0].to(at::kDouble),
                                      fake_quant_enabled.reshape(-1)[0].to(at::kDouble)}).cpu();
  at::Tensor s_host, z_host;
  if (flags.data_ptr<double>()[0] != 0.0) {
    const int64_t e = entries_of(layout);
    const HostFold f = fold_on_host(input, layout, min_val, max_val, averaging_constant, {scale, zero_point});
    s_host = f.also.slice(0, 0, e).to(at::kFloat);
    z_host = f.also.slice(0, e, 2 * e).to(at::kInt);
    qparams_into(op, f.min, f.max, s_host, z_host, quant_min, quant_max, symmetric, power_of_two, IfNoRange::kKeep);
    min_val.copy_(f.min.view_as(min_val));
    max_val.copy_(f.max.view_as(max_val));
    scale.copy_(s_host.view_as(scale));
    zero_point.copy_(z_host.view_as(zero_point));
    if (f.nonfinite != 0) nonfinite_count.add_(f.nonfinite);
  }
  if (flags.data_ptr<double>()[1] != 0.0) {
    if (s_host.defined()) {
      return cuda::fake_quantize_with_host_qparams(
          input, scale, zero_point, s_host.view(scale.sizes()), z_host.view(zero_point.sizes()), quant_min,
          quant_max, axis, group_size);
    }
    return mcuq::fake_quantize(input, scale, zero_point, quant_min, quant_max, axis, group_size);
  }
  return input.clone();
}
#endif  // MCUQ_WITH_CUDA

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, CPU, m) {
  m.impl("choose_qparams", &choose_qparams_kernel);
  m.impl("_finite_aminmax", &finite_aminmax_kernel);
  m.impl("observe_minmax_", &observe_minmax_kernel);
  m.impl("observe_fake_quantize", &observe_fake_quantize_kernel);
}

#ifdef MCUQ_WITH_CUDA
TORCH_LIBRARY_IMPL(mcuq, CUDA, m) {
  m.impl("choose_qparams", &choose_qparams_kernel);
  m.impl("_finite_aminmax", &finite_aminmax_kernel);
  m.impl("observe_minmax_", &observe_minmax_cuda);
  m.impl("observe_fake_quantize", &observe_fake_quantize_cuda);
}
#endif

}  // namespace mcuq::ops
