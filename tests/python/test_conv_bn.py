"""mcuq.conv_bn: Conv2d + BatchNorm2d (+ ReLU) QAT modules.

Oracles: nn.Conv2d followed by nn.BatchNorm2d (train and eval) with the
weight fake-quant off; PyTorch's torch.fake_quantize_per_channel_affine on the
folded weight with the per-channel symmetric scale amax(|w_fold|) / 127 with
it on; the eager module for its TorchScript twin.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mcuq
from mcuq.conv_bn import ConvBn2d, ConvBnReLU2d, freeze_bn_stats, update_bn_stats

# (in, out, kernel, stride, padding, dilation, groups)
CONFIGS = {
    "plain": (3, 8, 3, 1, 0, 1, 1),
    "strided": (3, 8, 3, 2, 0, 1, 1),
    "padded": (3, 8, (3, 5), 1, (1, 2), 1, 1),
    "dilated": (4, 6, 3, 1, 2, 2, 1),
    "grouped": (4, 8, 3, 2, 1, 1, 2),
    "depthwise": (6, 6, 3, 1, 1, 1, 6),
    "pointwise": (5, 7, 1, 1, 0, 1, 1),
}


def _float_pair(name, bias, seed=0, momentum=0.1):
    """A float Conv2d + BatchNorm2d with non-trivial BN parameters and statistics."""
    g = torch.Generator().manual_seed(seed)
    cin, cout, k, stride, padding, dilation, groups = CONFIGS[name]
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, bias=bias)
    bn = nn.BatchNorm2d(cout, momentum=momentum)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
        if bias:
            conv.bias.copy_(torch.randn(cout, generator=g))
        bn.weight.copy_(torch.randn(cout, generator=g))
        bn.bias.copy_(torch.randn(cout, generator=g))
        # running statistics near those of the data (as after training), so
        # the outputs have unit scale and 1e-5 is a float32-rounding bound
        y = conv(_input(conv, seed=seed + 1000))
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3))
        bn.running_mean.copy_(mean + 0.3 * var.sqrt() * torch.randn(cout, generator=g))
        bn.running_var.copy_(var * (0.5 + torch.rand(cout, generator=g)))
        bn.num_batches_tracked.fill_(5)
    return conv, bn


def _input(conv, seed=1, n=4, hw=(9, 10)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, conv.in_channels, *hw, generator=g) + 0.2


def _float_mode(m):
    m.weight_fake_quant.disable_fake_quant()
    m.weight_fake_quant.disable_observer()
    return m


def _maxdiff(a, b):
    return (a - b).abs().max().item()


def _reference_fold(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * s.reshape(-1, 1, 1, 1)
    b = conv.bias if conv.bias is not None else torch.zeros_like(bn.bias)
    return w, bn.bias + (b - bn.running_mean) * s


params_configs = pytest.mark.parametrize("name", sorted(CONFIGS))
params_bias = pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])


@params_configs
@params_bias
def test_eval_float_equals_conv_then_bn(name, bias):
    conv, bn = _float_pair(name, bias)
    m = _float_mode(ConvBn2d.from_modules(conv, bn)).eval()
    x = _input(conv)
    with torch.no_grad():
        expected = bn.eval()(conv(x))
        got = m(x)
    assert got.shape == expected.shape
    assert _maxdiff(got, expected) <= 1e-5
    assert int(m.num_steps) == 0  # eval forwards are not training steps


@params_configs
@params_bias
@pytest.mark.parametrize("momentum", [0.1, None], ids=["ema", "cumulative"])
def test_train_float_equals_conv_then_bn_train(name, bias, momentum):
    conv, bn = _float_pair(name, bias, momentum=momentum)
    m = _float_mode(ConvBn2d.from_modules(conv, bn)).train()
    bn.train()
    for step in range(3):
        x = _input(conv, seed=10 + step)
        expected = bn(conv(x))
        got = m(x)
        assert _maxdiff(got, expected) <= 1e-5
        assert _maxdiff(m.bn.running_mean, bn.running_mean) <= 1e-5
        assert _maxdiff(m.bn.running_var, bn.running_var) <= 1e-5
        assert int(m.bn.num_batches_tracked) == int(bn.num_batches_tracked)
    # the same function, so the same gradients
    g = torch.Generator().manual_seed(99)
    dy = torch.randn(expected.shape, generator=g)
    ref = torch.autograd.grad(expected, [conv.weight, bn.weight, bn.bias], dy)
    ours = torch.autograd.grad(got, [m.weight, m.bn.weight, m.bn.bias], dy)
    for r, o in zip(ref, ours):
        assert _maxdiff(r, o) <= 1e-4 * max(1.0, r.abs().max().item())
    if bias:
        (rb,) = torch.autograd.grad(bn(conv(x)), [conv.bias], dy)
        (ob,) = torch.autograd.grad(m(x), [m.bias], dy)
        assert _maxdiff(rb, ob) <= 1e-4 * max(1.0, rb.abs().max().item())


def test_fake_quant_train_uses_running_std_and_batch_stats():
    conv, bn = _float_pair("grouped", True)
    m = ConvBn2d.from_modules(conv, bn).train()
    x = _input(conv)
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    ws = (conv.weight * s.reshape(-1, 1, 1, 1)).detach()
    scale = ws.abs().amax(dim=(1, 2, 3)) / 127
    wq = torch.fake_quantize_per_channel_affine(ws, scale, torch.zeros(8, dtype=torch.int32), 0, -127, 127)
    y = F.conv2d(x, wq, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    y = y / s.reshape(1, -1, 1, 1) + conv.bias.reshape(1, -1, 1, 1)
    expected = bn.train()(y)
    got = m(x)
    assert _maxdiff(got, expected) <= 1e-5
    assert _maxdiff(m.bn.running_mean, bn.running_mean) <= 1e-6
    assert _maxdiff(m.bn.running_var, bn.running_var) <= 1e-6


@pytest.mark.parametrize("name", ["plain", "grouped", "depthwise"])
@params_bias
def test_fake_quant_eval_is_conv_with_quantized_folded_weight(name, bias):
    conv, bn = _float_pair(name, bias)
    m = ConvBn2d.from_modules(conv, bn).eval()
    x = _input(conv)
    with torch.no_grad():
        got = m(x)
        w_fold, b_fold = _reference_fold(conv, bn)
        scale = w_fold.abs().amax(dim=(1, 2, 3)) / 127
        zp = torch.zeros(conv.out_channels, dtype=torch.int32)
        wq = torch.fake_quantize_per_channel_affine(w_fold, scale, zp, 0, -127, 127)
        expected = F.conv2d(x, wq, b_fold, conv.stride, conv.padding, conv.dilation, conv.groups)
        ours_w, ours_b = m.folded_weight_and_bias()
    assert _maxdiff(m.weight_fake_quant.scale, scale) <= 1e-9
    assert _maxdiff(ours_w, w_fold) <= 1e-6 and _maxdiff(ours_b, b_fold) <= 1e-6
    assert _maxdiff(got, expected) <= 1e-6
    # the quantization is visible: not the float result
    assert _maxdiff(got, bn.eval()(conv(x)).detach()) > 1e-4


@pytest.mark.parametrize("fake_quant", [False, True], ids=["float", "fq"])
def test_zero_gamma_channel_stays_finite(fake_quant):
    conv, bn = _float_pair("plain", True)
    with torch.no_grad():
        bn.weight[[1, 5]] = 0.0
    m = ConvBn2d.from_modules(conv, bn).train()
    if not fake_quant:
        _float_mode(m)
    x = _input(conv)
    y = m(x)
    assert torch.isfinite(y).all()
    assert torch.isfinite(m.bn.running_mean).all() and torch.isfinite(m.bn.running_var).all()
    assert torch.equal(y[:, 1], torch.full_like(y[:, 1], bn.bias[1].item()))
    if not fake_quant:
        assert _maxdiff(y, bn.train()(conv(x))) <= 1e-5
        assert _maxdiff(m.bn.running_mean, bn.running_mean) <= 1e-5
    y.square().sum().backward()
    assert torch.isfinite(m.weight.grad).all() and torch.isfinite(m.bn.weight.grad).all()
    assert torch.isfinite(m.eval()(x)).all()


def test_freeze_after_freeze_bn_step():
    conv, bn = _float_pair("plain", False)
    m = _float_mode(ConvBn2d.from_modules(conv, bn, freeze_bn_step=2)).train()
    bn.train()
    for step in range(2):  # two steps with batch statistics
        x = _input(conv, seed=20 + step)
        assert _maxdiff(m(x), bn(conv(x))) <= 1e-5
        assert not m.bn_stats_frozen()
    mean, var = m.bn.running_mean.clone(), m.bn.running_var.clone()
    assert _maxdiff(mean, bn.running_mean) <= 1e-5
    for step in range(3):  # then frozen: running statistics used, not changed
        x = _input(conv, seed=30 + step)
        got = m(x)
        assert m.bn_stats_frozen()
        assert torch.equal(m.bn.running_mean, mean) and torch.equal(m.bn.running_var, var)
        assert int(m.bn.num_batches_tracked) == 7
        assert _maxdiff(got, bn.eval()(conv(x))) <= 1e-5
        bn.train()
    assert int(m.num_steps) == 5
    # thawing resumes the updates (the automatic freeze does not come back)
    m.update_bn_stats()
    x = _input(conv, seed=40)
    assert _maxdiff(m(x), bn.train()(conv(x))) <= 1e-5
    assert not torch.equal(m.bn.running_mean, mean)
    assert not m.bn_stats_frozen()


def test_freeze_bn_stats_method_and_apply_helpers():
    conv, bn = _float_pair("strided", True)
    model = nn.Sequential(_float_mode(ConvBn2d.from_modules(conv, bn)), nn.Flatten())
    m = model[0]
    model.apply(freeze_bn_stats)
    assert m.bn_stats_frozen()
    mean = m.bn.running_mean.clone()
    x = _input(conv)
    with torch.no_grad():
        got = model.train()(x)
    assert torch.equal(m.bn.running_mean, mean)
    assert _maxdiff(got, nn.Flatten()(bn.eval()(conv(x)))) <= 1e-5
    model.apply(update_bn_stats)
    assert not m.bn_stats_frozen()
    model.train()(x)
    assert not torch.equal(m.bn.running_mean, mean)


def test_freeze_bn_step_zero_freezes_from_the_start():
    conv, bn = _float_pair("plain", False)
    m = _float_mode(ConvBn2d.from_modules(conv, bn, freeze_bn_step=0)).train()
    mean = m.bn.running_mean.clone()
    m(_input(conv))
    assert m.bn_stats_frozen() and torch.equal(m.bn.running_mean, mean)


@params_configs
@params_bias
def test_to_float_equals_eval_float_forward(name, bias):
    conv, bn = _float_pair(name, bias)
    m = ConvBn2d.from_modules(conv, bn).eval()
    f = m.to_float()
    assert type(f) is nn.Conv2d and f.bias is not None
    assert not f.training
    x = _input(conv)
    with torch.no_grad():
        expected = _float_mode(copy.deepcopy(m))(x)
        assert _maxdiff(f(x), expected) <= 1e-5
        assert _maxdiff(f(x), bn.eval()(conv(x))) <= 1e-5
        w_fold, _ = m.folded_weight_and_bias()
    assert torch.equal(f.weight, w_fold)  # float, not fake-quantized
    assert f.weight.requires_grad and f.weight.grad_fn is None


def test_gradients_flow_and_sgd_lowers_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    m = ConvBnReLU2d(3, 8, 3, padding=1, bias=True)
    head = nn.Conv2d(8, 1, 1)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 1))
    x = torch.randn(16, 3, 8, 8, generator=g)
    with torch.no_grad():
        target = teacher(x)
    params = list(m.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    losses = []
    for step in range(30):
        opt.zero_grad()
        loss = F.mse_loss(head(m(x)), target)
        loss.backward()
        if step == 0:
            for p in (m.weight, m.bias, m.bn.weight, m.bn.bias):
                assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # and in the frozen (folded) path too
    m.freeze_bn_stats()
    m.zero_grad()
    F.mse_loss(head(m(x)), target).backward()
    for p in (m.weight, m.bn.weight, m.bn.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_eval_gradients_reach_the_weight_and_bn_parameters():
    conv, bn = _float_pair("depthwise", False)
    m = ConvBn2d.from_modules(conv, bn).eval()
    m(_input(conv)).square().sum().backward()
    for p in (m.weight, m.bn.weight, m.bn.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [ConvBn2d, ConvBnReLU2d])
@pytest.mark.parametrize("momentum", [0.1, None], ids=["ema", "cumulative"])
def test_torchscript_matches_eager(cls, momentum):
    conv, bn = _float_pair("grouped", True, momentum=momentum)
    eager = cls.from_modules(conv, bn, freeze_bn_step=2)
    scripted = torch.jit.script(copy.deepcopy(eager))
    for step in range(4):  # batch statistics, then frozen
        x = _input(conv, seed=50 + step)
        a, b = eager(x), scripted(x)
        assert torch.equal(a, b)
        assert torch.equal(eager.bn.running_var, scripted.bn.running_var)
    assert scripted.bn_stats_frozen()
    scripted.update_bn_stats()
    eager.update_bn_stats()
    x = _input(conv, seed=60)
    assert torch.equal(eager(x), scripted(x))
    eager.eval()
    scripted.eval()
    assert torch.equal(eager(x), scripted(x))
    w1, b1 = scripted.folded_weight_and_bias()
    w2, b2 = eager.folded_weight_and_bias()
    assert torch.equal(w1, w2) and torch.equal(b1, b2)


def test_torchscript_save_load_roundtrip(tmp_path):
    conv, bn = _float_pair("plain", False)
    m = ConvBnReLU2d.from_modules(conv, bn).eval()
    x = _input(conv)
    expected = m(x)
    path = tmp_path / "convbn.pt"
    torch.jit.save(torch.jit.script(m), str(path))
    loaded = torch.jit.load(str(path))
    assert torch.equal(loaded(x), expected)


@params_bias
def test_relu_variant(bias):
    conv, bn = _float_pair("padded", bias)
    plain = ConvBn2d.from_modules(conv, bn)
    relu = ConvBn2d.from_modules(conv, bn, relu=True)
    assert type(relu) is ConvBnReLU2d and relu.with_relu and not plain.with_relu
    assert type(ConvBnReLU2d.from_modules(conv, bn)) is ConvBnReLU2d
    x = _input(conv)
    for mode in (True, False):
        a = copy.deepcopy(plain).train(mode)
        b = copy.deepcopy(relu).train(mode)
        ya, yb = a(x), b(x)
        assert torch.equal(F.relu(ya), yb)
        assert (yb >= 0).all() and (ya < 0).any()
    f = relu.eval().to_float()
    assert isinstance(f, nn.Sequential) and type(f[0]) is nn.Conv2d and type(f[1]) is nn.ReLU
    with torch.no_grad():
        assert _maxdiff(f(x), F.relu(bn.eval()(conv(x)))) <= 1e-5


def test_weight_fake_quant_module_or_factory_and_switches():
    conv, bn = _float_pair("plain", False)
    fq = mcuq.FakeQuantize(quant_min=-7, quant_max=7, symmetric=True, axis=0)
    m = ConvBn2d.from_modules(conv, bn, weight_fake_quant=fq)
    assert m.weight_fake_quant is fq
    factory = mcuq.FakeQuantize.with_args(quant_min=-7, quant_max=7, symmetric=True, axis=0)
    m2 = ConvBn2d.from_modules(conv, bn, weight_fake_quant=factory)
    assert isinstance(m2.weight_fake_quant, mcuq.FakeQuantize) and m2.weight_fake_quant.quant_max == 7
    d = ConvBn2d(3, 8, 3)
    assert d.weight_fake_quant.quant_min == -127 and d.weight_fake_quant.per_channel
    assert d.weight_fake_quant.symmetric and d.weight_fake_quant.axis == 0
    m.disable_fake_quant().disable_observer()
    assert not bool(fq.fake_quant_enabled) and not bool(fq.observer_enabled)
    m.enable_fake_quant().enable_observer()
    assert bool(fq.fake_quant_enabled) and bool(fq.observer_enabled)
    with pytest.raises(TypeError):
        ConvBn2d(3, 8, 3, weight_fake_quant=3)


def test_state_dict_roundtrip():
    conv, bn = _float_pair("grouped", True)
    m = ConvBn2d.from_modules(conv, bn, freeze_bn_step=1)
    x = _input(conv)
    m(x)
    m(x)
    fresh = ConvBn2d(4, 8, 3, stride=2, padding=1, groups=2, bias=True, freeze_bn_step=1)
    fresh.load_state_dict(m.state_dict())
    assert fresh.bn_stats_frozen() and int(fresh.num_steps) == 2
    m.eval()
    fresh.eval()
    assert torch.equal(m(x), fresh(x))


def test_padding_mode_and_affine_free_bn():
    g = torch.Generator().manual_seed(5)
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    bn = nn.BatchNorm2d(4, affine=False)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(4, generator=g))
        bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    m = _float_mode(ConvBn2d.from_modules(conv, bn)).eval()
    assert not m.bn.weight.requires_grad
    x = torch.randn(2, 3, 6, 6, generator=g)
    with torch.no_grad():
        assert _maxdiff(m(x), bn.eval()(conv(x))) <= 1e-5
        assert _maxdiff(m.to_float()(x), bn(conv(x))) <= 1e-5


def test_from_modules_checks():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match="output channels"):
        ConvBn2d.from_modules(conv, nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="track_running_stats"):
        ConvBn2d.from_modules(conv, nn.BatchNorm2d(8, track_running_stats=False))
    with pytest.raises(TypeError):
        ConvBn2d.from_modules(nn.Conv1d(3, 8, 3), nn.BatchNorm2d(8))
    with pytest.raises(ValueError, match="freeze_bn_step"):
        ConvBn2d(3, 8, 3, freeze_bn_step=-1)
    # the float modules are copied, not shared
    m = ConvBn2d.from_modules(conv, nn.BatchNorm2d(8))
    assert m.weight is not conv.weight and torch.equal(m.weight, conv.weight)
