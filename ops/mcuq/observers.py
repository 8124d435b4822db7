"""Observers and fake-quantize modules on mcuq's dispatcher ops.

They keep their state in buffers (so they script with TorchScript, save in
``state_dict`` and sync under DDP) and follow torch.ao's interface:
``forward`` returns its input (observers) or its fake-quantized input
(``FakeQuantize``), ``calculate_qparams()`` returns ``(scale, zero_point)``,
``enable_observer`` / ``enable_fake_quant`` toggle the parts, and ``with_args``
builds factories for a ``torch.ao.quantization.QConfig``. They subclass
torch.ao's bases where that deprecated package exists, and work the same
without it (``mcuq._ao``).

Settings: ``quant_min``/``quant_max`` (default: from ``dtype``, torch.quint8 →
[0, 255]), ``symmetric`` (default: from ``qscheme``), ``axis`` (``None`` for
one range per tensor, else one per channel along ``axis``; ``ch_axis`` with a
per-channel ``qscheme`` means the same), ``group_size`` (channels sharing a
range), ``power_of_two`` (scales rounded up to powers of two).
"""

import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor
from ._ao import FakeQuantizeBase, ObserverBase

_SYMMETRIC = (torch.per_tensor_symmetric, torch.per_channel_symmetric)
_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric)
_DTYPE_RANGES = {
    torch.quint8: (0, 255),
    torch.qint8: (-128, 127),
    torch.qint32: (-(2**31), 2**31 - 1),
}


def _settings(dtype, qscheme, quant_min, quant_max, symmetric, axis, ch_axis):
    if (quant_min is None) != (quant_max is None):
        raise ValueError("mcuq: give both quant_min and quant_max, or neither")
    if quant_min is None:
        if dtype not in _DTYPE_RANGES:
            raise ValueError(f"mcuq: expected dtype in {list(_DTYPE_RANGES)}, but got {dtype}")
        quant_min, quant_max = _DTYPE_RANGES[dtype]
    if symmetric is None:
        symmetric = qscheme in _SYMMETRIC
    if axis is None and qscheme in _PER_CHANNEL:
        axis = ch_axis
    return int(quant_min), int(quant_max), bool(symmetric), axis


def _torch_dtype(quant_min: int, quant_max: int) -> torch.dtype:
    """The torch.ao dtype that holds the range (what its convert step reads)."""
    if quant_min >= 0 and quant_max <= 255:
        return torch.quint8
    if quant_min >= -128 and quant_max <= 127:
        return torch.qint8
    return torch.qint32


def _qscheme(symmetric: bool, per_channel: bool) -> torch.qscheme:
    if per_channel:
        return torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    return torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine


class _RangeState:
    """Shared construction of the range state and its settings."""

    @staticmethod
    def init(module, dtype, qscheme, quant_min, quant_max, symmetric, power_of_two, axis, ch_axis, group_size):
        quant_min, quant_max, symmetric, axis = _settings(
            dtype, qscheme, quant_min, quant_max, symmetric, axis, ch_axis
        )
        module.quant_min = quant_min
        module.quant_max = quant_max
        module.symmetric = symmetric
        module.power_of_two = bool(power_of_two)
        module.per_channel = axis is not None
        module.axis = 0 if axis is None else int(axis)
        module.ch_axis = module.axis
        module.group_size = int(group_size)
        if module.group_size < 1:
            raise ValueError(f"mcuq: expected group_size >= 1, but got {group_size}")
        module.qscheme = _qscheme(symmetric, module.per_channel)
        module.observer_name = type(module).__name__  # for messages, also from TorchScript
        module.register_buffer("min_val", torch.tensor([float("inf")]))
        module.register_buffer("max_val", torch.tensor([float("-inf")]))
        module.register_buffer("nonfinite_count", torch.zeros(1, dtype=torch.long))

    @staticmethod
    def check_extra(module, kwargs):
        """torch.ao passes a few arguments mcuq has no use for: accept those."""
        if kwargs.pop("reduce_range", False):
            raise ValueError("mcuq: reduce_range is not supported; pass quant_min/quant_max")
        kwargs.pop("eps", None)  # the scale floor is PyTorch's default, 2^-23
        if kwargs.pop("is_dynamic", False):  # torchao's PT2E passes is_dynamic=False
            raise ValueError("mcuq: is_dynamic=True is not supported (mcuq's ranges are calibrated)")
        factory_kwargs = kwargs.pop("factory_kwargs", None) or {}
        if kwargs:
            raise TypeError(f"mcuq: unexpected arguments {sorted(kwargs)}")
        return factory_kwargs.get("device")

    @staticmethod
    def load(module, state_dict, prefix, names):
        # Per-channel state is sized on the first batch; take the saved size.
        for name in names:
            key = prefix + name
            if key in state_dict:
                getattr(module, name).resize_(state_dict[key].shape)


class _RangeMixin:
    """What the range-keeping modules share (methods compile with TorchScript)."""

    def _range_entries(self, x: Tensor) -> int:
        """How many ranges this input needs, checked as the ops check it."""
        if not self.per_channel:
            return 1
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        if axis < 0 or axis >= x.dim():
            raise ValueError("mcuq: " + self.observer_name + " expected axis " + str(self.axis)
                             + " to exist in a " + str(x.dim()) + "-d input")
        channels = x.size(axis)
        if channels % self.group_size != 0:
            raise ValueError("mcuq: " + self.observer_name + " expected group_size="
                             + str(self.group_size) + " to divide the " + str(channels) + " channels")
        return channels // self.group_size

    def _new_range_state(self, n: int, device: torch.device) -> None:
        # New tensors rather than resize_: buffers of a TorchScript model
        # loaded from a file cannot be resized.
        self.min_val = torch.full([n], float("inf"), device=device)
        self.max_val = torch.full([n], float("-inf"), device=device)

    def _check_seen(self) -> None:
        if bool((self.min_val > self.max_val).any()):
            raise ValueError(
                "mcuq: " + self.observer_name + " saw no finite value (for some channel); "
                "run calibration data through it first"
            )

    def _qparams_from_state(self) -> Tuple[Tensor, Tensor]:
        self._check_seen()
        return torch.ops.mcuq.choose_qparams(
            self.min_val, self.max_val, self.quant_min, self.quant_max, self.symmetric, self.power_of_two
        )


class _MinMaxObserverBase(_RangeMixin, ObserverBase):
    min_val: Tensor
    max_val: Tensor
    nonfinite_count: Tensor

    def __init__(self, averaging_constant: Optional[float], dtype, qscheme, quant_min, quant_max,
                 symmetric, power_of_two, axis, ch_axis, group_size, **kwargs):
        device = _RangeState.check_extra(self, kwargs)
        super().__init__(dtype)
        _RangeState.init(self, dtype, qscheme, quant_min, quant_max, symmetric, power_of_two,
                         axis, ch_axis, group_size)
        if device is not None:
            self.to(device)
        self.dtype = _torch_dtype(self.quant_min, self.quant_max)
        self.averaging_constant = averaging_constant

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _RangeState.load(self, state_dict, prefix, ("min_val", "max_val"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        n = self._range_entries(x)
        if self.min_val.numel() != n:
            self._new_range_state(n, x.device)
        torch.ops.mcuq.observe_minmax_(
            x.detach(), self.min_val, self.max_val, self.nonfinite_count,
            self.averaging_constant, self.axis, self.group_size,
        )
        return x

    @torch.jit.export
    def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
        return self._qparams_from_state()

    def extra_repr(self) -> str:
        return (f"quant_min={self.quant_min}, quant_max={self.quant_max}, symmetric={self.symmetric}, "
                f"axis={self.axis if self.per_channel else None}, group_size={self.group_size}, "
                f"power_of_two={self.power_of_two}, min_val={self.min_val}, max_val={self.max_val}")

    @torch.jit.export
    def reset_min_max_vals(self) -> None:
        self.min_val.fill_(float("inf"))
        self.max_val.fill_(float("-inf"))


class MinMaxObserver(_MinMaxObserverBase):
    """Running min/max of the finite values seen (non-finite ones are counted
    in ``nonfinite_count``)."""

    def __init__(self, dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=None, quant_max=None,
                 *, symmetric=None, power_of_two=False, axis=None, ch_axis=0, group_size=1, **kwargs):
        super().__init__(None, dtype, qscheme, quant_min, quant_max, symmetric, power_of_two,
                         axis, ch_axis, group_size, **kwargs)


class MovingAverageMinMaxObserver(_MinMaxObserverBase):
    """Exponential moving average of each batch's min/max (PyTorch's rule:
    ``m += c * (batch_m - m)``; the first batch sets the state)."""

    def __init__(self, averaging_constant=0.01, dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                 quant_min=None, quant_max=None, *, symmetric=None, power_of_two=False, axis=None,
                 ch_axis=0, group_size=1, **kwargs):
        super().__init__(float(averaging_constant), dtype, qscheme, quant_min, quant_max, symmetric,
                         power_of_two, axis, ch_axis, group_size, **kwargs)


class FakeQuantize(_RangeMixin, FakeQuantizeBase):
    """Observe (EMA min/max) and fake-quantize in one fused op, with a
    straight-through gradient: the QAT building block. Works as a
    ``torch.ao.quantization.QConfig`` activation or weight factory::

        qconfig = QConfig(
            activation=mcuq.FakeQuantize.with_args(quant_min=0, quant_max=255),
            weight=mcuq.FakeQuantize.with_args(quant_min=-127, quant_max=127, symmetric=True, axis=0),
        )
    """

    min_val: Tensor
    max_val: Tensor
    nonfinite_count: Tensor
    scale: Tensor
    zero_point: Tensor

    def __init__(self, observer=None, quant_min=None, quant_max=None, *, dtype=torch.quint8,
                 qscheme=torch.per_tensor_affine, symmetric=None, power_of_two=False, axis=None,
                 ch_axis=0, group_size=1, averaging_constant=0.01, **kwargs):
        super().__init__()
        if observer is not None:  # torch.ao passes an observer factory; its settings apply
            if hasattr(observer, "p"):
                kwargs = {**observer.p.keywords, **kwargs}
                averaging_constant = kwargs.pop("averaging_constant", averaging_constant)
                dtype = kwargs.pop("dtype", dtype)
                qscheme = kwargs.pop("qscheme", qscheme)
                ch_axis = kwargs.pop("ch_axis", ch_axis)
        device = _RangeState.check_extra(self, kwargs)
        _RangeState.init(self, dtype, qscheme, quant_min, quant_max, symmetric, power_of_two,
                         axis, ch_axis, group_size)
        self.dtype = _torch_dtype(self.quant_min, self.quant_max)
        self.is_per_channel = self.per_channel
        self.averaging_constant = float(averaging_constant)
        self.register_buffer("scale", torch.tensor([1.0]))
        self.register_buffer("zero_point", torch.tensor([0], dtype=torch.int32))
        if device is not None:
            self.to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _RangeState.load(self, state_dict, prefix, ("min_val", "max_val", "scale", "zero_point"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        n = self._range_entries(x)
        if self.min_val.numel() != n:
            self._new_range_state(n, x.device)
            self.scale = torch.ones(n, device=x.device)
            self.zero_point = torch.zeros(n, dtype=torch.int32, device=x.device)
        return torch.ops.mcuq.observe_fake_quantize(
            x, self.min_val, self.max_val, self.nonfinite_count, self.scale, self.zero_point,
            self.observer_enabled, self.fake_quant_enabled, self.averaging_constant,
            self.quant_min, self.quant_max, self.symmetric, self.power_of_two, self.axis, self.group_size,
        )

    @torch.jit.export
    def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
        return self._qparams_from_state()

    def extra_repr(self) -> str:
        return (f"quant_min={self.quant_min}, quant_max={self.quant_max}, symmetric={self.symmetric}, "
                f"axis={self.axis if self.per_channel else None}, group_size={self.group_size}, "
                f"power_of_two={self.power_of_two}, scale={self.scale}, zero_point={self.zero_point}")



def _centre_sums(histogram: Tensor, histogram_range: Optional[Tensor]) -> Tensor:
    """Bin sums for a histogram saved without them: each bin's count times its
    centre (rows per channel, as the histogram)."""
    counts = histogram.to(torch.float64)
    if histogram_range is None or histogram_range.shape[:-1] != histogram.shape[:-1]:
        return torch.zeros_like(counts)
    lo, hi = histogram_range.to(torch.float64).unbind(-1)
    slots = histogram.shape[-1]
    centres = lo.unsqueeze(-1) + (torch.arange(slots, dtype=torch.float64, device=counts.device) + 0.5) * (
        (hi - lo) / slots
    ).unsqueeze(-1)
    return counts * centres


class HistogramObserver(_RangeMixin, ObserverBase):
    """A histogram of the finite values seen (bins of a power-of-two width on
    a grid aligned to it, re-binned exactly when new data leaves its range, so
    the state depends only on the values seen, not on their order or
    batching, and ``sync_observers`` can merge it across ranks exactly), from
    which ``calculate_qparams`` picks a clipping range with ``method``:

    - ``"minmax"``: the observed range;
    - ``"percentile"``: the ``percentile`` and ``100 - percentile`` quantiles;
    - ``"mse"``: the range with the least squared quantization error
      (clipping plus rounding) of the binned data on the range's actual grid,
      each bin's mass spread around the mean of its values (``histogram_sum``
      keeps each bin's sum), so that a spike of equal values counts where it
      is; its ends at bin edges or between them;
    - ``"entropy"``: TensorRT's KL-divergence threshold (on 2048 bins of
      ``|x|`` over ``[0, max |x|]``, as TensorRT).

    ``bins`` is the resolution, as in torch.ao: the observed range always
    spans more than ``bins`` bins (unless it is within a few float32 ulps of
    a constant). Power-of-two widths can overshoot the range up to twice, so
    the state holds ``2 * bins + 1`` counts: with only ``bins`` of them, half
    of them could lie outside the data. (On 200k Laplace, Student-t and ReLU'd
    values, 8 seeds each, the int8 ``mse`` range has on average 7e-6 more
    error than the best range on the raw values, and 3e-6 with ``bins``
    counts; scored without the bin sums, 2e-5 and 2.3e-4.)

    Per-channel (``axis``) keeps one histogram per channel.

    A state dict saved without ``histogram_sum`` (an older mcuq) loads with
    each bin's values taken at its centre.
    """

    histogram: Tensor
    histogram_sum: Tensor
    histogram_range: Tensor
    min_val: Tensor
    max_val: Tensor
    nonfinite_count: Tensor

    def __init__(self, bins: int = 2048, method: str = "mse", percentile: float = 99.99,
                 dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=None, quant_max=None,
                 *, symmetric=None, power_of_two=False, axis=None, ch_axis=0, **kwargs):
        kwargs.pop("upsample_rate", None)  # torch.ao's interpolation knob; mcuq re-bins exactly
        device = _RangeState.check_extra(self, kwargs)
        super().__init__(dtype)
        _RangeState.init(self, dtype, qscheme, quant_min, quant_max, symmetric, power_of_two,
                         axis, ch_axis, 1)
        self.dtype = _torch_dtype(self.quant_min, self.quant_max)
        if method not in ("minmax", "percentile", "mse", "entropy"):
            raise ValueError(
                f"mcuq: expected method in ('minmax', 'percentile', 'mse', 'entropy'), but got {method!r}"
            )
        if int(bins) < 1:
            raise ValueError(f"mcuq.HistogramObserver: expected bins >= 1, but got {bins}")
        self.bins = int(bins)
        self.method = method
        self.percentile = float(percentile)
        self.register_buffer("histogram", torch.zeros(self._slots(), dtype=torch.long))
        self.register_buffer("histogram_range", torch.zeros(2, dtype=torch.float64))
        self.register_buffer("histogram_sum", torch.zeros(self._slots(), dtype=torch.float64))
        if device is not None:
            self.to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "histogram")
        if saved is not None and saved.shape[-1] != self._slots():
            warnings.warn(
                f"mcuq.HistogramObserver: the saved histogram has {saved.shape[-1]} counts where "
                f"bins={self.bins} keeps {self._slots()} (saved with other bins, or by an mcuq that "
                f"kept bins counts); it is loaded as saved, at that resolution"
            )
        if saved is not None and prefix + "histogram_sum" not in state_dict:
            state_dict[prefix + "histogram_sum"] = _centre_sums(saved, state_dict.get(prefix + "histogram_range"))
        _RangeState.load(
            self, state_dict, prefix, ("min_val", "max_val", "histogram", "histogram_range", "histogram_sum")
        )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.per_channel:
            n = self._range_entries(x)
            if self.min_val.numel() != n:
                self._new_range_state(n, x.device)
                self.histogram = torch.zeros(n, self._slots(), dtype=torch.long, device=x.device)
                self.histogram_range = torch.zeros(n, 2, dtype=torch.float64, device=x.device)
                self.histogram_sum = torch.zeros(n, self._slots(), dtype=torch.float64, device=x.device)
        torch.ops.mcuq.observe_histogram_(
            x.detach(), self.histogram, self.histogram_range, self.min_val, self.max_val,
            self.nonfinite_count, self.axis, self.histogram_sum,
        )
        return x

    def _slots(self) -> int:
        """Counts that resolve any observed range into more than ``bins`` bins:
        the width doubles only when half of it no longer covers the range."""
        return 2 * self.bins + 1

    @torch.jit.export
    def calculate_range(self) -> Tuple[Tensor, Tensor]:
        """The clipping range ``method`` picks, before it is widened to include 0."""
        return torch.ops.mcuq.histogram_range(
            self.histogram, self.histogram_range, self.min_val, self.max_val, self.quant_min,
            self.quant_max, self.symmetric, self.method, self.percentile, self.histogram_sum,
        )

    @torch.jit.export
    def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
        self._check_seen()
        lo, hi = self.calculate_range()
        return torch.ops.mcuq.choose_qparams(lo, hi, self.quant_min, self.quant_max, self.symmetric, self.power_of_two)

    def extra_repr(self) -> str:
        return (f"bins={self.bins}, method={self.method!r}, quant_min={self.quant_min}, "
                f"quant_max={self.quant_max}, symmetric={self.symmetric}, "
                f"axis={self.axis if self.per_channel else None}, min_val={self.min_val}, max_val={self.max_val}")
