"""Typed Python wrappers of the ``torch.ops.mcuq`` ops.

The schemas are declared once, in C++ (``csrc/mcuq/ops/registration.cpp``);
these wrappers add documentation and type hints, and script with
TorchScript. ``scale`` is a floating tensor (used as float32); ``zero_point``
is an integer tensor, or a floating one (rounded half to even and clamped into
the range) when it is learned.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

def fake_quantize(
    input: Tensor,
    scale: Tensor,
    zero_point: Tensor,
    quant_min: int,
    quant_max: int,
    axis: int = 0,
    group_size: int = 1,
) -> Tensor:
    """Uniform affine fake quantization (quantize, then dequantize).

    ``q = clamp(z + round_half_even(x * (1/s)), quant_min, quant_max)`` and the
    result is ``(q - z) * s``, bit for bit as
    ``torch.fake_quantize_per_tensor_affine`` / ``_per_channel_affine``.

    ``scale``/``zero_point`` with one element quantize per tensor; otherwise
    they hold one entry per group of ``group_size`` consecutive channels along
    ``axis`` (``group_size=1``: per channel). The gradient to ``input`` is
    straight-through inside the range; if ``scale`` (and a floating
    ``zero_point``) require grad they get LSQ / LSQ+ gradients.
    """
    return torch.ops.mcuq.fake_quantize(
        input, scale, zero_point, quant_min, quant_max, axis, group_size
    )


def quantize(
    input: Tensor,
    scale: Tensor,
    zero_point: Tensor,
    quant_min: int,
    quant_max: int,
    axis: int = 0,
    group_size: int = 1,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """The integer levels ``q`` of :func:`fake_quantize`.

    ``dtype`` defaults to the narrowest of int8, uint8, int16, int32 that holds
    ``[quant_min, quant_max]``. NaN maps to the zero point.
    """
    return torch.ops.mcuq.quantize(
        input, scale, zero_point, quant_min, quant_max, axis, group_size, dtype
    )


def dequantize(
    input: Tensor,
    scale: Tensor,
    zero_point: Tensor,
    quant_min: int,
    quant_max: int,
    axis: int = 0,
    group_size: int = 1,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """``(q - z) * s`` for integer levels ``q`` (float32 unless ``dtype``).

    ``dequantize(quantize(x, ...), ...)`` equals ``fake_quantize(x, ...)`` bit
    for bit.
    """
    return torch.ops.mcuq.dequantize(
        input, scale, zero_point, quant_min, quant_max, axis, group_size, dtype
    )


def fake_quantize_levels(
    input: Tensor,
    levels: Tensor,
    thresholds: Optional[Tensor] = None,
    axis: int = 0,
    group_size: int = 1,
) -> Tensor:
    """Non-uniform fake quantization (eq. 3 of the method review):
    ``Q(x) = levels[i]`` for ``x`` in ``[thresholds[i-1], thresholds[i])``.

    ``levels``: sorted float32, ``[n]`` per tensor or ``[groups, n]`` (one
    row per group of ``group_size`` channels along ``axis``).
    ``thresholds`` (``[n - 1]`` or ``[groups, n - 1]``) default to the
    midpoints (the nearest level); a value on a threshold goes to the upper
    level. NaN stays NaN, +-inf take the end levels. Gradients:
    straight-through to ``input`` inside ``[levels[0], levels[-1]]``; levels
    that require grad receive the sum of the gradients of the values that
    took them (a codebook learned in QAT).
    """
    return torch.ops.mcuq.fake_quantize_levels(input, levels, thresholds, axis, group_size)


def quantize_levels(
    input: Tensor,
    levels: Tensor,
    thresholds: Optional[Tensor] = None,
    axis: int = 0,
    group_size: int = 1,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """The indices of :func:`fake_quantize_levels` (uint8 for up to 256
    levels, else int16 or int32, unless ``dtype``). NaN takes the level
    nearest 0 (the uniform ops map it to the zero point)."""
    return torch.ops.mcuq.quantize_levels(input, levels, thresholds, axis, group_size, dtype)


def dequantize_levels(
    input: Tensor,
    levels: Tensor,
    axis: int = 0,
    group_size: int = 1,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """``levels[index]`` (float32 unless ``dtype``); with
    :func:`quantize_levels` it equals :func:`fake_quantize_levels` bit for
    bit on non-NaN values."""
    return torch.ops.mcuq.dequantize_levels(input, levels, axis, group_size, dtype)


def uniform_levels(scale: Tensor, zero_point: Tensor, quant_min: int, quant_max: int) -> Tuple[Tensor, Tensor]:
    """The uniform grid ``(q - z) * s`` as a codebook ``(levels,
    thresholds)``: with these thresholds :func:`fake_quantize_levels` equals
    :func:`fake_quantize` bit for bit on float32, float16 and bfloat16
    inputs. ``[n]`` for one-element qparams, else ``[channels, n]``."""
    return torch.ops.mcuq.uniform_levels(scale, zero_point, quant_min, quant_max)


def fit_levels(
    input: Tensor,
    bits: int,
    method: str,
    axis: Optional[int] = None,
    group_size: int = 1,
    iterations: int = 100,
) -> Tuple[Tensor, Tensor]:
    """A codebook ``(levels, thresholds)`` fitted to the finite values of
    ``input``, per tensor or per group of channels along ``axis``:

    - ``"kmeans"``: Lloyd's algorithm on the data (weight clustering), a
      local minimum of its mean squared error, from the equal-mass levels;
    - ``"quantile"``: equal mass, levels at the ``(i + 1/2) / n`` quantiles,
      thresholds at the ``i / n`` quantiles (minimizes nothing);
    - ``"lloyd_max_gaussian"`` / ``"lloyd_max_laplace"``: the MSE-optimal
      levels of a normal (Laplace) law with the data's mean and standard
      deviation (median and mean absolute deviation);
    - ``"pow2"``: 0 and ``+-alpha 2^-j`` (2^bits - 1 levels), ``alpha``
      minimizing the data's MSE;
    - ``"apot"``: 0 and ``+-alpha`` times sums of two powers of two (additive
      powers-of-two), ``alpha`` as for ``"pow2"``.
    """
    return torch.ops.mcuq.fit_levels(input, bits, method, axis, group_size, iterations)


def choose_qparams(
    min_val: Tensor,
    max_val: Tensor,
    quant_min: int,
    quant_max: int,
    symmetric: bool,
    power_of_two: bool = False,
) -> Tuple[Tensor, Tensor]:
    """``(scale, zero_point)`` for the ranges ``[min_val, max_val]``, as
    torch.ao's observers compute them (the range is widened to include 0;
    scale floor 2^-23; power-of-two scales rounded up)."""
    return torch.ops.mcuq.choose_qparams(min_val, max_val, quant_min, quant_max, symmetric, power_of_two)


def fake_quantize_dynamic(
    input: Tensor,
    quant_min: int,
    quant_max: int,
    symmetric: bool,
    axis: Optional[int] = None,
) -> Tensor:
    """Fake quantization with the range of this input alone (per tensor, or
    per slice along ``axis``); straight-through gradient."""
    return torch.ops.mcuq.fake_quantize_dynamic(input, quant_min, quant_max, symmetric, axis)


def quantize_multiplier(real_multiplier: Tensor) -> Tuple[Tensor, Tensor]:
    """TFLite's ``QuantizeMultiplier`` for each real multiplier ``M >= 0``:
    int32 ``multiplier`` in [2^30, 2^31) and int32 ``shift`` with
    ``M ~= multiplier * 2^(shift - 31)`` (ties away from zero; the 2^31
    carry; shifts below -31 flush to (0, 0); above 30 saturate)."""
    return torch.ops.mcuq.quantize_multiplier(real_multiplier)


def requantize(
    input: Tensor,
    multiplier: Tensor,
    shift: Tensor,
    zero_point: int,
    quant_min: int,
    quant_max: int,
    axis: int = 1,
    rounding: str = "double",
) -> Tensor:
    """int32 (or int64, 16x8) accumulators -> int32 levels:
    ``clamp(zero_point + MultiplyByQuantizedMultiplier(input, multiplier,
    shift), quant_min, quant_max)``, one multiplier/shift or one per channel
    along ``axis``. ``rounding``: ``"double"`` (TFLite's default, gemmlowp),
    ``"single"`` (TFLITE_SINGLE_ROUNDING) or ``"shift"`` (power-of-two
    multipliers). The MCU runtime computes the same bits
    (``csrc/runtime/mcuq_arith.h``)."""
    return torch.ops.mcuq.requantize(input, multiplier, shift, zero_point, quant_min, quant_max, axis, rounding)
