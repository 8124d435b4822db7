"""Small frozen models for the exporter's tests: each a float model, the
preset it is quantized with, and its input shape."""

from dataclasses import dataclass
from typing import Callable, List

import torch
from torch import nn

import mcuq


class SingleConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class SingleLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 16)

    def forward(self, x):
        return self.fc(x)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class DepthwiseCnn(nn.Module):
    """conv-bn-relu, depthwise (channel multiplier 2, stride 2) + ReLU6, 1x1
    conv, average pools, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.dw, self.bn2, self.relu2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8), nn.BatchNorm2d(16), nn.ReLU6()
        self.pw, self.relu3 = nn.Conv2d(16, 16, 1), nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.dw(x)))
        x = self.relu3(self.pw(x))
        x = self.gap(self.pool(x))
        return self.fc(torch.flatten(x, 1))


class ResidualCnn(nn.Module):
    """A residual block (add, then ReLU), max pool, a concatenation of two
    branches along channels, global mean, linear."""

    def __init__(self):
        super().__init__()
        self.stem, self.relu = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()
        self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.branch = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.relu(self.stem(x))
        x = torch.relu(x + self.b(torch.relu(self.a(x))))
        x = self.pool(x)
        x = torch.cat([x, self.branch(x)], 1)
        return self.fc(x.mean([2, 3]))


class LutMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(32, 32), nn.Linear(32, 16), nn.Linear(16, 8)
        self.sigmoid, self.tanh, self.hardswish = nn.Sigmoid(), nn.Tanh(), nn.Hardswish()

    def forward(self, x):
        return self.fc3(self.tanh(self.fc2(self.hardswish(self.sigmoid(self.fc1(x))))))


class FashionCnn(nn.Module):
    """The Fashion-MNIST example's CNN (conv-bn-relu x2, max-pool, linear)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


class SensorConv1d(nn.Module):
    """A time-series classifier (audio, sensors): Conv1d-BatchNorm1d-ReLU, a
    depthwise Conv1d-BatchNorm1d-ReLU6, then Linear-BatchNorm1d-ReLU and a
    linear head (MLPerf Tiny's autoencoder pattern)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn1 = nn.Conv1d(3, 8, 5, stride=2, padding=2), nn.BatchNorm1d(8)
        self.dw, self.bn2 = nn.Conv1d(8, 8, 3, padding=1, groups=8), nn.BatchNorm1d(8)
        self.fc1, self.bn3 = nn.Linear(8 * 16, 12), nn.BatchNorm1d(12)
        self.fc2 = nn.Linear(12, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv(x)))
        x = nn.functional.relu6(self.bn2(self.dw(x)))
        x = torch.relu(self.bn3(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


class CeilPoolCnn(nn.Module):
    """SqueezeNet's pooling: ceil-mode max and average pools whose last
    windows overhang the input."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool1 = nn.Conv2d(1, 6, 3), nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.pool2 = nn.Conv2d(6, 8, 1), nn.AvgPool2d(2, 2, ceil_mode=True)
        self.fc = nn.Linear(8 * 3 * 3, 10)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))  # 10x10 -> 5x5 (floor mode: 4x4)
        x = self.pool2(torch.relu(self.conv2(x)))  # 5x5 -> 3x3 (floor mode: 2x2)
        return self.fc(torch.flatten(x, 1))


class GlobalMaxPoolCnn(nn.Module):
    """Global max pooling, both ways users write it: nn.AdaptiveMaxPool2d(1)
    on one branch, x.amax((2, 3)) on the other, concatenated."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(2, 6, 3, padding=1), nn.ReLU()
        self.gmp = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        y = self.relu(self.conv(x))
        return self.fc(torch.cat([torch.flatten(self.gmp(y), 1), y.amax((2, 3))], 1))


@dataclass
class ZooModel:
    name: str
    make: Callable[[], nn.Module]
    preset: str
    input_shape: List[int]
    single_layer: bool = False
    rounding: str = "double"


ZOO = [
    ZooModel("single_conv", SingleConv, "int8", [1, 3, 12, 12], single_layer=True),
    ZooModel("single_linear", SingleLinear, "int8", [1, 64], single_layer=True),
    ZooModel("single_conv_16x8", SingleConv, "int16x8", [1, 3, 12, 12], single_layer=True),
    ZooModel("mlp", Mlp, "int8", [1, 64]),
    ZooModel("mlp_single_rounding", Mlp, "int8", [1, 64], rounding="single"),
    ZooModel("mlp_w4a8", Mlp, "w4a8", [1, 64]),
    ZooModel("depthwise_cnn", DepthwiseCnn, "int8", [1, 3, 16, 16]),
    ZooModel("depthwise_cnn_16x8", DepthwiseCnn, "int16x8", [1, 3, 16, 16]),
    ZooModel("depthwise_cnn_pow2", DepthwiseCnn, "pow2", [1, 3, 16, 16]),
    ZooModel("depthwise_cnn_w4a8", DepthwiseCnn, "w4a8", [1, 3, 16, 16]),
    ZooModel("residual_cnn", ResidualCnn, "int8", [1, 1, 16, 16]),
    ZooModel("residual_cnn_pow2", ResidualCnn, "pow2", [1, 1, 16, 16]),
    ZooModel("lut_mlp", LutMlp, "int8", [1, 32]),
    ZooModel("lut_mlp_16x8", LutMlp, "int16x8", [1, 32]),
    ZooModel("fashion_cnn", FashionCnn, "int8", [1, 1, 28, 28]),
    ZooModel("conv1d_bn", SensorConv1d, "int8", [1, 3, 32]),
    ZooModel("conv1d_bn_16x8", SensorConv1d, "int16x8", [1, 3, 32]),
    ZooModel("ceil_pool_cnn", CeilPoolCnn, "int8", [1, 1, 12, 12]),
    ZooModel("global_max_pool_cnn", GlobalMaxPoolCnn, "int8", [1, 2, 9, 7]),
]


def frozen(model: ZooModel, seed: int = 0) -> nn.Module:
    """The zoo model, prepared for PTQ, calibrated on random data, frozen."""
    torch.manual_seed(seed)
    float_model = model.make().eval()
    for module in float_model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    prepared = mcuq.prepare(float_model, mcuq.presets.get(model.preset), qat=False)
    shape = model.input_shape[1:]
    mcuq.calibrate(prepared, [torch.randn(32, *shape) for _ in range(4)], progress=False)
    return mcuq.freeze(prepared)
