// CUDA kernel of requantize: the elementwise loop around mcuq_arith.h, the
// one definition of requantization that the CPU kernel and the MCU runtime
// compile too, so all three compute the same bits. (quantize_multiplier works
// on a few values that it checks on the host: cpu/integer.cpp serves both.)
#include "mcuq/ops/checks.h"
#include "mcuq/ops/cuda/elementwise.cuh"
#include "mcuq_arith.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace mcuq::ops::cuda {
namespace detail {

at::Tensor requantize_cuda(
    const at::Tensor& input,
    const at::Tensor& multiplier,
    const at::Tensor& shift,
    int64_t zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    c10::string_view rounding) {
  const c10::cuda::CUDAGuard guard(input.device());
  const QParamLayout layout = check_requantize_args(
      "requantize", input, multiplier, shift, zero_point, quant_min, quant_max, axis, rounding);
  const at::Tensor m_host = multiplier.contiguous().view(-1).cpu();
  const at::Tensor s_host = shift.contiguous().view(-1).cpu();
  check_requantize_values("requantize", m_host.numel(), m_host.data_ptr<int32_t>(), s_host.data_ptr<int32_t>());
  const at::Tensor m = multiplier.contiguous().view(-1);
  const at::Tensor s = shift.contiguous().view(-1);
  const int32_t* mp = m.data_ptr<int32_t>();
  const int32_t* sp = s.data_ptr<int32_t>();
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kInt));
  const ChannelOf channel = layout.per_tensor ? ChannelOf(x.numel(), x.numel(), 1)
                                              : ChannelOf(x.numel(), x.stride(layout.axis), layout.channels);
  const bool per_tensor = layout.per_tensor;
  const mcuq_rounding mode = rounding_of(rounding);
  const auto lo = static_cast<int32_t>(quant_min), hi = static_cast<int32_t>(quant_max);
  const auto zp = static_cast<int32_t>(zero_point);
  int32_t* o = out.data_ptr<int32_t>();
  AT_DISPATCH_INDEX_TYPES(x.scalar_type(), "mcuq::requantize", [&] {
    const index_t* in = x.data_ptr<index_t>();
    launch<1>(x.numel(), [=] __device__(int64_t i, int) {
      const int64_t c = per_tensor ? 0 : channel(i);
      o[i] = sizeof(index_t) == 4
          ? mcuq_requantize_s32(static_cast<int32_t>(in[i]), mp[c], sp[c], mode, zp, lo, hi)
          : mcuq_requantize_s64(static_cast<int64_t>(in[i]), mp[c], sp[c], mode, zp, lo, hi);
    });
  });
  return out;
}

}  // namespace detail

TORCH_LIBRARY_IMPL(mcuq, CUDA, m) {
  m.impl("requantize", &detail::requantize_cuda);
}

}  // namespace mcuq::ops::cuda
