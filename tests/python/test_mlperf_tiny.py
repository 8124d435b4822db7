"""MLPerf Tiny's four reference models (examples/python/mlperf_tiny.py),
int8 PTQ and QAT: the generated C equals the integer reference on the host
(gcc -O2, clang with ASan + UBSan) and on the emulated Cortex-M4 and
Cortex-M0 (the M0's code on a board with room for the model: QEMU's micro:bit
has 16 KB of RAM), a few inputs each."""

import sys
from pathlib import Path

import pytest
import torch

import mcuq
import mcuq.host  # noqa: F401  (compile_model, run_model)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "python"))
sys.path.insert(0, str(ROOT / "examples" / "mcu"))
from mcu import available, run_on_target  # noqa: E402
from mlperf_tiny import MODELS, quantized  # noqa: E402

CASES = [(name, mode) for name in MODELS for mode in ("ptq", "qat")]
IDS = [f"{name}-{mode}" for name, mode in CASES]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each (model, mode) exported once: (exported, directory, inputs)."""
    out = {}
    for name, mode in CASES:
        frozen, sample = quantized(name, qat=mode == "qat", qat_steps=6)
        _, shape = MODELS[name]
        exported = mcuq.export(frozen, shape, sample=sample)
        directory = tmp_path_factory.mktemp(f"{name}-{mode}")
        exported.write(directory, "net")
        inputs = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(7)) * 1.5
        out[(name, mode)] = (exported, directory, inputs)
    return out


@pytest.mark.parametrize("compiler,sanitize", [("gcc", False), ("clang", True)], ids=["gcc-O2", "clang-asan-ubsan"])
@pytest.mark.parametrize("name,mode", CASES, ids=IDS)
def test_host_c_equals_integer_reference(exports, name, mode, compiler, sanitize):
    exported, directory, inputs = exports[(name, mode)]
    levels = exported.quantize_input(inputs)
    exe = mcuq.host.compile_model(directory, "net", compiler=compiler, sanitize=sanitize)
    got = mcuq.host.run_model(exe, levels, exported)
    reference = exported.integer_reference(levels)
    assert torch.equal(got, reference), f"{(got != reference).sum().item()} of {got.numel()} levels differ"


@pytest.mark.mcu
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0-4mb"])
@pytest.mark.parametrize("name,mode", CASES, ids=IDS)
def test_on_mcu_equals_integer_reference(exports, tmp_path, name, mode, target):
    if not available(target):
        pytest.skip(f"{target}: toolchain or emulator missing")
    exported, directory, inputs = exports[(name, mode)]
    result = run_on_target(target, exported, directory, "net", inputs[:1], work=tmp_path)
    assert result.exit_code == 0, result.output
    assert result.bit_exact == result.vectors == 1, result.output
    assert len(result.counts) == 1 and result.counts[0] > 0, result.output
    print(f"\n{target} {name} {mode}: bit-exact, {result.counts[0]:,} instructions per inference, "
          f"flash {result.flash_bytes:,} B, static RAM {result.ram_bytes:,} B")
