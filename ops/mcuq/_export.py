"""``mcuq.export``: a frozen model -> integer graph -> C tables for the mcuq
runtime, plus the LibTorch integer reference that the C code matches bit for
bit. The exporter itself is C++ (``csrc/mcuq/export``), reached through the
``torch.classes.mcuq.ExportedModel`` custom class.

    frozen = mcuq.freeze(prepared)
    exported = mcuq.export(frozen, input_shape=(1, 1, 28, 28))
    levels = exported.integer_reference(exported.quantize_input(images))
    exported.write("out", name="fmnist")        # fmnist.h, fmnist.c, report.json

Pass the model *before* ``torch.jit.freeze`` (which folds the weight
quantizers away): an ``nn.Module`` (traced here), a ``ScriptModule``, a
``torch.export`` ``ExportedProgram``, or the path of a saved TorchScript
(``.pt``) or ``torch.export`` (``.pt2``) file.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = ["export", "ExportedModel", "runtime_dir"]


def runtime_dir() -> Path:
    """The folder with the C99 runtime sources (``mcuq_runtime.h``, kernels)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "runtime", package.parent.parent / "csrc" / "runtime"):
        if (candidate / "mcuq_runtime.h").is_file():
            return candidate
    raise FileNotFoundError("mcuq: the C runtime sources are missing from this installation")


class ExportedModel:
    """A model lowered to mcuq's integer graph."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._report = json.loads(handle.report_json("model"))

    # ---- running it ------------------------------------------------------
    def quantize_input(self, x: Tensor) -> Tensor:
        """Float input ``[N, ...]`` -> int32 levels, as the model's input quantizer rounds."""
        return self._handle.quantize_input(x)

    def integer_reference(self, levels: Tensor) -> Tensor:
        """Integer levels ``[N, ...]`` -> output levels (int32), computed with
        LibTorch integer arithmetic; the generated C computes the same bits."""
        return self._handle.integer_reference(levels)

    def integer_reference_all(self, levels: Tensor) -> List[Tensor]:
        """Every tensor of the integer graph (in the report's tensor order)."""
        return list(self._handle.integer_reference_all(levels))

    def dequantize_output(self, levels: Tensor) -> Tensor:
        return self._handle.dequantize_output(levels)

    def __call__(self, x: Tensor) -> Tensor:
        """Float in, float out, through the integer graph."""
        return self.dequantize_output(self.integer_reference(self.quantize_input(x)))

    # ---- writing it --------------------------------------------------------
    def write(self, directory: Union[str, os.PathLike], name: str = "model") -> Dict[str, Path]:
        """Writes ``NAME.h``, ``NAME.c`` and ``report.json`` into ``directory``
        (created if its parent exists). Nothing is half-written: all files
        go to temporaries first and are renamed once complete."""
        self._handle.write(os.fspath(directory), name)
        d = Path(directory)
        return {"header": d / f"{name}.h", "source": d / f"{name}.c", "report": d / "report.json"}

    def c_header(self, name: str = "model") -> str:
        return self._handle.c_header(name)

    def c_source(self, name: str = "model") -> str:
        return self._handle.c_source(name)

    def c_test_vectors(self, levels: Tensor, name: str = "model") -> str:
        """``vectors.h`` for the MCU firmware harness (``examples/mcu``): these
        input levels and the integer reference's outputs, as const tables."""
        return self._handle.c_test_vectors(name, levels)

    def report(self, name: str = "model") -> Dict[str, Any]:
        return json.loads(self._handle.report_json(name))

    def summary(self) -> str:
        return self._handle.summary()

    # ---- figures -----------------------------------------------------------
    @property
    def flash_bytes(self) -> int:
        return int(self._handle.flash_bytes())

    @property
    def arena_bytes(self) -> int:
        """RAM for activations and scratch, in bytes (``NAME_ARENA_SIZE`` on cores without the DSP extension)."""
        return int(self._handle.arena_bytes())

    @property
    def arena_bytes_dsp(self) -> int:
        """``NAME_ARENA_SIZE`` on cores with the DSP extension (Cortex-M4, M7, M33, M55): at least
        :attr:`arena_bytes`; more where fully connected codebook layers pair their inputs in the arena."""
        return int(self._handle.arena_bytes_dsp())

    @property
    def macs(self) -> int:
        return int(self._handle.macs())

    @property
    def input_qparams(self) -> Dict[str, Any]:
        return dict(self._report["input"])

    @property
    def output_qparams(self) -> Dict[str, Any]:
        return dict(self._report["output"])

    @property
    def activation_dtype(self) -> torch.dtype:
        return torch.int16 if self._report["activations"] == "int16" else torch.int8

    def __repr__(self) -> str:
        return (f"ExportedModel({len(self._report['layers'])} layers, {self._report['activations']} activations, "
                f"flash {self.flash_bytes} B, arena {self.arena_bytes} B, {self.macs} MACs)")


def _exported_program_type() -> Optional[type]:
    export_module = getattr(torch, "export", None)
    return getattr(export_module, "ExportedProgram", None)


def _export_program(program: Any, shape: List[int], sample: Optional[Tensor], rounding: str,
                    source: str, decode_bytes: int) -> ExportedModel:
    from . import _export_program
    _export_program.check_input(program, shape, shape[0] if sample is None else sample.shape[0])
    with tempfile.TemporaryDirectory(prefix="mcuq-export-") as tmp:
        path = os.path.join(tmp, "program.pt")
        torch.save(_export_program.write(program), path)
        return ExportedModel(torch.classes.mcuq.ExportedModel.load_program(path, shape, rounding, sample, source,
                                                                           decode_bytes))


def export(model: Union[str, os.PathLike, nn.Module, torch.jit.ScriptModule, "torch.export.ExportedProgram"],
           input_shape: Sequence[int],
           sample: Optional[Tensor] = None,
           rounding: str = "double",
           source: Optional[str] = None,
           decode_bytes: int = 4096) -> ExportedModel:
    """Lowers a frozen model (see the module docstring) for inputs of
    ``input_shape`` (``[N, C, H, W]`` or ``[N, F]``). ``sample``: float
    inputs ``[N', ...]`` run through the model to find shapes and each
    layer's SQNR for the report (default: standard normal noise).
    ``rounding``: ``"double"`` (TFLite's default) or ``"single"``.
    ``source``: how the generated files name the model (default: its class
    name, or the file name without its extension). ``decode_bytes``: the
    most bytes of int8 weights a codebook or W4A8 convolution decodes into
    the arena at a time (at least one channel's; smaller saves RAM, costs
    instructions: each block gathers the input columns again), and the most
    a codebook or W4A8 fully connected layer takes there for its inputs as
    int16 pairs (2 bytes per input; where it fits, Cortex-M4/M7 cores run it
    through tables of index pairs).

    The model is a TorchScript file or module (``.pt``), an
    ``ExportedProgram`` of ``torch.export`` or its ``.pt2`` file, or an
    ``nn.Module``, which is traced. Both kinds of graph go through the same
    lowering rules: the same frozen model gives the same C from either."""
    shape = [int(d) for d in input_shape]
    program_type = _exported_program_type()
    if isinstance(model, (str, os.PathLike)):
        if not Path(model).is_file():
            raise FileNotFoundError(f"mcuq.export: no such model file: {model}")
        name = source or Path(model).stem
        if Path(model).suffix == ".pt2":
            if program_type is None:
                raise ValueError(f"mcuq.export: {model} is a torch.export program; reading it needs torch >= 2.1, "
                                 f"but this is torch {torch.__version__}")
            return _export_program(torch.export.load(os.fspath(model)), shape, sample, rounding, name, decode_bytes)
        return ExportedModel(torch.classes.mcuq.ExportedModel.load(os.fspath(model), shape, rounding, sample, name,
                                                                   decode_bytes))
    if program_type is not None and isinstance(model, program_type):
        from ._export_program import model_name
        return _export_program(model, shape, sample, rounding, source or model_name(model), decode_bytes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"mcuq.export: expected an nn.Module, a ScriptModule, an ExportedProgram or a path, "
                        f"but got {type(model).__name__}")
    name = source or (model.original_name if isinstance(model, torch.jit.ScriptModule) else type(model).__name__)
    if not isinstance(model, torch.jit.ScriptModule):
        example = sample[:1] if sample is not None else torch.zeros(shape)
        with torch.no_grad():
            model = torch.jit.trace(model.eval(), example)
    with tempfile.TemporaryDirectory(prefix="mcuq-export-") as tmp:
        path = os.path.join(tmp, "model.pt")
        model.save(path)
        return ExportedModel(torch.classes.mcuq.ExportedModel.load(path, shape, rounding, sample, name, decode_bytes))
