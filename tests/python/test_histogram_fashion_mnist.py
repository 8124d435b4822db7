"""Histogram range selection on real activations: a small CNN trained on
Debian's Fashion-MNIST (a few hundred steps), its activations observed by
mcuq's HistogramObserver(method="mse") and by torch.ao's HistogramObserver;
the quantization MSE of mcuq's range must not be larger."""

import pytest
import torch
from torch import nn
from torch.ao.quantization import HistogramObserver as TorchHistogramObserver

import mcuq
from mcuq.data import fashion_mnist, normalized


def _trained_cnn():
    torch.manual_seed(0)
    images, labels = fashion_mnist("train")
    x, y = normalized(images[:12800]), labels[:12800]
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 6 * 6, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(200):
        i = (step * 64) % x.shape[0]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def activations():
    model = _trained_cnn()
    images, labels = fashion_mnist("test")
    x = normalized(images[:1000])
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == labels[:1000]).float().mean().item()
        conv1 = model[0](x)                 # before ReLU: both signs, heavy-ish tails
        relu1 = model[1](conv1)             # non-negative, a spike at 0
        conv2 = model[2](relu1)
        logits = model(x)
    assert accuracy > 0.7, f"the CNN did not train (accuracy {accuracy:.3f})"
    return {"conv1": conv1, "relu1": relu1, "conv2": conv2, "logits": logits}


def _mse(x, scale, zero_point, qmin, qmax):
    xq = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), qmin, qmax)
    return (xq - x).pow(2).mean().item()


@pytest.mark.parametrize("layer", ["conv1", "relu1", "conv2", "logits"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["uint8_affine", "int8_symmetric"])
def test_mse_range_not_worse_than_torch_on_cnn_activations(activations, layer, symmetric):
    x = activations[layer]
    if symmetric:
        qmin, qmax = -128, 127
        theirs_obs = TorchHistogramObserver(bins=2048, dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    else:
        qmin, qmax = 0, 255
        theirs_obs = TorchHistogramObserver(bins=2048)
    ours_obs = mcuq.HistogramObserver(bins=2048, method="mse", quant_min=qmin, quant_max=qmax, symmetric=symmetric)
    for batch in x.split(100):
        ours_obs(batch)
        theirs_obs(batch)
    ours = _mse(x, *ours_obs.calculate_qparams(), qmin, qmax)
    theirs = _mse(x, *theirs_obs.calculate_qparams(), qmin, qmax)
    assert ours <= theirs, f"{layer}: MSE ratio mcuq / torch = {ours / theirs:.4f}"
