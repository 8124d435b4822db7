"""Shared helpers of mcuq's Python tests.

- ``Case`` / ``make_case``: the sample-input factory (an input tensor plus
  quantization parameters), with edge values injected on request;
- ``cases``: the Hypothesis strategy over shapes, axes, ranges, scales, zero
  points and edge values, built on ``make_case``;
- ``torch_fake_quantize``: PyTorch's native fake-quant ops (the oracle where
  their semantics overlap ours);
- plain, slow, element-by-element references written from DESIGN.md §3
  (``ref_levels``, ``ref_fake_quantize``, ``ref_mask``, ``ref_lsq_grads``),
  the oracle where PyTorch's semantics differ (±inf, NaN, huge levels) or where
  it has no counterpart (groups, LSQ sums).
"""

import math
import os
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Edge values the strategy injects by default: all of them are inputs on which
# mcuq must equal PyTorch's native ops bit for bit.
SAFE_EDGES = ("tie", "bound", "beyond", "neg_inf", "huge", "zero")
# Inputs on which mcuq deliberately differs from PyTorch (DESIGN.md §3).
UNSAFE_EDGES = ("pos_inf", "nan", "overflow")


# MCUQ_HYPOTHESIS_SCALE=10 runs every property test with 10x its examples.
EXAMPLE_SCALE = float(os.environ.get("MCUQ_HYPOTHESIS_SCALE", "1"))


def examples(n: int):
    """@settings with about `n` examples (times $MCUQ_HYPOTHESIS_SCALE)."""
    return settings(max_examples=max(1, int(n * EXAMPLE_SCALE)))


def torch_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def quant_range(bits: int, signed: bool, narrow: bool = False) -> Tuple[int, int]:
    """[qmin, qmax] of a `bits`-bit range; narrow drops the extra level."""
    if signed:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return (qmin + 1 if narrow else qmin), qmax
    qmin, qmax = 0, 2**bits - 1
    return qmin, (qmax - 1 if narrow else qmax)


def f32(v: float) -> float:
    """`v` rounded to the nearest float32 (as a Python float)."""
    return float(np.float32(v))


@dataclass
class Case:
    x: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    quant_min: int
    quant_max: int
    axis: int = 0
    group_size: int = 1

    @property
    def per_tensor(self) -> bool:
        return self.scale.numel() == 1

    def args(self, x: Optional[torch.Tensor] = None):
        """Positional arguments of torch.ops.mcuq.fake_quantize / quantize."""
        return (
            self.x if x is None else x,
            self.scale,
            self.zero_point,
            self.quant_min,
            self.quant_max,
            self.axis,
            self.group_size,
        )

    def qparams(self):
        """Everything after the input."""
        return self.args()[1:]

    def channel_scale(self) -> torch.Tensor:
        """float32 scale with one entry per channel (groups expanded)."""
        s = self.scale.detach().float().reshape(-1)
        return s if self.per_tensor else s.repeat_interleave(self.group_size)

    def channel_zero_point(self) -> torch.Tensor:
        """int64 zero point per channel; a float one rounded half to even and clamped."""
        z = self.zero_point.detach().reshape(-1)
        if z.is_floating_point():
            z = z.double().round().clamp(self.quant_min, self.quant_max)
        z = z.long()
        return z if self.per_tensor else z.repeat_interleave(self.group_size)

    def along_axis(self, per_channel: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-channel vector viewed so that it broadcasts against `like`."""
        if self.per_tensor:
            return per_channel.reshape([1] * like.dim()) if like.dim() else per_channel.reshape(())
        shape = [1] * like.dim()
        shape[self.axis % like.dim()] = -1
        return per_channel.reshape(shape)


def _element_scale(case: Case, x: torch.Tensor):
    s = case.along_axis(case.channel_scale(), x).expand(x.shape)
    z = case.along_axis(case.channel_zero_point(), x).expand(x.shape)
    return s, 1.0 / s, z  # float32, float32 (1.0f / s, IEEE division), int64


def inject_edges(case: Case, gen: torch.Generator, edges: Sequence[str], rate: float) -> None:
    """Replaces about `rate` of the elements of case.x (float32) by edge values."""
    x = case.x
    if x.numel() == 0 or not edges or rate <= 0:
        return
    s, inv, z = _element_scale(case, x)
    s, inv, z = s.contiguous(), inv.contiguous(), z.double().contiguous()
    qmin, qmax = float(case.quant_min), float(case.quant_max)
    n = x.numel()

    def u(lo, hi):
        return torch.rand(x.shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo

    candidates = {}
    if "tie" in edges:
        # x = (k + 0.5) * s in float32; kept only where x * (1/s) is exactly a
        # half in float32, i.e. where the rounding really is a tie.
        k = torch.floor(u(0, 1) * (qmax - qmin + 5) + qmin - 2 - z)
        xt = (k + 0.5).float() * s
        p = xt * inv
        is_tie = (p - torch.floor(p)) == 0.5
        candidates["tie"] = (xt, is_tie)
    if "bound" in edges:
        # at the bounds and one level either side
        b = torch.where(u(0, 1) < 0.5, torch.full_like(z, qmin), torch.full_like(z, qmax))
        b = b + torch.floor(u(0, 3)) - 1
        candidates["bound"] = (((b - z).float() * s), None)
    if "beyond" in edges:
        far = torch.floor(u(1, 1000))
        sign = torch.where(u(0, 1) < 0.5, -1.0, 1.0).double()
        lvl = torch.where(sign > 0, qmax - z + far, qmin - z - far)
        candidates["beyond"] = ((lvl.float() * s), None)
    if "neg_inf" in edges:
        candidates["neg_inf"] = (torch.full_like(x, -math.inf), None)
    if "pos_inf" in edges:
        candidates["pos_inf"] = (torch.full_like(x, math.inf), None)
    if "nan" in edges:
        candidates["nan"] = (torch.full_like(x, math.nan), None)
    if "huge" in edges:
        # finite, |level| well inside int64: 2^30 .. 2^60 levels, both signs
        mag = torch.pow(2.0, torch.floor(u(30, 61))).float()
        sign = torch.where(u(0, 1) < 0.5, -1.0, 1.0).float()
        candidates["huge"] = (sign * mag * s, None)
    if "overflow" in edges:
        # finite positive inputs whose level exceeds int64 (up to float32 max)
        mag = torch.pow(2.0, torch.floor(u(64, 100))).float()
        candidates["overflow"] = (torch.minimum(mag * s, torch.tensor(3.0e38)), None)
    if "zero" in edges:
        candidates["zero"] = (torch.where(u(0, 1) < 0.5, 0.0, -0.0).float().expand(x.shape), None)

    names = list(candidates)
    pick = torch.randint(len(names), (n,), generator=gen)
    hit = torch.rand(n, generator=gen) < rate
    flat = x.reshape(-1).clone()
    for i, name in enumerate(names):
        values, ok = candidates[name]
        sel = hit & (pick == i)
        if ok is not None:
            sel = sel & ok.reshape(-1)
        flat[sel] = values.reshape(-1)[sel]
    case.x = flat.reshape(x.shape)


def make_case(
    shape: Sequence[int] = (3, 4),
    scales: Sequence[float] = (0.1,),
    zero_points: Sequence[int] = (0,),
    quant_min: int = -128,
    quant_max: int = 127,
    axis: int = 0,
    group_size: int = 1,
    *,
    seed: int = 0,
    edges: Sequence[str] = (),
    edge_rate: float = 0.3,
    dtype: torch.dtype = torch.float32,
    zero_point_dtype: torch.dtype = torch.int32,
    scalar_qparams: bool = False,
) -> Case:
    """The shared sample-input factory.

    `scales` / `zero_points` hold one entry per group (one entry: per-tensor).
    Values are spread over the quantization range and a few levels beyond it,
    plus small values around 0; `edges` (see SAFE_EDGES / UNSAFE_EDGES) are
    injected into about `edge_rate` of the elements. Built in float32, then
    cast to `dtype`.
    """
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([f32(v) for v in scales], dtype=torch.float32)
    zero_point = torch.tensor(list(zero_points), dtype=zero_point_dtype)
    if scalar_qparams:
        assert scale.numel() == 1
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    case = Case(torch.empty(0), scale, zero_point, quant_min, quant_max, axis, group_size)
    x = torch.empty(tuple(shape), dtype=torch.float32)
    if x.numel():
        s, _, z = _element_scale(case, x)
        s, z = s.double(), z.double()
        lo, hi = quant_min - z - 3, quant_max - z + 3
        spread = torch.rand(x.shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo
        small = torch.randn(x.shape, generator=gen, dtype=torch.float64) * 3
        use_small = torch.rand(x.shape, generator=gen) < 0.3
        x = (torch.where(use_small, small, spread) * s).float()
    case.x = x
    inject_edges(case, gen, edges, edge_rate)
    case.x = case.x.to(dtype)
    return case


@st.composite
def cases(
    draw,
    granularity: str = "tensor",
    edges: Sequence[str] = SAFE_EDGES,
    min_dims: int = 1,
    max_dims: int = 4,
    max_size: int = 5,
    dtype: torch.dtype = torch.float32,
    bits=(2, 16),
):
    """Hypothesis strategy of Cases.

    granularity: "tensor", "channel" (group_size 1) or "group" (group_size 2..3).
    Ranges: 2..16 bits, signed or unsigned, full or narrow. Scales log-uniform
    in [1e-4, 1e2] (float32), zero points anywhere in the range, axes
    including negative ones.
    """
    nbits = draw(st.integers(*bits), label="bits")
    signed = draw(st.booleans(), label="signed")
    narrow = draw(st.booleans(), label="narrow")
    qmin, qmax = quant_range(nbits, signed, narrow)
    if granularity == "tensor":
        ndim = draw(st.integers(min_dims, max_dims))
    else:
        ndim = draw(st.integers(max(min_dims, 1), max_dims))
    shape = draw(st.lists(st.integers(1, max_size), min_size=ndim, max_size=ndim), label="shape")
    axis, group_size, n = 0, 1, 1
    if granularity != "tensor":
        axis = draw(st.integers(-ndim, ndim - 1), label="axis")
        if granularity == "group":
            group_size = draw(st.integers(2, 3), label="group_size")
            n = draw(st.integers(1, 3), label="groups")
            shape[axis] = group_size * n
        else:
            n = shape[axis]
    exps = draw(st.lists(st.floats(-4.0, 2.0), min_size=n, max_size=n), label="log10 scales")
    zps = draw(st.lists(st.integers(qmin, qmax), min_size=n, max_size=n), label="zero points")
    zp_dtype = draw(st.sampled_from([torch.int32, torch.int64]), label="zero_point dtype")
    scalar = n == 1 and granularity == "tensor" and draw(st.booleans(), label="0-d qparams")
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    return make_case(
        shape,
        [10.0**e for e in exps],
        zps,
        qmin,
        qmax,
        axis,
        group_size,
        seed=seed,
        edges=edges,
        dtype=dtype,
        zero_point_dtype=zp_dtype,
        scalar_qparams=scalar,
    )


def torch_fake_quantize(case: Case, x: Optional[torch.Tensor] = None) -> torch.Tensor:
    """PyTorch's native fake quantization with the case's parameters.

    Per-tensor: python float scale and int zero point. Per-channel/group:
    float32 scale and int32 zero point with one entry per channel (groups
    expanded with repeat_interleave), non-negative axis (PyTorch 1.13 rejects
    negative ones).
    """
    x = case.x if x is None else x
    if case.per_tensor:
        return torch.fake_quantize_per_tensor_affine(
            x,
            float(case.channel_scale()[0]),
            int(case.channel_zero_point()[0]),
            case.quant_min,
            case.quant_max,
        )
    return torch.fake_quantize_per_channel_affine(
        x,
        case.channel_scale(),
        case.channel_zero_point().to(torch.int32),
        case.axis % x.dim(),
        case.quant_min,
        case.quant_max,
    )


# ---------------------------------------------------------------------------
# Plain, slow references (element by element, numpy scalars), from DESIGN.md §3.


def _ref_elements(case: Case, x: torch.Tensor):
    """Yields (index, x, s, inv, z, raw level) for every element.

    float32 (and float16/bfloat16, computed in float32) inputs use float32
    arithmetic, float64 inputs double: level = z + nearbyint(x * (1.0f / s)).
    """
    wide = x.dtype == torch.float64
    xa = x.detach().to(torch.float64 if wide else torch.float32).numpy()
    s_ch = case.channel_scale().numpy()
    z_ch = case.channel_zero_point().numpy()
    ax = None if case.per_tensor else case.axis % x.dim()
    with np.errstate(over="ignore", invalid="ignore"):
        for idx in np.ndindex(*xa.shape):
            c = 0 if ax is None else idx[ax]
            s = np.float32(s_ch[c])
            inv = np.float32(1.0) / s
            z = int(z_ch[c])
            if wide:
                level = np.rint(np.float64(xa[idx]) * np.float64(inv)) + np.float64(z)
            else:
                level = np.rint(np.float32(xa[idx]) * inv) + np.float32(z)
            yield idx, float(xa[idx]), float(s), float(inv), z, float(level)


def _saturate(level: float, qmin: int, qmax: int) -> int:
    if level <= qmin:
        return qmin
    if level >= qmax:
        return qmax
    return int(level)


def ref_levels(case: Case, x: Optional[torch.Tensor] = None) -> torch.Tensor:
    """int64 levels q; NaN maps to the zero point, ±inf and huge levels saturate."""
    x = case.x if x is None else x
    out = np.zeros(tuple(x.shape), dtype=np.int64)
    for idx, _, _, _, z, level in _ref_elements(case, x):
        out[idx] = z if math.isnan(level) else _saturate(level, case.quant_min, case.quant_max)
    return torch.from_numpy(out)


def ref_fake_quantize(case: Case, x: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(q - z) * s evaluated in double and rounded once (via float32 for
    float16/bfloat16) to the input dtype; NaN stays NaN."""
    x = case.x if x is None else x
    wide = x.dtype == torch.float64
    out = np.zeros(tuple(x.shape), dtype=np.float64 if wide else np.float32)
    for idx, _, s, _, z, level in _ref_elements(case, x):
        if math.isnan(level):
            out[idx] = math.nan
        else:
            q = _saturate(level, case.quant_min, case.quant_max)
            out[idx] = float(q - z) * s  # double product, rounded once on assignment
    return torch.from_numpy(out).to(x.dtype)


def ref_mask(case: Case, x: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The STE mask: qmin <= raw level <= qmax (inclusive; False for NaN)."""
    x = case.x if x is None else x
    out = np.zeros(tuple(x.shape), dtype=bool)
    for idx, _, _, _, _, level in _ref_elements(case, x):
        out[idx] = case.quant_min <= level <= case.quant_max
    return torch.from_numpy(out)


def ref_lsq_grads(case: Case, grad: torch.Tensor, x: Optional[torch.Tensor] = None):
    """LSQ / LSQ+ gradients (float64), one entry per scale entry.

    Per element: d/ds = (q - z) - x/s inside the range, (bound - z) outside;
    d/dz = 0 inside, -s outside; NaN contributes nothing. Summed over all
    elements (per-tensor) or over everything but the axis, then per group.
    """
    x = case.x if x is None else x
    n = case.scale.numel()
    gs, gz = np.zeros(n), np.zeros(n)
    g = grad.detach().double().numpy()
    ax = None if case.per_tensor else case.axis % x.dim()
    for idx, xv, s, _, z, level in _ref_elements(case, x):
        if math.isnan(level):
            continue
        k = 0 if ax is None else idx[ax] // case.group_size
        if case.quant_min <= level <= case.quant_max:
            gs[k] += g[idx] * ((level - z) - xv / s)
        else:
            gs[k] += g[idx] * (_saturate(level, case.quant_min, case.quant_max) - z)
            gz[k] += -g[idx] * s
    shape = case.scale.shape
    return torch.from_numpy(gs).reshape(shape), torch.from_numpy(gz).reshape(shape)


def has_nan(t: torch.Tensor) -> bool:
    return bool(torch.isnan(t).any())


def assert_bit_equal(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """Same shape, dtype and values (NaN == NaN; -0.0 == 0.0 as in torch.equal)."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (what, actual.dtype, expected.dtype)
    a, e = actual.detach(), expected.detach()
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    assert torch.equal(nan_a, nan_e), (what, "NaN positions differ")
    a = torch.where(nan_a, torch.zeros_like(a), a)
    e = torch.where(nan_e, torch.zeros_like(e), e)
    if not torch.equal(a, e):
        bad = (a != e).nonzero()[:5].tolist()
        raise AssertionError(
            f"{what}: not bit-equal at {bad}: "
            f"{[a[tuple(i)].item() for i in bad]} vs {[e[tuple(i)].item() for i in bad]}"
        )
