"""torchao PT2E: a ``Quantizer`` that places mcuq's observers and
fake-quantizers where ``mcuq.prepare`` puts them, and ``freeze``, from the
prepared graph to a model ``mcuq.export`` lowers to C.

    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    graph = torch.export.export(model.eval(), (example,)).module()
    graph = mcuq.pt2e.fold_batch_norm(graph)       # mcuq's BatchNorm folding (see below)
    prepared = prepare_pt2e(graph, mcuq.pt2e.Quantizer(mcuq.presets.int8()))
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    exported = mcuq.export(mcuq.pt2e.freeze(prepared), input_shape=(1, 1, 28, 28))

QAT: export the model in training mode, ``prepare_qat_pt2e`` with
``Quantizer(preset, qat=True)``, train, ``freeze``.

Where quantizers go (as ``mcuq.prepare``): on the model input; after every
convolution / linear layer, after the BatchNorm and ReLU that follow it
(fused); after residual adds and concatenations (and a ReLU that follows);
after other non-linear activations. Pooling, flatten, reshape, mean, dropout
and the like keep their input's qparams: nothing is inserted there. Weights
get the preset's weight fake-quantizer, per output channel; biases are not
annotated (the exporter quantizes them to int32 with ``s_in * s_w``).

BatchNorm: ``prepare_pt2e`` folds it into the convolution with PyTorch's
arithmetic (``gamma * rsqrt(var + eps)``), which differs from mcuq's
(``gamma / sqrt(var + eps)``) in the last bit of some weights, and so in
some weight scales. ``fold_batch_norm`` folds it first with mcuq's
arithmetic (``ConvBn2d``'s): then the C is the same as ``mcuq.prepare``'s.
QAT keeps the BatchNorm (torchao rewrites Conv+BN into the same
folded-weight training step as ``mcuq.ConvBn2d``); ``freeze`` folds it with
the running statistics, as ``mcuq.freeze`` does.

``freeze`` rebuilds the module structure ``mcuq.freeze(mcuq.prepare(model))``
has, from the graph's ``nn_module_stack``: the same module paths (the C's
layer names), the same mcuq module classes (``WeightQuantizedConv2d`` for a
folded Conv+BN(+ReLU), ``WeightQuantizedConv`` / ``WeightQuantizedLinear``
otherwise), leaf modules such as ``nn.ReLU`` or ``nn.MaxPool2d`` where the
model called one, and ``activation_quantizer_N`` in graph order.

Needs torch.export and torchao (``import mcuq`` does not import this module).
Importing it registers mcuq's observers and fake-quantizers as virtual
subclasses of torchao's ``ObserverBase`` / ``FakeQuantizeBase`` (torchao
recognizes its observer modules by those classes).
"""

import copy
import operator
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import fx, nn

from torchao.quantization.pt2e import FakeQuantizeBase as _AoFakeQuantizeBase
from torchao.quantization.pt2e import ObserverBase as _AoObserverBase
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec
from torchao.quantization.pt2e.quantizer import Quantizer as _AoQuantizer

from .conv_bn import ConvBn2d, WeightQuantizedConv2d
from .freeze import fixed_fake_quantize
from .lsq import LearnableFakeQuantize
from .observers import FakeQuantize, HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver
from .prepare import WeightQuantized
from .presets import Preset, QuantSpec

__all__ = ["Quantizer", "fold_batch_norm", "freeze"]

for _observer in (MinMaxObserver, MovingAverageMinMaxObserver, HistogramObserver):
    _AoObserverBase.register(_observer)
for _fake_quant in (FakeQuantize, LearnableFakeQuantize):
    _AoFakeQuantizeBase.register(_fake_quant)

_QUANTIZERS = (FakeQuantize, LearnableFakeQuantize, MinMaxObserver, MovingAverageMinMaxObserver, HistogramObserver)

aten = torch.ops.aten

# Layers with quantized weights: the op, and the position of weight and bias.
_WEIGHTED = (aten.conv1d.default, aten.conv2d.default, aten.linear.default)
_BATCH_NORMS = (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default,
                aten._native_batch_norm_legit.default, aten._native_batch_norm_legit_functional.default)
_RELUS = (aten.relu.default, aten.relu_.default, aten.hardtanh.default, aten.hardtanh_.default)
# Non-linear activations: requantized after (lookup tables on the MCU).
_ACTIVATIONS = (aten.sigmoid.default, aten.tanh.default, aten.hardswish.default, aten.hardsigmoid.default,
                aten.silu.default, aten.gelu.default, aten.leaky_relu.default, aten.elu.default, aten.softmax.int,
                aten._softmax.default)
# Joins of two activations (residual adds, gates, concatenations): requantized after.
_JOINS = (aten.add.Tensor, aten.add_.Tensor, aten.sub.Tensor, aten.sub_.Tensor, aten.mul.Tensor, aten.mul_.Tensor,
          aten.cat.default)
# Ops that keep their input's qparams.
_PASS = (aten.max_pool1d.default, aten.max_pool2d.default, aten.avg_pool1d.default, aten.avg_pool2d.default,
         aten.adaptive_avg_pool1d.default, aten.adaptive_avg_pool2d.default, aten.flatten.using_ints,
         aten.view.default, aten.reshape.default, aten.dropout.default, aten.mean.dim, aten.permute.default,
         aten.transpose.int, aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default, aten.contiguous.default,
         aten.clone.default, aten.unflatten.int, aten.alias.default, aten.sym_size.int, operator.getitem,
         aten.amax.default, aten.max.dim, aten.adaptive_max_pool2d.default, aten.constant_pad_nd.default,
         aten.pad.default, aten.upsample_nearest1d.vec, aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default)


# --------------------------------------------------------------------------- quantizer


class _PresetModule:
    """A torchao ``observer_or_fake_quant_ctr`` that builds one of a preset's
    modules (``QuantSpec.observer()`` / ``fake_quant()``, per channel along
    ``axis`` for weights), so that PT2E gets exactly the modules
    ``mcuq.prepare`` inserts. torchao calls ``ctr.with_args(**fields)()``
    with the ``QuantizationSpec``'s fields, which restate what the module
    already knows: they are checked, not applied."""

    def __init__(self, spec: QuantSpec, fake_quant: bool, axis: Optional[int]) -> None:
        self.spec = spec
        self.fake_quant = fake_quant
        self.axis = axis
        # torchao reads the class name (it passes ch_axis only to "PerChannel" classes)
        self.__name__ = f"mcuq.{'fake_quant' if fake_quant else 'observer'}"

    def with_args(self, **fields: Any) -> Callable[[], nn.Module]:
        return lambda: self(**fields)

    def __call__(self, **fields: Any) -> nn.Module:
        quant_min, quant_max = self.spec.quant_range
        if fields.get("is_dynamic", False):
            raise ValueError("mcuq.pt2e.Quantizer: expected is_dynamic=False (mcuq's ranges are calibrated), "
                             "but got True")
        given = (fields.get("quant_min", quant_min), fields.get("quant_max", quant_max))
        if given != (quant_min, quant_max):
            raise ValueError(f"mcuq.pt2e.Quantizer: expected quant_min/quant_max {(quant_min, quant_max)} "
                             f"(the preset's), but got {given}")
        module = self.spec.fake_quant() if self.fake_quant else self.spec.observer()
        if self.axis is not None:
            module.axis = module.ch_axis = self.axis
        return module


def _dtype(spec: QuantSpec) -> torch.dtype:
    quant_min, quant_max = spec.quant_range
    if quant_min >= 0:
        return torch.uint8 if quant_max <= 255 else torch.uint16
    return torch.int8 if quant_min >= -128 and quant_max <= 127 else torch.int16


def _qscheme(spec: QuantSpec) -> torch.qscheme:
    if spec.per_channel:
        return torch.per_channel_symmetric if spec.symmetric else torch.per_channel_affine
    return torch.per_tensor_symmetric if spec.symmetric else torch.per_tensor_affine


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _is(node: Optional[fx.Node], targets: Tuple) -> bool:
    return node is not None and node.op == "call_function" and node.target in targets


def _node_name(node: fx.Node) -> str:
    path = _module_path(node)
    where = f" in '{path}'" if path else ""
    return f"'{node.name}' ({getattr(node.target, '__name__', node.target)}{where})"


def _batch_norm_output(bn: fx.Node) -> fx.Node:
    """The BatchNorm's result: the node itself, or item 0 of the tuple the
    ``_native_batch_norm_legit*`` ops return."""
    if bn.target is aten.batch_norm.default:
        return bn
    items = [user for user in bn.users if user.target is operator.getitem and user.args[1] == 0]
    return items[0] if len(items) == 1 else bn


def _block(node: fx.Node) -> List[fx.Node]:
    """The nodes that share one output quantizer, as mcuq.prepare fuses them:
    ``node``; for a conv2d, the BatchNorm that alone uses it; a ReLU that
    alone uses the result (not the model input's: it is quantized first).
    The quantizer goes after the last."""
    block = [node]
    if node.op == "placeholder":
        return block
    follower = _only_user(node)
    if node.target is aten.conv2d.default and _is(follower, _BATCH_NORMS):
        output = _batch_norm_output(follower)
        block += [follower] if output is follower else [follower, output]
        follower = _only_user(output)
    if _is(follower, _RELUS):
        block.append(follower)
    return block


class Quantizer(_AoQuantizer):
    """Annotates a ``torch.export``-ed model for torchao's ``prepare_pt2e``
    (``qat=False``: the preset's PTQ observers) or ``prepare_qat_pt2e``
    (``qat=True``: its fake-quantizers) where ``mcuq.prepare`` puts them
    (see the module docstring). Anything else is a ValueError naming the
    node, as in ``mcuq.prepare``."""

    def __init__(self, preset: Preset, qat: bool = False) -> None:
        super().__init__()
        if not isinstance(preset, Preset):
            raise TypeError(f"mcuq.pt2e.Quantizer: expected preset to be an mcuq.presets.Preset, "
                            f"but got {type(preset).__name__}")
        if preset.weight.codebook:
            raise ValueError(f"mcuq.pt2e.Quantizer: the preset {preset.name!r} has codebook (non-uniform) weights, "
                             "which torchao's PT2E flow cannot represent; use mcuq.prepare")
        self.preset = preset
        self.qat = bool(qat)

    def _activation_spec(self) -> QuantizationSpec:
        spec = self.preset.activation
        quant_min, quant_max = spec.quant_range
        return QuantizationSpec(dtype=_dtype(spec), observer_or_fake_quant_ctr=_PresetModule(spec, self.qat, None),
                                quant_min=quant_min, quant_max=quant_max, qscheme=_qscheme(spec))

    def _weight_spec(self) -> QuantizationSpec:
        # Weights always get the fake-quantizer (as mcuq.prepare, PTQ too).
        spec = self.preset.weight
        quant_min, quant_max = spec.quant_range
        axis = 0 if spec.per_channel else None
        return QuantizationSpec(dtype=_dtype(spec), observer_or_fake_quant_ctr=_PresetModule(spec, True, axis),
                                quant_min=quant_min, quant_max=quant_max, qscheme=_qscheme(spec), ch_axis=axis)

    def annotate(self, model: fx.GraphModule) -> fx.GraphModule:
        activation, weight = self._activation_spec(), self._weight_spec()

        def annotation(node: fx.Node) -> QuantizationAnnotation:
            if "quantization_annotation" not in node.meta:
                node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
            return node.meta["quantization_annotation"]

        fused = set()  # BatchNorm / ReLU nodes whose quantizer their block's first node placed
        data = set()  # nodes computed from the model's inputs (not parameter updates)

        def quantize_block(node: fx.Node) -> None:
            block = _block(node)
            fused.update(block[1:])
            annotation(block[-1]).output_qspec = activation

        for node in model.graph.nodes:
            if node.op == "placeholder":
                data.add(node)
                if node.users:
                    quantize_block(node)
                continue
            if node.op != "call_function" or not any(arg in data for arg in node.all_input_nodes):
                continue  # BatchNorm's num_batches_tracked update, shape arithmetic, ...
            data.add(node)
            if node in fused:
                continue
            if node.target in _WEIGHTED:
                weight_node = node.args[1]
                if not isinstance(weight_node, fx.Node) or weight_node.op != "get_attr":
                    raise ValueError(f"mcuq.pt2e.Quantizer: expected the weight of {_node_name(node)} to be a "
                                     f"parameter, but got {weight_node}")
                # torchao's QAT Conv+BN rewrite reads the map as (input, weight):
                # the input edge is listed, with nothing inserted on it.
                annotation(node).input_qspec_map[node.args[0]] = None
                annotation(node).input_qspec_map[weight_node] = weight
                quantize_block(node)
            elif node.target in _JOINS or node.target in _ACTIVATIONS:
                quantize_block(node)
            elif node.target in _RELUS or node.target in _PASS:
                pass
            elif node.target in _BATCH_NORMS:
                raise ValueError(f"mcuq.pt2e.Quantizer: expected BatchNorm {_node_name(node)} to follow a conv2d "
                                 f"that only it uses (mcuq folds it into that convolution), but it does not")
            else:
                raise ValueError(f"mcuq.pt2e.Quantizer: unsupported operation {_node_name(node)}")
        return model

    def validate(self, model: fx.GraphModule) -> None:
        pass


# --------------------------------------------------------------------------- BatchNorm


def _attr(model: nn.Module, target: str) -> Any:
    owner, _, name = target.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, name)


def _set_attr(model: nn.Module, target: str, value: Any) -> None:
    owner, _, name = target.rpartition(".")
    parent = model
    for part in owner.split(".") if owner else []:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    setattr(parent, name, value)


def _tensor(model: nn.Module, node: Any, what: str, where: fx.Node) -> Optional[torch.Tensor]:
    if node is None:
        return None
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        raise ValueError(f"mcuq.pt2e: expected the {what} of {_node_name(where)} to be a parameter or buffer, "
                         f"but got {node}")
    return _attr(model, str(node.target))


def _module_path(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _batch_norm_module(model: nn.Module, bn: fx.Node) -> nn.BatchNorm2d:
    """An ``nn.BatchNorm2d`` holding a batch_norm node's tensors and eps."""
    args = list(bn.args)
    eps = args[6] if bn.target is aten._native_batch_norm_legit_no_training.default else args[7]
    weight, bias = _tensor(model, args[1], "weight", bn), _tensor(model, args[2], "bias", bn)
    mean, var = _tensor(model, args[3], "running mean", bn), _tensor(model, args[4], "running variance", bn)
    module = nn.BatchNorm2d(mean.numel(), eps=float(eps), affine=weight is not None)
    with torch.no_grad():
        if weight is not None:
            module.weight.copy_(weight)
            module.bias.copy_(bias if bias is not None else torch.zeros_like(weight))
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
    return module


def _conv_module(node: fx.Node, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> nn.Module:
    """The ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` a weighted node computes."""
    if node.target is aten.linear.default:
        module: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        names = ("stride", "padding", "dilation", "groups")
        defaults = (1, 0, 1, 1)
        given = dict(zip(names, defaults))
        given.update(zip(names, node.args[3:]))
        given.update({k: v for k, v in node.kwargs.items() if k in names})
        if isinstance(given["padding"], str):
            raise ValueError(f"mcuq.pt2e.freeze: expected numeric padding in {_node_name(node)}, "
                             f"but got {given['padding']!r}")
        klass = nn.Conv2d if node.target is aten.conv2d.default else nn.Conv1d
        module = klass(weight.shape[1] * given["groups"], weight.shape[0], tuple(weight.shape[2:]),
                       stride=given["stride"], padding=given["padding"], dilation=given["dilation"],
                       groups=given["groups"], bias=bias is not None)
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module


def fold_batch_norm(model: fx.GraphModule) -> fx.GraphModule:
    """Folds each eval-mode BatchNorm that alone uses a conv2d's output into
    the convolution, with mcuq's arithmetic (``ConvBn2d.folded_weight_and_bias``:
    ``w * gamma / sqrt(var + eps)``, ``beta + (b - mean) * gamma / sqrt(var + eps)``),
    in place; returns ``model``. Call it on the ``torch.export``-ed graph
    before ``prepare_pt2e``, which would otherwise fold with PyTorch's
    arithmetic, whose weights differ in the last bit. The new weights are new
    parameters (the exported model's, possibly shared with the float model,
    are not written to); ``freeze`` knows the convolution had a BatchNorm."""
    if not isinstance(model, fx.GraphModule):
        raise TypeError(f"mcuq.pt2e.fold_batch_norm: expected model to be a torch.fx.GraphModule "
                        f"(torch.export.export(...).module()), but got {type(model).__name__}")
    graph = model.graph
    for bn in list(graph.nodes):
        if not _is(bn, (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default)):
            continue
        if bn.target is aten.batch_norm.default and bn.args[5]:
            continue  # training mode: QAT keeps it (torchao's prepare_qat_pt2e rewrites Conv+BN)
        conv = bn.args[0]
        if not _is(conv, (aten.conv2d.default,)) or _only_user(conv) is not bn:
            continue
        weight_node = conv.args[1]
        bias_node = conv.args[2] if len(conv.args) > 2 else None
        weight = _tensor(model, weight_node, "weight", conv)
        bias = _tensor(model, bias_node, "bias", conv)
        fused = ConvBn2d.from_modules(_conv_module(conv, weight, bias), _batch_norm_module(model, bn))
        with torch.no_grad():
            folded_weight, folded_bias = fused.folded_weight_and_bias()
        weight_target = f"{weight_node.target}_mcuq_folded"
        bias_target = f"{weight_node.target}_mcuq_folded_bias"
        _set_attr(model, weight_target, nn.Parameter(folded_weight.detach().clone(), weight.requires_grad))
        _set_attr(model, bias_target, nn.Parameter(folded_bias.detach().clone(), weight.requires_grad))
        with graph.inserting_before(conv):
            new_weight = graph.get_attr(weight_target)
            new_bias = graph.get_attr(bias_target)
        args = list(conv.args) + [None] * (3 - len(conv.args))
        args[1], args[2] = new_weight, new_bias
        conv.args = tuple(args)
        conv.meta["mcuq_batch_norm"] = _module_path(bn)
        output = _batch_norm_output(bn)
        output.replace_all_uses_with(conv)
        for user in list(bn.users):
            graph.erase_node(user)
        if bn in graph.nodes:
            graph.erase_node(bn)
    for node in list(graph.nodes):  # the BatchNorm tensors and unfolded weights, now unused
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    graph.lint()
    model.recompile()
    return model


# --------------------------------------------------------------------------- freeze


def _same_or_list(values: Any) -> Any:
    """``2`` for ``[2, 2]``: what a model writes (``nn.MaxPool2d(2)``)."""
    if isinstance(values, (list, tuple)) and values and all(v == values[0] for v in values):
        return values[0]
    return values


def _args(node: fx.Node, defaults: Tuple) -> List[Any]:
    return list(node.args[1:]) + list(defaults[len(node.args) - 1:])


def _leaf_module(type_name: str, node: fx.Node) -> Optional[nn.Module]:
    """The leaf module (of the model's class ``type_name``) that computed
    ``node``, rebuilt from the node's arguments; None where mcuq does not
    know the module."""
    target = node.target
    if type_name == "torch.nn.modules.activation.ReLU" and target in (aten.relu.default, aten.relu_.default):
        return nn.ReLU(inplace=target is aten.relu_.default)
    if type_name == "torch.nn.modules.activation.ReLU6" and target in (aten.hardtanh.default, aten.hardtanh_.default):
        return nn.ReLU6(inplace=target is aten.hardtanh_.default)
    if type_name == "torch.nn.modules.pooling.MaxPool2d" and target is aten.max_pool2d.default:
        kernel, stride, padding, dilation, ceil = _args(node, (None, [], 0, 1, False))
        return nn.MaxPool2d(_same_or_list(kernel), _same_or_list(stride) if stride else None,
                            _same_or_list(padding), _same_or_list(dilation), ceil_mode=ceil)
    if type_name == "torch.nn.modules.pooling.AvgPool2d" and target is aten.avg_pool2d.default:
        kernel, stride, padding, ceil, count_pad, divisor = _args(node, (None, [], 0, False, True, None))
        return nn.AvgPool2d(_same_or_list(kernel), _same_or_list(stride) if stride else None,
                            _same_or_list(padding), ceil, count_pad, divisor)
    if type_name == "torch.nn.modules.pooling.AdaptiveAvgPool2d" and target is aten.adaptive_avg_pool2d.default:
        return nn.AdaptiveAvgPool2d(_same_or_list(node.args[1]))
    if type_name == "torch.nn.modules.flatten.Flatten" and target is aten.flatten.using_ints:
        start, end = _args(node, (0, -1))
        return nn.Flatten(start, end)
    simple = {"Sigmoid": aten.sigmoid.default, "Tanh": aten.tanh.default, "Hardswish": aten.hardswish.default,
              "Hardsigmoid": aten.hardsigmoid.default, "SiLU": aten.silu.default}
    for name, op in simple.items():
        if type_name == f"torch.nn.modules.activation.{name}" and target is op:
            return getattr(nn, name)()
    return None


def _type_name(entry: Any) -> str:
    kind = entry[1]
    return kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"


class _Freezer:
    """Rebuilds a prepared PT2E graph as the module ``mcuq.freeze`` makes of
    ``mcuq.prepare``'s (see the module docstring)."""

    def __init__(self, prepared: fx.GraphModule) -> None:
        self.prepared = prepared
        self.modules = dict(prepared.named_modules())
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.layers: Dict[str, nn.Module] = {}  # module path -> module, in the order first called
        self.quantizers: Dict[str, nn.Module] = {}
        self.env: Dict[fx.Node, Any] = {}
        self.skip: set = set()  # nodes that a rebuilt layer computes
        self.data: set = set()  # nodes computed from the model's inputs

    def quantizer(self, node: Any) -> Optional[nn.Module]:
        if isinstance(node, fx.Node) and node.op == "call_module":
            module = self.modules[str(node.target)]
            if isinstance(module, _QUANTIZERS):
                return module
        return None

    def layer(self, path: str, module: nn.Module) -> str:
        if path in self.layers and self.layers[path] is not module:
            raise ValueError(f"mcuq.pt2e.freeze: two layers of the graph come from module '{path}' (a layer "
                             f"called twice, or nested); mcuq.prepare gives each layer its own module")
        self.layers[path] = module
        return path

    def weighted(self, node: fx.Node) -> fx.Node:
        """A conv/linear node and what mcuq fuses into it, as one call_module."""
        fq_node = node.args[1]
        fq = self.quantizer(fq_node)
        if fq is None:
            raise ValueError(f"mcuq.pt2e.freeze: expected the weight of {_node_name(node)} to pass through an "
                             f"mcuq fake-quantizer (prepare_pt2e with mcuq.pt2e.Quantizer), but got {fq_node}")
        weight_node = fq_node.args[0]
        bias_node = node.args[2] if len(node.args) > 2 else None
        bn = None
        end = node
        if _is(weight_node, (aten.mul.Tensor,)):
            # torchao's QAT Conv+BN: conv(x, fq(w * s), zeros_like(b)) / s (+ b) -> batch_norm
            weight_node = weight_node.args[0]
            if _is(bias_node, (aten.zeros_like.default,)):
                bias_node = bias_node.args[0]
            while not _is(end, _BATCH_NORMS):
                follower = _only_user(end)
                if not _is(follower, (aten.div.Tensor, aten.add.Tensor) + _BATCH_NORMS):
                    raise ValueError(f"mcuq.pt2e.freeze: expected {_node_name(node)} to be torchao's QAT "
                                     f"Conv+BatchNorm pattern, but it is followed by {follower}")
                self.skip.add(follower)
                end = follower
            bn = end
            end = _batch_norm_output(bn)
            self.skip.add(end)
        weight = _tensor(self.prepared, weight_node, "weight", node)
        bias = _tensor(self.prepared, bias_node, "bias", node)
        path = _module_path(node)
        if not path:
            raise ValueError(f"mcuq.pt2e.freeze: expected {_node_name(node)} to come from an nn.Conv1d/Conv2d/"
                             f"Linear module (its path names the layer), but the model called it as a function")
        relu = _only_user(end)
        fuse_relu = (bn is not None or "mcuq_batch_norm" in node.meta) and _is(relu, (aten.relu.default,
                                                                                      aten.relu_.default))
        if fuse_relu:
            self.skip.add(relu)
            end = relu
        conv = _conv_module(node, weight, bias)
        name = f"'{path}' weight_fake_quant"
        if bn is not None:  # QAT: fold the BatchNorm (running statistics) as ConvBn2d.to_frozen does
            fused = ConvBn2d.from_modules(conv, _batch_norm_module(self.prepared, bn), relu=fuse_relu,
                                          weight_fake_quant=copy.deepcopy(fq))
            module = fused.to_frozen()
        elif "mcuq_batch_norm" in node.meta:  # PTQ, folded by fold_batch_norm
            conv_with_bias = _conv_module(node, weight, bias if bias is not None else torch.zeros(weight.shape[0]))
            module = WeightQuantizedConv2d(conv_with_bias, fixed_fake_quantize(fq, name), fuse_relu).eval()
        else:
            module = WeightQuantized.wrap(conv, fixed_fake_quantize(fq, name)).eval()
        new = self.graph.call_module(self.layer(path, module), (self.env[node.args[0]],))
        self.env[end] = new
        return end

    def value(self, node: fx.Node) -> Any:
        """A node's value in the new graph; constants (parameters, shapes)
        that generic operations use are copied on first use."""
        if node in self.env:
            return self.env[node]
        if node.op == "get_attr":
            target = f"_constant_{node.name}"
            _set_attr(self.root, target, copy.deepcopy(_attr(self.prepared, str(node.target))))
            self.env[node] = self.graph.get_attr(target)
            return self.env[node]
        if node.op == "call_function" and node not in self.data:
            self.env[node] = self.graph.call_function(node.target, *self.mapped(node))
            return self.env[node]
        raise ValueError(f"mcuq.pt2e.freeze: {_node_name(node)} is part of a fused layer but is used outside it")

    def mapped(self, node: fx.Node) -> Tuple[Tuple, Dict]:
        args = fx.node.map_arg(node.args, self.value)
        kwargs = fx.node.map_arg(node.kwargs, self.value)
        return args, kwargs

    def run(self) -> fx.GraphModule:
        for node in self.prepared.graph.nodes:
            if node.op == "placeholder":
                self.data.add(node)
                self.env[node] = self.graph.placeholder(node.name)
                continue
            if node.op == "output":
                self.output(node)
                continue
            if not any(arg in self.data for arg in node.all_input_nodes):
                continue  # weights, BatchNorm statistics and their updates
            self.data.add(node)
            if node in self.skip:
                continue
            if node.op == "call_module":
                module = self.modules[str(node.target)]
                if isinstance(module, _QUANTIZERS):
                    name = f"activation_quantizer_{len(self.quantizers)}"  # mcuq.prepare's names
                    self.quantizers[name] = fixed_fake_quantize(module, str(node.target))
                    self.env[node] = self.graph.call_module(name, (self.env[node.args[0]],))
                elif node.users:
                    raise ValueError(f"mcuq.pt2e.freeze: unexpected module {_node_name(node)} "
                                     f"({type(module).__name__}) in the prepared graph")
                continue  # torch.export's input guard (_guards_fn): nothing to compute
            if node.op != "call_function":
                raise ValueError(f"mcuq.pt2e.freeze: unsupported node {_node_name(node)} ({node.op})")
            if node.target in _WEIGHTED:
                self.weighted(node)
                continue
            stack = node.meta.get("nn_module_stack") or {}
            entry = list(stack.values())[-1] if stack else None
            leaf = _leaf_module(_type_name(entry), node) if entry is not None and entry[0] else None
            if leaf is not None:
                path = entry[0]
                module = self.layers.get(path, leaf)  # a module called twice (a shared pool) stays one
                self.layers[path] = module
                self.env[node] = self.graph.call_module(path, (self.env[node.args[0]],))
            else:
                args, kwargs = self.mapped(node)
                self.env[node] = self.graph.call_function(node.target, args, kwargs)
        for path, module in list(self.layers.items()) + list(self.quantizers.items()):
            _set_attr(self.root, path, module)
        frozen = fx.GraphModule(self.root, self.graph)
        # Layers, then quantizers (as mcuq.prepare adds them), rather than graph order.
        order = {name: i for i, name in enumerate(self.root._modules)}
        frozen._modules = dict(sorted(frozen._modules.items(), key=lambda item: order.get(item[0], len(order))))
        return frozen.eval()

    def output(self, node: fx.Node) -> None:
        flat = fx.node.map_arg(node.args[0], self.value)
        spec = getattr(getattr(self.prepared.graph, "_codegen", None), "pytree_info", None)
        if spec is not None and spec.out_spec is not None:
            from torch.utils import _pytree

            flat = _pytree.tree_unflatten(list(flat), spec.out_spec)
        self.graph.output(flat)


def freeze(prepared: fx.GraphModule) -> fx.GraphModule:
    """A frozen model for ``mcuq.export`` (and ``torch.export``) from a graph
    that torchao's ``prepare_pt2e`` / ``prepare_qat_pt2e`` prepared with
    ``Quantizer`` and that has seen calibration data or training: each
    observer or fake-quantizer becomes a ``FixedFakeQuantize`` with the
    qparams it settled on, BatchNorm is folded for good, and the module
    structure is ``mcuq.freeze(mcuq.prepare(model))``'s (see the module
    docstring). ``prepared`` is not changed."""
    if not isinstance(prepared, fx.GraphModule):
        raise TypeError(f"mcuq.pt2e.freeze: expected prepared to be a torch.fx.GraphModule (prepare_pt2e's "
                        f"result), but got {type(prepared).__name__}")
    return _Freezer(prepared).run()
