// CPU kernels of the integer-arithmetic ops: quantize_multiplier and
// requantize. Both are thin loops around csrc/runtime/mcuq_arith.h, the one
// definition of requantization that the MCU runtime compiles too, so the
// integer reference and the device compute the same bits.
#include "mcuq/ops/checks.h"
#include "mcuq_arith.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

namespace mcuq::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_multiplier_cpu(const at::Tensor& real_multiplier) {
  check_quantize_multiplier_args("quantize_multiplier", real_multiplier);
  const at::Tensor real = real_multiplier.detach().to(at::kDouble).contiguous();
  at::Tensor multiplier = at::empty(real.sizes(), real.options().dtype(at::kInt));
  at::Tensor shift = at::empty(real.sizes(), real.options().dtype(at::kInt));
  const double* r = real.data_ptr<double>();
  int32_t* m = multiplier.data_ptr<int32_t>();
  int32_t* s = shift.data_ptr<int32_t>();
  for (int64_t i = 0; i < real.numel(); ++i) {
    int sh = 0;
    const bool represented = mcuq_quantize_multiplier(r[i], &m[i], &sh);
    TORCH_CHECK_VALUE(
        represented || !(r[i] >= 0.0) || !std::isfinite(r[i]),
        fmt::format(
            "mcuq::quantize_multiplier: expected real_multiplier < 2^30 (the largest multiplier * 2^(shift - 31) "
            "with shift <= 30), but got {} at index {}",
            r[i], i));
    TORCH_CHECK_VALUE(
        represented,
        fmt::format(
            "mcuq::quantize_multiplier: expected real_multiplier >= 0 and finite, but got {} at "
            "index {}",
            r[i], i));
    s[i] = sh;
  }
  return {multiplier, shift};
}

at::Tensor requantize_cpu(
    const at::Tensor& input,
    const at::Tensor& multiplier,
    const at::Tensor& shift,
    int64_t zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    c10::string_view rounding) {
  const QParamLayout layout = check_requantize_args(
      "requantize", input, multiplier, shift, zero_point, quant_min, quant_max, axis, rounding);
  const at::Tensor m = multiplier.contiguous().view(-1);
  const at::Tensor s = shift.contiguous().view(-1);
  const int32_t* mp = m.data_ptr<int32_t>();
  const int32_t* sp = s.data_ptr<int32_t>();
  check_requantize_values("requantize", m.numel(), mp, sp);
  const mcuq_rounding mode = rounding_of(rounding);
  // [outer, channels, inner] so each element finds its channel's multiplier.
  const at::Tensor x = input.contiguous();
  const int64_t channels = layout.per_tensor ? 1 : layout.channels;
  const int64_t inner = layout.per_tensor ? x.numel() : x.stride(layout.axis);
  const int64_t outer = channels * inner == 0 ? 0 : x.numel() / (channels * inner);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kInt));
  int32_t* o = out.data_ptr<int32_t>();
  const auto lo = static_cast<int32_t>(quant_min), hi = static_cast<int32_t>(quant_max);
  const auto zp = static_cast<int32_t>(zero_point);
  AT_DISPATCH_INDEX_TYPES(x.scalar_type(), "mcuq::requantize", [&] {
    const index_t* in = x.data_ptr<index_t>();
    at::parallel_for(0, outer * channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t c = row % channels;
        for (int64_t i = row * inner; i < (row + 1) * inner; ++i) {
          o[i] = std::is_same<index_t, int32_t>::value
              ? mcuq_requantize_s32(static_cast<int32_t>(in[i]), mp[c], sp[c], mode, zp, lo, hi)
              : mcuq_requantize_s64(static_cast<int64_t>(in[i]), mp[c], sp[c], mode, zp, lo, hi);
        }
      }
    });
  });
  return out;
}

#ifdef MCUQ_WITH_CUDA
// A few multipliers (one per channel), checked with host values: computed on
// host copies. requantize has its CUDA kernel in cuda/integer.cu.
std::tuple<at::Tensor, at::Tensor> quantize_multiplier_cuda(const at::Tensor& real_multiplier) {
  check_quantize_multiplier_args("quantize_multiplier", real_multiplier);
  auto [multiplier, shift] = quantize_multiplier_cpu(real_multiplier.cpu());
  return {multiplier.to(real_multiplier.device()), shift.to(real_multiplier.device())};
}
#endif

}  // namespace

TORCH_LIBRARY_IMPL(mcuq, CPU, m) {
  m.impl("quantize_multiplier", quantize_multiplier_cpu);
  m.impl("requantize", requantize_cpu);
}

#ifdef MCUQ_WITH_CUDA
TORCH_LIBRARY_IMPL(mcuq, CUDA, m) {
  m.impl("quantize_multiplier", quantize_multiplier_cuda);
}
#endif

}  // namespace mcuq::ops
