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
#include "mcuq/ops/fake_quantize_math.h"

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

using fq::in_range;
using fq::raw_level;

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
// The float32 formulas of fake_quantize_math.h (fq::fast_*), equal to the
// generic ones there; written branch-free so that the loops below vectorize
// (this file is compiled with -fno-trapping-math: selects between computed
// floats are then not control flow; no result changes).
bool fast_path(const at::Tensor& input, int64_t quant_min, int64_t quant_max) {
  return input.scalar_type() == at::kFloat && input.is_contiguous() && fq::fast_path_range(quant_min, quant_max);
}

using fq::fast_saturated_level;
using fq::round_half_even;

// One run of n elements. kPerElement: element k has channel k (the
// constants advance with it: the channel axis is the innermost); otherwise
// all share channel 0 of the given pointers.
template <bool kPerElement>
void fake_quantize_run(const float* x, float* out, int64_t n, const float* s, const float* inv, const float* z, float lo, float hi) {
  for (int64_t k = 0; k < n; ++k) {
    const int64_t c = kPerElement ? k : 0;
    out[k] = (fast_saturated_level(x[k], inv[c], z[c], lo, hi) - z[c]) * s[c];
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
      const scalar_t x = *reinterpret_cast<scalar_t*>(p[1]);
      const float s = *reinterpret_cast<float*>(p[2]);
      const float inv = *reinterpret_cast<float*>(p[3]);
      const int64_t z = *reinterpret_cast<int64_t*>(p[4]);
      *reinterpret_cast<scalar_t*>(p[0]) = fq::fake_quantized<scalar_t, acc_t>(x, s, inv, z, quant_min, quant_max);
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
      *reinterpret_cast<int64_t*>(p[0]) = fq::quantized<acc_t>(x, inv, z, quant_min, quant_max);
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
      *reinterpret_cast<scalar_t*>(p[0]) = fq::dequantized<scalar_t>(q, s, z);
    });
  });
  return output;
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
    // LSQ and LSQ+ (fake_quantize_math.h): per-element gradients, summed per scale entry.
    const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
    at::Tensor gs_elem = at::empty_like(input, input.options().dtype(acc_dtype));
    at::Tensor gz_elem = at::empty_like(input, input.options().dtype(acc_dtype));
    auto iter = elementwise({grad_input, gs_elem, gz_elem}, {g, input, qp.scale, qp.inv_scale, qp.zero_point});
    for_each_element<8>(iter, [=](char** p) {
      const acc_t gv = *reinterpret_cast<scalar_t*>(p[3]);
      const acc_t x = *reinterpret_cast<scalar_t*>(p[4]);
      const float s = *reinterpret_cast<float*>(p[5]);
      const int64_t z = *reinterpret_cast<int64_t*>(p[7]);
      const fq::ElementGrads<acc_t> gr =
          fq::lsq_grads<acc_t>(gv, x, s, *reinterpret_cast<float*>(p[6]), z, quant_min, quant_max);
      *reinterpret_cast<scalar_t*>(p[0]) = static_cast<scalar_t>(gr.input);
      *reinterpret_cast<acc_t*>(p[1]) = gr.scale;
      *reinterpret_cast<acc_t*>(p[2]) = gr.zero_point;
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
