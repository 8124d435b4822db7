// ExportedModel: the lowered integer graph, its LibTorch integer reference,
// and the entry points (export_model) that build it.
//
// The integer reference is written independently of the C runtime's loops:
// convolutions and matrix products run in float64 on the zero-point-shifted
// levels (x - z_in) with the unfolded bias, which is exact because every
// partial sum is an integer below 2^53; only the requantization step is the
// shared header (through mcuq::requantize), by design.
#include "mcuq/export.h"
#include "mcuq/export/emit.h"
#include "mcuq/export/lower.h"
#include "mcuq/ops.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cmath>
#include <fstream>
#include <iterator>

namespace mcuq {
namespace {

using exporter::Graph;
using exporter::Layer;
using exporter::LayerKind;
using exporter::Requant;
using exporter::TensorInfo;

const char* rounding_name(mcuq_rounding r) {
  return r == MCUQ_ROUND_SINGLE ? "single" : r == MCUQ_ROUND_SHIFT ? "shift" : "double";
}

at::Tensor int_tensor(const std::vector<int32_t>& v) {
  return at::tensor(v, at::TensorOptions().dtype(at::kInt));
}

template <typename T>
at::Tensor as_tensor(const std::vector<T>& v, at::ScalarType dtype) {
  std::vector<int64_t> wide(v.begin(), v.end());
  return at::tensor(wide, at::TensorOptions().dtype(at::kLong)).to(dtype);
}

// accumulators (int64 tensor) -> output levels (int32) through `r`; 8-bit
// layers use the int32 rule (the exporter proved the accumulator fits),
// 16x8 layers TFLite's int64 rule.
at::Tensor requantize(const at::Tensor& acc, const Requant& r, bool int64_acc, int64_t axis = 1) {
  return mcuq::requantize(
      int64_acc ? acc.to(at::kLong) : acc.to(at::kInt), int_tensor(r.multiplier),
      as_tensor(r.shift, at::kInt), r.zero_point, r.act_min, r.act_max, axis, rounding_name(r.rounding));
}

at::Tensor shape_with_batch(const at::Tensor& x, const TensorInfo& t) {
  std::vector<int64_t> shape = {x.size(0)};
  shape.insert(shape.end(), t.shape.begin(), t.shape.end());
  return x.reshape(shape);
}

at::Tensor weighted(const Graph& g, const Layer& l, const at::Tensor& x) {
  const TensorInfo& in = g.tensors[l.inputs[0]];
  const at::Tensor shifted = (x.to(at::kLong) - in.zero_point).to(at::kDouble);
  const int64_t out_c = static_cast<int64_t>(l.bias_raw.size());
  at::Tensor w = as_tensor(l.weights, at::kDouble);
  at::Tensor acc;
  if (l.kind == LayerKind::kFullyConnected) {
    acc = at::linear(shifted.reshape({x.size(0), -1}), w.reshape({out_c, -1}));
  } else {
    w = w.reshape({out_c, -1, l.k_h, l.k_w});
    const bool one_d = shifted.dim() == 3;  // a Conv1d's [N, C, L]: [N, C, 1, L]
    acc = at::conv2d(one_d ? shifted.unsqueeze(2) : shifted, w, {}, {l.stride_h, l.stride_w}, {l.pad_h, l.pad_w},
                     {l.dilation_h, l.dilation_w}, l.groups);
    if (one_d) acc = acc.squeeze(2);
  }
  std::vector<int64_t> bias_shape(acc.dim(), 1);
  bias_shape[1] = out_c;
  acc = acc + as_tensor(l.bias_raw, at::kDouble).reshape(bias_shape);
  return requantize(acc.to(at::kLong), l.requant, g.int16());
}

at::Tensor pool(const Layer& l, const TensorInfo& in, const at::Tensor& x_any) {
  if (!l.pool_view.empty()) {  // the input as the kernel reads it (pooling over channels)
    Layer plain = l;
    plain.pool_view.clear();
    return pool(plain, in, x_any.reshape({x_any.size(0), l.pool_view[0], l.pool_view[1], l.pool_view[2]}));
  }
  if (x_any.dim() == 3) return pool(l, in, x_any.unsqueeze(2)).squeeze(2);  // 1-d: [N, C, 1, L]
  const at::Tensor& x = x_any;
  const bool ceil_mode = l.ceil_mode != 0;
  if (l.kind == LayerKind::kMaxPool2d) {
    return at::max_pool2d(x.to(at::kDouble), {l.k_h, l.k_w}, {l.stride_h, l.stride_w}, {l.pad_h, l.pad_w}, {1, 1},
                          ceil_mode)
        .to(at::kInt);
  }
  const auto sum_of = [&](const at::Tensor& t) {
    return at::avg_pool2d(t, {l.k_h, l.k_w}, {l.stride_h, l.stride_w}, {l.pad_h, l.pad_w}, ceil_mode, true, 1)
        .to(at::kLong);
  };
  const at::Tensor sum = sum_of((x.to(at::kLong) - in.zero_point).to(at::kDouble));
  // count_include_pad: the window's taps inside the padded input (a
  // ceil-mode window's overhang past the padding does not count).
  const auto padded_taps = [&](int64_t out, int64_t stride, int64_t pad, int64_t k, int64_t size) {
    std::vector<int64_t> taps;
    for (int64_t o = 0; o < out; ++o) taps.push_back(std::min(o * stride - pad + k, size + pad) - (o * stride - pad));
    return as_tensor(taps, at::kLong);
  };
  const at::Tensor count = l.count_include_pad
      ? at::outer(padded_taps(sum.size(2), l.stride_h, l.pad_h, l.k_h, x.size(2)),
                  padded_taps(sum.size(3), l.stride_w, l.pad_w, l.k_w, x.size(3)))
      : sum_of(at::ones({1, 1, x.size(2), x.size(3)}, at::kDouble));
  // Ties away from zero, as TFLite's pooling: (sum +- count / 2) / count, truncated.
  const at::Tensor average = at::div(sum + at::sign(sum) * at::div(count, 2, "trunc"), count, "trunc");
  return at::clamp(average + l.requant.zero_point, l.requant.act_min, l.requant.act_max).to(at::kInt);
}

at::Tensor add(const Graph& g, const Layer& l, const at::Tensor& a, const at::Tensor& b, bool subtract) {
  const TensorInfo& ta = g.tensors[l.inputs[0]];
  const TensorInfo& tb = g.tensors[l.inputs[1]];
  const auto scaled = [&](const at::Tensor& x, const TensorInfo& t, int32_t multiplier, int32_t shift) {
    const at::Tensor shifted = at::clamp((x.to(at::kLong) - t.zero_point) * (int64_t{1} << l.left_shift),
                                         INT32_MIN, INT32_MAX);
    Requant r;
    r.multiplier = {multiplier};
    r.shift = {static_cast<int8_t>(shift)};
    r.rounding = l.requant.rounding;
    r.act_min = INT32_MIN;
    r.act_max = INT32_MAX;
    return requantize(shifted, r, false).to(at::kLong);
  };
  const at::Tensor a_scaled = scaled(a, ta, l.a_multiplier, l.a_shift);
  const at::Tensor b_scaled = scaled(b, tb, l.b_multiplier, l.b_shift);
  const at::Tensor sum = at::clamp(subtract ? a_scaled - b_scaled : a_scaled + b_scaled, INT32_MIN, INT32_MAX);
  return requantize(sum, l.requant, false);
}

// The product of the zero-point-shifted levels (exact in int64; b of shape
// [N, C, 1, 1] broadcasts), requantized by the int32 rule (int8: |product|
// <= 255^2) or the 16x8 layers' int64 rule.
at::Tensor mul(const Graph& g, const Layer& l, const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor product = (a.to(at::kLong) - g.tensors[l.inputs[0]].zero_point) *
                             (b.to(at::kLong) - g.tensors[l.inputs[1]].zero_point);
  return requantize(product, l.requant, g.int16());
}

}  // namespace

at::Tensor exporter::lut_s16_outputs(const exporter::Layer& l, const at::Tensor& levels) {
  // The offset into the window, clamped to its ends (the function is flat
  // outside), then the sample at or below it and linear interpolation to the
  // next, rounded half up: floor((slope * fraction + step / 2) / step).
  const int64_t step = int64_t{1} << l.lut_step_shift;
  const at::Tensor table = as_tensor(l.table, at::kLong);
  const at::Tensor offset = (levels.to(at::kLong).reshape(-1) - l.lut_start).clamp(0, 512 * step);
  const at::Tensor index = at::div(offset, step, "floor");
  const at::Tensor fraction = offset - index * step;
  const at::Tensor base = table.index_select(0, index);
  const at::Tensor slope = table.index_select(0, (index + 1).clamp_max(512)) - base;
  return (base + at::div(slope * fraction + step / 2, step, "floor")).reshape(levels.sizes());
}

ExportedModel::ExportedModel(exporter::Graph graph, std::string source)
    : graph_(std::move(graph)), arena_(exporter::plan_arena(graph_)), source_(std::move(source)) {}

at::Tensor ExportedModel::quantize_input(const at::Tensor& input) const {
  const TensorInfo& t = graph_.tensors[graph_.input];
  TORCH_CHECK_TYPE(at::isFloatingType(input.scalar_type()),
                   fmt::format("mcuq.export: quantize_input expects a floating-point tensor, but got {}",
                               c10::toString(input.scalar_type())));
  TORCH_CHECK_VALUE(input.dim() == static_cast<int64_t>(t.shape.size()) + 1 &&
                        input.sizes().slice(1) == c10::IntArrayRef(t.shape),
                    fmt::format("mcuq.export: expected an input of shape [N, {}], but got [{}]",
                                fmt::join(t.shape, ", "), fmt::join(input.sizes(), ", ")));
  return mcuq::quantize(input, at::full({1}, t.scale), at::full({1}, t.zero_point, at::kInt), t.quant_min,
                        t.quant_max, 0, 1, at::kInt);
}

at::Tensor ExportedModel::dequantize_output(const at::Tensor& output) const {
  const TensorInfo& t = graph_.tensors[graph_.output];
  return mcuq::dequantize(output, at::full({1}, t.scale), at::full({1}, t.zero_point, at::kInt), t.quant_min,
                          t.quant_max);
}

std::vector<at::Tensor> ExportedModel::integer_reference_all(const at::Tensor& q_input) const {
  const TensorInfo& t = graph_.tensors[graph_.input];
  TORCH_CHECK_TYPE(at::isIntegralType(q_input.scalar_type(), false),
                   fmt::format("mcuq.export: integer_reference expects integer levels, but got {}",
                               c10::toString(q_input.scalar_type())));
  TORCH_CHECK_VALUE(q_input.dim() == static_cast<int64_t>(t.shape.size()) + 1 &&
                        q_input.sizes().slice(1) == c10::IntArrayRef(t.shape),
                    fmt::format("mcuq.export: expected input levels of shape [N, {}], but got [{}]",
                                fmt::join(t.shape, ", "), fmt::join(q_input.sizes(), ", ")));
  if (q_input.numel() > 0) {
    const int64_t lo = q_input.min().item<int64_t>(), hi = q_input.max().item<int64_t>();
    TORCH_CHECK_VALUE(lo >= t.quant_min && hi <= t.quant_max,
                      fmt::format("mcuq.export: expected input levels in [{}, {}], but got values in [{}, {}]",
                                  t.quant_min, t.quant_max, lo, hi));
  }
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> values(graph_.tensors.size());
  values[graph_.input] = q_input.to(at::kInt);
  for (const Layer& l : graph_.layers) {
    const at::Tensor& x = values[l.inputs[0]];
    const TensorInfo& in = graph_.tensors[l.inputs[0]];
    at::Tensor y;
    switch (l.kind) {
      case LayerKind::kConv2d:
      case LayerKind::kDepthwiseConv2d:
      case LayerKind::kFullyConnected: y = weighted(graph_, l, x); break;
      case LayerKind::kMaxPool2d:
      case LayerKind::kAvgPool2d: y = pool(l, in, x); break;
      case LayerKind::kAdd:
      case LayerKind::kSub: y = add(graph_, l, x, values[l.inputs[1]], l.kind == LayerKind::kSub); break;
      case LayerKind::kMul: y = mul(graph_, l, x, values[l.inputs[1]]); break;
      case LayerKind::kRequantize:
        y = requantize(x.to(at::kLong) - in.zero_point, l.requant, false);
        break;
      case LayerKind::kConcat: {
        std::vector<at::Tensor> pieces;
        for (size_t i = 0; i < l.inputs.size(); ++i) {
          const at::Tensor& xi = values[l.inputs[i]];
          pieces.push_back(requantize(xi.to(at::kLong) - graph_.tensors[l.inputs[i]].zero_point, l.pieces[i], false));
        }
        y = at::cat(pieces, 1);
        break;
      }
      case LayerKind::kLut: {
        const at::Tensor table = as_tensor(l.table, at::kLong);
        const at::Tensor q = x.to(at::kLong).reshape(-1);
        if (!graph_.int16()) {
          y = table.index_select(0, q + 128).reshape(x.sizes());
          break;
        }
        y = exporter::lut_s16_outputs(l, x);
        break;
      }
      case LayerKind::kSoftmax: {
        // mcuq_softmax_s8's steps (mcuq_runtime.h): table lookup by the
        // distance to the row's max, the row sum, the rounded Q16 quotient.
        const at::Tensor q = x.to(at::kLong);
        const at::Tensor d = std::get<0>(q.max(-1, true)) - q;
        const at::Tensor e = as_tensor(l.exp_table, at::kLong).index_select(0, d.reshape(-1)).reshape(d.sizes());
        const at::Tensor sum = e.sum(-1, true);
        const at::Tensor probability = at::div(e * 65536 + at::div(sum, 2, "floor"), sum, "floor");
        y = requantize(probability, l.requant, false);
        break;
      }
      case LayerKind::kPad: {
        const bool one_d = x.dim() == 3;  // [N, C, L]
        std::vector<int64_t> pad = {l.pad_w, l.pad_right};
        if (!one_d) pad.insert(pad.end(), {l.pad_h, l.pad_bottom});
        y = at::constant_pad_nd(x, pad, in.zero_point);
        break;
      }
      case LayerKind::kUpsample:
        y = x.repeat_interleave(l.factor_w, x.dim() - 1);
        if (x.dim() == 4) y = y.repeat_interleave(l.factor_h, 2);
        break;
      case LayerKind::kReshape: y = x; break;
    }
    values[l.output] = shape_with_batch(y, graph_.tensors[l.output]).to(at::kInt);
  }
  return values;
}

at::Tensor ExportedModel::integer_reference(const at::Tensor& q_input) const {
  return integer_reference_all(q_input)[graph_.output];
}

void ExportedModel::write(const std::string& directory, const std::string& name) const {
  exporter::write_files(graph_, arena_, directory, name, source_);
}

std::string ExportedModel::c_header(const std::string& name) const {
  return exporter::emit_header(graph_, arena_, name, source_);
}

std::string ExportedModel::c_source(const std::string& name) const {
  return exporter::emit_source(graph_, arena_, name, source_);
}

std::string ExportedModel::report_json(const std::string& name) const {
  return exporter::emit_report(graph_, arena_, name, source_);
}

std::string ExportedModel::c_test_vectors(const std::string& name, const at::Tensor& q_input) const {
  const at::Tensor outputs = integer_reference(q_input).contiguous();
  const at::Tensor inputs = q_input.to(at::kInt).contiguous();
  const auto as_vector = [](const at::Tensor& t) {
    return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + t.numel());
  };
  return exporter::emit_test_vectors(graph_, name, as_vector(inputs), as_vector(outputs), q_input.size(0));
}

std::string ExportedModel::summary() const {
  return exporter::summary_table(graph_, arena_);
}

int64_t ExportedModel::flash_bytes() const {
  return exporter::flash_bytes(graph_);
}

int64_t ExportedModel::macs() const {
  int64_t total = 0;
  for (const Layer& l : graph_.layers) total += l.macs;
  return total;
}

namespace {

// Per-layer SQNR: the integer output against the float model's value at the
// same point (before its quantizer), over the sample.
c10::intrusive_ptr<ExportedModel> measured(exporter::LoweredModel lowered, const std::string& source) {
  auto model = c10::make_intrusive<ExportedModel>(lowered.graph, source);
  const std::vector<at::Tensor> values = model->integer_reference_all(model->quantize_input(lowered.sample));
  Graph graph = model->graph();
  for (size_t i = 0; i < graph.layers.size(); ++i) {
    Layer& l = graph.layers[i];
    if (l.kind == LayerKind::kReshape) continue;
    const TensorInfo& t = graph.tensors[l.output];
    const at::Tensor reference = lowered.float_outputs[i].to(at::kDouble);
    const at::Tensor integer = mcuq::dequantize(values[l.output], at::full({1}, t.scale),
                                                at::full({1}, t.zero_point, at::kInt), t.quant_min, t.quant_max,
                                                0, 1, at::kDouble);
    const double signal = reference.pow(2).sum().item<double>();
    const double noise = (reference.reshape(integer.sizes()) - integer).pow(2).sum().item<double>();
    l.sqnr_db = noise > 0.0 ? 10.0 * std::log10(signal / noise) : 999.0;
    l.has_sqnr = signal > 0.0;
  }
  return c10::make_intrusive<ExportedModel>(std::move(graph), source);
}

}  // namespace

c10::intrusive_ptr<ExportedModel> export_model(
    const torch::jit::Module& module,
    const std::vector<int64_t>& input_shape,
    const ExportOptions& options,
    const at::Tensor& sample) {
  const std::string source = !options.source.empty() ? options.source : module.type()->name()->qualifiedName();
  return measured(exporter::lower(module, input_shape, options, sample), source);
}

c10::intrusive_ptr<ExportedModel> export_model(
    const std::string& path,
    const std::vector<int64_t>& input_shape,
    const ExportOptions& options,
    const at::Tensor& sample) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK_VALUE(false, fmt::format("mcuq.export: cannot load TorchScript model '{}': {}", path,
                                         e.what_without_backtrace()));
  }
  ExportOptions named = options;
  if (named.source.empty()) named.source = path;
  return export_model(module, input_shape, named, sample);
}

c10::intrusive_ptr<ExportedModel> export_program(
    const std::string& path,
    const std::vector<int64_t>& input_shape,
    const ExportOptions& options,
    const at::Tensor& sample) {
  std::ifstream file(path, std::ios::binary);
  TORCH_CHECK_VALUE(file.good(), fmt::format("mcuq.export: cannot read op program '{}'", path));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  c10::IValue program;
  try {
    program = torch::jit::pickle_load(bytes);
  } catch (const c10::Error& e) {
    TORCH_CHECK_VALUE(false, fmt::format("mcuq.export: cannot load op program '{}': {}", path,
                                         e.what_without_backtrace()));
  }
  return measured(exporter::lower_program(program, input_shape, options, sample),
                  !options.source.empty() ? options.source : path);
}

}  // namespace mcuq
