"""mcuq.quantize_multiplier and mcuq.requantize: the shared integer
arithmetic (csrc/runtime/mcuq_arith.h) reached through the dispatcher.

Oracle: tests/runtime/requantize_vectors.txt, computed with exact Python
arithmetic from the published TFLite/gemmlowp definitions
(tests/runtime/make_requantize_vectors.py); the C host test checks the same
vectors against the header directly."""

from pathlib import Path

import pytest
import torch

import mcuq

VECTORS = Path(__file__).resolve().parents[1] / "runtime" / "requantize_vectors.txt"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _vectors(kind):
    rows = []
    for line in VECTORS.read_text().splitlines():
        text = line.split("#", 1)[0].split()
        if text and text[0] == kind:
            rows.append(text[1:])
    assert rows, kind
    return rows


def _scale(x, multiplier, shift, rounding, dtype=torch.int32):
    return mcuq.requantize(torch.tensor(x, dtype=dtype), torch.tensor(multiplier, dtype=torch.int32),
                           torch.tensor(shift, dtype=torch.int32), 0, INT32_MIN, INT32_MAX, 0, rounding)


@pytest.mark.parametrize("kind,rounding,dtype", [
    ("mbqm", "double", torch.int32),
    ("mbqm_single", "single", torch.int32),
    ("mbqm_s64", "double", torch.int64),
    ("mbqm_s64_exact", "single", torch.int64),
])
def test_requantize_equals_the_published_rules(kind, rounding, dtype):
    rows = _vectors(kind)
    x, multiplier, shift, expected = (list(map(int, column)) for column in zip(*rows))
    got = _scale(x, multiplier, shift, rounding, dtype)
    assert got.tolist() == expected


def test_power_of_two_requantize_is_a_rounding_shift():
    rows = _vectors("rounding_shift")
    x, shift, expected = (list(map(int, column)) for column in zip(*rows))
    got = _scale(x, [2**30] * len(x), shift, "shift")
    assert got.tolist() == expected
    rows = _vectors("scale_s64_shift")
    acc, shift, expected = (list(map(int, column)) for column in zip(*rows))
    got = _scale(acc, [2**30] * len(acc), shift, "shift", torch.int64)
    assert got.tolist() == expected


def test_quantize_multiplier_equals_tflite():
    rows = [r for r in _vectors("quantize_multiplier") if 0 <= float(r[0]) < 2.0**30]
    real = torch.tensor([float(r[0]) for r in rows], dtype=torch.float64)
    multiplier, shift = mcuq.quantize_multiplier(real)
    assert multiplier.dtype == shift.dtype == torch.int32
    assert multiplier.tolist() == [int(r[1]) for r in rows]
    assert shift.tolist() == [int(r[2]) for r in rows]


def test_quantize_multiplier_round_trips_within_2_to_minus_31():
    real = torch.rand(1000, dtype=torch.float64) * 10 + 1e-6
    multiplier, shift = mcuq.quantize_multiplier(real)
    approx = multiplier.double() * torch.pow(2.0, shift.double() - 31)
    assert ((approx - real).abs() / real).max() <= 2.0**-31


def test_requantize_per_channel_equals_per_tensor_slices():
    torch.manual_seed(0)
    acc = torch.randint(-(2**24), 2**24, (3, 5, 4, 4), dtype=torch.int32)
    multiplier = torch.randint(2**30, 2**31 - 1, (5,), dtype=torch.int32)
    shift = torch.randint(-12, 2, (5,), dtype=torch.int32)
    out = mcuq.requantize(acc, multiplier, shift, -3, -128, 127, axis=1)
    assert out.dtype == torch.int32
    for c in range(5):
        alone = mcuq.requantize(acc[:, c], multiplier[c:c + 1], shift[c:c + 1], -3, -128, 127)
        assert torch.equal(out[:, c], alone)
    assert out.min() >= -128 and out.max() <= 127


def test_requantize_clamps_and_adds_the_zero_point():
    acc = torch.tensor([-(2**20), -5, 0, 5, 2**20], dtype=torch.int32)
    one = (torch.tensor([2**30], dtype=torch.int32), torch.tensor([1], dtype=torch.int32))  # M = 1
    assert mcuq.requantize(acc, *one, 10, -20, 20).tolist() == [-20, 5, 10, 15, 20]


def test_requantize_has_a_meta_kernel():
    acc = torch.empty(2, 3, device="meta", dtype=torch.int64)
    m = torch.empty(3, device="meta", dtype=torch.int32)
    out = mcuq.requantize(acc, m, m, 0, -128, 127, axis=1)
    assert out.shape == (2, 3) and out.dtype == torch.int32 and out.device.type == "meta"


@pytest.mark.parametrize("args,error,match", [
    (dict(input=torch.zeros(3)), TypeError, "expected input \\(accumulators\\) to be int32 or int64, but got float32"),
    (dict(multiplier=torch.zeros(1, dtype=torch.int64)), TypeError, "expected multiplier to be int32"),
    (dict(shift=torch.tensor([31], dtype=torch.int32)), ValueError, "shift in \\[-31, 30\\].*shift=31"),
    (dict(multiplier=torch.tensor([-1], dtype=torch.int32)), ValueError, "multiplier >= 0"),
    (dict(rounding="nearest"), ValueError, "expected rounding to be 'double', 'single' or 'shift', but got 'nearest'"),
    (dict(multiplier=torch.ones(2, dtype=torch.int32), shift=torch.ones(2, dtype=torch.int32)), ValueError,
     "expected multiplier to have 3 elements"),
    (dict(quant_min=6, quant_max=5), ValueError, "quant_min <= quant_max within int32, but got quant_min=6"),
])
def test_requantize_errors_name_the_argument(args, error, match):
    call = dict(input=torch.zeros(2, 3, dtype=torch.int32), multiplier=torch.ones(1, dtype=torch.int32),
                shift=torch.zeros(1, dtype=torch.int32), zero_point=0, quant_min=-128, quant_max=127, axis=1,
                rounding="double")
    call.update(args)
    with pytest.raises(error, match="mcuq::requantize: (expected )?.*" + match):
        mcuq.requantize(**call)


def test_quantize_multiplier_refuses_what_it_cannot_represent():
    """The largest multiplier * 2^(shift - 31) with shift <= 30 is just under
    2^30; above it TFLite's pair would be silently another number (1e30 came
    back as about 1.07e9)."""
    rows = [r for r in _vectors("quantize_multiplier") if float(r[0]) >= 2.0**30]
    assert rows  # the vectors hold such values (TFLite's single rounding saturates them)
    for big in [float(r[0]) for r in rows] + [1e30, 2.0**30]:
        with pytest.raises(ValueError, match=r"mcuq::quantize_multiplier: expected real_multiplier < 2\^30 .*index 1"):
            mcuq.quantize_multiplier(torch.tensor([0.5, big], dtype=torch.float64))
    # Just below 2^30 the rounding carry saturates, within 2^-31 of the value: represented.
    multiplier, shift = mcuq.quantize_multiplier(torch.tensor([2.0**30 * (1 - 2.0**-40)], dtype=torch.float64))
    assert (multiplier.item(), shift.item()) == (2**31 - 1, 30)


def test_quantize_multiplier_rejects_negative_and_non_finite():
    for bad in (-0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="mcuq::quantize_multiplier: expected real_multiplier >= 0 and finite"):
            mcuq.quantize_multiplier(torch.tensor([0.5, bad], dtype=torch.float64))
    with pytest.raises(TypeError, match="expected real_multiplier to be a floating-point tensor"):
        mcuq.quantize_multiplier(torch.tensor([1]))


def test_integer_ops_script_and_refuse_backward():
    @torch.jit.script
    def requant(acc: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.ops.mcuq.requantize(acc, m, s, 0, -128, 127, 1, "double")

    acc = torch.tensor([[100, -100]], dtype=torch.int32)
    m, s = mcuq.quantize_multiplier(torch.tensor([0.25, 0.25], dtype=torch.float64))
    assert requant(acc, m, s).tolist() == [[25, -25]]
    real = torch.tensor([0.5], requires_grad=True)
    multiplier, _ = mcuq.quantize_multiplier(real)
    assert not multiplier.requires_grad


@pytest.mark.torch21
def test_opcheck_integer_ops():
    opcheck = getattr(torch.library, "opcheck", None)
    if opcheck is None:  # torch 2.1 .. 2.3
        from torch.testing._internal.optests import opcheck
    opcheck(torch.ops.mcuq.quantize_multiplier.default, (torch.rand(5, dtype=torch.float64) + 0.01,))
    acc = torch.randint(-(2**20), 2**20, (2, 3, 4), dtype=torch.int32)
    m, s = mcuq.quantize_multiplier(torch.rand(3, dtype=torch.float64) * 0.01 + 1e-4)
    for rounding in ("double", "single"):
        opcheck(torch.ops.mcuq.requantize.default, (acc, m, s, 3, -128, 127, 1, rounding))
    opcheck(torch.ops.mcuq.requantize.default, (acc.long() * 1000, m, s, 0, -32768, 32767, 1, "double"))
