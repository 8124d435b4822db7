"""Non-uniform quantization (eq. 3 of the method review): the ops
fake_quantize_levels / quantize_levels / dequantize_levels and the codebook
generators. Oracles: torch.bucketize + gather for the rule (a value on a
threshold goes up), mcuq.fake_quantize for the uniform codebook (bit for
bit), scatter-add for the levels' gradient, the published Lloyd-Max tables
(Max 1960) for the Gaussian law, and the MSE of uniform quantization with
its best clipping for the claim that non-uniform codebooks beat it."""

import math

import pytest
import torch

import mcuq
from _mcuq_testing import torch_at_least

METHODS = ["kmeans", "quantile", "lloyd_max_gaussian", "lloyd_max_laplace", "pow2", "apot"]


def _reference(x, levels, thresholds=None):
    """levels[number of thresholds <= x] per tensor, in double; NaN stays."""
    t = thresholds.double() if thresholds is not None else (levels[:-1].double() + levels[1:].double()) / 2
    index = torch.bucketize(x.double(), t, right=True)
    return torch.where(x.isnan(), x, levels[index].to(x.dtype)), index


def _special(x):
    x = x.clone()
    x.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    return x


# ---- the rule -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_each_value_takes_the_level_of_its_interval(gen, dtype):
    levels = torch.tensor([-1.5, -0.25, 0.0, 0.125, 2.0])
    x = _special(torch.randn(4000, generator=gen) * 2).to(dtype)
    x[3:8] = torch.tensor([-0.875, -0.125, 0.0625, 1.0625, 2.0]).to(dtype)  # on the midpoints: up
    expected, index = _reference(x, levels)
    got = mcuq.fake_quantize_levels(x, levels)
    assert got.dtype == dtype and torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())
    assert got[3:8].tolist() == levels[[1, 2, 3, 4, 4]].to(dtype).tolist()
    q = mcuq.quantize_levels(x, levels)
    assert q.dtype == torch.uint8
    assert torch.equal(q[1:].long(), index[1:]) and q[0].item() == 2  # NaN: the level nearest 0
    back = mcuq.dequantize_levels(q, levels, dtype=dtype)
    assert torch.equal(back[1:], got[1:])


def test_given_thresholds_decide_and_ties_go_up(gen):
    levels = torch.tensor([-1.0, 0.0, 1.0])
    thresholds = torch.tensor([-0.9, 0.1])  # eq. 3's r_i, not the midpoints
    x = torch.tensor([-0.95, -0.9, -0.5, 0.1, 0.05, 0.5])
    assert mcuq.fake_quantize_levels(x, levels, thresholds).tolist() == [-1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    y = torch.randn(1000, generator=gen)
    assert torch.equal(mcuq.fake_quantize_levels(y, levels, thresholds), _reference(y, levels, thresholds)[0])


@pytest.mark.parametrize("axis,group_size", [(0, 1), (1, 1), (-1, 2), (1, 3)])
def test_per_channel_and_per_group_rows(gen, axis, group_size):
    x = _special(torch.randn(6, 6, 4, generator=gen))
    channels = x.shape[axis]
    levels = torch.sort(torch.randn(channels // group_size, 7, generator=gen), dim=1).values
    got = mcuq.fake_quantize_levels(x, levels, axis=axis, group_size=group_size)
    moved = x.movedim(axis, 0)
    for c in range(channels):
        expected = _reference(moved[c], levels[c // group_size])[0]
        assert torch.equal(got.movedim(axis, 0)[c].nan_to_num(), expected.nan_to_num()), c
    q = mcuq.quantize_levels(x, levels, axis=axis, group_size=group_size)
    back = mcuq.dequantize_levels(q, levels, axis=axis, group_size=group_size)
    assert torch.equal(back[~x.isnan()], got[~x.isnan()])


def test_non_contiguous_and_channels_last_inputs(gen):
    x = torch.randn(2, 3, 4, 5, generator=gen).to(memory_format=torch.channels_last)
    levels = torch.sort(torch.randn(3, 4, generator=gen), dim=1).values
    got = mcuq.fake_quantize_levels(x, levels, axis=1)
    assert torch.equal(got, mcuq.fake_quantize_levels(x.contiguous(), levels, axis=1))
    t = torch.randn(5, 3, generator=gen).t()
    assert torch.equal(mcuq.fake_quantize_levels(t, levels[0]), mcuq.fake_quantize_levels(t.contiguous(), levels[0]))
    assert mcuq.fake_quantize_levels(torch.empty(0, 3), levels, axis=1).shape == (0, 3)


# ---- the uniform codebook is fake_quantize --------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_channel", [False, True])
def test_uniform_codebook_equals_fake_quantize_bit_for_bit(gen, dtype, per_channel):
    channels = 4 if per_channel else 1
    scale = torch.rand(channels, generator=gen) * 0.05 + 1e-3
    zero_point = torch.randint(-10, 10, (channels,), generator=gen, dtype=torch.int32)
    levels, thresholds = mcuq.uniform_levels(scale, zero_point, -128, 127)
    assert levels.shape == ((4, 256) if per_channel else (256,))
    x = torch.randn(channels, 3000, generator=gen) * 3
    # Every decision boundary and the floats next to it.
    k = torch.arange(-128, 127).float() + 0.5
    edge = (k[None, :] - zero_point[:, None]) * scale[:, None]
    x = torch.cat([x, edge, edge.nextafter(torch.tensor(-math.inf)), edge.nextafter(torch.tensor(math.inf))], 1)
    x = _special(x).to(dtype)
    axis_args = (0,) if per_channel else ()
    expected = mcuq.fake_quantize(x, scale, zero_point, -128, 127, *axis_args)
    got = mcuq.fake_quantize_levels(x, levels, thresholds, *axis_args)
    assert torch.equal(got.nan_to_num(), expected.nan_to_num()) and torch.equal(got.isnan(), expected.isnan())
    q = mcuq.quantize_levels(x, levels, thresholds, *axis_args).long() - 128
    assert torch.equal(q, mcuq.quantize(x, scale, zero_point, -128, 127, *axis_args).long())


# ---- gradients ---------------------------------------------------------------------------
def test_straight_through_inside_the_levels_and_learned_levels(gen):
    levels = torch.tensor([-1.0, -0.1, 0.3, 1.2], requires_grad=True)
    x = torch.cat([_special(torch.randn(500, generator=gen) * 1.5), levels.detach()]).requires_grad_()
    weights = torch.randn(x.shape, generator=gen)
    y = mcuq.fake_quantize_levels(x, levels)
    (y.nan_to_num() * weights).sum().backward()
    inside = (x.detach() >= -1.0) & (x.detach() <= 1.2)
    assert torch.equal(x.grad, torch.where(inside, weights, torch.zeros_like(weights)))
    index = _reference(x.detach(), levels.detach())[1]
    keep = ~x.detach().isnan()
    expected = torch.zeros(4, dtype=torch.float64).scatter_add_(0, index[keep], weights[keep].double()).float()
    assert torch.allclose(levels.grad, expected, rtol=1e-6)


def test_per_group_levels_gradient_sums_its_channels(gen):
    levels = torch.sort(torch.randn(2, 5, generator=gen), dim=1).values.requires_grad_()
    x = torch.randn(3, 4, 6, generator=gen)
    mcuq.fake_quantize_levels(x, levels, axis=1, group_size=2).sum().backward()
    counts = torch.stack([torch.bincount(mcuq.quantize_levels(x[:, 2 * g:2 * g + 2], levels[g].detach()).long()
                                         .flatten(), minlength=5) for g in range(2)])
    assert torch.equal(levels.grad, counts.float())


def test_a_codebook_learns_in_qat(gen):
    """Gradient descent on the levels of a 2-bit codebook lowers the MSE
    from a poor start (levels that the data barely reaches)."""
    x = torch.randn(4000, generator=gen)
    levels = torch.tensor([-3.0, -2.5, 2.5, 3.0], requires_grad=True)
    opt = torch.optim.SGD([levels], lr=0.5)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = (mcuq.fake_quantize_levels(x, torch.sort(levels).values) - x).pow(2).mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first and loss.item() < 0.15  # the 2-bit Lloyd-Max MSE is 0.1175


def test_torchscript_and_cpp_autograd():
    @torch.jit.script
    def f(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return mcuq.fake_quantize_levels(x, levels)

    levels = torch.tensor([-1.0, 0.0, 1.0], requires_grad=True)
    f(torch.tensor([0.7, -2.0]), levels).sum().backward()
    assert levels.grad.tolist() == [1.0, 0.0, 1.0]


def test_meta_shapes():
    x = torch.empty(2, 3, 4, device="meta")
    levels = torch.empty(3, 8, device="meta")
    assert mcuq.fake_quantize_levels(x, levels, axis=1).shape == (2, 3, 4)
    assert mcuq.quantize_levels(x, levels, axis=1).dtype == torch.uint8
    assert mcuq.quantize_levels(x, torch.empty(300, device="meta")).dtype == torch.int16
    levels_out, thresholds_out = mcuq.fit_levels(x, 3, "pow2", axis=1)
    assert levels_out.shape == (3, 7) and thresholds_out.shape == (3, 6)


# ---- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call,error,message", [
    (lambda: mcuq.fake_quantize_levels(torch.randn(4), torch.tensor([1.0, 0.0])), ValueError,
     r"mcuq::fake_quantize_levels: expected levels sorted in ascending order, but got 1 before 0 at index 1"),
    (lambda: mcuq.fake_quantize_levels(torch.randn(4), torch.tensor([0.0, float("inf")])), ValueError,
     r"expected levels to be finite, but got inf at \[1\]"),
    (lambda: mcuq.fake_quantize_levels(torch.randn(4), torch.tensor([0, 1])), TypeError,
     r"expected levels to be float32, but got int64"),
    (lambda: mcuq.fake_quantize_levels(torch.randn(4, 3), torch.zeros(2, 4), axis=1), ValueError,
     r"expected levels \(rows\) to have 3 elements"),
    (lambda: mcuq.fake_quantize_levels(torch.randn(4), torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.6])),
     ValueError, r"expected thresholds of shape \[1\] \(one fewer than the levels per row\), but got \[2\]"),
    (lambda: mcuq.dequantize_levels(torch.tensor([0, 3], dtype=torch.uint8), torch.tensor([0.0, 1.0])), ValueError,
     r"mcuq::dequantize_levels: expected indices in \[0, 2\), but got 3 at flat index 1"),
    (lambda: mcuq.quantize_levels(torch.randn(4), torch.zeros(300), dtype=torch.int8), ValueError,
     r"expected dtype to hold"),
    (lambda: mcuq.fit_levels(torch.randn(10), 3, "kmean"), ValueError,
     r"mcuq::fit_levels: expected method to be one of kmeans, .* but got \"kmean\""),
    (lambda: mcuq.fit_levels(torch.randn(10), 1, "pow2"), ValueError,
     r"expected bits in \[2, 8\] for \"pow2\", but got 1"),
    (lambda: mcuq.uniform_levels(torch.tensor([0.1]), torch.tensor([0]), -40000, 40000), ValueError,
     r"expected at most 65536 levels"),
])
def test_errors_name_the_op_argument_and_value(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- codebooks ----------------------------------------------------------------------------
def test_lloyd_max_gaussian_matches_the_published_table():
    x = torch.randn(100000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = ((x - x.mean()) / x.std(unbiased=False)).float()  # the law's fit is mean and deviation only
    levels, thresholds = mcuq.fit_levels(x, 3, "lloyd_max_gaussian")
    table = [0.2451, 0.7560, 1.3439, 2.1519]  # Max (1960), 8 levels: the positive half
    assert levels[4:].tolist() == pytest.approx(table, abs=2e-3)
    assert levels[:4].flip(0).neg().tolist() == pytest.approx(table, abs=2e-3)
    assert thresholds[4:].tolist() == pytest.approx([0.5005, 1.0500, 1.7479], abs=2e-3)


def test_each_method_gives_sorted_levels_of_its_count_per_channel(gen):
    w = torch.randn(4, 50, generator=gen) * torch.tensor([[0.1], [1.0], [3.0], [0.01]])
    for method in METHODS:
        levels, thresholds = mcuq.fit_levels(w, 3, method, axis=0)
        n = 7 if method in ("pow2", "apot") else 8
        assert levels.shape == (4, n) and thresholds.shape == (4, n - 1), method
        assert torch.all(levels[:, 1:] >= levels[:, :-1]) and torch.all(thresholds[:, 1:] >= thresholds[:, :-1])
        # Row by row equal to the per-tensor fit of that row.
        for c in range(4):
            assert torch.equal(levels[c], mcuq.fit_levels(w[c], 3, method)[0]), (method, c)
    pow2 = mcuq.fit_levels(w[1], 3, "pow2")[0]
    ratios = pow2[4:] / pow2[6]
    assert ratios.tolist() == [0.25, 0.5, 1.0] and pow2[3] == 0  # 0, alpha / 4, alpha / 2, alpha


def test_kmeans_never_does_worse_than_its_equal_mass_start(gen):
    x = torch.randn(5000, generator=gen).pow(3)
    for bits in (2, 3, 4):
        start = mcuq.fit_levels(x, bits, "quantile")[0]
        fitted = mcuq.fit_levels(x, bits, "kmeans")[0]
        mse = lambda lv: (mcuq.fake_quantize_levels(x, lv) - x).pow(2).mean().item()  # noqa: E731
        assert mse(fitted) < mse(start)


def _laplace(n, g):
    u = torch.rand(n, generator=g, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()


def _best_uniform_mse(x, bits):
    """Symmetric uniform quantization with its MSE-best clipping (a grid of
    2^(1/32) steps down from max |x|), the fair uniform baseline."""
    qmax = 2 ** (bits - 1) - 1
    best = math.inf
    for k in range(192):
        scale = torch.tensor([x.abs().max().item() * 2 ** (-k / 32) / qmax])
        y = mcuq.fake_quantize(x, scale, torch.zeros(1, dtype=torch.int32), -qmax - 1, qmax)
        best = min(best, (y - x).pow(2).mean().item())
    return best


def test_kmeans_never_does_worse_than_uniform_with_the_best_clipping(gen):
    """One of its starts is the MSE-best symmetric uniform grid, and Lloyd's
    iterations never raise the error."""
    for bits in (2, 3, 4):
        for rows in (torch.randn(20, 72, generator=gen), torch.randn(3, 500, generator=gen).pow(3)):
            levels = mcuq.fit_levels(rows, bits, "kmeans", axis=0)[0]
            for r in range(rows.shape[0]):
                kmeans = (mcuq.fake_quantize_levels(rows[r], levels[r]) - rows[r]).pow(2).mean().item()
                assert kmeans <= _best_uniform_mse(rows[r], bits) * 1.01, (bits, r)


@pytest.mark.parametrize("law", ["gaussian", "laplace"])
@pytest.mark.parametrize("bits", [3, 4])
def test_the_best_non_uniform_codebook_beats_uniform_quantization(law, bits):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(20000, generator=g) if law == "gaussian" else \
        _laplace(20000, g)
    uniform = _best_uniform_mse(x, bits)
    errors = {m: (mcuq.fake_quantize_levels(x, mcuq.fit_levels(x, bits, m)[0]) - x).pow(2).mean().item()
              for m in METHODS}
    best = min(errors, key=errors.get)
    print(f"\n{law} {bits}-bit MSE: uniform {uniform:.5f}; " + ", ".join(f"{m} {e:.5f}" for m, e in errors.items()))
    assert errors[best] < 0.9 * uniform
    assert errors["lloyd_max_" + law] < uniform  # the law's own optimum beats the uniform grid


@pytest.mark.torch21
@pytest.mark.skipif(not torch_at_least(2, 1), reason="opcheck")
@pytest.mark.parametrize("grad", [False, True])
def test_opcheck(gen, grad):
    opcheck = getattr(torch.library, "opcheck", None)
    if opcheck is None:
        from torch.testing._internal.optests import opcheck
    x = torch.randn(3, 4, generator=gen)
    levels = torch.sort(torch.randn(4, 5, generator=gen), dim=1).values
    if grad:
        x.requires_grad_()
        levels.requires_grad_()
    opcheck(torch.ops.mcuq.fake_quantize_levels.default, (x, levels, None, 1, 1))
    opcheck(torch.ops.mcuq.fake_quantize_levels.default, (x, levels[0], None, 0, 1))
    if not grad:
        opcheck(torch.ops.mcuq.quantize_levels.default, (x, levels, None, 1, 1))
        q = mcuq.quantize_levels(x, levels, axis=1)
        opcheck(torch.ops.mcuq.dequantize_levels.default, (q, levels, 1, 1))
