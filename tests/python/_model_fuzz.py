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

import math
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
    """a(x) + b(x) (or -, *): two branches of one shape joined elementwise."""

    def __init__(self, a: nn.Module, b: nn.Module, op: str = "add") -> None:
        super().__init__()
        self.a, self.b, self.op = a, b, op

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        if self.op == "sub":
            return a - b
        return a * b if self.op == "mul" else a + b


class Gate(nn.Module):
    """x * gate(x), the gate broadcast: squeeze-and-excitation (one value per
    channel, from the global mean) or spatial attention (one value per
    pixel, from the mean or the max over channels). The mean's output goes
    straight into a convolution, where the layer-by-layer check looks at its
    rounding (an fx-traced mean has no module to hook)."""

    def __init__(self, channels: int, spatial: bool, rng: random.Random) -> None:
        super().__init__()
        self.spatial, self.use_max = spatial, rng.random() < 0.5
        if spatial:
            self.gate = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Sigmoid())
        else:
            squeeze = rng.randint(1, 4)
            self.gate = nn.Sequential(nn.Conv2d(channels, squeeze, 1), nn.ReLU(), nn.Conv2d(squeeze, channels, 1),
                                      rng.choice([nn.Hardsigmoid(), nn.Sigmoid()]))

    def forward(self, x):
        if not self.spatial:
            return x * self.gate(x.mean((2, 3), keepdim=True))
        return x * self.gate(x.amax(1, keepdim=True) if self.use_max else x.mean(1, keepdim=True))


class Concat(nn.Module):
    """cat([a(x), b(x)], channels)."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


class GlobalMean(nn.Module):
    """x.mean over H and W: global average pooling as many models write it."""

    def forward(self, x):
        return x.mean((2, 3))


def _batch_norm(features: int, rng: random.Random) -> nn.Module:
    """A BatchNorm1d with statistics and affine parameters that are not the defaults."""
    bn = nn.BatchNorm1d(features)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    return bn if rng.random() < 0.8 else nn.Identity()


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


def _pooled(size: int, k: int, stride: int, ceil: bool) -> int:
    """PyTorch's pooled size (no padding): ceil mode rounds up, but its last
    window must start inside the input."""
    out = (-(-(size - k) // stride) if ceil else (size - k) // stride) + 1
    return out - 1 if ceil and (out - 1) * stride >= size else out


def random_case(seed: int) -> Case:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    preset = rng.choice(PRESETS)
    scale = 10.0 ** rng.uniform(-3, 3)
    roll = rng.random()
    if roll < 0.1:  # 1-d convolutions (audio, sensors), BatchNorm1d folded in
        channels, length = rng.randint(1, 6), rng.randint(1, 40)
        shape = [1, channels, length]
        layers = []
        for _ in range(rng.randint(1, 3)):
            k, stride, dilation = rng.choice([1, 3, 5]), rng.choice([1, 1, 2]), rng.choice([1, 1, 2])
            pad = rng.randint(0, k // 2)
            span = dilation * (k - 1) + 1
            if length + 2 * pad < span:
                continue
            depthwise = rng.random() < 0.3
            out_c = channels if depthwise else rng.randint(1, 8)
            layers += [nn.Conv1d(channels, out_c, k, stride=stride, padding=pad, dilation=dilation,
                                 groups=channels if depthwise else 1), _batch_norm(out_c, rng)] + _activation(rng)
            channels, length = out_c, (length + 2 * pad - span) // stride + 1
            if length >= 2 and rng.random() < 0.3:
                ceil = rng.random() < 0.3
                layers.append(nn.MaxPool1d(2, ceil_mode=ceil) if rng.random() < 0.5
                              else nn.AvgPool1d(2, ceil_mode=ceil))
                length = _pooled(length, 2, 2, ceil)
        layers += [nn.Flatten(), nn.Linear(channels * length, rng.randint(1, 6))]
        model = nn.Sequential(*layers)
        adversarial = rng.random() < 0.3
        return Case(seed, model.eval(), preset, shape, scale,
                    f"conv1d {len(layers)} layers, {preset}{', adversarial qparams' if adversarial else ''}",
                    adversarial)
    if roll < 0.3:  # a multilayer perceptron, BatchNorm1d after some hidden layers
        features = features_in = rng.randint(1, 64)
        layers: List[nn.Module] = []
        for _ in range(rng.randint(1, 3)):
            out = rng.randint(1, 40)
            layers += [nn.Linear(features, out)] + ([_batch_norm(out, rng)] if rng.random() < 0.4 else [])
            layers += _activation(rng)
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
                ceil = rng.random() < 0.3
                pool = (nn.MaxPool2d(k, ceil_mode=ceil) if rng.random() < 0.5
                        else nn.AvgPool2d(k, stride=rng.choice([1, k]), ceil_mode=ceil))
                layers.append(pool)
                stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
                size = tuple(_pooled(s, k, stride, ceil) for s in size)
        elif roll < 0.85:  # same-shape branches: 3x3 pad 1 stride 1 keeps the size
            out_c = rng.randint(1, 6)
            a = nn.Sequential(nn.Conv2d(channels, out_c, 3, padding=1), nn.ReLU())
            b = nn.Conv2d(channels, out_c, 1)
            layers.append(Residual(a, b, rng.choice(["add", "add", "sub", "mul"])))
            channels = out_c
        elif roll < 0.92:  # a gate: squeeze-and-excitation or spatial attention
            layers.append(Gate(channels, rng.random() < 0.4, rng))
        elif roll < 0.96:  # resizing: zero padding, nearest upsampling, transposed convolution
            if rng.random() < 0.3 and max(size) <= 8:
                k, stride = rng.choice([2, 3, 4]), rng.choice([1, 2, 2])
                pad, dilation = rng.randint(0, (k - 1) // 2), rng.choice([1, 1, 2])
                extra = rng.randint(0, max(stride, dilation) - 1)  # output_padding
                out_c = rng.randint(1, 6)
                layers += [nn.ConvTranspose2d(channels, out_c, k, stride=stride, padding=pad, dilation=dilation,
                                              output_padding=extra)] + _activation(rng)
                channels = out_c
                size = tuple((s - 1) * stride - 2 * pad + dilation * (k - 1) + 1 + extra for s in size)
            elif rng.random() < 0.5:
                pads = [rng.randint(0, 2) for _ in range(4)]  # left, right, top, bottom
                layers.append(nn.ZeroPad2d(tuple(pads)))
                size = (size[0] + pads[2] + pads[3], size[1] + pads[0] + pads[1])
            elif max(size) <= 8:
                factors = (rng.randint(1, 3), rng.randint(1, 3))
                layers.append(nn.Upsample(scale_factor=factors))
                size = (size[0] * factors[0], size[1] * factors[1])
        else:
            a = nn.Conv2d(channels, rng.randint(1, 4), 1)
            b = nn.Sequential(nn.Conv2d(channels, rng.randint(1, 4), 3, padding=1), nn.ReLU())
            layers.append(Concat(a, b))
            channels = a.out_channels + b[0].out_channels
    ending = rng.random()
    if ending < 0.35:
        layers += [nn.Flatten(), nn.Linear(channels * size[0] * size[1], rng.randint(1, 10))]
    elif ending < 0.55:  # global average pooling, then a classifier
        layers += [GlobalMean() if rng.random() < 0.5 else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                   nn.Linear(channels, rng.randint(1, 10))]
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


# The compiler matrix: the seed picks one (the campaign covers each about
# equally often); sanitizers go with any of them.
BUILDS = [("gcc", "-O0"), ("gcc", "-O2"), ("gcc", "-Os"), ("clang", "-O0"), ("clang", "-O2"), ("clang", "-Os")]


@dataclass
class Outcome:
    status: str  # "ok" or "refused"
    reason: str = ""  # the refusal's first line
    build: str = ""  # e.g. "clang -Os + ASan/UBSan"
    layers: int = 0  # layers of the integer graph
    points: int = 0  # quantization points compared with the fake-quant model
    worst: int = 0  # largest difference there, in levels (int16 lookup tables aside)
    lut16_worst: int = 0  # ... at int16 lookup tables (each within the error its report states)
    targets: Tuple[str, ...] = ()  # emulated MCUs it also ran on, bit-exact


def _layer_by_layer_agreement(frozen: nn.Module, exported, x: torch.Tensor) -> List[Tuple[str, int, int]]:
    """Each quantization point of the fake-quant model against the integer
    graph's tensor with the same shape and qparams, fed the same input: the
    fake-quant model runs with every activation quantizer's (and average
    pooling's, which rounds in the integer graph) output replaced by the
    integer reference's levels, dequantized, so each layer sees what its
    integer kernel saw. Returns (layer kind, largest difference in levels,
    the most the numerics allow) per point; every activation quantizer must
    find its tensor, in order.

    What the numerics allow (docs/DESIGN.md section 3): one level (two
    roundings of nearly the same real number), plus, after a weighted layer,
    the int32 bias's rounding (half a step of s_in * s_w, which fake-quant
    does not model) and in 16x8 layers TFLite's 16-bit multiplier (2^-15 of
    the output). int16 lookup tables interpolate between 513 samples: their
    error depends on the function's curvature at the input
    scale, so the exporter reports each table's largest error over every
    int16 input (report.json, lut_max_error_levels), and that is the bound."""
    ints = exported.integer_reference_all(exported.quantize_input(x))
    report = exported.report()
    infos = [dict(report["input"], kind="input", input_scale=0.0)] + [
        dict(layer["output"], kind=layer["kind"], input_scale=layer["inputs"][0]["scale"],
             lut_error=layer.get("lut_max_error_levels", 0))
        for layer in report["layers"]]
    points: List[Tuple[str, int, int]] = []
    unmatched: List[str] = []
    cursor = [0]
    weighted: List[nn.Module] = []  # the weighted layer that ran last

    def match(value: torch.Tensor, scale: float, zero_point: int, kinds=None) -> int:
        for j in range(cursor[0], len(infos)):
            t = infos[j]
            if (list(value.shape[1:]) == list(t["shape"]) and t["zero_point"] == zero_point
                    and abs(t["scale"] - scale) <= 1e-6 * scale and (kinds is None or t["kind"] in kinds)):
                cursor[0] = j + 1
                return j
        return -1

    def limit_of(j: int) -> int:
        t = infos[j]
        if j == 0:
            return 0
        if t["kind"] == "lut" and t["quant_max"] > 127:
            return max(1, t["lut_error"])  # the exporter's claim, checked here
        slack = 0.0
        if t["kind"] in ("conv2d", "depthwise_conv2d", "conv_transpose2d", "fully_connected") and weighted:
            fq = weighted[-1].weight_fake_quant
            # A codebook's grid: max |level| / 127 (mcuq.freeze snaps it so).
            w_scale = float(fq.scale.max()) if hasattr(fq, "scale") else float(fq.levels.abs().max()) / 127
            slack += 0.5 * t["input_scale"] * w_scale / t["scale"]
        if t["quant_max"] > 127 and t["kind"] != "lut":
            slack += float((ints[j] - t["zero_point"]).abs().max()) * 2.0 ** -15
        return 1 + int(slack + 1e-9)

    def compare(j: int, value: torch.Tensor) -> torch.Tensor:
        t = infos[j]
        scale, zero_point = t["scale"], t["zero_point"]
        levels = mcuq.quantize(value, torch.tensor([float(scale)]), torch.tensor([int(zero_point)]), t["quant_min"],
                               t["quant_max"], dtype=torch.int32)
        points.append((t["kind"], int((levels - ints[j]).abs().max()) if levels.numel() else 0, limit_of(j)))
        return (ints[j].to(value.dtype) - zero_point) * scale

    def quantizer_hook(name):
        def forward(module, inputs, output):
            scale, zero_point = float(module.scale.flatten()[0]), int(module.zero_point.flatten()[0])
            j = match(inputs[0], scale, zero_point)
            if j < 0:
                unmatched.append(f"{name} {list(inputs[0].shape)} scale {scale} zero point {zero_point}")
                return output
            return compare(j, inputs[0])
        return forward

    def pool_hook(module, inputs, output):
        # Average pooling keeps its input's qparams; find that tensor's level
        # grid (a global mean's output may be flat: [N, C] for [C, 1, 1]).
        for j in range(cursor[0], len(infos)):
            shape = infos[j]["shape"]
            if infos[j]["kind"] == "avg_pool2d" and output[0].numel() == math.prod(shape):
                cursor[0] = j + 1
                return compare(j, output.reshape(-1, *shape)).reshape(output.shape)
        return output

    def weighted_hook(module, inputs):
        weighted.append(module)
        # A global mean traced into the graph (x.mean((2, 3))) has no module
        # to hook: its rounding is checked where its output enters a layer.
        x, j = inputs[0], cursor[0]
        # No rounding there: max pools, reshapes, padding, upsampling, and
        # clamps that keep the qparams (a ReLU on a quantized tensor, which
        # has no quantizer).
        while j < len(infos) and (infos[j]["kind"] in ("max_pool2d", "reshape", "pad2d", "upsample_nearest") or (
                infos[j]["kind"] == "requantize" and infos[j]["scale"] == infos[j]["input_scale"])):
            j += 1
        if j < len(infos) and infos[j]["kind"] == "avg_pool2d" and x[0].numel() == math.prod(infos[j]["shape"]):
            cursor[0] = j + 1
            return (compare(j, x.reshape(-1, *infos[j]["shape"])).reshape(x.shape),)
        return None

    handles = []
    for n, m in frozen.named_modules():
        if isinstance(m, mcuq.FixedFakeQuantize) and not n.endswith("weight_fake_quant"):
            handles.append(m.register_forward_hook(quantizer_hook(n)))
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, GlobalMean)):
            handles.append(m.register_forward_hook(pool_hook))
        elif hasattr(m, "weight_fake_quant"):
            handles.append(m.register_forward_pre_hook(weighted_hook))
    try:
        with torch.no_grad():
            frozen(x)
    finally:
        for h in handles:
            h.remove()
    assert not unmatched, f"activation quantizers with no tensor of the integer graph: {unmatched}"
    return points


def check_case(case: Case, work: Path, sanitize: bool = False, targets: Tuple[str, ...] = ()) -> Outcome:
    """Prepares, calibrates, freezes and exports the case; compiles its C
    with the seed's compiler and optimization level (under ASan + UBSan if
    ``sanitize``) and runs it, and on each emulated MCU in ``targets``.
    Returns a refusal (the exporter's or prepare's ValueError) or "ok" with
    the agreement with the fake-quant model; raises AssertionError when the C
    and the integer reference differ anywhere, or when a one-layer model is
    more than one level off the fake-quant model (the numerics contract,
    docs/DESIGN.md section 3)."""
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
        return Outcome("refused", str(error).splitlines()[0])
    compiler, optimize = BUILDS[case.seed // 4 % len(BUILDS)]  # seeds 4k..4k+3 share one; 4k sanitized
    build = f"{compiler} {optimize}{' + ASan/UBSan' if sanitize else ''}"
    where = f"seed {case.seed} ({case.description}, {build})"
    directory = work / f"case{case.seed}"
    exported.write(directory, "net")
    exe = mcuq.host.compile_model(directory, "net", compiler=compiler, sanitize=sanitize, optimize=optimize)
    x = torch.randn(24, *shape[1:]) * case.input_scale * torch.logspace(-1, 1, 24).view(-1, *[1] * (len(shape) - 1))
    levels = exported.quantize_input(x)
    t = exported.input_qparams
    edges = torch.stack([torch.full(t["shape"], v, dtype=torch.int32) for v in (t["quant_min"], t["quant_max"],
                                                                               t["zero_point"])])
    all_levels = torch.cat([levels, edges])
    got, want = mcuq.host.run_model(exe, all_levels, exported), exported.integer_reference(all_levels)
    mismatches = int((got != want).sum())
    assert mismatches == 0, (f"{where}: {mismatches} of {got.numel()} output levels of the C differ from the "
                             f"integer reference\n{case.model}")
    layers = len(exported.report()["layers"])
    points = _layer_by_layer_agreement(frozen, exported, x)
    lut16 = exported.activation_dtype == torch.int16
    outcome = Outcome("ok", build=build, layers=layers, points=len(points),
                      worst=max((w for kind, w, _ in points if not (lut16 and kind == "lut")), default=0),
                      lut16_worst=max((w for kind, w, _ in points if lut16 and kind == "lut"), default=0))
    off = [f"{kind} {worst} levels (at most {limit})" for kind, worst, limit in points if worst > limit]
    assert not off, (f"{where}: fed the same input, the integer graph is off its fake-quant model at {off}\n"
                     f"{case.model}")
    for target in targets:
        from mcu import run_on_target  # examples/mcu, on sys.path where targets are asked for
        result = run_on_target(target, exported, directory, "net", x[:4], work=directory)
        assert result.exit_code == 0 and result.bit_exact == result.vectors, (
            f"{where}: on the {target}, {result.vectors - result.bit_exact} of {result.vectors} inputs differ from "
            f"the integer reference\n{result.output[-2000:]}")
    outcome.targets = tuple(targets)
    return outcome


def _smaller_models(model: nn.Sequential):
    """Candidates one step smaller: a layer dropped, a two-branch block
    replaced by one branch, a branch's own Sequential by one of its layers."""
    layers = list(model)
    for i in range(len(layers)):
        yield nn.Sequential(*layers[:i], *layers[i + 1:])
    for i, layer in enumerate(layers):
        if isinstance(layer, (Residual, Concat)):
            for branch in (layer.a, layer.b):
                yield nn.Sequential(*layers[:i], branch, *layers[i + 1:])


def minimize(case: Case, work: Path, sanitize: bool = False) -> Case:
    """The smallest model derived from ``case`` (greedy: drop layers, keep
    one branch) whose check still fails, and plain qparams if the failure
    does not need adversarial ones. A candidate whose shapes no longer fit
    is refused by prepare and export, and so skipped."""
    def fails(candidate: Case) -> bool:
        try:
            check_case(candidate, work, sanitize=sanitize)
        except AssertionError:
            return True
        except Exception:
            return False
        return False

    assert fails(case), f"seed {case.seed} does not fail"
    if case.adversarial:
        plain = Case(case.seed, case.model, case.preset, case.input_shape, case.input_scale, case.description, False)
        case = plain if fails(plain) else case
    shrunk = True
    while shrunk and len(case.model) > 1:
        shrunk = False
        for model in _smaller_models(case.model):
            candidate = Case(case.seed, model.eval(), case.preset, case.input_shape, case.input_scale,
                             f"minimized from seed {case.seed}", case.adversarial)
            if fails(candidate):
                case, shrunk = candidate, True
                break
    return case
