// CUDA kernels of fake_quantize, quantize, dequantize and the fake_quantize
// gradient. The per-element formulas are the CPU kernels' own
// (fake_quantize_math.h), so float32 results are bit-identical to the CPU's;
// the LSQ scale / zero-point gradients are sums, equal up to the order of the
// summation. Scale and zero point are checked on the host as on the CPU
// (ValueError for a bad value), from a read-back that the host waits for only
// once the kernels are queued (Prepared).
#include "mcuq/ops/checks.h"
#include "mcuq/ops/cuda/elementwise.cuh"
#include "mcuq/ops/cuda/fake_quantize.h"
#include "mcuq/ops/fake_quantize_math.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>
#include <vector>

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

template <typename z_t>
__global__ void entries_kernel(const float* scale, const z_t* zero_point, int64_t count, int64_t group_size,
                               int64_t quant_min, int64_t quant_max, QEntry* entry, int64_t* zero_point_out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < count * group_size; j += step) {
    const int64_t src = j / group_size;
    const float s = scale[src];
    int64_t z;
    if constexpr (std::is_floating_point_v<z_t>) {
      z = fq::zero_point_of_float(static_cast<double>(zero_point[src]), quant_min, quant_max);
    } else {
      z = static_cast<int64_t>(zero_point[src]);
    }
    entry[j] = QEntry{s, fq::reciprocal(s), static_cast<float>(z), 0.0f};
    zero_point_out[j] = z;
  }
}

// The parameters on the GPU, one QEntry and one int64 zero point per
// channel (groups expanded), derived there from the scale and zero point
// tensors by the CPU's formulas (fake_quantize_math.h), so the kernels
// never wait for the host. The host checks the same values as the CPU does
// (ValueError for a bad one): the caller's host copies, or a read-back that
// is queued before the kernels and waited for once they are launched
// (check()), so the GPU goes on from the read-back to the kernels without
// idling. Bad values reach the kernels first, which compute with them
// harmlessly; the error then drops the output.
class Prepared {
 public:
  // `scale_host` / `zero_point_host`: the same values on the host, if the
  // caller has them (then nothing is read back).
  Prepared(const char* op, const QParamLayout& layout, const at::Tensor& input, const at::Tensor& scale,
           const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max, const at::Tensor& scale_host = {},
           const at::Tensor& zero_point_host = {})
      : op_(op), quant_min_(quant_min), quant_max_(quant_max) {
    const at::Tensor s = scale.detach().reshape(-1).to(at::kFloat).contiguous();
    at::Tensor z = zero_point.detach().reshape(-1);
    const auto z_type = z.scalar_type();
    const bool common = scale.scalar_type() == at::kFloat &&
        (z_type == at::kInt || z_type == at::kLong || z_type == at::kFloat);
    if (scale_host.defined()) {
      channel_qparams(op, QParamLayout{}, scale_host, zero_point_host, quant_min, quant_max);
    } else if (!common) {
      // Other dtypes: checked on host copies first, with the original values in the message.
      channel_qparams(op, QParamLayout{}, scale.cpu(), zero_point.cpu(), quant_min, quant_max);
    }
    if (z_type != at::kInt && z_type != at::kLong && z_type != at::kFloat) {
      z = z.to(z.is_floating_point() ? at::kDouble : at::kLong);
    }
    z = z.contiguous();
    const int64_t entries = s.numel() * layout.group_size;
    storage_ = at::empty({entries * static_cast<int64_t>(sizeof(QEntry) + sizeof(int64_t))},
                         input.options().dtype(at::kByte));
    auto* entry = reinterpret_cast<QEntry*>(storage_.data_ptr<uint8_t>());
    auto* zero_points = reinterpret_cast<int64_t*>(entry + entries);
    switch (z.scalar_type()) {
      case at::kInt: launch_entries<int32_t>(s, z, layout, entry, zero_points); break;
      case at::kLong: launch_entries<int64_t>(s, z, layout, entry, zero_points); break;
      case at::kFloat: launch_entries<float>(s, z, layout, entry, zero_points); break;
      default: launch_entries<double>(s, z, layout, entry, zero_points);
    }
    view.entry = entry;
    view.zero_point = zero_points;
    view.per_tensor = entries == 1;
    if (common && !scale_host.defined()) read_back(s, z);  // last: nothing throws after it
  }

  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;

  ~Prepared() {
    // Left by an exception before check(): the read-back must land before
    // its pinned buffers go back to the allocator. Never throws (an earlier
    // CUDA error has been or will be raised elsewhere).
    if (pending_) C10_CUDA_IGNORE_ERROR(cudaEventSynchronize(read_back_done_.event()));
  }

  // Raises for bad parameters; call once the kernels are launched.
  void check() {
    if (!pending_) return;
    pending_ = false;  // first: if the wait throws, the destructor must not wait again
    read_back_done_.synchronize();
    const int64_t n = host_scale_.numel();
    std::vector<float> inv(n);
    std::vector<int64_t> z(n);
    scale_reciprocals(op_, n, host_scale_.data_ptr<float>(), inv.data(), {});
    if (host_zero_point_.scalar_type() == at::kFloat) {
      const float* zf = host_zero_point_.data_ptr<float>();
      const std::vector<double> zd(zf, zf + n);
      zero_points_of_floats(op_, n, zd.data(), quant_min_, quant_max_, z.data());
    } else {
      const at::Tensor z64 = host_zero_point_.to(at::kLong);
      zero_points_of_integers(op_, n, z64.data_ptr<int64_t>(), quant_min_, quant_max_, z.data());
    }
  }

  QParamsView view;

 private:
  template <typename z_t>
  void launch_entries(const at::Tensor& s, const at::Tensor& z, const QParamLayout& layout, QEntry* entry,
                      int64_t* zero_points) const {
    const int64_t entries = s.numel() * layout.group_size;
    entries_kernel<z_t><<<blocks_for(entries), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        s.data_ptr<float>(), z.data_ptr<z_t>(), s.numel(), layout.group_size, quant_min_, quant_max_, entry,
        zero_points);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  void read_back(const at::Tensor& s, const at::Tensor& z) {
    const auto stream = at::cuda::getCurrentCUDAStream();
    const auto pinned = at::TensorOptions().pinned_memory(true);
    host_scale_ = at::empty({s.numel()}, pinned.dtype(at::kFloat));
    host_zero_point_ = at::empty({z.numel()}, pinned.dtype(z.scalar_type()));
    C10_CUDA_CHECK(cudaMemcpyAsync(host_scale_.data_ptr(), s.data_ptr(), s.nbytes(), cudaMemcpyDeviceToHost, stream));
    C10_CUDA_CHECK(
        cudaMemcpyAsync(host_zero_point_.data_ptr(), z.data_ptr(), z.nbytes(), cudaMemcpyDeviceToHost, stream));
    read_back_done_.record(stream);
    pending_ = true;
  }

  const char* op_;
  int64_t quant_min_, quant_max_;
  at::Tensor storage_;
  at::Tensor host_scale_, host_zero_point_;  // pinned
  at::cuda::CUDAEvent read_back_done_;
  bool pending_ = false;
};

// out[i] = op(x[i], e, z) over n elements, e and z the element's
// parameters, with packet loads where aligned.
template <typename out_t, typename in_t, typename Op>
void map1(const in_t* x, out_t* out, int64_t n, const QParamsView& q, const ChannelOf& channel, Op op) {
  constexpr int kVec = 16 / (sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  if (aligned16(x) && aligned16(out)) {
    launch_with_qparams<kVec>(n, q, channel, [=] __device__(int64_t i, int count, const PacketQParams<kVec>& p) {
      if (count == kVec) {
        const Packet<in_t, kVec> in = *reinterpret_cast<const Packet<in_t, kVec>*>(x + i);
        Packet<out_t, kVec> o;
#pragma unroll
        for (int k = 0; k < kVec; ++k) o.v[k] = op(in.v[k], p.entry[k], p.zero_point[k]);
        *reinterpret_cast<Packet<out_t, kVec>*>(out + i) = o;
      } else {
        // Unrolled, so that p's arrays stay in registers (no local memory).
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          if (k < count) out[i + k] = op(x[i + k], p.entry[k], p.zero_point[k]);
        }
      }
    });
  } else {
    launch_with_qparams<1>(n, q, channel, [=] __device__(int64_t i, int, const PacketQParams<1>& p) {
      out[i] = op(x[i], p.entry[0], p.zero_point[0]);
    });
  }
}

// out[i] = op(a[i], b[i], e, z), likewise.
template <typename T, typename Op>
void map2(const T* a, const T* b, T* out, int64_t n, const QParamsView& q, const ChannelOf& channel, Op op) {
  constexpr int kVec = 16 / sizeof(T);
  if (aligned16(a) && aligned16(b) && aligned16(out)) {
    launch_with_qparams<kVec>(n, q, channel, [=] __device__(int64_t i, int count, const PacketQParams<kVec>& p) {
      if (count == kVec) {
        const Packet<T, kVec> pa = *reinterpret_cast<const Packet<T, kVec>*>(a + i);
        const Packet<T, kVec> pb = *reinterpret_cast<const Packet<T, kVec>*>(b + i);
        Packet<T, kVec> o;
#pragma unroll
        for (int k = 0; k < kVec; ++k) o.v[k] = op(pa.v[k], pb.v[k], p.entry[k], p.zero_point[k]);
        *reinterpret_cast<Packet<T, kVec>*>(out + i) = o;
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          if (k < count) out[i + k] = op(a[i + k], b[i + k], p.entry[k], p.zero_point[k]);
        }
      }
    });
  } else {
    launch_with_qparams<1>(n, q, channel, [=] __device__(int64_t i, int, const PacketQParams<1>& p) {
      out[i] = op(a[i], b[i], p.entry[0], p.zero_point[0]);
    });
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
  Prepared p("fake_quantize", layout, x, scale, zero_point, quant_min, quant_max, scale_host, zero_point_host);
  const ChannelOf channel = channel_of(x, layout);
  const QParamsView q = p.view;
  const bool fast = fq::fast_path_range(quant_min, quant_max);
  const float lo = static_cast<float>(quant_min), hi = static_cast<float>(quant_max);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq::fake_quantize", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if constexpr (std::is_same_v<acc_t, float>) {
      if (fast) {
        map1<scalar_t, scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.numel(), q, channel,
            [=] __device__(scalar_t v, const QEntry& e, int64_t) {
              return static_cast<scalar_t>(
                  fq::fast_fake_quantized(static_cast<float>(v), e.scale, e.inv_scale, e.zero_point, lo, hi));
            });
        return;
      }
    }
    map1<scalar_t, scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.numel(), q, channel,
        [=] __device__(scalar_t v, const QEntry& e, int64_t z) {
          return fq::fake_quantized<scalar_t, acc_t>(v, e.scale, e.inv_scale, z, quant_min, quant_max);
        });
  });
  p.check();
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
  Prepared p("quantize", layout, x, scale, zero_point, quant_min, quant_max);
  const ChannelOf channel = channel_of(x, layout);
  const QParamsView q = p.view;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq::quantize", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    map1<int64_t, scalar_t>(x.data_ptr<scalar_t>(), levels.data_ptr<int64_t>(), x.numel(), q, channel,
        [=] __device__(scalar_t v, const QEntry& e, int64_t z) {
          return fq::quantized<acc_t>(static_cast<acc_t>(v), e.inv_scale, z, quant_min, quant_max);
        });
  });
  p.check();
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
  Prepared p("dequantize", layout, levels, scale, zero_point, quant_min, quant_max);
  const ChannelOf channel = channel_of(levels, layout);
  const QParamsView q = p.view;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out_dtype, "mcuq::dequantize", [&] {
    map1<scalar_t, int64_t>(levels.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), levels.numel(), q, channel,
        [=] __device__(int64_t v, const QEntry& e, int64_t z) { return fq::dequantized<scalar_t>(v, e.scale, z); });
  });
  p.check();
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
  Prepared p("fake_quantize", layout, x, scale, zero_point, quant_min, quant_max);
  const ChannelOf channel = channel_of(x, layout);
  const QParamsView q = p.view;
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mcuq::fake_quantize_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (!need_scale_grad && !need_zero_point_grad) {
      if constexpr (std::is_same_v<acc_t, float>) {
        if (fq::fast_path_range(quant_min, quant_max)) {
          const float lo = static_cast<float>(quant_min), hi = static_cast<float>(quant_max);
          map2<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), n, q,
              channel, [=] __device__(scalar_t gv, scalar_t v, const QEntry& e, int64_t) {
                return fq::fast_in_range(static_cast<float>(v), e.inv_scale, e.zero_point, lo, hi)
                    ? gv : static_cast<scalar_t>(0);
              });
          return;
        }
      }
      map2<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), n, q,
          channel, [=] __device__(scalar_t gv, scalar_t v, const QEntry& e, int64_t z) {
            const acc_t level = fq::raw_level<acc_t>(static_cast<acc_t>(v), e.inv_scale, z);
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
    launch_with_qparams<1>(n, q, channel, [=] __device__(int64_t i, int, const PacketQParams<1>& e) {
      const fq::ElementGrads<acc_t> r = fq::lsq_grads<acc_t>(static_cast<acc_t>(gp[i]), static_cast<acc_t>(xp[i]),
          e.entry[0].scale, e.entry[0].inv_scale, e.zero_point[0], quant_min, quant_max);
      gi[i] = static_cast<scalar_t>(r.input);
      gs[i] = r.scale;
      gz[i] = r.zero_point;
    });
    if (need_scale_grad) grad_scale = reduce_to_qparam(gs_elem, scale, axis, group_size);
    if (need_zero_point_grad) grad_zero_point = reduce_to_qparam(gz_elem, zero_point, axis, group_size);
  });
  p.check();
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
