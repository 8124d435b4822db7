// CPU kernels of fake_quantize, quantize, dequantize and the fake_quantize
// gradient. Numerics follow DESIGN.md §3 and PyTorch's CPU fake-quant kernels
// bit for bit: level = z + nearbyint(x * (1.0f / s)) in float (double for
// float64 input), saturated to [quant_min, quant_max], then (q - z) * s in
// double rounded to the output type. Unlike PyTorch, +inf and levels beyond
// int64 saturate to quant_max (PyTorch's cast wraps them to quant_min) and
// NaN stays NaN.
#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/TensorIterator.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

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

// Per-element qparams broadcast over the input: scale, 1/scale, zero point.
struct BroadcastQParams {
  at::Tensor scale, inv_scale, zero_point;
};

BroadcastQParams prepare(
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
  const ChannelQParams qp = channel_qparams(op, layout, scale, zero_point, quant_min, quant_max);
  return {
      broadcast_along_axis(qp.scale, layout, input),
      broadcast_along_axis(qp.inv_scale, layout, input),
      broadcast_along_axis(qp.zero_point, layout, input)};
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
  const auto qp =
      prepare("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
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
  const auto qp =
      prepare("quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
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
  const auto qp =
      prepare("dequantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
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
  const auto qp =
      prepare("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  at::Tensor grad_input = at::empty_like(input);
  at::Tensor grad_scale = at::zeros_like(scale);
  at::Tensor grad_zero_point = at::zeros_like(zero_point);
  const at::Tensor g = grad.to(input.scalar_type());

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
