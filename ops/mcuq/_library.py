"""Loads libmcuq, which registers the ``torch.ops.mcuq.*`` ops."""

import os
from pathlib import Path

import torch

_LIBRARY_NAME = "libmcuq.so"
_LIB_DIR = Path(__file__).resolve().parent / "lib"


def torch_tag(version: str = torch.__version__) -> str:
    """The folder of the library built for a torch: "torch2.15" (C++ ABIs differ across minor versions)."""
    return "torch" + ".".join(version.split("+")[0].split(".")[:2])


def library_path() -> Path:
    """Where the op library is: ``$MCUQ_LIBRARY`` if set, else the package's
    build for this torch (``lib/torch<major>.<minor>/libmcuq.so``)."""
    override = os.environ.get("MCUQ_LIBRARY")
    if override:
        return Path(override)
    return _LIB_DIR / torch_tag() / _LIBRARY_NAME


def load() -> None:
    path = library_path()
    if not path.is_file():
        built = sorted(p.parent.name for p in _LIB_DIR.glob(f"torch*/{_LIBRARY_NAME}"))
        for_other = f" (it is built for {', '.join(built)} only)" if built else ""
        raise ImportError(
            f"mcuq: the op library {path} for torch {torch.__version__} is missing{for_other}; build it with "
            "./scripts/setup.sh (or `pip install --no-build-isolation --no-deps -e .` with this Python), "
            "or set MCUQ_LIBRARY"
        )
    torch.ops.load_library(str(path))
