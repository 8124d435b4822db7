"""Compile and run an exported model on the host, through the C runtime:
the check that the generated C computes what ``ExportedModel.integer_reference``
computes, bit for bit.

    paths = exported.write(out_dir, name="net")
    exe = mcuq.host.compile_model(out_dir, "net", compiler="clang", sanitize=True)
    levels = mcuq.host.run_model(exe, exported.quantize_input(x), exported)
"""

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ._export import ExportedModel, runtime_dir

STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g")


def harness_source() -> Path:
    return Path(__file__).resolve().parent / "harness" / "run_model.c"


def compile_model(directory: Union[str, os.PathLike], name: str, compiler: str = "gcc", sanitize: bool = False,
                  optimize: str = "-O2", extra_flags: Sequence[str] = ()) -> Path:
    """Builds ``directory/NAME.c`` + the runtime + the host harness with
    ``-std=c99 -Wall -Wextra -Werror -pedantic`` (and ASan/UBSan if
    ``sanitize``); returns the executable. Raises ``RuntimeError`` with the
    compiler's messages if it fails."""
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise ValueError(f"mcuq.host: expected name to be a C identifier, but got {name!r}")
    directory = Path(directory)
    runtime = runtime_dir()
    tag = f"{Path(compiler).name}{'-asan' if sanitize else ''}{optimize}"
    exe = directory / f"run_{name}_{tag}"
    command = [compiler, *STRICT_FLAGS, optimize, *(SANITIZE_FLAGS if sanitize else ()), *extra_flags,
               f"-DMCUQ_MODEL={name}", f"-DMCUQ_MODEL_UPPER={name.upper()}", f'-DMCUQ_MODEL_HEADER="{name}.h"', "-I", str(directory), "-I", str(runtime),
               str(directory / f"{name}.c"), *sorted(str(p) for p in runtime.glob("*.c")), str(harness_source()),
               "-o", str(exe)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"mcuq.host: compiling {name} with {compiler} failed:\n{' '.join(command)}\n"
                           f"{result.stderr}")
    return exe


def run_model(executable: Union[str, os.PathLike], levels: Tensor, exported: ExportedModel) -> Tensor:
    """Runs the compiled model on input levels ``[N, ...]``; returns the
    output levels ``[N, ...]`` as int32."""
    dtype = np.int16 if exported.activation_dtype == torch.int16 else np.int8
    n = levels.shape[0]
    out_shape = [n, *exported.output_qparams["shape"]]
    with tempfile.TemporaryDirectory(prefix="mcuq-host-") as tmp:
        inputs, outputs = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        levels.to(torch.int32).numpy().astype(dtype).tofile(inputs)
        result = subprocess.run([str(executable), str(inputs), str(outputs), str(n)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"mcuq.host: {executable} failed ({result.returncode}): {result.stderr}")
        data = np.fromfile(outputs, dtype=dtype).astype(np.int32)
    return torch.from_numpy(data).reshape(out_shape)
