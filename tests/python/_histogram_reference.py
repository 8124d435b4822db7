"""Plain, slow Python references for the histogram observer ops, written from
the rules in csrc/mcuq/ops/cpu/histogram.cpp (the header comment and the
comments at each method), one formula at a time, without the prefix-sum
shortcuts the C++ code takes.

- ``histogram``: the canonical grid and binning of all values seen, at once
  (what any sequence of batches must produce); ``histogram_sums``: each
  bin's sum, exactly rounded (``math.fsum``);
- ``fold_abs`` and ``entropy_threshold``: TensorRT's KL calibration, computed
  directly (P, Q and the KL sum for every threshold);
- ``mse_estimate`` / ``mse_range``: the histogram's estimate of the
  quantization error and its exhaustive minimizer (for small histograms);
  ``grid_error``: the error the "mse" search scores exactly, each bin's
  values spread by a linear density with the bin's mean (``bin_density``);
- ``qparams`` and ``quantization_mse``: DESIGN.md §3's range-to-qparams rule
  (float32, as torch.ao's observers) and the actual error of fake-quantizing
  data with it.
"""

import math
from typing import List, Sequence, Tuple

import numpy as np
import torch


# ---- histogram --------------------------------------------------------------


FLT_MAX = float(np.finfo(np.float32).max)


def float32_outwards(v: float, down: bool) -> float:
    """v rounded to float32 towards -inf (down) or +inf, saturating at ±FLT_MAX."""
    f = np.float32(min(max(v, -FLT_MAX), FLT_MAX))
    if down and float(f) > v:
        f = np.nextafter(f, np.float32(-np.inf))
    if not down and float(f) < v:
        f = np.nextafter(f, np.float32(np.inf))
    return float(f)


def min_grid_exponent(amax: float) -> int:
    """The float32 ulp exponent of amax (at least -149, the ulp of 0)."""
    if amax == 0:
        return -149
    return max(math.frexp(amax)[1] - 1 - 23, -149)


def canonical_grid(mn: float, mx: float, amax: float, bins: int) -> Tuple[int, int]:
    """(e, k): the smallest e >= min_grid_exponent(amax) with floor(mn / 2^e) + bins > mx / 2^e
    (searched one e at a time from the floor), k = floor(mn / 2^e)."""
    e = min_grid_exponent(amax)
    while True:
        w = math.ldexp(1.0, e)
        k = math.floor(mn / w)
        if (k + bins) * w > mx:
            return e, k
        e += 1


def histogram(values: Sequence[float], bins: int) -> Tuple[List[int], List[float]]:
    """The state's histogram and range after seeing `values` (in any order or
    chunking): every finite value, saturated to ±FLT_MAX, counted in its bin of
    the canonical grid of all of them."""
    vals = [min(max(v, -FLT_MAX), FLT_MAX) for v in values if math.isfinite(v)]
    hist = [0] * bins
    if not vals:
        return hist, [0.0, 0.0]
    mn, mx = min(vals), max(vals)
    amax = max(abs(float32_outwards(mn, True)), abs(float32_outwards(mx, False)))
    e, k = canonical_grid(mn, mx, amax, bins)
    w = math.ldexp(1.0, e)
    for v in vals:
        i = math.floor(v / w) - k
        assert 0 <= i < bins
        hist[i] += 1
    return hist, [k * w, (k + bins) * w]


def histogram_sums(values: Sequence[float], bins: int) -> List[float]:
    """Each bin's sum of the values ``histogram`` counts in it (as binned:
    saturated to ±FLT_MAX), exactly rounded."""
    vals = [min(max(v, -FLT_MAX), FLT_MAX) for v in values if math.isfinite(v)]
    _, (lo, hi) = histogram(values, bins)
    if not vals:
        return [0.0] * bins
    w = (hi - lo) / bins
    per_bin = [[] for _ in range(bins)]
    for v in vals:
        per_bin[math.floor(v / w) - round(lo / w)].append(v)
    return [math.fsum(b) for b in per_bin]


# ---- entropy --------------------------------------------------------------


ENTROPY_BINS = 2048  # TensorRT's |x| histogram


def fold_abs(hist: Sequence[int], lo: float, hi: float, amax: float) -> Tuple[np.ndarray, float]:
    """The histogram folded onto |x|: ENTROPY_BINS bins over [0, amax], each bin's
    mass spread uniformly over its |x| interval, cut at amax."""
    bins = ENTROPY_BINS
    w = (hi - lo) / len(hist)
    wa = amax / bins
    f = [0.0] * bins

    def spread(a, b, mass):
        ua, ub = min(a, amax) / wa, min(b, amax) / wa
        if not ub > ua:
            f[bins - 1] += mass
            return
        for j in range(max(0, math.floor(ua)), min(bins - 1, math.ceil(ub) - 1) + 1):
            overlap = min(ub, j + 1.0) - max(ua, float(j))
            if overlap > 1e-9 * (ub - ua):
                f[j] += mass * overlap / (ub - ua)

    for i, m in enumerate(hist):
        if m == 0:
            continue
        e0, e1 = lo + i * w, lo + (i + 1) * w
        if e1 <= 0:
            spread(-e1, -e0, float(m))
        elif e0 >= 0:
            spread(e0, e1, float(m))
        else:
            spread(0.0, -e0, m * (-e0 / w))
            spread(0.0, e1, m * (e1 / w))
    return np.array(f), wa


def kl_scores(f: np.ndarray, half_levels: int) -> List[Tuple[int, float]]:
    """(i, KL(P || Q)) for every threshold i = half_levels .. len(f), TensorRT's way."""
    h = half_levels
    out = []
    for i in range(h, len(f) + 1):
        p = f[:i].copy()
        p[-1] += f[i:].sum()
        clipped = f[:i]
        q = np.zeros(i)
        for g in range(h):
            start, stop = -(-g * i // h), -(-(g + 1) * i // h)
            nonzero = p[start:stop] > 0
            if nonzero.any():
                q[start:stop][nonzero] = clipped[start:stop].sum() / nonzero.sum()
        if q.sum() <= 0:
            continue
        pn, qn = p / p.sum(), q / q.sum()
        mask = pn > 0
        if (qn[mask] <= 0).any():
            continue  # KL = inf
        out.append((i, float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))))
    return out


def entropy_threshold(hist, lo, hi, min_val, max_val, quant_min, quant_max) -> float:
    h = (quant_max - quant_min + 1) // 2
    amax = max(abs(min_val), abs(max_val))
    if ENTROPY_BINS < h or not amax > 0:
        return amax
    f, wa = fold_abs(hist, lo, hi, amax)
    scores = kl_scores(f, h)
    best_i = min(scores, key=lambda s: s[1])[0]  # first minimum
    return min(best_i * wa, amax)


# ---- mse ------------------------------------------------------------------


def mse_estimate(hist, lo, hi, rmin, rmax, nq) -> float:
    """Estimated squared error (units of the data) of the effective range [min(rmin,0), max(rmax,0)]."""
    bins = len(hist)
    w = (hi - lo) / bins
    elo, ehi = min(rmin, 0.0), max(rmax, 0.0)
    delta = (ehi - elo) / nq
    err = 0.0
    for i, m in enumerate(hist):
        c = lo + (i + 0.5) * w
        if c < elo:
            err += m * (c - elo) ** 2
        elif c > ehi:
            err += m * (c - ehi) ** 2
        else:
            err += m * delta**2 / 12
    return err


def bin_density(count, total, a, w):
    """How the "mse" search spreads a bin [a, a + w) of `count` values summing
    to `total` (None: no sums): (p, q, k), the density (1 + k xi) / (q - p)
    on [p, q], xi = 2 (x - (p + q) / 2) / (q - p); p == q is a point.
    Without sums: uniform on the bin. With them, mean mu = total / count
    (clamped into the bin), d = mu - centre: |d| <= w / 6, the linear density
    on the bin with mean mu (k = 6 d / w); beyond, the triangle rising
    towards the near edge on [edge - 3 |edge - mu|, edge] (k = ±1)."""
    if total is None:
        return a, a + w, 0.0
    mu = min(max(total / count, a), a + w)
    d = mu - (a + w / 2)
    if d > w / 6:
        return a + w - 3 * (a + w - mu), a + w, 1.0
    if d < -w / 6:
        return a, a + 3 * (mu - a), -1.0
    return a, a + w, 6 * d / w


def grid_error(hist, sums, lo, hi, rmin, rmax, quant_min, quant_max, symmetric) -> float:
    """The squared error (units of the data, times mass) of the range
    [rmin, rmax] with each bin spread by ``bin_density``, each value
    fake-quantized on the range's float32 grid (qparams): the integrand is a
    cubic between the points where the quantized value jumps, so 2-point
    Gauss-Legendre on each such piece is exact. For grids of a few hundred
    levels and small histograms."""
    scale, zp = qparams(rmin, rmax, quant_min, quant_max, symmetric)

    def fq(x):
        return (min(max(round(x / scale) + zp, quant_min), quant_max) - zp) * scale

    w = (hi - lo) / len(hist)
    total = 0.0
    for i, m in enumerate(hist):
        if m == 0:
            continue
        p, q, k = bin_density(m, None if sums is None else sums[i], lo + i * w, w)
        if q <= p:
            total += m * (p - fq(p)) ** 2
            continue
        cuts = [p, q] + [(n + 0.5) * scale for n in range(math.ceil(p / scale - 0.5), math.floor(q / scale - 0.5) + 1)]
        cuts = sorted(c for c in cuts if p <= c <= q)
        for u, v in zip(cuts, cuts[1:]):
            if v <= u:
                continue
            level = fq((u + v) / 2)
            for g in (-1 / math.sqrt(3), 1 / math.sqrt(3)):
                x = (u + v) / 2 + g * (v - u) / 2
                density = (1 + k * 2 * (x - (p + q) / 2) / (q - p)) / (q - p)
                total += m * (v - u) / 2 * (x - level) ** 2 * density
    return total


def mse_candidates(hist, lo, hi, min_val, max_val):
    bins = len(hist)
    w = (hi - lo) / bins
    edges = [lo + k * w for k in range(bins + 1)]
    inner = [e for e in edges if min_val < e < max_val]
    return [min_val] + inner, inner + [max_val]


# ---- qparams and the actual error ------------------------------------------


def qparams(rmin: float, rmax: float, quant_min: int, quant_max: int, symmetric: bool) -> Tuple[float, int]:
    """DESIGN.md §3 in float32, as torch.ao.quantization's observers compute it."""
    f32 = np.float32
    lo, hi = min(f32(rmin), f32(0)), max(f32(rmax), f32(0))
    eps = f32(2.0**-23)
    if symmetric:
        scale = max(f32(max(-lo, hi) / f32((quant_max - quant_min) / 2)), eps)
        zp = 0 if quant_min < 0 else (quant_min + quant_max + 1) // 2
    else:
        scale = max(f32(f32(hi - lo) / f32(quant_max - quant_min)), eps)
        zp = int(quant_min - np.round(lo / scale))
        zp = min(max(zp, quant_min), quant_max)
    return float(scale), zp


def quantization_mse(x: torch.Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> float:
    xq = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max)
    return float(((xq.double() - x.double()) ** 2).mean())
