// The lowering rules' core: front-end ops -> integer graph. The rules of
// each op family live in layers/ (lower_impl.h says how the parts fit).
//
// A front end (torchscript.cpp, program.cpp) hands over the model's ops in
// order; they are interpreted abstractly: every value is a constant (module
// attributes, literals), a fake-quantized weight, a quantized activation (a
// tensor of the integer graph), or a float result still waiting for its
// output quantizer (a conv, linear, add, concat or activation, with any
// ReLU/clamp that follows fused into it). Every op also runs concretely on a
// sample input alongside, which gives every shape and the float values the
// report's SQNR compares against.
#include "mcuq/export/lower_impl.h"
#include "mcuq/ops.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <tuple>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>

namespace mcuq::exporter {

namespace lowering {

c10::Symbol sym(const char* qualified) {
  return c10::Symbol::fromQualString(qualified);
}

std::string where(const Op* n) {
  return n->source;
}

std::string describe(const Op* n, const std::string& known) {
  if (!known.empty()) return fmt::format("{} ({})", known, where(n));
  const std::string name = !n->scope.empty() ? n->scope : !n->name.empty() ? n->name : std::string("?");
  return fmt::format("{} ({})", name, where(n));
}

std::string short_name(const Op* n) {
  if (!n->scope.empty()) return n->scope;
  if (!n->name.empty()) return n->name;
  return n->kind.toUnqualString();
}

[[noreturn]] void fail(const Op* n, const std::string& why, const std::string& name) {
  TORCH_CHECK_VALUE(false, fmt::format("mcuq.export: cannot lower {}: {}", describe(n, name), why));
}

bool one_of(c10::Symbol k, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (k == sym(name)) return true;
  }
  return false;
}

double scalar_of(const c10::IValue& v) {
  return v.isNone() ? std::numeric_limits<double>::quiet_NaN() : v.toScalar().toDouble();
}

int64_t level_of(double v, float scale, int32_t zero_point) {
  const float x = static_cast<float>(v) * (1.0f / scale);
  const double level = std::nearbyint(static_cast<double>(x)) + zero_point;
  return static_cast<int64_t>(std::max(-1e15, std::min(1e15, level)));  // far outside any range, no UB
}

}  // namespace lowering

using namespace lowering;

std::vector<c10::IValue> Lowerer::Impl::concrete_inputs(const Op* n) {
  std::vector<c10::IValue> in;
  for (int v : n->inputs) in.push_back(at(v).value);
  return in;
}

std::vector<c10::IValue> Lowerer::Impl::concrete_outputs(const Op* n, const std::vector<c10::IValue>& inputs) {
  torch::jit::Stack stack(inputs.begin(), inputs.end());
  try {
    n->run(stack);
  } catch (const c10::Error& e) {
    fail(n, fmt::format("running it on the sample input failed: {}", e.what_without_backtrace()));
  }
  TORCH_CHECK(stack.size() >= n->outputs.size(), "mcuq.export: internal error: ", where(n), " left ",
              stack.size(), " values for ", n->outputs.size(), " outputs");
  return std::vector<c10::IValue>(stack.end() - static_cast<long>(n->outputs.size()), stack.end());
}

void Lowerer::Impl::check_activation_range(const Op* n, int64_t qmin, int64_t qmax, int32_t zp) {
  const bool fits8 = qmin >= -128 && qmax <= 127;
  const bool fits16 = qmin >= -32768 && qmax <= 32767;
  if (!type_known_) {
    if (!fits16) fail(n, fmt::format("activation range [{}, {}] does not fit int8 or int16", qmin, qmax));
    graph_.activation_type = fits8 ? ActivationType::kInt8 : ActivationType::kInt16;
    type_known_ = true;
  }
  if (graph_.int16() ? !fits16 : !fits8) {
    fail(n, fmt::format(
                "activation range [{}, {}] does not fit the model's {} activations (set by its input "
                "quantizer); mixed int8/int16 activations are not supported",
                qmin, qmax, graph_.int16() ? "int16" : "int8"));
  }
  if (zp < qmin || zp > qmax) fail(n, fmt::format("zero point {} outside [{}, {}]", zp, qmin, qmax));
}

int Lowerer::Impl::new_tensor(const Op* n, const at::Tensor& value, float scale, int32_t zp, int64_t qmin,
                        int64_t qmax, int buffer) {
  TensorInfo t;
  t.name = short_name(n);
  auto sizes = value.sizes().vec();
  TORCH_CHECK(!sizes.empty(), "mcuq.export: internal error: 0-d activation");
  sizes.erase(sizes.begin());  // the batch dimension
  t.shape = sizes;
  t.scale = scale;
  t.zero_point = zp;
  t.quant_min = static_cast<int32_t>(qmin);
  t.quant_max = static_cast<int32_t>(qmax);
  t.buffer = buffer >= 0 ? buffer : buffers_++;
  graph_.tensors.push_back(t);
  return static_cast<int>(graph_.tensors.size()) - 1;
}

int Lowerer::Impl::activation(const Op* n, int v) {
  Sym& s = at(v);
  if (s.kind == Sym::Kind::kAct) return s.tensor;
  if (s.kind == Sym::Kind::kPending && s.pending->kind == LayerKind::kRequantize) {
    // A ReLU/clamp on a quantized activation with no quantizer after it:
    // exact with the input's qparams.
    const TensorInfo& in = graph_.tensors[s.pending->inputs[0]];
    const at::Tensor value = s.value.toTensor();
    s.tensor = finalize(n, *s.pending, value, in.scale, in.zero_point, in.quant_min, in.quant_max);
    s.kind = Sym::Kind::kAct;
    s.pending.reset();
    return s.tensor;
  }
  if (s.kind == Sym::Kind::kPending) {
    fail(n, fmt::format(
                "its input, the output of {}, is not quantized; put a fake-quantizer after it "
                "(mcuq.prepare does)",
                describe(s.pending->node)));
  }
  if (s.kind == Sym::Kind::kFloat) {
    fail(n, "its input is the model's float input; the model must quantize its input first "
            "(mcuq.prepare puts a fake-quantizer there)");
  }
  fail(n, "expected a quantized activation as its input, but got a constant");
}

std::shared_ptr<QuantizedWeight> Lowerer::Impl::quantized_weight(const Op* n, const std::vector<c10::IValue>& in) {
  const at::Tensor w = in[0].toTensor();
  const at::Tensor scale = in[1].toTensor().to(at::kFloat).reshape(-1);
  const at::Tensor zp = in[2].toTensor();
  const int64_t qmin = in[3].toInt(), qmax = in[4].toInt(), axis = in[5].toInt(), group = in[6].toInt();
  if (zp.ne(0).any().item<bool>()) {
    fail(n, "weights must be quantized symmetrically (zero point 0), as mcuq's presets do");
  }
  if (qmin < -128 || qmax > 127) {
    fail(n, fmt::format("weight range [{}, {}] does not fit int8", qmin, qmax));
  }
  const int64_t channel_axis = axis < 0 ? axis + w.dim() : axis;
  if (scale.numel() != 1 && channel_axis != 0 && !(channel_axis == 1 && w.dim() == 4)) {
    fail(n, fmt::format("weights must be quantized per output channel (axis 0; axis 1 for ConvTranspose2d), but "
                        "got axis {}", axis));
  }
  const int64_t out_channels = w.size(scale.numel() == 1 ? 0 : channel_axis);
  auto q = std::make_shared<QuantizedWeight>();
  q->axis = scale.numel() == 1 ? -1 : channel_axis;
  q->quant_min = qmin;
  q->quant_max = qmax;
  q->levels = mcuq::quantize(w, in[1].toTensor(), zp, qmin, qmax, axis, group, at::kInt);
  const float* s = scale.data_ptr<float>();
  for (int64_t c = 0; c < out_channels; ++c) {
    q->scale.push_back(scale.numel() == 1 ? s[0] : s[c / group]);
  }
  return q;
}

// A codebook quantizer's weight: each row's levels must be integers of one
// scale, max |level| / 127, so that the layer multiplies int8 weights as a
// uniform one does; mcuq.freeze snaps codebooks onto that grid.
std::shared_ptr<QuantizedWeight> Lowerer::Impl::codebook_weight(const Op* n, const std::vector<c10::IValue>& in,
                                                                const at::Tensor& quantized) {
  const at::Tensor w = in[0].toTensor();
  const at::Tensor levels = in[1].toTensor().to(at::kDouble).contiguous();
  const int64_t axis = in[3].toInt(), group = in[4].toInt();
  const bool per_tensor = levels.dim() <= 1 || levels.size(0) == 1;  // one row: the op's per-tensor layout
  const int64_t count = levels.dim() == 0 ? 1 : levels.size(-1);
  const int64_t rows = per_tensor ? 1 : levels.size(0);
  const int64_t channel_axis = axis < 0 ? axis + w.dim() : axis;
  if (!per_tensor && channel_axis != 0 && !(channel_axis == 1 && w.dim() == 4)) {
    fail(n, fmt::format("codebooks must be per output channel (axis 0; axis 1 for ConvTranspose2d), but got axis {}",
                        axis));
  }
  if (count == 0) fail(n, "its codebook is empty");
  const int64_t out_channels = w.size(per_tensor ? 0 : channel_axis);
  const double* level = levels.data_ptr<double>();
  at::Tensor codebook = at::empty({rows, count}, at::kInt);
  int32_t* integer = codebook.data_ptr<int32_t>();
  std::vector<double> row_scale;
  for (int64_t r = 0; r < rows; ++r) {
    double max_abs = 0.0;
    for (int64_t i = 0; i < count; ++i) max_abs = std::max(max_abs, std::abs(level[r * count + i]));
    const double scale = max_abs > 0.0 ? max_abs / 127.0 : 1.0;
    for (int64_t i = 0; i < count; ++i) {
      const double k = level[r * count + i] / scale;
      if (std::abs(k - std::nearbyint(k)) > 1e-3) {
        fail(n, fmt::format("its codebook is not on an int8 grid: level {} of row {} is {:g} = {:.4f} x (max |level| "
                            "/ 127); mcuq.freeze snaps codebooks onto that grid, so export the frozen model (TorchScript, C++: "
                            "call snap_codebook() on each CodebookFakeQuantize)",
                            i, r, level[r * count + i], k));
      }
      integer[r * count + i] = static_cast<int32_t>(std::nearbyint(k));
    }
    row_scale.push_back(scale);
  }
  auto q = std::make_shared<QuantizedWeight>();
  q->axis = per_tensor ? -1 : channel_axis;
  q->quant_min = -127;
  q->quant_max = 127;
  std::vector<double> channel_scale;
  for (int64_t c = 0; c < out_channels; ++c) channel_scale.push_back(row_scale[per_tensor ? 0 : c / group]);
  std::vector<int64_t> shape(w.dim(), 1);
  shape[per_tensor ? 0 : channel_axis] = out_channels;
  const at::Tensor scale = at::tensor(channel_scale, at::kDouble).reshape(shape);
  const at::Tensor k = quantized.to(at::kDouble) / scale;
  if ((k - k.round()).abs().gt(1e-3).any().item<bool>()) {
    fail(n, "its output is not on its codebook's int8 grid (mcuq.export: internal error)");
  }
  q->levels = k.round().to(at::kInt);
  for (double s : channel_scale) q->scale.push_back(static_cast<float>(s));
  q->codebook = codebook;
  q->codebook_channels = per_tensor ? out_channels : group;
  return q;
}

Requant Lowerer::Impl::requant_to(const Op* n, const std::vector<double>& real, float out_scale, int32_t out_zp,
                            int64_t qmin, int64_t qmax, double lo, double hi, const std::string& name) {
  Requant r;
  bool powers_of_two = true;
  for (double m : real) {
    int32_t multiplier = 0;
    int shift = 0;
    if (!mcuq_quantize_multiplier(m, &multiplier, &shift)) {
      fail(n, m >= 0.0 && std::isfinite(m)
                  ? fmt::format("its requantization multiplier {:g} (s_in * s_w / s_out, or s_in / s_out) is 2^30 or "
                                "more, beyond what the integer rules represent; check the scales (a collapsed output "
                                "range?)", m)
                  : fmt::format("requantization multiplier {} is not a finite non-negative number", m),
           name);
    }
    powers_of_two = powers_of_two && multiplier == (1 << 30) && std::ldexp(1.0, shift - 1) == m;
    r.multiplier.push_back(multiplier);
    r.shift.push_back(static_cast<int8_t>(shift));
  }
  r.rounding = powers_of_two ? MCUQ_ROUND_SHIFT
      : options_.rounding == "single" ? MCUQ_ROUND_SINGLE : MCUQ_ROUND_DOUBLE;
  r.zero_point = out_zp;
  int64_t act_min = qmin, act_max = qmax;
  if (std::isfinite(lo)) act_min = std::max(act_min, level_of(lo, out_scale, out_zp));
  if (std::isfinite(hi)) act_max = std::min(act_max, level_of(hi, out_scale, out_zp));
  if (act_min > act_max) {
    fail(n, fmt::format("the fused clamp [{}, {}] leaves no level of the output range", lo, hi), name);
  }
  r.act_min = static_cast<int32_t>(act_min);
  r.act_max = static_cast<int32_t>(act_max);
  return r;
}

int Lowerer::Impl::add_layer(Layer layer, const at::Tensor& pre_quant) {
  graph_.layers.push_back(std::move(layer));
  float_outputs_.push_back(pre_quant);
  return graph_.layers.back().output;
}

// The quantizer after a pending float result defines its output tensor.
int Lowerer::Impl::finalize(const Op* fq, Pending& p, const at::Tensor& pre_quant, float scale, int32_t zp,
                      int64_t qmin, int64_t qmax) {
  const Op* n = p.node;
  check_activation_range(fq, qmin, qmax, zp);
  Layer layer = p.geometry;
  layer.kind = p.kind;
  layer.name = !p.name.empty() ? p.name : layer_name(p.kind, n);
  layer.source = where(n);
  layer.inputs = p.inputs;
  layer.output = new_tensor(fq, pre_quant, scale, zp, qmin, qmax);
  switch (p.kind) {
    case LayerKind::kConv2d:
    case LayerKind::kDepthwiseConv2d:
    case LayerKind::kConvTranspose2d:
    case LayerKind::kFullyConnected: finalize_weighted(n, p, layer, scale, zp, qmin, qmax); break;
    case LayerKind::kConcat:
    case LayerKind::kAdd:
    case LayerKind::kSub:
    case LayerKind::kMul: finalize_join(n, p, layer, scale, zp, qmin, qmax); break;
    case LayerKind::kRequantize:
    case LayerKind::kLut:
    case LayerKind::kSoftmax: finalize_activation(n, p, layer, scale, zp, qmin, qmax); break;
    default: TORCH_CHECK(false, "mcuq.export: internal error: unexpected pending layer");
  }
  return add_layer(std::move(layer), pre_quant);
}

void Lowerer::Impl::fake_quantize(const Op* n, const std::vector<c10::IValue>& in, const c10::IValue& concrete,
                            const std::string& scale_path) {
  Sym& x = at(n->inputs[0]);
  Sym& out = at(n->outputs[0]);
  if (x.kind == Sym::Kind::kConst) {
    if (!in[0].isTensor()) fail(n, "expected a tensor to quantize");
    out.kind = Sym::Kind::kWeight;
    // Names the layer: the weight's attribute path, or, for a weight computed
    // in the graph (a folded BatchNorm), its quantizer's.
    out.path = !x.path.empty() ? x.path : scale_path;
    out.weight = quantized_weight(n, in);
    out.value = concrete;
    return;
  }
  if (!in[1].isTensor() || !in[2].isTensor()) fail(n, "expected constant qparams (a frozen model)");
  const at::Tensor scale_t = in[1].toTensor(), zp_t = in[2].toTensor();
  if (scale_t.numel() != 1) {
    fail(n, fmt::format("activations must be quantized per tensor, but the scale has {} elements", scale_t.numel()));
  }
  const float scale = scale_t.to(at::kFloat).item<float>();
  const auto zp = static_cast<int32_t>(std::nearbyint(zp_t.to(at::kDouble).item<double>()));
  const int64_t qmin = in[3].toInt(), qmax = in[4].toInt();
  const at::Tensor result = concrete.toTensor();
  out.value = result;
  out.kind = Sym::Kind::kAct;
  const at::Tensor pre = in[0].toTensor();
  if (x.kind == Sym::Kind::kFloat) {
    if (graph_.input >= 0) fail(n, "the model input is quantized twice");
    check_activation_range(n, qmin, qmax, zp);
    out.tensor = graph_.input = new_tensor(n, result, scale, zp, qmin, qmax);
    return;
  }
  if (x.kind == Sym::Kind::kWeight) fail(n, "a weight is quantized twice");
  if (x.kind == Sym::Kind::kPending) {
    out.tensor = finalize(n, *x.pending, pre, scale, zp, qmin, qmax);
    return;
  }
  // A quantizer on an already quantized activation: identity when the
  // qparams agree, otherwise a requantization.
  const TensorInfo& t = graph_.tensors[x.tensor];
  if (t.scale == scale && t.zero_point == zp && t.quant_min >= qmin && t.quant_max <= qmax) {
    out.tensor = x.tensor;
    return;
  }
  Pending p;
  p.kind = LayerKind::kRequantize;
  p.node = n;
  p.inputs = {x.tensor};
  out.tensor = finalize(n, p, pre, scale, zp, qmin, qmax);
}

void Lowerer::Impl::node(const Op* n) {
  const c10::Symbol k = n->kind;
  const std::vector<c10::IValue> in = concrete_inputs(n);
  bool all_const = true;
  for (int v : n->inputs) all_const = all_const && at(v).kind == Sym::Kind::kConst;
  if (k == sym("mcuq::fake_quantize")) {
    for (int i = 1; i < 7; ++i) {
      if (at(n->inputs[i]).kind != Sym::Kind::kConst) fail(n, "expected constant qparams (a frozen model)");
    }
    fake_quantize(n, in, concrete_outputs(n, in)[0], at(n->inputs[1]).path);
    return;
  }
  if (k == sym("mcuq::fake_quantize_levels")) {
    for (int i = 1; i < 5; ++i) {
      if (at(n->inputs[i]).kind != Sym::Kind::kConst) fail(n, "expected a constant codebook (a frozen model)");
    }
    const Sym& x = at(n->inputs[0]);
    if (x.kind != Sym::Kind::kConst || !in[0].isTensor()) {
      fail(n, "codebooks (mcuq.fake_quantize_levels) quantize weights; activations are quantized uniformly "
              "(mcuq.fake_quantize), as mcuq's presets do");
    }
    const c10::IValue result = concrete_outputs(n, in)[0];
    const std::string path = !x.path.empty() ? x.path : at(n->inputs[1]).path;
    auto weight = codebook_weight(n, in, result.toTensor());
    Sym& out = at(n->outputs[0]);
    out.kind = Sym::Kind::kWeight;
    out.path = path;
    out.weight = weight;
    out.value = result;
    return;
  }
  if (k == sym("mcuq::observe_fake_quantize")) {
    // A QAT fake-quantizer (mcuq.FakeQuantize, e.g. a model trained and
    // frozen in C++): exported as fake_quantize with its current qparams once
    // its observer is off; an identity when fake-quantization is off.
    for (int i = 1; i < static_cast<int>(n->inputs.size()); ++i) {
      if (at(n->inputs[i]).kind != Sym::Kind::kConst) fail(n, "expected constant quantizer state (a frozen model)");
    }
    if (in[6].toTensor().item<double>() != 0.0) {
      fail(n, "its observer is still enabled; disable observers (mcuq.freeze, or disable_observer() in C++) "
              "before exporting");
    }
    if (in[7].toTensor().item<double>() == 0.0) {
      at(n->outputs[0]) = at(n->inputs[0]);
      return;
    }
    const std::vector<c10::IValue> args = {in[0], in[4], in[5], in[9], in[10], in[13], in[14]};
    fake_quantize(n, args, concrete_outputs(n, in)[0], at(n->inputs[4]).path);
    return;
  }
  if (all_const) {  // constant folding, e.g. shape arithmetic or list literals
    const auto outs = concrete_outputs(n, in);
    for (size_t i = 0; i < outs.size(); ++i) {
      Sym& s = at(n->outputs[i]);
      s.kind = Sym::Kind::kConst;
      s.value = outs[i];
    }
    return;
  }
  if (one_of(k, kShapeQueries)) {
    Sym& s = at(n->outputs[0]);
    s.kind = Sym::Kind::kConst;
    s.value = concrete_outputs(n, in)[0];
    return;
  }
  if (one_of(k, kIdentities)) {
    at(n->outputs[0]) = at(n->inputs[0]);
    return;
  }
  if (one_of(k, {"aten::_convolution", "aten::conv2d", "aten::conv1d", "aten::conv_transpose2d", "aten::linear"})) {
    lower_weighted(n, in);
    return;
  }
  const std::vector<c10::IValue> outs = concrete_outputs(n, in);
  const bool pooling = is_pooling(n, in);
  if (pooling && outs.size() == 2 && outs[0].isTensor()) {
    lower_pool(n, in, outs[0].toTensor());  // adaptive_max_pool2d, torch.max(x, 1): the values; the indices stay unused
    return;
  }
  if (outs.size() != 1 || !outs[0].isTensor()) fail(n, "this operation is not supported by the exporter");
  const at::Tensor result = outs[0].toTensor();
  if (pooling) {
    lower_pool(n, in, result);
  } else if (one_of(k, {"aten::softmax", "aten::_softmax"})) {
    lower_softmax(n, in, result);
  } else if (one_of(k, {"aten::constant_pad_nd", "aten::pad", "aten::upsample_nearest1d", "aten::upsample_nearest2d",
                        "aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d"})) {
    lower_resize(n, in, result);
  } else if (one_of(k, kReshapes)) {
    lower_reshape(n, result);
  } else if (one_of(k, kClamps) || one_of(k, kLutActivations)) {
    lower_activation(n, in, result);
  } else if (one_of(k, {"aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::mul", "aten::mul_"})) {
    at(n->outputs[0]).value = result;  // node() ran the op once (an in-place op must not run twice)
    lower_binary(n, in);
  } else if (k == sym("aten::cat") || k == sym("aten::concat")) {
    lower_cat(n, in, result);
  } else {
    fail(n, "this operation is not supported by the exporter (supported: conv1d, conv2d, linear, ReLU/ReLU6/clamp, "
            "1-d and 2-d max/avg pooling, adaptive pooling, mean or max over H and W or over channels, "
            "softmax over the last dimension, zero padding, nearest upsampling by integer factors, flatten/reshape/view, add, sub, mul, cat along channels, elementwise activations as lookup tables; see docs/COVERAGE.md)");
  }
}

Lowerer::Impl::Impl(const ExportOptions& options, const std::vector<int64_t>& input_shape,
                     const at::Tensor& sample_in)
    : options_(options) {
  TORCH_CHECK_VALUE(options.rounding == "double" || options.rounding == "single",
                    fmt::format("mcuq.export: expected rounding 'double' or 'single', but got '{}'", options.rounding));
  TORCH_CHECK_VALUE(input_shape.size() >= 2 && input_shape[0] >= 1,
                    fmt::format("mcuq.export: expected input_shape [N, ...] with N >= 1, but got [{}]",
                                fmt::join(input_shape, ", ")));
  for (int64_t d : input_shape) {
    TORCH_CHECK_VALUE(d >= 1, fmt::format("mcuq.export: expected positive input sizes, but got [{}]",
                                          fmt::join(input_shape, ", ")));
  }
  TORCH_CHECK_VALUE(options.decode_bytes >= 0,
                    fmt::format("mcuq.export: expected decode_bytes >= 0, but got {}", options.decode_bytes));
  graph_.decode_bytes = options.decode_bytes;
  graph_.batch = input_shape[0];
  sample_ = sample_in;
  if (!sample_.defined()) {
    sample_ = at::randn(input_shape, at::TensorOptions().dtype(at::kFloat));
  } else {
    TORCH_CHECK_VALUE(sample_.dim() == static_cast<int64_t>(input_shape.size()) &&
                          sample_.sizes().slice(1) == c10::IntArrayRef(input_shape).slice(1),
                      fmt::format("mcuq.export: expected a sample of shape [N, {}], but got [{}]",
                                  fmt::join(c10::IntArrayRef(input_shape).slice(1), ", "),
                                  fmt::join(sample_.sizes(), ", ")));
    graph_.batch = sample_.size(0);
  }
  input_ = fresh();
  Sym& input = at(input_);
  input.kind = Sym::Kind::kFloat;
  input.value = sample_.to(at::kFloat);
}

LoweredModel Lowerer::Impl::finish(int output_value) {
  Op ret;
  ret.kind = sym("prim::Return");
  ret.name = "output";
  ret.source = "the model's output";
  const Sym& returned = at(output_value);
  TORCH_CHECK_VALUE(returned.kind != Sym::Kind::kConst && returned.kind != Sym::Kind::kList &&
                        returned.value.isTensor(),
                    "mcuq.export: expected the model to return one tensor computed from its input");
  TORCH_CHECK_VALUE(returned.kind != Sym::Kind::kPending || returned.pending->kind == LayerKind::kRequantize,
                    fmt::format("mcuq.export: the model output, from {}, is not quantized; put a fake-quantizer "
                                "after it (mcuq.prepare does)",
                                returned.kind == Sym::Kind::kPending ? describe(returned.pending->node) : ""));
  const int output = activation(&ret, output_value);
  TORCH_CHECK_VALUE(graph_.input >= 0, "mcuq.export: the model never quantizes its input");
  TORCH_CHECK_VALUE(graph_.tensors[output].buffer != graph_.tensors[graph_.input].buffer,
                    "mcuq.export: the model's output is its input (nothing to compute)");
  graph_.output = output;
  LoweredModel lowered;
  lowered.graph = std::move(graph_);
  lowered.float_outputs = std::move(float_outputs_);
  lowered.sample = sample_;
  return lowered;
}

Lowerer::Lowerer(const ExportOptions& options, const std::vector<int64_t>& input_shape, const at::Tensor& sample)
    : impl_(std::make_unique<Impl>(options, input_shape, sample)) {}

Lowerer::~Lowerer() = default;

int Lowerer::input() {
  return impl_->input_;
}

int Lowerer::constant(c10::IValue value, std::string path) {
  const int v = impl_->fresh();
  Sym& s = impl_->at(v);
  s.value = std::move(value);
  s.path = std::move(path);
  return v;
}

int Lowerer::list(const std::vector<int>& elements, const c10::TypePtr& element_type) {
  bool all_const = true;
  for (int e : elements) all_const = all_const && impl_->at(e).kind == Sym::Kind::kConst;
  c10::impl::GenericList concrete(element_type);
  for (int e : elements) concrete.push_back(impl_->at(e).value);
  const int v = impl_->fresh();
  Sym& s = impl_->at(v);
  s.value = c10::IValue(concrete);
  if (!all_const) {
    s.kind = Sym::Kind::kList;
    s.elements = elements;
  }
  return v;
}

int Lowerer::fresh() {
  return impl_->fresh();
}

void Lowerer::alias(int value, int of) {
  impl_->at(value) = impl_->at(of);
}

const Sym& Lowerer::at(int value) const {
  return impl_->at(value);
}

void Lowerer::apply(const Op& op) {
  impl_->ops_.push_back(op);
  impl_->node(&impl_->ops_.back());
}

LoweredModel Lowerer::finish(int output) {
  return impl_->finish(output);
}

void Lowerer::cannot_lower(const Op& op, const std::string& why, const std::string& name) {
  lowering::fail(&op, why, name);
}

}  // namespace mcuq::exporter
