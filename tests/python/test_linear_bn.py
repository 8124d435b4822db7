"""mcuq.LinearBn1d and mcuq.ConvBn1d: Linear or Conv1d + BatchNorm1d
(+ ReLU), trained as ConvBn2d is (issue 13: MLPerf Tiny's anomaly-detection
autoencoder has a BatchNorm1d after every hidden Linear; audio and sensor
models a Conv1d before one), and the workflow through prepare, freeze and
export.

Oracles: the float layer followed by nn.BatchNorm1d (train and eval) with
the weight fake-quant off; torch.fake_quantize_per_channel_affine on the
folded weight with it on; the eager module for its TorchScript twin; the C
against the integer reference and the integer reference against the
fake-quant model."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mcuq
import mcuq.host
from mcuq.conv_bn import ConvBn1d, ConvBnReLU1d, LinearBn1d, LinearBnReLU1d

# kind: (float layer, its fused classes, input shape without the batch)
KINDS = {
    "linear": (lambda bias: nn.Linear(12, 7, bias=bias), (LinearBn1d, LinearBnReLU1d), (12,)),
    "conv1d": (lambda bias: nn.Conv1d(4, 7, 3, stride=2, padding=1, bias=bias), (ConvBn1d, ConvBnReLU1d), (4, 20)),
    "depthwise_conv1d": (lambda bias: nn.Conv1d(7, 7, 5, padding=2, dilation=2, groups=7, bias=bias),
                         (ConvBn1d, ConvBnReLU1d), (7, 24)),
}
params_kinds = pytest.mark.parametrize("kind", sorted(KINDS))


def _float_pair(kind, bias, seed=0, momentum=0.1):
    g = torch.Generator().manual_seed(seed)
    make, _, shape = KINDS[kind]
    torch.manual_seed(seed)
    layer = make(bias)
    channels = layer.weight.shape[0]
    bn = nn.BatchNorm1d(channels, momentum=momentum)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.3)
        if bias:
            layer.bias.copy_(torch.randn(channels, generator=g))
        bn.weight.copy_(torch.randn(channels, generator=g))
        bn.bias.copy_(torch.randn(channels, generator=g))
        y = layer(_input(kind, seed=seed + 1000))
        y = y.transpose(0, 1).reshape(channels, -1)  # per channel, over batch (and length)
        bn.running_mean.copy_(y.mean(1) + 0.3 * y.std(1) * torch.randn(channels, generator=g))
        bn.running_var.copy_(y.var(1) * (0.5 + torch.rand(channels, generator=g)))
        bn.num_batches_tracked.fill_(5)
    return layer, bn


def _input(kind, seed=1, n=16):
    return torch.randn(n, *KINDS[kind][2], generator=torch.Generator().manual_seed(seed)) + 0.2


def _fused(kind, layer, bn, **kwargs):
    return KINDS[kind][1][0].from_modules(layer, bn, **kwargs)


def _float_mode(m):
    m.weight_fake_quant.disable_fake_quant()
    m.weight_fake_quant.disable_observer()
    return m


def _maxdiff(a, b):
    return (a - b).abs().max().item()


@params_kinds
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_eval_float_equals_layer_then_bn(kind, bias):
    layer, bn = _float_pair(kind, bias)
    m = _float_mode(_fused(kind, layer, bn)).eval()
    x = _input(kind)
    with torch.no_grad():
        assert _maxdiff(m(x), bn.eval()(layer(x))) <= 1e-5


@params_kinds
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("momentum", [0.1, None], ids=["ema", "cumulative"])
def test_train_float_equals_layer_then_bn_train(kind, bias, momentum):
    layer, bn = _float_pair(kind, bias, momentum=momentum)
    m = _float_mode(_fused(kind, layer, bn)).train()
    bn.train()
    for step in range(3):
        x = _input(kind, seed=10 + step)
        expected, got = bn(layer(x)), m(x)
        assert _maxdiff(got, expected) <= 1e-5
        assert _maxdiff(m.bn.running_mean, bn.running_mean) <= 1e-5
        assert _maxdiff(m.bn.running_var, bn.running_var) <= 1e-5
    dy = torch.randn(expected.shape, generator=torch.Generator().manual_seed(99))
    ref = torch.autograd.grad(expected, [layer.weight, bn.weight, bn.bias], dy)
    ours = torch.autograd.grad(got, [m.weight, m.bn.weight, m.bn.bias], dy)
    for r, o in zip(ref, ours):
        assert _maxdiff(r, o) <= 1e-4 * max(1.0, r.abs().max().item())


@params_kinds
def test_fake_quant_eval_is_layer_with_quantized_folded_weight(kind):
    layer, bn = _float_pair(kind, True)
    m = _fused(kind, layer, bn).eval()
    x = _input(kind)
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w_fold = layer.weight * s.reshape([-1] + [1] * (layer.weight.dim() - 1))
        b_fold = bn.bias + (layer.bias - bn.running_mean) * s
        scale = w_fold.abs().flatten(1).amax(dim=1) / 127
        wq = torch.fake_quantize_per_channel_affine(w_fold, scale, torch.zeros(len(s), dtype=torch.int32), 0, -127,
                                                    127)
        expected = (F.linear(x, wq, b_fold) if kind == "linear"
                    else F.conv1d(x, wq, b_fold, layer.stride, layer.padding, layer.dilation, layer.groups))
        assert _maxdiff(m(x), expected) <= 1e-5
        assert _maxdiff(m(x), bn.eval()(layer(x))) > 1e-4  # the quantization is visible


@params_kinds
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_torchscript_matches_eager(kind, relu):
    layer, bn = _float_pair(kind, True)
    eager = _fused(kind, layer, bn, relu=relu, freeze_bn_step=2)
    assert type(eager) is KINDS[kind][1][int(relu)]
    scripted = torch.jit.script(copy.deepcopy(eager))
    for step in range(4):  # batch statistics, then frozen
        x = _input(kind, seed=50 + step)
        assert torch.equal(eager(x), scripted(x))
        assert torch.equal(eager.bn.running_var, scripted.bn.running_var)
    assert scripted.bn_stats_frozen()
    eager.eval()
    scripted.eval()
    assert torch.equal(eager(x), scripted(x))


def test_from_modules_checks():
    linear, bn = _float_pair("linear", False)
    with pytest.raises(TypeError, match="nn.Linear"):
        LinearBn1d.from_modules(nn.Conv1d(3, 7, 1), bn)
    with pytest.raises(TypeError, match="nn.BatchNorm1d"):
        LinearBn1d.from_modules(linear, nn.BatchNorm2d(7))
    with pytest.raises(ValueError, match="8 features but the Linear has 7 outputs"):
        LinearBn1d.from_modules(linear, nn.BatchNorm1d(8))
    with pytest.raises(TypeError, match="nn.Conv1d"):
        ConvBn1d.from_modules(linear, bn)
    with pytest.raises(ValueError, match="8 features but the Conv1d has 7 output channels"):
        ConvBn1d.from_modules(nn.Conv1d(3, 7, 1), nn.BatchNorm1d(8))


def _check_export(frozen, exported, x, tmp_path):
    """Within two levels of the fake-quant model at the output (three
    layers: one level each way, plus rounding carried through), and the C
    (clang, ASan + UBSan) equal to the integer reference."""
    with torch.no_grad():
        fake = frozen(x)
    assert (exported(x) - fake).abs().max() <= 2.01 * exported.output_qparams["scale"]
    exported.write(tmp_path, "net")
    exe = mcuq.host.compile_model(tmp_path, "net", compiler="clang", sanitize=True)
    levels = exported.quantize_input(x)
    assert torch.equal(mcuq.host.run_model(exe, levels, exported), exported.integer_reference(levels))


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
    _check_export(frozen, exported, torch.randn(32, 20), tmp_path)


def test_batchnorm1d_alone_is_still_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match=r"unsupported layer '2' \(BatchNorm1d\)"):
        mcuq.prepare(model, mcuq.presets.int8())


@pytest.mark.parametrize("preset", ["int8", "int16x8", "w4a8"])
def test_conv1d_batchnorm_model_folds_and_exports_bit_exact(preset, tmp_path):
    """A keyword-spotting-style 1-d stack: Conv1d -> BatchNorm1d -> ReLU,
    a depthwise Conv1d -> BatchNorm1d -> ReLU, then a linear classifier.
    Conv1d runs as a 1 x L Conv2d on the MCU; the C equals the integer
    reference under the sanitizers."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(3, 8, 5, stride=2, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Conv1d(8, 8, 3, padding=1, groups=8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 16, 5))
    data = [torch.randn(32, 3, 32) for _ in range(3)]
    model.train()
    for x in data:
        model(x)
    prepared = mcuq.prepare(model.eval(), mcuq.presets.get(preset), qat=False)
    assert [type(m) for m in prepared.modules() if isinstance(m, ConvBn1d)] == [ConvBnReLU1d] * 2
    mcuq.calibrate(prepared, data, progress=False)
    frozen = mcuq.freeze(prepared)
    exported = mcuq.export(frozen, [1, 3, 32])
    kinds = [layer["kind"] for layer in exported.report()["layers"]]
    assert kinds == ["conv2d", "depthwise_conv2d", "reshape", "fully_connected"]
    _check_export(frozen, exported, torch.randn(16, 3, 32), tmp_path)
