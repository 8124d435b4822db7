"""Presets describe the schemes in DESIGN.md §3 and build working modules."""

import pytest
import torch
from torch import nn
from torch.ao.quantization import prepare_qat

import mcuq
from mcuq import presets


@pytest.mark.parametrize(
    "name, weight_range, activation_range, activation_symmetric",
    [
        ("int8", (-127, 127), (-128, 127), False),
        ("int16x8", (-127, 127), (-32767, 32767), True),
        ("w4a8", (-7, 7), (-128, 127), False),
        ("pow2", (-127, 127), (-128, 127), False),
    ],
)
def test_preset_ranges(name, weight_range, activation_range, activation_symmetric):
    preset = presets.get(name)
    w = preset.weight.fake_quant()
    a = preset.activation.fake_quant()
    assert (w.quant_min, w.quant_max, w.symmetric, w.per_channel, w.axis) == (*weight_range, True, True, 0)
    assert (a.quant_min, a.quant_max, a.symmetric, a.per_channel) == (*activation_range, activation_symmetric, False)
    assert w.power_of_two == a.power_of_two == (name == "pow2")


def test_pow2_scales_are_powers_of_two():
    preset = presets.pow2()
    w = preset.weight.fake_quant()
    w(torch.randn(8, 3, 3, 3))
    mantissa, _ = torch.frexp(w.scale)
    assert torch.all(mantissa == 0.5)


@pytest.mark.parametrize("estimator, kind", [
    ("minmax", mcuq.MinMaxObserver), ("ema", mcuq.MovingAverageMinMaxObserver),
    ("histogram:mse", mcuq.HistogramObserver), ("histogram:entropy", mcuq.HistogramObserver),
])
def test_estimator_picks_the_observer(estimator, kind):
    observer = presets.int8().with_activation(estimator=estimator).activation.observer()
    assert type(observer) is kind
    if kind is mcuq.HistogramObserver:
        assert observer.method == estimator.split(":")[1]


def test_per_group_weights():
    w = presets.w4a8().with_weight(group_size=4).weight.fake_quant()
    w(torch.randn(16, 8))
    assert w.scale.numel() == 4


def test_bad_specs_are_value_errors():
    with pytest.raises(ValueError, match="bits in \\[2, 16\\]"):
        presets.int8().with_weight(bits=1)
    with pytest.raises(ValueError, match="estimator"):
        presets.int8().with_activation(estimator="magic")
    with pytest.raises(ValueError, match="expected one of"):
        presets.get("int7")


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_qconfig_works_with_torch_ao_prepare_qat(name):
    model = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Linear(4, 3), nn.ReLU(), torch.ao.quantization.DeQuantStub())
    model.qconfig = presets.get(name).qconfig()
    prepared = prepare_qat(model.train())
    out = prepared(torch.randn(8, 4))
    out.sum().backward()
    codebook = bool(presets.get(name).weight.codebook)  # nu4, nu3: non-uniform weights
    assert isinstance(prepared[1].weight_fake_quant, mcuq.CodebookFakeQuantize if codebook else mcuq.FakeQuantize)
    assert prepared[1].weight.grad is not None
