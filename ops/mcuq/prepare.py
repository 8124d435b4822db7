"""``mcuq.prepare``: insert fake-quantizers (QAT) or observers (PTQ) into a
float model, with torch.fx.

Weights: Conv1d/Conv2d/Linear per output channel (axis 0), ConvTranspose2d
per output channel (axis 1). Conv2d → BatchNorm2d (→ ReLU) becomes one
``mcuq.ConvBn2d`` / ``ConvBnReLU2d`` (QAT; BatchNorm folded into the weight)
or, for PTQ, a convolution with the BatchNorm folded in; Linear →
BatchNorm1d (→ ReLU) likewise one ``mcuq.LinearBn1d`` / ``LinearBnReLU1d``,
Conv1d → BatchNorm1d one ``mcuq.ConvBn1d`` / ``ConvBnReLU1d``.

Activations get a quantizer on each model input, after every conv/linear
block (after its ReLU/ReLU6 when one follows), after residual adds,
subtractions, products (squeeze-and-excitation gates) and concatenations,
and after other non-linear activations (sigmoid, tanh, hardswish, ...).
Pooling, zero padding, nearest upsampling, flatten, reshape, dropout and the
like keep their input's qparams.
Anything else is an error naming the layer.
"""

import copy
import itertools
import operator
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from .conv_bn import ConvBn1d, ConvBn2d, LinearBn1d, WeightQuantizedConv2d
from .presets import Preset

# Layers whose weights are quantized, and the axis of their output channels.
_WEIGHTED = {nn.Conv1d: 0, nn.Conv2d: 0, nn.Linear: 0, nn.ConvTranspose2d: 1}
_RELUS_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh)  # clamps: fused into the layer before
_RELUS_FUNCTIONS = (F.relu, F.relu6, torch.relu, torch.nn.functional.hardtanh, torch.clamp)
_RELUS_METHODS = ("relu", "relu_", "clamp")
# Non-linear activations: requantized after (lookup tables on the MCU).
_ACTIVATION_MODULES = (nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.ELU,
                       nn.Softmax)
_ACTIVATION_FUNCTIONS = (torch.sigmoid, torch.tanh, F.hardswish, F.hardsigmoid, F.silu, F.gelu, F.leaky_relu,
                         F.elu, F.sigmoid, F.tanh, F.softmax, torch.softmax)
# Layers that keep their input's qparams.
_PASS_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout, nn.Identity, nn.Unflatten,
                 nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.Upsample, nn.UpsamplingNearest2d)
_PASS_FUNCTIONS = (torch.flatten, F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool2d,
                   F.adaptive_max_pool2d, torch.amax, torch.max, torch.mean, F.dropout, F.pad, F.interpolate,
                   torch.reshape, operator.getitem, getattr)
_PASS_METHODS = ("view", "reshape", "flatten", "size", "contiguous", "permute", "transpose", "squeeze",
                 "unsqueeze", "mean", "amax", "max", "dim")
# Two activations joined (residual adds, squeeze-and-excitation gates, concatenations): requantized after.
_JOIN_FUNCTIONS = (operator.add, torch.add, operator.sub, torch.sub, operator.mul, torch.mul, torch.cat)
_JOIN_METHODS = ("add", "add_", "sub", "sub_", "mul", "mul_")


class WeightQuantized(nn.Module):
    """A Conv1d/Conv2d/ConvTranspose2d/Linear whose weight passes through
    ``weight_fake_quant`` on every forward. ``WeightQuantized.wrap`` picks the
    subclass for the layer (one class per layer type, so that TorchScript can
    script each forward)."""

    def __init__(self, layer: nn.Module, weight_fake_quant: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.weight_fake_quant = weight_fake_quant

    @staticmethod
    def wrap(layer: nn.Module, weight_fake_quant: nn.Module) -> "WeightQuantized":
        if isinstance(layer, nn.Linear):
            return WeightQuantizedLinear(layer, weight_fake_quant)
        if isinstance(layer, nn.ConvTranspose2d):
            return WeightQuantizedConvTranspose2d(layer, weight_fake_quant)
        return WeightQuantizedConv(layer, weight_fake_quant)


class WeightQuantizedLinear(WeightQuantized):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_fake_quant(self.layer.weight), self.layer.bias)


class WeightQuantizedConv(WeightQuantized):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer._conv_forward(x, self.weight_fake_quant(self.layer.weight), self.layer.bias)


class WeightQuantizedConvTranspose2d(WeightQuantized):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_fake_quant(self.layer.weight)
        return F.conv_transpose2d(x, w, self.layer.bias, self.layer.stride, self.layer.padding,
                                  self.layer.output_padding, self.layer.groups, self.layer.dilation)


def _layer_name(node: fx.Node) -> str:
    return f"'{node.target}'" if node.op == "call_module" else f"'{node.name}' ({node.op} {getattr(node.target, '__name__', node.target)})"


def _is_relu(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _RELUS_MODULES)
    if node.op == "call_function":
        return node.target in _RELUS_FUNCTIONS
    return node.op == "call_method" and node.target in _RELUS_METHODS


def _is_plain_relu(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    """max(x, 0) and nothing more: what ConvBnReLU2d fuses (ReLU6 and hardtanh clamp above too)."""
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu)
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _is_identity(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    """nn.Identity or dropout: nothing at inference."""
    if node.op == "call_module":
        return isinstance(modules[node.target], (nn.Identity, nn.Dropout))
    return node.op == "call_function" and node.target is F.dropout


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _weight_axis(layer: nn.Module) -> int:
    axis = _WEIGHTED[type(layer)]
    if isinstance(layer, nn.ConvTranspose2d) and layer.groups != 1:
        raise ValueError("mcuq.prepare: grouped ConvTranspose2d is not supported (its output channels "
                         "are not one axis of the weight)")
    return axis


def prepare(model: nn.Module, preset: Preset, qat: bool = True, freeze_bn_step: Optional[int] = None) -> fx.GraphModule:
    """A prepared copy of ``model`` (see the module docstring). ``qat=True``
    inserts fake-quantizers (train it, then ``mcuq.freeze``); ``qat=False``
    inserts observers (``mcuq.calibrate``, then ``mcuq.freeze``)."""
    model = copy.deepcopy(model)
    if fx.Tracer().is_leaf_module(model, ""):
        # A torch.nn layer as the whole model (nn.Conv2d(...)): traced as a
        # root, it would be its functional call; as the one layer of a
        # Sequential it is a layer like any other (named "0").
        model = nn.Sequential(model)
    try:
        gm = fx.symbolic_trace(model)
    except Exception as error:  # fx raises many kinds; name the cause
        raise ValueError(f"mcuq.prepare: torch.fx cannot trace the model: {error}") from error
    modules = dict(gm.named_modules())
    graph = gm.graph
    # New modules join the model on its device (a GPU for QAT there).
    device = _single_device(model)

    def on_device(module: nn.Module) -> nn.Module:
        return module.to(device) if device is not None else module

    def activation() -> nn.Module:
        return on_device(preset.activation.fake_quant() if qat else preset.activation.observer())

    def weight_quantizer(axis: int) -> nn.Module:
        spec = preset.weight
        fq = spec.fake_quant()
        fq.axis = fq.ch_axis = axis if spec.per_channel else 0
        return on_device(fq)

    # 1. Conv2d -> BatchNorm2d, Conv1d and Linear -> BatchNorm1d (-> ReLU): fused.
    folds = {nn.Conv2d: (nn.BatchNorm2d, ConvBn2d), nn.Conv1d: (nn.BatchNorm1d, ConvBn1d),
             nn.Linear: (nn.BatchNorm1d, LinearBn1d)}
    for node in list(graph.nodes):
        if node.op != "call_module" or type(modules[node.target]) not in folds:
            continue
        bn_type, fused_type = folds[type(modules[node.target])]
        bn_node = _only_user(node)
        if bn_node is None or bn_node.op != "call_module" or not isinstance(modules[bn_node.target], bn_type):
            continue
        relu_node = _only_user(bn_node)
        relu = relu_node is not None and _is_plain_relu(relu_node, modules)
        conv, bn = modules[node.target], modules[bn_node.target]
        fused = on_device(fused_type.from_modules(conv, bn, relu=relu, weight_fake_quant=weight_quantizer(0),
                                                  freeze_bn_step=freeze_bn_step))
        with torch.no_grad():  # size and initialize the weight quantizer from the folded weight
            fused.weight_fake_quant(fused.folded_weight_and_bias()[0])
        if not qat:
            fused = fused.eval()
        _set_module(gm, node.target, fused)
        modules[node.target] = fused
        last = relu_node if relu else bn_node
        last.replace_all_uses_with(node)
        graph.erase_node(last)
        if relu:
            graph.erase_node(bn_node)

    # 2. Weight quantizers; 3. activation quantizers; 4. refusals.
    counter = 0

    def quantize_after(node: fx.Node, fuse_relu: bool = True) -> None:
        nonlocal counter
        target = node
        follower = _only_user(node)
        while follower is not None and _is_identity(follower, modules):  # nn.Identity, dropout: look past
            follower = _only_user(follower)
        if fuse_relu and follower is not None and _is_relu(follower, modules):
            target = follower  # the ReLU is fused into the block (a clamp on the MCU)
        name = f"activation_quantizer_{counter}"
        counter += 1
        gm.add_submodule(name, activation())
        with graph.inserting_after(target):
            quantized = graph.call_module(name, (target,))
        target.replace_all_uses_with(quantized)
        quantized.args = (target,)

    def clamp_after_quantizer(node: fx.Node) -> None:
        """A ReLU6 or hardtanh not fused into the layer before (its input
        already quantized: after the model input, an add, a lookup table):
        its bounds need not lie on the input's grid of levels, so the value
        is quantized again after it, as the integer graph must. max(x, 0)
        keeps every level exact and needs nothing."""
        fused = any(user.op == "call_module" and str(user.target).startswith("activation_quantizer_")
                    for user in node.users)
        if not fused and not _is_plain_relu(node, modules):
            quantize_after(node, fuse_relu=False)

    for node in list(graph.nodes):
        if node.op == "placeholder":
            # The input itself: a ReLU that takes it clamps quantized values
            # (the export needs the input quantized first).
            quantize_after(node, fuse_relu=False)
        elif node.op == "call_module":
            module = modules[node.target]
            if type(module) in _WEIGHTED:
                wrapped = WeightQuantized.wrap(module, weight_quantizer(_weight_axis(module)))
                with torch.no_grad():  # size and initialize the weight quantizer
                    wrapped.weight_fake_quant(module.weight)
                _set_module(gm, node.target, wrapped)
                quantize_after(node)
            elif isinstance(module, ConvBn2d):
                quantize_after(node)
            elif isinstance(module, _ACTIVATION_MODULES):
                quantize_after(node)
            elif isinstance(module, _RELUS_MODULES):
                clamp_after_quantizer(node)
            elif isinstance(module, _PASS_MODULES) or node.target.startswith("activation_quantizer_"):
                pass
            else:
                raise ValueError(f"mcuq.prepare: unsupported layer {_layer_name(node)} "
                                 f"({type(module).__name__})")
        elif node.op == "call_function":
            if node.target in _JOIN_FUNCTIONS or node.target in _ACTIVATION_FUNCTIONS:
                quantize_after(node)
            elif node.target in _RELUS_FUNCTIONS:
                clamp_after_quantizer(node)
            elif node.target in _PASS_FUNCTIONS:
                pass
            else:
                raise ValueError(f"mcuq.prepare: unsupported operation {_layer_name(node)}")
        elif node.op == "call_method":
            if node.target in _RELUS_METHODS:
                clamp_after_quantizer(node)
            elif node.target in _PASS_METHODS:
                pass
            elif node.target in ("sigmoid", "tanh", "softmax") or node.target in _JOIN_METHODS:
                quantize_after(node)
            else:
                raise ValueError(f"mcuq.prepare: unsupported method {_layer_name(node)}")
    graph.lint()
    gm.recompile()
    return gm.train(qat)


def _single_device(model: nn.Module) -> Optional[torch.device]:
    """The device of all the model's parameters and buffers, if they share
    one (None for a model on several devices, or one with no tensors)."""
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    return devices.pop() if len(devices) == 1 else None


def _set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, name, module)
