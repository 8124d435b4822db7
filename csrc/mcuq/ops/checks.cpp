#include "mcuq/ops/checks.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

namespace mcuq::ops {
namespace {

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kShort: return "int16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

bool is_integer(at::ScalarType t) {
  return at::isIntegralType(t, /*includeBool=*/false);
}

std::pair<int64_t, int64_t> integer_limits(at::ScalarType t) {
  switch (t) {
    case at::kChar: return {INT8_MIN, INT8_MAX};
    case at::kByte: return {0, UINT8_MAX};
    case at::kShort: return {INT16_MIN, INT16_MAX};
    case at::kInt: return {INT32_MIN, INT32_MAX};
    default: return {INT64_MIN, INT64_MAX};
  }
}

// Sizes as plain integers. Under torch.compile the Meta kernels see symbolic
// sizes, and reading them this way specializes on the concrete value.
int64_t concrete(const c10::SymInt& v) {
  return v.guard_int(__FILE__, __LINE__);
}

}  // namespace

void check_float_input(const char* op, const at::Tensor& input) {
  TORCH_CHECK_TYPE(
      is_supported_float(input.scalar_type()),
      fmt::format(
          "mcuq::{}: expected input to be float32, float64, float16 or bfloat16, but got {}",
          op, dtype_name(input.scalar_type())));
}

void check_integer_input(const char* op, const at::Tensor& input) {
  TORCH_CHECK_TYPE(
      is_integer(input.scalar_type()),
      fmt::format(
          "mcuq::{}: expected input to be an integer tensor, but got {}", op,
          dtype_name(input.scalar_type())));
}

QParamLayout check_qparam_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    int64_t group_size) {
  TORCH_CHECK_VALUE(
      quant_min < quant_max,
      fmt::format(
          "mcuq::{}: expected quant_min < quant_max, but got quant_min={}, quant_max={}", op,
          quant_min, quant_max));
  TORCH_CHECK_VALUE(
      quant_min >= INT32_MIN && quant_max <= INT32_MAX,
      fmt::format(
          "mcuq::{}: expected [quant_min, quant_max] to fit in int32, but got [{}, {}]", op,
          quant_min, quant_max));
  TORCH_CHECK_TYPE(
      is_supported_float(scale.scalar_type()),
      fmt::format(
          "mcuq::{}: expected scale to be a floating-point tensor, but got {}", op,
          dtype_name(scale.scalar_type())));
  TORCH_CHECK_TYPE(
      is_integer(zero_point.scalar_type()) || is_supported_float(zero_point.scalar_type()),
      fmt::format(
          "mcuq::{}: expected zero_point to be an integer or floating-point tensor, but got {}",
          op, dtype_name(zero_point.scalar_type())));
  TORCH_CHECK_VALUE(
      scale.device() == input.device(),
      fmt::format(
          "mcuq::{}: expected scale on the input's device ({}), but got {}", op,
          input.device().str(), scale.device().str()));
  TORCH_CHECK_VALUE(
      zero_point.device() == input.device(),
      fmt::format(
          "mcuq::{}: expected zero_point on the input's device ({}), but got {}", op,
          input.device().str(), zero_point.device().str()));
  TORCH_CHECK_VALUE(
      scale.dim() <= 1 && zero_point.dim() <= 1,
      fmt::format(
          "mcuq::{}: expected scale and zero_point to be 0-d or 1-d, but got {}-d and {}-d", op,
          scale.dim(), zero_point.dim()));
  const int64_t scale_numel = concrete(scale.sym_numel());
  const int64_t zero_point_numel = concrete(zero_point.sym_numel());
  TORCH_CHECK_VALUE(
      scale_numel >= 1,
      fmt::format("mcuq::{}: expected scale to have at least one element, but got none", op));
  TORCH_CHECK_VALUE(
      zero_point_numel == scale_numel,
      fmt::format(
          "mcuq::{}: expected zero_point to have as many elements as scale ({}), but got {}", op,
          scale_numel, zero_point_numel));
  TORCH_CHECK_VALUE(
      group_size >= 1,
      fmt::format("mcuq::{}: expected group_size >= 1, but got {}", op, group_size));

  QParamLayout layout;
  if (scale_numel == 1) {
    return layout;  // per-tensor: axis and group_size are not used
  }
  layout.per_tensor = false;
  const int64_t dim = input.dim();
  TORCH_CHECK_VALUE(
      dim >= 1,
      fmt::format(
          "mcuq::{}: expected a one-element scale for a 0-d input (per-channel needs a channel "
          "axis), but got {} elements",
          op, scale_numel));
  TORCH_CHECK_VALUE(
      axis >= -dim && axis < dim,
      fmt::format(
          "mcuq::{}: expected axis in [{}, {}) for a {}-d input, but got {}", op, -dim, dim, dim,
          axis));
  layout.axis = axis < 0 ? axis + dim : axis;
  layout.channels = concrete(input.sym_size(layout.axis));
  layout.group_size = group_size;
  TORCH_CHECK_VALUE(
      layout.channels % group_size == 0,
      fmt::format(
          "mcuq::{}: expected group_size to divide the {} channels along axis {}, but got "
          "group_size={}",
          op, layout.channels, axis, group_size));
  TORCH_CHECK_VALUE(
      scale_numel == layout.channels / group_size,
      fmt::format(
          "mcuq::{}: expected scale to have {} elements (input.size({}) / group_size = {} / {}), "
          "but got {}",
          op, layout.channels / group_size, axis, layout.channels, group_size, scale_numel));
  return layout;
}

at::ScalarType quantized_dtype(
    const char* op,
    c10::optional<at::ScalarType> dtype,
    int64_t quant_min,
    int64_t quant_max) {
  if (!dtype.has_value()) {
    for (auto t : {at::kChar, at::kByte, at::kShort, at::kInt}) {
      auto [lo, hi] = integer_limits(t);
      if (quant_min >= lo && quant_max <= hi) {
        return t;
      }
    }
    return at::kLong;
  }
  const auto t = *dtype;
  TORCH_CHECK_TYPE(
      t == at::kChar || t == at::kByte || t == at::kShort || t == at::kInt,
      fmt::format(
          "mcuq::{}: expected dtype to be int8, uint8, int16 or int32, but got {}", op,
          dtype_name(t)));
  auto [lo, hi] = integer_limits(t);
  TORCH_CHECK_VALUE(
      quant_min >= lo && quant_max <= hi,
      fmt::format(
          "mcuq::{}: expected dtype to hold [quant_min, quant_max] = [{}, {}], but {} holds "
          "[{}, {}]",
          op, quant_min, quant_max, dtype_name(t), lo, hi));
  return t;
}

at::ScalarType dequantized_dtype(const char* op, c10::optional<at::ScalarType> dtype) {
  const auto t = dtype.value_or(at::kFloat);
  TORCH_CHECK_TYPE(
      is_supported_float(t),
      fmt::format(
          "mcuq::{}: expected dtype to be float32, float64, float16 or bfloat16, but got {}", op,
          dtype_name(t)));
  return t;
}

ChannelQParams channel_qparams(
    const char* op,
    const QParamLayout& layout,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max) {
  // Scales are float32, as in PyTorch's fake-quant kernels and TFLite.
  at::Tensor s = scale.detach().to(at::kFloat).contiguous().view({-1});
  at::Tensor inv = at::empty_like(s);
  at::Tensor z = at::empty({s.numel()}, s.options().dtype(at::kLong));
  const float* sp = s.data_ptr<float>();
  float* ip = inv.data_ptr<float>();
  int64_t* zp = z.data_ptr<int64_t>();

  for (int64_t i = 0; i < s.numel(); ++i) {
    // A subnormal scale has an infinite float32 reciprocal.
    TORCH_CHECK_VALUE(
        std::isfinite(sp[i]) && sp[i] >= FLT_MIN,
        fmt::format(
            "mcuq::{}: expected scale to be finite and >= {:g} (the smallest normal float32), "
            "but got {:g}{}",
            op, FLT_MIN, scale.reshape(-1)[i].item<double>(),
            s.numel() > 1 ? fmt::format(" at index {}", i) : ""));
    ip[i] = 1.0f / sp[i];
  }

  if (zero_point.is_floating_point()) {
    at::Tensor zf = zero_point.detach().to(at::kDouble).contiguous().view({-1});
    const double* zfp = zf.data_ptr<double>();
    for (int64_t i = 0; i < zf.numel(); ++i) {
      TORCH_CHECK_VALUE(
          std::isfinite(zfp[i]),
          fmt::format(
              "mcuq::{}: expected zero_point to be finite, but got {}{}", op, zfp[i],
              zf.numel() > 1 ? fmt::format(" at index {}", i) : ""));
      const double r = std::nearbyint(zfp[i]);
      zp[i] = static_cast<int64_t>(
          std::fmin(std::fmax(r, static_cast<double>(quant_min)), static_cast<double>(quant_max)));
    }
  } else {
    at::Tensor zi = zero_point.detach().to(at::kLong).contiguous().view({-1});
    const int64_t* zip = zi.data_ptr<int64_t>();
    for (int64_t i = 0; i < zi.numel(); ++i) {
      TORCH_CHECK_VALUE(
          zip[i] >= quant_min && zip[i] <= quant_max,
          fmt::format(
              "mcuq::{}: expected zero_point in [quant_min, quant_max] = [{}, {}], but got {}{}",
              op, quant_min, quant_max, zip[i],
              zi.numel() > 1 ? fmt::format(" at index {}", i) : ""));
      zp[i] = zip[i];
    }
  }

  if (layout.group_size > 1) {
    s = s.repeat_interleave(layout.group_size);
    inv = inv.repeat_interleave(layout.group_size);
    z = z.repeat_interleave(layout.group_size);
  }
  return {s, inv, z};
}

at::Tensor broadcast_along_axis(const at::Tensor& t, const QParamLayout& layout, const at::Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  if (!layout.per_tensor) {
    shape[layout.axis] = layout.channels;
  }
  return t.view(shape).expand(like.sizes());
}

}  // namespace mcuq::ops
