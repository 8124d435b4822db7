// Internal: the lowering rules (lower.cpp) and what the two front ends feed
// them. A front end (torchscript.cpp: TorchScript IR; program.cpp: the op
// list mcuq.export writes from a torch.export ExportedProgram) turns its
// graph into `Op`s over numbered values, one op at a time, and hands each to
// `Lowerer::apply`; the rules alone decide what becomes a layer of the
// integer graph. Neither front end knows a lowering rule.
#pragma once

#include "mcuq/export.h"
#include "mcuq/export/graph.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace mcuq::exporter {

// One operation: an ATen/mcuq op with every schema argument given (defaults
// filled in by the front end).
struct Op {
  c10::Symbol kind;          // aten::conv2d, mcuq::fake_quantize, ...
  std::vector<int> inputs;   // value ids, one per argument
  std::vector<int> outputs;  // value ids (Lowerer::fresh)
  std::string scope;         // module path ("features.0"), "" in the top module
  std::string name;          // the first output's name in the source graph ("x", "conv2d_1")
  std::string source;        // "aten::conv2d, model.py:12": errors and the report name it
  // Runs the op on a stack of arguments, leaving its outputs there.
  std::function<void(torch::jit::Stack&)> run;
};

struct LoweredModel {
  Graph graph;
  std::vector<at::Tensor> float_outputs;  // per layer, the float model's value before its quantizer
  at::Tensor sample;                      // the float input they were computed from
};

struct QuantizedWeight;
struct Pending;

// What the abstract interpreter knows of a value.
struct Sym {
  enum class Kind { kConst, kFloat, kWeight, kAct, kPending, kList } kind = Kind::kConst;
  c10::IValue value;  // kConst: the value; otherwise the concrete float tensor (kList: list) of the sample run
  std::shared_ptr<QuantizedWeight> weight;
  int tensor = -1;
  std::shared_ptr<Pending> pending;
  std::vector<int> elements;  // kList: the values listed
  std::string path;           // module attribute path of a constant ("conv1.weight"), names layers
};

class Lowerer {
 public:
  // Checks the options and the input shape; the sample (undefined: standard
  // normal noise of `input_shape`) is what every op runs on concretely.
  Lowerer(const ExportOptions& options, const std::vector<int64_t>& input_shape, const at::Tensor& sample);
  ~Lowerer();

  // Values: the model's float input, constants, lists, results to come.
  int input();
  int constant(c10::IValue value, std::string path = "");
  // A list of values: a constant (each element converted to `element_type`)
  // when every element is one, otherwise a list of activations (e.g. cat's).
  int list(const std::vector<int>& elements, const c10::TypePtr& element_type);
  int fresh();
  void alias(int value, int of);  // `value` is `of` (an identity, an if's branch)
  const Sym& at(int value) const;

  // The rules: what `op` means for the integer graph.
  void apply(const Op& op);
  // `output` is what the model returns.
  LoweredModel finish(int output);

  [[noreturn]] static void cannot_lower(const Op& op, const std::string& why, const std::string& name = "");

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The front ends.
LoweredModel lower(const torch::jit::Module& module, const std::vector<int64_t>& input_shape,
                   const ExportOptions& options, const at::Tensor& sample);
// `program`: the op list mcuq.export (Python) writes for an ExportedProgram.
LoweredModel lower_program(const c10::IValue& program, const std::vector<int64_t>& input_shape,
                           const ExportOptions& options, const at::Tensor& sample);

}  // namespace mcuq::exporter
