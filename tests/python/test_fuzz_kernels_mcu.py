"""The kernel fuzzers' replay (tests/fuzz/fuzz_kernels.c) as firmware on
emulated MCUs: every kernel family, built by the target's compiler, against
the naive references on pseudo-random shapes, parameters and data. On the
Cortex-M4 this is the only fuzzing of the DSP paths (SXTB16/SMLAD dot
products, depthwise 3x3 pairs), which no host build reaches, on the
Cortex-M3 of the Thumb-2 codebook loops without them; the Cortex-M0 runs
the portable kernels and its Thumb-1 loops with smaller buffers (16 KB of
RAM). The libFuzzer runs on the host: scripts/fuzz_kernels.sh."""

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "mcu"))
from mcu import TARGETS, build_program, run_firmware  # noqa: E402

FAMILIES = ["conv2d", "fully_connected", "pool2d", "add", "requantize", "lut", "mul", "shape", "softmax"]
# (inputs, reference buffer elements) per target: the M0 has 16 KB of RAM.
SETTINGS = {"cortex-m4": (2000, 4096), "cortex-m3": (2000, 4096), "cortex-m0": (500, 256)}


@pytest.mark.parametrize("target", sorted(SETTINGS))
@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_on_mcu_equal_references(tmp_path, target, family):
    inputs, elements = SETTINGS[target]
    flags = [f"-DMCUQ_FUZZ_FAMILY={FAMILIES.index(family)}", f"-DMCUQ_FUZZ_INPUTS={inputs}",
             f"-DMCUQ_REFERENCE_MAX_ELEMS={elements}", "-DMCUQ_FUZZ_FAIL=mcuq_fuzz_fail",
             "-I", REPO / "tests" / "runtime"]
    sources = [REPO / "tests" / "fuzz" / "fuzz_kernels.c", REPO / "tests" / "fuzz" / "mcu_fuzz_main.c",
               *sorted((REPO / "csrc" / "runtime").glob("*.c"))]
    work = tmp_path / target
    work.mkdir()
    elf = build_program(TARGETS[target], sources, flags, work / f"fuzz_{family}.elf", optimize="-O2")
    result = run_firmware(TARGETS[target], elf, work)
    summary = re.search(rf"^fuzz_kernels {family}: {inputs} inputs, (\d+) kernel calls compared, 0 failed$",
                        result.stdout, flags=re.M)
    assert result.returncode == 0 and summary, result.stdout[-2000:] + result.stderr[-2000:]
    assert int(summary.group(1)) >= inputs  # every family compares at least one call per input on average
