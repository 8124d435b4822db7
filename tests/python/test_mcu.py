"""Exported models on emulated microcontrollers: Cortex-M0/M3/M4/M7 and
RISC-V RV32 under QEMU, and the AVR ATmega328P under simavr. The firmware
(examples/mcu/common/mcu_main.c) runs each input, compares every output level
with the host integer reference's (compiled in as golden outputs) and exits
with the number of mismatching inputs; the stack's peak is measured on every
target. The streaming harness (whole test sets): test_mcu_stream.py. A missing toolchain fails the test:
scripts/setup.sh installs them."""

import sys
from pathlib import Path

import pytest
import torch

import mcuq
from _export_zoo import ZOO, frozen

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "mcu"))
from mcu import TARGETS, run_on_target  # noqa: E402

N_INPUTS = 8

CASES = [
    ("cortex-m0", "fashion_cnn"), ("cortex-m0", "lut_mlp"),
    ("cortex-m3", "depthwise_cnn_16x8"), ("cortex-m3", "residual_cnn"),
    ("cortex-m4", "fashion_cnn"), ("cortex-m4", "depthwise_cnn"),
    ("cortex-m7", "residual_cnn_pow2"), ("cortex-m7", "mlp_w4a8"),
    ("atmega328p", "mlp"), ("atmega328p", "lut_mlp"), ("atmega328p", "single_conv"),
    ("atmega328p", "single_conv_16x8"),
    ("rv32", "fashion_cnn"), ("rv32", "depthwise_cnn_16x8"),
    ("cortex-m4", "lut_mlp_16x8"), ("atmega328p", "lut_mlp_16x8"),
    ("cortex-m0", "depthwise_cnn_w4a8"), ("atmega328p", "mlp_w4a8"),
    ("cortex-m4", "conv1d_bn"), ("atmega328p", "conv1d_bn"), ("cortex-m0", "conv1d_bn_16x8"),
    ("cortex-m4", "ceil_pool_cnn"), ("atmega328p", "ceil_pool_cnn"),
    ("cortex-m4", "global_max_pool_cnn"), ("atmega328p", "global_max_pool_cnn"),
    ("cortex-m4", "attention_cnn"), ("atmega328p", "attention_cnn"), ("cortex-m0", "attention_cnn_16x8"),
    ("cortex-m4", "mobilenet_v3_blocks"), ("cortex-m0", "mobilenet_v3_blocks"),
    ("cortex-m4", "squeezenet_fire"), ("cortex-m0", "squeezenet_fire"),
    ("cortex-m4", "pad_upsample_cnn"), ("atmega328p", "pad_upsample_cnn"), ("cortex-m0", "pad_upsample_cnn_16x8"),
    ("atmega328p", "causal_conv1d"), ("rv32", "causal_conv1d"),
    ("cortex-m4", "softmax_classifier"), ("cortex-m0", "softmax_classifier"), ("atmega328p", "softmax_classifier"),
    ("cortex-m4", "conv_transpose_decoder"), ("atmega328p", "conv_transpose_decoder"),
    ("cortex-m0", "conv_transpose_decoder_16x8"),
    ("cortex-m0", "fashion_cnn_nu4"), ("cortex-m4", "fashion_cnn_nu4"), ("atmega328p", "mlp_nu4"),
    ("cortex-m4", "depthwise_cnn_nu3_per_tensor"), ("cortex-m0", "depthwise_cnn_nu3_per_tensor"),
    ("atmega328p", "conv1d_bn_nu3_per_tensor"), ("rv32", "mlp_nu4"),
    ("cortex-m0", "mlp_nu4"), ("cortex-m3", "mlp_nu4"), ("cortex-m4", "mlp_nu4"),  # short rows, a codebook each
]


def _inputs(model):
    shape = model.input_shape[1:]
    if shape == [1, 28, 28]:  # real images where the model takes them
        images, _ = mcuq.data.fashion_mnist("test")
        return mcuq.data.normalized(images[:N_INPUTS])
    torch.manual_seed(2)
    return torch.randn(N_INPUTS, *shape) * 2


@pytest.mark.parametrize("target,name", CASES, ids=[f"{t}-{m}" for t, m in CASES])
def test_model_on_mcu_equals_host_integer_reference(tmp_path, target, name):
    model = next(m for m in ZOO if m.name == name)
    exported = mcuq.export(frozen(model), model.input_shape, rounding=model.rounding)
    exported.write(tmp_path, "net")
    result = run_on_target(target, exported, tmp_path, "net", _inputs(model))
    assert result.exit_code == 0, result.output
    assert result.bit_exact == result.vectors == N_INPUTS, result.output
    assert len(result.counts) == N_INPUTS and min(result.counts) > 0, result.output
    t = TARGETS[target]
    # The stack's measured peak (painted stack, every target) counts against the part's RAM.
    assert not result.stack_overflow, result.output
    assert result.stack_bytes is not None and 0 < result.stack_bytes < t.ram_bytes - result.ram_bytes, result.output
    assert result.flash_bytes <= t.flash_bytes
    print(f"\n{target} {name}: {N_INPUTS}/{N_INPUTS} bit-exact, {result.count_per_inference} {result.unit} per "
          f"inference, flash {result.flash_bytes} B, RAM {result.ram_bytes} + {result.stack_bytes} B (static + stack)")
