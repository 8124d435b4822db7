"""Loads libmcuq, which registers the ``torch.ops.mcuq.*`` ops."""

import os
from pathlib import Path

import torch

_LIBRARY_NAME = "libmcuq.so"


def library_path() -> Path:
    """Where the op library is: ``$MCUQ_LIBRARY`` if set, else inside the package."""
    override = os.environ.get("MCUQ_LIBRARY")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "lib" / _LIBRARY_NAME


def load() -> None:
    path = library_path()
    if not path.is_file():
        raise ImportError(
            f"mcuq: the op library {path} is missing; build it with ./scripts/setup.sh "
            "(or `pip install --no-build-isolation --no-deps -e .`), or set MCUQ_LIBRARY"
        )
    torch.ops.load_library(str(path))
