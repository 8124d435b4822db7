// The activation family: clamps (ReLU, ReLU6, hardtanh, clamp) fused into
// the layer before or run as requantizations, elementwise functions as
// lookup tables computed through the model's own ops, and the int8 softmax.
// Runtime: requantize.c, lut.c, softmax.c.
#include "mcuq/export/layers/layers.h"
#include "mcuq/export/lower_impl.h"
#include "mcuq/ops.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace mcuq::exporter {

using namespace lowering;

void Lowerer::Impl::lower_activation(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result) {
  const c10::Symbol k = n->kind;
  Sym& out = at(n->outputs[0]);
  out.value = result;
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
}

void Lowerer::Impl::lower_softmax(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result) {
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
}

void Lowerer::Impl::finalize_activation(const Op* n, const Pending& p, Layer& layer, float scale, int32_t zp,
                                        int64_t qmin, int64_t qmax) {
  [[maybe_unused]] const TensorInfo& in = graph_.tensors[p.inputs[0]];
  [[maybe_unused]] const TensorInfo& out = graph_.tensors[layer.output];
  switch (p.kind) {
    case LayerKind::kRequantize: {
      layer.requant = requant_to(n, {static_cast<double>(in.scale) / static_cast<double>(scale)}, scale, zp, qmin, qmax,
                                 p.lo, p.hi, layer.name);
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
    default: TORCH_CHECK(false, "mcuq.export: internal error: finalize_activation of a ", layer_kind_name(p.kind), " layer");
  }
}

at::Tensor lut_s16_outputs(const Layer& l, const at::Tensor& levels) {
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

at::Tensor reference_activation(const Graph& g, const Layer& l, const at::Tensor& x) {
  switch (l.kind) {
    case LayerKind::kRequantize:
      return requantize_levels(x.to(at::kLong) - g.tensors[l.inputs[0]].zero_point, l.requant, false);
    case LayerKind::kLut: {
      if (g.int16()) return lut_s16_outputs(l, x);
      const at::Tensor table = as_tensor(l.table, at::kLong);
      return table.index_select(0, x.to(at::kLong).reshape(-1) + 128).reshape(x.sizes());
    }
    case LayerKind::kSoftmax: {
      // mcuq_softmax_s8's steps (mcuq_runtime.h): table lookup by the
      // distance to the row's max, the row sum, the rounded Q16 quotient.
      const at::Tensor q = x.to(at::kLong);
      const at::Tensor d = std::get<0>(q.max(-1, true)) - q;
      const at::Tensor e = as_tensor(l.exp_table, at::kLong).index_select(0, d.reshape(-1)).reshape(d.sizes());
      const at::Tensor sum = e.sum(-1, true);
      const at::Tensor probability = at::div(e * 65536 + at::div(sum, 2, "floor"), sum, "floor");
      return requantize_levels(probability, l.requant, false);
    }
    default:
      TORCH_CHECK(false, "mcuq.export: internal error: reference_activation of a ", layer_kind_name(l.kind), " layer");
  }
}

}  // namespace mcuq::exporter
