// ExportedModel: the lowered integer graph, its LibTorch integer reference,
// and the entry points (export_model) that build it.
//
// The integer reference runs each layer through its op family's reference
// (layers/layers.h), written independently of the C runtime's loops:
// convolutions and matrix products run in float64 on the zero-point-shifted
// levels (x - z_in) with the unfolded bias, which is exact because every
// partial sum is an integer below 2^53; only the requantization step is the
// shared header (through mcuq::requantize), by design.
#include "mcuq/export.h"
#include "mcuq/export/emit.h"
#include "mcuq/export/layers/layers.h"
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

at::Tensor shape_with_batch(const at::Tensor& x, const TensorInfo& t) {
  std::vector<int64_t> shape = {x.size(0)};
  shape.insert(shape.end(), t.shape.begin(), t.shape.end());
  return x.reshape(shape);
}

}  // namespace

at::Tensor exporter::requantize_levels(const at::Tensor& acc, const Requant& r, bool int64_acc, int64_t axis) {
  return mcuq::requantize(
      int64_acc ? acc.to(at::kLong) : acc.to(at::kInt), int_tensor(r.multiplier),
      exporter::as_tensor(r.shift, at::kInt), r.zero_point, r.act_min, r.act_max, axis, rounding_name(r.rounding));
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
    switch (l.kind) {  // each family's reference: layers/<family>.cpp
      case LayerKind::kConv2d:
      case LayerKind::kDepthwiseConv2d:
      case LayerKind::kConvTranspose2d:
      case LayerKind::kFullyConnected: y = exporter::reference_weighted(graph_, l, x); break;
      case LayerKind::kMaxPool2d:
      case LayerKind::kAvgPool2d: y = exporter::reference_pool(l, in, x); break;
      case LayerKind::kAdd:
      case LayerKind::kSub:
      case LayerKind::kMul:
      case LayerKind::kConcat: y = exporter::reference_join(graph_, l, values); break;
      case LayerKind::kRequantize:
      case LayerKind::kLut:
      case LayerKind::kSoftmax: y = exporter::reference_activation(graph_, l, x); break;
      case LayerKind::kPad:
      case LayerKind::kUpsample:
      case LayerKind::kReshape: y = exporter::reference_shape(l, in, x); break;
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
