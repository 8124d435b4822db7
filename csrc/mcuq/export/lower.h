// Internal: TorchScript -> integer graph (lower.cpp).
#pragma once

#include "mcuq/export.h"
#include "mcuq/export/graph.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace mcuq::exporter {

struct LoweredModel {
  Graph graph;
  std::vector<at::Tensor> float_outputs;  // per layer, the float model's value before its quantizer
  at::Tensor sample;                      // the float input they were computed from
};

LoweredModel lower(const torch::jit::Module& module, const std::vector<int64_t>& input_shape,
                   const ExportOptions& options, const at::Tensor& sample);

}  // namespace mcuq::exporter
