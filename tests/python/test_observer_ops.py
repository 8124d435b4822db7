"""Range / observer ops against DESIGN.md §3: choose_qparams, observe_minmax_,
the fused observe_fake_quantize, fake_quantize_dynamic and _finite_aminmax.

Oracles: torch.ao.quantization's observers and FakeQuantize (bit-exact state,
scales and outputs wherever the settings coincide), the unfused sequence of
mcuq's own ops (for the fused op), and plain numpy / Python references written
from DESIGN.md §3 (groups, power-of-two scales, non-finite values).

State convention used throughout: min_val / max_val float32 initialised to
+inf / -inf, nonfinite_count int64 with one element; per-tensor state has one
element (0-d state, PyTorch's buffer shape, has tests of its own:
test_zero_dim_state_like_torch_buffers, test_zero_dim_range_gives_one_element).
Deliberate difference from PyTorch: the zero point of a custom unsigned
symmetric range (see test_unsigned_symmetric_zero_point_...).
"""

import contextlib
import math
import re
import warnings
import zlib

import numpy as np
import pytest
import torch
from torch.ao.quantization import (
    FakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)

import _mcuq_testing as T
import mcuq  # noqa: F401  (registers torch.ops.mcuq.*)

ops = torch.ops.mcuq
INF = math.inf
NAN = math.nan
EPS = 2.0**-23  # torch.finfo(torch.float32).eps, the scale floor


# ---------------------------------------------------------------------------
# helpers


def _state(n=1, shape=None):
    """Fresh range state: (min_val, max_val, nonfinite_count)."""
    shape = (n,) if shape is None else shape
    return (
        torch.full(shape, INF),
        torch.full(shape, -INF),
        torch.zeros(1, dtype=torch.int64),
    )


def _fused_state(n=1):
    """Fresh state of the fused op: min, max, count, scale, zero_point."""
    return (*_state(n), torch.ones(n), torch.zeros(n, dtype=torch.int32))


def _clone_all(ts):
    return tuple(t.clone() for t in ts)


def _flag(on):
    return torch.tensor([1 if on else 0], dtype=torch.uint8)


def _bits(t):
    """float32 bit patterns (for bitwise comparisons of scales)."""
    return t.detach().contiguous().float().view(torch.int32)


def _assert_scale_bits(ours, theirs, what):
    ours, theirs = ours.reshape(-1), theirs.reshape(-1).to(torch.float32)
    assert torch.equal(_bits(ours), _bits(theirs)), (what, ours.tolist(), theirs.tolist())


def _assert_state_equal(ours, theirs, what):
    assert torch.equal(ours.reshape(theirs.shape), theirs), (what, ours.tolist(), theirs.tolist())


def _raises(exc, fragment, op=None):
    prefix = re.escape(f"mcuq::{op}: expected") + ".*" if op else ""
    return pytest.raises(exc, match=prefix + re.escape(fragment))


# Value kinds of one slice (the whole tensor, or one channel): each observer
# sequence keeps a slice's kind, so that the running state has its character.
KINDS = ("relu", "positive", "negative", "straddle", "tiny", "constant", "zero")


def _slice_params(rng, kind):
    mag = 10.0 ** rng.uniform(-3, 3)
    return {
        "kind": kind,
        "mag": mag,
        "shift": rng.uniform(-1.0, 1.0) * mag,
        # tiny: |values| below ~1e-5, so the scale hits the eps floor
        "tiny": 10.0 ** rng.uniform(-9, -5),
        "const": float(rng.choice([-1.0, 1.0])) * 10.0 ** rng.uniform(-6, 3),
    }


def _slice_values(rng, p, n):
    kind = p["kind"]
    mag = p["mag"] * 10.0 ** rng.uniform(-0.3, 0.3)  # batch-to-batch jitter
    if kind == "relu":
        v = np.maximum(rng.standard_normal(n) * mag + p["shift"], 0.0)
        v[rng.integers(n)] = 0.0  # a ReLU output has zeros
    elif kind == "positive":
        v = abs(p["shift"]) + mag * (0.05 + rng.random(n))
    elif kind == "negative":
        v = -(abs(p["shift"]) + mag * (0.05 + rng.random(n)))
    elif kind == "straddle":
        v = rng.standard_normal(n) * mag + 0.3 * p["shift"]
        v[0], v[-1] = -abs(v[0]) - mag * 0.01, abs(v[-1]) + mag * 0.01
    elif kind == "tiny":
        t = p["tiny"]
        v = rng.uniform(-t, t, n) + (rng.choice([-1.0, 0.0, 1.0]) * t)
    elif kind == "constant":
        v = np.full(n, p["const"])
    elif kind == "zero":
        v = np.where(rng.random(n) < 0.5, 0.0, -0.0)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return v


class _Stream:
    """A seeded stream of float32 batches; per-tensor (one kind for the
    whole tensor) or per-channel along `axis` (one kind per channel)."""

    def __init__(self, seed, shape, kinds, axis=None):
        self.rng = np.random.default_rng(seed)
        self.shape, self.axis = tuple(shape), axis
        n = 1 if axis is None else shape[axis]
        if isinstance(kinds, str):
            kinds = [kinds] * n
        assert len(kinds) == n
        self.params = [_slice_params(self.rng, k) for k in kinds]

    def next(self, dtype=torch.float32):
        if self.axis is None:
            v = _slice_values(self.rng, self.params[0], int(np.prod(self.shape)))
            arr = v.reshape(self.shape)
        else:
            moved = (self.shape[self.axis],) + tuple(s for i, s in enumerate(self.shape) if i != self.axis)
            rest = int(np.prod(moved[1:]))
            arr = np.stack([_slice_values(self.rng, p, rest) for p in self.params]).reshape(moved)
            arr = np.moveaxis(arr, 0, self.axis)
        return torch.from_numpy(np.ascontiguousarray(arr)).float().to(dtype)


def _mixed_kinds(rng, n):
    """n channel kinds covering every kind (n >= len(KINDS))."""
    kinds = list(KINDS) + [str(k) for k in rng.choice(KINDS, n - len(KINDS))]
    rng.shuffle(kinds)
    return kinds


@contextlib.contextmanager
def _quiet():
    """PyTorch's observers warn (uninitialized state, reduce_range); not ours to check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _seed(*parts):
    """A seed from test parameters, stable across processes (unlike hash())."""
    return zlib.crc32(repr(parts).encode())


# ---------------------------------------------------------------------------
# 1. bit-exact with torch.ao.quantization's observers

# name: (qscheme, dtype, extra observer kwargs, qmin, qmax, symmetric)
PER_TENSOR_CONFIGS = {
    "affine_quint8": (torch.per_tensor_affine, torch.quint8, {}, 0, 255, False),
    "affine_qint8": (torch.per_tensor_affine, torch.qint8, {}, -128, 127, False),
    "symmetric_qint8": (torch.per_tensor_symmetric, torch.qint8, {}, -128, 127, True),
    "symmetric_quint8": (torch.per_tensor_symmetric, torch.quint8, {}, 0, 255, True),
    "symmetric_qint8_narrow": (
        torch.per_tensor_symmetric,
        torch.qint8,
        {"quant_min": -127, "quant_max": 127, "reduce_range": False},
        -127,
        127,
        True,
    ),
    "affine_qint8_narrow": (
        torch.per_tensor_affine,
        torch.qint8,
        {"quant_min": -127, "quant_max": 127, "reduce_range": False},
        -127,
        127,
        False,
    ),
}
PER_CHANNEL_CONFIGS = {
    "affine_qint8": (torch.per_channel_affine, torch.qint8, {}, -128, 127, False),
    "affine_quint8": (torch.per_channel_affine, torch.quint8, {}, 0, 255, False),
    "symmetric_qint8": (torch.per_channel_symmetric, torch.qint8, {}, -128, 127, True),
    "symmetric_qint8_narrow": (
        torch.per_channel_symmetric,
        torch.qint8,
        {"quant_min": -127, "quant_max": 127, "reduce_range": False},
        -127,
        127,
        True,
    ),
}
AVERAGING = [None, 0.01, 0.5]
N_BATCHES = 24


def _torch_observer(per_channel, averaging_constant, config, ch_axis=0):
    qscheme, dtype, extra, *_ = config
    kw = dict(dtype=dtype, qscheme=qscheme, **extra)
    with _quiet():
        if per_channel:
            kw["ch_axis"] = ch_axis
            if averaging_constant is None:
                return PerChannelMinMaxObserver(**kw)
            return MovingAveragePerChannelMinMaxObserver(averaging_constant=averaging_constant, **kw)
        if averaging_constant is None:
            return MinMaxObserver(**kw)
        return MovingAverageMinMaxObserver(averaging_constant=averaging_constant, **kw)


def _check_against_torch(obs, stream, state, config, averaging_constant, axis, n_batches, dtype=torch.float32):
    *_, qmin, qmax, symmetric = config
    assert (obs.quant_min, obs.quant_max) == (qmin, qmax), "PyTorch's range differs from the config"
    mn, mx, cnt = state
    for b in range(n_batches):
        x = stream.next(dtype)
        obs(x)
        ops.observe_minmax_(x, mn, mx, cnt, averaging_constant, axis, 1)
        what = f"batch {b}"
        _assert_state_equal(mn, obs.min_val, what + " min_val")
        _assert_state_equal(mx, obs.max_val, what + " max_val")
        assert int(cnt) == 0
        scale, zp = ops.choose_qparams(mn, mx, qmin, qmax, symmetric)
        assert scale.dtype == torch.float32 and zp.dtype == torch.int32
        assert scale.shape == mn.shape and zp.shape == mn.shape
        with _quiet():
            t_scale, t_zp = obs.calculate_qparams()
        _assert_scale_bits(scale, t_scale, what + " scale")
        assert torch.equal(zp.long().reshape(-1), t_zp.long().reshape(-1)), (what, zp, t_zp)


class TestMatchesTorchObservers:
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("averaging_constant", AVERAGING, ids=str)
    @pytest.mark.parametrize("config", list(PER_TENSOR_CONFIGS))
    def test_per_tensor(self, config, averaging_constant, kind):
        cfg = PER_TENSOR_CONFIGS[config]
        obs = _torch_observer(False, averaging_constant, cfg)
        seed = _seed(config, averaging_constant, kind)
        stream = _Stream(seed, (3, 5, 4), kind)
        _check_against_torch(obs, stream, _state(1), cfg, averaging_constant, 0, N_BATCHES)

    @pytest.mark.parametrize(
        "ch_axis,axis", [(0, 0), (1, 1), (1, -2), (0, -3)], ids=["axis0", "axis1", "axis1_as_-2", "axis0_as_-3"]
    )
    @pytest.mark.parametrize("averaging_constant", AVERAGING, ids=str)
    @pytest.mark.parametrize("config", list(PER_CHANNEL_CONFIGS))
    def test_per_channel(self, config, averaging_constant, ch_axis, axis):
        cfg = PER_CHANNEL_CONFIGS[config]
        obs = _torch_observer(True, averaging_constant, cfg, ch_axis)
        shape = [3, 4, 2]
        shape[ch_axis] = 9
        seed = _seed(config, averaging_constant, ch_axis, axis)
        kinds = _mixed_kinds(np.random.default_rng(seed), 9)
        stream = _Stream(seed, shape, kinds, axis=ch_axis)
        _check_against_torch(obs, stream, _state(9), cfg, averaging_constant, axis, N_BATCHES)

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
    @pytest.mark.parametrize("averaging_constant", [None, 0.01], ids=str)
    def test_other_input_dtypes(self, dtype, averaging_constant):
        # PyTorch casts the input to float32 before its aminmax; rounding is
        # monotonic, so a float32 state of the input's own min/max agrees.
        cfg = PER_TENSOR_CONFIGS["affine_quint8"]
        obs = _torch_observer(False, averaging_constant, cfg)
        stream = _Stream(5, (4, 6), "straddle")
        _check_against_torch(obs, stream, _state(1), cfg, averaging_constant, 0, 8, dtype=dtype)

    @pytest.mark.parametrize("averaging_constant", [None, 0.01], ids=str)
    def test_zero_dim_state_like_torch_buffers(self, averaging_constant):
        # PyTorch's per-tensor observers keep 0-d min_val/max_val; so may we
        cfg = PER_TENSOR_CONFIGS["affine_qint8"]
        obs = _torch_observer(False, averaging_constant, cfg)
        mn, mx, cnt = _state(shape=())
        stream = _Stream(_seed("0-d", averaging_constant), (4, 5), "straddle")
        for b in range(6):
            x = stream.next()
            obs(x)
            ops.observe_minmax_(x, mn, mx, cnt, averaging_constant)
            assert mn.shape == () and torch.equal(mn, obs.min_val) and torch.equal(mx, obs.max_val), b
            s, z = ops.choose_qparams(mn.reshape(1), mx.reshape(1), -128, 127, False)
            with _quiet():
                ts, tz = obs.calculate_qparams()
            _assert_scale_bits(s, ts, f"batch {b}")
            assert z.item() == tz.item()

    def test_non_contiguous_state_is_written_back(self):
        # state tensors that are strided views of bigger buffers (e.g. one
        # column of a packed buffer): results land in the views, nothing else moves
        x = _Stream(12, (3, 4), "straddle").next()
        buf = torch.zeros(4, 5)
        buf[:, 0], buf[:, 1] = INF, -INF
        cnt_buf = torch.full((3,), 7, dtype=torch.int64)
        mn, mx, cnt = buf[:, 0], buf[:, 1], cnt_buf[1:2]
        assert not mn.is_contiguous()
        ref = _state(4)
        for c in (None, 0.5, 0.5):
            ops.observe_minmax_(x, mn, mx, cnt, c, 1)
            ops.observe_minmax_(x, *ref, c, 1)
            x = x * 1.7 - 0.2
        assert torch.equal(mn, ref[0]) and torch.equal(mx, ref[1]) and int(cnt) == 7
        assert torch.equal(buf[:, 2:], torch.zeros(4, 3)) and cnt_buf.tolist() == [7, 7, 7]
        # the fused op: non-contiguous scale / zero_point too
        sbuf, zbuf = torch.ones(4, 2), torch.zeros(4, 2, dtype=torch.int32)
        fused = (mn, mx, cnt, sbuf[:, 1], zbuf[:, 1])
        ref = (*_clone_all(ref), torch.ones(4), torch.zeros(4, dtype=torch.int32))
        ya = ops.observe_fake_quantize(x, *fused, _flag(1), _flag(1), 0.5, 0, 255, False, False, 1)
        yb = ops.observe_fake_quantize(x, *ref, _flag(1), _flag(1), 0.5, 0, 255, False, False, 1)
        assert torch.equal(ya, yb)
        for i in (0, 1, 3, 4):  # (the count started at 7)
            assert torch.equal(fused[i], ref[i]), i
        assert torch.equal(sbuf[:, 0], torch.ones(4)) and torch.equal(zbuf[:, 0], torch.zeros(4, dtype=torch.int32))

    def test_ema_constant_is_used_as_float32(self):
        # 0.1 is not a float32; PyTorch multiplies by float32(0.1). A state
        # computed with the double constant would differ in the last bit.
        mn, mx, cnt = _state(1)
        ops.observe_minmax_(torch.tensor([-1.0, 1.0]), mn, mx, cnt, 0.1)
        ops.observe_minmax_(torch.tensor([-3.3, 7.7]), mn, mx, cnt, 0.1)
        c = np.float32(0.1)
        exp_min = np.float32(-1.0) + c * (np.float32(-3.3) - np.float32(-1.0))
        exp_max = np.float32(1.0) + c * (np.float32(7.7) - np.float32(1.0))
        assert mn.item() == float(exp_min) and mx.item() == float(exp_max)


# ---------------------------------------------------------------------------
# 2. per-group


def _ref_group_range(x, axis, group_size):
    """Plain reference: min/max of the finite values in each group of
    `group_size` consecutive channels along `axis` (+inf/-inf if none)."""
    a = x.detach().double().numpy()
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0] // group_size
    lo, hi = np.full(n, INF), np.full(n, -INF)
    for g in range(n):
        vals = a[g * group_size : (g + 1) * group_size].reshape(-1)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            lo[g], hi[g] = vals.min(), vals.max()
    return lo.astype(np.float32), hi.astype(np.float32), int((~np.isfinite(a)).sum())


def _ref_fold(state_lo, state_hi, lo, hi, averaging_constant):
    """Folds a batch range into a state (numpy float32), DESIGN.md §3."""
    state_lo, state_hi = state_lo.copy(), state_hi.copy()
    c = np.float32(1.0 if averaging_constant is None else averaging_constant)
    for i in range(state_lo.size):
        if not lo[i] <= hi[i]:
            continue  # no finite value in this slice
        if averaging_constant is None:
            state_lo[i], state_hi[i] = min(state_lo[i], lo[i]), max(state_hi[i], hi[i])
        elif state_lo[i] == INF and state_hi[i] == -INF:
            state_lo[i], state_hi[i] = lo[i], hi[i]
        else:
            state_lo[i] = np.float32(state_lo[i] + np.float32(c * np.float32(lo[i] - state_lo[i])))
            state_hi[i] = np.float32(state_hi[i] + np.float32(c * np.float32(hi[i] - state_hi[i])))
    return state_lo, state_hi


class TestPerGroup:
    @pytest.mark.parametrize("averaging_constant", [None, 0.25], ids=str)
    @pytest.mark.parametrize("axis,group_size", [(0, 2), (1, 3), (-1, 4), (-2, 3), (1, 12)])
    def test_matches_plain_group_reference(self, axis, group_size, averaging_constant):
        shape = (6, 12, 4) if axis in (0, -3) else (5, 12, 4) if axis in (1, -2) else (3, 5, 12)
        rng = np.random.default_rng(group_size * 10 + axis)
        ax = axis % 3
        kinds = _mixed_kinds(rng, shape[ax]) if shape[ax] >= len(KINDS) else [str(k) for k in rng.choice(KINDS, shape[ax])]
        stream = _Stream(group_size * 100 + ax, shape, kinds, axis=ax)
        n = shape[ax] // group_size
        mn, mx, cnt = _state(n)
        ref_lo, ref_hi = np.full(n, INF, np.float32), np.full(n, -INF, np.float32)
        ref_count = 0
        for b in range(10):
            x = stream.next()
            if b % 3 == 1:  # non-finite values, skipped and counted
                x.view(-1)[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(b))[:5]] = torch.tensor(
                    [NAN, INF, -INF, NAN, INF]
                )
            if b == 4:  # group 0 sees only non-finite values in this batch
                sl = [slice(None)] * 3
                sl[ax] = slice(0, group_size)
                x[tuple(sl)] = NAN
            lo, hi, c = _ref_group_range(x, ax, group_size)
            ref_lo, ref_hi = _ref_fold(ref_lo, ref_hi, lo, hi, averaging_constant)
            ref_count += c
            ops.observe_minmax_(x, mn, mx, cnt, averaging_constant, axis, group_size)
            assert torch.equal(mn, torch.from_numpy(ref_lo)), (b, mn, ref_lo)
            assert torch.equal(mx, torch.from_numpy(ref_hi)), (b, mx, ref_hi)
            assert int(cnt) == ref_count

    def test_group_equals_per_channel_reduced(self):
        # the per-group state is the per-channel state reduced over each group
        x = _Stream(3, (4, 12, 5), _mixed_kinds(np.random.default_rng(3), 12), axis=1).next()
        per_channel = _state(12)
        grouped = _state(4)
        ops.observe_minmax_(x, *per_channel, None, 1, 1)
        ops.observe_minmax_(x, *grouped, None, 1, 3)
        assert torch.equal(grouped[0], per_channel[0].view(4, 3).amin(1))
        assert torch.equal(grouped[1], per_channel[1].view(4, 3).amax(1))

    @pytest.mark.parametrize("axis,group_size", [(1, 1), (1, 2), (-1, 3), (None, 1)])
    def test_finite_aminmax_matches_reference(self, axis, group_size):
        x = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(11)) * 5
        x[0, 0, 0], x[1, 2, 3], x[3, 5, 1] = NAN, INF, -INF
        x[:, 0, :] = NAN  # channel 0 (axis 1) has no finite value
        lo, hi, count = ops._finite_aminmax(x, axis, group_size)
        if axis is None:
            f = x[torch.isfinite(x)]
            exp_lo, exp_hi = f.min().reshape(1), f.max().reshape(1)
        else:
            rl, rh, _ = _ref_group_range(x, axis % 3, group_size)
            exp_lo, exp_hi = torch.from_numpy(rl), torch.from_numpy(rh)
        assert torch.equal(lo, exp_lo) and torch.equal(hi, exp_hi)
        assert count.dtype == torch.int64 and count.dim() == 0
        assert int(count) == int((~torch.isfinite(x)).sum())


# ---------------------------------------------------------------------------
# 3, 4. choose_qparams: power of two, unsigned symmetric, shapes


def _ref_pow2(s):
    m, e = math.frexp(s)
    return s if m == 0.5 else math.ldexp(1.0, e)


def _random_ranges(seed, n):
    rng = np.random.default_rng(seed)
    a = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-9, 4, n)
    b = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-9, 4, n)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # exact cases: constant, all zero, all positive from 0, scale already 2^k
    lo[:4] = [0.0, 0.0, 0.0, -3.0]
    hi[:4] = [0.0, 5.0, 255 * 0.0625, 3.0]
    return torch.from_numpy(lo).float(), torch.from_numpy(hi).float()


class TestChooseQParams:
    RANGES = [(0, 255), (-128, 127), (-127, 127), (-8, 7), (0, 15), (-32768, 32767)]

    @pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
    @pytest.mark.parametrize("qmin,qmax", RANGES)
    def test_power_of_two_scale(self, qmin, qmax, symmetric):
        lo, hi = _random_ranges(_seed("pow2", qmin, qmax), 300)
        plain, _ = ops.choose_qparams(lo, hi, qmin, qmax, symmetric)
        s2, z2 = ops.choose_qparams(lo, hi, qmin, qmax, symmetric, True)
        assert s2.dtype == torch.float32 and z2.dtype == torch.int32
        for i in range(lo.numel()):
            s, p = plain[i].item(), s2[i].item()
            assert math.frexp(p)[0] == 0.5, (i, p)  # an exact power of two
            assert s <= p < 2 * s, (i, s, p)
            assert p == _ref_pow2(s), (i, s, p)
            if symmetric:
                exp_z = 0 if qmin < 0 else (qmin + qmax + 1) // 2
            else:
                min_neg = np.float32(min(lo[i].item(), 0.0))
                r = float(np.rint(np.float32(min_neg / np.float32(p))))  # round half to even
                exp_z = int(min(max(qmin - r, qmin), qmax))
            assert z2[i].item() == exp_z, (i, lo[i].item(), hi[i].item(), p, z2[i].item(), exp_z)

    def test_power_of_two_keeps_exact_powers_and_eps(self):
        # scale 2^-4 exactly, and the eps floor 2^-23, are already powers of two
        s, z = ops.choose_qparams(torch.tensor([0.0, 0.0]), torch.tensor([255 * 0.0625, 0.0]), 0, 255, False, True)
        assert s.tolist() == [0.0625, EPS] and z.tolist() == [0, 0]

    @pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
    @pytest.mark.parametrize("qmin,qmax", RANGES)
    def test_plain_reference(self, qmin, qmax, symmetric):
        # DESIGN.md §3 in float32 (numpy), per entry
        lo, hi = _random_ranges(_seed("plain", qmin, qmax), 300)
        s, z = ops.choose_qparams(lo, hi, qmin, qmax, symmetric)
        for i in range(lo.numel()):
            mn, mx = np.float32(min(lo[i].item(), 0.0)), np.float32(max(hi[i].item(), 0.0))
            if symmetric:
                es = np.float32(max(-mn, mx) / np.float32((qmax - qmin) / 2))
            else:
                es = np.float32(np.float32(mx - mn) / np.float32(qmax - qmin))
            es = max(es, np.float32(EPS))
            if symmetric:
                ez = 0 if qmin < 0 else (qmin + qmax + 1) // 2
            else:
                ez = int(min(max(qmin - float(np.rint(np.float32(mn / es))), qmin), qmax))
            assert s[i].item() == float(es), (i, lo[i].item(), hi[i].item())
            assert z[i].item() == ez, (i, lo[i].item(), hi[i].item())

    @pytest.mark.parametrize(
        "qmin,qmax,expected", [(0, 255, 128), (0, 15, 8), (0, 127, 64), (0, 254, 127), (0, 1, 1), (0, 65535, 32768)]
    )
    def test_unsigned_symmetric_zero_point_is_upper_middle_pytorch_custom_range_uses_lower(self, qmin, qmax, expected):
        # mcuq: (qmin + qmax + 1) // 2 for every unsigned range (128 for
        # [0, 255], as PyTorch). PyTorch's observers use (qmin + qmax) // 2 for
        # a *custom* unsigned range (63 for [0, 127]): a deliberate difference.
        lo, hi = torch.tensor([-1.5, 0.0, -2.0]), torch.tensor([2.0, 3.0, 0.0])
        s, z = ops.choose_qparams(lo, hi, qmin, qmax, True)
        assert z.tolist() == [expected] * 3
        assert s.tolist() == [T.f32(np.float32(v) / np.float32((qmax - qmin) / 2)) for v in (2.0, 3.0, 2.0)]

    @pytest.mark.parametrize("power_of_two", [False, True])
    def test_zero_dim_range_gives_one_element(self, power_of_two):
        s, z = ops.choose_qparams(torch.tensor(-1.0), torch.tensor(2.0), 0, 255, False, power_of_two)
        assert s.shape == (1,) and z.shape == (1,)
        assert (s.dtype, z.dtype) == (torch.float32, torch.int32)
        exp = ops.choose_qparams(torch.tensor([-1.0]), torch.tensor([2.0]), 0, 255, False, power_of_two)
        assert torch.equal(s, exp[0]) and torch.equal(z, exp[1])

    def test_zero_dim_range_on_meta_gives_one_element(self):
        s, z = ops.choose_qparams(torch.empty((), device="meta"), torch.empty((), device="meta"), 0, 255, True)
        assert s.shape == (1,) and z.shape == (1,)

    def test_float64_range_accepted(self):
        s, z = ops.choose_qparams(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64), 0, 255, False)
        exp = ops.choose_qparams(torch.tensor([-1.0]), torch.tensor([3.0]), 0, 255, False)
        assert s.dtype == torch.float32 and torch.equal(s, exp[0]) and torch.equal(z, exp[1])

    def test_no_gradient(self):
        lo = torch.tensor([-1.0], requires_grad=True)
        s, _ = ops.choose_qparams(lo, torch.tensor([1.0]), 0, 255, False)
        with pytest.raises(RuntimeError):
            s.sum().backward()


# ---------------------------------------------------------------------------
# 5, 6. non-finite, empty and constant inputs


class TestNonFinite:
    @pytest.mark.parametrize("averaging_constant", [None, 0.5], ids=str)
    def test_skipped_and_counted_per_tensor(self, averaging_constant):
        mn, mx, cnt = _state(1)
        x1 = torch.tensor([[1.0, NAN, -2.0], [INF, 0.5, -INF]])
        ops.observe_minmax_(x1, mn, mx, cnt, averaging_constant)
        assert (mn.item(), mx.item(), int(cnt)) == (-2.0, 1.0, 3)
        x2 = torch.tensor([NAN, 4.0, -INF, NAN, -6.0])
        ops.observe_minmax_(x2, mn, mx, cnt, averaging_constant)
        if averaging_constant is None:
            assert (mn.item(), mx.item()) == (-6.0, 4.0)
        else:
            assert (mn.item(), mx.item()) == (-4.0, 2.5)  # -2 + .5 * (-6 + 2), 1 + .5 * (4 - 1)
        assert int(cnt) == 6

    @pytest.mark.parametrize("averaging_constant", [None, 0.5], ids=str)
    def test_skipped_per_channel(self, averaging_constant):
        mn, mx, cnt = _state(3)
        x = torch.tensor([[1.0, NAN, INF], [-1.0, 2.0, -INF], [NAN, 3.0, NAN]])
        ops.observe_minmax_(x, mn, mx, cnt, averaging_constant, 1)
        assert mn.tolist() == [-1.0, 2.0, INF] and mx.tolist() == [1.0, 3.0, -INF]
        assert int(cnt) == 5
        with _raises(ValueError, "saw no finite value", "choose_qparams"):
            ops.choose_qparams(mn, mx, 0, 255, False)
        with _raises(ValueError, "at index 2"):
            ops.choose_qparams(mn, mx, 0, 255, False)
        # the channel that had no finite value takes its first finite batch as is
        ops.observe_minmax_(torch.tensor([[5.0, 6.0, -7.0]]), mn, mx, cnt, averaging_constant, 1)
        if averaging_constant is None:
            assert mn.tolist() == [-1.0, 2.0, -7.0] and mx.tolist() == [5.0, 6.0, -7.0]
        else:
            assert mn.tolist() == [2.0, 4.0, -7.0] and mx.tolist() == [3.0, 4.5, -7.0]
        assert int(cnt) == 5

    @pytest.mark.parametrize("averaging_constant", [None, 0.01, 1.0], ids=str)
    def test_only_non_finite_batch_leaves_state(self, averaging_constant):
        mn, mx, cnt = _state(1)
        ops.observe_minmax_(torch.tensor([-1.5, 2.5]), mn, mx, cnt, averaging_constant)
        before = _clone_all((mn, mx))
        ops.observe_minmax_(torch.tensor([NAN, INF, -INF, NAN]), mn, mx, cnt, averaging_constant)
        assert torch.equal(mn, before[0]) and torch.equal(mx, before[1])
        assert int(cnt) == 4
        # also from the initial state
        mn, mx, cnt = _state(1)
        ops.observe_minmax_(torch.full((2, 2), NAN), mn, mx, cnt, averaging_constant)
        assert mn.item() == INF and mx.item() == -INF and int(cnt) == 4

    def test_initial_state_has_no_qparams(self):
        mn, mx, _ = _state(1)
        with _raises(ValueError, "saw no finite value", "choose_qparams"):
            ops.choose_qparams(mn, mx, 0, 255, False)
        with _raises(ValueError, "saw no finite value"):
            ops.choose_qparams(mn, mx, -128, 127, True)

    @pytest.mark.parametrize(
        "lo,hi", [(NAN, 1.0), (-1.0, NAN), (NAN, NAN), (-INF, 1.0), (-1.0, INF), (2.0, 1.0)], ids=str
    )
    def test_invalid_range_raises(self, lo, hi):
        with _raises(ValueError, "finite min_val <= max_val", "choose_qparams"):
            ops.choose_qparams(torch.tensor([lo]), torch.tensor([hi]), 0, 255, False)

    def test_counted_for_every_input_dtype(self):
        mn, mx, cnt = _state(1)
        for i, dtype in enumerate([torch.float32, torch.float64, torch.float16, torch.bfloat16]):
            x = torch.tensor([NAN, 1.0, INF, -INF], dtype=dtype)
            ops.observe_minmax_(x, mn, mx, cnt)
            assert int(cnt) == 3 * (i + 1)
        assert (mn.item(), mx.item()) == (1.0, 1.0)


class TestEmptyAndConstant:
    @pytest.mark.parametrize("averaging_constant", [None, 0.5], ids=str)
    @pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "seeded"])
    def test_empty_input_changes_nothing(self, averaging_constant, fresh):
        for shape, axis, n in [((0,), 0, 1), ((0, 3), 1, 3), ((2, 0, 4), 2, 4)]:
            mn, mx, cnt = _state(n)
            if not fresh:
                seed_shape = [s if s else 2 for s in shape]
                ops.observe_minmax_(torch.randn(seed_shape, generator=torch.Generator().manual_seed(n)), mn, mx, cnt, None, axis)
            before = _clone_all((mn, mx, cnt))
            ops.observe_minmax_(torch.empty(shape), mn, mx, cnt, averaging_constant, axis)
            for a, b in zip((mn, mx, cnt), before):
                assert torch.equal(a, b), shape

    def test_empty_input_fused(self):
        st = _fused_state(1)
        ops.observe_fake_quantize(torch.tensor([-1.0, 2.0]), *st, _flag(1), _flag(1), 0.5, 0, 255, False)
        before = _clone_all(st)
        out = ops.observe_fake_quantize(torch.empty(0, 3), *st, _flag(1), _flag(1), 0.5, 0, 255, False)
        assert out.shape == (0, 3)
        for a, b in zip(st, before):
            assert torch.equal(a, b)

    @pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
    @pytest.mark.parametrize("qmin,qmax", [(0, 255), (-128, 127), (-127, 127)])
    def test_all_zero_input_gives_eps_scale(self, qmin, qmax, symmetric):
        mn, mx, cnt = _state(1)
        ops.observe_minmax_(torch.zeros(4, 4), mn, mx, cnt)
        s, z = ops.choose_qparams(mn, mx, qmin, qmax, symmetric)
        assert s.item() == EPS
        exp_z = (0 if qmin < 0 else (qmin + qmax + 1) // 2) if symmetric else qmin
        assert z.item() == exp_z
        y = ops.fake_quantize(torch.zeros(3), s, z, qmin, qmax)
        assert torch.equal(y, torch.zeros(3))

    @pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
    @pytest.mark.parametrize("value", [3.0, -0.25, 1e-30, -7e4])
    def test_constant_input(self, value, symmetric):
        mn, mx, cnt = _state(1)
        ops.observe_minmax_(torch.full((5, 2), value), mn, mx, cnt)
        assert mn.item() == mx.item() == T.f32(value)
        s, z = ops.choose_qparams(mn, mx, -128, 127, symmetric)
        assert math.isfinite(s.item()) and s.item() >= EPS
        assert -128 <= z.item() <= 127
        if symmetric:
            assert s.item() == max(T.f32(abs(T.f32(value)) / 127.5), EPS) and z.item() == 0
        else:
            assert s.item() == max(T.f32(abs(T.f32(value)) / 255.0), EPS)
        y = ops.fake_quantize(torch.full((3,), value), s, z, -128, 127)
        assert torch.isfinite(y).all()
        if abs(value) > 1e-3:  # representable: the constant survives (up to one level)
            assert (y - value).abs().max().item() <= s.item()


# ---------------------------------------------------------------------------
# 7, 8. the fused op


def _unfused(x, state, averaging_constant, qmin, qmax, symmetric, power_of_two, axis, group_size, observe=True, fq_on=True):
    """The same step as observe_fake_quantize, out of the separate ops."""
    mn, mx, cnt, scale, zp = state
    if observe:
        ops.observe_minmax_(x.detach(), mn, mx, cnt, averaging_constant, axis, group_size)
        s, z = ops.choose_qparams(mn, mx, qmin, qmax, symmetric, power_of_two)
        scale.copy_(s.view_as(scale))
        zp.copy_(z.view_as(zp))
    if not fq_on:
        return x * 1.0
    return ops.fake_quantize(x, scale, zp, qmin, qmax, axis, group_size)


FUSED_CASES = {
    # name: shape, memory format, n entries, axis, group_size, qmin, qmax, symmetric, power_of_two
    "per_tensor_affine": ((2, 3, 4, 5), None, 1, 0, 1, 0, 255, False, False),
    "per_tensor_symmetric_pow2": ((2, 3, 4, 5), None, 1, 0, 1, -128, 127, True, True),
    "per_channel_nchw_axis1": ((2, 6, 3, 3), None, 6, 1, 1, -128, 127, False, False),
    "per_channel_channels_last": ((2, 6, 3, 3), torch.channels_last, 6, 1, 1, -127, 127, True, False),
    "per_channel_negative_axis": ((4, 5), None, 5, -1, 1, 0, 255, False, True),
    "per_group": ((2, 6, 3, 3), torch.channels_last, 2, 1, 3, -8, 7, False, False),
}


class TestFusedEqualsUnfused:
    @pytest.mark.parametrize("averaging_constant", [None, 0.01, 0.5], ids=str)
    @pytest.mark.parametrize("name", list(FUSED_CASES))
    def test_steps(self, name, averaging_constant):
        shape, fmt, n, axis, gs, qmin, qmax, sym, p2 = FUSED_CASES[name]
        ax = axis % len(shape)
        kinds = [str(k) for k in np.random.default_rng(n).choice(["straddle", "relu", "positive", "negative"], shape[ax])]
        stream = _Stream(len(name), shape, kinds if n > 1 else "straddle", axis=ax if n > 1 else None)
        fused, ref = _fused_state(n), _fused_state(n)
        gen = torch.Generator().manual_seed(1)
        for step in range(6):
            x = stream.next() * 1.3
            if step == 3:  # non-finite values are skipped by both
                x.view(-1)[:3] = torch.tensor([NAN, INF, -INF])
            if fmt is not None:
                x = x.contiguous(memory_format=fmt)
            g = torch.randn(x.shape, generator=gen)
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya = ops.observe_fake_quantize(xa, *fused, _flag(1), _flag(1), averaging_constant, qmin, qmax, sym, p2, axis, gs)
            yb = _unfused(xb, ref, averaging_constant, qmin, qmax, sym, p2, axis, gs)
            T.assert_bit_equal(ya, yb, f"step {step} output")
            for a, b, what in zip(fused, ref, ("min_val", "max_val", "count", "scale", "zero_point")):
                assert a.dtype == b.dtype and torch.equal(a, b), (step, what, a, b)
            ya.backward(g)
            yb.backward(g)
            assert torch.equal(xa.grad, xb.grad), step
            if fmt is not None:
                assert ya.stride() == yb.stride()

    @pytest.mark.parametrize("n,axis", [(1, 0), (4, 1)])
    def test_observer_disabled_leaves_state_and_uses_existing_scale(self, n, axis):
        st = _fused_state(n)
        x0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
        ops.observe_fake_quantize(x0, *st, _flag(1), _flag(1), 0.01, -128, 127, False, False, axis)
        before = _clone_all(st)
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3)) * 10  # would change the range
        x[0, 0] = NAN  # would be counted
        xr = x.clone().requires_grad_()
        y = ops.observe_fake_quantize(xr, *st, torch.tensor([0]), torch.tensor([1]), 0.01, -128, 127, False, False, axis)
        for a, b in zip(st, before):
            assert torch.equal(a, b)
        xe = x.clone().requires_grad_()
        ye = ops.fake_quantize(xe, before[3], before[4], -128, 127, axis)
        T.assert_bit_equal(y, ye)
        g = torch.randn(3, 4)
        y.backward(g)
        ye.backward(g)
        assert torch.equal(xr.grad, xe.grad)
        assert not torch.equal(xr.grad, g)  # the mask does cut (values beyond the old range)

    def test_fake_quant_disabled_returns_copy_and_passes_gradient(self):
        st = _fused_state(1)
        x = torch.tensor([[-3.0, 0.1234, 1000.0], [NAN, INF, -INF]], requires_grad=True)
        y = ops.observe_fake_quantize(x, *st, _flag(1), torch.tensor([0.0]), None, -8, 7, True, False)
        T.assert_bit_equal(y, x)
        assert y is not x and y.data_ptr() != x.data_ptr()
        # the observer did run
        assert (st[0].item(), st[1].item(), int(st[2])) == (-3.0, 1000.0, 3)
        assert st[3].item() == T.f32(1000.0 / 7.5)
        g = torch.arange(1.0, 7.0).reshape(2, 3)
        y.backward(g)
        assert torch.equal(x.grad, g)
        with torch.no_grad():
            x.add_(1.0)
        assert y[0, 0].item() == -3.0  # a copy, not a view

    @pytest.mark.parametrize("flag_dtype", [torch.bool, torch.uint8, torch.int32, torch.int64, torch.float32], ids=str)
    def test_flag_dtypes(self, flag_dtype):
        x = torch.tensor([-1.0, 0.26, 3.0])
        for obs_on, fq_on in [(1, 1), (0, 1), (1, 0), (0, 0)]:
            st, ref = _fused_state(1), _fused_state(1)
            a = ops.observe_fake_quantize(
                x, *st, torch.tensor([obs_on], dtype=flag_dtype), torch.tensor([fq_on], dtype=flag_dtype), None, -8, 7, False
            )
            b = ops.observe_fake_quantize(x, *ref, _flag(obs_on), _flag(fq_on), None, -8, 7, False)
            assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(st, ref)), (obs_on, fq_on)
        # a 0-d flag has one element too
        y = ops.observe_fake_quantize(x, *_fused_state(1), torch.tensor(1, dtype=flag_dtype), torch.tensor(0, dtype=flag_dtype), None, -8, 7, False)
        assert torch.equal(y, x)

    @pytest.mark.parametrize("n", [1, 3], ids=["per_tensor", "per_channel"])
    @pytest.mark.parametrize("dtype", T.FLOAT_DTYPES, ids=str)
    def test_input_dtypes(self, dtype, n):
        fused, ref = _fused_state(n), _fused_state(n)
        stream = _Stream(_seed("dtypes", dtype), (2, 3, 4), "straddle")
        for step in range(3):
            x = stream.next(dtype)
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya = ops.observe_fake_quantize(xa, *fused, _flag(1), _flag(1), 0.5, -128, 127, True, False, 1)
            yb = _unfused(xb, ref, 0.5, -128, 127, True, False, 1, 1)
            assert ya.dtype == dtype
            T.assert_bit_equal(ya, yb, f"step {step}")
            for a, b in zip(fused, ref):
                assert torch.equal(a, b), step
            ya.sum().backward()
            yb.sum().backward()
            assert torch.equal(xa.grad, xb.grad) and xa.grad.dtype == dtype

    def test_both_disabled(self):
        st = _fused_state(1)
        before = _clone_all(st)
        x = torch.randn(5)
        y = ops.observe_fake_quantize(x, *st, _flag(0), _flag(0), 0.01, 0, 255, False)
        assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
        for a, b in zip(st, before):
            assert torch.equal(a, b)

    @pytest.mark.parametrize("averaging_constant", [None, 0.01], ids=str)
    def test_observer_without_finite_value_keeps_qparams(self, averaging_constant):
        # a state that never saw a finite value has no range: the fused op
        # keeps the qparams it has instead of raising
        mn, mx, cnt, s, z = _fused_state(1)
        s.fill_(0.5)
        z.fill_(3)
        y = ops.observe_fake_quantize(
            torch.tensor([NAN, -INF, INF]), mn, mx, cnt, s, z, _flag(1), _flag(1), averaging_constant, 0, 255, False
        )
        assert (s.item(), z.item(), int(cnt)) == (0.5, 3, 3)
        assert (mn.item(), mx.item()) == (INF, -INF)
        assert math.isnan(y[0].item()) and y[1].item() == -1.5 and y[2].item() == 126.0
        # per-channel: only the channel without a range keeps its qparams
        st = _fused_state(2)
        st[3].fill_(0.5)
        ops.observe_fake_quantize(
            torch.tensor([[NAN, -1.0], [INF, 3.0]]), *st, _flag(1), _flag(1), averaging_constant, 0, 255, False, False, 1
        )
        exp = ops.choose_qparams(torch.tensor([-1.0]), torch.tensor([3.0]), 0, 255, False)
        assert st[3].tolist() == [0.5, exp[0].item()] and st[4].tolist() == [0, exp[1].item()]


class TestFusedMatchesTorchFakeQuantize:
    def test_per_tensor_activations(self):
        with _quiet():
            tfq = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8)
        c = tfq.activation_post_process.averaging_constant
        assert c == 0.01
        st = _fused_state(1)
        stream = _Stream(21, (4, 3, 5, 5), "relu")
        gen = torch.Generator().manual_seed(22)
        for step in range(8):
            x = stream.next() + (0.0 if step % 2 else -0.3)  # some steps straddle 0
            g = torch.randn(x.shape, generator=gen)
            xt, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
            yt = tfq(xt)
            yo = ops.observe_fake_quantize(xo, *st, tfq.observer_enabled, tfq.fake_quant_enabled, c, 0, 255, False)
            assert torch.equal(yo, yt), step
            _assert_state_equal(st[0], tfq.activation_post_process.min_val, "min")
            _assert_state_equal(st[1], tfq.activation_post_process.max_val, "max")
            _assert_scale_bits(st[3], tfq.scale, f"step {step} scale")
            assert torch.equal(st[4].long(), tfq.zero_point.long())
            yt.backward(g)
            yo.backward(g)
            assert torch.equal(xo.grad, xt.grad), step

    @pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "affine"])
    def test_per_channel_weights(self, symmetric):
        qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        with _quiet():
            tfq = FakeQuantize(
                observer=MovingAveragePerChannelMinMaxObserver,
                quant_min=-128,
                quant_max=127,
                dtype=torch.qint8,
                qscheme=qscheme,
                ch_axis=0,
            )
        c = tfq.activation_post_process.averaging_constant
        w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(23)) * torch.logspace(-2, 1, 8).view(8, 1, 1, 1)
        st = _fused_state(8)
        gen = torch.Generator().manual_seed(24)
        for step in range(6):
            g = torch.randn(w.shape, generator=gen)
            wt, wo = w.clone().requires_grad_(), w.clone().requires_grad_()
            yt = tfq(wt)
            yo = ops.observe_fake_quantize(wo, *st, _flag(1), _flag(1), c, -128, 127, symmetric, False, 0)
            assert torch.equal(yo, yt), step
            _assert_scale_bits(st[3], tfq.scale, f"step {step} scale")
            assert torch.equal(st[4].long(), tfq.zero_point.long())
            yt.backward(g)
            yo.backward(g)
            assert torch.equal(wo.grad, wt.grad), step
            w = w - 0.05 * g  # an SGD-like step
            if step == 3:
                w[2] *= 8.0  # one channel grows: its scale must follow


class TestFusedBackwardAfterStateUpdate:
    @pytest.mark.parametrize("n,axis", [(1, 0), (3, 1)])
    def test_two_forwards_one_backward(self, n, axis):
        gen = torch.Generator().manual_seed(31)
        st = _fused_state(n)
        x1 = (torch.randn(4, 3, generator=gen) * 4).requires_grad_()
        x2 = (torch.randn(4, 3, generator=gen) * 0.05).requires_grad_()
        # averaging_constant 1.0: the state becomes the batch range, so the
        # second forward shrinks the scale a lot
        y1 = ops.observe_fake_quantize(x1, *st, _flag(1), _flag(1), 1.0, -8, 7, False, False, axis)
        s1, z1 = st[3].clone(), st[4].clone()
        y2 = ops.observe_fake_quantize(x2, *st, _flag(1), _flag(1), 1.0, -8, 7, False, False, axis)
        s2, z2 = st[3].clone(), st[4].clone()
        assert not torch.equal(s1, s2)
        g1 = torch.randn(4, 3, generator=gen)
        y1.backward(g1)

        def reference(x, s, z):
            xr = x.detach().clone().requires_grad_()
            ops.fake_quantize(xr, s, z, -8, 7, axis).backward(g1)
            return xr.grad

        assert torch.equal(x1.grad, reference(x1, s1, z1))
        assert not torch.equal(x1.grad, reference(x1, s2, z2))  # the test discriminates
        assert x2.grad is None
        y2.backward(g1)
        assert torch.equal(x2.grad, reference(x2, s2, z2))

    def test_flag_flipped_in_place_between_forwards(self):
        st = _fused_state(1)
        fq_on = _flag(1)
        x1 = torch.tensor([-10.0, 0.3, 50.0], requires_grad=True)
        y1 = ops.observe_fake_quantize(x1, *st, _flag(0), fq_on, None, -8, 7, False)  # scale 1, zp 0: 50 is clipped
        fq_on.zero_()
        x2 = torch.tensor([-10.0, 0.3, 50.0], requires_grad=True)
        y2 = ops.observe_fake_quantize(x2, *st, _flag(0), fq_on, None, -8, 7, False)
        (y1.sum() + y2.sum()).backward()
        assert x1.grad.tolist() == [0.0, 1.0, 0.0]
        assert x2.grad.tolist() == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------------------
# 9. fake_quantize_dynamic


def _finite_range_ref(x, axis):
    f = x.detach().float()
    fin = torch.isfinite(f)
    lo_in, hi_in = torch.where(fin, f, torch.full_like(f, INF)), torch.where(fin, f, torch.full_like(f, -INF))
    if axis is None:
        lo, hi = lo_in.min().reshape(1), hi_in.max().reshape(1)
    else:
        dims = [d for d in range(x.dim()) if d != axis % x.dim()]
        lo, hi = lo_in.amin(dims), hi_in.amax(dims)
    empty = lo > hi
    return torch.where(empty, torch.zeros_like(lo), lo), torch.where(empty, torch.zeros_like(hi), hi)


class TestFakeQuantizeDynamic:
    @pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
    @pytest.mark.parametrize("axis", [None, 1, -1, 0])
    @pytest.mark.parametrize("qmin,qmax", [(0, 255), (-128, 127), (-8, 7)])
    def test_equals_choose_qparams_plus_fake_quantize(self, axis, symmetric, qmin, qmax):
        shape = (5, 4, 3)
        ax = None if axis is None else axis % 3
        kinds = ["straddle", "relu", "negative", "tiny", "constant"][: shape[ax]] if ax is not None else "straddle"
        x = _Stream(_seed(axis, symmetric, qmin, qmax), shape, kinds, axis=ax).next()
        x.view(-1)[[1, 7, 20]] = torch.tensor([NAN, INF, -INF])
        xa = x.clone().requires_grad_()
        y = ops.fake_quantize_dynamic(xa, qmin, qmax, symmetric, axis)
        lo, hi = _finite_range_ref(x, axis)
        s, z = ops.choose_qparams(lo, hi, qmin, qmax, symmetric)
        xb = x.clone().requires_grad_()
        ye = ops.fake_quantize(xb, s, z, qmin, qmax, 0 if axis is None else axis)
        T.assert_bit_equal(y, ye)
        g = torch.randn(shape, generator=torch.Generator().manual_seed(4))
        y.backward(g)
        ye.backward(g)
        assert torch.equal(xa.grad, xb.grad)
        # STE: the gradient is g times the plain reference mask
        case = T.Case(x, s, z, qmin, qmax, 0 if axis is None else axis)
        assert torch.equal(xa.grad, g * T.ref_mask(case).float())

    @pytest.mark.parametrize("axis", [None, 1])
    @pytest.mark.parametrize("dtype", T.FLOAT_DTYPES, ids=str)
    def test_input_dtypes(self, dtype, axis):
        x = (torch.randn(3, 4, generator=torch.Generator().manual_seed(8)) * 3).to(dtype)
        x[1, 1] = NAN
        y = ops.fake_quantize_dynamic(x, -8, 7, False, axis)
        lo, hi = _finite_range_ref(x, axis)
        s, z = ops.choose_qparams(lo, hi, -8, 7, False)
        assert y.dtype == dtype
        T.assert_bit_equal(y, ops.fake_quantize(x, s, z, -8, 7, 0 if axis is None else axis))

    @pytest.mark.parametrize("axis", [None, 1])
    def test_nan_does_not_affect_range(self, axis):
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(5)) * 3
        extra = torch.tensor([[NAN, INF, -INF, NAN]])
        both = torch.cat([x, extra])  # along dim 0: every channel of axis 1 gets non-finite values
        y = ops.fake_quantize_dynamic(both, -128, 127, False, axis)
        T.assert_bit_equal(y[:3], ops.fake_quantize_dynamic(x, -128, 127, False, axis))
        assert math.isnan(y[3, 0].item()) and math.isnan(y[3, 3].item())

    def test_slice_without_finite_value_quantizes_around_zero(self):
        x = torch.tensor([[NAN, 1.0], [INF, -2.0], [-INF, 0.5]])
        y = ops.fake_quantize_dynamic(x, -128, 127, True, 1)
        # channel 0: range [0, 0], so the scale is eps; channel 1: amax 2
        exp = ops.fake_quantize(x, torch.tensor([EPS, T.f32(2.0 / 127.5)]), torch.zeros(2, dtype=torch.int32), -128, 127, 1)
        T.assert_bit_equal(y, exp)
        assert math.isnan(y[0, 0].item()) and y[1, 0].item() == T.f32(127 * EPS) and y[2, 0].item() == T.f32(-128 * EPS)

    def test_torchscript(self):
        class Dyn(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.ops.mcuq.fake_quantize_dynamic(x, -128, 127, True, 1) + torch.ops.mcuq.fake_quantize_dynamic(
                    x, 0, 255, False, None
                )

        m = Dyn()
        scripted = torch.jit.script(m)
        assert "mcuq::fake_quantize_dynamic" in str(scripted.graph)
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(6))
        assert torch.equal(scripted(x), m(x))

    def test_fused_op_scriptable_with_buffers(self):
        class Obs(torch.nn.Module):
            def __init__(self):
                super().__init__()
                for name, t in zip(("min_val", "max_val", "count", "scale", "zero_point"), _fused_state(3)):
                    self.register_buffer(name, t)
                self.register_buffer("on", torch.ones(1, dtype=torch.uint8))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.ops.mcuq.observe_fake_quantize(
                    x, self.min_val, self.max_val, self.count, self.scale, self.zero_point, self.on, self.on,
                    0.01, -128, 127, True, False, 1, 1,
                )

        eager, scripted = Obs(), torch.jit.script(Obs())
        for seed in range(3):
            x = torch.randn(2, 3, generator=torch.Generator().manual_seed(seed))
            assert torch.equal(scripted(x), eager(x))
        assert torch.equal(scripted.scale, eager.scale) and torch.equal(scripted.max_val, eager.max_val)


# ---------------------------------------------------------------------------
# 10. errors

X = torch.zeros(3, 4)


def _minmax(x=X, n=4, axis=1, group_size=1, averaging_constant=None, mn=None, mx=None, cnt=None):
    smn, smx, scnt = _state(n)
    return ops.observe_minmax_(
        x,
        smn if mn is None else mn,
        smx if mx is None else mx,
        scnt if cnt is None else cnt,
        averaging_constant,
        axis,
        group_size,
    )


def _fused(x=X, n=4, axis=1, averaging_constant=0.01, qmin=-128, qmax=127, obs=None, fq_on=None, **replace):
    names = ("min_val", "max_val", "nonfinite_count", "scale", "zero_point")
    st = dict(zip(names, _fused_state(n)))
    st.update(replace)
    return ops.observe_fake_quantize(
        x, *[st[k] for k in names], _flag(1) if obs is None else obs, _flag(1) if fq_on is None else fq_on,
        averaging_constant, qmin, qmax, False, False, axis, 1,
    )


class TestErrors:
    # state dtypes
    @pytest.mark.parametrize(
        "which,kw,fragment",
        [
            ("min_val", {"mn": torch.full((4,), INF, dtype=torch.float64)}, "min_val to be float32, but got float64"),
            ("max_val", {"mx": torch.full((4,), -INF, dtype=torch.float16)}, "max_val to be float32, but got float16"),
            ("count", {"cnt": torch.zeros(1, dtype=torch.int32)}, "nonfinite_count to be int64, but got int32"),
        ],
    )
    def test_observe_state_dtype(self, which, kw, fragment):
        with _raises(TypeError, fragment, "observe_minmax_"):
            _minmax(**kw)

    @pytest.mark.parametrize(
        "kw,fragment",
        [
            ({"zero_point": torch.zeros(4, dtype=torch.int64)}, "zero_point to be int32, but got int64"),
            ({"scale": torch.ones(4, dtype=torch.float64)}, "scale to be float32, but got float64"),
            ({"min_val": torch.full((4,), INF, dtype=torch.float64)}, "min_val to be float32, but got float64"),
            ({"nonfinite_count": torch.zeros(1, dtype=torch.int32)}, "nonfinite_count to be int64, but got int32"),
        ],
    )
    def test_fused_state_dtype(self, kw, fragment):
        with _raises(TypeError, fragment, "observe_fake_quantize"):
            _fused(**kw)

    def test_input_dtype(self):
        with _raises(TypeError, "input to be float32, float64, float16 or bfloat16, but got int64", "observe_minmax_"):
            _minmax(x=X.long())
        with _raises(TypeError, "input to be float32, float64, float16 or bfloat16, but got int32", "observe_fake_quantize"):
            _fused(x=X.int())
        with _raises(TypeError, "input to be float32, float64, float16 or bfloat16, but got int64"):
            ops.fake_quantize_dynamic(X.long(), -128, 127, True)
        with _raises(TypeError, "min_val to be a floating-point tensor, but got int64", "choose_qparams"):
            ops.choose_qparams(torch.zeros(1, dtype=torch.long), torch.ones(1), 0, 255, False)

    # sizes
    def test_state_sizes(self):
        with _raises(ValueError, "max_val to have as many elements as min_val (4), but got 3", "observe_minmax_"):
            _minmax(mx=torch.full((3,), -INF))
        with _raises(ValueError, "min_val to have 4 elements (input.size(1) / group_size = 4 / 1), but got 3", "observe_minmax_"):
            _minmax(n=3)
        with _raises(ValueError, "min_val to have 2 elements (input.size(1) / group_size = 4 / 2), but got 4"):
            _minmax(group_size=2)
        with _raises(ValueError, "nonfinite_count to have one element, but got 2", "observe_minmax_"):
            _minmax(cnt=torch.zeros(2, dtype=torch.int64))
        with _raises(ValueError, "min_val to be 0-d or 1-d with at least one element, but got a 2-d tensor of 4 elements"):
            _minmax(mn=torch.full((2, 2), INF), mx=torch.full((2, 2), -INF))
        with _raises(ValueError, "scale to have as many elements as min_val (4), but got 1", "observe_fake_quantize"):
            _fused(scale=torch.ones(1))
        with _raises(ValueError, "zero_point to have as many elements as min_val (4), but got 2", "observe_fake_quantize"):
            _fused(zero_point=torch.zeros(2, dtype=torch.int32))
        with _raises(ValueError, "max_val shaped like min_val (1-d, 2 elements), but got 1-d, 3 elements", "choose_qparams"):
            ops.choose_qparams(torch.zeros(2), torch.zeros(3), 0, 255, False)
        with _raises(ValueError, "min_val to be 0-d or 1-d, but got 2-d", "choose_qparams"):
            ops.choose_qparams(torch.zeros(2, 2), torch.zeros(2, 2), 0, 255, False)

    @pytest.mark.parametrize("c,shown", [(0.0, "got 0"), (1.5, "got 1.5"), (-0.25, "got -0.25"), (NAN, "got nan")])
    def test_averaging_constant(self, c, shown):
        mn, mx, cnt = _state(4)
        ops.observe_minmax_(torch.ones(2, 4), mn, mx, cnt, None, 1)
        before = _clone_all((mn, mx, cnt))
        with _raises(ValueError, f"averaging_constant in (0, 1], but {shown}", "observe_minmax_"):
            ops.observe_minmax_(torch.full((2, 4), 5.0), mn, mx, cnt, c, 1)
        for a, b in zip((mn, mx, cnt), before):
            assert torch.equal(a, b)  # checked before anything is written
        with _raises(ValueError, f"averaging_constant in (0, 1], but {shown}", "observe_fake_quantize"):
            _fused(averaging_constant=c)

    @pytest.mark.parametrize("which", ["obs", "fq_on"])
    def test_flags_with_two_elements(self, which):
        name = "observer_enabled" if which == "obs" else "fake_quant_enabled"
        with _raises(ValueError, f"{name} to have one element, but got 2", "observe_fake_quantize"):
            _fused(**{which: torch.ones(2)})

    def test_bad_axis(self):
        with _raises(ValueError, "axis in [-2, 2) for a 2-d input, but got 2", "observe_minmax_"):
            _minmax(axis=2)
        with _raises(ValueError, "axis in [-2, 2) for a 2-d input, but got -3", "observe_fake_quantize"):
            _fused(axis=-3)
        with _raises(ValueError, "axis in [-2, 2) for a 2-d input, but got 5"):
            ops.fake_quantize_dynamic(X, -128, 127, True, 5)
        with _raises(ValueError, "axis in [-2, 2) for a 2-d input, but got 2", "_finite_aminmax"):
            ops._finite_aminmax(X, 2)
        with _raises(ValueError, "group_size to divide the 4 channels along axis 1, but got group_size=3", "_finite_aminmax"):
            ops._finite_aminmax(X, 1, 3)
        with _raises(ValueError, "group_size to divide the 4 channels along axis 1, but got group_size=3", "observe_minmax_"):
            _minmax(n=2, group_size=3)
        # a per-channel state on a 0-d input has no channel axis
        with _raises(ValueError, "per-channel needs a channel axis", "observe_minmax_"):
            _minmax(x=torch.tensor(1.0), n=4, axis=0)

    @pytest.mark.parametrize("qmin,qmax,fragment", [
        (5, 5, "quant_min < quant_max, but got quant_min=5, quant_max=5"),
        (127, -128, "quant_min < quant_max, but got quant_min=127, quant_max=-128"),
        (0, 2**31, "[quant_min, quant_max] to fit in int32, but got [0, 2147483648]"),
    ])
    def test_quant_range(self, qmin, qmax, fragment):
        with _raises(ValueError, fragment, "choose_qparams"):
            ops.choose_qparams(torch.zeros(1), torch.ones(1), qmin, qmax, False)
        with _raises(ValueError, fragment, "observe_fake_quantize"):
            _fused(qmin=qmin, qmax=qmax)
        with _raises(ValueError, fragment):
            ops.fake_quantize_dynamic(X, qmin, qmax, False)


# ---------------------------------------------------------------------------
# 11. meta


class TestMeta:
    def test_choose_qparams(self):
        m = torch.empty(5, device="meta")
        s, z = ops.choose_qparams(m, m, -128, 127, True, True)
        assert (s.device.type, s.shape, s.dtype) == ("meta", (5,), torch.float32)
        assert (z.device.type, z.shape, z.dtype) == ("meta", (5,), torch.int32)

    @pytest.mark.parametrize("averaging_constant", [None, 0.01], ids=str)
    @pytest.mark.parametrize("n,axis,gs", [(1, 0, 1), (4, 1, 1), (2, -1, 2)])
    def test_observe_minmax(self, n, axis, gs, averaging_constant):
        x = torch.empty(3, 4, device="meta")
        mn, mx, cnt = (t.to("meta") for t in _state(n))
        assert ops.observe_minmax_(x, mn, mx, cnt, averaging_constant, axis, gs) is None
        with _raises(ValueError, "averaging_constant in (0, 1], but got 2", "observe_minmax_"):
            ops.observe_minmax_(x, mn, mx, cnt, 2.0, axis, gs)
        with _raises(TypeError, "min_val to be float32, but got float64", "observe_minmax_"):
            ops.observe_minmax_(x, mn.double(), mx, cnt, None, axis, gs)

    @pytest.mark.parametrize("dtype", T.FLOAT_DTYPES, ids=str)
    @pytest.mark.parametrize("n,axis", [(1, 0), (6, 1)])
    def test_observe_fake_quantize(self, dtype, n, axis):
        x_cpu = torch.randn(2, 6, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
        st = [t.to("meta") for t in _fused_state(n)]
        y = ops.observe_fake_quantize(x_cpu.to("meta"), *st, _flag(1).to("meta"), _flag(1).to("meta"), 0.01, -128, 127, False, False, axis)
        # the CPU op's strides (float32: the layout does not depend on the dtype)
        y_cpu = ops.observe_fake_quantize(x_cpu.float(), *_fused_state(n), _flag(1), _flag(1), 0.01, -128, 127, False, False, axis)
        assert (y.device.type, y.shape, y.dtype) == ("meta", x_cpu.shape, dtype)
        assert y.stride() == y_cpu.stride()
        with _raises(TypeError, "zero_point to be int32, but got int64", "observe_fake_quantize"):
            ops.observe_fake_quantize(x_cpu.to("meta"), *st[:4], st[4].long(), st[0][:1], st[0][:1], 0.01, -128, 127, False, False, axis)

    def test_observe_fake_quantize_autograd(self):
        x = torch.empty(4, 3, device="meta", requires_grad=True)
        st = [t.to("meta") for t in _fused_state(3)]
        y = ops.observe_fake_quantize(x, *st, _flag(1).to("meta"), _flag(1).to("meta"), None, 0, 255, False, False, 1)
        (gx,) = torch.autograd.grad(y, (x,), torch.empty(4, 3, device="meta"))
        assert gx.shape == (4, 3) and gx.device.type == "meta"

    @pytest.mark.parametrize("axis", [None, 1, -1])
    def test_fake_quantize_dynamic(self, axis):
        x = torch.empty(2, 3, 4, device="meta", dtype=torch.float16)
        y = ops.fake_quantize_dynamic(x, -128, 127, True, axis)
        assert (y.device.type, y.shape, y.dtype) == ("meta", (2, 3, 4), torch.float16)

    @pytest.mark.parametrize("axis,gs,n", [(None, 1, 1), (1, 1, 3), (-1, 2, 2)])
    def test_finite_aminmax(self, axis, gs, n):
        lo, hi, c = ops._finite_aminmax(torch.empty(2, 3, 4, device="meta"), axis, gs)
        assert (lo.device.type, lo.shape, lo.dtype) == ("meta", (n,), torch.float32)
        assert (hi.shape, hi.dtype) == ((n,), torch.float32)
        assert (c.shape, c.dtype) == ((), torch.int64)


# ---------------------------------------------------------------------------
# 12. torch >= 2.1: opcheck and torch.compile


def _opcheck():
    opcheck = getattr(torch.library, "opcheck", None)
    if opcheck is None:  # torch 2.1 .. 2.3
        from torch.testing._internal.optests import opcheck
    return opcheck


@pytest.mark.torch21
class TestTorch2:
    def test_opcheck_choose_qparams(self):
        lo, hi = torch.tensor([-1.0, 0.0, 0.5]), torch.tensor([2.0, 0.0, 3.0])
        for sym, p2 in [(False, False), (True, False), (False, True)]:
            _opcheck()(torch.ops.mcuq.choose_qparams.default, (lo, hi, -128, 127, sym, p2))

    @pytest.mark.parametrize("n,axis,gs,c", [(1, 0, 1, None), (1, 0, 1, 0.01), (4, 1, 1, 0.5), (2, -1, 2, None)])
    def test_opcheck_observe_minmax(self, n, axis, gs, c):
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(41))
        mn, mx, cnt = _state(n)
        ops.observe_minmax_(x, mn, mx, cnt, None, axis, gs)  # a seeded state, so EMA runs
        _opcheck()(torch.ops.mcuq.observe_minmax_.default, (x * 2, mn, mx, cnt, c, axis, gs))

    @pytest.mark.parametrize("n,axis", [(1, 0), (4, 1)])
    def test_opcheck_observe_fake_quantize(self, n, axis):
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(42)).requires_grad_()
        _opcheck()(
            torch.ops.mcuq.observe_fake_quantize.default,
            (x, *_fused_state(n), _flag(1), _flag(1), 0.01, -128, 127, False, False, axis, 1),
        )

    @pytest.mark.parametrize("axis", [None, 1])
    def test_opcheck_fake_quantize_dynamic(self, axis):
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(43)).requires_grad_()
        _opcheck()(torch.ops.mcuq.fake_quantize_dynamic.default, (x, -128, 127, True, axis))

    @pytest.mark.parametrize("axis,gs", [(None, 1), (1, 1), (-1, 2)])
    def test_opcheck_finite_aminmax(self, axis, gs):
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(44))
        x[0, 1] = float("nan")
        _opcheck()(torch.ops.mcuq._finite_aminmax.default, (x, axis, gs))

    @pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
    @pytest.mark.parametrize("n,axis", [(1, 0), (4, 1)])
    def test_compile_fused_forward_backward(self, n, axis, backend):
        import torch._dynamo

        def f(x, mn, mx, cnt, s, z, obs, fq_on):
            y = torch.ops.mcuq.observe_fake_quantize(x, mn, mx, cnt, s, z, obs, fq_on, 0.01, -128, 127, False, False, axis, 1)
            return y * 2.0

        def run(fn):
            st = _fused_state(n)
            outs, grads = [], []
            for seed in range(3):
                x = torch.randn(3, 4, generator=torch.Generator().manual_seed(seed)).mul(seed + 1).requires_grad_()
                y = fn(x, *st, _flag(1), _flag(1))
                y.backward(torch.ones_like(y))
                outs.append(y.detach())
                grads.append(x.grad)
            return outs, grads, st

        torch._dynamo.reset()
        compiled = torch.compile(f, fullgraph=True, backend=backend)
        eager = run(f)
        got = run(compiled)
        for a, b in zip(got[0] + got[1] + list(got[2]), eager[0] + eager[1] + list(eager[2])):
            assert torch.equal(a, b)
