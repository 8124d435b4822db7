// Internal: the op families' integer references. model.cpp's integer graph
// runs them layer by layer; each is defined in layers/<family>.cpp next to
// the family's lowering rules. They are written independently of the C
// runtime's loops, with LibTorch's ops; only the requantization step is the
// shared arithmetic header (through mcuq::requantize), by design.
#pragma once

#include "mcuq/export/graph.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace mcuq::exporter {

template <typename T>
at::Tensor as_tensor(const std::vector<T>& v, at::ScalarType dtype) {
  std::vector<int64_t> wide(v.begin(), v.end());
  return at::tensor(wide, at::TensorOptions().dtype(at::kLong)).to(dtype);
}

// accumulators (int64 tensor) -> output levels (int32) through `r`; 8-bit
// layers use the int32 rule (the exporter proved the accumulator fits),
// 16x8 layers TFLite's int64 rule.
at::Tensor requantize_levels(const at::Tensor& acc, const Requant& r, bool int64_acc, int64_t axis = 1);

// Each takes the layer's input levels with their batch dimension (`values`:
// every tensor's levels, for layers with several inputs) and returns its
// output levels (model.cpp gives them the output tensor's shape).
at::Tensor reference_weighted(const Graph& g, const Layer& l, const at::Tensor& x);            // convolution.cpp
at::Tensor reference_pool(const Layer& l, const TensorInfo& in, const at::Tensor& x);          // pooling.cpp
at::Tensor reference_join(const Graph& g, const Layer& l, const std::vector<at::Tensor>& values);  // elementwise.cpp
at::Tensor reference_activation(const Graph& g, const Layer& l, const at::Tensor& x);          // activation.cpp
at::Tensor reference_shape(const Layer& l, const TensorInfo& in, const at::Tensor& x);          // shape.cpp

// An int16 lookup table layer's outputs for integer levels, as mcuq_lut_s16
// computes them: the reference's rule, and the exporter's measure of the
// table's error (activation.cpp).
at::Tensor lut_s16_outputs(const Layer& l, const at::Tensor& levels);

}  // namespace mcuq::exporter
