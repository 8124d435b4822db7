"""mcuq: quantization for microcontrollers, as PyTorch dispatcher ops.

``import mcuq`` registers ``torch.ops.mcuq.*``; the functions below are thin,
typed wrappers around them (the schemas live in C++; see README.md, "Op
reference").
"""

from . import _library

_library.load()

from .ops import dequantize, fake_quantize, quantize  # noqa: E402

__version__ = "0.1.0"

__all__ = ["fake_quantize", "quantize", "dequantize", "__version__"]
