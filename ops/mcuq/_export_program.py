"""The torch.export front end of ``mcuq.export``: an ``ExportedProgram`` ->
the op program that ``csrc/mcuq/export/program.cpp`` hands, op by op, to the
same lowering rules as a TorchScript model (format in program.cpp).

Only the graph's plumbing is resolved here (parameters and buffers become
named constants, ``getitem`` picks an output, assertions are dropped);
arguments stay as the graph gives them and C++ matches them to each op's
schema. What an op means for the integer graph is decided in C++ alone.
"""

import operator
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import fx

FORMAT = "mcuq.program/1"

# c10::ScalarType, Layout and MemoryFormat numbers: arguments that TorchScript
# passes as ints.
_ENUMS: Dict[Any, int] = {
    **{getattr(torch, name): number for number, name in enumerate(
        ["uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "complex32", "complex64",
         "complex128", "bool", "qint8", "quint8", "qint32", "bfloat16"])},
    torch.strided: 0,
    torch.contiguous_format: 0, torch.preserve_format: 1, torch.channels_last: 2, torch.channels_last_3d: 3,
}

# Ops that only check (shapes, ranges): nothing to compute.
_CHECKS = re.compile(r"_assert_|sym_constrain_range")


def _where(node: fx.Node) -> str:
    """"aten::conv2d, model.py:12": the op and the last frame of its stack trace."""
    text = node.target._schema.name if isinstance(node.target, torch._ops.OpOverload) else str(node.target)
    frames = re.findall(r'File "([^"]+)", line (\d+)', node.meta.get("stack_trace") or "")
    return f"{text}, {frames[-1][0]}:{frames[-1][1]}" if frames else text


def _scope(node: fx.Node) -> str:
    """The module path the op ran in ("features.0"), "" in the top module."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def model_name(program: "torch.export.ExportedProgram") -> str:
    """The exported module's class name (what the traced path names the model)."""
    for node in program.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            kind = kind if isinstance(kind, str) else kind.__qualname__
            # An fx.GraphModule (mcuq.prepare's) is exported inside a class
            # local to torch.export; TorchScript calls it GraphModule.
            if path == "":
                return "GraphModule" if "<locals>" in kind else kind.rsplit(".", 1)[-1]
    return "ExportedProgram"


class _Writer:
    def __init__(self, program: "torch.export.ExportedProgram") -> None:
        self.program = program
        self.ids: Dict[fx.Node, Any] = {}  # node -> value id, or a list of ids (ops with several outputs)
        self.count = 0
        self.constants: List[Tuple[int, str, Any]] = []
        self.ops: List[tuple] = []
        self.input: Optional[int] = None
        self.input_node: Optional[fx.Node] = None

    def fresh(self) -> int:
        self.count += 1
        return self.count - 1

    def fail(self, node: fx.Node, why: str) -> None:
        raise ValueError(f"mcuq.export: cannot lower {node.name} ({_where(node)}): {why}")

    def encode(self, node: fx.Node, a: Any) -> tuple:
        if isinstance(a, fx.Node):
            value = self.ids.get(a)
            if not isinstance(value, int):
                self.fail(node, f"its argument {a.name} is not a single value")
            return ("value", value)
        if isinstance(a, (list, tuple)):
            items = [self.encode(node, x) for x in a]
            if all(tag == "const" for tag, _ in items):
                return ("const", [x for _, x in items])
            return ("list", items)
        if isinstance(a, torch.device):
            return ("const", str(a))
        if isinstance(a, (torch.dtype, torch.layout, torch.memory_format)):
            if a not in _ENUMS:
                self.fail(node, f"unsupported argument {a}")
            return ("const", _ENUMS[a])
        if a is None or isinstance(a, (bool, int, float, str, torch.Tensor)):
            return ("const", a)
        self.fail(node, f"unsupported argument {a!r} ({type(a).__name__})")

    def placeholders(self) -> None:
        program = self.program
        specs = {spec.arg.name: spec for spec in program.graph_signature.input_specs}
        kinds = torch.export.graph_signature.InputKind
        for node in program.graph.nodes:
            if node.op != "placeholder":
                continue
            spec = specs[node.name]
            if spec.kind == kinds.USER_INPUT:
                if self.input is not None:
                    raise ValueError("mcuq.export: expected a program with one input, but it takes more "
                                     f"({self.input_node.name}, {node.name})")
                self.input, self.input_node = self.fresh(), node
                self.ids[node] = self.input
            elif spec.kind in (kinds.PARAMETER, kinds.BUFFER, kinds.CONSTANT_TENSOR):
                value = program.state_dict.get(spec.target, program.constants.get(spec.target))
                if value is None:
                    raise ValueError(f"mcuq.export: the program has no value for {spec.target}")
                self.ids[node] = self.fresh()
                self.constants.append((self.ids[node], spec.target, value.detach()))
            else:
                raise ValueError(f"mcuq.export: unsupported program input {node.name} ({spec.kind.name})")
        if self.input is None:
            raise ValueError("mcuq.export: expected a program with one input, but it takes none")

    def node(self, node: fx.Node) -> None:
        if node.op == "get_attr":
            value = getattr(self.program.graph_module, node.target)
            if not isinstance(value, torch.Tensor):
                self.fail(node, "only tensor attributes can be exported")
            self.ids[node] = self.fresh()
            self.constants.append((self.ids[node], node.target, value.detach()))
            return
        if node.op == "call_module" and node.target == "_guards_fn":  # input checks
            return
        if node.op != "call_function":
            self.fail(node, f"unsupported {node.op} node")
        if node.target is operator.getitem:
            source, index = node.args
            outputs = self.ids.get(source)
            if not isinstance(outputs, list):
                self.fail(node, "getitem of a value that is not a tuple of outputs")
            self.ids[node] = outputs[index]
            return
        if not isinstance(node.target, torch._ops.OpOverload):
            self.fail(node, f"unsupported call of {node.target} (expected an ATen or mcuq op)")
        schema = node.target._schema
        if not schema.returns and _CHECKS.search(schema.name):
            return
        if node.target is torch.ops.aten.detach_.default:  # of a tensor made in forward: the tensor itself
            self.ids[node] = self.ids[node.args[0]]
            return
        if schema.is_mutable:
            self.fail(node, "it updates its state when it runs; export a frozen model in eval mode (mcuq.freeze, "
                            "then model.eval())")
        args = [self.encode(node, a) for a in node.args]
        kwargs = {k: self.encode(node, a) for k, a in node.kwargs.items()}
        outputs = [self.fresh() for _ in schema.returns]
        self.ids[node] = outputs[0] if len(outputs) == 1 else outputs
        self.ops.append((schema.name, schema.overload_name, args, kwargs, outputs, _scope(node), node.name,
                         _where(node)))

    def check_outputs(self) -> None:
        kinds = torch.export.graph_signature.OutputKind
        specs = self.program.graph_signature.output_specs
        mutated = [spec.target for spec in specs if spec.kind != kinds.USER_OUTPUT]
        if mutated:
            raise ValueError(f"mcuq.export: the program updates {', '.join(map(str, mutated))} when it runs; export "
                             "a frozen model in eval mode (mcuq.freeze, then model.eval())")

    def output(self) -> int:
        out = next(n for n in self.program.graph.nodes if n.op == "output")
        results = out.args[0]
        if len(results) != 1 or not isinstance(self.ids.get(results[0]), int):
            raise ValueError(f"mcuq.export: expected the model to return one tensor, but it returns {len(results)} "
                             "values")
        return self.ids[results[0]]


def check_input(program: "torch.export.ExportedProgram", input_shape: Sequence[int], batch: int) -> None:
    """The program's input must take ``input_shape`` (and the sample's batch)."""
    node = next(n for n in program.graph.nodes if n.op == "placeholder"
                and n.name in {s.arg.name for s in program.graph_signature.input_specs
                               if s.kind == torch.export.graph_signature.InputKind.USER_INPUT})
    value = node.meta.get("val")
    if value is None:
        return
    shape = list(value.shape)
    expected = list(input_shape)
    same = len(shape) == len(expected) and all(
        not isinstance(d, int) or d == e for d, e in zip(shape[1:], expected[1:]))
    if not same:
        raise ValueError(f"mcuq.export: the program was exported for inputs of shape {shape}, but got input_shape "
                         f"{expected}")
    if isinstance(shape[0], int) and shape[0] != batch:
        raise ValueError(f"mcuq.export: the program was exported with a fixed batch of {shape[0]}, but the sample "
                         f"has {batch}; pass a sample of that batch or export with a dynamic batch "
                         "(torch.export.Dim)")


def write(program: "torch.export.ExportedProgram") -> Dict[str, Any]:
    """The op program of ``program`` (a dict for ``torch.save``)."""
    writer = _Writer(program)
    writer.check_outputs()
    writer.placeholders()
    for node in program.graph.nodes:
        if node.op not in ("placeholder", "output"):
            writer.node(node)
    output = writer.output()
    return {"format": FORMAT, "values": writer.count, "input": writer.input, "output": output,
            "constants": writer.constants, "ops": writer.ops}
