"""The observer modules' own checks and edge cases (the ops are tested in
test_observer_ops.py, histograms in test_histogram.py)."""

import pytest
import torch

import mcuq

MODULES = {
    "MinMaxObserver": lambda **kw: mcuq.MinMaxObserver(**kw),
    "FakeQuantize": lambda **kw: mcuq.FakeQuantize(**kw),
    "HistogramObserver": lambda **kw: mcuq.HistogramObserver(bins=64, **kw),
}


@pytest.mark.parametrize("name", ["MinMaxObserver", "FakeQuantize"])
def test_group_size_that_does_not_divide_the_channels_is_an_error(name):
    # 6 channels // 4 would be 1 range: it must not silently become per-tensor.
    module = MODULES[name](axis=0, group_size=4)
    with pytest.raises(ValueError, match="group_size=4 to divide the 6 channels"):
        module(torch.randn(6, 3))


@pytest.mark.parametrize("name", list(MODULES))
def test_axis_the_input_lacks_is_an_error(name):
    module = MODULES[name](axis=5)
    with pytest.raises(ValueError, match="axis 5 to exist in a 2-d input"):
        module(torch.randn(6, 3))


@pytest.mark.parametrize("name", ["MinMaxObserver", "FakeQuantize"])
def test_group_size_below_one_is_an_error(name):
    with pytest.raises(ValueError, match="group_size >= 1, but got 0"):
        MODULES[name](axis=0, group_size=0)


@pytest.mark.parametrize("name", list(MODULES))
def test_scripted_module_checks_too(name):
    module = torch.jit.script(MODULES[name](axis=0, group_size=1) if name != "HistogramObserver" else MODULES[name](axis=0))
    module(torch.randn(4, 3))
    with pytest.raises(Exception, match="to exist in a 1-d input"):
        torch.jit.script(MODULES[name](axis=1))(torch.randn(4))


@pytest.mark.parametrize("name", list(MODULES))
def test_float64_values_beyond_float32_saturate_and_the_observer_recovers(name):
    module = MODULES[name]()
    module(torch.tensor([1e39, -1.0, 2.0], dtype=torch.float64))
    assert module.max_val.item() == torch.finfo(torch.float32).max
    assert module.min_val.item() == -1.0
    assert int(module.nonfinite_count) == 0  # finite values, not skipped


def test_range_wider_than_float32_scale_is_a_value_error():
    lo, hi = torch.tensor(-3e38), torch.tensor(3e38)
    for power_of_two in (False, True):
        with pytest.raises(ValueError, match="scale fits float32"):
            mcuq.choose_qparams(lo, hi, 0, 255, False, power_of_two)
    # A finite scale above 2^127 whose power-of-two round-up overflows (1-bit range).
    with pytest.raises(ValueError, match="scale fits float32"):
        mcuq.choose_qparams(torch.tensor(0.0), torch.tensor(2.0**127 * 1.5), 0, 1, False, True)


def test_fused_backward_with_fake_quant_off_ignores_unused_qparams():
    module = mcuq.FakeQuantize(quant_min=1, quant_max=255)
    module.disable_fake_quant()
    module.disable_observer()
    module.scale.fill_(0.0)  # invalid, but never used
    x = torch.randn(4, requires_grad=True)
    y = module(x)
    assert torch.equal(y, x.detach())
    y.backward(torch.arange(4.0))
    assert torch.equal(x.grad, torch.arange(4.0))


def test_dequantize_of_extreme_levels_does_not_overflow():
    out = mcuq.dequantize(torch.tensor([-(2**63)]), torch.tensor([1.0]), torch.tensor([1]), 0, 255)
    assert out.item() == float(-(2**63) - 1)


def test_finite_aminmax_outputs_do_not_track_gradients():
    lo, hi, count = torch.ops.mcuq._finite_aminmax(torch.randn(4, 3, requires_grad=True), None, 1)
    assert not lo.requires_grad and not hi.requires_grad and not count.requires_grad


@pytest.mark.parametrize("name", list(MODULES))
def test_per_channel_state_is_sized_after_a_torchscript_save_and_load(name, tmp_path):
    # Saved before its first batch: the loaded buffers cannot be resized in place.
    module = torch.jit.script(MODULES[name](axis=1))
    module.save(str(tmp_path / "m.pt"))
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    loaded(torch.randn(2, 5, 3))
    assert loaded.min_val.numel() == 5
