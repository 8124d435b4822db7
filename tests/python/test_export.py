"""mcuq.export: frozen models -> integer graph -> generated C.

Two independent executions of each exported model must agree bit for bit:
the LibTorch integer reference (float64 convolutions on zero-point-shifted
levels, exact) and the generated C on the mcuq runtime, compiled on the host
with gcc and clang, strict C99 and under AddressSanitizer + UBSan. The
integer reference is also compared with the fake-quant model it came from.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mcuq
import mcuq.host
from _export_zoo import ZOO, ZooModel, frozen
from _model_fuzz import _layer_by_layer_agreement
from mcuq.prepare import WeightQuantized

REPO = Path(__file__).resolve().parents[2]
N_RANDOM = 300


def _inputs(model: ZooModel) -> torch.Tensor:
    """Random inputs at several scales (some saturate the input range), plus
    real Fashion-MNIST images where the shape is theirs."""
    torch.manual_seed(1)
    shape = model.input_shape[1:]
    x = torch.randn(N_RANDOM, *shape) * torch.linspace(0.2, 4.0, N_RANDOM).view(-1, *[1] * len(shape))
    if shape == [1, 28, 28]:
        images, _ = mcuq.data.fashion_mnist("test")
        x = torch.cat([x, mcuq.data.normalized(images[:200])])
    return x


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every zoo model frozen, exported and written (once per test module)."""
    out = {}
    for model in ZOO:
        frozen_model = frozen(model)
        e = mcuq.export(frozen_model, model.input_shape, rounding=model.rounding)
        directory = tmp_path_factory.mktemp(model.name)
        e.write(directory, "net")
        out[model.name] = (model, frozen_model, e, directory)
    return out


COMPILERS = [("gcc", False), ("clang", True), ("gcc", True)]


@pytest.mark.parametrize("compiler,sanitize", COMPILERS, ids=["gcc-O2", "clang-asan-ubsan", "gcc-asan-ubsan"])
@pytest.mark.parametrize("name", [m.name for m in ZOO])
def test_generated_c_equals_integer_reference(exported, name, compiler, sanitize):
    model, _, e, directory = exported[name]
    levels = e.quantize_input(_inputs(model))
    reference = e.integer_reference(levels)
    exe = mcuq.host.compile_model(directory, "net", compiler=compiler, sanitize=sanitize)
    got = mcuq.host.run_model(exe, levels, e)
    mismatches = (got != reference).sum().item()
    assert mismatches == 0, f"{name}: {mismatches} of {got.numel()} output levels differ"
    # Extreme inputs: every level at the bottom, the top and the zero point.
    t = e.input_qparams
    for value in (t["quant_min"], t["quant_max"], t["zero_point"]):
        edge = torch.full((1, *t["shape"]), value, dtype=torch.int32)
        assert torch.equal(mcuq.host.run_model(exe, edge, e), e.integer_reference(edge))


def _agreement(e, frozen_model, x):
    """Integer reference vs the fake-quant model, in output levels."""
    o = e.output_qparams
    with torch.no_grad():
        fake = mcuq.quantize(frozen_model(x), torch.tensor([o["scale"]]), torch.tensor([o["zero_point"]]),
                             o["quant_min"], o["quant_max"], dtype=torch.int32)
    diff = (fake - e.integer_reference(e.quantize_input(x))).abs()
    return (diff == 0).float().mean().item(), (diff <= 1).float().mean().item(), diff.max().item()


@pytest.mark.parametrize("name", [m.name for m in ZOO])
def test_integer_reference_agrees_with_fake_quant_model(exported, name):
    model, frozen_model, e, _ = exported[name]
    exact, within_one, worst = _agreement(e, frozen_model, _inputs(model))
    print(f"\n{name}: {100 * exact:.2f} % of output levels equal the fake-quant model's, "
          f"{100 * within_one:.2f} % within 1 LSB, max {worst} LSB")
    if model.agreement is not None:
        assert within_one >= model.agreement[0] and worst <= model.agreement[1]
    elif model.single_layer and e.activation_dtype == torch.int8:
        assert exact >= 0.99 and worst <= 1
    elif model.single_layer:
        # 16x8: TFLite's int64 rule reduces the multiplier to 16 bits (2^-15
        # relative), so a few % of int16 levels land one off (rounding="single"
        # keeps the full multiplier: see the next test); every one within 1 LSB.
        assert worst <= 1
    elif e.activation_dtype == torch.int16 and "lut" in name:
        # int16 lookup tables interpolate between samples 128 levels apart
        # (TFLite's scheme): a few int16 LSBs off the exact function.
        assert worst <= 3 and within_one >= 0.9
    else:
        assert within_one >= 0.97 and worst <= 3


@pytest.mark.parametrize("name", [m.name for m in ZOO])
def test_integer_graph_agrees_layer_by_layer(exported, name):
    """Each quantization point of the fake-quant model, fed the integer
    graph's values, against the integer graph's tensor: within what the
    numerics allow (tests/python/_model_fuzz.py says what that is)."""
    model, frozen_model, e, _ = exported[name]
    points = _layer_by_layer_agreement(frozen_model, e, _inputs(model)[:100])
    assert len(points) >= 2
    off = [(kind, worst, bound) for kind, worst, bound in points if worst > bound]
    assert not off, f"{name}: points beyond their bound (kind, levels, bound): {off}"


def test_full_precision_16x8_rounding_agrees_on_99_percent():
    model = next(m for m in ZOO if m.name == "single_conv_16x8")
    frozen_model = frozen(model)
    e = mcuq.export(frozen_model, model.input_shape, rounding="single")
    exact, _, worst = _agreement(e, frozen_model, _inputs(model))
    assert exact >= 0.99 and worst <= 1


def test_scripted_and_traced_models_export_the_same_c(exported):
    for name in ("depthwise_cnn", "residual_cnn", "lut_mlp"):
        model, frozen_model, e, _ = exported[name]
        scripted = mcuq.export(torch.jit.script(frozen_model), model.input_shape, rounding=model.rounding)
        assert scripted.c_source("net") == e.c_source("net")
        assert scripted.c_header("net") == e.c_header("net")


def test_exporting_twice_gives_the_same_files(exported):
    """The C depends on the model only: not on what TorchScript compiled
    before in the process (its class names and code lines do), nor on paths."""
    model, frozen_model, e, directory = exported["fashion_cnn"]
    again = mcuq.export(frozen_model, model.input_shape, rounding=model.rounding)
    assert again.c_source("net") == (directory / "net.c").read_text()
    assert again.c_header("net") == (directory / "net.h").read_text()
    assert str(REPO) not in again.c_source("net")


def test_generated_code_has_no_float_malloc_or_printf(exported):
    for name, (_, _, e, directory) in exported.items():
        source = re.sub(r"/\*.*?\*/", "", (directory / "net.c").read_text(), flags=re.S)
        for word in ("float", "double", "malloc", "printf"):
            assert not re.search(rf"\b{word}\b", source), (name, word)
        header = (directory / "net.h").read_text()
        assert "NET_ARENA_SIZE" in header and "net_invoke" in header


def test_report_describes_every_layer(exported):
    _, _, e, directory = exported["depthwise_cnn"]
    report = json.loads((directory / "report.json").read_text())
    assert report["flash_bytes"] == e.flash_bytes and report["arena_bytes"] == e.arena_bytes
    kinds = [layer["kind"] for layer in report["layers"]]
    assert kinds[:3] == ["conv2d", "depthwise_conv2d", "conv2d"]
    conv = report["layers"][0]
    assert len(conv["multipliers"]) == len(conv["shifts"]) == len(conv["weight_scales"]) == 8
    assert conv["headroom_bits"] > 0 and conv["accumulator_bound"] < 2**31
    assert all(layer["sqnr_db"] is None or layer["sqnr_db"] > 10 for layer in report["layers"])
    assert report["macs"] == sum(layer["macs"] for layer in report["layers"]) == e.macs


def test_w4a8_weights_are_packed_two_per_byte(exported):
    for name in ("mlp_w4a8", "depthwise_cnn_w4a8"):
        _, _, w4, directory = exported[name]
        _, _, w8, _ = exported[name.replace("_w4a8", "")]
        weighted = [layer for layer in w4.report()["layers"] if "weight_bits" in layer]
        assert weighted and all(layer["weight_bits"] == 4 for layer in weighted)
        source = (directory / "net.c").read_text()
        # The packed nibbles run through the codebook kernels, indices into the runtime's int4 codebook.
        assert "mcuq_codebook_s4, 4," in source and "_s8_cb(" in source
        assert "mcuq_conv2d_s8(" not in source and "mcuq_fully_connected_s8(" not in source
        # Same layers and shapes as the int8 export, about half the weight bytes.
        weights = lambda e: sum(layer["weight_bytes"] for layer in e.report()["layers"])  # noqa: E731
        assert weights(w4) == sum((n + 1) // 2 for n in (
            layer["weight_bytes"] for layer in w8.report()["layers"]))


def test_pow2_layers_requantize_with_shifts(exported):
    _, _, e, _ = exported["depthwise_cnn_pow2"]
    layers = e.report()["layers"]
    assert {layer["rounding"] for layer in layers if "rounding" in layer} == {"shift"}
    assert all(m == 2**30 for layer in layers for m in layer.get("multipliers", []))


def test_arena_is_smaller_than_keeping_every_tensor(exported):
    _, _, e, _ = exported["residual_cnn"]
    report = e.report()
    every = sum(int(torch.tensor(layer["output"]["shape"]).prod()) for layer in report["layers"]
                if layer["kind"] != "reshape")
    largest = max(int(torch.tensor(layer["output"]["shape"]).prod()) for layer in report["layers"])
    assert largest <= e.arena_bytes < every


# ---- refusals -------------------------------------------------------------

class _Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(140000, 1)
        nn.init.constant_(self.fc.weight, 1.0)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
    nn.AvgPool2d(3, 2, padding=1, ceil_mode=True), nn.AvgPool2d(2, 2, ceil_mode=True),
    nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)], ids=str)
def test_ceil_mode_pooling_is_bit_exact_and_follows_pytorch(pool, tmp_path):
    """ceil_mode (SqueezeNet's pooling) was refused. Its last windows reach
    past the input: max ignores those taps, and an average divides by the
    taps inside the padded input (PyTorch's rule). The fake-quant model is
    PyTorch's own pooling: on a 7x8 map (odd, so the ceil windows overhang),
    the integer output is within one level of it, and the C equals the
    integer reference under the sanitizers."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), pool).eval()
    prepared = mcuq.prepare(model, mcuq.presets.int8(), qat=False)
    torch.manual_seed(0)
    x = torch.randn(32, 2, 9, 10) * 3
    mcuq.calibrate(prepared, [x], progress=False)
    frozen_model = mcuq.freeze(prepared)
    e = mcuq.export(frozen_model, [1, 2, 9, 10])
    floor_shape = nn.Sequential(nn.Conv2d(2, 3, 3), type(pool)(pool.kernel_size, pool.stride, pool.padding))(x).shape
    assert list(e.output_qparams["shape"]) != list(floor_shape[1:])  # the ceil windows exist
    with torch.no_grad():
        fake = frozen_model(x)
    assert (e(x) - fake).abs().max() <= e.output_qparams["scale"] * 1.0001
    e.write(tmp_path, "net")
    exe = mcuq.host.compile_model(tmp_path, "net", compiler="clang", sanitize=True)
    levels = e.quantize_input(x)
    assert torch.equal(mcuq.host.run_model(exe, levels, e), e.integer_reference(levels))


@pytest.mark.parametrize("pool", [
    nn.MaxPool1d(3, 2), nn.MaxPool1d(2, ceil_mode=True), nn.AvgPool1d(3, 2, padding=1),
    nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False), nn.AvgPool1d(4, 3, padding=2, ceil_mode=True)], ids=str)
def test_1d_pooling_is_bit_exact_and_follows_pytorch(pool, tmp_path):
    """MaxPool1d / AvgPool1d after a Conv1d (audio and sensor models), run
    as 1 x k pooling: within one level of PyTorch's own pooling (the
    fake-quant model), and the C equal to the integer reference."""
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), pool).eval()
    prepared = mcuq.prepare(model, mcuq.presets.int8(), qat=False)
    torch.manual_seed(0)
    x = torch.randn(32, 2, 23) * 3
    mcuq.calibrate(prepared, [x], progress=False)
    frozen_model = mcuq.freeze(prepared)
    e = mcuq.export(frozen_model, [1, 2, 23])
    assert [layer["kind"] for layer in e.report()["layers"]][-1] == type(pool).__name__.lower()[:3] + "_pool2d"
    with torch.no_grad():
        fake = frozen_model(x)
    assert fake.shape[1:] == torch.Size(e.output_qparams["shape"])
    assert (e(x) - fake).abs().max() <= e.output_qparams["scale"] * 1.0001
    e.write(tmp_path, "net")
    exe = mcuq.host.compile_model(tmp_path, "net", compiler="clang", sanitize=True)
    levels = e.quantize_input(x)
    assert torch.equal(mcuq.host.run_model(exe, levels, e), e.integer_reference(levels))


def test_overflowing_accumulator_is_refused_naming_the_layer():
    prepared = mcuq.prepare(_Wide().eval(), mcuq.presets.int8(), qat=False)
    mcuq.calibrate(prepared, [torch.rand(2, 140000) * 2 - 1], progress=False)
    with pytest.raises(ValueError, match=r"mcuq.export: cannot lower fc .*int32 accumulator can overflow"):
        mcuq.export(mcuq.freeze(prepared), [1, 140000])


def test_unrepresentable_requantization_multiplier_is_refused_naming_the_layer():
    """s_in * s_w / s_out of 2^30 or more has no (multiplier, shift) pair; it
    used to saturate silently to about 2^30."""
    model = nn.Sequential(nn.Linear(8, 4))
    prepared = mcuq.prepare(model.eval(), mcuq.presets.int8(), qat=False)
    mcuq.calibrate(prepared, [torch.randn(16, 8)], progress=False)
    frozen = mcuq.freeze(prepared)
    frozen.activation_quantizer_1.scale.fill_(1e-20)  # a collapsed output range
    with pytest.raises(ValueError, match=r"mcuq.export: cannot lower 0 \(.*\): its requantization multiplier .* is "
                                         r"2\^30 or more"):
        mcuq.export(frozen, [1, 8])


class _CumulativeSum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1)


def _between_quantizers(module: nn.Module) -> nn.Module:
    return nn.Sequential(mcuq.FixedFakeQuantize(torch.tensor([0.1]), torch.tensor([0]), -128, 127), module,
                         mcuq.FixedFakeQuantize(torch.tensor([0.1]), torch.tensor([0]), -128, 127))


def test_unsupported_node_is_refused_with_its_name_and_line():
    with pytest.raises(ValueError, match=r"cannot lower .*\(aten::cumsum, .*test_export.py:\d+\): this operation is "
                                         r"not supported"):
        mcuq.export(_between_quantizers(_CumulativeSum()), [1, 4])


class _Scaled(nn.Module):
    def forward(self, x):
        return x * 0.5


class _Product(nn.Module):
    def __init__(self, other: str):
        super().__init__()
        self.other = other

    def forward(self, x):
        y = nn.functional.avg_pool2d(x, (3, 1)) if self.other == "row" else x.mean(1, keepdim=True)
        return x - y if self.other == "sub" else x * y


@pytest.mark.parametrize("model,message", [
    (_Scaled(), r"aten::mul, .*\): multiplying an activation and a constant is not supported"),
    (_Product("row"), r"cannot multiply activations of shapes \[2, 3, 4\] and \[2, 1, 4\]: both must have one "
                      r"shape, or one must be \[C, 1, 1\]"),
    (_Product("sub"), r"cannot subtract activations of shapes \[2, 3, 4\] and \[1, 3, 4\]: both inputs must have "
                      r"one shape \(broadcasting is supported for mul only\)"),
], ids=["constant", "broadcast-rows", "broadcast-sub"])
def test_unsupported_elementwise_ops_are_refused_with_the_reason(model, message):
    with pytest.raises(ValueError, match=message):
        mcuq.export(_between_quantizers(model), [1, 2, 3, 4])


def test_torch_jit_frozen_model_is_refused_with_the_reason(exported):
    model, frozen_model, _, _ = exported["mlp"]
    traced = torch.jit.freeze(torch.jit.trace(frozen_model, torch.zeros(model.input_shape)))
    with pytest.raises(ValueError, match="its weight is a float constant, not fake-quantized.*torch.jit.freeze"):
        mcuq.export(traced, model.input_shape)


class _InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = mcuq.FixedFakeQuantize(torch.tensor([0.1]), torch.tensor([0]), -128, 127)
        self.out = mcuq.FixedFakeQuantize(torch.tensor([0.1]), torch.tensor([0]), -128, 127)

    def forward(self, x):
        x = self.q(x)
        y = torch.relu_(x)  # mutates x, which is used again below
        return self.out(x + y)


def test_in_place_op_whose_input_is_reused_is_refused():
    # Tracing records the mutation as a new value (exported correctly); a
    # scripted graph keeps the mutated value, which the exporter refuses.
    traced, scripted = mcuq.export(_InPlace(), [1, 4]), torch.jit.script(_InPlace())
    x = torch.randn(8, 4)
    assert torch.equal(traced(x), _InPlace()(x))
    with pytest.raises(ValueError, match=r"aten::relu_.*in-place op whose input is used again"):
        mcuq.export(scripted, [1, 4])


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = mcuq.FixedFakeQuantize(torch.tensor([0.1]), torch.tensor([0]), -128, 127)

    def forward(self, x):
        x = self.q(x)
        return x, x


def test_model_returning_a_tuple_is_refused():
    with pytest.raises(ValueError, match=r"expected the model to return one tensor, but it returns Tuple\[Tensor, Tensor\]"):
        mcuq.export(torch.jit.script(_Pair()), [1, 4])


def test_unquantized_output_and_float_weights_are_refused():
    fq = lambda scale: mcuq.FixedFakeQuantize(torch.tensor([scale]), torch.tensor([0]), -128, 127)  # noqa: E731
    linear = WeightQuantized.wrap(nn.Linear(4, 2), fq(0.01))
    with pytest.raises(ValueError, match="the model output, from .*aten::linear.*, is not quantized"):
        mcuq.export(nn.Sequential(fq(0.1), linear), [1, 4])
    with pytest.raises(ValueError, match="cannot lower 1 .*its weight is a float constant, not fake-quantized"):
        mcuq.export(nn.Sequential(fq(0.1), nn.Linear(4, 2), fq(0.1)), [1, 4])


def test_unquantized_input_is_refused():
    with pytest.raises(ValueError, match="model's float input; the model must quantize its input first"):
        mcuq.export(nn.Sequential(nn.Linear(4, 2)), [1, 4])


def test_missing_parent_directory_fails_cleanly(exported, tmp_path):
    _, _, e, _ = exported["mlp"]
    with pytest.raises(ValueError, match="cannot create output directory .*does not exist"):
        e.write(tmp_path / "missing" / "out", "net")
    assert not (tmp_path / "missing").exists()


def test_trailing_slash_creates_the_directory(exported, tmp_path):
    _, _, e, _ = exported["mlp"]
    e.write(f"{tmp_path}/new/", "net")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["net.c", "net.h", "report.json"]


def test_failed_write_leaves_nothing_half_written(exported, tmp_path):
    _, _, e, _ = exported["mlp"]
    e.write(tmp_path, "net")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # A directory where the exporter's temporary for report.json goes makes
    # that write fail after the .h and .c temporaries were written.
    (tmp_path / f".report.json.tmp{os.getpid()}").mkdir()
    other = mcuq.export(frozen(ZOO[3], seed=5), [1, 64])
    with pytest.raises(RuntimeError, match="cannot write .*report.json.*nothing was written"):
        other.write(tmp_path, "net")
    (tmp_path / f".report.json.tmp{os.getpid()}").rmdir()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # old files intact, no temporaries left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_fails_cleanly(exported, tmp_path):
    _, _, e, _ = exported["mlp"]
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(RuntimeError, match="cannot write"):
            e.write(tmp_path, "net")
        assert list(tmp_path.iterdir()) == []
    finally:
        tmp_path.chmod(0o755)


def test_bad_arguments_are_value_errors(exported):
    model, frozen_model, e, _ = exported["mlp"]
    with pytest.raises(ValueError, match="expected name to be a C identifier, but got '1net'"):
        e.c_source("1net")
    with pytest.raises(ValueError, match="name 'mcuq_runtime' is taken by a runtime header"):
        e.c_header("mcuq_runtime")
    with pytest.raises(ValueError, match=r"expected an input of shape \[N, 64\], but got \[2, 63\]"):
        e.quantize_input(torch.zeros(2, 63))
    with pytest.raises(ValueError, match=r"expected input levels in \[-128, 127\], but got values in \[0, 300\]"):
        e.integer_reference(torch.tensor([[300] + [0] * 63]))
    with pytest.raises(ValueError, match="expected rounding 'double' or 'single', but got 'up'"):
        mcuq.export(frozen_model, model.input_shape, rounding="up")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        mcuq.export("/nonexistent/model.pt", model.input_shape)


# ---- the command line -------------------------------------------------------

def test_cli_writes_files_and_prints_the_summary(exported, tmp_path):
    model, frozen_model, e, _ = exported["depthwise_cnn"]
    path = tmp_path / "dw.pt"
    torch.jit.trace(frozen_model, torch.zeros(model.input_shape)).save(str(path))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "mcuq.export", str(path), "--input-shape", "1,3,16,16", "-o",
                             str(out), "--runtime"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "depthwise_conv2d" in result.stdout and f"arena {e.arena_bytes} B" in result.stdout
    assert (out / "dw.c").is_file() and (out / "dw.h").is_file() and (out / "report.json").is_file()
    assert (out / "runtime" / "mcuq_runtime.h").is_file() and (out / "runtime" / "conv2d.c").is_file()
    failed = subprocess.run([sys.executable, "-m", "mcuq.export", str(path), "--input-shape", "1,2,16,16", "-o",
                             str(tmp_path / "bad")], capture_output=True, text=True)
    assert failed.returncode == 1 and "error: mcuq.export:" in failed.stderr
