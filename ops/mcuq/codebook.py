"""Non-uniform weights (eq. 3) in the workflow: a weight fake-quantizer whose
levels are a codebook per output channel (``mcuq.fit_levels``), refitted to
the weights as they train, or learned by gradient descent; and its frozen
form for ``mcuq.freeze``.

    preset = mcuq.presets.get("nu4")          # 4-bit k-means codebooks, int8 activations
    prepared = mcuq.prepare(model, preset, qat=True)
    ... train ...
    frozen = mcuq.freeze(prepared)            # FixedLevelsFakeQuantize modules
"""

from typing import Optional

import torch
from torch import Tensor, nn

from ._ao import FakeQuantizeBase

METHODS = ("kmeans", "quantile", "lloyd_max_gaussian", "lloyd_max_laplace", "pow2", "apot")


class CodebookFakeQuantize(FakeQuantizeBase):
    """Fake quantization of a weight onto a codebook of at most 2^bits levels,
    per output channel (``per_channel``, along ``axis``) or per tensor.

    Without ``learn``, the codebook is refitted by ``method`` to the weight
    on every ``refit_every``-th training forward while the observer is
    enabled (as a uniform fake-quantizer's range follows its weight), and
    kept in eval mode. With
    ``learn``, it is fitted on the first forward and then is a parameter
    that the optimizer trains: each level receives the gradients of the
    weights that took it (run one forward before building the optimizer;
    ``mcuq.prepare`` does).
    """

    levels: Tensor

    def __init__(self, bits: int = 4, method: str = "kmeans", per_channel: bool = True, axis: int = 0,
                 group_size: int = 1, learn: bool = False, iterations: int = 100, refit_every: int = 1,
                 **_torch_ao_kwargs) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"mcuq.CodebookFakeQuantize: expected method in {METHODS}, but got {method!r}")
        if refit_every < 1:
            raise ValueError(f"mcuq.CodebookFakeQuantize: expected refit_every >= 1, but got {refit_every}")
        self.refit_every = int(refit_every)
        self.bits, self.method, self.iterations = int(bits), method, int(iterations)
        self.per_channel, self.group_size, self.learn = bool(per_channel), int(group_size), bool(learn)
        self.axis = self.ch_axis = int(axis)
        self.levels = nn.Parameter(torch.zeros(0), requires_grad=self.learn)
        self.register_buffer("initialized", torch.zeros(1, dtype=torch.uint8))
        self.register_buffer("steps", torch.zeros(1, dtype=torch.int64))  # training forwards seen

    def fit(self, weight: Tensor) -> None:
        """Fits the codebook to ``weight`` now."""
        axis: Optional[int] = None
        if self.per_channel:
            axis = self.axis
        levels, _ = torch.ops.mcuq.fit_levels(weight.detach(), self.bits, self.method, axis, self.group_size,
                                              self.iterations)
        if self.levels.shape != levels.shape:
            self._resize(levels)
        else:
            with torch.no_grad():
                self.levels.copy_(levels)
        self.initialized.fill_(1)

    @torch.jit.unused
    def _resize(self, levels: Tensor) -> None:
        # The first fit sizes the codebook (in Python: a scripted module is
        # scripted after it, so its codebook keeps its size and is refitted
        # in place).
        self.levels = nn.Parameter(levels, requires_grad=self.learn)

    @torch.jit.export
    def snap_codebook(self) -> None:
        """Moves the codebook onto the int8 grid of each row (``snap_levels``),
        as ``mcuq.freeze`` does: for models trained in C++ through
        TorchScript, before export."""
        with torch.no_grad():
            self.levels.copy_(snap_levels(self.codebook()))

    def codebook(self) -> Tensor:
        """The levels as fake_quantize_levels takes them: sorted (a learned
        codebook may reorder under gradient steps)."""
        return torch.sort(self.levels, dim=-1).values if self.learn else self.levels

    def forward(self, weight: Tensor) -> Tensor:
        refit = False
        if self.training and bool(self.observer_enabled[0]) and not self.learn:
            refit = int(self.steps[0]) % self.refit_every == 0
            self.steps += 1
        if not bool(self.initialized[0]) or refit:
            self.fit(weight)
        if not bool(self.fake_quant_enabled[0]):
            return weight
        return torch.ops.mcuq.fake_quantize_levels(weight, self.codebook(), None,
                                                   self.axis if self.per_channel else 0, self.group_size)

    @torch.jit.export
    def calculate_qparams(self):
        """torch.ao's interface; a codebook has no (scale, zero point)."""
        raise NotImplementedError("mcuq.CodebookFakeQuantize: a codebook has no uniform qparams; use codebook()")

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, method={self.method!r}, axis={self.axis if self.per_channel else None}, "
                f"group_size={self.group_size}, learn={self.learn}, refit_every={self.refit_every}, "
                f"levels={tuple(self.levels.shape)}")


class FixedLevelsFakeQuantize(nn.Module):
    """``mcuq.fake_quantize_levels`` with a fixed codebook (a buffer): what
    ``mcuq.freeze`` makes of a ``CodebookFakeQuantize``."""

    levels: Tensor

    def __init__(self, levels: Tensor, axis: int = 0, group_size: int = 1) -> None:
        super().__init__()
        self.register_buffer("levels", levels.detach().clone().float())
        self.axis = int(axis)
        self.group_size = int(group_size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mcuq.fake_quantize_levels(x, self.levels, None, self.axis, self.group_size)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, group_size={self.group_size}, levels={tuple(self.levels.shape)}"


def snap_levels(levels: Tensor) -> Tensor:
    """Each row of a codebook moved onto the int8 grid of its own scale,
    ``max |level| / 127``: ``round(level / scale) * scale``. The exported
    layer then multiplies int8 weights exactly as a uniform one does
    (``mcuq.export`` requires it); a level moves by at most ``scale / 2``,
    1/254 of the row's range. Levels that meet keep their places (sorted,
    possibly equal)."""
    rows = levels.detach().float().reshape(-1, levels.shape[-1] if levels.dim() else 1)
    scale = rows.abs().amax(dim=1, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.round(rows / scale).clamp(-127, 127) * scale).reshape(levels.shape)


def fixed_levels(module: CodebookFakeQuantize, name: str) -> FixedLevelsFakeQuantize:
    """The frozen quantizer: the module's codebook snapped onto the int8 grid
    (``snap_levels``), so that the fake-quant model is the integer one."""
    if not bool(module.initialized[0]):
        raise ValueError(f"mcuq.freeze: {name} (CodebookFakeQuantize) saw no weight; run data through the model first")
    return FixedLevelsFakeQuantize(snap_levels(module.codebook()), module.axis if module.per_channel else 0,
                                   module.group_size)

