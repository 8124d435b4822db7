"""Differential testing of the export (issue 18): random models over what
mcuq.prepare and the exporter support, random presets and input ranges;
each is prepared, calibrated, frozen and exported, and its generated C
(gcc -O2, or clang with AddressSanitizer + UndefinedBehaviorSanitizer) must
equal the integer reference bit for bit on random and extreme inputs. About
a third of the models get adversarial quantization parameters after
freezing (zero points at their limits, scales 10^+-1.5 off): the exporter
must refuse them with a reason or export C that still matches.

    case = random_case(seed)          # the model, preset, input shape, input range
    outcome = check_case(case, work)  # "ok", "refused: <why>"; raises on a mismatch

Used by tests/python/test_fuzz_export.py (a fixed-seed set in the suite) and
scripts/fuzz_export.py (long campaigns).
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import torch
from torch import nn

import mcuq
import mcuq.host

PRESETS = ["int8", "int16x8", "w4a8", "pow2"]


class Residual(nn.Module):
    """a(x) + b(x): two branches of one shape joined by an add."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a(x) + self.b(x)


class Concat(nn.Module):
    """cat([a(x), b(x)], channels)."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


@dataclass
class Case:
    seed: int
    model: nn.Module
    preset: str
    input_shape: List[int]
    input_scale: float  # calibration and test inputs are N(0, 1) times this
    description: str
    adversarial: bool = False  # qparams perturbed after freezing (_perturb_qparams)


def _activation(rng: random.Random) -> List[nn.Module]:
    return rng.choice([[], [], [nn.ReLU()], [nn.ReLU6()], [nn.Hardtanh(-1.0, 2.0)], [nn.Sigmoid()], [nn.Tanh()],
                       [nn.Hardswish()]])


def _conv(rng: random.Random, channels: int, size: Tuple[int, int]) -> Tuple[nn.Module, int, Tuple[int, int]]:
    """A random convolution that fits `size`; returns it, its output channels and size."""
    for _ in range(20):
        k = rng.choice([1, 1, 2, 3, 3, 3, 5])
        dilation = rng.choice([1, 1, 1, 2])
        stride = rng.choice([1, 1, 2, 3])
        pad = rng.randint(0, k // 2 + 1)
        span = dilation * (k - 1) + 1
        if size[0] + 2 * pad < span or size[1] + 2 * pad < span:
            continue
        kind = rng.choice(["plain", "plain", "depthwise", "grouped"])
        if kind == "depthwise":
            out_c, groups = channels * rng.choice([1, 1, 2]), channels
        elif kind == "grouped" and channels % 2 == 0:
            out_c, groups = 2 * rng.randint(1, 4), 2
        else:
            out_c, groups = rng.randint(1, 9), 1
        conv = nn.Conv2d(channels, out_c, k, stride=stride, padding=pad, dilation=dilation, groups=groups,
                         bias=rng.random() < 0.8)
        out = tuple((s + 2 * pad - span) // stride + 1 for s in size)
        return conv, out_c, out
    conv = nn.Conv2d(channels, rng.randint(1, 6), 1)
    return conv, conv.out_channels, size


def random_case(seed: int) -> Case:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    preset = rng.choice(PRESETS)
    scale = 10.0 ** rng.uniform(-3, 3)
    if rng.random() < 0.2:  # a multilayer perceptron
        features = features_in = rng.randint(1, 64)
        layers: List[nn.Module] = []
        for _ in range(rng.randint(1, 3)):
            out = rng.randint(1, 40)
            layers += [nn.Linear(features, out)] + _activation(rng)
            features = out
        model = nn.Sequential(*layers)
        adversarial = rng.random() < 0.3
        return Case(seed, model.eval(), preset, [1, features_in], scale,
                    f"mlp {len(layers)} layers, {preset}{', adversarial qparams' if adversarial else ''}", adversarial)
    channels, size = rng.randint(1, 5), (rng.randint(1, 12), rng.randint(1, 12))
    shape = [1, channels, *size]
    layers = []
    if rng.random() < 0.15:  # an activation or pooling before the first weighted layer
        layers += rng.choice([[nn.ReLU()], [nn.Sigmoid()], [nn.MaxPool2d(1)]])
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.55:
            conv, channels, size = _conv(rng, channels, size)
            layers += [conv] + _activation(rng)
        elif roll < 0.7 and min(size) >= 2:
            k = rng.choice([2, 2, 3])
            if min(size) >= k:
                pool = nn.MaxPool2d(k) if rng.random() < 0.5 else nn.AvgPool2d(k, stride=rng.choice([1, k]))
                layers.append(pool)
                stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
                size = tuple((s - k) // stride + 1 for s in size)
        elif roll < 0.85:  # same-shape branches: 3x3 pad 1 stride 1 keeps the size
            out_c = rng.randint(1, 6)
            a = nn.Sequential(nn.Conv2d(channels, out_c, 3, padding=1), nn.ReLU())
            b = nn.Conv2d(channels, out_c, 1)
            layers.append(Residual(a, b))
            channels = out_c
        else:
            a = nn.Conv2d(channels, rng.randint(1, 4), 1)
            b = nn.Sequential(nn.Conv2d(channels, rng.randint(1, 4), 3, padding=1), nn.ReLU())
            layers.append(Concat(a, b))
            channels = a.out_channels + b[0].out_channels
    if rng.random() < 0.5:
        layers += [nn.Flatten(), nn.Linear(channels * size[0] * size[1], rng.randint(1, 10))]
    model = nn.Sequential(*layers).eval()
    adversarial = rng.random() < 0.3
    return Case(seed, model, preset, shape, scale, f"cnn {len(layers)} layers, {preset}, input {shape}"
                f"{', adversarial qparams' if adversarial else ''}", adversarial)


def _perturb_qparams(frozen: nn.Module, rng: random.Random) -> None:
    """Adversarial quantization parameters: activation zero points at their
    limits, scales stretched or shrunk by up to 10^1.5 (extreme requantization
    multipliers, saturating inputs); weight scales by up to 10x."""
    for name, module in frozen.named_modules():
        if not isinstance(module, mcuq.FixedFakeQuantize):
            continue
        with torch.no_grad():
            if "weight" in name:
                module.scale.mul_(10.0 ** rng.uniform(-1, 1))
                continue
            module.scale.mul_(10.0 ** rng.uniform(-1.5, 1.5))
            module.zero_point.fill_(rng.choice([module.quant_min, module.quant_max, int(module.zero_point.flatten()[0]),
                                                rng.randint(module.quant_min, module.quant_max)]))


def check_case(case: Case, work: Path, sanitize: bool = False) -> str:
    """"ok" or "refused: <the exporter's or prepare's error>"; raises
    AssertionError when the generated C and the integer reference differ."""
    shape = case.input_shape
    try:
        prepared = mcuq.prepare(case.model, mcuq.presets.get(case.preset), qat=False)
        calibration = [torch.randn(16, *shape[1:]) * case.input_scale for _ in range(2)]
        mcuq.calibrate(prepared, calibration, progress=False)
        frozen = mcuq.freeze(prepared)
        if case.adversarial:
            _perturb_qparams(frozen, random.Random(case.seed + 1))
        exported = mcuq.export(frozen, shape, sample=calibration[0][:4])
    except ValueError as error:
        return f"refused: {str(error).splitlines()[0]}"
    directory = work / f"case{case.seed}"
    exported.write(directory, "net")
    exe = mcuq.host.compile_model(directory, "net", compiler="clang" if sanitize else "gcc", sanitize=sanitize)
    x = torch.randn(24, *shape[1:]) * case.input_scale * torch.logspace(-1, 1, 24).view(-1, *[1] * (len(shape) - 1))
    levels = exported.quantize_input(x)
    t = exported.input_qparams
    edges = torch.stack([torch.full(t["shape"], v, dtype=torch.int32) for v in (t["quant_min"], t["quant_max"],
                                                                               t["zero_point"])])
    levels = torch.cat([levels, edges])
    got, want = mcuq.host.run_model(exe, levels, exported), exported.integer_reference(levels)
    mismatches = int((got != want).sum())
    assert mismatches == 0, (f"seed {case.seed} ({case.description}): {mismatches} of {got.numel()} output levels of "
                             f"the C differ from the integer reference\n{case.model}")
    return "ok"
