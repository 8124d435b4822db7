"""A fixed-seed set of random models (tests/python/_model_fuzz.py): each is
prepared, calibrated, frozen and exported with a random preset and input
range; its generated C (gcc or clang at -O0, -O2 or -Os, every fourth under
AddressSanitizer + UndefinedBehaviorSanitizer) must equal the integer
reference bit for bit, and the integer graph must agree with the fake-quant
model layer by layer within the numerics' bounds; every 50th also runs on
the emulated Cortex-M0 and M4. A model the workflow refuses must be refused
with a ValueError naming mcuq, never a crash. Long campaigns:
scripts/fuzz_export.py."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import _model_fuzz
from _model_fuzz import Case, check_case, minimize, random_case

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "mcu"))

SEEDS = range(1000, 1300)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_model_exports_bit_exact_c(seed, tmp_path):
    case = random_case(seed)
    targets = ("cortex-m0", "cortex-m4") if seed % 50 == 0 else ()
    outcome = check_case(case, tmp_path, sanitize=seed % 4 == 0, targets=targets)
    assert outcome.status == "ok" or outcome.reason.startswith("mcuq."), outcome.reason
    assert outcome.status != "ok" or outcome.targets == targets


def test_seeds_cover_every_build_and_preset():
    builds = {_model_fuzz.BUILDS[seed // 4 % len(_model_fuzz.BUILDS)] + (seed % 4 == 0,) for seed in SEEDS}
    assert len(builds) == 2 * len(_model_fuzz.BUILDS)  # each compiler and level, with and without sanitizers
    assert {random_case(seed).preset for seed in SEEDS} == set(_model_fuzz.PRESETS)


def test_minimize_keeps_only_what_fails(tmp_path, monkeypatch):
    """A stand-in bug (C outputs off by one in any model with a Sigmoid):
    minimize() must shrink a larger model to the one layer that fails."""
    real_run = _model_fuzz.mcuq.host.run_model

    def buggy_run(exe, levels, exported):
        out = real_run(exe, levels, exported)
        return out + 1 if any(layer["kind"] == "lut" for layer in exported.report()["layers"]) else out

    monkeypatch.setattr(_model_fuzz.mcuq.host, "run_model", buggy_run)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 1), nn.Sigmoid(),
                          nn.MaxPool2d(2)).eval()
    case = Case(7, model, "int8", [1, 2, 6, 6], 1.0, "stand-in", adversarial=False)
    small = minimize(case, tmp_path)
    assert [type(m) for m in small.model] == [nn.Sigmoid]


# ---- regressions the random models found, minimized ---------------------------------

@pytest.mark.parametrize("activation", [nn.Sigmoid(), nn.Tanh()], ids=["sigmoid", "tanh"])
def test_int16_table_of_a_steep_activation_keeps_its_shape(activation, tmp_path):
    """Seeds 10063 and 10122: a 16x8 sigmoid (tanh) on a coarse input scale
    (inputs ~300) was 1125 (715) int16 levels off its fake-quant model: the
    whole-range table had 2 or 3 samples on the slope. The table now spans
    the slope; its error, as report.json states and the layer-by-layer check
    measures, stays within a few levels."""
    model = nn.Sequential(nn.Linear(6, 5), activation).eval()
    outcome = check_case(Case(10063, model, "int16x8", [1, 6], 300.0, "minimized from seed 10063"), tmp_path)
    assert outcome.status == "ok" and outcome.lut16_worst <= 3, outcome


@pytest.mark.parametrize("model,shape", [
    (nn.Sequential(nn.Linear(8, 3), nn.Identity(), nn.Hardtanh(-1.0, 2.0), nn.Linear(3, 6)), [1, 8]),
    (nn.Sequential(nn.Hardtanh(-1.3, 2.7), nn.Conv2d(2, 3, 3), nn.Dropout(), nn.ReLU6(), nn.Flatten(), nn.Linear(12, 4)),
     [1, 2, 4, 4])], ids=["identity_then_hardtanh", "hardtanh_on_the_input"])
def test_a_clamp_off_the_grid_is_quantized_again(model, shape, tmp_path):
    """Seed 400010: Linear -> Identity -> Hardtanh(-1, 2) -> Linear. The
    Identity hid the clamp from the fusion, so it ran on an already
    quantized tensor without a quantizer after it: the fake-quant model fed
    the next layer -1.0, which the tensor's grid (scale 2) cannot hold, and
    the integer graph was 42 levels off it there. A clamp is now fused past
    Identity and dropout, and one that cannot be fused (on the model's
    input, say) gets its own quantizer."""
    outcome = check_case(Case(400010, model.eval(), "int8", shape, 8.0, "minimized from seed 400010"), tmp_path)
    assert outcome.status == "ok" and outcome.worst <= 1, outcome


class _Clamped(nn.Module):
    """torch.clamp after a layer and x.clamp on the input (an unfused clamp)."""

    def __init__(self, method: bool) -> None:
        super().__init__()
        self.fc1, self.fc2, self.method = nn.Linear(6, 5), nn.Linear(5, 4), method

    def forward(self, x):
        x = x.clamp(-1.3, 2.2) if self.method else torch.clamp(x, min=-1.3, max=2.2)
        return self.fc2(torch.clamp(self.fc1(x), -0.7, 1.1) if not self.method else self.fc1(x).clamp(min=0.2))


@pytest.mark.parametrize("method", [False, True], ids=["torch.clamp", "Tensor.clamp"])
def test_torch_clamp_is_a_clamp(method, tmp_path):
    """torch.clamp and Tensor.clamp were refused by prepare ('unsupported
    operation'), though the exporter lowers aten::clamp: now a clamp like
    Hardtanh, fused into its layer or quantized again after it."""
    outcome = check_case(Case(7, _Clamped(method).eval(), "int8", [1, 6], 2.0, "torch.clamp"), tmp_path)
    assert outcome.status == "ok" and outcome.worst <= 1, outcome


def test_global_mean_after_a_relu_on_the_input_is_checked_where_it_enters_a_layer(tmp_path):
    """Seed 20340: ReLU on the input, then a squeeze-and-excitation gate. The
    ReLU is an exact clamp with no quantizer of its own, and the check, looking
    for the gate's global mean (whose rounding it must feed the next layer),
    stopped at it: the 1x1 convolution then saw the unrounded mean and was 7
    levels off. The check now looks past such clamps and holds every point
    to its bound."""
    torch.manual_seed(20340)  # the seed's weights: a squeeze of 4 and a hardsigmoid (Random(0) draws them)
    gate = _model_fuzz.Gate(3, spatial=False, rng=_model_fuzz.random.Random(0))
    model = nn.Sequential(nn.ReLU(), gate, nn.MaxPool2d(2), nn.Conv2d(3, 1, 2, stride=3, padding=1), nn.ReLU(),
                          _model_fuzz.GlobalMean(), nn.Linear(1, 1)).eval()
    assert isinstance(gate.gate[3], nn.Hardsigmoid) and gate.gate[0].out_channels == 4
    outcome = check_case(Case(20340, model, "pow2", [1, 3, 3, 9], 1.0, "minimized from seed 20340"), tmp_path)
    assert outcome.status == "ok" and outcome.points >= 6, outcome
