"""Conv2d + BatchNorm2d, Conv1d + BatchNorm1d and Linear + BatchNorm1d (+ ReLU)
modules for quantization-aware training.

The weights a microcontroller runs are the convolution's weights with the
BatchNorm folded in (DESIGN.md §1, "freeze: fold BatchNorm"), so QAT must
fake-quantize those folded weights, not the raw ones. These modules do what
Jacob et al. 2018 / Krishnamoorthi 2018 (and torch.ao's ``ConvBn2d``)
describe:

- training, BatchNorm statistics not frozen::

      s  = gamma / sqrt(running_var + eps)          # per output channel
      y  = conv(x, fq(w * s)) / s + b               # conv bias b, if any
      y  = batch_norm(y, batch statistics)          # updates the running stats

  the quantized weights use the stable running std while the batch statistics
  drive training (the division by ``s`` undoes the scaling, so with
  fake-quant off this is exactly conv → BatchNorm(train));

- evaluation, or training once the statistics are frozen (``freeze_bn_stats()``
  or ``freeze_bn_step`` training steps), one convolution with the folded
  weight and bias::

      w_fold = w * gamma / sqrt(running_var + eps)
      b_fold = beta + (b - running_mean) * gamma / sqrt(running_var + eps)
      y      = conv(x, fq(w_fold)) + b_fold

``to_float()`` returns the plain ``nn.Conv2d`` (in an ``nn.Sequential`` with an
``nn.ReLU`` for the ReLU variant) with the BatchNorm folded in for good and
the weight left in float (the exporter quantizes it). The modules script with
TorchScript. Their state dict follows torch.ao's layout: ``weight``,
``bias`` (the convolution's), ``bn.*``, ``weight_fake_quant.*``, plus
``num_steps`` (training steps seen) and ``bn_frozen``.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .observers import FakeQuantize

__all__ = ["ConvBn1d", "ConvBn2d", "ConvBnReLU1d", "ConvBnReLU2d", "LinearBn1d", "LinearBnReLU1d", "freeze_bn_stats",
           "update_bn_stats"]


@torch.jit.unused
def _is_compiling() -> bool:
    """Whether torch.compile (Dynamo) is tracing (torch >= 2.3; False before)."""
    compiler = getattr(torch, "compiler", None)
    check = getattr(compiler, "is_compiling", None)
    return bool(check()) if check is not None else False


def _default_weight_fake_quant() -> nn.Module:
    return FakeQuantize(quant_min=-127, quant_max=127, symmetric=True, axis=0)


def _make_weight_fake_quant(weight_fake_quant) -> nn.Module:
    if weight_fake_quant is None:
        return _default_weight_fake_quant()
    if isinstance(weight_fake_quant, nn.Module):
        return weight_fake_quant
    if callable(weight_fake_quant):  # a factory: a class, functools.partial, X.with_args(...)
        module = weight_fake_quant()
        if not isinstance(module, nn.Module):
            raise TypeError(f"mcuq: weight_fake_quant factory returned {type(module).__name__}, "
                            "expected an nn.Module")
        return module
    raise TypeError(f"mcuq: expected weight_fake_quant to be None, an nn.Module or a factory, "
                    f"but got {type(weight_fake_quant).__name__}")


def _check_fold_pair(layer: nn.Module, bn: nn.Module, layer_type: type, bn_type: type, outputs: str) -> None:
    """``from_modules``' checks: the types, matching channels, running statistics."""
    if type(layer) is not layer_type:
        raise TypeError(f"mcuq: expected an nn.{layer_type.__name__}, but got {type(layer).__name__}")
    if not isinstance(bn, bn_type):
        raise TypeError(f"mcuq: expected an nn.{bn_type.__name__}, but got {type(bn).__name__}")
    if bn.num_features != layer.weight.shape[0]:
        raise ValueError(f"mcuq: the {bn_type.__name__} has {bn.num_features} features but the "
                         f"{layer_type.__name__} has {layer.weight.shape[0]} {outputs}")
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"mcuq: folding needs a {bn_type.__name__} with track_running_stats=True")


class ConvBn2d(nn.Module):
    """``nn.Conv2d`` followed by ``nn.BatchNorm2d``, trained with the folded
    weight fake-quantized by ``weight_fake_quant`` (default: per output
    channel, symmetric, [-127, 127]: ``mcuq.FakeQuantize(quant_min=-127,
    quant_max=127, symmetric=True, axis=0)``; a module or a factory).

    ``freeze_bn_step``: after this many training-mode forwards the BatchNorm
    statistics freeze (``None``: never by themselves; ``freeze_bn_stats()``
    freezes, ``update_bn_stats()`` thaws).
    """

    _FLOAT_MODULE = nn.Conv2d
    _BN_MODULE = nn.BatchNorm2d
    with_relu: bool
    freeze_bn_step: Optional[int]
    num_steps: Tensor
    bn_frozen: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, padding_mode: str = "zeros",
                 eps: float = 1e-5, momentum: Optional[float] = 0.1, weight_fake_quant=None,
                 freeze_bn_step: Optional[int] = None, device=None, dtype=None):
        super().__init__()
        # nn.Conv2d checks and normalizes the arguments and initializes the
        # weight as a float convolution would be.
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._take_geometry(conv)
        self._init_fold(conv, nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum, device=device, dtype=dtype),
                        weight_fake_quant, freeze_bn_step)

    def _take_geometry(self, conv: nn.Module) -> None:
        """The convolution's (normalized) shape arguments."""
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.groups = conv.groups
        self.padding_mode = conv.padding_mode
        self._reversed_padding_repeated_twice = conv._reversed_padding_repeated_twice

    def _init_fold(self, layer: nn.Module, bn: nn.Module, weight_fake_quant, freeze_bn_step: Optional[int]) -> None:
        """What every layer + BatchNorm module holds: the layer's weight and
        bias, the BatchNorm, the weight quantizer, the step counters."""
        self.weight = layer.weight
        if layer.bias is not None:
            self.bias = layer.bias
        else:
            self.register_parameter("bias", None)
        self.bn = bn
        self.weight_fake_quant = _make_weight_fake_quant(weight_fake_quant)
        if freeze_bn_step is not None:
            freeze_bn_step = int(freeze_bn_step)
            if freeze_bn_step < 0:
                raise ValueError(f"mcuq: expected freeze_bn_step >= 0 or None, but got {freeze_bn_step}")
        self.freeze_bn_step = freeze_bn_step
        self.with_relu = isinstance(self, (ConvBnReLU2d, ConvBnReLU1d, LinearBnReLU1d))
        self.register_buffer("num_steps", torch.zeros(1, dtype=torch.long, device=layer.weight.device))
        self.register_buffer("bn_frozen", torch.zeros(1, dtype=torch.uint8, device=layer.weight.device))

    # ----------------------------------------------------------------- build

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu=False, weight_fake_quant=None,
                     freeze_bn_step: Optional[int] = None) -> "ConvBn2d":
        """A new module with copies of the parameters and buffers of a float
        ``conv`` and ``bn`` (``relu`` true, or called on ``ConvBnReLU2d``: the
        ReLU variant). It takes ``conv``'s training mode."""
        _check_fold_pair(conv, bn, cls._FLOAT_MODULE, cls._BN_MODULE, "output channels")
        klass = cls._relu_variant() if relu else cls
        w = conv.weight
        module = klass(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                       bias=conv.bias is not None, padding_mode=conv.padding_mode, eps=bn.eps,
                       momentum=bn.momentum, weight_fake_quant=weight_fake_quant,
                       freeze_bn_step=freeze_bn_step, device=w.device, dtype=w.dtype)
        module._copy_from(conv, bn)
        return module

    @classmethod
    def _relu_variant(cls) -> type:
        """The class with a ReLU after it (itself if it has one)."""
        relu_classes = (ConvBnReLU2d, ConvBnReLU1d, LinearBnReLU1d)
        return cls if issubclass(cls, relu_classes) else next(c for c in relu_classes if issubclass(c, cls))

    def _copy_from(self, layer: nn.Module, bn: nn.Module) -> None:
        """The float layer's and BatchNorm's parameters and statistics, and the layer's training mode."""
        module = self
        with torch.no_grad():
            module.weight.copy_(layer.weight)
            if layer.bias is not None:
                module.bias.copy_(layer.bias)
            if bn.affine:
                module.bn.weight.copy_(bn.weight)
                module.bn.bias.copy_(bn.bias)
            else:  # no learned affine: gamma = 1, beta = 0, kept fixed
                module.bn.weight.fill_(1.0)
                module.bn.bias.fill_(0.0)
                module.bn.weight.requires_grad_(False)
                module.bn.bias.requires_grad_(False)
            module.bn.running_mean.copy_(bn.running_mean)
            module.bn.running_var.copy_(bn.running_var)
            if bn.num_batches_tracked is not None:
                module.bn.num_batches_tracked.copy_(bn.num_batches_tracked)
        module.train(layer.training)

    # ------------------------------------------------------------- switches

    @torch.jit.export
    def freeze_bn_stats(self) -> None:
        """Use (and stop updating) the running statistics in training too."""
        self.bn_frozen.fill_(1)

    @torch.jit.export
    def update_bn_stats(self) -> None:
        """Back to batch statistics (and running-statistics updates) in training."""
        self.bn_frozen.fill_(0)

    @torch.jit.export
    def bn_stats_frozen(self) -> bool:
        return bool(self.bn_frozen.item())

    def enable_fake_quant(self, enabled: bool = True) -> "ConvBn2d":
        self.weight_fake_quant.enable_fake_quant(enabled)
        return self

    def disable_fake_quant(self) -> "ConvBn2d":
        return self.enable_fake_quant(False)

    def enable_observer(self, enabled: bool = True) -> "ConvBn2d":
        self.weight_fake_quant.enable_observer(enabled)
        return self

    def disable_observer(self) -> "ConvBn2d":
        return self.enable_observer(False)

    # -------------------------------------------------------------- compute

    def _conv(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if self.padding_mode != "zeros":
            return F.conv2d(F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode),
                            weight, bias, self.stride, (0, 0), self.dilation, self.groups)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _bn_scale(self) -> Tensor:
        """gamma / sqrt(running_var + eps), one per output channel."""
        running_var = self.bn.running_var
        assert running_var is not None
        return self.bn.weight / torch.sqrt(running_var + self.bn.eps)

    @torch.jit.export
    def folded_weight_and_bias(self) -> Tuple[Tensor, Tensor]:
        """The BatchNorm folded into the convolution with the running
        statistics: ``(w * gamma / sigma, beta + (b - mu) * gamma / sigma)``
        (differentiable; the weight not fake-quantized)."""
        scale = self._bn_scale()
        return self.weight * self._per_row(scale), self._folded_bias(scale)

    def _per_row(self, scale: Tensor) -> Tensor:
        """Per output channel, shaped to multiply the weight."""
        return scale.reshape([-1] + [1] * (self.weight.dim() - 1))

    def _per_channel(self, values: Tensor, y: Tensor) -> Tensor:
        """Per output channel, shaped to broadcast over the output y (N, C, ...)."""
        return values.reshape([1, -1] + [1] * (y.dim() - 2))

    def _folded_bias(self, scale: Tensor) -> Tensor:
        running_mean = self.bn.running_mean
        assert running_mean is not None
        bias = self.bias
        if bias is not None:
            b_fold = self.bn.bias + (bias - running_mean) * scale
        else:
            b_fold = self.bn.bias - running_mean * scale
        return b_fold

    def _forward_folded(self, x: Tensor) -> Tensor:
        w_fold, b_fold = self.folded_weight_and_bias()
        return self._conv(x, self.weight_fake_quant(w_fold), b_fold)

    @staticmethod
    def _batch_scale(scale: Tensor) -> Tensor:
        # A channel with gamma = 0 would divide 0 by 0; its BatchNorm output
        # is beta whatever the convolution gives, so leave it unscaled.
        return torch.where(scale == 0, torch.ones_like(scale), scale)

    def _unscaled(self, y: Tensor, batch_scale: Tensor) -> Tensor:
        """The convolution of the scaled weight, scaled back, plus its bias:
        what BatchNorm normalizes with batch statistics."""
        y = y / self._per_channel(batch_scale, y)
        bias = self.bias
        if bias is not None:
            y = y + self._per_channel(bias, y)
        return y

    def _forward_batch_stats(self, x: Tensor) -> Tensor:
        scale = self._batch_scale(self._bn_scale())
        y = self._conv(x, self.weight_fake_quant(self.weight * self._per_row(scale)), None)
        y = self._unscaled(y, scale)
        # nn.BatchNorm2d's training rule, running-statistics update included
        num_batches_tracked = self.bn.num_batches_tracked
        assert num_batches_tracked is not None
        num_batches_tracked.add_(1)
        momentum = self.bn.momentum
        if momentum is None:  # cumulative moving average
            factor = 1.0 / float(num_batches_tracked.item())
        else:
            factor = momentum
        return F.batch_norm(y, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
                            True, factor, self.bn.eps)

    @torch.jit.unused
    def _forward_train_compiled(self, x: Tensor) -> Tensor:
        """Training as ``forward`` computes it, without its data-dependent
        branches, for ``torch.compile(fullgraph=True)``: the freeze decision
        stays a tensor, both convolutions run (twice the convolution work
        while training) and ``torch.where`` picks the result and the
        BatchNorm statistics. Bit for bit what eager mode gives."""
        if self.bn.momentum is None:
            raise ValueError("mcuq.ConvBn2d: under torch.compile, BatchNorm momentum=None (a cumulative "
                             "average, whose factor depends on the step count) is not supported; set a momentum")
        if self.freeze_bn_step is not None:
            reached = (self.num_steps == self.freeze_bn_step).to(self.bn_frozen.dtype)
            self.bn_frozen.copy_(self.bn_frozen | reached)
        self.num_steps.add_(1)
        frozen = self.bn_frozen.bool()
        scale = self._bn_scale()
        batch_scale = self._batch_scale(scale)
        weight = self.weight_fake_quant(self.weight * self._per_row(torch.where(frozen, scale, batch_scale)))
        folded = self._conv(x, weight, self._folded_bias(scale))  # one scale, as in eager: same gradient sums
        y = self._unscaled(self._conv(x, weight, None), batch_scale)
        running_mean, running_var = self.bn.running_mean.clone(), self.bn.running_var.clone()
        batch = F.batch_norm(y, running_mean, running_var, self.bn.weight, self.bn.bias, True,
                             self.bn.momentum, self.bn.eps)
        with torch.no_grad():
            # New tensors rather than copy_: the scale above derives from the
            # old statistics, and AOTAutograd (torch 2.15) may recompute it in
            # the backward from the buffer, which an in-place update would
            # have changed (a 4% wrong weight gradient).
            self.bn.running_mean = torch.where(frozen, self.bn.running_mean, running_mean)
            self.bn.running_var = torch.where(frozen, self.bn.running_var, running_var)
            self.bn.num_batches_tracked.add_((~frozen).to(torch.long).reshape(()))
        return torch.where(frozen, folded, batch)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not torch.jit.is_scripting() and _is_compiling():
            y = self._forward_train_compiled(x)
        elif self.training:
            freeze_step = self.freeze_bn_step
            if freeze_step is not None:
                if int(self.num_steps.item()) == freeze_step:
                    self.bn_frozen.fill_(1)
            self.num_steps.add_(1)
            if not bool(self.bn_frozen.item()):
                y = self._forward_batch_stats(x)
            else:
                y = self._forward_folded(x)
        else:
            y = self._forward_folded(x)
        if self.with_relu:
            y = F.relu(y)
        return y

    # ---------------------------------------------------------------- float

    def to_float(self) -> nn.Module:
        """A float ``nn.Conv2d`` (``nn.Conv1d`` for ``ConvBn1d``; with bias)
        holding the folded weight and bias (running statistics; the weight
        not fake-quantized); in an ``nn.Sequential`` with an ``nn.ReLU`` for
        the ReLU variant."""
        w = self.weight
        conv = self._FLOAT_MODULE(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                                  padding=self.padding, dilation=self.dilation, groups=self.groups, bias=True,
                                  padding_mode=self.padding_mode, device=w.device, dtype=w.dtype)
        return self._holding_folds(conv)

    def _holding_folds(self, layer: nn.Module) -> nn.Module:
        """``layer`` (float, with bias) given the folded weight and bias, then
        the ReLU if this is the ReLU variant, in this module's training mode."""
        with torch.no_grad():
            w_fold, b_fold = self.folded_weight_and_bias()
            layer.weight.copy_(w_fold)
            layer.bias.copy_(b_fold)
        module: nn.Module = nn.Sequential(layer, nn.ReLU()) if self.with_relu else layer
        module.train(self.training)
        return module

    def to_frozen(self) -> nn.Module:
        """For ``mcuq.freeze``: the BatchNorm folded for good (running
        statistics) into a convolution whose weight goes through a
        ``FixedFakeQuantize`` with the qparams training last used."""
        from .freeze import fixed_fake_quantize

        float_module = self.to_float()
        conv = float_module[0] if self.with_relu else float_module
        quantizer = fixed_fake_quantize(self.weight_fake_quant, "weight_fake_quant")
        return WeightQuantizedConv2d(conv, quantizer, self.with_relu).eval()

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        s += f", freeze_bn_step={self.freeze_bn_step}"
        return s


class WeightQuantizedConv2d(nn.Module):
    """A frozen convolution: ``conv`` with its weight fake-quantized by fixed
    qparams, then an optional ReLU (what ``ConvBn2d.to_frozen`` returns)."""

    def __init__(self, conv: nn.Conv2d, weight_fake_quant: nn.Module, relu: bool) -> None:
        super().__init__()
        self.conv = conv
        self.weight_fake_quant = weight_fake_quant
        self.with_relu = relu

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv._conv_forward(x, self.weight_fake_quant(self.conv.weight), self.conv.bias)
        return F.relu(y) if self.with_relu else y


class ConvBnReLU2d(ConvBn2d):
    """``ConvBn2d`` followed by a ReLU."""


class ConvBn1d(ConvBn2d):
    """``nn.Conv1d`` followed by ``nn.BatchNorm1d`` (audio and sensor time
    series), trained as ``ConvBn2d`` is. Inputs are (N, C, L)."""

    _FLOAT_MODULE = nn.Conv1d
    _BN_MODULE = nn.BatchNorm1d

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, padding_mode: str = "zeros", eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, weight_fake_quant=None, freeze_bn_step: Optional[int] = None,
                 device=None, dtype=None):
        nn.Module.__init__(self)
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self._take_geometry(conv)
        self._init_fold(conv, nn.BatchNorm1d(out_channels, eps=eps, momentum=momentum, device=device, dtype=dtype),
                        weight_fake_quant, freeze_bn_step)

    def _conv(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if self.padding_mode != "zeros":
            return F.conv1d(F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode),
                            weight, bias, self.stride, (0,), self.dilation, self.groups)
        return F.conv1d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvBnReLU1d(ConvBn1d):
    """``ConvBn1d`` followed by a ReLU."""


class LinearBn1d(ConvBn2d):
    """``nn.Linear`` followed by ``nn.BatchNorm1d`` (MLPerf Tiny's
    anomaly-detection autoencoder), trained as ``ConvBn2d`` is: the same
    folding, batch-statistics rule, switches and ``freeze_bn_step``, with a
    matrix product for the convolution. Inputs are (N, in_features)."""

    _FLOAT_MODULE = nn.Linear

    def __init__(self, in_features: int, out_features: int, bias: bool = False, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, weight_fake_quant=None, freeze_bn_step: Optional[int] = None,
                 device=None, dtype=None):
        nn.Module.__init__(self)
        linear = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self._init_fold(linear, nn.BatchNorm1d(out_features, eps=eps, momentum=momentum, device=device, dtype=dtype),
                        weight_fake_quant, freeze_bn_step)

    @classmethod
    def from_modules(cls, linear: nn.Linear, bn: nn.BatchNorm1d, relu=False, weight_fake_quant=None,
                     freeze_bn_step: Optional[int] = None) -> "LinearBn1d":
        """As ``ConvBn2d.from_modules``, for a float ``linear`` and ``bn``."""
        _check_fold_pair(linear, bn, nn.Linear, nn.BatchNorm1d, "outputs")
        klass = cls._relu_variant() if relu else cls
        w = linear.weight
        module = klass(linear.in_features, linear.out_features, bias=linear.bias is not None, eps=bn.eps,
                       momentum=bn.momentum, weight_fake_quant=weight_fake_quant, freeze_bn_step=freeze_bn_step,
                       device=w.device, dtype=w.dtype)
        module._copy_from(linear, bn)
        return module

    def _conv(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return F.linear(x, weight, bias)

    def to_float(self) -> nn.Module:
        """A float ``nn.Linear`` (with bias) holding the folded weight and bias."""
        w = self.weight
        return self._holding_folds(nn.Linear(self.in_features, self.out_features, bias=True, device=w.device,
                                             dtype=w.dtype))

    def to_frozen(self) -> nn.Module:
        """For ``mcuq.freeze``: a linear layer with the BatchNorm folded for
        good, its weight through a ``FixedFakeQuantize``."""
        from .freeze import fixed_fake_quantize

        float_module = self.to_float()
        linear = float_module[0] if self.with_relu else float_module
        quantizer = fixed_fake_quantize(self.weight_fake_quant, "weight_fake_quant")
        return WeightQuantizedFoldedLinear(linear, quantizer, self.with_relu).eval()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}"
                f"{', bias=False' if self.bias is None else ''}, freeze_bn_step={self.freeze_bn_step}")


class LinearBnReLU1d(LinearBn1d):
    """``LinearBn1d`` followed by a ReLU."""


class WeightQuantizedFoldedLinear(nn.Module):
    """A frozen linear layer: ``linear`` with its weight fake-quantized by
    fixed qparams, then an optional ReLU (what ``LinearBn1d.to_frozen`` returns)."""

    def __init__(self, linear: nn.Linear, weight_fake_quant: nn.Module, relu: bool) -> None:
        super().__init__()
        self.linear = linear
        self.weight_fake_quant = weight_fake_quant
        self.with_relu = relu

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight_fake_quant(self.linear.weight), self.linear.bias)
        return F.relu(y) if self.with_relu else y


def freeze_bn_stats(module: nn.Module) -> None:
    """For ``model.apply``: freeze the BatchNorm statistics of mcuq's Conv+BN modules."""
    if isinstance(module, ConvBn2d):
        module.freeze_bn_stats()


def update_bn_stats(module: nn.Module) -> None:
    """For ``model.apply``: thaw the BatchNorm statistics of mcuq's Conv+BN modules."""
    if isinstance(module, ConvBn2d):
        module.update_bn_stats()
