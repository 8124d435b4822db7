"""Quantization presets: small declarative descriptions of how weights and
activations are quantized, and the observer / fake-quantize modules they
make.

    preset = mcuq.presets.int8()                       # TFLite-style int8
    preset = mcuq.presets.w4a8().with_activation(estimator="histogram:mse")
    model.qconfig = preset.qconfig()                    # torch.ao eager QAT

Presets:
- ``int8``: weights int8 symmetric per output channel on the narrow range
  [-127, 127]; activations int8 affine [-128, 127] per tensor (TFLite's scheme).
- ``int16x8``: int8 weights as above; activations int16 symmetric
  [-32767, 32767] (zero point 0), TFLite's 16x8 mode.
- ``w4a8``: weights int4 symmetric per channel [-7, 7]; activations int8.
- ``pow2``: int8 with every scale a power of two, for shift-only MCU kernels.
- ``nu4`` / ``nu3``: non-uniform weights, a 16- (8-) level k-means codebook
  per output channel (``mcuq.fit_levels``), refitted as the weights train;
  activations int8. ``.with_weight(codebook_learned=True)`` learns the
  codebook by gradient descent instead; ``.with_weight(per_channel=False)`` one
  codebook per layer. mcuq.freeze snaps codebooks onto the int8 grid; the
  export stores 4- (3-) bit indices and int8 codebooks.
"""

from dataclasses import dataclass, replace
from typing import Tuple

from ._ao import QConfig

from .codebook import METHODS as CODEBOOK_METHODS, CodebookFakeQuantize
from .lsq import LearnableFakeQuantize
from .observers import FakeQuantize, HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver

ESTIMATORS = ("minmax", "ema", "histogram:minmax", "histogram:percentile", "histogram:mse", "histogram:entropy")


@dataclass(frozen=True)
class QuantSpec:
    """How one kind of tensor is quantized."""

    bits: int = 8
    signed: bool = True
    symmetric: bool = False
    narrow: bool = False  # drop the most negative level: [-(2^(b-1) - 1), 2^(b-1) - 1]
    per_channel: bool = False  # one range per output channel (axis 0 of a weight)
    group_size: int = 1  # consecutive channels sharing a range
    power_of_two: bool = False
    estimator: str = "ema"  # how activations are calibrated (PTQ); QAT always uses the EMA
    averaging_constant: float = 0.01
    percentile: float = 99.99
    lsq: bool = False  # QAT: learned scale (and affine zero point) instead of the EMA
    codebook: str = ""  # weights: non-uniform levels fitted by this mcuq.fit_levels method ("": uniform)
    codebook_learned: bool = False  # QAT: the codebook is a trained parameter instead of refitted
    codebook_refit_every: int = 1  # QAT without codebook_learned: refit on every n-th training step

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise ValueError(f"mcuq.presets: expected bits in [2, 16], but got {self.bits}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"mcuq.presets: expected estimator in {ESTIMATORS}, but got {self.estimator!r}")
        if self.lsq and self.power_of_two:
            raise ValueError("mcuq.presets: lsq with power_of_two is not supported (a learned scale is not a power of two)")
        if self.group_size < 1:
            raise ValueError(f"mcuq.presets: expected group_size >= 1, but got {self.group_size}")
        if self.codebook and self.codebook not in CODEBOOK_METHODS:
            raise ValueError(f"mcuq.presets: expected codebook in {CODEBOOK_METHODS} (or \"\"), but got "
                             f"{self.codebook!r}")
        if self.codebook_refit_every < 1:
            raise ValueError(f"mcuq.presets: expected codebook_refit_every >= 1, but got {self.codebook_refit_every}")
        if self.codebook and self.bits > 8:
            raise ValueError(f"mcuq.presets: expected bits <= 8 for a codebook, but got {self.bits}")

    @property
    def quant_range(self) -> Tuple[int, int]:
        if self.signed:
            high = 2 ** (self.bits - 1) - 1
            return (-high if self.narrow else -high - 1), high
        return 0, 2**self.bits - (2 if self.narrow else 1)

    def _common(self):
        quant_min, quant_max = self.quant_range
        return dict(
            quant_min=quant_min,
            quant_max=quant_max,
            symmetric=self.symmetric,
            power_of_two=self.power_of_two,
            axis=0 if self.per_channel else None,
            group_size=self.group_size,
        )

    def fake_quant(self):
        """The QAT module: EMA observer + fake-quantize, or LSQ's learned qparams."""
        common = self._common()
        if self.codebook:
            return CodebookFakeQuantize(self.bits, self.codebook, per_channel=self.per_channel,
                                        group_size=self.group_size, learn=self.codebook_learned,
                                        refit_every=self.codebook_refit_every)
        if self.lsq:
            common.pop("power_of_two")
            return LearnableFakeQuantize(**common)
        return FakeQuantize(averaging_constant=self.averaging_constant, **common)

    def observer(self):
        """The PTQ observer chosen by ``estimator``."""
        common = self._common()
        if self.estimator == "minmax":
            return MinMaxObserver(**common)
        if self.estimator == "ema":
            return MovingAverageMinMaxObserver(averaging_constant=self.averaging_constant, **common)
        common.pop("group_size")
        return HistogramObserver(method=self.estimator.split(":")[1], percentile=self.percentile, **common)


@dataclass(frozen=True)
class Preset:
    name: str
    weight: QuantSpec
    activation: QuantSpec

    def with_weight(self, **changes) -> "Preset":
        return replace(self, weight=replace(self.weight, **changes))

    def with_activation(self, **changes) -> "Preset":
        return replace(self, activation=replace(self.activation, **changes))

    def qconfig(self, qat: bool = True) -> QConfig:
        """A QConfig made of mcuq modules: fake-quantizers for QAT, observers
        (per ``estimator``) for PTQ; weights always get fake-quantizers'
        ranges from their own values. torch.ao's ``QConfig`` where
        torch.ao.quantization exists, else a named tuple of the same fields."""
        weight = _factory(self.weight.fake_quant)
        activation = _factory(self.activation.fake_quant if qat else self.activation.observer)
        return QConfig(activation=activation, weight=weight)


class _factory:
    """A picklable zero-argument factory that torch.ao can call with kwargs."""

    def __init__(self, make) -> None:
        self.make = make

    def __call__(self, **_torch_ao_kwargs):
        return self.make()


_INT8_WEIGHT = QuantSpec(bits=8, symmetric=True, narrow=True, per_channel=True)
_INT8_ACTIVATION = QuantSpec(bits=8, symmetric=False)


def int8() -> Preset:
    return Preset("int8", _INT8_WEIGHT, _INT8_ACTIVATION)


def int16x8() -> Preset:
    return Preset("int16x8", _INT8_WEIGHT, QuantSpec(bits=16, symmetric=True, narrow=True))


def w4a8() -> Preset:
    return Preset("w4a8", replace(_INT8_WEIGHT, bits=4), _INT8_ACTIVATION)


def pow2() -> Preset:
    return Preset("pow2", replace(_INT8_WEIGHT, power_of_two=True), replace(_INT8_ACTIVATION, power_of_two=True))


def nu4() -> Preset:
    return Preset("nu4", replace(_INT8_WEIGHT, bits=4, codebook="kmeans"), _INT8_ACTIVATION)


def nu3() -> Preset:
    return Preset("nu3", replace(_INT8_WEIGHT, bits=3, codebook="kmeans"), _INT8_ACTIVATION)


PRESETS = {"int8": int8, "int16x8": int16x8, "w4a8": w4a8, "pow2": pow2, "nu4": nu4, "nu3": nu3}


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"mcuq.presets: expected one of {sorted(PRESETS)}, but got {name!r}")
    return PRESETS[name]()
