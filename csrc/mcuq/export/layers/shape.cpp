// The shape family: flatten/reshape/view (free: activations are NCHW and
// share the input's buffer), zero padding and nearest upsampling by integer
// factors. The output keeps the input's qparams. Runtime: shape.c.
#include "mcuq/export/layers/layers.h"
#include "mcuq/export/lower_impl.h"


namespace mcuq::exporter {

using namespace lowering;

void Lowerer::Impl::lower_reshape(const Op* n, const at::Tensor& result) {
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
      repeated = reference_shape(layer, t, x);  // the reference's rule, on the float sample
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

// Reshapes are free (NCHW, one buffer); padding writes the zero point.
at::Tensor reference_shape(const Layer& l, const TensorInfo& in, const at::Tensor& x) {
  switch (l.kind) {
    case LayerKind::kReshape: return x;
    case LayerKind::kPad: {
      std::vector<int64_t> pad = {l.pad_w, l.pad_right};
      if (x.dim() == 4) pad.insert(pad.end(), {l.pad_h, l.pad_bottom});  // [N, C, L]: W only
      return at::constant_pad_nd(x, pad, in.zero_point);
    }
    case LayerKind::kUpsample: {
      at::Tensor y = x.repeat_interleave(l.factor_w, x.dim() - 1);
      return x.dim() == 4 ? y.repeat_interleave(l.factor_h, 2) : y;
    }
    default: TORCH_CHECK(false, "mcuq.export: internal error: reference_shape of a ", layer_kind_name(l.kind), " layer");
  }
}

}  // namespace mcuq::exporter
