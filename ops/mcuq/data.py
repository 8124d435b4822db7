"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (installed by
``scripts/setup.sh``): 60k training and 10k test images, 28x28, 10 classes.
Shared by the examples, the demo, the benchmarks and the tests."""

import gzip
import os
from pathlib import Path
from typing import Tuple

import torch

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _root() -> Path:
    return Path(os.environ.get("MCUQ_FASHION_MNIST", DEFAULT_ROOT))


def _read_idx(path: Path, magic: int) -> torch.Tensor:
    with gzip.open(path, "rb") as f:
        data = f.read()
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"mcuq.data: expected IDX magic {magic:#x} in {path}, but got {found:#x}")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    offset = 4 + 4 * dims
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(shape)


def fashion_mnist(split: str = "train") -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` of ``split``
    ("train" or "test"). ``$MCUQ_FASHION_MNIST`` overrides the folder."""
    if split not in ("train", "test"):
        raise ValueError(f"mcuq.data: expected split 'train' or 'test', but got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    root = _root()
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.is_file():
        raise FileNotFoundError(
            f"mcuq.data: {images_path} is missing; install Debian's dataset-fashion-mnist "
            "(./scripts/setup.sh does) or set MCUQ_FASHION_MNIST"
        )
    images = _read_idx(images_path, 0x803)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 0x801).long()
    return images, labels


def normalized(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 [N, 1, 28, 28] in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)
