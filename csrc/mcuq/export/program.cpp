// Front end: an op program -> the lowering rules' ops (lower.h).
//
// mcuq.export (Python, _export_program.py) writes what a torch.export
// ExportedProgram computes as a plain op list (torch.save of lists, tuples
// and tensors), because only Python reads .pt2 files:
//
//   {"format": "mcuq.program/1", "values": N, "input": id, "output": id,
//    "constants": [(id, path, value)],      # parameters, buffers, constants
//    "ops": [(op, overload, args, kwargs, outputs, scope, name, source)]}
//
// where an argument is ("value", id), ("const", literal) or ("list", [argument]).
// Here each op gets its schema from the dispatcher: arguments are matched by
// position, then name, then default, converted to the schema's types, and the
// op runs through the dispatcher.
#include "mcuq/export/lower.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <fmt/format.h>

namespace mcuq::exporter {
namespace {

constexpr const char* kFormat = "mcuq.program/1";

c10::IValue field(const c10::impl::GenericDict& dict, const char* key) {
  auto it = dict.find(c10::IValue(std::string(key)));
  TORCH_CHECK_VALUE(it != dict.end(), fmt::format("mcuq.export: the op program has no '{}' (written by another "
                                                  "mcuq version?)", key));
  return it->value();
}

class ProgramFrontEnd {
 public:
  ProgramFrontEnd(Lowerer& lowerer, int64_t values) : lowerer_(lowerer), ids_(values, -1) {}

  void bind(int64_t program_id, int value) { ids_.at(program_id) = value; }
  int id(int64_t program_id) const {
    TORCH_CHECK(program_id >= 0 && program_id < static_cast<int64_t>(ids_.size()) && ids_[program_id] >= 0,
                "mcuq.export: internal error: op program value ", program_id, " used before definition");
    return ids_[program_id];
  }

  void op(const c10::ivalue::Tuple& entry) {
    // A vector: GCC misreads the tuple's small inline storage (-Warray-bounds).
    const std::vector<c10::IValue> e = entry.elements().vec();
    TORCH_CHECK(e.size() == 8, "mcuq.export: internal error: malformed op program entry");
    Op op;
    const std::string& qualified = e[0].toStringRef();
    const std::string& overload = e[1].toStringRef();
    op.kind = c10::Symbol::fromQualString(qualified);
    op.scope = e[5].toStringRef();
    op.name = e[6].toStringRef();
    op.source = e[7].toStringRef();
    const auto handle = c10::Dispatcher::singleton().findSchema({qualified, overload});
    if (!handle) {
      Lowerer::cannot_lower(op, fmt::format("the op {}{}{} is not registered (import the library that defines it before "
                                    "exporting)",
                                    qualified, overload.empty() ? "" : ".", overload));
    }
    const c10::FunctionSchema& schema = handle->schema();
    const c10::List<c10::IValue> args = e[2].toList();
    const c10::impl::GenericDict kwargs = e[3].toGenericDict();
    const auto& arguments = schema.arguments();
    if (args.size() > arguments.size()) {
      Lowerer::cannot_lower(op, fmt::format("{} arguments for the schema {}", args.size(), c10::toString(schema)));
    }
    for (size_t i = 0; i < arguments.size(); ++i) {
      const c10::Argument& a = arguments[i];
      auto kw = kwargs.find(c10::IValue(a.name()));
      if (i < args.size()) {
        op.inputs.push_back(argument(op, a, args.get(i)));
      } else if (kw != kwargs.end()) {
        op.inputs.push_back(argument(op, a, kw->value()));
      } else if (a.default_value()) {
        op.inputs.push_back(lowerer_.constant(*a.default_value()));
      } else {
        Lowerer::cannot_lower(op, fmt::format("argument '{}' of {} is missing", a.name(), c10::toString(schema)));
      }
    }
    const c10::List<c10::IValue> outputs = e[4].toList();
    // Over vec() here and below: a c10::List iterates through proxies, and
    // a reference bound to the IValue one converts to is, to GCC 13, dangling.
    for (const c10::IValue& out : outputs.vec()) {
      op.outputs.push_back(lowerer_.fresh());
      bind(out.toInt(), op.outputs.back());
    }
    op.run = [handle = *handle](torch::jit::Stack& stack) { handle.callBoxed(&stack); };
    lowerer_.apply(op);
  }

 private:
  // ("value", id), ("const", literal) or ("list", [argument]) -> a value id.
  int argument(const Op& op, const c10::Argument& a, const c10::IValue& encoded) {
    const auto& pair = encoded.toTupleRef().elements();
    const std::string& tag = pair[0].toStringRef();
    if (tag == "value") return id(pair[1].toInt());
    c10::TypePtr type = a.type();
    if (type->kind() == c10::TypeKind::OptionalType) type = type->expectRef<c10::OptionalType>().getElementType();
    if (tag == "const") return lowerer_.constant(convert(op, a.name(), pair[1], a.type()));
    TORCH_CHECK(tag == "list", "mcuq.export: internal error: argument tag ", tag);
    if (type->kind() != c10::TypeKind::ListType) {
      Lowerer::cannot_lower(op, fmt::format("argument '{}' is a list, but the schema expects {}", a.name(), a.type()->repr_str()));
    }
    const c10::TypePtr element = list_element(type);
    std::vector<int> elements;
    for (const c10::IValue& item : pair[1].toList().vec()) {
      const auto& inner = item.toTupleRef().elements();
      elements.push_back(inner[0].toStringRef() == "value" ? id(inner[1].toInt())
                                                           : lowerer_.constant(convert(op, a.name(), inner[1], element)));
    }
    return lowerer_.list(elements, element);
  }

  // Lists of SymInt run as lists of int, as TorchScript passes them.
  static c10::TypePtr list_element(const c10::TypePtr& list) {
    c10::TypePtr element = list->expectRef<c10::ListType>().getElementType();
    return element->kind() == c10::TypeKind::SymIntType ? c10::IntType::get() : element;
  }

  // A literal (Python ints, floats, bools, strings, lists; dtypes as
  // ScalarType numbers) as the schema's type.
  c10::IValue convert(const Op& op, const std::string& name, const c10::IValue& v, const c10::TypePtr& type) {
    if (v.isNone()) return v;
    switch (type->kind()) {
      case c10::TypeKind::OptionalType:
        return convert(op, name, v, type->expectRef<c10::OptionalType>().getElementType());
      case c10::TypeKind::IntType:
      case c10::TypeKind::SymIntType:
      case c10::TypeKind::ScalarTypeType:
      case c10::TypeKind::LayoutType:
      case c10::TypeKind::MemoryFormatType:
        if (v.isInt()) return v;
        if (v.isBool()) return c10::IValue(static_cast<int64_t>(v.toBool()));
        break;
      case c10::TypeKind::FloatType:
        if (v.isDouble()) return v;
        if (v.isInt()) return c10::IValue(static_cast<double>(v.toInt()));
        break;
      case c10::TypeKind::NumberType:
        if (v.isInt() || v.isDouble() || v.isBool()) return v;
        break;
      case c10::TypeKind::BoolType:
        if (v.isBool()) return v;
        break;
      case c10::TypeKind::StringType:
        if (v.isString()) return v;
        break;
      case c10::TypeKind::DeviceObjType:
        if (v.isString()) return c10::IValue(c10::Device(v.toStringRef()));
        break;
      case c10::TypeKind::TensorType:
        if (v.isTensor()) return v;
        break;
      case c10::TypeKind::ListType: {
        if (!v.isList()) break;
        const c10::TypePtr element = list_element(type);
        c10::impl::GenericList list(element);
        for (const c10::IValue& item : v.toList().vec()) list.push_back(convert(op, name, item, element));
        return c10::IValue(list);
      }
      default:
        return v;
    }
    Lowerer::cannot_lower(op, fmt::format("argument '{}' expects {}, but got {}", name, type->repr_str(), v.tagKind()));
  }

  Lowerer& lowerer_;
  std::vector<int> ids_;  // program value id -> the Lowerer's
};

}  // namespace

LoweredModel lower_program(const c10::IValue& program, const std::vector<int64_t>& input_shape,
                           const ExportOptions& options, const at::Tensor& sample) {
  at::NoGradGuard no_grad;
  TORCH_CHECK_VALUE(program.isGenericDict(), "mcuq.export: expected an op program (a dict), but got ",
                    program.tagKind());
  const c10::impl::GenericDict dict = program.toGenericDict();
  const std::string format = field(dict, "format").toStringRef();
  TORCH_CHECK_VALUE(format == kFormat,
                    fmt::format("mcuq.export: expected an op program of format '{}', but got '{}'", kFormat, format));
  Lowerer lowerer(options, input_shape, sample);
  ProgramFrontEnd front_end(lowerer, field(dict, "values").toInt());
  front_end.bind(field(dict, "input").toInt(), lowerer.input());
  for (const c10::IValue& c : field(dict, "constants").toList().vec()) {
    const auto& e = c.toTupleRef().elements();
    front_end.bind(e[0].toInt(), lowerer.constant(e[2], e[1].toStringRef()));
  }
  for (const c10::IValue& op : field(dict, "ops").toList().vec()) front_end.op(op.toTupleRef());
  return lowerer.finish(front_end.id(field(dict, "output").toInt()));
}

}  // namespace mcuq::exporter
