"""mcuq.prepare (torch.fx): where quantizers go, what is refused, and the
PTQ / QAT flows through calibrate / freeze on Fashion-MNIST."""

import pytest
import torch
from torch import nn

import mcuq
from mcuq.data import fashion_mnist, normalized


class SmallCnn(nn.Module):
    """conv-bn-relu x2, pooling, linear: the workflow issue's model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.a(x) + self.b(x))


def _quantizers(gm):
    return [n for n in gm.graph.nodes if n.op == "call_module" and n.target.startswith("activation_quantizer_")]


def test_small_cnn_gets_fused_blocks_weight_and_activation_quantizers():
    gm = mcuq.prepare(SmallCnn(), mcuq.presets.int8())
    assert sum(isinstance(m, mcuq.ConvBn2d) and m.with_relu for m in gm.modules()) == 2
    called = [gm.get_submodule(n.target) for n in gm.graph.nodes if n.op == "call_module"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in called)  # folded into the blocks
    # input, conv block 1, conv block 2, fc
    assert len(_quantizers(gm)) == 4
    # the conv blocks' quantizers come after their ReLU, which is gone into the block
    assert not any(n.op == "call_function" and n.target is torch.relu for n in gm.graph.nodes)
    out = gm(torch.randn(2, 1, 28, 28))
    out.sum().backward()
    assert gm.fc.layer.weight.grad is not None


@pytest.mark.parametrize("clamp", [nn.functional.relu6, lambda x: nn.functional.hardtanh(x, 0.0, 6.0), nn.ReLU6()],
                         ids=["F.relu6", "F.hardtanh", "nn.ReLU6"])
def test_conv_bn_then_a_six_clamp_keeps_its_upper_bound(clamp):
    """Only a plain ReLU fuses into ConvBnReLU2d; ReLU6 / hardtanh stay and clamp at 6."""

    class ConvBnClamp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.clamp = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), clamp

        def forward(self, x):
            return self.clamp(self.bn(self.conv(x)))

    model = ConvBnClamp().eval()
    prepared = mcuq.prepare(model, mcuq.presets.int8(), qat=False)
    assert not any(isinstance(m, mcuq.ConvBn2d) and m.with_relu for m in prepared.modules())
    x = torch.randn(8, 1, 8, 8) * 20
    with torch.no_grad():
        assert model.bn(model.conv(x)).max() > 6  # the clamp matters
        mcuq.calibrate(prepared, [x], progress=False)
        assert prepared(x).max() <= 6.0 + 6.0 / 127


def test_a_relu_on_the_input_comes_after_the_input_quantizer():
    """nn.Sequential(nn.ReLU(), nn.Conv2d(...)) was prepared with its input
    quantizer after the ReLU, so the export met a float input."""
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    prepared = mcuq.prepare(model, mcuq.presets.int8(), qat=False)
    first = _quantizers(prepared)[0]
    assert first.args[0].op == "placeholder"
    x = torch.randn(8, 3, 6, 6)
    mcuq.calibrate(prepared, [x], progress=False)
    exported = mcuq.export(mcuq.freeze(prepared), [1, 3, 6, 6])
    assert [layer["kind"] for layer in exported.report()["layers"]][-1] == "conv2d"
    with torch.no_grad():
        fake = mcuq.freeze(prepared)(x)
    assert (exported(x) - fake).abs().max() <= exported.output_qparams["scale"] * 1.01


def test_hardtanh_module_is_a_clamp_fused_into_its_layer():
    """nn.Hardtanh was refused ('unsupported layer'), though F.hardtanh and
    nn.ReLU6 (a Hardtanh) were not (found by tests/python/_model_fuzz.py)."""
    model = nn.Sequential(nn.Linear(6, 5), nn.Hardtanh(-1.0, 2.0)).eval()
    prepared = mcuq.prepare(model, mcuq.presets.int8(), qat=False)
    assert len(_quantizers(prepared)) == 2  # input, then after the clamp
    x = torch.randn(32, 6) * 4
    mcuq.calibrate(prepared, [x], progress=False)
    exported = mcuq.export(mcuq.freeze(prepared), [1, 6])
    y = exported(x)
    assert y.min() >= -1.0 - 1e-6 and y.max() <= 2.0 + 1e-6 and len(exported.report()["layers"]) == 1


@pytest.mark.parametrize("layer,shape", [(nn.Conv2d(3, 4, 3, padding=1), [1, 3, 6, 6]),
                                         (nn.Linear(6, 5), [1, 6]), (nn.Sigmoid(), [1, 7])])
def test_a_single_layer_is_a_model(layer, shape):
    """mcuq.prepare(nn.Conv2d(...)): how many users try a tool first. It
    failed (a root module traces as its functional call: 'conv2d')."""
    for qat in (False, True):
        prepared = mcuq.prepare(layer.eval(), mcuq.presets.int8(), qat=qat)
        assert len(_quantizers(prepared)) == 2  # input and output
    x = torch.randn(32, *shape[1:]) * 2
    prepared = mcuq.prepare(layer, mcuq.presets.int8(), qat=False)
    mcuq.calibrate(prepared, [x], progress=False)
    frozen = mcuq.freeze(prepared)
    exported = mcuq.export(frozen, shape)
    assert len(exported.report()["layers"]) == 1
    with torch.no_grad():
        fake = frozen(x)
    assert (exported(x) - fake).abs().max() <= exported.output_qparams["scale"] * 1.01


def test_residual_add_and_sigmoid_are_requantized():
    gm = mcuq.prepare(Residual(), mcuq.presets.int8())
    producers = [q.args[0] for q in _quantizers(gm)]
    kinds = [p.op if p.op != "call_function" else p.target.__name__ for p in producers]
    assert kinds.count("add") == 1 and len(producers) == 5  # input, a, b, add, sigmoid


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))
    with pytest.raises(ValueError, match=r"unsupported layer '1' \(LSTM\)"):
        mcuq.prepare(model, mcuq.presets.int8())


def test_untraceable_model_is_a_clear_error():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ValueError, match="torch.fx cannot trace"):
        mcuq.prepare(Branchy(), mcuq.presets.int8())


def test_conv_transpose_weights_are_per_output_channel_on_axis_1():
    gm = mcuq.prepare(nn.Sequential(nn.ConvTranspose2d(3, 5, 2)), mcuq.presets.int8())
    gm(torch.randn(1, 3, 4, 4))
    assert gm.get_submodule("0").weight_fake_quant.scale.numel() == 5


def _train_float(model, x, y, steps=300):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        i = (step * 64) % x.shape[0]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
        opt.step()
    return model


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item() * 100


def test_ptq_int8_on_fashion_mnist_stays_within_one_point_of_float():
    torch.manual_seed(0)
    images, labels = fashion_mnist("train")
    x, y = normalized(images[:19200]), labels[:19200]
    test_images, test_labels = fashion_mnist("test")
    xt, yt = normalized(test_images[:2000]), test_labels[:2000]
    model = _train_float(SmallCnn(), x, y)
    float_accuracy = _accuracy(model, xt, yt)
    prepared = mcuq.prepare(model.eval(), mcuq.presets.int8(), qat=False)
    mcuq.calibrate(prepared, [x[i:i + 256] for i in range(0, 2560, 256)], progress=False)
    frozen = mcuq.freeze(prepared)
    int8_accuracy = _accuracy(frozen, xt, yt)
    assert float_accuracy > 80
    assert abs(float_accuracy - int8_accuracy) <= 1.0, (float_accuracy, int8_accuracy)
    scripted = torch.jit.script(frozen)
    assert torch.equal(scripted(xt[:8]), frozen(xt[:8]))


def test_qat_int8_on_fashion_mnist_stays_within_half_a_point_of_float():
    torch.manual_seed(0)
    images, labels = fashion_mnist("train")
    x, y = normalized(images[:19200]), labels[:19200]
    test_images, test_labels = fashion_mnist("test")
    xt, yt = normalized(test_images[:2000]), test_labels[:2000]
    model = _train_float(SmallCnn(), x, y)
    float_accuracy = _accuracy(model, xt, yt)
    prepared = mcuq.prepare(model.eval(), mcuq.presets.int8(), qat=True, freeze_bn_step=50)
    opt = torch.optim.Adam(prepared.parameters(), lr=1e-3)
    for step in range(150):
        i = (step * 64) % x.shape[0]
        opt.zero_grad()
        nn.functional.cross_entropy(prepared(x[i:i + 64]), y[i:i + 64]).backward()
        opt.step()
    assert all(m.bn_stats_frozen() for m in prepared.modules() if isinstance(m, mcuq.ConvBn2d))
    qat_accuracy = _accuracy(mcuq.freeze(prepared), xt, yt)
    assert qat_accuracy >= float_accuracy - 0.5, (float_accuracy, qat_accuracy)


def test_prepare_puts_new_quantizers_on_the_models_device():
    """A model on a GPU gets its quantizers there (QAT on CUDA); shown with
    the meta device, which every machine has: every parameter and buffer of
    the prepared model, the folded Conv+BN's and the activation quantizers'
    included, is where the model was."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    for qat in (True, False):
        prepared = mcuq.prepare(model.to("meta"), mcuq.presets.get("int8"), qat=qat)
        devices = {t.device.type for t in [*prepared.parameters(), *prepared.buffers()]}
        assert devices == {"meta"}, (qat, devices)
