// The pooling family: max and average pooling (1-d, 2-d, floor or ceil
// mode), adaptive pooling with equal windows, global pooling (mean/amax over
// H and W) and the mean or max over channels. The output keeps the input's
// qparams. Runtime: pool.c.
#include "mcuq/export/layers/layers.h"
#include "mcuq/export/lower_impl.h"

#include <algorithm>
#include <utility>

namespace mcuq::exporter {

using namespace lowering;

// Pooling ops, and means and maxima over H and W (global pooling) or over
// channels (a spatial attention's input).
bool Lowerer::Impl::is_pooling(const Op* n, const std::vector<c10::IValue>& in) {
  const std::vector<int64_t> reduced = reduced_dims(n, in);
  if (one_of(n->kind, {"aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d", "aten::max_pool1d",
                       "aten::avg_pool1d", "aten::adaptive_max_pool2d"})) {
    return true;
  }
  if (n->kind == sym("aten::max")) return reduced == std::vector<int64_t>{1};  // torch.max(x, 1): values, indices
  return one_of(n->kind, {"aten::mean", "aten::amax"}) &&
         (reduced == std::vector<int64_t>{1} || (in[0].toTensor().dim() == 4 && reduced == std::vector<int64_t>{2, 3}));
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

void Lowerer::Impl::lower_pool(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result) {
  const int input = activation(n, n->inputs[0]);
  const TensorInfo t = graph_.tensors[input];
  const bool one_d = n->kind == sym("aten::max_pool1d") || n->kind == sym("aten::avg_pool1d");  // [N, C, L]: H = 1
  const bool over_channels = reduced_dims(n, in) == std::vector<int64_t>{1};
  if (over_channels ? t.shape.empty() : t.shape.size() != (one_d ? 2u : 3u)) {
    fail(n, over_channels ? "expected an input with channels"
                          : one_d ? "expected a [N, C, L] input" : "expected a [N, C, H, W] input");
  }
  Layer layer;
  layer.source = where(n);
  layer.inputs = {input};
  auto pair = [&](const c10::IValue& v, int64_t fallback_h, int64_t fallback_w) {
    auto list = v.toIntVector();
    if (list.empty()) return std::make_pair(fallback_h, fallback_w);
    if (one_d) return std::make_pair(fallback_h, list[0]);  // the height: 1 row (kernel and stride 1, padding 0)
    return list.size() == 1 ? std::make_pair(list[0], list[0]) : std::make_pair(list[0], list[1]);
  };
  std::pair<int64_t, int64_t> kernel, stride, padding{0, 0};
  if (over_channels) {
    // A mean or max over channels ([N, C, ...] -> [N, 1, ...] or [N, ...]):
    // one plane of C rows by H * W columns, pooled by a C x 1 window.
    const int64_t channels = t.shape[0];
    layer.kind = n->kind == sym("aten::mean") ? LayerKind::kAvgPool2d : LayerKind::kMaxPool2d;
    layer.pool_view = {1, channels, t.numel() / channels};
    kernel = {channels, 1};
    stride = kernel;
  } else if (one_d) {
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
    const int64_t h = t.shape[1], w = t.shape[2];
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

at::Tensor reference_pool(const Layer& l, const TensorInfo& in, const at::Tensor& x_any) {
  if (!l.pool_view.empty()) {  // the input as the kernel reads it (pooling over channels)
    Layer plain = l;
    plain.pool_view.clear();
    return reference_pool(plain, in, x_any.reshape({x_any.size(0), l.pool_view[0], l.pool_view[1], l.pool_view[2]}));
  }
  if (x_any.dim() == 3) return reference_pool(l, in, x_any.unsqueeze(2)).squeeze(2);  // 1-d: [N, C, 1, L]
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

}  // namespace mcuq::exporter
