#include "mcuq/ops/checks.h"
#include "mcuq/ops/fake_quantize_math.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace mcuq::ops {
namespace {

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

}  // namespace

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

// Sizes as plain integers. Under torch.compile the Meta kernels see symbolic
// sizes, and reading them this way specializes on the concrete value.
int64_t concrete(const c10::SymInt& v) {
  return v.guard_int(__FILE__, __LINE__);
}


void check_quant_range(const char* op, int64_t quant_min, int64_t quant_max) {
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
}

QParamLayout slice_layout(
    const char* op,
    const at::Tensor& input,
    c10::optional<int64_t> axis,
    int64_t group_size) {
  if (!axis.has_value()) {
    return {};
  }
  const int64_t dim = input.dim();
  TORCH_CHECK_VALUE(
      dim >= 1 && *axis >= -dim && *axis < dim,
      fmt::format(
          "mcuq::{}: expected axis in [{}, {}) for a {}-d input, but got {}", op, -dim, dim, dim,
          *axis));
  TORCH_CHECK_VALUE(
      group_size >= 1,
      fmt::format("mcuq::{}: expected group_size >= 1, but got {}", op, group_size));
  const int64_t channels = concrete(input.sym_size(*axis < 0 ? *axis + dim : *axis));
  TORCH_CHECK_VALUE(
      channels > 0,
      fmt::format("mcuq::{}: expected a non-empty axis {} for per-slice ranges, but it has size 0", op, *axis));
  TORCH_CHECK_VALUE(
      channels % group_size == 0,
      fmt::format(
          "mcuq::{}: expected group_size to divide the {} channels along axis {}, but got "
          "group_size={}",
          op, channels, *axis, group_size));
  return channel_layout(op, input, channels / group_size, *axis, group_size, "the range");
}

void check_choose_qparams_args(
    const char* op,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    int64_t quant_min,
    int64_t quant_max) {
  check_quant_range(op, quant_min, quant_max);
  for (const auto& [name, t] : {std::pair{"min_val", &min_val}, std::pair{"max_val", &max_val}}) {
    TORCH_CHECK_TYPE(
        is_supported_float(t->scalar_type()),
        fmt::format(
            "mcuq::{}: expected {} to be a floating-point tensor, but got {}", op, name,
            dtype_name(t->scalar_type())));
    TORCH_CHECK_VALUE(
        t->dim() <= 1,
        fmt::format("mcuq::{}: expected {} to be 0-d or 1-d, but got {}-d", op, name, t->dim()));
  }
  TORCH_CHECK_VALUE(
      max_val.device() == min_val.device(),
      fmt::format(
          "mcuq::{}: expected max_val on min_val's device ({}), but got {}", op,
          min_val.device().str(), max_val.device().str()));
  TORCH_CHECK_VALUE(
      min_val.dim() == max_val.dim() &&
          concrete(min_val.sym_numel()) == concrete(max_val.sym_numel()),
      fmt::format(
          "mcuq::{}: expected max_val shaped like min_val ({}-d, {} elements), but got {}-d, {} "
          "elements",
          op, min_val.dim(), concrete(min_val.sym_numel()), max_val.dim(),
          concrete(max_val.sym_numel())));
}

QParamLayout check_observe_fake_quantize_args(
    const char* op,
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
    int64_t axis,
    int64_t group_size) {
  check_float_input(op, input);
  check_quant_range(op, quant_min, quant_max);
  check_averaging_constant(op, averaging_constant);
  const QParamLayout layout =
      check_range_state(op, input, min_val, max_val, nonfinite_count, axis, group_size);
  check_tensor(op, "scale", scale, at::kFloat, input);
  check_tensor(op, "zero_point", zero_point, at::kInt, input);
  const int64_t entries = concrete(min_val.sym_numel());
  for (const auto& [name, t] : {std::pair{"scale", &scale}, std::pair{"zero_point", &zero_point}}) {
    TORCH_CHECK_VALUE(
        concrete(t->sym_numel()) == entries,
        fmt::format(
            "mcuq::{}: expected {} to have as many elements as min_val ({}), but got {}", op,
            name, entries, concrete(t->sym_numel())));
  }
  for (const auto& [name, t] :
       {std::pair{"observer_enabled", &observer_enabled},
        std::pair{"fake_quant_enabled", &fake_quant_enabled}}) {
    TORCH_CHECK_VALUE(
        concrete(t->sym_numel()) == 1,
        fmt::format(
            "mcuq::{}: expected {} to have one element, but got {}", op, name,
            concrete(t->sym_numel())));
  }
  return layout;
}

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
  check_quant_range(op, quant_min, quant_max);
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
  return channel_layout(op, input, scale_numel, axis, group_size, "scale");
}

QParamLayout channel_layout(
    const char* op,
    const at::Tensor& input,
    int64_t entries,
    int64_t axis,
    int64_t group_size,
    const char* what) {
  TORCH_CHECK_VALUE(
      group_size >= 1,
      fmt::format("mcuq::{}: expected group_size >= 1, but got {}", op, group_size));
  QParamLayout layout;
  if (entries == 1) {
    return layout;  // per-tensor: axis and group_size are not used
  }
  layout.per_tensor = false;
  const int64_t dim = input.dim();
  TORCH_CHECK_VALUE(
      dim >= 1,
      fmt::format(
          "mcuq::{}: expected a one-element {} for a 0-d input (per-channel needs a channel "
          "axis), but got {} elements",
          op, what, entries));
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
      entries == layout.channels / group_size,
      fmt::format(
          "mcuq::{}: expected {} to have {} elements (input.size({}) / group_size = {} / {}), "
          "but got {}",
          op, what, layout.channels / group_size, axis, layout.channels, group_size, entries));
  return layout;
}

void check_tensor(
    const char* op,
    const char* name,
    const at::Tensor& t,
    at::ScalarType dtype,
    const at::Tensor& ref,
    const char* ref_name) {
  TORCH_CHECK_TYPE(
      t.scalar_type() == dtype,
      fmt::format(
          "mcuq::{}: expected {} to be {}, but got {}", op, name, dtype_name(dtype),
          dtype_name(t.scalar_type())));
  TORCH_CHECK_VALUE(
      t.device() == ref.device(),
      fmt::format(
          "mcuq::{}: expected {} on the {}'s device ({}), but got {}", op, name, ref_name,
          ref.device().str(), t.device().str()));
}

QParamLayout check_range_state(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& min_val,
    const at::Tensor& max_val,
    const at::Tensor& nonfinite_count,
    int64_t axis,
    int64_t group_size) {
  check_tensor(op, "min_val", min_val, at::kFloat, input);
  check_tensor(op, "max_val", max_val, at::kFloat, input);
  check_tensor(op, "nonfinite_count", nonfinite_count, at::kLong, input);
  const int64_t entries = concrete(min_val.sym_numel());
  TORCH_CHECK_VALUE(
      min_val.dim() <= 1 && entries >= 1,
      fmt::format(
          "mcuq::{}: expected min_val to be 0-d or 1-d with at least one element, but got a "
          "{}-d tensor of {} elements",
          op, min_val.dim(), entries));
  TORCH_CHECK_VALUE(
      concrete(max_val.sym_numel()) == entries,
      fmt::format(
          "mcuq::{}: expected max_val to have as many elements as min_val ({}), but got {}", op,
          entries, concrete(max_val.sym_numel())));
  TORCH_CHECK_VALUE(
      concrete(nonfinite_count.sym_numel()) == 1,
      fmt::format(
          "mcuq::{}: expected nonfinite_count to have one element, but got {}", op,
          concrete(nonfinite_count.sym_numel())));
  return channel_layout(op, input, entries, axis, group_size, "min_val");
}

void check_averaging_constant(const char* op, c10::optional<double> averaging_constant) {
  if (averaging_constant.has_value()) {
    const double c = *averaging_constant;
    TORCH_CHECK_VALUE(
        c > 0.0 && c <= 1.0,
        fmt::format("mcuq::{}: expected averaging_constant in (0, 1], but got {}", op, c));
  }
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

void scale_reciprocals(const char* op, int64_t n, const float* scale, float* inv_scale, const at::Tensor& original) {
  for (int64_t i = 0; i < n; ++i) {
    // A subnormal scale has an infinite float32 reciprocal.
    TORCH_CHECK_VALUE(
        std::isfinite(scale[i]) && scale[i] >= FLT_MIN,
        fmt::format(
            "mcuq::{}: expected scale to be finite and >= {:g} (the smallest normal float32), "
            "but got {:g}{}",
            op, FLT_MIN, original.defined() ? original.reshape(-1)[i].item<double>() : double{scale[i]},
            n > 1 ? fmt::format(" at index {}", i) : ""));
    inv_scale[i] = fq::reciprocal(scale[i]);
  }
}

void zero_points_of_floats(
    const char* op, int64_t n, const double* zero_point, int64_t quant_min, int64_t quant_max, int64_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(
        std::isfinite(zero_point[i]),
        fmt::format(
            "mcuq::{}: expected zero_point to be finite, but got {}{}", op, zero_point[i],
            n > 1 ? fmt::format(" at index {}", i) : ""));
    out[i] = fq::zero_point_of_float(zero_point[i], quant_min, quant_max);
  }
}

void zero_points_of_integers(
    const char* op, int64_t n, const int64_t* zero_point, int64_t quant_min, int64_t quant_max, int64_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(
        zero_point[i] >= quant_min && zero_point[i] <= quant_max,
        fmt::format(
            "mcuq::{}: expected zero_point in [quant_min, quant_max] = [{}, {}], but got {}{}",
            op, quant_min, quant_max, zero_point[i], n > 1 ? fmt::format(" at index {}", i) : ""));
    out[i] = zero_point[i];
  }
}

ChannelQParams channel_qparams(
    const char* op,
    const QParamLayout& layout,
    const at::Tensor& scale,
    const at::Tensor& zero_point,
    int64_t quant_min,
    int64_t quant_max) {
  // Scales are float32, as in PyTorch's fake-quant kernels and TFLite.
  at::Tensor s = scale.detach().to(at::kCPU, at::kFloat).contiguous().view({-1});
  at::Tensor inv = at::empty_like(s);
  at::Tensor z = at::empty({s.numel()}, s.options().dtype(at::kLong));
  scale_reciprocals(op, s.numel(), s.data_ptr<float>(), inv.data_ptr<float>(), scale);
  if (zero_point.is_floating_point()) {
    const at::Tensor zf = zero_point.detach().to(at::kCPU, at::kDouble).contiguous().view({-1});
    zero_points_of_floats(op, zf.numel(), zf.data_ptr<double>(), quant_min, quant_max, z.data_ptr<int64_t>());
  } else {
    const at::Tensor zi = zero_point.detach().to(at::kCPU, at::kLong).contiguous().view({-1});
    zero_points_of_integers(op, zi.numel(), zi.data_ptr<int64_t>(), quant_min, quant_max, z.data_ptr<int64_t>());
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

namespace mcuq::ops {

void check_quantize_multiplier_args(const char* op, const at::Tensor& real_multiplier) {
  TORCH_CHECK_TYPE(
      is_supported_float(real_multiplier.scalar_type()),
      fmt::format(
          "mcuq::{}: expected real_multiplier to be a floating-point tensor, but got {}", op,
          dtype_name(real_multiplier.scalar_type())));
}

QParamLayout check_requantize_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& multiplier,
    const at::Tensor& shift,
    int64_t zero_point,
    int64_t quant_min,
    int64_t quant_max,
    int64_t axis,
    c10::string_view rounding) {
  TORCH_CHECK_TYPE(
      input.scalar_type() == at::kInt || input.scalar_type() == at::kLong,
      fmt::format(
          "mcuq::{}: expected input (accumulators) to be int32 or int64, but got {}", op,
          dtype_name(input.scalar_type())));
  check_tensor(op, "multiplier", multiplier, at::kInt, input);
  check_tensor(op, "shift", shift, at::kInt, input);
  TORCH_CHECK_VALUE(
      multiplier.dim() <= 1 && shift.sym_sizes() == multiplier.sym_sizes(),
      fmt::format(
          "mcuq::{}: expected multiplier and shift to be 0-d or 1-d of one shape, but got {} and {}",
          op, c10::str(multiplier.sym_sizes()), c10::str(shift.sym_sizes())));
  // A clamp may leave one level (quant_min == quant_max).
  TORCH_CHECK_VALUE(
      quant_min <= quant_max && quant_min >= INT32_MIN && quant_max <= INT32_MAX,
      fmt::format(
          "mcuq::{}: expected quant_min <= quant_max within int32, but got quant_min={}, quant_max={}", op,
          quant_min, quant_max));
  // The zero point may lie outside a clamp (a fused ReLU6 of a negative range).
  TORCH_CHECK_VALUE(
      zero_point >= INT32_MIN && zero_point <= INT32_MAX,
      fmt::format("mcuq::{}: expected zero_point to fit in int32, but got {}", op, zero_point));
  TORCH_CHECK_VALUE(
      rounding == "double" || rounding == "single" || rounding == "shift",
      fmt::format(
          "mcuq::{}: expected rounding to be 'double', 'single' or 'shift', but got '{}'", op,
          std::string(rounding.data(), rounding.size())));
  return channel_layout(op, input, concrete(multiplier.sym_numel()), axis, 1, "multiplier");
}

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


void check_requantize_values(const char* op, int64_t n, const int32_t* multiplier, const int32_t* shift) {
  for (int64_t c = 0; c < n; ++c) {
    TORCH_CHECK_VALUE(
        multiplier[c] >= 0 && shift[c] >= -31 && shift[c] <= 30,
        fmt::format(
            "mcuq::{}: expected multiplier >= 0 and shift in [-31, 30], but got multiplier={}, shift={} at "
            "index {}",
            op, multiplier[c], shift[c], c));
  }
}

mcuq_rounding rounding_of(c10::string_view rounding) {
  if (rounding == "single") return MCUQ_ROUND_SINGLE;
  if (rounding == "shift") return MCUQ_ROUND_SHIFT;
  return MCUQ_ROUND_DOUBLE;
}

namespace {
std::string shape_text(const at::Tensor& t) {
  std::vector<int64_t> sizes;
  for (int64_t d = 0; d < t.dim(); ++d) sizes.push_back(concrete(t.sym_size(d)));
  return fmt::format("[{}]", fmt::join(sizes, ", "));
}
}  // namespace

QParamLayout check_levels_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& levels,
    const c10::optional<at::Tensor>& thresholds,
    int64_t axis,
    int64_t group_size,
    int64_t* n) {
  check_tensor(op, "levels", levels, at::kFloat, input);
  TORCH_CHECK_VALUE(
      levels.dim() == 1 || levels.dim() == 2,
      fmt::format(
          "mcuq::{}: expected levels of shape [n] (per tensor) or [groups, n] (per group of "
          "channels), but got {}-d levels of shape {}",
          op, levels.dim(), shape_text(levels)));
  *n = concrete(levels.sym_size(-1));
  TORCH_CHECK_VALUE(
      *n >= 1 && *n <= 65536,
      fmt::format("mcuq::{}: expected between 1 and 65536 levels, but got {}", op, *n));
  const int64_t rows = levels.dim() == 2 ? concrete(levels.sym_size(0)) : 1;
  const QParamLayout layout = channel_layout(op, input, rows, axis, group_size, "levels (rows)");
  if (thresholds.has_value()) {
    check_tensor(op, "thresholds", *thresholds, at::kFloat, input);
    TORCH_CHECK_VALUE(
        thresholds->dim() == levels.dim() && concrete(thresholds->sym_size(-1)) == *n - 1 &&
            (levels.dim() == 1 || concrete(thresholds->sym_size(0)) == rows),
        fmt::format(
            "mcuq::{}: expected thresholds of shape {} (one fewer than the levels per row), but "
            "got {}",
            op, levels.dim() == 1 ? fmt::format("[{}]", *n - 1) : fmt::format("[{}, {}]", rows, *n - 1),
            shape_text(*thresholds)));
  }
  return layout;
}

at::ScalarType index_dtype(const char* op, c10::optional<at::ScalarType> dtype, int64_t n) {
  if (!dtype.has_value()) {
    return n <= 256 ? at::kByte : n <= 32768 ? at::kShort : at::kInt;
  }
  return quantized_dtype(op, dtype, 0, n - 1);
}

namespace {
void check_sorted_rows(const char* op, const char* name, const at::Tensor& t, bool finite) {
  const at::Tensor c = t.detach().contiguous();
  const float* v = c.data_ptr<float>();
  const int64_t n = c.dim() == 0 ? 1 : c.size(-1), rows = n == 0 ? 0 : c.numel() / n;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const float x = v[r * n + i];
      TORCH_CHECK_VALUE(
          finite ? std::isfinite(x) : !std::isnan(x),
          fmt::format(
              "mcuq::{}: expected {} {}, but got {} at [{}{}]", op, name, finite ? "to be finite" : "not NaN", x,
              rows > 1 ? fmt::format("{}, ", r) : "", i));
      TORCH_CHECK_VALUE(
          i == 0 || v[r * n + i - 1] <= x,
          fmt::format(
              "mcuq::{}: expected {} sorted in ascending order{}, but got {} before {} at index {}{}", op, name,
              rows > 1 ? " in each row" : "", v[r * n + i - 1], x, i, rows > 1 ? fmt::format(" of row {}", r) : ""));
    }
  }
}
}  // namespace

void check_codebook_values(const char* op, const at::Tensor& levels, const c10::optional<at::Tensor>& thresholds) {
  check_sorted_rows(op, "levels", levels, /*finite=*/true);
  if (thresholds.has_value()) check_sorted_rows(op, "thresholds", *thresholds, /*finite=*/false);
}

void check_uniform_levels_args(
    const char* op, const at::Tensor& scale, const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max) {
  check_quant_range(op, quant_min, quant_max);
  TORCH_CHECK_VALUE(
      quant_max - quant_min < 65536,
      fmt::format("mcuq::{}: expected at most 65536 levels, but got [{}, {}]", op, quant_min, quant_max));
  const int64_t scales = concrete(scale.sym_numel()), zero_points = concrete(zero_point.sym_numel());
  TORCH_CHECK_VALUE(
      scales >= 1 && scales == zero_points,
      fmt::format(
          "mcuq::{}: expected scale and zero_point with the same number (>= 1) of elements, but got {} and {}",
          op, scales, zero_points));
}

FitLayout check_fit_levels_args(
    const char* op,
    const at::Tensor& input,
    int64_t bits,
    c10::string_view method,
    c10::optional<int64_t> axis,
    int64_t group_size,
    int64_t iterations) {
  check_float_input(op, input);
  const bool symmetric_law = method == "pow2" || method == "apot";
  TORCH_CHECK_VALUE(
      symmetric_law || method == "kmeans" || method == "quantile" || method == "lloyd_max_gaussian" ||
          method == "lloyd_max_laplace",
      fmt::format(
          "mcuq::{}: expected method to be one of kmeans, quantile, lloyd_max_gaussian, "
          "lloyd_max_laplace, pow2, apot, but got \"{}\"",
          op, std::string(method.data(), method.size())));
  const int64_t lowest = symmetric_law ? 2 : 1;
  TORCH_CHECK_VALUE(
      bits >= lowest && bits <= 8,
      fmt::format(
          "mcuq::{}: expected bits in [{}, 8] for \"{}\", but got {}", op, lowest,
          std::string(method.data(), method.size()), bits));
  TORCH_CHECK_VALUE(iterations >= 1, fmt::format("mcuq::{}: expected iterations >= 1, but got {}", op, iterations));
  FitLayout fit;
  fit.levels = symmetric_law ? (int64_t{1} << bits) - 1 : int64_t{1} << bits;
  if (axis.has_value()) {
    const int64_t dim = input.dim();
    TORCH_CHECK_VALUE(
        dim >= 1 && *axis >= -dim && *axis < dim,
        fmt::format("mcuq::{}: expected axis in [{}, {}) for a {}-d input, but got {}", op, -dim, dim, dim, *axis));
    fit.axis = *axis < 0 ? *axis + dim : *axis;
    const int64_t channels = concrete(input.sym_size(fit.axis));
    TORCH_CHECK_VALUE(
        group_size >= 1 && channels % group_size == 0,
        fmt::format(
            "mcuq::{}: expected group_size to divide the {} channels along axis {}, but got group_size={}", op,
            channels, *axis, group_size));
    fit.rows = channels / group_size;
  }
  return fit;
}

}  // namespace mcuq::ops
