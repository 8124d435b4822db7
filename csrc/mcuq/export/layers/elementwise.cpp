// The elementwise family: add, sub and mul of two quantized activations
// (TFLite's ADD/SUB and MUL schemes; mul broadcasts a per-channel or a
// per-pixel operand) and concatenation along channels. Runtime:
// elementwise.c, requantize.c (cat).
#include "mcuq/export/layers/layers.h"
#include "mcuq/export/lower_impl.h"

#include <algorithm>
#include <cmath>

namespace mcuq::exporter {

using namespace lowering;

// Elementwise add, sub and mul of two quantized activations: pending until
// the quantizer after them gives the output's qparams.
void Lowerer::Impl::lower_binary(const Op* n, const std::vector<c10::IValue>& in) {
  const std::string op = n->kind.toUnqualString();  // add, add_, sub, sub_, mul, mul_
  const bool mul = op.rfind("mul", 0) == 0, add = op.rfind("add", 0) == 0;
  const char* verb = mul ? "multiply" : add ? "add" : "subtract";
  if (!mul && n->inputs.size() > 2 && scalar_of(in[2]) != 1.0) {
    fail(n, fmt::format("{} with alpha != 1 is not supported", op.substr(0, 3)));
  }
  for (int i : {0, 1}) {
    if (at(n->inputs[i]).kind == Sym::Kind::kConst) {
      fail(n, fmt::format("{} an activation and a constant is not supported (only two activations); fold the "
                          "constant into the layer before, or make it a layer's output",
                          mul ? "multiplying" : add ? "adding" : "subtracting"));
    }
  }
  auto p = std::make_shared<Pending>();
  p->kind = mul ? LayerKind::kMul : add ? LayerKind::kAdd : LayerKind::kSub;
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
  if (a != b && !(mul && broadcasts_into(b, a))) {
    if (mul && broadcasts_into(a, b)) {
      std::swap(p->inputs[0], p->inputs[1]);  // the full-size operand first
    } else {
      fail(n, fmt::format("cannot {} activations of shapes [{}] and [{}]: {}", verb,
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

void Lowerer::Impl::lower_cat(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result) {
  Sym& out = at(n->outputs[0]);
  out.value = result;
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
}

void Lowerer::Impl::finalize_join(const Op* n, const Pending& p, Layer& layer, float scale, int32_t zp,
                                  int64_t qmin, int64_t qmax) {
  [[maybe_unused]] const TensorInfo& in = graph_.tensors[p.inputs[0]];
  [[maybe_unused]] const TensorInfo& out = graph_.tensors[layer.output];
  switch (p.kind) {
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
    default: TORCH_CHECK(false, "mcuq.export: internal error: finalize_join of a ", layer_kind_name(p.kind), " layer");
  }
}

namespace {

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
    return requantize_levels(shifted, r, false).to(at::kLong);
  };
  const at::Tensor a_scaled = scaled(a, ta, l.a_multiplier, l.a_shift);
  const at::Tensor b_scaled = scaled(b, tb, l.b_multiplier, l.b_shift);
  const at::Tensor sum = at::clamp(subtract ? a_scaled - b_scaled : a_scaled + b_scaled, INT32_MIN, INT32_MAX);
  return requantize_levels(sum, l.requant, false);
}

// The product of the zero-point-shifted levels (exact in int64; b of shape
// [N, C, 1, 1] broadcasts), requantized by the int32 rule (int8: |product|
// <= 255^2) or the 16x8 layers' int64 rule.
at::Tensor mul(const Graph& g, const Layer& l, const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor product = (a.to(at::kLong) - g.tensors[l.inputs[0]].zero_point) *
                             (b.to(at::kLong) - g.tensors[l.inputs[1]].zero_point);
  return requantize_levels(product, l.requant, g.int16());
}

}  // namespace

// add and sub (TFLite's scheme), mul, and cat (each input requantized into
// its slice of the output).
at::Tensor reference_join(const Graph& g, const Layer& l, const std::vector<at::Tensor>& values) {
  const at::Tensor& x = values[l.inputs[0]];
  switch (l.kind) {
    case LayerKind::kAdd:
    case LayerKind::kSub: return add(g, l, x, values[l.inputs[1]], l.kind == LayerKind::kSub);
    case LayerKind::kMul: return mul(g, l, x, values[l.inputs[1]]);
    case LayerKind::kConcat: {
      std::vector<at::Tensor> pieces;
      for (size_t i = 0; i < l.inputs.size(); ++i) {
        const at::Tensor& xi = values[l.inputs[i]];
        pieces.push_back(requantize_levels(xi.to(at::kLong) - g.tensors[l.inputs[i]].zero_point, l.pieces[i], false));
      }
      return at::cat(pieces, 1);
    }
    default: TORCH_CHECK(false, "mcuq.export: internal error: reference_join of a ", layer_kind_name(l.kind), " layer");
  }
}

}  // namespace mcuq::exporter
