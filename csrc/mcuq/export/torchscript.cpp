// Front end: TorchScript IR -> the lowering rules' ops (lower.h).
//
// The forward graph is inlined and walked in order. What is TorchScript's own
// is resolved here: constants and module attributes become constant values,
// an `if` takes the branch its (constant) condition picks, list and tuple
// literals become lists; every other node is handed to the rules as an Op
// that runs through TorchScript's own operation for the node.
#include "mcuq/export/lower.h"

#include <fmt/format.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <unordered_map>

namespace mcuq::exporter {
namespace {

using torch::jit::Node;
using torch::jit::Value;

// The traced module path of a node ("features.0"), or "" (scripted graphs,
// or the top module). Traced scopes nest: "__module.features/__module.features.0".
std::string module_scope(const Node* n) {
  std::string scope = n->scopeName();
  const size_t last = scope.rfind('/');
  if (last != std::string::npos) scope = scope.substr(last + 1);
  for (const char* prefix : {"__module.", "__module"}) {
    if (scope.rfind(prefix, 0) == 0) return scope.substr(std::string(prefix).size());
  }
  return scope;
}

class TorchScriptFrontEnd {
 public:
  TorchScriptFrontEnd(Lowerer& lowerer) : lowerer_(lowerer) {}

  void block(const torch::jit::Block* b) {
    for (const Node* n : b->nodes()) node(n);
  }
  int id(const Value* v) const {
    auto it = ids_.find(v);
    TORCH_CHECK(it != ids_.end(), "mcuq.export: internal error: value used before definition");
    return it->second;
  }
  void bind(const Value* v, int id) { ids_[v] = id; }

 private:
  // The Op as errors and the report name it (no inputs, outputs or runner yet).
  static Op describe(const Node* n) {
    Op op;
    op.kind = n->kind();
    op.scope = module_scope(n);
    if (n->outputs().size() > 0 && n->output(0)->hasDebugName()) op.name = n->output(0)->debugName();
    op.source = n->kind().toQualString();
    if (auto flc = n->sourceRange().file_line_col()) {
      op.source += fmt::format(", {}:{}", std::get<0>(*flc), std::get<1>(*flc));
    }
    return op;
  }

  void node(const Node* n) {
    Op op = describe(n);
    const c10::Symbol k = n->kind();
    if (k == c10::prim::Constant) {
      bind(n->output(), lowerer_.constant(*torch::jit::toIValue(n->output())));
      return;
    }
    if (k == c10::prim::GetAttr) {
      const Sym& owner = lowerer_.at(id(n->input(0)));
      if (owner.kind != Sym::Kind::kConst || !owner.value.isObject()) Lowerer::cannot_lower(op, "attribute of a non-constant");
      const std::string& attr = n->s(c10::attr::name);
      bind(n->output(), lowerer_.constant(owner.value.toObject()->getAttr(attr),
                                          owner.path.empty() ? attr : owner.path + "." + attr));
      return;
    }
    if (k == c10::prim::If) {
      const Sym& cond = lowerer_.at(id(n->input(0)));
      if (cond.kind != Sym::Kind::kConst) Lowerer::cannot_lower(op, "data-dependent control flow cannot be exported");
      const torch::jit::Block* taken = n->blocks()[cond.value.toBool() ? 0 : 1];
      block(taken);
      for (size_t i = 0; i < n->outputs().size(); ++i) bind(n->output(i), id(taken->outputs()[i]));
      return;
    }
    if (k == c10::prim::Loop || k == c10::prim::CallMethod || k == c10::prim::CallFunction) {
      Lowerer::cannot_lower(op, "loops and calls that are not inlined cannot be exported");
    }
    std::vector<int> inputs;
    for (const Value* v : n->inputs()) inputs.push_back(id(v));
    if (k == c10::prim::ListConstruct || k == c10::prim::TupleConstruct) {
      const c10::TypePtr element = k == c10::prim::ListConstruct
          ? n->output()->type()->expectRef<c10::ListType>().getElementType()
          : c10::AnyType::get();
      bool all_const = true;
      for (int v : inputs) all_const = all_const && lowerer_.at(v).kind == Sym::Kind::kConst;
      if (k == c10::prim::TupleConstruct && all_const) {
        std::vector<c10::IValue> elements;
        for (int v : inputs) elements.push_back(lowerer_.at(v).value);
        bind(n->output(), lowerer_.constant(c10::ivalue::Tuple::create(std::move(elements))));
      } else {
        bind(n->output(), lowerer_.list(inputs, element));
      }
      return;
    }
    // The rules follow values, not mutations.
    const std::string name = k.toUnqualString();
    if (k.is_aten() && name.size() > 1 && name.back() == '_' && name.rfind("__", 0) != 0 &&
        n->inputs().size() > 0 && lowerer_.at(id(n->input(0))).kind != Sym::Kind::kConst) {
      for (const torch::jit::Use& use : n->input(0)->uses()) {
        if (use.user != n && use.user->isAfter(n)) {
          Lowerer::cannot_lower(op, "an in-place op whose input is used again afterwards (the exporter follows values, not "
                            "mutations); use the out-of-place op");
        }
      }
    }
    op.inputs = std::move(inputs);
    for (const Value* v : n->outputs()) {
      op.outputs.push_back(lowerer_.fresh());
      bind(v, op.outputs.back());
    }
    if (k == c10::prim::ListUnpack || k == c10::prim::TupleUnpack) {  // no schema, so no Operation
      op.run = [](torch::jit::Stack& stack) {
        const c10::IValue aggregate = stack.back();
        stack.pop_back();
        const auto elements = aggregate.isTuple() ? aggregate.toTupleRef().elements().vec()
                                                  : aggregate.toListRef().vec();
        for (const auto& e : elements) stack.push_back(e);
      };
    } else {
      op.run = [operation = n->getOperation()](torch::jit::Stack& stack) mutable { operation(stack); };
    }
    lowerer_.apply(op);
  }

  Lowerer& lowerer_;
  std::unordered_map<const Value*, int> ids_;
};

}  // namespace

LoweredModel lower(const torch::jit::Module& module, const std::vector<int64_t>& input_shape,
                   const ExportOptions& options, const at::Tensor& sample) {
  at::NoGradGuard no_grad;
  const torch::jit::Method forward = module.get_method("forward");
  std::shared_ptr<torch::jit::Graph> g = forward.graph()->copy();
  torch::jit::Inline(*g);
  TORCH_CHECK_VALUE(g->inputs().size() == 2,
                    fmt::format("mcuq.export: expected forward(self, input) with one input, but it takes {}",
                                g->inputs().size() - 1));
  TORCH_CHECK_VALUE(g->outputs().size() == 1, "mcuq.export: expected forward to return one tensor");
  if (!g->outputs()[0]->type()->isSubtypeOf(*c10::TensorType::get())) {
    TORCH_CHECK_VALUE(false, fmt::format("mcuq.export: expected the model to return one tensor, but it returns {}",
                                         g->outputs()[0]->type()->repr_str()));
  }
  Lowerer lowerer(options, input_shape, sample);
  TorchScriptFrontEnd front_end(lowerer);
  front_end.bind(g->inputs()[0], lowerer.constant(c10::IValue(module._ivalue())));
  front_end.bind(g->inputs()[1], lowerer.input());
  front_end.block(g->block());
  return lowerer.finish(front_end.id(g->outputs()[0]));
}

}  // namespace mcuq::exporter
