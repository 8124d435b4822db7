// Internal to the lowering (lower.cpp and layers/*.cpp): the abstract
// interpreter's state, Lowerer::Impl, and the helpers every op family uses.
// lower.cpp holds the core: values, quantizers, the common part of a pending
// layer's finalization and the dispatch by op. Each file in layers/ holds one
// op family: its lowering rules, its part of the finalization, and its
// integer reference (declared in layers/layers.h, run by model.cpp).
#pragma once

#include "mcuq/export.h"
#include "mcuq/export/lower.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <deque>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mcuq::exporter {

namespace lowering {

c10::Symbol sym(const char* qualified);
// "aten::_convolution, torch/nn/modules/conv.py:459": the op and the line of
// source it came from.
std::string where(const Op* n);
// "conv1 (aten::_convolution, torch/nn/modules/conv.py:459)"; `known` names
// the layer when the caller knows better (a module path).
std::string describe(const Op* n, const std::string& known = "");
std::string short_name(const Op* n);
[[noreturn]] void fail(const Op* n, const std::string& why, const std::string& name = "");
bool one_of(c10::Symbol k, std::initializer_list<const char*> names);
double scalar_of(const c10::IValue& v);
// The fake-quantizer's level of a real value, float32 as the kernels compute it.
int64_t level_of(double v, float scale, int32_t zero_point);

inline const std::initializer_list<const char*> kClamps = {
    "aten::relu", "aten::relu_", "aten::relu6", "aten::relu6_", "aten::hardtanh", "aten::hardtanh_",
    "aten::clamp", "aten::clamp_", "aten::clamp_min", "aten::clamp_min_", "aten::clamp_max",
    "aten::clamp_max_"};
inline const std::initializer_list<const char*> kLutActivations = {
    "aten::sigmoid", "aten::sigmoid_", "aten::tanh", "aten::tanh_", "aten::hardswish",
    "aten::hardswish_", "aten::hardsigmoid", "aten::hardsigmoid_", "aten::silu", "aten::silu_",
    "aten::gelu", "aten::leaky_relu", "aten::leaky_relu_", "aten::elu", "aten::elu_", "aten::selu",
    "aten::selu_", "aten::celu", "aten::celu_", "aten::softplus", "aten::mish", "aten::mish_",
    "aten::log_sigmoid", "aten::softsign"};
inline const std::initializer_list<const char*> kIdentities = {
    "aten::contiguous", "aten::dropout", "aten::dropout_", "aten::feature_dropout",
    "aten::alpha_dropout", "aten::detach", "aten::clone", "aten::alias"};
inline const std::initializer_list<const char*> kReshapes = {
    "aten::flatten", "aten::reshape", "aten::view", "aten::squeeze", "aten::unsqueeze",
    "aten::squeeze_", "aten::unsqueeze_"};
inline const std::initializer_list<const char*> kShapeQueries = {
    "aten::size", "aten::sym_size", "aten::dim", "prim::device", "prim::dtype", "aten::len", "prim::shape"};

}  // namespace lowering

struct QuantizedWeight {
  at::Tensor levels;          // int32, the weight's integer levels
  int64_t quant_min = -128, quant_max = 127;
  std::vector<float> scale;   // per output channel (expanded from groups / per-tensor)
  int64_t axis = -1;          // the axis of a per-channel scale (1: a ConvTranspose2d's); -1: per tensor
  // A codebook quantizer's (mcuq::fake_quantize_levels): its levels as
  // integers of the grid `scale` [rows][n], sorted; a row serves
  // codebook_channels output channels. Undefined for uniform weights.
  at::Tensor codebook;
  int64_t codebook_channels = 1;
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
  // `in`: fake_quantize_levels' arguments (input, levels, thresholds, axis,
  // group_size); `quantized`: its output.
  std::shared_ptr<QuantizedWeight> codebook_weight(const Op* n, const std::vector<c10::IValue>& in,
                                                   const at::Tensor& quantized);
  // `in`: fake_quantize's arguments (input, scale, zero_point, quant_min,
  // quant_max, axis, group_size); `result`: the node's concrete output.
  void fake_quantize(const Op* n, const std::vector<c10::IValue>& in, const c10::IValue& result,
                     const std::string& scale_path);
  int finalize(const Op* fq, Pending& p, const at::Tensor& pre_quant, float scale, int32_t zp, int64_t qmin,
               int64_t qmax);
  Requant requant_to(const Op* n, const std::vector<double>& real, float out_scale, int32_t out_zp,
                     int64_t qmin, int64_t qmax, double lo, double hi, const std::string& name);

  // The op families (layers/*.cpp): each lowers its ops (to a layer, or to
  // a Pending result that the next quantizer finalizes) and fills in its
  // pending layers' parameters once the output's qparams are known.
  // convolution.cpp: conv1d/conv2d (depthwise, grouped), linear.
  void lower_weighted(const Op* n, const std::vector<c10::IValue>& in);
  void lower_transposed(const Op* n, const std::vector<c10::IValue>& in, Pending& p);
  void finalize_weighted(const Op* n, const Pending& p, Layer& layer, float scale, int32_t zp, int64_t qmin,
                         int64_t qmax);
  // pooling.cpp: max/avg pooling, adaptive and global pooling, means and maxima over H and W or channels.
  static bool is_pooling(const Op* n, const std::vector<c10::IValue>& in);
  static std::vector<int64_t> reduced_dims(const Op* n, const std::vector<c10::IValue>& in);
  void lower_pool(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& out);
  // elementwise.cpp: add, sub, mul of two activations; cat along channels.
  void lower_binary(const Op* n, const std::vector<c10::IValue>& in);
  void lower_cat(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result);
  void finalize_join(const Op* n, const Pending& p, Layer& layer, float scale, int32_t zp, int64_t qmin,
                     int64_t qmax);
  // activation.cpp: clamps (fused or requantizations), lookup tables, softmax.
  void lower_activation(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result);
  void lower_softmax(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result);
  void finalize_activation(const Op* n, const Pending& p, Layer& layer, float scale, int32_t zp, int64_t qmin,
                           int64_t qmax);
  // shape.cpp: flatten/reshape/view, zero padding, nearest upsampling.
  void lower_reshape(const Op* n, const at::Tensor& result);
  void lower_resize(const Op* n, const std::vector<c10::IValue>& in, const at::Tensor& result);

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

}  // namespace mcuq::exporter
