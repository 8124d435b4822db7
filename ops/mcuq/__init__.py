"""mcuq: quantization for microcontrollers, as PyTorch dispatcher ops.

``import mcuq`` registers ``torch.ops.mcuq.*``; the functions below are thin,
typed wrappers around them (the schemas live in C++; see docs/OPS.md, "Op
reference").
"""

from . import _library

_library.load()

from . import data, presets  # noqa: E402
from .calibrate import calibrate  # noqa: E402
from .conv_bn import (ConvBn1d, ConvBn2d, ConvBnReLU1d, ConvBnReLU2d, LinearBn1d, LinearBnReLU1d,  # noqa: E402
                      freeze_bn_stats, update_bn_stats)
from .distributed import sync_observers  # noqa: E402
from ._export import ExportedModel, export, runtime_dir  # noqa: E402
from .freeze import FixedFakeQuantize, freeze  # noqa: E402
from .lsq import LearnableFakeQuantize  # noqa: E402
from .prepare import prepare  # noqa: E402
from .codebook import CodebookFakeQuantize, FixedLevelsFakeQuantize  # noqa: E402
from .observers import (  # noqa: E402
    FakeQuantize,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
)
from .ops import (  # noqa: E402
    choose_qparams,
    dequantize,
    fake_quantize,
    fake_quantize_dynamic,
    fake_quantize_levels,
    fit_levels,
    quantize,
    quantize_levels,
    dequantize_levels,
    uniform_levels,
    quantize_multiplier,
    requantize,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # mcuq.pt2e needs torchao (optional): imported on first use, not by ``import mcuq``.
    if name == "pt2e":
        import importlib

        return importlib.import_module(".pt2e", __name__)
    raise AttributeError(f"module 'mcuq' has no attribute {name!r}")


__all__ = [
    "fake_quantize",
    "quantize",
    "dequantize",
    "choose_qparams",
    "fake_quantize_dynamic",
    "fake_quantize_levels",
    "quantize_levels",
    "dequantize_levels",
    "uniform_levels",
    "fit_levels",
    "quantize_multiplier",
    "requantize",
    "export",
    "ExportedModel",
    "runtime_dir",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "HistogramObserver",
    "FakeQuantize",
    "sync_observers",
    "calibrate",
    "freeze",
    "prepare",
    "ConvBn1d",
    "ConvBn2d",
    "ConvBnReLU1d",
    "LinearBn1d",
    "LinearBnReLU1d",
    "ConvBnReLU2d",
    "freeze_bn_stats",
    "update_bn_stats",
    "FixedFakeQuantize",
    "CodebookFakeQuantize",
    "FixedLevelsFakeQuantize",
    "LearnableFakeQuantize",
    "__version__",
]
