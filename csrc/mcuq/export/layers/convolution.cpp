// The convolution family: conv1d and conv2d (grouped, depthwise, strided,
// dilated; a Conv1d runs as a 1 x L conv2d), ConvTranspose2d and linear
// layers, with their weights' fake-quantizers and bias. Runtime: conv2d.c,
// conv2d_im2col.c, conv_transpose2d.c, fully_connected.c.
#include "mcuq/export/layers/layers.h"
#include "mcuq/export/lower_impl.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace mcuq::exporter {

using namespace lowering;

// ConvTranspose2d (groups 1): its weights [in_c][out_c][k_h][k_w] become
// [out_c][in_c][k_h][k_w], one row per output channel as a convolution's,
// with their per-output-channel scales (axis 1 in PyTorch's layout).
void Lowerer::Impl::lower_transposed(const Op* n, const std::vector<c10::IValue>& in, Pending& p) {
  const bool convolution = n->kind == sym("aten::_convolution");
  const QuantizedWeight& w = *p.weight;
  if (w.levels.dim() != 4) fail(n, "only 2-d transposed convolutions are supported");
  const int64_t groups = convolution ? in[8].toInt() : in[6].toInt();
  if (groups != 1) fail(n, fmt::format("grouped transposed convolutions are not supported (groups {})", groups));
  const auto stride = in[3].toIntVector(), padding = in[4].toIntVector();
  const auto dilation = (convolution ? in[5] : in[7]).toIntVector();
  const auto pair = [](const std::vector<int64_t>& v) {
    return std::make_pair(static_cast<int32_t>(v.at(0)), static_cast<int32_t>(v.size() > 1 ? v[1] : v[0]));
  };
  Layer& g = p.geometry;
  std::tie(g.stride_h, g.stride_w) = pair(stride);
  std::tie(g.pad_h, g.pad_w) = pair(padding);
  std::tie(g.dilation_h, g.dilation_w) = pair(dilation);
  g.k_h = static_cast<int32_t>(w.levels.size(2));
  g.k_w = static_cast<int32_t>(w.levels.size(3));
  auto out_major = std::make_shared<QuantizedWeight>(w);
  out_major->levels = w.levels.transpose(0, 1).contiguous();
  const int64_t out_c = out_major->levels.size(0);
  if (w.axis < 0) out_major->scale.assign(out_c, w.scale.at(0));  // per tensor: one scale per output channel
  p.weight = out_major;
  p.kind = LayerKind::kConvTranspose2d;
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
  const bool transposed = n->kind == sym("aten::conv_transpose2d") ||
                          (n->kind == sym("aten::_convolution") && in[6].toBool());
  if (w.weight->axis == (transposed ? 0 : 1)) {
    fail(n, fmt::format("weights must be quantized per output channel (axis {}), but got axis {}", transposed ? 1 : 0,
                        w.weight->axis));
  }
  if (linear) {
    p->kind = LayerKind::kFullyConnected;
    if (graph_.tensors[input].numel() != w.weight->levels.size(1)) {
      fail(n, "expected a [N, in_features] input");
    }
  } else if (transposed) {
    lower_transposed(n, in, *p);
  } else {
    const bool convolution = n->kind == sym("aten::_convolution");
    const int64_t dims = w.weight->levels.dim() - 2;  // 1: Conv1d, run as a 1 x L Conv2d
    if (dims != 1 && dims != 2) fail(n, "only 1-d and 2-d convolutions are supported");
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

// The output's qparams known: biases with the input zero point folded in,
// the accumulator's bound (refused past int32, or 2^47 in 16x8), the
// requantization multipliers.
void Lowerer::Impl::finalize_weighted(const Op* n, const Pending& p, Layer& layer, float scale, int32_t zp,
                                      int64_t qmin, int64_t qmax) {
  [[maybe_unused]] const TensorInfo& in = graph_.tensors[p.inputs[0]];
  [[maybe_unused]] const TensorInfo& out = graph_.tensors[layer.output];
  const QuantizedWeight& w = *p.weight;
  const int64_t out_c = w.levels.size(0);
  const int64_t per_channel = w.levels.numel() / out_c;
  const at::Tensor levels = w.levels.contiguous();
  const int32_t* wl = levels.data_ptr<int32_t>();
  const at::Tensor bias = p.bias.defined() ? p.bias.to(at::kDouble).contiguous() : at::zeros({out_c}, at::kDouble);
  const double* b = bias.data_ptr<double>();
  // A transposed convolution keeps the bias unfolded and multiplies (x - z_in).
  const bool transposed = layer.kind == LayerKind::kConvTranspose2d;
  const int64_t in_abs = transposed
      ? std::max(std::abs(static_cast<int64_t>(in.quant_min) - in.zero_point),
                 std::abs(static_cast<int64_t>(in.quant_max) - in.zero_point))
      : std::max(std::abs(static_cast<int64_t>(in.quant_min)), std::abs(static_cast<int64_t>(in.quant_max)));
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
    layer.bias.push_back(transposed ? q_bias : q_bias - static_cast<int64_t>(in.zero_point) * sum_w);
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
  // 4-bit weight ranges with int8 activations: packed two per byte (but in
  // transposed convolutions, which have no _w4 kernel).
  layer.weight_bits = !graph_.int16() && !transposed && w.quant_min >= -8 && w.quant_max <= 7 ? 4 : 8;
  // Codebook weights: b-bit indices into a row of 2^b int8 levels per
  // codebook_channels output channels, where that takes less flash than a
  // byte per weight. 16x8 layers and transposed convolutions have no
  // codebook kernels: their weights stay int8 (the same levels).
  if (w.codebook.defined() && !graph_.int16() && !transposed) {
    const int64_t count = w.codebook.size(1), rows = w.codebook.size(0);
    const int32_t bits = count <= 2 ? 1 : count <= 4 ? 2 : count <= 8 ? 3 : count <= 16 ? 4 : 0;
    const auto weights = static_cast<int64_t>(layer.weights.size());
    if (bits > 0 && (weights * bits + 7) / 8 + rows * (int64_t{1} << bits) < weights) {
      const at::Tensor codebook = w.codebook.contiguous();
      const int32_t* levels_in_row = codebook.data_ptr<int32_t>();
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < (int64_t{1} << bits); ++i) {  // padded with the last level
          layer.codebook.push_back(static_cast<int8_t>(levels_in_row[r * count + std::min(i, count - 1)]));
        }
      }
      layer.weight_bits = bits;
      layer.codebook_channels = static_cast<int32_t>(w.codebook_channels);
      layer.codebook_levels = static_cast<int32_t>(count);
    }
  }
  layer.accumulator_bound = worst;
  layer.headroom_bits = std::log2(static_cast<double>(limit) / static_cast<double>(std::max<int64_t>(worst, 1)));
  // A transposed convolution: each input element meets every weight of its
  // input channel (those that land outside the output aside).
  layer.macs = transposed ? in.numel() * per_channel / in.shape.at(0) * out_c : out.numel() * per_channel;
  layer.requant = requant_to(n, real, scale, zp, qmin, qmax, p.lo, p.hi, layer.name);
  // One scale for every output channel (weights per tensor): the tables
  // hold one entry (5 bytes of flash per channel fewer).
  auto& multipliers = layer.requant.multiplier;
  auto& shifts = layer.requant.shift;
  if (std::all_of(multipliers.begin(), multipliers.end(), [&](int32_t m) { return m == multipliers[0]; }) &&
      std::all_of(shifts.begin(), shifts.end(), [&](int8_t s) { return s == shifts[0]; })) {
    multipliers.resize(1);
    shifts.resize(1);
  }
  for (int8_t shift : layer.requant.shift) {
    if (graph_.int16() && layer.requant.rounding != MCUQ_ROUND_SHIFT && shift > 7) {
      fail(n, fmt::format("its requantization multiplier is 2^{} or more; the int64 rule of 16x8 layers "
                          "takes multipliers below 2^7 (s_in * s_w / s_out)", shift - 1),
           layer.name);
    }
  }
}

// Float64 products of exact integers (every partial sum is below 2^53).
at::Tensor reference_weighted(const Graph& g, const Layer& l, const at::Tensor& x) {
  const TensorInfo& in = g.tensors[l.inputs[0]];
  const at::Tensor shifted = (x.to(at::kLong) - in.zero_point).to(at::kDouble);
  const int64_t out_c = static_cast<int64_t>(l.bias_raw.size());
  at::Tensor w = as_tensor(l.weights, at::kDouble);
  at::Tensor acc;
  if (l.kind == LayerKind::kFullyConnected) {
    acc = at::linear(shifted.reshape({x.size(0), -1}), w.reshape({out_c, -1}));
  } else if (l.kind == LayerKind::kConvTranspose2d) {
    // PyTorch's op on PyTorch's layout [in_c][out_c][k_h][k_w]; the output
    // padding is what the output's size says beyond the formula.
    const auto& out = g.tensors[l.output].shape;
    const int64_t base_h = (in.shape[1] - 1) * l.stride_h - 2 * l.pad_h + l.dilation_h * (l.k_h - 1) + 1;
    const int64_t base_w = (in.shape[2] - 1) * l.stride_w - 2 * l.pad_w + l.dilation_w * (l.k_w - 1) + 1;
    acc = at::conv_transpose2d(shifted, w.reshape({out_c, -1, l.k_h, l.k_w}).transpose(0, 1), {},
                               {l.stride_h, l.stride_w}, {l.pad_h, l.pad_w}, {out[1] - base_h, out[2] - base_w}, 1,
                               {l.dilation_h, l.dilation_w});
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
  return requantize_levels(acc.to(at::kLong), l.requant, g.int16());
}

}  // namespace mcuq::exporter
