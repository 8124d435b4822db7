"""MLPerf Tiny's four reference models (v1.x), written in PyTorch from the
benchmark's published layer tables, taken through mcuq: int8 PTQ and QAT,
export, the generated C on the host and on the emulated Cortex-M4 and M0.

- DS-CNN keyword spotting: 49x10 MFCC input, 12 classes. A 10x4 stride-2
  convolution, four depthwise-separable blocks of 64 channels, global
  average pooling, a linear head. (TensorFlow's "same" padding of the first
  convolution is asymmetric, 4 rows above and 5 below; here it is 5 and 5,
  which gives the same 25x5 output grid.)
- ResNet-8 image classification: 32x32x3, 10 classes. A 16-channel stem,
  three residual stacks of 16, 32, 64 channels (the last two stride 2 with a
  1x1 convolution on the shortcut), 8x8 average pooling, a linear head.
- MobileNetV1-0.25 visual wake words: 96x96x3, 2 classes. A stride-2 stem
  and 13 depthwise-separable blocks at a quarter of MobileNetV1's widths,
  global average pooling, a linear head.
- The fully connected autoencoder for anomaly detection: 640 inputs (5
  frames of 128 log-mel bins), Linear-BatchNorm1d-ReLU layers 128, 128, 128,
  128, 8, 128, 128, 128, 128, and a linear 640 output.

Run: .venv/bin/python examples/python/mlperf_tiny.py [--targets cortex-m4,cortex-m0-4mb] [--qat-steps 20]
prints, per model: parameters, MACs, flash and arena of the int8 export,
instructions per inference on each emulated core, and whether the export fits
a real board of the class the model targets.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn


def conv_bn_relu(cin, cout, kernel, stride=1, padding=0, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU())


def separable(cin, cout, stride=1):
    """Depthwise 3x3 (+BN+ReLU), then pointwise 1x1 (+BN+ReLU)."""
    return nn.Sequential(conv_bn_relu(cin, cin, 3, stride, 1, groups=cin), conv_bn_relu(cin, cout, 1))


class DsCnn(nn.Module):
    """Keyword spotting, MLPerf Tiny's DS-CNN (small): input [N, 1, 49, 10]."""

    def __init__(self, classes=12, width=64):
        super().__init__()
        self.stem = conv_bn_relu(1, width, (10, 4), stride=2, padding=(5, 1))
        self.blocks = nn.Sequential(*[separable(width, width) for _ in range(4)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class ResidualStack(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNet8(nn.Module):
    """Image classification, MLPerf Tiny's ResNet-8: input [N, 3, 32, 32]."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = conv_bn_relu(3, 16, 3, 1, 1)
        self.stacks = nn.Sequential(ResidualStack(16, 16, 1), ResidualStack(16, 32, 2), ResidualStack(32, 64, 2))
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.pool(self.stacks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class MobileNetV1(nn.Module):
    """Visual wake words, MLPerf Tiny's MobileNetV1 (alpha 0.25): input [N, 3, 96, 96]."""

    # (output channels at alpha 1, stride) of the 13 separable blocks.
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
              (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, classes=2, alpha=0.25):
        super().__init__()
        width = int(32 * alpha)
        self.stem = conv_bn_relu(3, width, 3, 2, 1)
        blocks = []
        for channels, stride in self.BLOCKS:
            blocks.append(separable(width, int(channels * alpha), stride))
            width = int(channels * alpha)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class Autoencoder(nn.Module):
    """Anomaly detection, MLPerf Tiny's FC autoencoder: input [N, 640]."""

    WIDTHS = [128, 128, 128, 128, 8, 128, 128, 128, 128]

    def __init__(self, inputs=640):
        super().__init__()
        layers, width = [], inputs
        for out in self.WIDTHS:
            layers += [nn.Linear(width, out), nn.BatchNorm1d(out), nn.ReLU()]
            width = out
        layers.append(nn.Linear(width, inputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


# name: model class, input shape (batch 1).
MODELS = {
    "ds_cnn_kws": (DsCnn, [1, 1, 49, 10]),
    "resnet8": (ResNet8, [1, 3, 32, 32]),
    "mobilenet_v1_025_vww": (MobileNetV1, [1, 3, 96, 96]),
    "fc_autoencoder": (Autoencoder, [1, 640]),
}
# The boards of the classes these models target, with the emulated target
# whose build decides: MLPerf Tiny's reference platform, an STM32L4R5
# (Cortex-M4, 2 MB flash, 640 KB RAM), and a small Cortex-M0+ part (256 KB
# flash, 32 KB RAM).
BOARDS = {"STM32L4R5 (M4)": ("cortex-m4", 2 << 20, 640 << 10),
          "M0+ 256K/32K": ("cortex-m0-4mb", 256 << 10, 32 << 10)}


def macs(model: nn.Module, shape) -> int:
    """Multiply-accumulates of one inference (convolutions and linear layers)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.randn(shape))
    for h in hooks:
        h.remove()
    return total


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, as a trained model has."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model


def quantized(name: str, qat: bool, qat_steps: int = 20, seed: int = 0):
    """The model, int8: PTQ (calibrated on random data) or QAT (`qat_steps`
    SGD steps on random targets from the float model's outputs), frozen."""
    import mcuq

    make, shape = MODELS[name]
    torch.manual_seed(seed)
    model = randomize_batchnorm(make()).eval()
    data = [torch.randn(16, *shape[1:]) for _ in range(4)]
    prepared = mcuq.prepare(model, mcuq.presets.int8(), qat=qat, freeze_bn_step=qat_steps // 2 if qat else None)
    if qat:
        with torch.no_grad():
            targets = [model(x) for x in data]
        opt = torch.optim.SGD(prepared.parameters(), lr=1e-3)
        prepared.train()
        for step in range(qat_steps):
            x, y = data[step % len(data)], targets[step % len(data)]
            opt.zero_grad()
            nn.functional.mse_loss(prepared(x), y).backward()
            opt.step()
    else:
        mcuq.calibrate(prepared, data, progress=False)
    return mcuq.freeze(prepared), data[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="cortex-m4,cortex-m0-4mb")
    parser.add_argument("--qat-steps", type=int, default=20)
    args = parser.parse_args(argv)
    import mcuq

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mcu"))
    from mcu import run_on_target

    targets = args.targets.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, shape) in MODELS.items():
            model = make()
            params = sum(p.numel() for p in model.parameters())
            frozen, sample = quantized(name, qat=True, qat_steps=args.qat_steps)
            exported = mcuq.export(frozen, shape, sample=sample)
            out = Path(tmp) / name
            exported.write(out, name)
            report = exported.report(name)
            runs = {t: run_on_target(t, exported, out, name, sample[:1]) for t in targets}
            rows.append((name, params, macs(model, shape), report, runs))
    print("| model | parameters | MACs | arena (B) | " +
          " | ".join(f"{t}: flash / RAM: static + stack peak (B)" for t in targets) +
          " | " + " | ".join(f"{t}: instructions / inference" for t in targets) + " | bit-exact | fits |")
    print("|---" * (6 + 2 * len(targets)) + "|")
    for name, params, mac, report, runs in rows:
        sizes = [f"{runs[t].flash_bytes:,} / {runs[t].ram_bytes:,} + {runs[t].stack_bytes}" for t in targets]
        counts = [f"{runs[t].count_per_inference:,}" for t in targets]
        exact = all(r.exit_code == 0 and r.bit_exact == r.vectors for r in runs.values())
        fits = [board for board, (t, flash, ram) in BOARDS.items()
                if t in runs and runs[t].flash_bytes <= flash and runs[t].ram_bytes + (runs[t].stack_bytes or 0) <= ram]
        print(f"| {name} | {params:,} | {mac:,} | {report['arena_bytes']:,} | " + " | ".join(sizes) + " | " + " | ".join(counts) +
              f" | {'yes' if exact else 'NO'} | {', '.join(fits) if fits else 'neither'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
