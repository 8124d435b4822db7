// CUDA kernels of fake_quantize, quantize, dequantize and the fake_quantize
// gradient. The per-element formulas are the CPU kernels' own
// (fake_quantize_math.h), so float32 results are bit-identical to the CPU's;
// the LSQ scale / zero-point gradients are sums, equal up to the order of the
// summation. Scale and zero point are checked on the host as on the CPU
// (ValueError for a bad value), which reads them back from the GPU once per
// call.
#include "mcuq/ops/checks.h"
#include "mcuq/ops/cuda/elementwise.cuh"
#include "mcuq/ops/cuda/fake_quantize.h"
#include "mcuq/ops/fake_quantize_math.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstring>
#include <tuple>
#include <type_traits>

namespace mcuq::ops::cuda {
namespace detail {

// Elementwise kernels work on dense tensors in memory order.
at::Tensor dense(const at::Tensor& t) {
  return t.is_non_overlapping_and_dense() ? t : t.contiguous();
}

ChannelOf channel_of(const at::Tensor& x, const QParamLayout& layout) {
  if (layout.per_tensor) return ChannelOf(x.numel(), x.numel(), 1);
  return ChannelOf(x.numel(), x.stride(layout.axis), layout.channels);
}

// The checked qparams, read on the host, and a view of them for the kernels:
// by value for one entry, else one device buffer (int64 zero points, float32
// scales, float32 reciprocals) that `storage` keeps alive.
struct Prepared {
  QParamLayout layout;
  QParamsView view;
  at::Tensor storage;
};

// One entry per channel (groups expanded), on the host.
struct HostQParams {
  std::vector<float> scale, inv_scale;
  std::vector<int64_t> zero_point;
};

// Copies contiguous tensors' bytes from the GPU into one pinned host buffer
// on the current stream, then waits once.
std::vector<at::Tensor> read_back(const std::vector<at::Tensor>& ts) {
  int64_t total = 0;
  for (const auto& t : ts) total += (t.nbytes() + 15) / 16 * 16;
  const at::Tensor buffer = at::empty({total}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  const auto stream = at::cuda::getCurrentCUDAStream();
  std::vector<at::Tensor> out;
  int64_t offset = 0;
  for (const auto& t : ts) {
    uint8_t* dst = buffer.data_ptr<uint8_t>() + offset;
    C10_CUDA_CHECK(cudaMemcpyAsync(dst, t.data_ptr(), t.nbytes(), cudaMemcpyDeviceToHost, stream));
    out.push_back(buffer.slice(0, offset, offset + static_cast<int64_t>(t.nbytes())).view(t.scalar_type()));
    offset += (t.nbytes() + 15) / 16 * 16;
  }
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  return out;
}

// The qparams on the host, checked as channel_qparams checks them. The
// common dtypes (float32 scale; int32, int64 or float32 zero point) are read
// as raw bytes with a single wait for the GPU, which then idles only for the
// few microseconds until the kernel is launched; others go through
// channel_qparams on host copies.
HostQParams host_qparams(
    const char* op,
    const QParamLayout& layout,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    const at::Tensor& scale_host,
    const at::Tensor& zero_point_host) {
  HostQParams h;
  const auto z_type = zero_point.scalar_type();
  const bool raw = !scale_host.defined() && scale.scalar_type() == at::kFloat && scale.is_contiguous() &&
      zero_point.is_contiguous() && (z_type == at::kInt || z_type == at::kLong || z_type == at::kFloat);
  if (raw) {
    const int64_t n = scale.numel();
    const std::vector<at::Tensor> host = read_back({scale, zero_point});
    const float* sp = host[0].data_ptr<float>();
    h.scale.assign(sp, sp + n);
    h.inv_scale.resize(n);
    h.zero_point.resize(n);
    scale_reciprocals(op, n, h.scale.data(), h.inv_scale.data(), {});
    if (z_type == at::kFloat) {
      const float* zf = host[1].data_ptr<float>();
      const std::vector<double> zd(zf, zf + n);
      zero_points_of_floats(op, n, zd.data(), quant_min, quant_max, h.zero_point.data());
    } else {
      std::vector<int64_t> z64(n);
      for (int64_t i = 0; i < n; ++i) {
        z64[i] = z_type == at::kInt ? host[1].data_ptr<int32_t>()[i] : host[1].data_ptr<int64_t>()[i];
      }
      zero_points_of_integers(op, n, z64.data(), quant_min, quant_max, h.zero_point.data());
    }
  } else {
    const ChannelQParams qp = channel_qparams(
        op, QParamLayout{}, scale_host.defined() ? scale_host : scale.cpu(),
        scale_host.defined() ? zero_point_host : zero_point.cpu(), quant_min, quant_max);
    const int64_t n = qp.scale.numel();
    h.scale.assign(qp.scale.data_ptr<float>(), qp.scale.data_ptr<float>() + n);
    h.inv_scale.assign(qp.inv_scale.data_ptr<float>(), qp.inv_scale.data_ptr<float>() + n);
    h.zero_point.assign(qp.zero_point.data_ptr<int64_t>(), qp.zero_point.data_ptr<int64_t>() + n);
  }
  if (layout.group_size > 1) {
    HostQParams g;
    for (size_t i = 0; i < h.scale.size(); ++i) {
      for (int64_t k = 0; k < layout.group_size; ++k) {
        g.scale.push_back(h.scale[i]);
        g.inv_scale.push_back(h.inv_scale[i]);
        g.zero_point.push_back(h.zero_point[i]);
      }
    }
    return g;
  }
  return h;
}

// Reads the qparams, last before the launch (the arguments are checked and
// the outputs allocated by then, so the GPU idles only briefly). `scale_host` / `zero_point_host`: the same values on
// the host, if the caller has them.
Prepared prepare(
    const char* op,
    const QParamLayout& layout,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    const at::Tensor& scale_host = {},
    const at::Tensor& zero_point_host = {}) {
  Prepared p;
  p.layout = layout;
  const HostQParams h = host_qparams(op, layout, scale, zero_point, quant_min, quant_max, scale_host, zero_point_host);
  const int64_t n = static_cast<int64_t>(h.scale.size());
  if (n == 1) {
    p.view.scale0 = h.scale[0];
    p.view.inv_scale0 = h.inv_scale[0];
    p.view.zero_point0 = h.zero_point[0];
    return p;
  }
  std::vector<uint8_t> bytes(n * 16);
  std::memcpy(bytes.data(), h.zero_point.data(), n * 8);
  std::memcpy(bytes.data() + n * 8, h.scale.data(), n * 4);
  std::memcpy(bytes.data() + n * 12, h.inv_scale.data(), n * 4);
  p.storage = at::empty({n * 16}, input.options().dtype(at::kByte));
  // From pageable memory: returns once the bytes are staged, so `bytes` may go.
  C10_CUDA_CHECK(cudaMemcpyAsync(p.storage.data_ptr(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice,
                                 at::cuda::getCurrentCUDAStream()));
  const uint8_t* d = p.storage.data_ptr<uint8_t>();
  p.view.per_tensor = false;
  p.view.zero_point = reinterpret_cast<const int64_t*>(d);
  p.view.scale = reinterpret_cast<const float*>(d + n * 8);
  p.view.inv_scale = reinterpret_cast<const float*>(d + n * 12);
  return p;
}

// out[i] = op(x[i], i) over n elements, with packet loads where aligned.
template <typename out_t, typename in_t, typename Op>
void map1(const in_t* x, out_t* out, int64_t n, Op op) {
  constexpr int kVec = 16 / (sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  if (aligned16(x) && aligned16(out)) {
    launch<kVec>(n, [=] __device__(int64_t i, int count) {
      if (count == kVec) {
        const Packet<in_t, kVec> in = *reinterpret_cast<const Packet<in_t, kVec>*>(x + i);
        Packet<out_t, kVec> o;
#pragma unroll
        for (int k = 0; k < kVec; ++k) o.v[k] = op(in.v[k], i + k);
        *reinterpret_cast<Packet<out_t, kVec>*>(out + i) = o;
      } else {
        for (int k = 0; k < count; ++k) out[i + k] = op(x[i + k], i + k);
      }
    });
  } else {
    launch<1>(n, [=] __device__(int64_t i, int) { out[i] = op(x[i], i); });
  }
}

// out[i] = op(a[i], b[i], i), likewise.
template <typename T, typename Op>
void map2(const T* a, const T* b, T* out, int64_t n, Op op) {
  constexpr int kVec = 16 / sizeof(T);
  if (aligned16(a) && aligned16(b) && aligned16(out)) {
    launch<kVec>(n, [=] __device__(int64_t i, int count) {
      if (count == kVec) {
        const Packet<T, kVec> pa = *reinterpret_cast<const Packet<T, kVec>*>(a + i);
        const Packet<T, kVec> pb = *reinterpret_cast<const Packet<T, kVec>*>(b + i);
        Packet<T, kVec> o;
#pragma unroll
        for (int k = 0; k < kVec; ++k) o.v[k] = op(pa.v[k], pb.v[k], i + k);
        *reinterpret_cast<Packet<T, kVec>*>(out + i) = o;
      } else {
        for (int k = 0; k < count; ++k) out[i + k] = op(a[i + k], b[i + k], i + k);
      }
    });
  } else {
    launch<1>(n, [=] __device__(int64_t i, int) { out[i] = op(a[i], b[i], i); });
  }
}

at::Tensor fake_quantize_impl(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    const at::Tensor& scale_host,
    const at::Tensor& zero_point_host) {
  const c10::cuda::CUDAGuard guard(input.device());
  check_float_input("fake_quantize", input);
  const QParamLayout layout = check_qparam_args("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  const at::Tensor x = dense(input);
  at::Tensor out = at::empty_like(x);
  const Prepared p =
      prepare("fake_quantize", layout, x, scale, zero_point, quant_min, quant_max, scale_host, zero_point_host);
  const ChannelOf channel = channel_of(x, p.layout);
  const QParamsView q = p.view;
  const bool fast = fq::fast_path_range(quant_min, quant_max);
  const float lo = static_cast<float>(quant_min), hi = static_cast<float>(quant_max);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq::fake_quantize", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if constexpr (std::is_same_v<acc_t, float>) {
      if (fast) {
        map1<scalar_t, scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.numel(),
            [=] __device__(scalar_t v, int64_t i) {
              const int64_t c = q.per_tensor ? 0 : channel(i);
              return static_cast<scalar_t>(fq::fast_fake_quantized(
                  static_cast<float>(v), q.s(c), q.inv(c), static_cast<float>(q.z(c)), lo, hi));
            });
        return;
      }
    }
    map1<scalar_t, scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.numel(),
        [=] __device__(scalar_t v, int64_t i) {
          const int64_t c = q.per_tensor ? 0 : channel(i);
          return fq::fake_quantized<scalar_t, acc_t>(v, q.s(c), q.inv(c), q.z(c), quant_min, quant_max);
        });
  });
  return out;
}

at::Tensor fake_quantize_cuda(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  return fake_quantize_impl(input, scale, zero_point, quant_min, quant_max, axis, group_size, {}, {});
}

at::Tensor quantize_cuda(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  const c10::cuda::CUDAGuard guard(input.device());
  check_float_input("quantize", input);
  const QParamLayout layout = check_qparam_args("quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  const auto out_dtype = quantized_dtype("quantize", dtype, quant_min, quant_max);
  const at::Tensor x = dense(input);
  at::Tensor levels = at::empty_like(x, x.options().dtype(at::kLong));
  const Prepared p = prepare("quantize", layout, x, scale, zero_point, quant_min, quant_max);
  const ChannelOf channel = channel_of(x, p.layout);
  const QParamsView q = p.view;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq::quantize", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    map1<int64_t, scalar_t>(x.data_ptr<scalar_t>(), levels.data_ptr<int64_t>(), x.numel(),
        [=] __device__(scalar_t v, int64_t i) {
          const int64_t c = q.per_tensor ? 0 : channel(i);
          return fq::quantized<acc_t>(static_cast<acc_t>(v), q.inv(c), q.z(c), quant_min, quant_max);
        });
  });
  return out_dtype == at::kLong ? levels : levels.to(out_dtype);
}

at::Tensor dequantize_cuda(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size,
    c10::optional<at::ScalarType> dtype) {
  const c10::cuda::CUDAGuard guard(input.device());
  check_integer_input("dequantize", input);
  const QParamLayout layout = check_qparam_args("dequantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  const auto out_dtype = dequantized_dtype("dequantize", dtype);
  const at::Tensor levels = dense(input).to(at::kLong);
  at::Tensor out = at::empty_like(levels, levels.options().dtype(out_dtype));
  const Prepared p = prepare("dequantize", layout, levels, scale, zero_point, quant_min, quant_max);
  const ChannelOf channel = channel_of(levels, p.layout);
  const QParamsView q = p.view;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out_dtype, "mcuq::dequantize", [&] {
    map1<scalar_t, int64_t>(levels.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), levels.numel(),
        [=] __device__(int64_t v, int64_t i) {
          const int64_t c = q.per_tensor ? 0 : channel(i);
          return fq::dequantized<scalar_t>(v, q.s(c), q.z(c));
        });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quantize_backward_cuda(
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
  const c10::cuda::CUDAGuard guard(input.device());
  check_float_input("fake_quantize", input);
  at::Tensor grad_scale = at::zeros_like(scale);
  at::Tensor grad_zero_point = at::zeros_like(zero_point);
  const QParamLayout layout = check_qparam_args("fake_quantize", input, scale, zero_point, quant_min, quant_max, axis, group_size);
  const at::Tensor x = dense(input);
  // The gradient laid out as the input, element for element.
  at::Tensor g = grad.to(x.scalar_type());
  if (!g.sizes().equals(x.sizes())) g = g.expand(x.sizes());
  if (!g.strides().equals(x.strides())) {
    at::Tensor laid_out = at::empty_like(x);
    laid_out.copy_(g);
    g = laid_out;
  }
  at::Tensor grad_input = at::empty_like(x);
  const Prepared p = prepare("fake_quantize", layout, x, scale, zero_point, quant_min, quant_max);
  const ChannelOf channel = channel_of(x, p.layout);
  const QParamsView q = p.view;
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq::fake_quantize_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (!need_scale_grad && !need_zero_point_grad) {
      if constexpr (std::is_same_v<acc_t, float>) {
        if (fq::fast_path_range(quant_min, quant_max)) {
          const float lo = static_cast<float>(quant_min), hi = static_cast<float>(quant_max);
          map2<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), n,
              [=] __device__(scalar_t gv, scalar_t v, int64_t i) {
                const int64_t c = q.per_tensor ? 0 : channel(i);
                return fq::fast_in_range(static_cast<float>(v), q.inv(c), static_cast<float>(q.z(c)), lo, hi)
                    ? gv : static_cast<scalar_t>(0);
              });
          return;
        }
      }
      map2<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), n,
          [=] __device__(scalar_t gv, scalar_t v, int64_t i) {
            const int64_t c = q.per_tensor ? 0 : channel(i);
            const acc_t level = fq::raw_level<acc_t>(static_cast<acc_t>(v), q.inv(c), q.z(c));
            return fq::in_range(level, quant_min, quant_max) ? gv : static_cast<scalar_t>(0);
          });
      return;
    }
    const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
    at::Tensor gs_elem = at::empty_like(x, x.options().dtype(acc_dtype));
    at::Tensor gz_elem = at::empty_like(x, x.options().dtype(acc_dtype));
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    acc_t* gs = gs_elem.data_ptr<acc_t>();
    acc_t* gz = gz_elem.data_ptr<acc_t>();
    launch<1>(n, [=] __device__(int64_t i, int) {
      const int64_t c = q.per_tensor ? 0 : channel(i);
      const fq::ElementGrads<acc_t> r = fq::lsq_grads<acc_t>(
          static_cast<acc_t>(gp[i]), static_cast<acc_t>(xp[i]), q.s(c), q.inv(c), q.z(c), quant_min, quant_max);
      gi[i] = static_cast<scalar_t>(r.input);
      gs[i] = r.scale;
      gz[i] = r.zero_point;
    });
    if (need_scale_grad) grad_scale = reduce_to_qparam(gs_elem, scale, axis, group_size);
    if (need_zero_point_grad) grad_zero_point = reduce_to_qparam(gz_elem, zero_point, axis, group_size);
  });
  return {grad_input, grad_scale, grad_zero_point};
}

}  // namespace detail

at::Tensor fake_quantize_with_host_qparams(
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    const at::Tensor& scale_host,
    const at::Tensor& zero_point_host,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  return detail::fake_quantize_impl(
      input, scale, zero_point, quant_min, quant_max, axis, group_size, scale_host, zero_point_host);
}

TORCH_LIBRARY_IMPL(mcuq, CUDA, m) {
  m.impl("fake_quantize", &detail::fake_quantize_cuda);
  m.impl("quantize", &detail::quantize_cuda);
  m.impl("dequantize", &detail::dequantize_cuda);
  m.impl("_fake_quantize_backward", &detail::fake_quantize_backward_cuda);
}

}  // namespace mcuq::ops::cuda
