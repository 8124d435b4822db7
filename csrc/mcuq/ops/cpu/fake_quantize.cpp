// CPU kernels of fake_quantize, quantize, dequantize and the fake_quantize
// gradient. Numerics follow DESIGN.md §3 and PyTorch's CPU fake-quant kernels
// bit for bit: level = z + nearbyint(x * (1.0f / s)) in float (double for
// float64 input), saturated to [quant_min, quant_max], then (q - z) * s in
// double rounded to the output type. Unlike PyTorch, +inf and levels beyond
// int64 saturate to quant_max (PyTorch's cast wraps them to quant_min) and
// NaN stays NaN. Contiguous float32 inputs with fewer than 2^22 levels take a
// vectorized path that computes the same values (the "fast path" below); the
// rest, and the LSQ gradients, take the generic TensorIterator loops.
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

namespace mcuq::ops {
namespace {

// The level before saturation, evaluated exactly as PyTorch does.
template <typename acc_t>
inline acc_t raw_level(acc_t x, float inv_scale, int64_t zero_point) {
  return std::nearbyint(x * static_cast<acc_t>(inv_scale)) + static_cast<acc_t>(zero_point);
}

// Whether a level lies inside the range (false for NaN): the STE mask.
inline bool in_range(double level, int64_t quant_min, int64_t quant_max) {
  return level >= static_cast<double>(quant_min) && level <= static_cast<double>(quant_max);
}

// Saturates a non-NaN level; ±inf and huge levels go to the nearest bound.
inline int64_t saturate(double level, int64_t quant_min, int64_t quant_max) {
  if (level <= static_cast<double>(quant_min)) return quant_min;
  if (level >= static_cast<double>(quant_max)) return quant_max;
  return static_cast<int64_t>(level);
}

// PyTorch evaluates (q - z) * s in double and rounds once to the output type;
// float16/bfloat16 outputs go through float32 as PyTorch's assignment does.
template <typename scalar_t>
inline scalar_t dequantized(int64_t q, float scale, int64_t zero_point) {
  // q - z in double: exact for the int32 levels of fake_quantize, and no
  // int64 overflow for whatever levels dequantize is given.
  const double v = (static_cast<double>(q) - static_cast<double>(zero_point)) * static_cast<double>(scale);
  if constexpr (std::is_same_v<scalar_t, double>) {
    return v;
  } else {
    return static_cast<scalar_t>(static_cast<float>(v));
  }
}

// Runs `f(ptrs)` for every element; ptrs[k] points at operand k (outputs first).
template <int kOperands, typename F>
void for_each_element(at::TensorIterator& iter, const F& f) {
  iter.for_each([&](char** data, const int64_t* strides, int64_t n) {
    char* ptrs[kOperands];
    for (int64_t i = 0; i < n; ++i) {
      for (int k = 0; k < kOperands; ++k) {
        ptrs[k] = data[k] + i * strides[k];
      }
      f(ptrs);
    }
  });
}

// ---- fast path: contiguous float32, fewer than 2^22 levels ------------------
//
// Then every step of the rule is exact in float32 and the loops vectorize:
// - nearbyint(y): for |y| < 2^23, (y + c) - c with c = copysign(2^23, y)
//   rounds to the nearest integer, ties to even, as nearbyint does in the
//   default rounding mode (y + c lies in [2^23, 2^24), where floats are the
//   integers); larger |y| are integers already, and NaN / inf pass through.
//   Only the sign of a zero result can differ, and adding the zero point
//   (+0 when it is 0) makes it +0 either way.
// - level + z and the saturation compare the same float values as the
//   generic path; the saturated level minus z is an integer below 2^22,
//   exact; and (q - z) * s in float is the correctly rounded product, which
//   is what rounding the exact double product to float gives.
// NaN fails both comparisons, stays NaN through the arithmetic, and is
// outside the STE mask, as in the generic path.
constexpr int64_t kFastLevels = int64_t{1} << 22;

bool fast_path(const at::Tensor& input, int64_t quant_min, int64_t quant_max) {
  return input.scalar_type() == at::kFloat && input.is_contiguous() && quant_min > -kFastLevels &&
      quant_max < kFastLevels && quant_max - quant_min < kFastLevels;
}

// Branch-free (both candidates computed, then selected), so that the loops
// below vectorize (this file is compiled with -fno-trapping-math: selects
// between computed floats are then not control flow; no result changes).
inline float round_half_even(float y) {
  const float c = std::copysign(8388608.0f, y);  // 2^23
  const float r = (y + c) - c;
  return std::fabs(y) < 8388608.0f ? r : y;
}

inline float saturated_level(float x, float inv, float z, float lo, float hi) {
  const float level = round_half_even(x * inv) + z;
  return std::min(std::max(level, lo), hi);  // NaN stays NaN
}

// One run of n elements. kPerElement: element k has channel k (the
// constants advance with it: the channel axis is the innermost); otherwise
// all share channel 0 of the given pointers.
template <bool kPerElement>
void fake_quantize_run(const float* x, float* out, int64_t n, const float* s, const float* inv, const float* z, float lo, float hi) {
  for (int64_t k = 0; k < n; ++k) {
    const int64_t c = kPerElement ? k : 0;
    out[k] = (saturated_level(x[k], inv[c], z[c], lo, hi) - z[c]) * s[c];
  }
}

template <bool kPerElement>
void ste_mask_run(const float* g, const float* x, float* out, int64_t n, const float* inv, const float* z, float lo, float hi) {
  for (int64_t k = 0; k < n; ++k) {
    const int64_t c = kPerElement ? k : 0;
    const float level = round_half_even(x[k] * inv[c]) + z[c];
    const float gk = g[k];  // loaded unconditionally, so the select vectorizes
    out[k] = (level >= lo) & (level <= hi) ? gk : 0.0f;
  }
}

// The per-channel constants of a fast-path loop, as float32.
struct FloatQParams {
  const float* scale;
  const float* inv_scale;
  std::vector<float> zero_point;  // exact: |z| < 2^22
};

FloatQParams float_qparams(const ChannelQParams& qp) {
  FloatQParams f{qp.scale.data_ptr<float>(), qp.inv_scale.data_ptr<float>(), {}};
  const int64_t* z = qp.zero_point.data_ptr<int64_t>();
  for (int64_t c = 0; c < qp.zero_point.numel(); ++c) f.zero_point.push_back(static_cast<float>(z[c]));
  return f;
}

// Splits a contiguous tensor into runs for the kernels above, in parallel:
// body(begin, end, channel, per_element). With elements after the channel
// axis, a run shares one channel; with the channel axis innermost, a run is
// part of one row and its channels start at `channel`.
template <typename F>
void for_each_channel_run(const at::Tensor& input, const QParamLayout& layout, const F& body) {
  int64_t inner = input.numel(), channels = 1;
  if (!layout.per_tensor) {
    inner = 1;
    for (int64_t d = layout.axis + 1; d < input.dim(); ++d) inner *= input.size(d);
    channels = layout.channels;
  }
  const bool per_element = !layout.per_tensor && inner == 1;
  const int64_t run = per_element ? channels : inner;
  if (run == 0) return;
  at::parallel_for(0, input.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t run_end = std::min(end, (begin / run + 1) * run);
      body(begin, run_end, per_element ? begin % run : (begin / run) % channels, per_element);
      begin = run_end;
    }
  });
}

// Runs the fast path over contiguous float32 `input` into `output`: the
// fake-quantized input, or (with `grad`) the STE-masked gradient.
void fast_path_kernel(
    const at::Tensor& input,
    const float* grad,
    const at::Tensor& output,
    const QParamLayout& layout,
    const ChannelQParams& qp,
    int64_t quant_min,
    int64_t quant_max) {
  const FloatQParams f = float_qparams(qp);
  const float lo = static_cast<float>(quant_min), hi = static_cast<float>(quant_max);
  const float* x = input.data_ptr<float>();
  float* out = output.data_ptr<float>();
  for_each_channel_run(input, layout, [&](int64_t begin, int64_t end, int64_t c, bool per_element) {
    const float* s = f.scale + c;
    const float* inv = f.inv_scale + c;
    const float* z = f.zero_point.data() + c;
    if (grad != nullptr) {
      (per_element ? ste_mask_run<true> : ste_mask_run<false>)(
          grad + begin, x + begin, out + begin, end - begin, inv, z, lo, hi);
    } else {
      (per_element ? fake_quantize_run<true> : fake_quantize_run<false>)(
          x + begin, out + begin, end - begin, s, inv, z, lo, hi);
    }
  });
}

// The checked layout and per-channel qparams of a call.
struct Prepared {
  QParamLayout layout;
  ChannelQParams qp;
};

Prepared prepare(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  const QParamLayout layout =
      check_qparam_args(op, input, scale, zero_point, quant_min, quant_max, axis, group_size);
  return {layout, channel_qparams(op, layout, scale, zero_point, quant_min, quant_max)};
}

// Per-element qparams broadcast over the input (the generic loops).
struct BroadcastQParams {
  at::Tensor scale, inv_scale, zero_point;
};

BroadcastQParams broadcast(const Prepared& p, const at::Tensor& input) {
  return {
      broadcast_along_axis(p.qp.scale, p.layout, input),
      broadcast_along_axis(p.qp.inv_scale, p.layout, input),
      broadcast_along_axis(p.qp.zero_point, p.layout, input)};
}

// An iterator over preallocated outputs and mixed-dtype inputs (any
// strides, broadcasting); operands are owned so temporaries are safe.
at::TensorIterator elementwise(
    std::initializer_list<at::Tensor> outputs,
    std::initializer_list<at::Tensor> inputs) {
  at::TensorIteratorConfig config;
  config.check_all_same_dtype(false).resize_outputs(false);
  for (const auto& t : outputs) config.add_owned_output(t);
  for (const auto& t : inputs) config.add_owned_input(t);
  return config.build();
}

at::Tensor fake_quantize_cpu(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  check_float_input("fake_quantize", input);
  const Prepared p =
      prepare("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  if (fast_path(input, quant_min, quant_max)) {
    at::Tensor output = at::empty_like(input);  // dense, so laid out as the input
    fast_path_kernel(input, nullptr, output, p.layout, p.qp, quant_min, quant_max);
    return output;
  }
  const BroadcastQParams qp = broadcast(p, input);
  at::Tensor output = at::empty_like(input);
  auto iter = elementwise({output}, {input, qp.scale, qp.inv_scale, qp.zero_point});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "mcuq::fake_quantize", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for_each_element<5>(iter, [=](char** p) {
      const acc_t x = *reinterpret_cast<scalar_t*>(p[1]);
      const float s = *reinterpret_cast<float*>(p[2]);
      const float inv = *reinterpret_cast<float*>(p[3]);
      const int64_t z = *reinterpret_cast<int64_t*>(p[4]);
      const acc_t level = raw_level<acc_t>(x, inv, z);
      *reinterpret_cast<scalar_t*>(p[0]) = std::isnan(level)
          ? static_cast<scalar_t>(level)
          : dequantized<scalar_t>(saturate(level, quant_min, quant_max), s, z);
    });
  });
  return output;
}

at::Tensor quantize_cpu(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  check_float_input("quantize", input);
  const BroadcastQParams qp =
      broadcast(prepare("quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size), input);
  const auto out_dtype = quantized_dtype("quantize", dtype, quant_min, quant_max);
  // Levels are written as int64 first, then narrowed: the range check above
  // guarantees they fit the output dtype.
  at::Tensor levels = at::empty_like(input, input.options().dtype(at::kLong));
  auto iter = elementwise({levels}, {input, qp.inv_scale, qp.zero_point});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "mcuq::quantize", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for_each_element<4>(iter, [=](char** p) {
      const acc_t x = *reinterpret_cast<scalar_t*>(p[1]);
      const float inv = *reinterpret_cast<float*>(p[2]);
      const int64_t z = *reinterpret_cast<int64_t*>(p[3]);
      const acc_t level = raw_level<acc_t>(x, inv, z);
      // NaN has no level; it maps to the zero point (the value 0).
      *reinterpret_cast<int64_t*>(p[0]) =
          std::isnan(level) ? z : saturate(level, quant_min, quant_max);
    });
  });
  return out_dtype == at::kLong ? levels : levels.to(out_dtype);
}

at::Tensor dequantize_cpu(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  check_integer_input("dequantize", input);
  const BroadcastQParams qp =
      broadcast(prepare("dequantize", input, scale, zero_point, quant_min, quant_max, axis, group_size), input);
  const auto out_dtype = dequantized_dtype("dequantize", dtype);
  at::Tensor output = at::empty_like(input, input.options().dtype(out_dtype));
  at::Tensor levels = input.to(at::kLong);
  auto iter = elementwise({output}, {levels, qp.scale, qp.zero_point});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out_dtype, "mcuq::dequantize", [&] {
    for_each_element<4>(iter, [=](char** p) {
      const int64_t q = *reinterpret_cast<int64_t*>(p[1]);
      const float s = *reinterpret_cast<float*>(p[2]);
      const int64_t z = *reinterpret_cast<int64_t*>(p[3]);
      *reinterpret_cast<scalar_t*>(p[0]) = dequantized<scalar_t>(q, s, z);
    });
  });
  return output;
}

// Sums a per-element gradient over everything but the channel axis, then
// over the channels of each group, giving one value per scale entry.
at::Tensor reduce_to_qparam(const at::Tensor& per_element, const at::Tensor& like, int64_t axis, int64_t group_size) {
  at::Tensor r;
  if (like.numel() == 1) {
    r = per_element.sum();
  } else {
    const int64_t dim = per_element.dim();
    const int64_t a = axis < 0 ? axis + dim : axis;
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < dim; ++d) {
      if (d != a) dims.push_back(d);
    }
    r = dims.empty() ? per_element : per_element.sum(dims);
    r = r.view({-1, group_size}).sum(1);
  }
  return r.to(like.scalar_type()).view(like.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    bool need_scale_grad,
    bool need_zero_point_grad) {
  check_float_input("fake_quantize", input);
  at::Tensor grad_scale = at::zeros_like(scale);
  at::Tensor grad_zero_point = at::zeros_like(zero_point);
  const at::Tensor g = grad.to(input.scalar_type());
  const Prepared p =
      prepare("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  if (!need_scale_grad && !need_zero_point_grad && fast_path(input, quant_min, quant_max) &&
      g.is_contiguous() && g.sizes() == input.sizes()) {
    at::Tensor grad_input = at::empty_like(input);
    fast_path_kernel(input, g.data_ptr<float>(), grad_input, p.layout, p.qp, quant_min, quant_max);
    return {grad_input, grad_scale, grad_zero_point};
  }
  const BroadcastQParams qp = broadcast(p, input);
  at::Tensor grad_input = at::empty_like(input);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "mcuq::fake_quantize_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (!need_scale_grad && !need_zero_point_grad) {
      // Straight-through: the gradient passes where the level is in range.
      auto iter = elementwise({grad_input}, {g, input, qp.inv_scale, qp.zero_point});
      for_each_element<5>(iter, [=](char** p) {
        const acc_t x = *reinterpret_cast<scalar_t*>(p[2]);
        const acc_t level = raw_level<acc_t>(
            x, *reinterpret_cast<float*>(p[3]), *reinterpret_cast<int64_t*>(p[4]));
        const scalar_t gv = *reinterpret_cast<scalar_t*>(p[1]);
        *reinterpret_cast<scalar_t*>(p[0]) =
            in_range(level, quant_min, quant_max) ? gv : static_cast<scalar_t>(0);
      });
      return;
    }
    // LSQ (Esser et al. 2020) and LSQ+: per element, d out / d scale is
    // (q - z) - x / s inside the range and (bound - z) outside; d out / d z is
    // 0 inside and -s outside. NaN inputs contribute nothing.
    const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
    at::Tensor gs_elem = at::empty_like(input, input.options().dtype(acc_dtype));
    at::Tensor gz_elem = at::empty_like(input, input.options().dtype(acc_dtype));
    auto iter = elementwise({grad_input, gs_elem, gz_elem}, {g, input, qp.scale, qp.inv_scale, qp.zero_point});
    for_each_element<8>(iter, [=](char** p) {
      const acc_t gv = *reinterpret_cast<scalar_t*>(p[3]);
      const acc_t x = *reinterpret_cast<scalar_t*>(p[4]);
      const float s = *reinterpret_cast<float*>(p[5]);
      const int64_t z = *reinterpret_cast<int64_t*>(p[7]);
      const acc_t level = raw_level<acc_t>(x, *reinterpret_cast<float*>(p[6]), z);
      acc_t gi = 0, gs = 0, gz = 0;
      if (in_range(level, quant_min, quant_max)) {
        gi = gv;
        gs = gv * (static_cast<acc_t>(static_cast<int64_t>(level) - z) - x / static_cast<acc_t>(s));
      } else if (!std::isnan(level)) {
        gs = gv * static_cast<acc_t>(saturate(level, quant_min, quant_max) - z);
        gz = -gv * static_cast<acc_t>(s);
      }
      *reinterpret_cast<scalar_t*>(p[0]) = static_cast<scalar_t>(gi);
      *reinterpret_cast<acc_t*>(p[1]) = gs;
      *reinterpret_cast<acc_t*>(p[2]) = gz;
    });
    if (need_scale_grad) {
      grad_scale = reduce_to_qparam(gs_elem, scale, axis, group_size);
    }
    if (need_zero_point_grad) {
      grad_zero_point = reduce_to_qparam(gz_elem, zero_point, axis, group_size);
    }
  });
  return {grad_input, grad_scale, grad_zero_point};
}

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, CPU, m) {
  m.impl("fake_quantize", &fake_quantize_cpu);
  m.impl("quantize", &quantize_cpu);
  m.impl("dequantize", &dequantize_cpu);
  m.impl("_fake_quantize_backward", &fake_quantize_backward_cpu);
}

}  // namespace mcuq::ops
