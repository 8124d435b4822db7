"""Freezing a calibrated or trained model: every mcuq observer and
fake-quantizer becomes a fixed fake-quantizer with the qparams it settled on
(a codebook weight quantizer: a fixed codebook, ``FixedLevelsFakeQuantize``),
so the model stops observing and its TorchScript graph calls
``mcuq::fake_quantize`` with constant qparams (after ``torch.jit.freeze``),
ready for the exporter."""

import copy
from typing import Tuple

import torch
from torch import Tensor, nn

from .codebook import CodebookFakeQuantize, fixed_levels
from .lsq import LearnableFakeQuantize
from .observers import FakeQuantize, HistogramObserver, _MinMaxObserverBase


class FixedFakeQuantize(nn.Module):
    """``mcuq.fake_quantize`` with fixed qparams (buffers). Keeps torch.ao's
    fake-quantizer interface where it makes sense (``calculate_qparams``)."""

    scale: Tensor
    zero_point: Tensor

    def __init__(self, scale: Tensor, zero_point: Tensor, quant_min: int, quant_max: int,
                 axis: int = 0, group_size: int = 1) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().float())
        self.register_buffer("zero_point", zero_point.detach().clone().int())
        self.quant_min = int(quant_min)
        self.quant_max = int(quant_max)
        self.axis = int(axis)
        self.group_size = int(group_size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mcuq.fake_quantize(
            x, self.scale, self.zero_point, self.quant_min, self.quant_max, self.axis, self.group_size
        )

    @torch.jit.export
    def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
        return self.scale, self.zero_point

    def extra_repr(self) -> str:
        return (f"quant_min={self.quant_min}, quant_max={self.quant_max}, axis={self.axis}, "
                f"group_size={self.group_size}, scale={self.scale}, zero_point={self.zero_point}")


def fixed_fake_quantize(module: nn.Module, name: str) -> nn.Module:
    """The FixedFakeQuantize with the qparams an observer or fake-quantizer
    settled on (a codebook quantizer: the FixedLevelsFakeQuantize of its codebook)."""
    if isinstance(module, CodebookFakeQuantize):
        return fixed_levels(module, name)
    if isinstance(module, FakeQuantize) and not bool((module.min_val <= module.max_val).all()):
        raise ValueError(f"mcuq.freeze: {name} ({type(module).__name__}) saw no data; run data through the model first")
    scale, zero_point = module.calculate_qparams()  # raises, naming the observer, if it saw nothing
    return FixedFakeQuantize(scale, zero_point, module.quant_min, module.quant_max, module.axis, module.group_size)


def freeze(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` in eval mode: each mcuq observer or
    fake-quantizer replaced by a ``FixedFakeQuantize`` with its current
    qparams (observers: their ``calculate_qparams()``). Modules that provide
    ``to_frozen()`` (QAT Conv+BN) are replaced by what it returns, with BN
    folded for good. The original model is not changed."""
    frozen = copy.deepcopy(model)
    _freeze_children(frozen, prefix="")
    return frozen.eval()


_QUANTIZERS = (FakeQuantize, LearnableFakeQuantize, _MinMaxObserverBase, HistogramObserver, CodebookFakeQuantize)


def _freeze_children(module: nn.Module, prefix: str) -> None:
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        if isinstance(child, _QUANTIZERS):
            setattr(module, name, fixed_fake_quantize(child, path))
        elif hasattr(child, "to_frozen"):
            setattr(module, name, child.to_frozen())
        else:
            _freeze_children(child, path + ".")
            setattr(module, name, _without_observer_hook(child))


def _without_observer_hook(module: nn.Module) -> nn.Module:
    """torch.ao's eager prepare quantizes a module's output through a forward
    hook, which TorchScript cannot compile; the same step as a module:
    ``Sequential(module, its output fake-quantizer)``."""
    hooks = [key for key, hook in module._forward_hooks.items()
             if getattr(hook, "__name__", "") == "_observer_forward_hook"]
    if not hooks or not isinstance(getattr(module, "activation_post_process", None), FixedFakeQuantize):
        return module
    for key in hooks:
        del module._forward_hooks[key]
    output_quantizer = module.activation_post_process
    del module.activation_post_process
    return nn.Sequential(module, output_quantizer)
