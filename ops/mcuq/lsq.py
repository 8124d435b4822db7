"""Learned step size quantization (LSQ, Esser et al. 2020; LSQ+ for the
zero point): the scale (and, for affine ranges, a float zero point) are
parameters trained with the rest of the model, using the LSQ gradients of
``mcuq::fake_quantize``."""

import math
from typing import Tuple

import torch
from torch import Tensor, nn
from ._ao import FakeQuantizeBase

from .observers import _RangeMixin, _RangeState

_SCALE_FLOOR = 2.0**-23  # choose_qparams' floor


class LearnableFakeQuantize(_RangeMixin, FakeQuantizeBase):
    """Fake quantization whose scale (and affine zero point) are learned.

    The first batch initializes them from its range (as ``choose_qparams``
    would); after that only gradients move them. ``grad_scaling`` applies
    LSQ's gradient factor ``1 / sqrt(elements per range * quant_max)``.
    Per-channel parameters are created on the first batch: run one forward
    pass (``mcuq.prepare`` does, for weights) before building the optimizer.
    """

    def __init__(self, quant_min=None, quant_max=None, *, dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                 symmetric=None, axis=None, ch_axis=0, group_size=1, grad_scaling=True, **kwargs):
        super().__init__()
        device = _RangeState.check_extra(self, kwargs)
        _RangeState.init(self, dtype, qscheme, quant_min, quant_max, symmetric, False, axis, ch_axis, group_size)
        self.grad_scaling = bool(grad_scaling)
        self.scale = nn.Parameter(torch.ones(1))
        self.zero_point = nn.Parameter(torch.zeros(1), requires_grad=not self.symmetric)
        self.register_buffer("initialized", torch.zeros(1, dtype=torch.uint8))
        if device is not None:
            self.to(device)

    def forward(self, x: Tensor) -> Tensor:
        n = self._range_entries(x)
        if self.scale.numel() != n:
            self.scale = nn.Parameter(torch.ones(n, device=x.device))
            self.zero_point = nn.Parameter(torch.zeros(n, device=x.device), requires_grad=not self.symmetric)
            self.initialized.zero_()
        if not bool(self.initialized[0]):
            self._initialize(x.detach())
        if not bool(self.fake_quant_enabled[0]):
            return x
        # A step can push a learned scale below 0: it is used clamped to the
        # scale floor, with the gradient passed straight through the clamp.
        scale = self.scale + (self.scale.clamp_min(_SCALE_FLOOR) - self.scale).detach()
        if self.grad_scaling:
            g = 1.0 / math.sqrt(max(1, x.numel() // n) * self.quant_max)
            scale = scale * g + (scale - scale * g).detach()  # value unchanged, gradient scaled by g
        return torch.ops.mcuq.fake_quantize(x, scale, self.zero_point, self.quant_min, self.quant_max,
                                            self.axis, self.group_size)

    def _initialize(self, x: Tensor) -> None:
        axis = self.axis if self.per_channel else None
        lo, hi, _ = torch.ops.mcuq._finite_aminmax(x, axis, self.group_size)
        empty = lo > hi
        lo, hi = torch.where(empty, torch.zeros_like(lo), lo), torch.where(empty, torch.zeros_like(hi), hi)
        self.min_val, self.max_val = lo.clone(), hi.clone()
        scale, zero_point = torch.ops.mcuq.choose_qparams(lo, hi, self.quant_min, self.quant_max, self.symmetric, False)
        with torch.no_grad():
            self.scale.copy_(scale.view_as(self.scale))
            self.zero_point.copy_(zero_point.view_as(self.zero_point).float())
        self.initialized.fill_(1)

    @torch.jit.export
    def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
        """The learned qparams as the fixed ones: zero point rounded half to
        even and clamped, exactly as fake_quantize uses it."""
        if not bool(self.initialized[0]):
            raise ValueError("mcuq: " + self.observer_name + " saw no data; run data through it first")
        zero_point = torch.clamp(torch.round(self.zero_point.detach()), self.quant_min, self.quant_max)
        return self.scale.detach().clamp_min(_SCALE_FLOOR), zero_point.to(torch.int32)

    def extra_repr(self) -> str:
        return (f"quant_min={self.quant_min}, quant_max={self.quant_max}, symmetric={self.symmetric}, "
                f"axis={self.axis if self.per_channel else None}, group_size={self.group_size}, "
                f"grad_scaling={self.grad_scaling}, scale={self.scale.data}")
