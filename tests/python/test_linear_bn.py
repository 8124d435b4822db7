"""mcuq.LinearBn1d: Linear + BatchNorm1d (+ ReLU), trained as ConvBn2d is
(issue 13: MLPerf Tiny's anomaly-detection autoencoder has a BatchNorm1d
after every hidden Linear), and the workflow through prepare, freeze and
export.

Oracles: nn.Linear followed by nn.BatchNorm1d (train and eval) with the
weight fake-quant off; torch.fake_quantize_per_channel_affine on the folded
weight with it on; the eager module for its TorchScript twin; the C against
the integer reference and the integer reference against the fake-quant model."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mcuq
import mcuq.host
from mcuq.conv_bn import LinearBn1d, LinearBnReLU1d


def _float_pair(bias, seed=0, momentum=0.1, features=(12, 7)):
    g = torch.Generator().manual_seed(seed)
    linear, bn = nn.Linear(*features, bias=bias), nn.BatchNorm1d(features[1], momentum=momentum)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) * 0.3)
        if bias:
            linear.bias.copy_(torch.randn(features[1], generator=g))
        bn.weight.copy_(torch.randn(features[1], generator=g))
        bn.bias.copy_(torch.randn(features[1], generator=g))
        y = linear(_input(features[0], seed=seed + 1000))
        bn.running_mean.copy_(y.mean(0) + 0.3 * y.std(0) * torch.randn(features[1], generator=g))
        bn.running_var.copy_(y.var(0) * (0.5 + torch.rand(features[1], generator=g)))
        bn.num_batches_tracked.fill_(5)
    return linear, bn


def _input(features, seed=1, n=16):
    return torch.randn(n, features, generator=torch.Generator().manual_seed(seed)) + 0.2


def _float_mode(m):
    m.weight_fake_quant.disable_fake_quant()
    m.weight_fake_quant.disable_observer()
    return m


def _maxdiff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_eval_float_equals_linear_then_bn(bias):
    linear, bn = _float_pair(bias)
    m = _float_mode(LinearBn1d.from_modules(linear, bn)).eval()
    x = _input(12)
    with torch.no_grad():
        assert _maxdiff(m(x), bn.eval()(linear(x))) <= 1e-5


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("momentum", [0.1, None], ids=["ema", "cumulative"])
def test_train_float_equals_linear_then_bn_train(bias, momentum):
    linear, bn = _float_pair(bias, momentum=momentum)
    m = _float_mode(LinearBn1d.from_modules(linear, bn)).train()
    bn.train()
    for step in range(3):
        x = _input(12, seed=10 + step)
        expected, got = bn(linear(x)), m(x)
        assert _maxdiff(got, expected) <= 1e-5
        assert _maxdiff(m.bn.running_mean, bn.running_mean) <= 1e-5
        assert _maxdiff(m.bn.running_var, bn.running_var) <= 1e-5
    dy = torch.randn(expected.shape, generator=torch.Generator().manual_seed(99))
    ref = torch.autograd.grad(expected, [linear.weight, bn.weight, bn.bias], dy)
    ours = torch.autograd.grad(got, [m.weight, m.bn.weight, m.bn.bias], dy)
    for r, o in zip(ref, ours):
        assert _maxdiff(r, o) <= 1e-4 * max(1.0, r.abs().max().item())


def test_fake_quant_eval_is_linear_with_quantized_folded_weight():
    linear, bn = _float_pair(True)
    m = LinearBn1d.from_modules(linear, bn).eval()
    x = _input(12)
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w_fold, b_fold = linear.weight * s.reshape(-1, 1), bn.bias + (linear.bias - bn.running_mean) * s
        scale = w_fold.abs().amax(dim=1) / 127
        wq = torch.fake_quantize_per_channel_affine(w_fold, scale, torch.zeros(7, dtype=torch.int32), 0, -127, 127)
        assert _maxdiff(m(x), F.linear(x, wq, b_fold)) <= 1e-5
        assert _maxdiff(m(x), bn.eval()(linear(x))) > 1e-4  # the quantization is visible


@pytest.mark.parametrize("cls", [LinearBn1d, LinearBnReLU1d])
def test_torchscript_matches_eager(cls):
    linear, bn = _float_pair(True)
    eager = cls.from_modules(linear, bn, freeze_bn_step=2)
    scripted = torch.jit.script(copy.deepcopy(eager))
    for step in range(4):  # batch statistics, then frozen
        x = _input(12, seed=50 + step)
        assert torch.equal(eager(x), scripted(x))
        assert torch.equal(eager.bn.running_var, scripted.bn.running_var)
    assert scripted.bn_stats_frozen()
    eager.eval()
    scripted.eval()
    assert torch.equal(eager(x), scripted(x))


def test_from_modules_checks():
    linear, bn = _float_pair(False)
    assert type(LinearBn1d.from_modules(linear, bn, relu=True)) is LinearBnReLU1d
    with pytest.raises(TypeError, match="nn.Linear"):
        LinearBn1d.from_modules(nn.Conv1d(3, 7, 1), bn)
    with pytest.raises(TypeError, match="nn.BatchNorm1d"):
        LinearBn1d.from_modules(linear, nn.BatchNorm2d(7))
    with pytest.raises(ValueError, match="8 features but the Linear has 7 outputs"):
        LinearBn1d.from_modules(linear, nn.BatchNorm1d(8))


def _autoencoder_block():
    return nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8), nn.BatchNorm1d(8),
                         nn.ReLU(), nn.Linear(8, 20))


@pytest.mark.parametrize("qat", [False, True], ids=["ptq", "qat"])
def test_linear_batchnorm_models_fold_and_export_bit_exact(qat, tmp_path):
    """prepare fuses each Linear -> BatchNorm1d -> ReLU into one
    LinearBnReLU1d; the export has three fully connected layers and no
    BatchNorm; its C equals the integer reference, which is within one level
    of the fake-quant model."""
    torch.manual_seed(0)
    model = _autoencoder_block()
    data = [torch.randn(64, 20) for _ in range(4)]
    model.train()
    for x in data:  # BatchNorm statistics of the data
        model(x)
    prepared = mcuq.prepare(model.eval(), mcuq.presets.int8(), qat=qat)
    assert [type(m) for m in prepared.modules() if isinstance(m, LinearBn1d)] == [LinearBnReLU1d] * 2
    if qat:
        prepared.train()
        optimizer = torch.optim.SGD(prepared.parameters(), lr=0.01)
        for x in data:
            loss = F.mse_loss(prepared(x), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        prepared.eval()
    else:
        mcuq.calibrate(prepared, data, progress=False)
    frozen = mcuq.freeze(prepared)
    exported = mcuq.export(frozen, [1, 20])
    assert [layer["kind"] for layer in exported.report()["layers"]] == ["fully_connected"] * 3
    x = torch.randn(32, 20)
    with torch.no_grad():
        fake = frozen(x)
    assert (exported(x) - fake).abs().max() <= 2.01 * exported.output_qparams["scale"]
    exported.write(tmp_path, "net")
    exe = mcuq.host.compile_model(tmp_path, "net", compiler="clang", sanitize=True)
    levels = exported.quantize_input(x)
    assert torch.equal(mcuq.host.run_model(exe, levels, exported), exported.integer_reference(levels))


def test_batchnorm1d_alone_is_still_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match=r"unsupported layer '2' \(BatchNorm1d\)"):
        mcuq.prepare(model, mcuq.presets.int8())
