"""mcuq.fake_quantize / quantize / dequantize against DESIGN.md §3.

Oracles: PyTorch's native fake-quant ops (bit-exact wherever they accept the
arguments), plain slow references from _mcuq_testing (where PyTorch differs
on purpose: +inf, NaN, levels beyond int64; and for groups and LSQ sums), and
torch.autograd.gradcheck on an honest smooth surrogate for the STE/LSQ
gradients.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import _mcuq_testing as T
import mcuq

fq = torch.ops.mcuq.fake_quantize
quantize = torch.ops.mcuq.quantize
dequantize = torch.ops.mcuq.dequantize
fq_backward = torch.ops.mcuq._fake_quantize_backward

INF = math.inf
NAN = math.nan


def _finite_or_neg_inf(x):
    """True where PyTorch's native op is defined the same as ours."""
    return bool(((x == -INF) | torch.isfinite(x)).all())


def _grads(fn, case, grad, wrt=("x",)):
    """Gradients of fn(case) to the named inputs for output gradient `grad`."""
    x = case.x.detach().clone().requires_grad_("x" in wrt)
    s = case.scale.detach().clone().requires_grad_("scale" in wrt)
    z = case.zero_point.detach().clone()
    if z.is_floating_point():
        z.requires_grad_("zero_point" in wrt)
    y = fn(x, s, z)
    inputs = [t for name, t in (("x", x), ("scale", s), ("zero_point", z)) if name in wrt]
    return y, torch.autograd.grad(y, inputs, grad)


def _ours(case):
    return lambda x, s, z: fq(x, s, z, case.quant_min, case.quant_max, case.axis, case.group_size)


def _native(case):
    return lambda x, s, z: T.torch_fake_quantize(case, x)


# ---------------------------------------------------------------------------
class TestFakeQuantizeBitExact:
    """Forward and STE mask bit-exact with PyTorch's native ops (float32)."""

    @given(T.cases("tensor", min_dims=0))
    @T.examples(250)
    def test_per_tensor_matches_torch(self, case):
        assert _finite_or_neg_inf(case.x)
        out = fq(*case.args())
        assert not T.has_nan(out)
        assert torch.equal(out, T.torch_fake_quantize(case))

    @given(T.cases("channel"))
    @T.examples(250)
    def test_per_channel_matches_torch(self, case):
        out = fq(*case.args())
        assert not T.has_nan(out)
        assert torch.equal(out, T.torch_fake_quantize(case))

    @given(T.cases("group"))
    @T.examples(120)
    def test_per_group_matches_repeated_per_channel_torch(self, case):
        # reference: scale / zero point repeat_interleave'd to one entry per
        # channel, then PyTorch's per-channel op
        out = fq(*case.args())
        assert torch.equal(out, T.torch_fake_quantize(case))
        T.assert_bit_equal(out, T.ref_fake_quantize(case), "slow reference")

    @given(T.cases("tensor", min_dims=0), T.cases("channel"), st.integers(0, 2**31 - 1))
    @T.examples(120)
    def test_input_gradient_matches_torch_backward(self, case_t, case_c, seed):
        for case in (case_t, case_c):
            g = torch.randn(case.x.shape, generator=torch.Generator().manual_seed(seed))
            y, (gx,) = _grads(_ours(case), case, g)
            y_ref, (gx_ref,) = _grads(_native(case), case, g)
            assert torch.equal(y, y_ref)
            assert torch.equal(gx, gx_ref)
            assert torch.equal(gx != 0, T.ref_mask(case) & (g != 0))

    @given(T.cases("group"), st.integers(0, 2**31 - 1))
    @T.examples(60)
    def test_input_gradient_per_group(self, case, seed):
        g = torch.randn(case.x.shape, generator=torch.Generator().manual_seed(seed))
        _, (gx,) = _grads(_ours(case), case, g)
        _, (gx_ref,) = _grads(_native(case), case, g)
        assert torch.equal(gx, gx_ref)

    def test_ties_round_half_to_even(self):
        # power-of-two scales: x * (1/s) is exact, so these are true ties
        x = torch.tensor([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]) * 0.25
        s, z = torch.tensor(0.25), torch.tensor(3)
        out = fq(x, s, z, -128, 127)
        expected = torch.tensor([-4.0, -2.0, -2.0, 0.0, 0.0, 2.0, 2.0, 4.0]) * 0.25
        assert torch.equal(out, expected)
        assert torch.equal(out, torch.fake_quantize_per_tensor_affine(x, 0.25, 3, -128, 127))
        # the zero point is added after rounding: z + round(x/s), not round(x/s + z)
        assert torch.equal(quantize(x, s, z, -128, 127), torch.tensor([-1, 1, 1, 3, 3, 5, 5, 7], dtype=torch.int8))

    def test_injected_ties_really_are_ties(self):
        # the strategy's tie injection yields inputs with x * float32(1/s) == k + 0.5
        case = T.make_case((64,), [0.1], [3], -128, 127, seed=1, edges=("tie",), edge_rate=1.0)
        p = case.x * (1.0 / case.scale)
        frac = p - torch.floor(p)
        assert int((frac == 0.5).sum()) >= 16
        assert torch.equal(fq(*case.args()), T.torch_fake_quantize(case))

    def test_bounds_inclusive_in_mask(self):
        s = torch.tensor(0.5)
        x = torch.tensor([-64.5, -64.0, -63.75, 63.5, 63.75, 64.0], requires_grad=True)
        fq(x, s, torch.tensor(0), -128, 127).sum().backward()
        # levels -129, -128, -128 (tie -127.5 -> -128), 127, 128 (127.5 -> 128), 128
        assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]

    def test_int32_range_and_16_bit_unsigned(self):
        x = torch.tensor([-3.0e9, -1.0, 0.0, 1.0, 3.0e9, 1.0e6])
        for qmin, qmax, s, z in ((-(2**31), 2**31 - 1, 1.0, 0), (0, 65535, 0.001, 12345), (-(2**15), 2**15 - 1, 7.0, -3)):
            case = T.Case(x, torch.tensor([s]), torch.tensor([z]), qmin, qmax)
            assert torch.equal(fq(*case.args()), T.torch_fake_quantize(case))
            T.assert_bit_equal(fq(*case.args()), T.ref_fake_quantize(case))

    def test_zero_d_and_empty_inputs(self):
        s, z = torch.tensor(0.1), torch.tensor(2)
        x0 = torch.tensor(1.234)
        out = fq(x0, s, z, -128, 127)
        assert out.shape == () and torch.equal(out, torch.fake_quantize_per_tensor_affine(x0, 0.1, 2, -128, 127))
        for shape, axis in (((0, 3), 1), ((3, 0), 0), ((2, 0, 3), -1), ((0, 5), -1)):
            x = torch.empty(shape)
            n = shape[axis]
            out = fq(x, torch.full((n,), 0.1), torch.zeros(n, dtype=torch.int32), -128, 127, axis)
            assert out.shape == x.shape and out.dtype == x.dtype
            out = fq(x, s, z, -128, 127)
            assert out.shape == x.shape
            xg = x.clone().requires_grad_()
            sg = torch.full((n,), 0.1, requires_grad=True)
            fq(xg, sg, torch.zeros(n, dtype=torch.int32), -128, 127, axis).sum().backward()
            assert xg.grad.shape == x.shape and torch.equal(sg.grad, torch.zeros(n))

    def test_per_channel_with_one_element_scale_is_per_tensor(self):
        case = T.make_case((3, 4), [0.3], [5], seed=2, edges=T.SAFE_EDGES)
        # axis and group_size are ignored for a one-element scale
        ref = fq(*case.args())
        assert torch.equal(fq(case.x, case.scale, case.zero_point, -128, 127, 1, 4), ref)
        assert torch.equal(ref, T.torch_fake_quantize(case))

    @pytest.mark.parametrize("axis", [0, 1, None], ids=["axis0", "axis1", "per_tensor"])
    def test_large_tensor_parallel_path(self, axis):
        # big enough for TensorIterator to split the work across threads
        shape = (4, 50_000)
        scales = [0.01 * (i % 7 + 1) for i in range(1 if axis is None else shape[axis])]
        zps = [(i % 11) - 5 for i in range(len(scales))]
        case = T.make_case(shape, scales, zps, -128, 127, axis or 0, seed=5, edges=T.SAFE_EDGES, edge_rate=0.05)
        assert torch.equal(fq(*case.args()), T.torch_fake_quantize(case))
        x = case.x.clone().requires_grad_()
        s = case.scale.clone().requires_grad_()
        y = fq(x, s, *case.qparams()[1:])
        y_ref = T.torch_fake_quantize(case, x)
        g = torch.randn(shape, generator=torch.Generator().manual_seed(6))
        gx, gs = torch.autograd.grad(y, (x, s), g)
        (gx_ref,) = torch.autograd.grad(y_ref, (x,), g)
        assert torch.equal(gx, gx_ref)
        # LSQ scale gradient, vectorised float64 formula
        s_el, _, z_el = T._element_scale(case, case.x)
        xd, sd, zd = case.x.double(), s_el.double(), z_el.double()
        level = torch.round(case.x * (1.0 / s_el)).double() + zd
        inside = (level >= -128) & (level <= 127)
        per_el = g.double() * torch.where(inside, (level - zd) - xd / sd, level.clamp(-128, 127) - zd)
        expected = per_el.sum() if case.per_tensor else per_el.sum(dim=1 - axis)
        torch.testing.assert_close(gs.double().reshape(-1), expected.reshape(-1), rtol=1e-3, atol=1e-2)

    def test_native_oracle_signatures(self):
        # what the oracles accept in this torch: per-tensor takes a python float
        # scale and an int zero point inside [qmin, qmax]; per-channel takes a
        # float32 scale and an int32 zero point, non-negative axis only
        x = torch.randn(3, 4)
        torch.fake_quantize_per_tensor_affine(x, 0.1, 3, -8, 7)
        with pytest.raises(RuntimeError):
            torch.fake_quantize_per_tensor_affine(x, 0.1, 8, -8, 7)
        torch.fake_quantize_per_channel_affine(x, torch.full((4,), 0.1), torch.zeros(4, dtype=torch.int32), 1, -8, 7)
        with pytest.raises(RuntimeError):
            torch.fake_quantize_per_channel_affine(x, torch.full((4,), 0.1), torch.zeros(4, dtype=torch.int32), -1, -8, 7)

    def test_wrapper_equals_op(self):
        case = T.make_case((2, 6), [0.1, 0.2, 0.3], [0, 1, -1], axis=1, group_size=2, seed=4, edges=T.SAFE_EDGES)
        assert torch.equal(mcuq.fake_quantize(*case.args()), fq(*case.args()))
        assert torch.equal(
            mcuq.fake_quantize(case.x, case.scale, case.zero_point, -128, 127, axis=1, group_size=2),
            fq(*case.args()),
        )


# ---------------------------------------------------------------------------
class TestFakeQuantizeNonFinite:
    """Where mcuq deliberately differs from PyTorch (DESIGN.md §3): +inf and
    levels beyond int64 saturate to quant_max (PyTorch 1.13's cast wraps them
    to quant_min; 2.x saturates them too); NaN stays NaN with zero gradient
    (PyTorch gives quant_min's value)."""

    @staticmethod
    def _run(x, per_channel):
        """(output, quant_max's value, quant_min's value), each shaped like the output."""
        if per_channel:  # each value in both channels (axis 1) of a [n, 2] input
            x = x.reshape(-1, 1).expand(-1, 2).contiguous()
            s, z = torch.tensor([0.5, 0.25]), torch.tensor([3, -2], dtype=torch.int32)
            hi = (torch.tensor([7.0, 7.0]) - z) * s
            lo = (torch.tensor([-8.0, -8.0]) - z) * s
            return fq(x, s, z, -8, 7, 1), hi.expand(x.shape), lo.expand(x.shape)
        s, z = torch.tensor(0.5), torch.tensor(3)
        return fq(x, s, z, -8, 7), torch.full_like(x, (7 - 3) * 0.5), torch.full_like(x, (-8 - 3) * 0.5)

    @pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
    def test_pos_inf_saturates_to_qmax(self, per_channel):
        out, hi, _ = self._run(torch.tensor([INF]), per_channel)
        assert torch.equal(out, hi)

    @pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
    def test_neg_inf_saturates_to_qmin(self, per_channel):
        out, _, lo = self._run(torch.tensor([-INF]), per_channel)
        assert torch.equal(out, lo)

    @pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
    def test_level_beyond_int64_saturates_to_qmax(self, per_channel):
        # x * (1/s) ~ 2^70 .. 3e38 * 4: finite input, level far beyond int64
        out, hi, lo = self._run(torch.tensor([2.0**70, 1.0e30, 3.0e38, -3.0e38]), per_channel)
        assert torch.equal(out, torch.cat([hi[:-1], lo[-1:]]))

    def test_differences_from_torch_are_exactly_the_documented_ones(self):
        x = torch.tensor([INF, -INF, NAN, 2.0**70, 1.0e30, 1.5])
        ours = fq(x, torch.tensor(0.5), torch.tensor(3), -8, 7)
        assert ours[0].item() == 2.0 and ours[3].item() == 2.0 and ours[4].item() == 2.0
        assert ours[1].item() == -5.5 and math.isnan(ours[2].item()) and ours[5].item() == 1.5
        native = torch.fake_quantize_per_tensor_affine(x, 0.5, 3, -8, 7)
        # -inf and ordinary values agree with PyTorch
        assert torch.equal(ours[[1, 5]], native[[1, 5]])

    @pytest.mark.parametrize("dtype", T.FLOAT_DTYPES, ids=str)
    def test_nan_propagates_with_zero_gradient(self, dtype):
        x = torch.tensor([NAN, 1.0, NAN], dtype=dtype, requires_grad=True)
        s = torch.tensor([0.5], requires_grad=True)
        z = torch.tensor([1.0], requires_grad=True)
        y = fq(x, s, z, -8, 7)
        assert torch.isnan(y[0]) and torch.isnan(y[2]) and y[1].item() == 1.0
        y.backward(torch.ones_like(y))
        assert x.grad.tolist() == [0.0, 1.0, 0.0]
        # NaN contributes nothing to the LSQ sums either: only x = 1.0 counts
        assert s.grad.item() == pytest.approx((2 - 0) - 1.0 / 0.5)
        assert z.grad.item() == 0.0

    def test_inf_gradients(self):
        x = torch.tensor([INF, -INF], requires_grad=True)
        s = torch.tensor([0.5], requires_grad=True)
        z = torch.tensor([1.0], requires_grad=True)
        fq(x, s, z, -8, 7).backward(torch.tensor([1.0, 1.0]))
        assert x.grad.tolist() == [0.0, 0.0]
        assert s.grad.item() == (7 - 1) + (-8 - 1)
        assert z.grad.item() == -0.5 - 0.5

    @given(
        st.sampled_from(["tensor", "channel", "group"]).flatmap(
            lambda g: T.cases(g, edges=T.SAFE_EDGES + T.UNSAFE_EDGES, max_size=4)
        )
    )
    @T.examples(100)
    def test_matches_slow_reference_on_all_edges(self, case):
        out = fq(*case.args())
        T.assert_bit_equal(out, T.ref_fake_quantize(case))
        x = case.x.clone().requires_grad_()
        g = torch.ones_like(x)
        fq(x, *case.qparams()).backward(g)
        assert torch.equal(x.grad, T.ref_mask(case).float())


# ---------------------------------------------------------------------------
class TestFakeQuantizeDtypes:
    @given(st.sampled_from(["tensor", "channel", "group"]).flatmap(lambda g: T.cases(g, dtype=torch.float64)))
    @T.examples(100)
    def test_float64_matches_torch(self, case):
        assert case.x.dtype == torch.float64
        out = fq(*case.args())
        assert out.dtype == torch.float64
        T.assert_bit_equal(out, T.ref_fake_quantize(case))
        native = T.torch_fake_quantize(case)
        if T.torch_at_least(2, 0):
            # PyTorch 2.x rounds the float64 output's product (q - z) * s
            # through float32; mcuq keeps the exact double product, as
            # PyTorch 1.13 does. Rounded to float32 the two are the same.
            assert torch.equal(out.float(), native.float())
        else:
            assert torch.equal(out, native)
        g = torch.ones_like(case.x)
        _, (gx,) = _grads(_ours(case), case, g)
        _, (gx_ref,) = _grads(_native(case), case, g)
        assert torch.equal(gx, gx_ref)

    def test_float64_ties_and_levels_use_double(self):
        # float64 input: x * double(1.0f / s), rounded in double
        x = torch.tensor([0.5, 1.5, 2.5, 1.0 + 2.0**-40, 0.5 + 2.0**-40], dtype=torch.float64)
        out = fq(x, torch.tensor(1.0), torch.tensor(0), -8, 7)
        assert out.tolist() == [0.0, 2.0, 2.0, 1.0, 1.0]
        assert torch.equal(out, torch.fake_quantize_per_tensor_affine(x, 1.0, 0, -8, 7))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
    @given(case=st.sampled_from(["tensor", "channel", "group"]).flatmap(
        lambda g: T.cases(g, edges=T.SAFE_EDGES + T.UNSAFE_EDGES)))
    @T.examples(60)
    def test_half_precision_is_float32_then_rounded(self, dtype, case):
        x = case.x.to(dtype)
        out = fq(*case.args(x))
        assert out.dtype == dtype
        # documented: computed in float32, then rounded to the output dtype
        T.assert_bit_equal(out, fq(*case.args(x.float())).to(dtype))
        T.assert_bit_equal(out, T.ref_fake_quantize(case, x))
        # the mask, too
        xg = x.clone().requires_grad_()
        fq(*case.args(xg)).backward(torch.ones_like(xg))
        assert torch.equal(xg.grad, T.ref_mask(case, x).to(dtype))

    @given(st.sampled_from(["tensor", "channel"]).flatmap(lambda g: T.cases(g, edges=("tie", "bound", "beyond", "zero"))))
    @T.examples(60)
    def test_float16_matches_torch(self, case):
        x = case.x.half()
        x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))  # +inf from float16 overflow differs on purpose
        out = fq(*case.args(x))
        assert torch.equal(out, T.torch_fake_quantize(case, x))


# ---------------------------------------------------------------------------
def _layouts(x):
    """(name, tensor) with the same shape and values as contiguous 4-d `x`."""
    sliced = torch.zeros(x.shape[:-1] + (2 * x.shape[-1],))[..., ::2]
    sliced.copy_(x)
    transposed = x.transpose(0, 2).contiguous().transpose(0, 2)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    permuted = x.permute(3, 1, 0, 2).contiguous().permute(2, 1, 3, 0)
    return [
        ("sliced", sliced),
        ("transposed", transposed),
        ("channels_last", channels_last),
        ("permuted", permuted),
    ]


QPARAM_LAYOUTS = [
    ("per_tensor", [0.07], [3], 0, 1),
    ("per_channel_axis1", [0.05, 0.1, 0.2], [0, -3, 5], 1, 1),
    ("per_channel_axis-1", [0.05, 0.1, 0.2, 0.4, 0.8], [1, 2, 3, 4, 5], -1, 1),
    ("per_group_axis2", [0.05, 0.3], [0, 7], 2, 2),
]


class TestFakeQuantizeStrides:
    @pytest.mark.parametrize("name,scales,zps,axis,gs", QPARAM_LAYOUTS, ids=[p[0] for p in QPARAM_LAYOUTS])
    def test_non_contiguous_inputs_equal_contiguous(self, name, scales, zps, axis, gs):
        case = T.make_case((2, 3, 4, 5), scales, zps, axis=axis, group_size=gs, seed=7, edges=T.SAFE_EDGES)
        ref = fq(*case.args())
        assert torch.equal(ref, T.torch_fake_quantize(case))
        for layout, x in _layouts(case.x):
            assert torch.equal(x, case.x)
            out = fq(*case.args(x))
            assert out.shape == x.shape, layout
            assert torch.equal(out, ref), layout
            # gradient on the same layout
            xg = x.detach().clone().requires_grad_()
            sg = case.scale.clone().requires_grad_()
            fq(xg, sg, *case.qparams()[1:]).backward(torch.ones_like(xg))
            assert torch.equal(xg.grad, T.ref_mask(case).float()), layout
        out = fq(*case.args(case.x.contiguous(memory_format=torch.channels_last)))
        assert out.is_contiguous(memory_format=torch.channels_last)

    @pytest.mark.parametrize("name,scales,zps,axis,gs", QPARAM_LAYOUTS, ids=[p[0] for p in QPARAM_LAYOUTS])
    def test_expanded_input(self, name, scales, zps, axis, gs):
        case = T.make_case((2, 3, 4, 5), scales, zps, axis=axis, group_size=gs, seed=8, edges=T.SAFE_EDGES)
        base = case.x[:1, :, :1].clone().requires_grad_()  # (1, 3, 1, 5)
        expanded = base.expand(2, 3, 4, 5)
        assert 0 in expanded.stride()
        out = fq(*case.args(expanded))
        assert out.shape == expanded.shape
        assert torch.equal(out, fq(*case.args(expanded.contiguous())))
        out.backward(torch.ones_like(out))
        mask = T.ref_mask(case, expanded.detach().contiguous()).float()
        assert torch.equal(base.grad, mask.sum(dim=(0, 2), keepdim=True))

    @pytest.mark.parametrize("qmin,qmax,zp", [(-128, 127, 3), (0, 255, 128), (-8, 7, 0),
                                              (-(2**21), 2**21 - 1, -5), (0, 2**22 - 2, 0)])
    @pytest.mark.parametrize("scale", [1.0, 0.1, 2.0**-20, 3.7e3])
    def test_float32_fast_path_equals_generic_path(self, qmin, qmax, zp, scale):
        # Contiguous float32 with fewer than 2^22 levels takes a vectorized
        # path with its own rounding (cpu/fake_quantize.cpp); a strided view
        # of the same values takes the generic one. Values: exact halves at
        # every magnitude up to 2^22 (scale 1 makes them the raw levels), the
        # floats next to them, random levels, and the edge values.
        g = torch.Generator().manual_seed(int(scale * 1000) + qmax)
        k = torch.randint(-(2**22), 2**22, (4000,), generator=g).double()
        halves = torch.cat([k + 0.5, (k / 1024).floor() + 0.5, torch.arange(-64, 64) + 0.5]).float() * scale
        near = torch.cat([halves.nextafter(halves + 1), halves.nextafter(halves - 1)])
        spread = torch.randn(8000, generator=g) * scale * (qmax - qmin)
        edges = torch.tensor([0.0, -0.0, INF, -INF, NAN, 1e38, -1e38, 1e-45, -1e-45, 2.0**22, 2.0**23, -(2.0**23)])
        x = torch.cat([halves, near, spread, edges * scale, edges])
        strided = torch.zeros(2 * x.numel())[::2]
        strided.copy_(x)
        for args in [([scale], [zp], 0), ([scale, scale / 3, scale * 7, scale], [zp, qmin, qmax, 0], 1)]:
            xs = [x.view(-1, 4), strided.view(-1, 4)]
            sc, z = torch.tensor(args[0]), torch.tensor(args[1], dtype=torch.int32)
            fast, generic = (fq(v, sc, z, qmin, qmax, args[2]) for v in xs)
            torch.testing.assert_close(fast, generic, rtol=0, atol=0, equal_nan=True)
            grad = torch.randn(x.numel(), generator=g).view(-1, 4)
            masks = [fq_backward(grad, v, sc, z, qmin, qmax, args[2], 1, False, False)[0] for v in xs]
            assert torch.equal(masks[0], masks[1])

    def test_non_contiguous_qparams_and_stride0_grad(self):
        x = T.make_case((4, 6), [0.1], [0], seed=9, edges=T.SAFE_EDGES).x
        s = torch.tensor([0.1, 9.0, 0.2, 9.0, 0.3, 9.0, 0.4, 9.0])[::2]
        z = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]], dtype=torch.int32)[:, 0]
        assert not s.is_contiguous() and not z.is_contiguous()
        out = fq(x, s, z, -128, 127, 0)
        assert torch.equal(out, fq(x, s.contiguous(), z.contiguous(), -128, 127, 0))
        assert torch.equal(out, torch.fake_quantize_per_channel_affine(x, s.contiguous(), z.contiguous(), 0, -128, 127))
        # sum().backward() passes a stride-0 gradient
        sg = s.clone().requires_grad_()
        xg = x.clone().requires_grad_()
        fq(xg, sg, z, -128, 127, 0).sum().backward()
        case = T.Case(x, s.contiguous(), z.contiguous(), -128, 127, 0, 1)
        assert torch.equal(xg.grad, T.ref_mask(case).float())
        torch.testing.assert_close(sg.grad.double(), T.ref_lsq_grads(case, torch.ones_like(x))[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
class _Surrogate(torch.autograd.Function):
    """A smooth function that equals mcuq.fake_quantize near a base point
    chosen away from rounding ties and clamp boundaries, and whose backward
    is mcuq's own gradient (recomputed at whatever point backward is asked
    for).

    G(x, s, z) = (clamp(x/s + c0 + z_hat, qmin, qmax) - z_hat) * s with
    c0 = round(x0/s0) - x0/s0 (the rounding residual, frozen) and
    z_hat = z + (round(z0) - z0) (the zero point's rounding, frozen). Inside
    the range dG/dx = 1, dG/ds = c0 = (q - z) - x/s, dG/dz = 0; clamped,
    dG/dx = 0, dG/ds = bound - z, dG/dz = -s: exactly the STE / LSQ / LSQ+
    formulas, so gradcheck's finite differences of G check mcuq's backward.
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, c0, z_shift, qmin, qmax, axis, group_size):
        ctx.save_for_backward(x, scale, zero_point)
        ctx.qargs = (qmin, qmax, axis, group_size)
        case = T.Case(x, scale, zero_point, qmin, qmax, axis, group_size)
        s = scale.reshape(-1)
        z = zero_point.reshape(-1).double() + z_shift.reshape(-1)
        if not case.per_tensor:
            s, z = s.repeat_interleave(group_size), z.repeat_interleave(group_size)
        s, z = case.along_axis(s, x), case.along_axis(z, x)
        u = x / s + c0 + z
        return (u.clamp(qmin, qmax) - z) * s

    @staticmethod
    def backward(ctx, grad):
        x, scale, zero_point = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        with torch.enable_grad():
            xi = x.detach().requires_grad_(need[0])
            si = scale.detach().requires_grad_(need[1])
            zi = zero_point.detach()
            if zi.is_floating_point():
                zi.requires_grad_(need[2])
            y = fq(xi, si, zi, *ctx.qargs)
            wrt = [t for t, n in zip((xi, si, zi), need) if n]
            got = list(torch.autograd.grad(y, wrt, grad)) if wrt else []
        out = [got.pop(0) if n else None for n in need]
        return (*out, None, None, None, None, None, None)


SURROGATE_LAYOUTS = {
    # granularity: (shape, axis, group_size, scales, zero points)
    "per_tensor": ((3, 5), 0, 1, [0.3], [1]),
    "per_channel": ((3, 4), -1, 1, [0.05, 0.1, 0.25, 0.3], [-1, 0, 2, 1]),
    "per_group": ((6, 2), 0, 2, [0.07, 0.2, 0.5], [0, -2, 3]),
}


def _surrogate_point(granularity, float_zero_point, seed):
    """A base point (float64) with in-range and clamped elements in every
    group, levels at least one away from the bounds and |x/s - round(x/s)| <= 0.4."""
    shape, axis, gs, scales, zps = SURROGATE_LAYOUTS[granularity]
    qmin, qmax = -8, 7
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor(scales, dtype=torch.float32).double()  # float32-exact
    if float_zero_point:
        offsets = (torch.rand(len(zps), generator=gen, dtype=torch.float64) - 0.5) * 0.8  # |.| <= 0.4
        zero_point = torch.tensor(zps, dtype=torch.float64) + offsets
    else:
        zero_point = torch.tensor(zps, dtype=torch.int64)
    case = T.Case(torch.empty(shape, dtype=torch.float64), scale, zero_point, qmin, qmax, axis, gs)
    s = case.along_axis(case.channel_scale().double(), case.x).expand(shape)
    zr = case.along_axis(case.channel_zero_point().double(), case.x).expand(shape)

    inside = torch.randint(qmin + 1, qmax, shape, generator=gen).double()
    outside = torch.where(
        torch.rand(shape, generator=gen) < 0.5,
        qmin - torch.randint(1, 4, shape, generator=gen),
        qmax + torch.randint(1, 4, shape, generator=gen),
    ).double()
    clamped = torch.rand(shape, generator=gen) < 0.35
    # every channel has one in-range and one clamped element
    ax = axis % len(shape)
    first = torch.zeros(shape, dtype=torch.bool)
    first.narrow(1 - ax, 0, 1).fill_(True)
    second = torch.zeros(shape, dtype=torch.bool)
    second.narrow(1 - ax, 1, 1).fill_(True)
    clamped = (clamped | first) & ~second
    level = torch.where(clamped, outside, inside)
    residual = (torch.rand(shape, generator=gen, dtype=torch.float64) - 0.5) * 0.8
    x = (level - zr + residual) * s
    case.x = x
    return case, level, zr, s


@pytest.mark.parametrize("granularity", list(SURROGATE_LAYOUTS))
class TestFakeQuantizeGradients:
    """STE / LSQ / LSQ+ gradients."""

    @pytest.mark.parametrize("float_zero_point", [False, True], ids=["int_zp", "float_zp"])
    @pytest.mark.parametrize("seed", [0, 1])
    def test_gradcheck_on_smooth_surrogate(self, granularity, float_zero_point, seed):
        case, level, zr, s = _surrogate_point(granularity, float_zero_point, seed)
        x, qmin, qmax = case.x, case.quant_min, case.quant_max
        # the base point is what we meant: exact levels, both regions present
        assert torch.equal(T.ref_levels(case), level.clamp(qmin, qmax).long())
        assert torch.equal(quantize(*case.args(), dtype=torch.int32).long(), level.clamp(qmin, qmax).long())
        in_range = (level >= qmin) & (level <= qmax)
        assert bool(in_range.any()) and bool((~in_range).any())

        c0 = ((level - zr) - x / s).detach()
        # the zero point's rounding (per entry), frozen: 0 for an integer zero point
        z0 = case.zero_point.double()
        z_shift = (z0.round().clamp(qmin, qmax) - z0).detach()

        xs = x.clone().requires_grad_()
        ss = case.scale.clone().requires_grad_()
        zs = case.zero_point.clone()
        inputs = [xs, ss]
        if float_zero_point:
            zs.requires_grad_()
            inputs.append(zs)

        def surrogate(xv, sv, zv=zs):
            return _Surrogate.apply(xv, sv, zv, c0, z_shift, qmin, qmax, case.axis, case.group_size)

        # G agrees with mcuq's forward at the base point
        torch.testing.assert_close(surrogate(*inputs).detach(), fq(*case.args()), rtol=0, atol=1e-12)
        assert torch.autograd.gradcheck(surrogate, tuple(inputs), eps=1e-6, atol=1e-8, rtol=1e-6)

        # and mcuq's gradients are the formulas (slow reference)
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        wrt = ("x", "scale", "zero_point") if float_zero_point else ("x", "scale")
        _, grads = _grads(_ours(case), case, g, wrt)
        assert torch.equal(grads[0], torch.where(T.ref_mask(case), g, torch.zeros_like(g)))
        ref_s, ref_z = T.ref_lsq_grads(case, g)
        torch.testing.assert_close(grads[1], ref_s, rtol=1e-12, atol=1e-12)
        if float_zero_point:
            torch.testing.assert_close(grads[2], ref_z, rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("requires", [("scale",), ("zero_point",), ("scale", "zero_point")], ids="+".join)
    def test_lsq_matches_slow_reference_float32(self, granularity, requires):
        shape, axis, gs, scales, zps = SURROGATE_LAYOUTS[granularity]
        case = T.make_case(shape, scales, zps, -8, 7, axis, gs, seed=11, edges=T.SAFE_EDGES, zero_point_dtype=torch.float32)
        g = torch.randn(shape, generator=torch.Generator().manual_seed(3))
        _, grads = _grads(_ours(case), case, g, ("x",) + requires)
        ref = dict(zip(("scale", "zero_point"), T.ref_lsq_grads(case, g)))
        assert torch.equal(grads[0], torch.where(T.ref_mask(case), g, torch.zeros_like(g)))
        for name, got in zip(requires, grads[1:]):
            assert got.dtype == torch.float32 and got.shape == case.scale.shape
            torch.testing.assert_close(got.double(), ref[name], rtol=1e-5, atol=1e-4)

    def test_lsq_matches_torch_learnable(self, granularity):
        shape, axis, gs, scales, zps = SURROGATE_LAYOUTS[granularity]
        case = T.make_case(shape, scales, zps, -8, 7, axis, gs, seed=12, edges=("bound", "beyond", "zero"),
                           zero_point_dtype=torch.float32)
        g = torch.randn(shape, generator=torch.Generator().manual_seed(4))
        wrt = ("x", "scale", "zero_point")
        y, grads = _grads(_ours(case), case, g, wrt)

        def learnable(x, s, z):
            if case.per_tensor:
                return torch._fake_quantize_learnable_per_tensor_affine(x, s, z, -8, 7, 1.0)
            # groups: one learnable entry per channel, gradients summed back per group
            se, ze = s.repeat_interleave(gs), z.repeat_interleave(gs)
            return torch._fake_quantize_learnable_per_channel_affine(x, se, ze, axis % x.dim(), -8, 7, 1.0)

        y_ref, grads_ref = _grads(learnable, case, g, wrt)
        assert torch.equal(y, y_ref)
        assert torch.equal(grads[0], grads_ref[0])
        torch.testing.assert_close(grads[1], grads_ref[1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grads[2], grads_ref[2], rtol=1e-5, atol=1e-5)

    def test_float_zero_point_is_rounded_half_even_and_clamped(self, granularity):
        shape, axis, gs, scales, zps = SURROGATE_LAYOUTS[granularity]
        n = len(scales)
        case = T.make_case(shape, scales, [0] * n, -8, 7, axis, gs, seed=13, edges=T.SAFE_EDGES)
        for zf in (0.5, 1.5, 2.5, -0.5, -2.5, 7.4, 7.6, 100.0, -8.5, -1000.0, 3.49):
            z_float = torch.full((n,), zf)
            z_int = torch.full((n,), int(min(max(round(zf), -8), 7)))  # Python round: half to even
            for op, kw in ((fq, {}), (quantize, {"dtype": torch.int8})):
                assert torch.equal(op(case.x, case.scale, z_float, -8, 7, axis, gs, **kw),
                                   op(case.x, case.scale, z_int, -8, 7, axis, gs, **kw)), (zf, op)
            # backward uses the same rounded zero point: the mask matches
            xg = case.x.clone().requires_grad_()
            zg = z_float.clone().requires_grad_()
            fq(xg, case.scale, zg, -8, 7, axis, gs).backward(torch.ones_like(xg))
            ref_case = T.Case(case.x, case.scale, z_int, -8, 7, axis, gs)
            assert torch.equal(xg.grad, T.ref_mask(ref_case).float()), zf

    def test_gradients_only_where_asked(self, granularity):
        shape, axis, gs, scales, zps = SURROGATE_LAYOUTS[granularity]
        case = T.make_case(shape, scales, zps, -8, 7, axis, gs, seed=14, zero_point_dtype=torch.float32)
        x = case.x.clone().requires_grad_()
        z = case.zero_point.clone().requires_grad_()
        y = fq(x, case.scale, z, -8, 7, axis, gs)
        y.sum().backward()
        assert case.scale.grad is None and x.grad is not None and z.grad is not None
        # integer zero point: no gradient, no error
        s = case.scale.clone().requires_grad_()
        fq(case.x, s, case.zero_point.long(), -8, 7, axis, gs).sum().backward()
        assert s.grad is not None and s.grad.shape == case.scale.shape

    def test_private_backward_op(self, granularity):
        shape, axis, gs, scales, zps = SURROGATE_LAYOUTS[granularity]
        case = T.make_case(shape, scales, zps, -8, 7, axis, gs, seed=15, edges=T.SAFE_EDGES, zero_point_dtype=torch.float32)
        g = torch.randn(shape, generator=torch.Generator().manual_seed(5))
        gi, gs_, gz = fq_backward(g, case.x, case.scale, case.zero_point, -8, 7, axis, gs, False, False)
        assert torch.equal(gi, torch.where(T.ref_mask(case), g, torch.zeros_like(g)))
        assert torch.equal(gs_, torch.zeros_like(case.scale)) and torch.equal(gz, torch.zeros_like(case.zero_point))
        gi2, gs2, gz2 = fq_backward(g, case.x, case.scale, case.zero_point, -8, 7, axis, gs, True, True)
        assert torch.equal(gi2, gi)
        ref_s, ref_z = T.ref_lsq_grads(case, g)
        torch.testing.assert_close(gs2.double(), ref_s, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(gz2.double(), ref_z, rtol=1e-5, atol=1e-4)

    @pytest.mark.parametrize("wrt", [("x",), ("x", "scale"), ("x", "scale", "zero_point")], ids="+".join)
    def test_double_backward_raises(self, granularity, wrt):
        shape, axis, gs, scales, zps = SURROGATE_LAYOUTS[granularity]
        case = T.make_case(shape, scales, zps, -8, 7, axis, gs, seed=16, zero_point_dtype=torch.float32)
        x = case.x.clone().requires_grad_()
        s = case.scale.clone().requires_grad_("scale" in wrt)
        z = case.zero_point.clone().requires_grad_("zero_point" in wrt)
        inputs = [t for t in (x, s, z) if t.requires_grad]
        y = fq(x, s, z, -8, 7, axis, gs)
        grads = torch.autograd.grad((y * y).sum(), inputs, create_graph=True)
        # first-order gradients taken with create_graph=True are the usual ones
        plain = torch.autograd.grad((y * y).sum(), inputs, retain_graph=True)
        for got, expected in zip(grads, plain):
            assert torch.equal(got.detach(), expected)
        with pytest.raises(NotImplementedError, match="double backward"):
            torch.autograd.grad(sum(g.sum() for g in grads), inputs)


@given(st.sampled_from(["tensor", "channel", "group"]).flatmap(lambda g: T.cases(g, edges=T.SAFE_EDGES + T.UNSAFE_EDGES, max_size=4)),
       st.integers(0, 2**31 - 1))
@T.examples(80)
def test_lsq_gradients_match_slow_reference(case, seed):
    case.zero_point = case.zero_point.float()
    g = torch.randn(case.x.shape, generator=torch.Generator().manual_seed(seed))
    x64 = case.x.double()
    case64 = T.Case(x64, case.scale.double(), case.zero_point.double(), *case.args()[3:])
    _, grads = _grads(_ours(case64), case64, g.double(), ("x", "scale", "zero_point"))
    ref_s, ref_z = T.ref_lsq_grads(case64, g)
    torch.testing.assert_close(grads[1], ref_s, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grads[2], ref_z, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------
class TestQuantizeDequantize:
    @given(st.sampled_from(["tensor", "channel", "group"]).flatmap(
        lambda g: T.cases(g, edges=T.SAFE_EDGES + ("pos_inf", "overflow"))))
    @T.examples(120)
    def test_round_trip_is_fake_quantize(self, case):
        q = quantize(*case.args())
        assert q.shape == case.x.shape and not q.is_floating_point()
        assert torch.equal(q.long(), T.ref_levels(case))
        if q.numel():
            assert case.quant_min <= int(q.min()) and int(q.max()) <= case.quant_max
        y = dequantize(q, *case.qparams())
        assert y.dtype == torch.float32
        assert torch.equal(y, fq(*case.args()))

    @pytest.mark.parametrize(
        "qmin,qmax,dtype",
        [
            (-128, 127, torch.int8),
            (0, 255, torch.uint8),
            (-32768, 32767, torch.int16),
            (0, 65535, torch.int32),
            (-8, 7, torch.int8),
            (0, 15, torch.int8),
            (-127, 127, torch.int8),
            (-129, 127, torch.int16),
            (0, 256, torch.int16),
            (-(2**31), 2**31 - 1, torch.int32),
        ],
    )
    def test_default_dtype(self, qmin, qmax, dtype):
        x = torch.tensor([-1.0e9, -1.0, 0.0, 0.3, 1.0e9])
        z = torch.tensor(max(qmin, min(qmax, 0)))
        q = quantize(x, torch.tensor(0.1), z, qmin, qmax)
        assert q.dtype == dtype
        assert q.tolist() == [qmin, max(qmin, int(z) - 10), int(z), int(z) + 3, qmax]
        assert mcuq.quantize(x, torch.tensor(0.1), z, qmin, qmax).dtype == dtype

    @pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32], ids=str)
    def test_explicit_dtype(self, dtype):
        qmin, qmax = (0, 100) if dtype == torch.uint8 else (-100, 100)
        case = T.make_case((3, 4), [0.1, 0.2, 0.3, 0.4], [qmin, 1, 2, qmax], qmin, qmax, 1, seed=17, edges=T.SAFE_EDGES)
        q = quantize(*case.args(), dtype=dtype)
        assert q.dtype == dtype
        assert torch.equal(q.long(), T.ref_levels(case))
        assert torch.equal(mcuq.quantize(*case.args(), dtype=dtype), q)
        assert torch.equal(dequantize(q, *case.qparams()), fq(*case.args()))

    def test_non_finite(self):
        x = torch.tensor([NAN, INF, -INF, 1.0e30, -1.0e30, 0.75])
        q = quantize(x, torch.tensor(0.5), torch.tensor(3), -8, 7)
        assert q.tolist() == [3, 7, -8, 7, -8, 5]  # NaN -> zero point
        q = quantize(x, torch.tensor([0.5] * 6), torch.tensor([3] * 6), 0, 255)
        assert q.dtype == torch.uint8 and q.tolist() == [3, 255, 0, 255, 0, 5]

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
    def test_other_input_dtypes(self, dtype):
        case = T.make_case((4, 5), [0.1, 0.2, 0.05, 1.0, 3.0], [0, 1, -1, 5, -128], -128, 127, -1, seed=18,
                           edges=T.SAFE_EDGES + T.UNSAFE_EDGES)
        x = case.x.to(dtype)
        q = quantize(*case.args(x))
        assert q.dtype == torch.int8
        assert torch.equal(q.long(), T.ref_levels(case, x))
        if dtype != torch.float64:
            assert torch.equal(q, quantize(*case.args(x.float())))

    @pytest.mark.parametrize("dtype", [None, torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
    def test_dequantize_dtype(self, dtype):
        q = torch.tensor([[-128, -1, 0, 5, 127], [0, 1, 2, 3, 4]], dtype=torch.int8)
        s = torch.tensor([0.1, 0.3])
        z = torch.tensor([-3, 2], dtype=torch.int32)
        out = dequantize(q, s, z, -128, 127, 0, dtype=dtype)
        expected64 = (q.double() - z.double()[:, None]) * s.double()[:, None]
        assert out.dtype == (dtype or torch.float32)
        if dtype == torch.float64:
            assert torch.equal(out, expected64)
        else:  # double product rounded once (via float32 for half types)
            assert torch.equal(out, expected64.float().to(out.dtype))

    @pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64], ids=str)
    def test_dequantize_accepts_integer_inputs(self, dtype):
        q = torch.tensor([0, 1, 2, 100], dtype=dtype)
        out = dequantize(q, torch.tensor(0.5), torch.tensor(1), 0, 255)
        assert out.tolist() == [-0.5, 0.0, 0.5, 49.5]

    def test_dequantize_is_not_differentiable_and_says_so(self):
        q = torch.tensor([-3, 0, 5], dtype=torch.int8)
        s = torch.tensor([0.5], requires_grad=True)
        y = dequantize(q, s, torch.zeros(1, dtype=torch.int32), -8, 7)
        assert y.requires_grad
        with pytest.raises(RuntimeError, match="not implemented"):
            y.sum().backward()

    def test_strided_and_empty(self):
        case = T.make_case((2, 3, 4, 5), [0.05, 0.1, 0.2], [0, -3, 5], axis=1, seed=19, edges=T.SAFE_EDGES)
        ref = quantize(*case.args())
        for layout, x in _layouts(case.x):
            q = quantize(*case.args(x))
            assert torch.equal(q, ref), layout
            assert torch.equal(dequantize(q, *case.qparams()), fq(*case.args(x))), layout
        q = ref.contiguous(memory_format=torch.channels_last)
        assert torch.equal(dequantize(q, *case.qparams()), dequantize(ref, *case.qparams()))
        e = torch.empty(0, 3)
        s, z = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 0, 0])
        assert quantize(e, s, z, -8, 7, 1).shape == (0, 3)
        assert dequantize(e.to(torch.int8), s, z, -8, 7, 1).shape == (0, 3)


# ---------------------------------------------------------------------------
class _PerChannelFakeQuant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor([0.05, 0.1, 0.2]))
        self.register_buffer("zero_point", torch.tensor([0, -3, 5], dtype=torch.int32))

    def forward(self, x):
        return torch.ops.mcuq.fake_quantize(x, self.scale, self.zero_point, -128, 127, 1, 1)


class _LearnedScale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([0.05, 0.1, 0.2]))
        self.register_buffer("zero_point", torch.tensor([0, -3, 5], dtype=torch.int32))

    def forward(self, x):
        return torch.ops.mcuq.fake_quantize(x, self.scale, self.zero_point, -128, 127, -2, 1)


class TestTorchScript:
    def _x(self):
        return T.make_case((2, 3, 4), [0.05, 0.1, 0.2], [0, -3, 5], axis=1, seed=20, edges=T.SAFE_EDGES).x

    @pytest.mark.parametrize("how", ["script", "trace"])
    def test_module_save_load(self, how, tmp_path):
        module = _PerChannelFakeQuant()
        x = self._x()
        eager = module(x)
        compiled = torch.jit.script(module) if how == "script" else torch.jit.trace(module, (x,))
        assert "mcuq::fake_quantize" in str(compiled.graph)
        path = tmp_path / f"{how}.pt"
        compiled.save(str(path))
        loaded = torch.jit.load(str(path))
        assert torch.equal(loaded(x), eager)
        x2 = self._x() * 3  # another input through the same graph
        assert torch.equal(loaded(x2), module(x2))
        # gradient flows through the loaded module
        xg = x.clone().requires_grad_()
        loaded(xg).sum().backward()
        case = T.Case(x, module.scale, module.zero_point, -128, 127, 1, 1)
        assert torch.equal(xg.grad, T.ref_mask(case).float())

    def test_learned_scale_gradient_through_loaded_script(self, tmp_path):
        module = _LearnedScale()
        x = self._x()
        module(x).sum().backward()
        expected = module.scale.grad.clone()
        path = tmp_path / "lsq.pt"
        torch.jit.script(_LearnedScale()).save(str(path))
        loaded = torch.jit.load(str(path))
        loaded(x).sum().backward()
        assert torch.equal(loaded.scale.grad, expected)

    def test_script_wrapper_functions(self):
        case = T.make_case((2, 6), [0.1, 0.2, 0.3], [0, 1, -1], axis=1, group_size=2, seed=21, edges=T.SAFE_EDGES)
        scripted_fq = torch.jit.script(mcuq.fake_quantize)
        assert torch.equal(scripted_fq(*case.args()), fq(*case.args()))
        scripted_q = torch.jit.script(mcuq.quantize)
        scripted_dq = torch.jit.script(mcuq.dequantize)
        q = scripted_q(*case.args())
        assert torch.equal(q, quantize(*case.args()))
        assert torch.equal(scripted_q(*case.args(), torch.int16), quantize(*case.args(), dtype=torch.int16))
        assert torch.equal(scripted_dq(q, *case.qparams()), fq(*case.args()))

        @torch.jit.script
        def uses_wrapper(x: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return mcuq.fake_quantize(x, s, z, -128, 127, axis=1, group_size=2)

        assert torch.equal(uses_wrapper(case.x, case.scale, case.zero_point), fq(*case.args()))


# ---------------------------------------------------------------------------
class TestMeta:
    """Shapes and dtypes without data (the Meta kernels)."""

    @staticmethod
    def _meta(*tensors):
        return [t.to("meta") for t in tensors]

    @pytest.mark.parametrize("dtype", T.FLOAT_DTYPES, ids=str)
    @pytest.mark.parametrize("shape,n,axis,gs", [((2, 3, 4), 1, 0, 1), ((2, 3, 4), 3, 1, 1), ((2, 6), 3, -1, 2), ((), 1, 0, 1), ((0, 4), 4, 1, 1)])
    def test_fake_quantize_and_backward(self, dtype, shape, n, axis, gs):
        x, s, z = self._meta(torch.empty(shape, dtype=dtype), torch.ones(n), torch.zeros(n, dtype=torch.int32))
        out = fq(x, s, z, -128, 127, axis, gs)
        assert out.device.type == "meta" and out.shape == x.shape and out.dtype == dtype
        zf = z.float()
        gi, gs_, gz = fq_backward(x, x, s, zf, -128, 127, axis, gs, True, True)
        assert (gi.shape, gi.dtype) == (x.shape, dtype)
        assert (gs_.shape, gs_.dtype) == (s.shape, s.dtype)
        assert (gz.shape, gz.dtype) == (zf.shape, zf.dtype)

    def test_channels_last_strides(self):
        x = torch.empty(2, 3, 4, 5, device="meta").contiguous(memory_format=torch.channels_last)
        s, z = self._meta(torch.ones(3), torch.zeros(3, dtype=torch.int32))
        cpu = fq(torch.zeros(2, 3, 4, 5).contiguous(memory_format=torch.channels_last),
                 torch.ones(3), torch.zeros(3, dtype=torch.int32), -128, 127, 1)
        assert fq(x, s, z, -128, 127, 1).stride() == cpu.stride()

    @pytest.mark.parametrize(
        "qmin,qmax,kw,dtype",
        [
            (-128, 127, {}, torch.int8),
            (0, 255, {}, torch.uint8),
            (-32768, 32767, {}, torch.int16),
            (0, 65535, {}, torch.int32),
            (-8, 7, {"dtype": torch.int32}, torch.int32),
        ],
    )
    def test_quantize(self, qmin, qmax, kw, dtype):
        x, s, z = self._meta(torch.empty(2, 3), torch.ones(3), torch.zeros(3, dtype=torch.int32).clamp(qmin, qmax))
        q = quantize(x, s, z, qmin, qmax, 1, 1, **kw)
        assert q.device.type == "meta" and q.shape == (2, 3) and q.dtype == dtype

    @pytest.mark.parametrize("dtype", [None, torch.float64, torch.float16, torch.bfloat16], ids=str)
    def test_dequantize(self, dtype):
        q, s, z = self._meta(torch.empty(2, 3, dtype=torch.int16), torch.ones(1), torch.zeros(1, dtype=torch.int32))
        out = dequantize(q, s, z, -1000, 1000, dtype=dtype)
        assert out.device.type == "meta" and out.shape == (2, 3) and out.dtype == (dtype or torch.float32)

    def test_autograd_on_meta(self):
        x = torch.empty(2, 3, device="meta", requires_grad=True)
        s = torch.ones(3, device="meta", requires_grad=True)
        z = torch.zeros(3, device="meta", requires_grad=True)
        y = fq(x, s, z, -8, 7, 1)
        gx, gs, gz = torch.autograd.grad(y, (x, s, z), torch.empty(2, 3, device="meta"))
        assert (gx.shape, gs.shape, gz.shape) == ((2, 3), (3,), (3,))


# ---------------------------------------------------------------------------
def _opcheck():
    opcheck = getattr(torch.library, "opcheck", None)
    if opcheck is None:  # torch 2.1 .. 2.3
        from torch.testing._internal.optests import opcheck
    return opcheck


def _opcheck_cases():
    per_tensor = T.make_case((3, 4), [0.1], [2], seed=30, edges=("tie", "bound", "beyond", "zero"))
    per_channel = T.make_case((3, 4), [0.1, 0.2, 0.05, 1.0], [0, 1, -1, 5], axis=-1, seed=31, edges=("tie", "bound", "beyond"))
    per_group = T.make_case((6, 2), [0.07, 0.2, 0.5], [0, -2, 3], axis=0, group_size=2, seed=32, edges=("tie", "bound"))
    return {"per_tensor": per_tensor, "per_channel": per_channel, "per_group": per_group}


@pytest.mark.torch21
class TestTorch2:
    """torch >= 2.1 only: opcheck (schema, autograd registration, fake
    tensors, AOT dispatch) and torch.compile."""

    @pytest.mark.parametrize("name", ["per_tensor", "per_channel", "per_group"])
    @pytest.mark.parametrize("grad", ["none", "input", "scale", "scale+zero_point"])
    def test_opcheck_fake_quantize(self, name, grad):
        case = _opcheck_cases()[name]
        x, s, z = case.x.clone(), case.scale.clone(), case.zero_point.clone()
        if grad != "none":
            x.requires_grad_()
        if "scale" in grad:
            s.requires_grad_()
        if "zero_point" in grad:
            z = z.float().requires_grad_()
        _opcheck()(torch.ops.mcuq.fake_quantize.default, (x, s, z, case.quant_min, case.quant_max, case.axis, case.group_size))

    @pytest.mark.parametrize("name", ["per_tensor", "per_channel", "per_group"])
    def test_opcheck_quantize_dequantize(self, name):
        case = _opcheck_cases()[name]
        _opcheck()(torch.ops.mcuq.quantize.default, case.args())
        _opcheck()(torch.ops.mcuq.quantize.default, case.args(), {"dtype": torch.int16})
        q = quantize(*case.args())
        _opcheck()(torch.ops.mcuq.dequantize.default, (q, *case.qparams()))
        _opcheck()(torch.ops.mcuq.dequantize.default, (q, *case.qparams()), {"dtype": torch.float64})

    @pytest.mark.parametrize("name", ["per_tensor", "per_channel", "per_group"])
    @pytest.mark.parametrize("need", [(False, False), (True, False), (True, True)], ids=str)
    def test_opcheck_backward(self, name, need):
        case = _opcheck_cases()[name]
        z = case.zero_point.float()
        g = torch.randn(case.x.shape, generator=torch.Generator().manual_seed(33))
        _opcheck()(
            torch.ops.mcuq._fake_quantize_backward.default,
            (g, case.x, case.scale, z, case.quant_min, case.quant_max, case.axis, case.group_size, *need),
        )

    @pytest.mark.parametrize("name", ["per_tensor", "per_channel", "per_group"])
    @pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
    def test_compile_forward_backward(self, name, backend):
        import torch._dynamo

        case = _opcheck_cases()[name]
        qmin, qmax, axis, gs = case.quant_min, case.quant_max, case.axis, case.group_size

        def f(x, s, z):
            y = torch.ops.mcuq.fake_quantize(x, s, z, qmin, qmax, axis, gs)
            return y * 2.0

        def run(fn):
            x = case.x.clone().requires_grad_()
            s = case.scale.clone().requires_grad_()
            z = case.zero_point.float().requires_grad_()
            y = fn(x, s, z)
            y.backward(torch.ones_like(y))
            return y.detach(), x.grad, s.grad, z.grad

        torch._dynamo.reset()
        compiled = torch.compile(f, fullgraph=True, backend=backend)
        eager = run(f)
        got = run(compiled)
        assert torch.equal(got[0], eager[0])
        assert torch.equal(got[1], eager[1])
        torch.testing.assert_close(got[2], eager[2])
        torch.testing.assert_close(got[3], eager[3])


def test_qparams_updated_in_place_after_forward_keep_backward_valid():
    # An observer may update scale/zero_point in place before backward of
    # an earlier forward (two forwards, one backward); the gradient must be
    # the one of the qparams the forward used.
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(7), requires_grad=True)
    s = torch.tensor([0.1, 0.2, 0.3])
    z = torch.zeros(3, dtype=torch.int32)
    y = fq(x, s, z, -8, 7, 1)
    expected = torch.fake_quantize_per_channel_affine(x.detach(), s, z, 1, -8, 7)
    mask = (x.detach() / s).round().abs() <= 7  # no ties in this sample
    s.mul_(0.01)
    z.add_(1)
    y.sum().backward()
    assert torch.equal(y.detach(), expected)
    assert torch.equal(x.grad, mask.float())
