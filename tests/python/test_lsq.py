"""LearnableFakeQuantize (LSQ / LSQ+): initialization from the first batch,
learned qparams, gradient scaling, presets, prepare and freeze."""

import math

import pytest
import torch
from torch import nn

import mcuq


def test_first_batch_initializes_like_choose_qparams():
    x = torch.randn(64) * 3 + 1
    fq = mcuq.LearnableFakeQuantize(quant_min=0, quant_max=255)
    y = fq(x)
    scale, zero_point = mcuq.choose_qparams(x.min(), x.max(), 0, 255, False)
    assert torch.equal(fq.scale.detach(), scale) and torch.equal(fq.calculate_qparams()[1], zero_point)
    assert torch.equal(y, torch.ops.mcuq.fake_quantize(x, scale, zero_point, 0, 255))


def test_scale_and_zero_point_receive_scaled_lsq_gradients():
    x = torch.randn(100)
    plain = mcuq.LearnableFakeQuantize(quant_min=0, quant_max=255, grad_scaling=False)
    scaled = mcuq.LearnableFakeQuantize(quant_min=0, quant_max=255, grad_scaling=True)
    for fq in (plain, scaled):
        fq(x)  # initialize
        fq.scale.data.mul_(0.5)  # now many values clip: non-zero gradients
        fq(x).pow(2).sum().backward()
    g = 1 / math.sqrt(100 * 255)
    torch.testing.assert_close(scaled.scale.grad, plain.scale.grad * g)
    assert plain.scale.grad.abs().item() > 0 and plain.zero_point.grad.abs().item() > 0


def test_symmetric_per_channel_learns_only_the_scale():
    w = torch.randn(6, 4)
    fq = mcuq.LearnableFakeQuantize(quant_min=-7, quant_max=7, symmetric=True, axis=0)
    fq(w)
    assert fq.scale.shape == (6,) and not fq.zero_point.requires_grad
    torch.testing.assert_close(fq.scale.detach(), w.abs().amax(1) / 7)


def test_training_moves_the_scale_and_freeze_keeps_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    prepared = mcuq.prepare(model, mcuq.presets.int8().with_weight(lsq=True).with_activation(lsq=True))
    quantizers = [m for m in prepared.modules() if isinstance(m, mcuq.LearnableFakeQuantize)]
    assert len(quantizers) == 5 and all(bool(q.initialized) for q in quantizers[:2] if q.per_channel)
    x = torch.randn(256, 8)
    target = x[:, :1] * 2
    prepared(x)  # initialize the activation quantizers before the optimizer sees the parameters
    before = [q.scale.detach().clone() for q in quantizers]
    opt = torch.optim.Adam(prepared.parameters(), lr=1e-3)
    for _ in range(50):
        opt.zero_grad()
        (prepared(x) - target).pow(2).mean().backward()
        opt.step()
    assert any(not torch.equal(b, q.scale.detach()) for b, q in zip(before, quantizers))
    frozen = mcuq.freeze(prepared)
    torch.testing.assert_close(frozen(x), prepared.eval()(x))
    assert not any(isinstance(m, mcuq.LearnableFakeQuantize) for m in frozen.modules())


def test_lsq_with_power_of_two_is_refused():
    with pytest.raises(ValueError, match="lsq with power_of_two"):
        mcuq.presets.pow2().with_weight(lsq=True)


def test_a_scale_pushed_below_zero_is_used_at_the_floor():
    fq = mcuq.LearnableFakeQuantize(quant_min=-8, quant_max=7, symmetric=True)
    fq(torch.randn(10))
    fq.scale.data.fill_(-1.0)
    x = torch.randn(10, requires_grad=True)
    y = fq(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert fq.scale.grad is not None  # straight through the clamp
    assert fq.calculate_qparams()[0].item() == 2.0**-23
