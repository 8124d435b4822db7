"""The host-in-the-loop harness (examples/mcu/mcu.py's evaluate_on_target,
firmware examples/mcu/common/stream_main.c): inputs streamed from the host
into one emulator process, every output level streamed back and compared
with the host integer reference's, on the M0, M4, RV32 (QEMU semihosting
files) and the AVR (our simavr runner's I/O register). The oracle is the
LibTorch integer reference; a deliberately wrong golden output must come out
as a mismatch at its index."""

import sys
from pathlib import Path

import pytest
import torch

import mcuq
from _export_zoo import ZOO, frozen

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "mcu"))
from mcu import TARGETS, evaluate_on_target  # noqa: E402

N_INPUTS = 40
CASES = [("cortex-m0", "fashion_cnn"), ("cortex-m4", "fashion_cnn"), ("rv32", "depthwise_cnn_16x8"),
         ("atmega328p", "mlp")]


def _exported(name, directory):
    model = next(m for m in ZOO if m.name == name)
    exported = mcuq.export(frozen(model), model.input_shape, rounding=model.rounding)
    exported.write(directory, "net")
    images, labels = mcuq.data.fashion_mnist("test")
    if model.input_shape[1:] == [1, 28, 28]:
        return exported, mcuq.data.normalized(images[:N_INPUTS]), labels[:N_INPUTS]
    torch.manual_seed(3)
    return exported, torch.randn(N_INPUTS, *model.input_shape[1:]) * 2, None


@pytest.mark.mcu
@pytest.mark.parametrize("target,name", CASES, ids=[f"{t}-{m}" for t, m in CASES])
def test_streamed_outputs_equal_host_and_a_wrong_golden_output_is_a_mismatch(tmp_path, target, name):
    exported, inputs, labels = _exported(name, tmp_path)
    reference = exported.integer_reference(exported.quantize_input(inputs))
    result = evaluate_on_target(target, exported, tmp_path, "net", inputs, labels, progress=False)
    assert result.passed, result.output
    assert result.inputs == result.matches == N_INPUTS and result.mismatched == []
    assert torch.equal(result.outputs, reference.to(torch.int32)), result.output
    assert result.statuses == [0] * N_INPUTS
    assert len(result.counts) == N_INPUTS and 0 < result.count_min <= result.count_median <= result.count_max
    if labels is not None:  # the device's accuracy is the host integer model's, input by input
        assert result.predictions == reference.flatten(1).argmax(1).tolist()
        assert result.accuracy == pytest.approx(100.0 * (reference.argmax(1) == labels).sum().item() / N_INPUTS)
    t = TARGETS[target]
    assert result.stack_bytes is not None and not result.stack_overflow, result.output
    assert 0 < result.stack_bytes and result.ram_bytes + result.stack_bytes <= t.ram_bytes
    assert result.flash_bytes <= t.flash_bytes

    wrong = reference.clone()
    wrong.view(N_INPUTS, -1)[7, 1] += 1  # one level of one input
    again = evaluate_on_target(target, exported, tmp_path, "net", inputs, expected=wrong, progress=False)
    assert again.mismatched == [7] and again.matches == N_INPUTS - 1 and not again.passed
    assert again.counts == result.counts  # the same firmware ran the same inputs
    print(f"\n{target} {name}: {result.matches}/{N_INPUTS} equal, {result.count_median} {result.unit} (median), "
          f"flash {result.flash_bytes} B, RAM {result.ram_bytes} + {result.stack_bytes} B, {result.seconds:.1f} s")


@pytest.mark.mcu
def test_shards_in_parallel_give_the_same_outputs_and_counts(tmp_path):
    exported, inputs, labels = _exported("fashion_cnn", tmp_path)
    one = evaluate_on_target("cortex-m4", exported, tmp_path, "net", inputs, labels, progress=False)
    three = evaluate_on_target("cortex-m4", exported, tmp_path, "net", inputs, labels, progress=False,
                               jobs=3, work=tmp_path / "sharded")
    assert one.passed and three.passed, three.output
    assert torch.equal(one.outputs, three.outputs) and one.counts == three.counts
    assert three.output.count("streaming") == 3  # three emulator processes


@pytest.mark.mcu
def test_golden_outputs_of_the_wrong_count_are_refused(tmp_path):
    exported, inputs, _ = _exported("mlp", tmp_path)
    with pytest.raises(ValueError, match="expected 40 golden outputs, got 39"):
        evaluate_on_target("cortex-m4", exported, tmp_path, "net", inputs,
                           expected=exported.integer_reference(exported.quantize_input(inputs[:39])))
