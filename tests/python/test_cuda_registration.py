"""Every mcuq op has a CUDA kernel when mcuq is built against a CUDA build of
torch (MCUQ_CUDA=AUTO finds nvcc there), and none elsewhere. Runs without a
GPU: CI compiles and links the CUDA part and this proves it is registered,
so a missing kernel fails CI even though no GPU runs it there."""

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import mcuq  # noqa: F401  (registers torch.ops.mcuq.*)

REGISTRATION = Path(__file__).resolve().parents[2] / "csrc" / "mcuq" / "ops" / "registration.cpp"
# Composite ops run on any device through the others.
COMPOSITE = {"fake_quantize_dynamic"}


def _ops():
    names = re.findall(r'm\.def\(\s*"([A-Za-z_0-9]+)\(', REGISTRATION.read_text())
    assert len(names) >= 14, names
    return [n for n in names if n not in COMPOSITE]


def _cuda_build_expected() -> bool:
    """MCUQ_CUDA=AUTO's rule: a CUDA build of torch and CUDA's compiler where
    CMake looks for it ($MCUQ_EXPECT_CUDA=0/1 overrides, for MCUQ_CUDA=OFF
    builds)."""
    if "MCUQ_EXPECT_CUDA" in os.environ:
        return os.environ["MCUQ_EXPECT_CUDA"] == "1"
    homes = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc") or any(h and (Path(h) / "bin" / "nvcc").exists() for h in homes)
    return torch.version.cuda is not None and bool(nvcc)


@pytest.mark.parametrize("op", _ops())
def test_cuda_kernel_registered(op):
    has = torch._C._dispatch_has_kernel_for_dispatch_key(f"mcuq::{op}", "CUDA")
    assert has == _cuda_build_expected(), (op, torch.version.cuda)
