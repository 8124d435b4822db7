// The lowering rules: front-end ops -> integer graph.
//
// A front end (torchscript.cpp, program.cpp) hands over the model's ops in
// order; they are interpreted abstractly: every value is a constant (module
// attributes, literals), a fake-quantized weight, a quantized activation (a
// tensor of the integer graph), or a float result still waiting for its
// output quantizer (a conv, linear, add, concat or activation, with any
// ReLU/clamp that follows fused into it). Every op also runs concretely on a
// sample input alongside, which gives every shape and the float values the
// report's SQNR compares against.
#include "mcuq/export.h"
#include "mcuq/export/lower.h"
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

namespace {

c10::Symbol sym(const char* qualified) {
  return c10::Symbol::fromQualString(qualified);
}

// "aten::_convolution, torch/nn/modules/conv.py:459": the op and the line of
// source it came from.
std::string where(const Op* n) {
  return n->source;
}

// "conv1 (aten::_convolution, torch/nn/modules/conv.py:459)"; `known` names
// the layer when the caller knows better (a module path).
std::string describe(const Op* n, const std::string& known = "") {
  if (!known.empty()) return fmt::format("{} ({})", known, where(n));
  const std::string name = !n->scope.empty() ? n->scope : !n->name.empty() ? n->name : std::string("?");
  return fmt::format("{} ({})", name, where(n));
}

std::string short_name(const Op* n) {
  if (!n->scope.empty()) return n->scope;
  if (!n->name.empty()) return n->name;
  return n->kind.toUnqualString();
}

[[noreturn]] void fail(const Op* n, const std::string& why, const std::string& name = "") {
  TORCH_CHECK_VALUE(false, fmt::format("mcuq.export: cannot lower {}: {}", describe(n, name), why));
}

}  // namespace

struct QuantizedWeight {
  at::Tensor levels;          // int32, the weight's integer levels
  int64_t quant_min = -128, quant_max = 127;
  std::vector<float> scale;   // per output channel (expanded from groups / per-tensor)
};

// A float result waiting for the quantizer that defines its output qparams.
struct Pending {
  LayerKind kind = LayerKind::kRequantize;
  const Op* node = nullptr;  // the op that produced it
  std::string name;          // the layer's name, if known (module path)
  std::vector<int> inputs;
  std::shared_ptr<QuantizedWeight> weight;
  at::Tensor bias;  // float, may be undefined
  Layer geometry;   // conv/fc geometry
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  // Lookup tables: the ops applied, in order, to the input (each to its
  // first input, the others constant).
  std::vector<std::pair<const Op*, std::vector<c10::IValue>>> chain;
};

namespace {

bool one_of(c10::Symbol k, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (k == sym(name)) return true;
  }
  return false;
}

const std::initializer_list<const char*> kClamps = {
    "aten::relu", "aten::relu_", "aten::relu6", "aten::relu6_", "aten::hardtanh", "aten::hardtanh_",
    "aten::clamp", "aten::clamp_", "aten::clamp_min", "aten::clamp_min_", "aten::clamp_max",
    "aten::clamp_max_"};
const std::initializer_list<const char*> kLutActivations = {
    "aten::sigmoid", "aten::sigmoid_", "aten::tanh", "aten::tanh_", "aten::hardswish",
    "aten::hardswish_", "aten::hardsigmoid", "aten::hardsigmoid_", "aten::silu", "aten::silu_",
    "aten::gelu", "aten::leaky_relu", "aten::leaky_relu_", "aten::elu", "aten::elu_", "aten::selu",
    "aten::selu_", "aten::celu", "aten::celu_", "aten::softplus", "aten::mish", "aten::mish_",
    "aten::log_sigmoid", "aten::softsign"};
const std::initializer_list<const char*> kIdentities = {
    "aten::contiguous", "aten::dropout", "aten::dropout_", "aten::feature_dropout",
    "aten::alpha_dropout", "aten::detach", "aten::clone", "aten::alias"};
const std::initializer_list<const char*> kReshapes = {
    "aten::flatten", "aten::reshape", "aten::view", "aten::squeeze", "aten::unsqueeze",
    "aten::squeeze_", "aten::unsqueeze_"};
const std::initializer_list<const char*> kShapeQueries = {
    "aten::size", "aten::sym_size", "aten::dim", "prim::device", "prim::dtype", "aten::len", "prim::shape"};

double scalar_of(const c10::IValue& v) {
  return v.isNone() ? std::numeric_limits<double>::quiet_NaN() : v.toScalar().toDouble();
}

// The fake-quantizer's level of a real value, float32 as the kernels compute it.
int64_t level_of(double v, float scale, int32_t zero_point) {
  const float x = static_cast<float>(v) * (1.0f / scale);
  const double level = std::nearbyint(static_cast<double>(x)) + zero_point;
  return static_cast<int64_t>(std::max(-1e15, std::min(1e15, level)));  // far outside any range, no UB
}

}  // namespace

struct Lowerer::Impl {
  Impl(const ExportOptions& options, const std::vector<int64_t>& input_shape, const at::Tensor& sample_in);

  Sym& at(int v) {
    TORCH_CHECK(v >= 0 && v < static_cast<int>(env_.size()), "mcuq.export: internal error: unknown value ", v);
    return env_[v];
  }
  int fresh() {
    env_.emplace_back();
    return static_cast<int>(env_.size()) - 1;
  }
  void node(const Op* n);
  LoweredModel finish(int output);
  std::vector<c10::IValue> concrete_outputs(const Op* n, const std::vector<c10::IValue>& inputs);
  std::vector<c10::IValue> concrete_inputs(const Op* n);
  int activation(const Op* n, int v);  // the tensor id of a quantized activation
  int new_tensor(const Op* n, const at::Tensor& value, float scale, int32_t zp, int64_t qmin, int64_t qmax,
                 int buffer = -1);
  void check_activation_range(const Op* n, int64_t qmin, int64_t qmax, int32_t zp);
  std::shared_ptr<QuantizedWeight> quantized_weight(const Op* n, const std::vector<c10::IValue>& in);
  // `in`: fake_quantize's arguments (input, scale, zero_point, quant_min,
  // quant_max, axis, group_size); `result`: the node's concrete output.
  void fake_quantize(const Op* n, const std::vector<c10::IValue>& in, const c10::IValue& result,
                     const std::string& scale_path);
  int finalize(const Op* fq, Pending& p, const at::Tensor& pre_quant, float scale, int32_t zp, int64_t qmin,
               int64_t qmax);
  Requant requant_to(const Op* n, const std::vector<double>& real, float out_scale, int32_t out_zp,
                     int64_t qmin, int64_t qmax, double lo, double hi, const std::string& name);
  void lower_weighted(const Op* n, const std::vector<c10::IValue>& in);
  void lower_pool(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& out);
  void lower_binary(const Op* n, const std::vector<c10::IValue>& in);
  void lower_resize(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result);
  static std::vector<int64_t> reduced_dims(const Op* n, const std::vector<c10::IValue>& in);
  int add_layer(Layer layer, const at::Tensor& pre_quant);
  // Layers without a weight to name them: the kind and the layer's index
  // ("max_pool2d_3"). Not the module scope: a saved TorchScript model has
  // none, and the C must not depend on the front end.
  std::string layer_name(LayerKind kind, const Op*) const {
    return fmt::format("{}_{}", layer_kind_name(kind), graph_.layers.size());
  }

  ExportOptions options_;
  std::deque<Op> ops_;  // every op applied, kept for the names and lookup tables that point at them
  std::vector<Sym> env_;
  int input_ = -1;
  at::Tensor sample_;
  Graph graph_;
  std::vector<at::Tensor> float_outputs_;  // per layer: the float model's value before quantization
  bool type_known_ = false;
  int buffers_ = 0;
};

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
  const int64_t out_channels = w.size(0);
  if (scale.numel() != 1 && (axis != 0 && axis != -w.dim())) {
    fail(n, fmt::format("weights must be quantized per output channel (axis 0), but got axis {}", axis));
  }
  auto q = std::make_shared<QuantizedWeight>();
  q->quant_min = qmin;
  q->quant_max = qmax;
  q->levels = mcuq::quantize(w, in[1].toTensor(), zp, qmin, qmax, axis, group, at::kInt);
  const float* s = scale.data_ptr<float>();
  for (int64_t c = 0; c < out_channels; ++c) {
    q->scale.push_back(scale.numel() == 1 ? s[0] : s[c / group]);
  }
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
  const TensorInfo& out = graph_.tensors[layer.output];
  const TensorInfo& in = graph_.tensors[p.inputs[0]];
  switch (p.kind) {
    case LayerKind::kConv2d:
    case LayerKind::kDepthwiseConv2d:
    case LayerKind::kFullyConnected: {
      const QuantizedWeight& w = *p.weight;
      const int64_t out_c = w.levels.size(0);
      const int64_t per_channel = w.levels.numel() / out_c;
      const at::Tensor levels = w.levels.contiguous();
      const int32_t* wl = levels.data_ptr<int32_t>();
      const at::Tensor bias = p.bias.defined() ? p.bias.to(at::kDouble).contiguous() : at::zeros({out_c}, at::kDouble);
      const double* b = bias.data_ptr<double>();
      const int64_t in_abs = std::max(std::abs(static_cast<int64_t>(in.quant_min)),
                                      std::abs(static_cast<int64_t>(in.quant_max)));
      const int64_t limit = graph_.int16() ? (int64_t{1} << 47) - 1 : int64_t{INT32_MAX};
      std::vector<double> real;
      int64_t worst = 0;
      for (int64_t c = 0; c < out_c; ++c) {
        const double product = static_cast<double>(in.scale) * static_cast<double>(w.scale[c]);
        real.push_back(product / static_cast<double>(scale));
        const double qb = std::round(b[c] / product);  // ties away from zero
        if (!(std::abs(qb) <= static_cast<double>(limit))) {
          fail(n, fmt::format("bias {} of output channel {} is {} levels of s_in * s_w = {:g}, beyond the {} "
                              "accumulator", b[c], c, qb, product, graph_.int16() ? "int64 (2^47)" : "int32"), layer.name);
        }
        int64_t sum_w = 0, sum_abs = 0;
        for (int64_t i = 0; i < per_channel; ++i) {
          sum_w += wl[c * per_channel + i];
          sum_abs += std::abs(static_cast<int64_t>(wl[c * per_channel + i]));
          layer.weights.push_back(static_cast<int8_t>(wl[c * per_channel + i]));
        }
        const auto q_bias = static_cast<int64_t>(qb);
        layer.bias_raw.push_back(q_bias);
        layer.bias.push_back(q_bias - static_cast<int64_t>(in.zero_point) * sum_w);
        // The accumulator starts at the folded bias and adds one product per
        // tap; no partial sum can exceed this bound, for any input.
        const int64_t bound = std::abs(layer.bias.back()) + sum_abs * in_abs;
        worst = std::max(worst, bound);
        layer.weight_scale.push_back(w.scale[c]);
      }
      if (worst > limit) {
        fail(n, fmt::format("the {} accumulator can overflow: |acc| can reach {} > {} ({} products of |w| <= {} "
                            "and |x| <= {} per output, plus the bias); use fewer inputs per output, a narrower "
                            "input range or 16x8 mode",
                            graph_.int16() ? "int64 (2^47 for TFLite's 16x8 rule)" : "int32", worst, limit,
                            per_channel, levels.abs().max().item<int32_t>(), in_abs),
             layer.name);
      }
      // 4-bit weight ranges with int8 activations: packed two per byte.
      layer.weight_bits = !graph_.int16() && w.quant_min >= -8 && w.quant_max <= 7 ? 4 : 8;
      layer.accumulator_bound = worst;
      layer.headroom_bits = std::log2(static_cast<double>(limit) / static_cast<double>(std::max<int64_t>(worst, 1)));
      layer.macs = out.numel() * per_channel;
      layer.requant = requant_to(n, real, scale, zp, qmin, qmax, p.lo, p.hi, layer.name);
      for (int8_t shift : layer.requant.shift) {
        if (graph_.int16() && layer.requant.rounding != MCUQ_ROUND_SHIFT && shift > 7) {
          fail(n, fmt::format("its requantization multiplier is 2^{} or more; the int64 rule of 16x8 layers "
                              "takes multipliers below 2^7 (s_in * s_w / s_out)", shift - 1),
               layer.name);
        }
      }
      break;
    }
    case LayerKind::kRequantize: {
      layer.requant = requant_to(n, {static_cast<double>(in.scale) / static_cast<double>(scale)}, scale, zp, qmin, qmax,
                                 p.lo, p.hi, layer.name);
      break;
    }
    case LayerKind::kConcat: {
      for (int t : p.inputs) {
        const TensorInfo& piece = graph_.tensors[t];
        layer.pieces.push_back(requant_to(n, {static_cast<double>(piece.scale) / static_cast<double>(scale)}, scale,
                                          zp, qmin, qmax, p.lo, p.hi, layer.name));
      }
      break;
    }
    case LayerKind::kAdd:
    case LayerKind::kSub: {
      const TensorInfo& b = graph_.tensors[p.inputs[1]];
      layer.left_shift = graph_.int16() ? 15 : 20;
      const double twice_max = 2.0 * std::max(static_cast<double>(in.scale), static_cast<double>(b.scale));
      const std::vector<double> real = {
          static_cast<double>(in.scale) / twice_max, static_cast<double>(b.scale) / twice_max,
          twice_max / (std::ldexp(1.0, layer.left_shift) * static_cast<double>(scale))};
      const Requant inputs = requant_to(n, {real[0], real[1]}, scale, zp, qmin, qmax, p.lo, p.hi, layer.name);
      layer.requant = requant_to(n, {real[2]}, scale, zp, qmin, qmax, p.lo, p.hi, layer.name);
      if (inputs.rounding != layer.requant.rounding) {  // shifts only when all three are powers of two
        layer.requant.rounding = options_.rounding == "single" ? MCUQ_ROUND_SINGLE : MCUQ_ROUND_DOUBLE;
      }
      layer.a_multiplier = inputs.multiplier[0];
      layer.a_shift = inputs.shift[0];
      layer.b_multiplier = inputs.multiplier[1];
      layer.b_shift = inputs.shift[1];
      layer.macs = out.numel();
      break;
    }
    case LayerKind::kMul: {
      const TensorInfo& b = graph_.tensors[p.inputs[1]];
      const double real = static_cast<double>(in.scale) * static_cast<double>(b.scale) / static_cast<double>(scale);
      layer.requant = requant_to(n, {real}, scale, zp, qmin, qmax, p.lo, p.hi, layer.name);
      if (graph_.int16() && layer.requant.rounding != MCUQ_ROUND_SHIFT && layer.requant.shift[0] > 7) {
        fail(n, fmt::format("its requantization multiplier s_a * s_b / s_out = {:g} is 2^7 or more; the int64 "
                            "rule of 16x8 layers takes multipliers below 2^7", real),
             layer.name);
      }
      layer.macs = out.numel();
      break;
    }
    case LayerKind::kSoftmax: {
      for (int d = 0; d < 256; ++d) {
        layer.exp_table.push_back(
            static_cast<int32_t>(std::round(32768.0 * std::exp(-static_cast<double>(in.scale) * d))));
      }
      layer.requant = requant_to(n, {std::ldexp(1.0, -16) / static_cast<double>(scale)}, scale, zp, qmin, qmax, p.lo,
                                 p.hi, layer.name);
      layer.macs = out.numel();
      break;
    }
    case LayerKind::kLut: {
      // The activation on integer levels: dequantize, the ops in order, quantize.
      const auto tabulate = [&](const at::Tensor& levels) {
        at::Tensor x = mcuq::dequantize(levels, at::full({1}, in.scale), at::full({1}, in.zero_point, at::kInt),
                                        graph_.int16() ? -32768 : -128, graph_.int16() ? 32768 : 127);
        for (const auto& step : p.chain) {
          std::vector<c10::IValue> args = step.second;
          args[0] = x;
          x = concrete_outputs(step.first, args)[0].toTensor();
        }
        return mcuq::quantize(x.to(at::kFloat), at::full({1}, scale), at::full({1}, zp, at::kInt), qmin, qmax, 0, 1,
                              at::kInt);
      };
      if (!graph_.int16()) {
        const at::Tensor q = tabulate(at::arange(-128, 128, at::kInt));  // every input level
        const int32_t* qp = q.data_ptr<int32_t>();
        layer.table.assign(qp, qp + q.numel());
      } else {
        // 513 samples 2^k levels apart, interpolated on the device. The
        // window spans the inputs where the function is not flat (outside it
        // the kernel returns the end samples) with the smallest step that
        // covers them: a sigmoid whose slope spans a few hundred input levels
        // gets all 512 segments there, not the 2 or 3 of a whole-range table.
        const at::Tensor exact = tabulate(at::arange(-32768, 32768, at::kInt));
        const int32_t* e = exact.data_ptr<int32_t>();
        int64_t first = 0, last = 65535;  // offsets from -32768: flat at or below first, at or above last
        while (first < 65535 && e[first + 1] == e[0]) ++first;
        while (last > 0 && e[last - 1] == e[65535]) --last;
        int32_t shift = 0;
        while (shift < 7 && (int64_t{512} << shift) < last - first) ++shift;
        const int64_t span = int64_t{512} << shift;
        layer.lut_step_shift = shift;
        // Any start in [last - span, first] covers the window; its two ends
        // put a sample on the bottom or the top corner (e.g. where the output
        // saturates), where interpolation errs most: keep the better one.
        const at::Tensor levels = at::arange(-32768, 32768, at::kInt);
        for (const int64_t start : {std::min(first, 65536 - span), std::max<int64_t>(last - span, 0)}) {
          Layer candidate;
          candidate.lut_start = static_cast<int32_t>(start - 32768);
          candidate.lut_step_shift = shift;
          const at::Tensor samples = tabulate(at::arange(candidate.lut_start, candidate.lut_start + span + 1,
                                                         int64_t{1} << shift, at::kInt));
          const int32_t* sp = samples.data_ptr<int32_t>();
          candidate.table.assign(sp, sp + samples.numel());
          candidate.lut_error_levels = (lut_s16_outputs(candidate, levels) - exact).abs().max().item<int64_t>();
          if (layer.table.empty() || candidate.lut_error_levels < layer.lut_error_levels) {
            layer.table = std::move(candidate.table);
            layer.lut_start = candidate.lut_start;
            layer.lut_error_levels = candidate.lut_error_levels;
          }
        }
      }
      layer.macs = out.numel();
      break;
    }
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

void Lowerer::Impl::lower_weighted(const Op* n, const std::vector<c10::IValue>& in) {
  const bool linear = n->kind == sym("aten::linear");
  const int input = activation(n, n->inputs[0]);
  const Sym& w = at(n->inputs[1]);
  if (w.kind != Sym::Kind::kWeight) {
    std::string name = w.path;
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) name.resize(name.size() - 7);
    fail(n, w.kind == Sym::Kind::kConst
                ? "its weight is a float constant, not fake-quantized: quantize the model first (mcuq.prepare, "
                  "then calibrate or train, then mcuq.freeze); if it was, torch.jit.freeze folded the weight "
                  "quantizer into the constant, so export the traced or scripted model before torch.jit.freeze"
                : "its weight is not a constant",
         name);
  }
  if (at(n->inputs[2]).kind != Sym::Kind::kConst) fail(n, "its bias is not a constant");
  auto p = std::make_shared<Pending>();
  p->node = n;
  p->inputs = {input};
  p->weight = w.weight;
  p->name = w.path;
  // "conv1.conv.weight" or "conv1.weight_fake_quant.scale" -> "conv1"
  for (const char* suffix : {".scale", ".weight_fake_quant", ".weight", ".layer", ".conv"}) {
    const std::string tail(suffix);
    if (p->name.size() > tail.size() && p->name.compare(p->name.size() - tail.size(), tail.size(), tail) == 0) {
      p->name.resize(p->name.size() - tail.size());
    }
  }
  if (in[2].isTensor()) p->bias = in[2].toTensor();
  if (linear) {
    p->kind = LayerKind::kFullyConnected;
    if (graph_.tensors[input].numel() != w.weight->levels.size(1)) {
      fail(n, "expected a [N, in_features] input");
    }
  } else {
    const bool convolution = n->kind == sym("aten::_convolution");
    const int64_t dims = w.weight->levels.dim() - 2;  // 1: Conv1d, run as a 1 x L Conv2d
    if (dims != 1 && dims != 2) fail(n, "only 1-d and 2-d convolutions are supported");
    if (convolution && in[6].toBool()) fail(n, "transposed convolutions are not supported");
    if (in[4].isString()) fail(n, "string padding ('same'/'valid') is not supported; use integers");
    const auto stride = in[3].toIntVector(), padding = in[4].toIntVector(), dilation = in[5].toIntVector();
    const int64_t groups = convolution ? in[8].toInt() : in[6].toInt();
    // The height's entries of a 1-d convolution: one row, stride 1, no padding.
    const auto hw = [&](const std::vector<int64_t>& v, int64_t height) {
      return std::make_pair(static_cast<int32_t>(dims == 1 ? height : v.at(0)), static_cast<int32_t>(v.back()));
    };
    Layer& g = p->geometry;
    std::tie(g.stride_h, g.stride_w) = hw(stride, 1);
    std::tie(g.pad_h, g.pad_w) = hw(padding, 0);
    std::tie(g.dilation_h, g.dilation_w) = hw(dilation, 1);
    g.groups = static_cast<int32_t>(groups);
    g.k_h = dims == 1 ? 1 : static_cast<int32_t>(w.weight->levels.size(2));
    g.k_w = static_cast<int32_t>(w.weight->levels.size(dims + 1));
    const int64_t in_c = graph_.tensors[input].shape.at(0), out_c = w.weight->levels.size(0);
    p->kind = groups > 1 && groups == in_c && out_c % in_c == 0 ? LayerKind::kDepthwiseConv2d : LayerKind::kConv2d;
  }
  Sym& out = at(n->outputs[0]);
  out.kind = Sym::Kind::kPending;
  out.pending = p;
  out.value = concrete_outputs(n, in)[0];
}

void Lowerer::Impl::lower_pool(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result) {
  const int input = activation(n, n->inputs[0]);
  const TensorInfo t = graph_.tensors[input];
  const bool one_d = n->kind == sym("aten::max_pool1d") || n->kind == sym("aten::avg_pool1d");  // [N, C, L]: H = 1
  if (reduced_dims(n, in) == std::vector<int64_t>{1}) {
    // A mean or max over channels ([N, C, ...] -> [N, 1, ...] or [N, ...]):
    // one plane of C rows by H * W columns, pooled by a C x 1 window.
    const bool max = n->kind != sym("aten::mean");
    if (t.shape.empty()) fail(n, "expected an input with channels");
    const int64_t channels = t.shape[0], pixels = t.numel() / channels;
    Layer layer;
    layer.kind = max ? LayerKind::kMaxPool2d : LayerKind::kAvgPool2d;
    layer.source = where(n);
    layer.inputs = {input};
    layer.pool_view = {1, channels, pixels};
    layer.k_h = static_cast<int32_t>(channels);
    layer.stride_h = static_cast<int32_t>(channels);
    if (!max && channels * (static_cast<int64_t>(t.quant_max) - t.quant_min) + channels / 2 > INT32_MAX) {
      fail(n, fmt::format("its {}-channel sum can overflow the int32 accumulator of the average", channels));
    }
    layer.name = layer_name(layer.kind, n);
    layer.requant.zero_point = t.zero_point;
    layer.requant.act_min = t.quant_min;
    layer.requant.act_max = t.quant_max;
    layer.output = new_tensor(n, result, t.scale, t.zero_point, t.quant_min, t.quant_max);
    layer.macs = t.numel();
    Sym& out = at(n->outputs[0]);
    out.kind = Sym::Kind::kAct;
    out.value = result;
    out.tensor = add_layer(std::move(layer), result);
    return;
  }
  if (t.shape.size() != (one_d ? 2u : 3u)) fail(n, one_d ? "expected a [N, C, L] input" : "expected a [N, C, H, W] input");
  Layer layer;
  layer.source = where(n);
  layer.inputs = {input};
  const int64_t h = one_d ? 1 : t.shape[1], w = t.shape.back();
  auto pair = [&](const c10::IValue& v, int64_t fallback_h, int64_t fallback_w) {
    auto list = v.toIntVector();
    if (list.empty()) return std::make_pair(fallback_h, fallback_w);
    if (one_d) return std::make_pair(fallback_h, list[0]);  // the height: 1 row (kernel and stride 1, padding 0)
    return list.size() == 1 ? std::make_pair(list[0], list[0]) : std::make_pair(list[0], list[1]);
  };
  std::pair<int64_t, int64_t> kernel, stride, padding{0, 0};
  if (one_d) {
    kernel = pair(in[1], 1, 0);
    stride = pair(in[2], 1, kernel.second);
    padding = pair(in[3], 0, 0);
    if (n->kind == sym("aten::max_pool1d")) {
      layer.kind = LayerKind::kMaxPool2d;
      if (pair(in[4], 1, 1).second != 1) fail(n, "dilated max pooling is not supported");
      layer.ceil_mode = in[5].toBool() ? 1 : 0;
    } else {
      layer.kind = LayerKind::kAvgPool2d;
      layer.ceil_mode = in[4].toBool() ? 1 : 0;
      layer.count_include_pad = in[5].toBool() ? 1 : 0;
    }
  } else if (n->kind == sym("aten::max_pool2d")) {
    layer.kind = LayerKind::kMaxPool2d;
    kernel = pair(in[1], 0, 0);
    stride = pair(in[2], kernel.first, kernel.second);
    padding = pair(in[3], 0, 0);
    const auto dilation = pair(in[4], 1, 1);
    if (dilation.first != 1 || dilation.second != 1) fail(n, "dilated max pooling is not supported");
    layer.ceil_mode = in[5].toBool() ? 1 : 0;
  } else if (n->kind == sym("aten::avg_pool2d")) {
    layer.kind = LayerKind::kAvgPool2d;
    kernel = pair(in[1], 0, 0);
    stride = pair(in[2], kernel.first, kernel.second);
    padding = pair(in[3], 0, 0);
    layer.ceil_mode = in[4].toBool() ? 1 : 0;
    layer.count_include_pad = in[5].toBool() ? 1 : 0;
    if (!in[6].isNone()) fail(n, "divisor_override is not supported");
  } else {  // adaptive pooling; mean or amax over H and W: equal windows
    const bool max = n->kind == sym("aten::adaptive_max_pool2d") || n->kind == sym("aten::amax");
    layer.kind = max ? LayerKind::kMaxPool2d : LayerKind::kAvgPool2d;
    int64_t oh = 1, ow = 1;
    if (n->kind == sym("aten::adaptive_avg_pool2d") || n->kind == sym("aten::adaptive_max_pool2d")) {
      const auto size = in[1].toIntVector();
      oh = size[0];
      ow = size.size() > 1 ? size[1] : size[0];
    }
    if (h % oh != 0 || w % ow != 0) {
      fail(n, fmt::format("adaptive pooling from {}x{} to {}x{} has unequal windows", h, w, oh, ow));
    }
    kernel = {h / oh, w / ow};
    stride = kernel;
  }
  const int64_t taps = kernel.first * kernel.second;
  if (layer.kind == LayerKind::kAvgPool2d &&
      taps * (static_cast<int64_t>(t.quant_max) - t.quant_min) + taps / 2 > INT32_MAX) {
    fail(n, fmt::format("its {}-tap window sum can overflow the int32 accumulator of the average", taps));
  }
  layer.k_h = static_cast<int32_t>(kernel.first);
  layer.k_w = static_cast<int32_t>(kernel.second);
  layer.stride_h = static_cast<int32_t>(stride.first);
  layer.stride_w = static_cast<int32_t>(stride.second);
  layer.pad_h = static_cast<int32_t>(padding.first);
  layer.pad_w = static_cast<int32_t>(padding.second);
  layer.name = layer_name(layer.kind, n);
  layer.requant.zero_point = t.zero_point;
  layer.requant.act_min = t.quant_min;
  layer.requant.act_max = t.quant_max;
  // Pooling keeps the input's qparams (max exactly; average rounds).
  layer.output = new_tensor(n, result, t.scale, t.zero_point, t.quant_min, t.quant_max);
  layer.macs = graph_.tensors[layer.output].numel() * kernel.first * kernel.second;
  Sym& out = at(n->outputs[0]);
  out.kind = Sym::Kind::kAct;
  out.value = result;
  out.tensor = add_layer(std::move(layer), result);
}

// Zero padding and nearest upsampling of [N, C, H, W] or [N, C, L]: the
// input's qparams, each level moved (the zero point is the real 0).
void Lowerer::Impl::lower_resize(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result) {
  const int input = activation(n, n->inputs[0]);
  const TensorInfo t = graph_.tensors[input];
  if (t.shape.size() != 2 && t.shape.size() != 3) fail(n, "expected a [N, C, H, W] or [N, C, L] input");
  const bool one_d = t.shape.size() == 2;
  Layer layer;
  layer.source = where(n);
  layer.inputs = {input};
  if (n->kind == sym("aten::constant_pad_nd") || n->kind == sym("aten::pad")) {
    layer.kind = LayerKind::kPad;
    if (n->kind == sym("aten::pad") && in[2].toStringRef() != "constant") {
      fail(n, fmt::format("'{}' padding is not supported (only constant zero padding)", in[2].toStringRef()));
    }
    const c10::IValue& value = in[2 + (n->kind == sym("aten::pad") ? 1 : 0)];
    if (!value.isNone() && scalar_of(value) != 0.0) {
      fail(n, fmt::format("padding with {} is not supported (only with 0, the zero point)", scalar_of(value)));
    }
    const std::vector<int64_t> pad = in[1].toIntVector();  // last dim first: left, right, top, bottom
    const size_t spatial = one_d ? 2 : 4;
    for (size_t i = 0; i < pad.size(); ++i) {
      if (pad[i] < 0) fail(n, fmt::format("negative padding (cropping) is not supported, but got [{}]", fmt::join(pad, ", ")));
      if (i >= spatial && pad[i] != 0) fail(n, "padding is supported over H and W only (not channels or batch)");
    }
    layer.pad_w = static_cast<int32_t>(pad.size() > 0 ? pad[0] : 0);
    layer.pad_right = static_cast<int32_t>(pad.size() > 1 ? pad[1] : 0);
    layer.pad_h = static_cast<int32_t>(!one_d && pad.size() > 2 ? pad[2] : 0);
    layer.pad_bottom = static_cast<int32_t>(!one_d && pad.size() > 3 ? pad[3] : 0);
  } else {
    layer.kind = LayerKind::kUpsample;
    const at::Tensor x = at(n->inputs[0]).value.toTensor();
    const int64_t ih = one_d ? 1 : x.size(2), iw = x.size(-1);
    const int64_t oh = one_d ? 1 : result.size(2), ow = result.size(-1);
    // Integer factors, checked on the values: the output repeats each input.
    at::Tensor repeated;
    if (oh % ih == 0 && ow % iw == 0) {
      layer.factor_h = static_cast<int32_t>(oh / ih);
      layer.factor_w = static_cast<int32_t>(ow / iw);
      repeated = x.repeat_interleave(layer.factor_w, x.dim() - 1);
      if (!one_d) repeated = repeated.repeat_interleave(layer.factor_h, 2);
    }
    if (!repeated.defined() || !at::equal(repeated, result)) {
      fail(n, fmt::format("nearest upsampling from {}x{} to {}x{} is not by integer factors", ih, iw, oh, ow));
    }
  }
  layer.name = layer_name(layer.kind, n);
  layer.output = new_tensor(n, result, t.scale, t.zero_point, t.quant_min, t.quant_max);
  Sym& out = at(n->outputs[0]);
  out.kind = Sym::Kind::kAct;
  out.value = result;
  out.tensor = add_layer(std::move(layer), result);
}

// The dims a mean/amax/max reduces, sorted and non-negative (of the input
// with its batch dimension); {} for other ops or a reduction over all.
std::vector<int64_t> Lowerer::Impl::reduced_dims(const Op* n, const std::vector<c10::IValue>& in) {
  if (!one_of(n->kind, {"aten::mean", "aten::amax", "aten::max"}) || in.size() < 2 || !in[0].isTensor()) return {};
  std::vector<int64_t> dims;
  if (in[1].isIntList()) {
    dims = in[1].toIntVector();
  } else if (in[1].isInt()) {
    dims = {in[1].toInt()};
  } else {
    return {};
  }
  const int64_t rank = in[0].toTensor().dim();
  for (auto& d : dims) d = d < 0 ? d + rank : d;
  std::sort(dims.begin(), dims.end());
  return dims;
}

// Elementwise add, sub and mul of two quantized activations: pending until
// the quantizer after them gives the output's qparams.
void Lowerer::Impl::lower_binary(const Op* n, const std::vector<c10::IValue>& in) {
  const std::string op = n->kind.toUnqualString();
  const bool mul = op.rfind("mul", 0) == 0;
  const std::string verb = mul ? "multipl" : op.rfind("add", 0) == 0 ? "add" : "subtract";
  if (!mul && n->inputs.size() > 2 && scalar_of(in[2]) != 1.0) {
    fail(n, fmt::format("{} with alpha != 1 is not supported", op.substr(0, 3)));
  }
  for (int i : {0, 1}) {
    if (at(n->inputs[i]).kind == Sym::Kind::kConst) {
      fail(n, fmt::format("{} an activation and a constant is not supported (only two activations); fold the "
                          "constant into the layer before, or make it a layer's output",
                          mul ? "multiplying" : verb == "add" ? "adding" : "subtracting"));
    }
  }
  auto p = std::make_shared<Pending>();
  p->kind = mul ? LayerKind::kMul : verb == "add" ? LayerKind::kAdd : LayerKind::kSub;
  p->node = n;
  p->inputs = {activation(n, n->inputs[0]), activation(n, n->inputs[1])};
  const auto& a = graph_.tensors[p->inputs[0]].shape;
  const auto& b = graph_.tensors[p->inputs[1]].shape;
  // What mcuq_mul broadcasts into [C, H, W]: a per-channel gate [C, 1, 1],
  // a per-pixel map [1, H, W] or one value [1, 1, 1].
  const auto broadcasts_into = [](const std::vector<int64_t>& small, const std::vector<int64_t>& big) {
    if (small.size() != big.size() || small.empty() || (small[0] != big[0] && small[0] != 1)) return false;
    const bool spatial_ones = std::all_of(small.begin() + 1, small.end(), [](int64_t d) { return d == 1; });
    return spatial_ones || std::equal(small.begin() + 1, small.end(), big.begin() + 1);
  };
  if (a != b) {
    if (mul && broadcasts_into(b, a)) {
    } else if (mul && broadcasts_into(a, b)) {
      std::swap(p->inputs[0], p->inputs[1]);  // the full-size operand first
    } else {
      fail(n, fmt::format("cannot {} activations of shapes [{}] and [{}]: {}", mul ? "multiply" : verb,
                          fmt::join(a, ", "), fmt::join(b, ", "),
                          mul ? "both must have one shape, or one must be [C, 1, 1] (one value per channel), "
                                "[1, H, W] (one per pixel) or [1, 1, 1]"
                              : "both inputs must have one shape (broadcasting is supported for mul only)"));
    }
  }
  Sym& out = at(n->outputs[0]);  // its value: node() ran the op once (an in-place op must not run twice)
  out.kind = Sym::Kind::kPending;
  out.pending = p;
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
  if (k == sym("aten::_convolution") || k == sym("aten::conv2d") || k == sym("aten::conv1d") ||
      k == sym("aten::linear")) {
    lower_weighted(n, in);
    return;
  }
  const std::vector<c10::IValue> outs = concrete_outputs(n, in);
  const std::vector<int64_t> reduced = reduced_dims(n, in);
  if ((k == sym("aten::adaptive_max_pool2d") || (k == sym("aten::max") && reduced == std::vector<int64_t>{1})) &&
      outs.size() == 2 && outs[0].isTensor()) {
    lower_pool(n, in, outs[0].toTensor());  // the values; the indices stay unused
    return;
  }
  if (outs.size() != 1 || !outs[0].isTensor()) fail(n, "this operation is not supported by the exporter");
  const at::Tensor result = outs[0].toTensor();
  if (one_of(k, {"aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d", "aten::max_pool1d",
                 "aten::avg_pool1d"}) ||
      ((k == sym("aten::mean") || k == sym("aten::amax")) &&
       (reduced == std::vector<int64_t>{1} || (in[0].toTensor().dim() == 4 && reduced == std::vector<int64_t>{2, 3})))) {
    lower_pool(n, in, result);
    return;
  }
  if (one_of(k, {"aten::softmax", "aten::_softmax"})) {
    auto p = std::make_shared<Pending>();
    p->kind = LayerKind::kSoftmax;
    p->node = n;
    p->inputs = {activation(n, n->inputs[0])};
    const int64_t dim = in[1].toInt() < 0 ? in[1].toInt() + result.dim() : in[1].toInt();
    if (dim != result.dim() - 1) {
      fail(n, fmt::format("softmax is supported over the last dimension only, but got dim {} of a {}-d tensor",
                          in[1].toInt(), result.dim()));
    }
    if (graph_.int16()) fail(n, "softmax is supported for int8 activations only (its table spans 256 levels)");
    Sym& out = at(n->outputs[0]);
    out.value = result;
    out.kind = Sym::Kind::kPending;
    out.pending = p;
    return;
  }
  if (one_of(k, {"aten::constant_pad_nd", "aten::pad", "aten::upsample_nearest1d", "aten::upsample_nearest2d",
                 "aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d"})) {
    lower_resize(n, in, result);
    return;
  }
  if (one_of(k, kReshapes)) {
    const int input = activation(n, n->inputs[0]);
    if (result.dim() == 0 || result.size(0) != graph_.batch) fail(n, "reshapes must keep the batch dimension");
    const TensorInfo t = graph_.tensors[input];
    Layer layer;
    layer.kind = LayerKind::kReshape;
    layer.name = layer_name(layer.kind, n);
    layer.source = where(n);
    layer.inputs = {input};
    layer.output = new_tensor(n, result, t.scale, t.zero_point, t.quant_min, t.quant_max, t.buffer);
    Sym& out = at(n->outputs[0]);
    out.kind = Sym::Kind::kAct;
    out.value = result;
    out.tensor = add_layer(std::move(layer), result);
    return;
  }
  Sym& out = at(n->outputs[0]);
  out.value = result;
  if (one_of(k, kClamps) || one_of(k, kLutActivations)) {
    Sym& x = at(n->inputs[0]);
    for (size_t i = 1; i < n->inputs.size(); ++i) {
      if (at(n->inputs[i]).kind != Sym::Kind::kConst) fail(n, "expected constant arguments");
    }
    std::shared_ptr<Pending> p;
    if (x.kind == Sym::Kind::kAct) {  // starts a lookup table or a clamp of a quantized tensor
      p = std::make_shared<Pending>();
      p->node = n;
      p->inputs = {x.tensor};
      p->kind = one_of(k, kClamps) ? LayerKind::kRequantize : LayerKind::kLut;
    } else if (x.kind == Sym::Kind::kPending) {
      p = std::make_shared<Pending>(*x.pending);
      if (one_of(k, kLutActivations) && p->kind == LayerKind::kRequantize) {
        p->kind = LayerKind::kLut;  // clamp then activation: one table
      } else if (one_of(k, kLutActivations) && p->kind != LayerKind::kLut) {
        fail(n, fmt::format("its input, the output of {}, is not quantized; put a fake-quantizer between them "
                            "(the activation becomes a lookup table on the quantized values)",
                            describe(p->node)));
      }
    } else {
      activation(n, n->inputs[0]);  // raises the right error
    }
    p->chain.emplace_back(n, in);
    if (one_of(k, kClamps) && p->kind != LayerKind::kLut) {
      double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
      const std::string name = k.toUnqualString();
      if (name.rfind("relu6", 0) == 0) {
        lo = 0.0;
        hi = 6.0;
      } else if (name.rfind("relu", 0) == 0) {
        lo = 0.0;
      } else if (name.rfind("hardtanh", 0) == 0) {
        lo = scalar_of(in[1]);
        hi = scalar_of(in[2]);
      } else if (name.rfind("clamp_min", 0) == 0) {
        lo = scalar_of(in[1]);
      } else if (name.rfind("clamp_max", 0) == 0) {
        hi = scalar_of(in[1]);
      } else {
        if (in[1].isTensor() || in[2].isTensor()) fail(n, "tensor clamp bounds are not supported");
        if (!in[1].isNone()) lo = scalar_of(in[1]);
        if (!in[2].isNone()) hi = scalar_of(in[2]);
      }
      p->lo = std::max(p->lo, lo);
      p->hi = std::min(p->hi, hi);
    }
    out.kind = Sym::Kind::kPending;
    out.pending = p;
    return;
  }
  if (one_of(k, {"aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::mul", "aten::mul_"})) {
    lower_binary(n, in);
    return;
  }
  if (k == sym("aten::cat") || k == sym("aten::concat")) {
    const Sym& list = at(n->inputs[0]);
    if (list.kind != Sym::Kind::kList) fail(n, "expected a list of activations");
    int64_t dim = in[1].toInt();
    dim = dim < 0 ? dim + result.dim() : dim;
    if (dim != 1) fail(n, "concatenation is supported along channels (dim 1) only");
    auto p = std::make_shared<Pending>();
    p->kind = LayerKind::kConcat;
    p->node = n;
    for (int v : list.elements) p->inputs.push_back(activation(n, v));
    out.kind = Sym::Kind::kPending;
    out.pending = p;
    return;
  }
  fail(n, "this operation is not supported by the exporter (supported: conv1d, conv2d, linear, ReLU/ReLU6/clamp, "
          "1-d and 2-d max/avg pooling, adaptive pooling, mean or max over H and W or over channels, "
          "softmax over the last dimension, zero padding, nearest upsampling by integer factors, flatten/reshape/view, add, sub, mul, cat along channels, elementwise activations as lookup tables; see docs/COVERAGE.md)");
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
  exporter::fail(&op, why, name);
}

}  // namespace mcuq::exporter
