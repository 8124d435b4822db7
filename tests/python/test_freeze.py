"""mcuq.freeze: a calibrated / QAT model becomes fixed fake-quantization that
scripts and traces to mcuq::fake_quantize with constant qparams."""

import io

import pytest
import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, prepare, prepare_qat

import mcuq


def _model():
    torch.manual_seed(0)
    return nn.Sequential(QuantStub(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), DeQuantStub())


def _qat_trained():
    model = _model()
    model.qconfig = mcuq.presets.int8().qconfig()
    model = prepare_qat(model.train())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        x = torch.randn(32, 8, generator=gen)
        opt.zero_grad()
        (model(x) - x[:, :4]).pow(2).mean().backward()
        opt.step()
    return model


def _graph_kinds(scripted):
    kinds = set()
    for m in scripted.modules():
        kinds |= {n.kind() for n in m.graph.nodes()}
    return kinds


def test_frozen_model_equals_the_trained_model_with_observers_off():
    model = _qat_trained()
    frozen = mcuq.freeze(model)
    model.apply(torch.ao.quantization.disable_observer)
    x = torch.randn(16, 8)
    assert torch.equal(frozen(x), model.eval()(x))
    assert not any(isinstance(m, mcuq.FakeQuantize) for m in frozen.modules())
    assert sum(isinstance(m, mcuq.FixedFakeQuantize) for m in frozen.modules()) == 5  # 2 weights, 3 activations


def test_frozen_model_stops_observing():
    frozen = mcuq.freeze(_qat_trained())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    frozen(torch.randn(16, 8) * 100)
    after = frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_graph_has_fake_quantize_with_constant_qparams(how):
    frozen = mcuq.freeze(_qat_trained())
    x = torch.randn(4, 8)
    scripted = torch.jit.script(frozen) if how == "script" else torch.jit.trace(frozen, x)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    assert torch.equal(loaded(x), frozen(x))
    constant = torch.jit.freeze(loaded.eval())
    kinds = {n.kind() for n in constant.graph.nodes()}
    assert "mcuq::fake_quantize" in kinds
    assert "mcuq::observe_fake_quantize" not in kinds and "prim::GetAttr" not in kinds
    for node in constant.graph.findAllNodes("mcuq::fake_quantize"):
        scale, zero_point = list(node.inputs())[1:3]
        assert scale.node().kind() == "prim::Constant" and zero_point.node().kind() == "prim::Constant"
    assert torch.equal(constant(x), frozen(x))


def test_ptq_observers_become_fixed_fake_quantizers():
    model = _model()
    model.qconfig = mcuq.presets.int8().with_activation(estimator="histogram:mse").qconfig(qat=False)
    model = prepare(model.eval())
    mcuq.calibrate(model, [torch.randn(64, 8) for _ in range(4)], progress=False)
    frozen = mcuq.freeze(model)
    observer = model[1].activation_post_process
    fixed = frozen[1][1]  # torch.ao's output hook became Sequential(module, quantizer)
    scale, zero_point = observer.calculate_qparams()
    assert isinstance(fixed, mcuq.FixedFakeQuantize)
    assert torch.equal(fixed.scale, scale) and torch.equal(fixed.zero_point, zero_point)


def test_freezing_an_uncalibrated_model_names_the_quantizer():
    model = _model()
    model.qconfig = mcuq.presets.int8().qconfig()
    model = prepare_qat(model.train())
    with pytest.raises(ValueError, match="saw no"):
        mcuq.freeze(model)


@pytest.mark.parametrize("relu", [False, True])
def test_conv_bn_qat_module_freezes_to_a_folded_weight_quantized_conv(relu):
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
    qat = mcuq.ConvBn2d.from_modules(conv.train(), bn.train(), relu=relu)
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    for _ in range(5):
        opt.zero_grad()
        qat(torch.randn(4, 3, 8, 8)).pow(2).mean().backward()
        opt.step()
    model = nn.Sequential(qat)
    frozen = mcuq.freeze(model)
    assert not any(isinstance(m, (mcuq.ConvBn2d, nn.BatchNorm2d, mcuq.FakeQuantize)) for m in frozen.modules())
    qat.eval().disable_observer()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(frozen(x), qat(x), rtol=0, atol=1e-6)
    scripted = torch.jit.script(frozen)
    assert torch.equal(scripted(x), frozen(x))
    assert "mcuq::fake_quantize" in _graph_kinds(scripted)  # the weight quantizer
    constant = torch.jit.freeze(scripted)
    # Weight and qparams are constants, so freezing precomputes the quantized weight.
    assert "aten::batch_norm" not in {n.kind() for n in constant.graph.nodes()}
    assert torch.equal(constant(x), frozen(x))
