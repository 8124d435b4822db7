"""Compile and run an exported model on the host, through the C runtime:
the check that the generated C computes what ``ExportedModel.integer_reference``
computes, bit for bit.

    paths = exported.write(out_dir, name="net")
    exe = mcuq.host.compile_model(out_dir, "net", compiler="clang", sanitize=True)
    levels = mcuq.host.run_model(exe, exported.quantize_input(x), exported)
"""

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ._export import ExportedModel, runtime_dir

STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g")


def harness_source() -> Path:
    return Path(__file__).resolve().parent / "harness" / "run_model.c"


def _runtime_library(compiler: str, flags: Sequence[str]) -> Path:
    """The C runtime compiled once per compiler, flags and runtime sources,
    kept as a static archive in the temporary directory: every model linked
    against it saves compiling the runtime again (most of a model's build
    time). Built in a private folder and renamed into place, so concurrent
    builds never see a half-written archive."""
    runtime = runtime_dir()
    sources = sorted(runtime.glob("*.c"))
    key = hashlib.sha256()
    for part in (_compiler_identity(compiler), *flags):
        key.update(part.encode() + b"\0")
    for path in sorted(runtime.glob("*.[ch]")):
        key.update(path.name.encode() + b"\0" + path.read_bytes())
    home = Path(tempfile.gettempdir()) / f"mcuq-runtime-{os.getuid()}-{key.hexdigest()[:24]}"
    archive = home / "libmcuq_runtime.a"
    if archive.exists():
        return archive
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=home.name + ".", dir=home.parent) as tmp:
        objects = []
        for source in sources:
            obj = Path(tmp) / (source.stem + ".o")
            _run_compiler([compiler, *flags, "-I", str(runtime), "-c", str(source), "-o", str(obj)], "the runtime")
            objects.append(str(obj))
        _run_compiler(["ar", "rcs", str(Path(tmp) / archive.name), *objects], "the runtime archive")
        for obj in objects:
            os.unlink(obj)
        try:
            os.rename(tmp, home)
        except OSError:  # another process put it there first
            pass
        os.makedirs(tmp, exist_ok=True)  # TemporaryDirectory's cleanup expects it
    return archive


@functools.lru_cache(maxsize=None)
def _compiler_identity(compiler: str) -> str:
    """Path and version: a compiler upgrade must not reuse old objects."""
    path = shutil.which(compiler) or compiler
    result = subprocess.run([path, "--version"], capture_output=True, text=True)
    return f"{os.path.realpath(path)} {result.stdout.splitlines()[0] if result.stdout else ''}"


def _run_compiler(command: List[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"mcuq.host: compiling {what} with {command[0]} failed:\n{' '.join(command)}\n"
                           f"{result.stderr}")


def compile_model(directory: Union[str, os.PathLike], name: str, compiler: str = "gcc", sanitize: bool = False,
                  optimize: str = "-O2", extra_flags: Sequence[str] = ()) -> Path:
    """Builds ``directory/NAME.c`` + the runtime + the host harness with
    ``-std=c99 -Wall -Wextra -Werror -pedantic`` (and ASan/UBSan if
    ``sanitize``); returns the executable. Raises ``RuntimeError`` with the
    compiler's messages if it fails. The runtime is compiled once per
    compiler and flags (a cached archive in the temporary directory)."""
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise ValueError(f"mcuq.host: expected name to be a C identifier, but got {name!r}")
    directory = Path(directory)
    tag = f"{Path(compiler).name}{'-asan' if sanitize else ''}{optimize}"
    exe = directory / f"run_{name}_{tag}"
    flags = [*STRICT_FLAGS, optimize, *(SANITIZE_FLAGS if sanitize else ()), *extra_flags]
    runtime = _runtime_library(compiler, flags)
    _run_compiler([compiler, *flags, f"-DMCUQ_MODEL={name}", f"-DMCUQ_MODEL_UPPER={name.upper()}",
                   f'-DMCUQ_MODEL_HEADER="{name}.h"', "-I", str(directory), "-I", str(runtime_dir()),
                   str(directory / f"{name}.c"), str(harness_source()), str(runtime), "-o", str(exe)], name)
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
