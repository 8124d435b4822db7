"""mcuq.calibrate on Fashion-MNIST: PTQ observers record the data's ranges."""

import pytest
import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, prepare

import mcuq
from mcuq.data import fashion_mnist, normalized


def _prepared(estimator="minmax"):
    torch.manual_seed(0)
    model = nn.Sequential(QuantStub(), nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10), DeQuantStub())
    model.qconfig = mcuq.presets.int8().with_activation(estimator=estimator).qconfig(qat=False)
    return prepare(model.eval())


def _loader(n=512, batch=128):
    images, labels = fashion_mnist("test")
    x = normalized(images[:n])
    return [(x[i:i + batch], labels[i:i + batch]) for i in range(0, n, batch)]


def test_observers_record_the_calibration_data_range():
    model = _prepared()
    data = _loader()
    assert mcuq.calibrate(model, data, progress=False) == len(data)
    observer = model[0].activation_post_process
    everything = torch.cat([x for x, _ in data])
    assert observer.min_val.item() == everything.min().item() == 0.0
    assert observer.max_val.item() == everything.max().item()
    hidden = model[2].activation_post_process  # the first Linear's output
    with torch.no_grad():
        expected = model[2](model[1](everything))
    assert hidden.min_val.item() == expected.min().item()
    assert hidden.max_val.item() == expected.max().item()


def test_num_batches_limits_and_mode_is_restored():
    model = _prepared()
    model.train()
    data = _loader()
    assert mcuq.calibrate(model, data, num_batches=2, progress=True) == 2
    assert model.training
    observer = model[0].activation_post_process
    first_two = torch.cat([x for x, _ in data[:2]])
    assert observer.max_val.item() == first_two.max().item()


def test_histogram_estimator_gives_qparams():
    model = _prepared("histogram:mse")
    mcuq.calibrate(model, _loader(), progress=False)
    scale, zero_point = model[2].activation_post_process.calculate_qparams()
    assert scale.item() > 0 and -128 <= zero_point.item() <= 127


def test_no_data_and_bad_num_batches_are_errors():
    with pytest.raises(ValueError, match="at least one batch"):
        mcuq.calibrate(_prepared(), [], progress=False)
    with pytest.raises(ValueError, match="num_batches >= 1"):
        mcuq.calibrate(_prepared(), _loader(), num_batches=0)
