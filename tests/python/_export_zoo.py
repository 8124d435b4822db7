"""Small frozen models for the exporter's tests: each a float model, the
preset it is quantized with, and its input shape."""

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

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


class AttentionCnn(nn.Module):
    """The elementwise layers: a squeeze-and-excitation gate (hardsigmoid,
    broadcast over H and W), CBAM's spatial attention (the mean and the max
    over channels, concatenated, a sigmoid gate broadcast over channels) and
    a subtraction."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(2, 6, 3, padding=1), nn.ReLU()
        self.squeeze, self.excite, self.gate = nn.Conv2d(6, 3, 1), nn.Conv2d(3, 6, 1), nn.Hardsigmoid()
        self.spatial = nn.Conv2d(2, 1, 3, padding=1)
        self.pw = nn.Conv2d(6, 6, 1)
        self.fc = nn.Linear(6 * 6 * 6, 4)

    def forward(self, x):
        x = self.relu(self.conv(x))
        x = x * self.gate(self.excite(torch.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        pooled = torch.cat([x.mean(1, keepdim=True), torch.max(x, 1, keepdim=True)[0]], 1)
        x = torch.sigmoid(self.spatial(pooled)) * x
        x = self.pw(x) - x
        return self.fc(torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-and-excitation: global mean, 1x1 conv, ReLU, 1x1
    conv, hardsigmoid, times the input."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.relu, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.ReLU(), nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV3's bneck: 1x1 expansion, k x k depthwise, SE, 1x1
    projection (BatchNorm after each; hardswish or ReLU), residual add when
    the shape is kept."""

    def __init__(self, c_in: int, expand: int, c_out: int, k: int, stride: int, hardswish: bool):
        super().__init__()
        act = nn.Hardswish if hardswish else nn.ReLU
        self.expand = nn.Sequential(nn.Conv2d(c_in, expand, 1, bias=False), nn.BatchNorm2d(expand), act())
        self.dw = nn.Sequential(nn.Conv2d(expand, expand, k, stride, k // 2, groups=expand, bias=False),
                                nn.BatchNorm2d(expand), act())
        self.se = SqueezeExcite(expand, max(expand // 4, 1))
        self.project = nn.Sequential(nn.Conv2d(expand, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class MobileNetV3Blocks(nn.Module):
    """A MobileNetV3-Small-style stem and two bnecks (one residual with
    hardswish, one strided with ReLU), global mean, classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.block1 = InvertedResidual(8, 24, 8, 3, 1, hardswish=True)
        self.block2 = InvertedResidual(8, 16, 12, 5, 2, hardswish=False)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Fire(nn.Module):
    """SqueezeNet's fire module: 1x1 squeeze, then 1x1 and 3x3 expansions
    concatenated along channels (ReLU after each)."""

    def __init__(self, c_in: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(c_in, squeeze, 1), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], 1)


class SqueezeNetFire(nn.Module):
    """SqueezeNet 1.1's layout, small: a strided conv, ceil-mode max pools
    whose last windows overhang (12 -> 6 -> 3; floor mode gives 5 and 2),
    fire modules, a 1x1 conv classifier and a global mean."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(8, 4, 8), Fire(16, 4, 8), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(16, 6, 12))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(24, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class PadUpsampleCnn(nn.Module):
    """An encoder-decoder's resizing: max pool, nearest upsampling back
    (nn.Upsample), a skip concatenation, asymmetric zero padding
    (nn.ZeroPad2d, F.pad) and F.interpolate by unequal integer factors."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(8, 4, 3)
        self.pool, self.up = nn.MaxPool2d(2), nn.Upsample(scale_factor=2)
        self.pad = nn.ZeroPad2d((0, 1, 2, 0))  # left, right, top, bottom
        self.fc = nn.Linear(4 * 12 * 7, 4)

    def forward(self, x):
        y = torch.relu(self.conv1(x))  # 6x6
        z = torch.cat([y, self.up(self.pool(y))], 1)  # 3x3 back to 6x6
        z = torch.relu(self.conv2(nn.functional.pad(self.pad(z), (1, 1))))  # 8x9, then 6x7
        return self.fc(torch.flatten(nn.functional.interpolate(z, scale_factor=(2, 1)), 1))  # 12x7


class CausalConv1d(nn.Module):
    """A temporal convolutional network's causal convolutions: F.pad on the
    left only, dilation, then nearest upsampling of the sequence."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(3, 6, 3), nn.Conv1d(6, 6, 3, dilation=2)
        self.fc = nn.Linear(6 * 32, 5)

    def forward(self, x):
        x = torch.relu(self.conv1(nn.functional.pad(x, (2, 0))))
        x = torch.relu(self.conv2(nn.functional.pad(x, (4, 0))))
        return self.fc(torch.flatten(nn.functional.interpolate(x, scale_factor=2), 1))


class SoftmaxClassifier(nn.Module):
    """A classifier that returns probabilities: conv, global mean, linear,
    nn.Softmax (the int8 kernel on the device)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc, self.softmax = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8, 10), nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(self.fc(torch.relu(self.conv(x)).mean((2, 3))))


class ConvTransposeDecoder(nn.Module):
    """A decoder's learned upsampling: transposed convolutions with stride 2
    and output_padding, with dilation, with a 2x2 kernel and stride 2."""

    def __init__(self):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)  # 4x4 -> 8x8
        self.up2 = nn.ConvTranspose2d(6, 4, 3, padding=2, dilation=2)  # 8x8 -> 8x8
        self.up3 = nn.ConvTranspose2d(4, 2, 2, stride=2)  # 8x8 -> 16x16

    def forward(self, x):
        return self.up3(torch.relu(self.up2(torch.relu(self.up1(x)))))


@dataclass
class ZooModel:
    name: str
    make: Callable[[], nn.Module]
    preset: str
    input_shape: List[int]
    single_layer: bool = False
    rounding: str = "double"
    # (fraction of output levels within 1 LSB of the fake-quant model, largest
    # difference) to hold instead of test_export's default rule.
    agreement: Optional[Tuple[float, int]] = None


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
    # The layers of issue 13, each held to 1 LSB on 99 % of output levels.
    ZooModel("attention_cnn", AttentionCnn, "int8", [1, 2, 6, 6], agreement=(0.99, 1)),
    # Two int16 lookup-table gates multiplied into the activations: every
    # layer is within its bound (test_integer_graph_agrees_layer_by_layer),
    # and their table errors (up to 3 levels, report.json) carry through the
    # products to the output: 87.5 % within 1 LSB, 4 LSB (2^-14 of the range) at most.
    ZooModel("attention_cnn_16x8", AttentionCnn, "int16x8", [1, 2, 6, 6], agreement=(0.85, 4)),
    ZooModel("mobilenet_v3_blocks", MobileNetV3Blocks, "int8", [1, 3, 16, 16], agreement=(0.99, 1)),
    ZooModel("squeezenet_fire", SqueezeNetFire, "int8", [1, 3, 26, 26], agreement=(0.99, 1)),
    ZooModel("pad_upsample_cnn", PadUpsampleCnn, "int8", [1, 2, 6, 6], agreement=(0.99, 1)),
    ZooModel("pad_upsample_cnn_16x8", PadUpsampleCnn, "int16x8", [1, 2, 6, 6], rounding="single"),
    ZooModel("causal_conv1d", CausalConv1d, "int8", [1, 3, 16], agreement=(0.99, 1)),
    # Layer by layer the softmax is within 1 level; the linear layer's 1-level
    # differences before it move a probability by exp(s_in) - 1: 2 levels on
    # one output in 3000.
    ZooModel("softmax_classifier", SoftmaxClassifier, "int8", [1, 1, 8, 8], agreement=(0.99, 2)),
    ZooModel("conv_transpose_decoder", ConvTransposeDecoder, "int8", [1, 4, 4, 4], agreement=(0.99, 1)),
    ZooModel("conv_transpose_decoder_16x8", ConvTransposeDecoder, "int16x8", [1, 4, 4, 4], rounding="single"),
    # Codebook (non-uniform) weights: 4-bit indices into a codebook per
    # output channel (conv2 and the linear layers; conv1's 9 weights per
    # channel stay int8, which is smaller), and 3-bit indices (fields that
    # straddle bytes) into one codebook per layer, which gives every kind of
    # layer, depthwise too, a codebook.
    ZooModel("fashion_cnn_nu4", FashionCnn, "nu4", [1, 1, 28, 28]),
    ZooModel("mlp_nu4", Mlp, "nu4", [1, 64]),
    ZooModel("depthwise_cnn_nu3_per_tensor", DepthwiseCnn, "nu3/per_tensor", [1, 3, 16, 16]),
    ZooModel("conv1d_bn_nu3_per_tensor", SensorConv1d, "nu3/per_tensor", [1, 3, 32]),
]


def preset(name: str) -> mcuq.presets.Preset:
    """A preset by name; "NAME/per_tensor": its weights per tensor."""
    base, _, variant = name.partition("/")
    found = mcuq.presets.get(base)
    return found.with_weight(per_channel=False) if variant == "per_tensor" else found


def frozen(model: ZooModel, seed: int = 0) -> nn.Module:
    """The zoo model, prepared for PTQ, calibrated on random data, frozen."""
    torch.manual_seed(seed)
    float_model = model.make().eval()
    for module in float_model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    prepared = mcuq.prepare(float_model, preset(model.preset), qat=False)
    shape = model.input_shape[1:]
    mcuq.calibrate(prepared, [torch.randn(32, *shape) for _ in range(4)], progress=False)
    return mcuq.freeze(prepared)
