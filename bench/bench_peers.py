#!/usr/bin/env python3
"""mcuq next to its peers, side by side in one run: int8 PTQ and QAT of the
Fashion-MNIST example's CNN (``SmallCnn`` in examples/python/fashion_mnist.py)
with

  mcuq      mcuq.prepare(model, mcuq.presets.int8(), qat=False) + mcuq.calibrate (PTQ);
            qat=True (freeze_bn_step=200, as the demo) + training (QAT); then mcuq.freeze.
            Deployed: mcuq.export's integer reference (bit-exact with the generated C)
            over the test set, as examples/python/demo.py measures "integer accuracy".
  torchao   PT2E: torch.export.export(model, example).module(), prepare_pt2e /
            prepare_qat_pt2e, convert_pt2e, with ExecuTorch's CortexMQuantizer
            (executorch.backends.cortex_m.quantizer.quantizer). Deployed: the converted
            model lowered with ExecuTorch's Cortex-M passes (to_edge + CortexMPassManager,
            target Cortex-M4) to cortex_m::quantized_conv2d / quantized_linear / ... ops,
            run by their Python reference implementations (CMSIS-NN integer arithmetic:
            int32 accumulators, multiplier + shift requantization).
  Brevitas  the same CNN built from brevitas.nn QuantIdentity / QuantConv2d / QuantReLU /
            QuantLinear: weights int8 symmetric per output channel (Int8WeightPerChannelFloat),
            activations 8-bit affine per tensor (ShiftedUint8ActPerTensorFloat; unsigned
            Uint8ActPerTensorFloat after each ReLU, the same 256 levels over [0, max]),
            biases int32 (Int32Bias); PTQ under brevitas.graph.calibrate.calibration_mode;
            QAT fine-tunes the calibrated model (learned activation scales).

Fairness: one float CNN for all (build/demo/cache/cnn-full.pt when the demo left it
there and the run uses the full training set, else trained here with seed 0 on the
same recipe, one epoch of Adam at 3e-3, and cached in build/bench/), the same
calibration images (the first --calibration training images), the same QAT loop
(Adam, lr 5e-4, batch 64, the same --limit images in the same order, --qat-epochs
epochs) and the full 10k test set. "QAT epoch s" is the median wall time of one
training epoch (training only, no evaluation); the float row's is the same loop on
the float model, the reference for the QAT overhead.

Which PT2E quantizer, and why: CortexMQuantizer (int8 weights per channel for
convolutions, per tensor for linear layers; activations int8 affine per tensor with
HistogramObserver) is ExecuTorch's quantizer for Cortex-M, the target mcuq is for.
Three things make it work here, each stated in the results' notes:
  - executorch.backends.arm imports ``tosa_serializer`` (the TOSA flatbuffer writer
    for Ethos-U/TOSA lowering), which is not installed; quantizing and the Cortex-M
    passes never call it, so a placeholder module that raises on use stands in.
  - its convolution patterns require channels-last inputs (otherwise the convolutions
    are silently left in float), so the model and examples are channels-last, and
    ``.module(check_guards=False)``: its passes reject the guard call_module that
    ``ExportedProgram.module()`` adds by default.
  - it has no conv-bn(-relu) QAT pattern and only observers (no fake-quantizers), so
    both PT2E and Brevitas get the float model with BatchNorm folded into the
    convolutions (what prepare_pt2e does itself for PTQ), and QAT uses the same
    quantizer with its observers swapped for torchao fake-quantizers of the same
    scheme (FusedMovingAvgObsFakeQuantize for activations, FakeQuantize with
    PerChannelMinMaxObserver / MinMaxObserver for weights).
If CortexMQuantizer fails, the run falls back to ExecuTorch's XNNPACKQuantizer
(symmetric int8, per-channel weights; no MCU lowering, so no deployed accuracy),
and says so in the table; ``--pt2e-quantizer xnnpack`` picks it directly.

Run (from the repository root):
  .venv/bin/python bench/bench_peers.py \\
      [--qat-epochs 1] [--calibration 2000] [--limit N] [--quick] [--json PATH]
A peer that fails (import error, unsupported op) is a "failed: <reason>" cell, not a
crashed run. Accuracy and speed are reported, never asserted. The default run takes
about 75 s on 2 idle cores once the float CNN is cached (four epochs of training and
about 20 passes over the test set; 14 minutes when the cores were shared with a
compiler); --quick about 30 s. Epoch times are the wall time of one epoch: they move
by a third between runs, so compare them within one run only.
"""

import argparse
import copy
import dataclasses
import importlib.metadata
import itertools
import json
import logging
import statistics
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
try:
    import mcuq
except ImportError:
    sys.path.insert(0, str(ROOT / "ops"))
    import mcuq
from mcuq.data import fashion_mnist, normalized  # noqa: E402

sys.path.insert(0, str(ROOT / "examples" / "python"))
from fashion_mnist import SmallCnn, batches  # noqa: E402

# torch.export and ExecuTorch log deprecation warnings about their own internals
# on every export; they say nothing about the models compared here. (Filters, not
# levels: ExecuTorch sets its logger's level when it is imported.)
logging.getLogger("torch.utils._pytree").addFilter(lambda r: "is an Enum subclass" not in r.getMessage())
logging.getLogger("executorch.exir.pass_manager").addFilter(lambda r: "PassManager is deprecated" not in r.getMessage())

Cell = Union[float, str]  # a number, or why there is none ("failed: ...", "—")
DASH = "—"
NOT_RUN = "not run"  # an earlier stage of the same tool failed


@dataclasses.dataclass
class Settings:
    qat_epochs: int = 1
    calibration: int = 2000  # first N training images
    limit: Optional[int] = None  # training images per QAT epoch (None: all 60k)
    float_limit: Optional[int] = None  # training images of the float model's one epoch
    lr: float = 5e-4  # QAT and float fine-tuning, all tools
    batch: int = 64
    eval_batch: int = 1000
    seed: int = 0
    pt2e_quantizer: str = "cortex-m"
    verbose: bool = False


@dataclasses.dataclass
class Data:
    x: torch.Tensor
    y: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor
    calibration: List[torch.Tensor]


@dataclasses.dataclass
class Row:
    tool: str
    ptq: Cell = DASH
    qat: Cell = DASH
    qat_epoch_s: Cell = DASH
    deployed_ptq: Cell = DASH
    deployed_qat: Cell = DASH
    notes: List[str] = dataclasses.field(default_factory=list)


# ---- shared by every tool -------------------------------------------------------


def failed(error: BaseException, settings: Settings) -> str:
    """A short table cell for ``error``; the whole traceback on --verbose."""
    if settings.verbose:
        traceback.print_exception(error)
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    print(f"  failed: {reason}", file=sys.stderr)
    return "failed: " + (reason if len(reason) <= 80 else reason[:77] + "...")


def attempt(fn: Callable[[], Cell], settings: Settings) -> Cell:
    """``fn()``, or a "failed: ..." cell, so that one stage's failure leaves the
    other cells of its row (and the other rows) standing."""
    try:
        return fn()
    except Exception as error:  # any failure of a peer becomes its cell; the reason is printed
        return failed(error, settings)


def accuracy(predict: Callable, x: torch.Tensor, y: torch.Tensor, size: int) -> float:
    with torch.no_grad():
        correct = sum((predict(xb).argmax(1) == yb).sum().item() for xb, yb in batches(x, y, size))
    return 100.0 * correct / x.shape[0]


def evaluate(quantized: Union[nn.Module, str], data: Data, settings: Settings,
             deployed: Optional[Callable[[nn.Module], Cell]] = None) -> Tuple[Cell, Cell]:
    """(accuracy of ``quantized``, accuracy of its deployed form by ``deployed``),
    or, where ``quantized`` is a failure, that failure and "not run"."""
    if isinstance(quantized, str):
        return quantized, NOT_RUN if deployed else DASH
    fake = attempt(lambda: accuracy(quantized, data.xt, data.yt, settings.eval_batch), settings)
    return fake, attempt(lambda: deployed(quantized), settings) if deployed else DASH


def quantize_and_train(prepare: Callable[[], nn.Module], finish: Callable[[nn.Module], nn.Module], data: Data,
                       settings: Settings, to_train: Callable[[nn.Module], None] = lambda m: m.train()
                       ) -> Tuple[Union[nn.Module, str], Cell]:
    """QAT: ``prepare()``, the shared training loop, then ``finish`` (freeze or
    convert). Returns the finished model and the median epoch seconds, each a
    "failed: ..." / "not run" cell where a stage failed."""
    try:
        prepared = prepare()
        seconds = statistics.median(train_epochs(prepared, data, settings, to_train))
    except Exception as error:  # the row reports it
        return failed(error, settings), NOT_RUN
    return attempt(lambda: finish(prepared), settings), seconds


def train_epochs(model: nn.Module, data: Data, settings: Settings,
                 to_train: Callable[[nn.Module], None] = lambda m: m.train()) -> List[float]:
    """The one QAT loop every tool gets: Adam, the same lr, batch and images in the
    same order. Returns the wall seconds of each epoch."""
    warm_up(model, data, settings, to_train)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    seconds = []
    for _ in range(settings.qat_epochs):
        to_train(model)
        start = time.perf_counter()
        for xb, yb in batches(data.x, data.y, settings.batch, settings.limit):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def warm_up(model: nn.Module, data: Data, settings: Settings, to_train: Callable[[nn.Module], None],
            steps: int = 3) -> None:
    """A few untimed training steps on a copy of ``model``, so that one-time costs
    (first calls, allocator, thread pools) stay out of the epoch times of short runs
    while the model itself trains exactly as the others do."""
    spare = copy.deepcopy(model)
    to_train(spare)
    opt = torch.optim.Adam(spare.parameters(), lr=settings.lr)
    for xb, yb in itertools.islice(batches(data.x, data.y, settings.batch), steps):
        opt.zero_grad()
        nn.functional.cross_entropy(spare(xb), yb).backward()
        opt.step()


def fold_bn(model: SmallCnn) -> SmallCnn:
    """The float CNN with each BatchNorm folded into its convolution (eval
    statistics), the same function: where the PT2E and Brevitas flows start."""
    folded = copy.deepcopy(model).eval()
    folded.conv1 = torch.nn.utils.fusion.fuse_conv_bn_eval(folded.conv1, folded.bn1)
    folded.conv2 = torch.nn.utils.fusion.fuse_conv_bn_eval(folded.conv2, folded.bn2)
    folded.bn1, folded.bn2 = nn.Identity(), nn.Identity()
    return folded


def float_model(data: Data, settings: Settings) -> Tuple[SmallCnn, str]:
    """The float CNN every tool starts from, and where it came from."""
    model = SmallCnn()
    demo_cache = ROOT / "build" / "demo" / "cache" / "cnn-full.pt"
    tag = "full" if settings.float_limit is None else str(settings.float_limit)
    cache = ROOT / "build" / "bench" / f"cnn-float-{tag}.pt"
    for path in ([demo_cache] if settings.float_limit is None else []) + [cache]:
        if path.is_file():
            model.load_state_dict(torch.load(path))
            return model.eval(), f"loaded {path.relative_to(ROOT)}"
    # The demo's recipe (examples/python/demo.py): seed 0, one epoch, Adam at 3e-3.
    torch.manual_seed(0)
    model = SmallCnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for xb, yb in batches(data.x, data.y, 64, settings.float_limit):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval(), f"trained here, cached in {cache.relative_to(ROOT)}"


def run_float(model: SmallCnn, data: Data, settings: Settings) -> Row:
    """The float reference: its accuracy, and after the same fine-tuning the QAT
    models get (whose epoch time is the baseline for QAT's overhead)."""
    row = Row("float32 (PTQ col: as trained; QAT col: + same fine-tuning)")
    row.ptq = accuracy(model.eval(), data.xt, data.yt, settings.eval_batch)
    longer = copy.deepcopy(model)
    seconds = train_epochs(longer, data, settings)
    row.qat = accuracy(longer.eval(), data.xt, data.yt, settings.eval_batch)
    row.qat_epoch_s = statistics.median(seconds)
    return row


# ---- mcuq --------------------------------------------------------------------------


def mcuq_integer_accuracy(frozen: nn.Module, data: Data, settings: Settings) -> float:
    """Accuracy of the exported integer model, as the demo measures it: mcuq.export's
    integer reference, which the generated C matches bit for bit."""
    exported = mcuq.export(frozen, [1, *data.x.shape[1:]], sample=data.calibration[0][:64])
    return accuracy(exported, data.xt, data.yt, settings.eval_batch)


def run_mcuq(model: SmallCnn, data: Data, settings: Settings) -> Row:
    row = Row(f"mcuq {mcuq.__version__} (int8 preset)", notes=[
        "mcuq: weights int8 symmetric per channel [-127, 127], activations int8 affine per tensor; PTQ ranges "
        "by the preset's EMA min/max; QAT folds BatchNorm in ConvBn with live statistics for 200 steps, then "
        "frozen (as the demo). PTQ/QAT columns: the frozen fake-quant model; deployed: mcuq.export's integer "
        "reference (bit-exact with the generated C)."])

    def deployed(frozen: nn.Module) -> float:
        return mcuq_integer_accuracy(frozen, data, settings)

    torch.manual_seed(settings.seed)
    ptq = attempt(lambda: _mcuq_ptq(model, data), settings)
    row.ptq, row.deployed_ptq = evaluate(ptq, data, settings, deployed)
    torch.manual_seed(settings.seed)
    qat, row.qat_epoch_s = quantize_and_train(
        lambda: mcuq.prepare(copy.deepcopy(model).eval(), mcuq.presets.int8(), qat=True, freeze_bn_step=200),
        mcuq.freeze, data, settings)
    row.qat, row.deployed_qat = evaluate(qat, data, settings, deployed)
    return row


def _mcuq_ptq(model: SmallCnn, data: Data) -> nn.Module:
    prepared = mcuq.prepare(copy.deepcopy(model).eval(), mcuq.presets.int8(), qat=False)
    mcuq.calibrate(prepared, data.calibration, progress=False)
    return mcuq.freeze(prepared)


# ---- torchao PT2E ------------------------------------------------------------------


class _Missing(types.ModuleType):
    """Stands in for a module that is imported but, on this path, never used:
    any attribute is a placeholder that raises if it is ever called."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        module = self.__name__

        class Placeholder:
            def __getattr__(self, attr):
                return self

            def __call__(self, *args, **kwargs):
                raise RuntimeError(f"{module}.{name} is not installed (bench_peers.py put in a placeholder)")

        return Placeholder()


def _cortex_m_imports(notes: List[str]):
    """ExecuTorch's Cortex-M quantizer and lowering; see the module docstring for
    the tosa_serializer placeholder."""
    try:
        import tosa_serializer  # noqa: F401
    except ImportError:
        sys.modules["tosa_serializer"] = _Missing("tosa_serializer")
        notes.append("PT2E: tosa_serializer (TOSA/Ethos-U flatbuffer writer, imported by "
                     "executorch.backends.arm) is not installed; a placeholder that raises on use stood in. "
                     "Quantizing and the Cortex-M passes never used it.")
    from executorch.backends.cortex_m.quantizer.quantizer import CortexMQuantizer

    return CortexMQuantizer


def _qat_config(config):
    """``config`` (a Cortex-M QuantizationConfig) with its observers replaced by
    torchao fake-quantizers of the same dtype, range and scheme."""
    from torchao.quantization.pt2e import (FakeQuantize, FusedMovingAvgObsFakeQuantize, MinMaxObserver,
                                           PerChannelMinMaxObserver)

    activation = dataclasses.replace(config.input_activation,
                                     observer_or_fake_quant_ctr=FusedMovingAvgObsFakeQuantize)
    per_channel = config.weight.qscheme == torch.per_channel_symmetric
    weight = dataclasses.replace(config.weight, observer_or_fake_quant_ctr=FakeQuantize.with_args(
        observer=PerChannelMinMaxObserver if per_channel else MinMaxObserver))
    return dataclasses.replace(config, input_activation=activation, output_activation=activation, weight=weight)


def make_quantizer(kind: str, qat: bool, notes: List[str]):
    """A fresh quantizer of ``kind`` ("cortex-m" or "xnnpack") for PTQ or QAT."""
    if kind == "cortex-m":
        quantizer = _cortex_m_imports(notes)()
        if qat:
            from executorch.backends.cortex_m.quantizer import quantization_configs as configs

            # CortexMQuantizer builds [convolutions per channel, everything else per
            # tensor, shared qspecs]; swap in the QAT versions of its two configs.
            conv, rest = quantizer.quantizers[0], quantizer.quantizers[1]
            if conv.quantization_config is not configs.INT8_PER_CHANNEL_CONFIG or \
                    rest.quantization_config is not configs.INT8_PER_TENSOR_CONFIG:
                raise RuntimeError("CortexMQuantizer's layout changed; cannot derive its QAT configs")
            conv.quantization_config = _qat_config(configs.INT8_PER_CHANNEL_CONFIG)
            rest.quantization_config = _qat_config(configs.INT8_PER_TENSOR_CONFIG)
        return quantizer
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def pt2e_export(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """torch.export's graph of ``model``. check_guards=False: the Cortex-M passes
    reject the guard call_module that ``.module()`` otherwise inserts."""
    model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return torch.export.export(model, (channels_last(example),)).module(check_guards=False)


def lower_cortex_m(converted: nn.Module, example: torch.Tensor) -> Tuple[Callable, int]:
    """The converted model lowered like ExecuTorch's Cortex-M backend (to_edge, then
    CortexMPassManager for a Cortex-M4): a callable for batches of exactly
    ``example``'s size, and the number of float convolutions or linears left."""
    import executorch.exir
    from executorch.backends.cortex_m.edge_compile_config import cortex_m_edge_compile_config
    from executorch.backends.cortex_m.passes.cortex_m_pass_manager import CortexMPassManager
    from executorch.backends.cortex_m.target_config import CortexM, CortexMTargetConfig

    program = torch.export.export(converted, (channels_last(example),))
    edge = executorch.exir.to_edge(program, compile_config=cortex_m_edge_compile_config())
    lowered = CortexMPassManager(edge.exported_program(), target_config=CortexMTargetConfig(cpu=CortexM.M4)).transform()
    left = sum(1 for n in lowered.graph_module.graph.nodes if n.op == "call_function" and
               any(op in str(n.target) for op in ("aten.convolution", "aten.conv2d", "aten.linear", "aten.addmm")))
    return lowered.module(), left


def fixed_batch_accuracy(module: Callable, size: int, data: Data) -> float:
    """Accuracy of a program lowered for batches of ``size`` (the last batch padded)."""
    correct = 0
    with torch.no_grad():
        for xb, yb in batches(data.xt, data.yt, size):
            n = xb.shape[0]
            if n < size:
                xb = torch.cat([xb, xb.new_zeros(size - n, *xb.shape[1:])])
            correct += (module(channels_last(xb))[:n].argmax(1) == yb).sum().item()
    return 100.0 * correct / data.xt.shape[0]


def pt2e_deployed(converted: nn.Module, data: Data, settings: Settings) -> Cell:
    module, left = lower_cortex_m(converted, data.xt[:settings.eval_batch])
    if left:
        return f"partial: {left} float conv/linear left"
    return fixed_batch_accuracy(module, settings.eval_batch, data)


def run_pt2e(folded: nn.Module, data: Data, settings: Settings) -> Row:
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    notes: List[str] = []
    kind = settings.pt2e_quantizer
    if kind == "cortex-m":
        try:
            make_quantizer(kind, qat=False, notes=notes)
        except Exception as error:  # fall back, and say why in the notes and the row's label
            kind = "xnnpack"
            notes.append(f"PT2E: CortexMQuantizer unavailable ({failed(error, settings)}); used XNNPACKQuantizer.")
    if kind == "cortex-m":
        notes.append("PT2E (CortexMQuantizer): conv weights int8 symmetric per channel on [-128, 127] (full "
                     "range), linear weights per TENSOR, activations int8 affine per tensor (HistogramObserver "
                     "for PTQ); QAT: the same scheme with torchao fake-quantizers (EMA min/max activations); "
                     "BatchNorm folded before export. PTQ/QAT columns: the converted (quantize-dequantize) "
                     "model; deployed: the cortex_m:: ops' Python reference (CMSIS-NN arithmetic) after "
                     "ExecuTorch's Cortex-M passes (Cortex-M4).")
    else:
        notes.append("PT2E (XNNPACKQuantizer): weights int8 symmetric per channel, activations int8 affine; "
                     "PTQ/QAT columns: the converted (quantize-dequantize) model; no MCU lowering, so no "
                     "deployed accuracy.")
    label = {"cortex-m": "CortexMQuantizer", "xnnpack": "XNNPACKQuantizer"}[kind]
    row = Row(f"torchao {importlib.metadata.version('torchao')} PT2E + ExecuTorch {label}", notes=notes)
    example = data.calibration[0][:8]
    deployed = (lambda converted: pt2e_deployed(converted, data, settings)) if kind == "cortex-m" else None

    def ptq() -> nn.Module:
        prepared = prepare_pt2e(pt2e_export(folded, example), make_quantizer(kind, False, notes))
        with torch.no_grad():
            for xb in data.calibration:
                prepared(channels_last(xb))
        return convert_pt2e(prepared)

    def convert(prepared: nn.Module) -> nn.Module:
        move_exported_model_to_eval(prepared)
        return convert_pt2e(prepared)

    torch.manual_seed(settings.seed)
    row.ptq, row.deployed_ptq = evaluate(attempt(ptq, settings), data, settings, deployed)
    torch.manual_seed(settings.seed)
    qat, row.qat_epoch_s = quantize_and_train(
        lambda: prepare_qat_pt2e(pt2e_export(folded, example), make_quantizer(kind, True, notes)),
        convert, data, settings, move_exported_model_to_train)
    row.qat, row.deployed_qat = evaluate(qat, data, settings, deployed)
    return row


# ---- Brevitas ----------------------------------------------------------------------


def brevitas_cnn(folded: nn.Module) -> nn.Module:
    """SmallCnn in brevitas.nn layers (BatchNorm already folded) with ``folded``'s
    float weights."""
    from brevitas import nn as qnn
    from brevitas.quant import (Int8WeightPerChannelFloat, Int32Bias, ShiftedUint8ActPerTensorFloat,
                                Uint8ActPerTensorFloat)

    def conv(src: nn.Conv2d):
        return qnn.QuantConv2d(src.in_channels, src.out_channels, src.kernel_size, padding=src.padding, bias=True,
                               weight_quant=Int8WeightPerChannelFloat, bias_quant=Int32Bias, return_quant_tensor=True)

    def relu():
        return qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)

    fc = folded.fc
    model = nn.Sequential(
        qnn.QuantIdentity(act_quant=ShiftedUint8ActPerTensorFloat, return_quant_tensor=True),
        conv(folded.conv1), relu(), nn.MaxPool2d(2),
        conv(folded.conv2), relu(), nn.MaxPool2d(2),
        nn.Flatten(),
        qnn.QuantLinear(fc.in_features, fc.out_features, bias=True, weight_quant=Int8WeightPerChannelFloat,
                        bias_quant=Int32Bias, output_quant=ShiftedUint8ActPerTensorFloat, return_quant_tensor=False))
    with torch.no_grad():
        for dst, src in ((model[1], folded.conv1), (model[4], folded.conv2), (model[8], fc)):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return model.eval()


def _brevitas_ptq(folded: nn.Module, data: Data) -> nn.Module:
    from brevitas.graph.calibrate import calibration_mode

    model = brevitas_cnn(folded)
    with torch.no_grad(), calibration_mode(model):
        for xb in data.calibration:
            model(xb)
    return model.eval()


def run_brevitas(folded: nn.Module, data: Data, settings: Settings) -> Row:
    row = Row(f"Brevitas {importlib.metadata.version('brevitas')}", notes=[
        "Brevitas: weights int8 symmetric per channel [-127, 127], activations 8-bit affine per tensor "
        "(percentile-initialized by calibration_mode, scales learned in QAT), int32 biases; BatchNorm folded "
        "before. QAT fine-tunes the calibrated PTQ model (its learned scales need a starting value). PTQ/QAT "
        "columns: Brevitas' fake-quant model; deployed: none here (Brevitas exports ONNX/QONNX for other "
        "runtimes)."])
    torch.manual_seed(settings.seed)
    ptq = attempt(lambda: _brevitas_ptq(folded, data), settings)
    row.ptq, _ = evaluate(ptq, data, settings)
    if isinstance(ptq, str):
        row.qat = row.qat_epoch_s = NOT_RUN
        return row
    torch.manual_seed(settings.seed)
    qat, row.qat_epoch_s = quantize_and_train(lambda: copy.deepcopy(ptq), lambda m: m.eval(), data, settings)
    row.qat, _ = evaluate(qat, data, settings)
    return row


# ---- the run -----------------------------------------------------------------------


def versions() -> Dict[str, str]:
    found = {}
    for package in ("torch", "torchao", "executorch", "brevitas"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["mcuq"] = mcuq.__version__
    return found


def cell(value: Cell, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else value


def table(rows: List[Row]) -> str:
    lines = ["| tool | PTQ int8 acc % | QAT int8 acc % | QAT epoch s | deployed integer acc % (PTQ / QAT) |",
             "|---|---|---|---|---|"]
    for r in rows:
        deployed = DASH if r.deployed_ptq == DASH and r.deployed_qat == DASH else \
            f"{cell(r.deployed_ptq)} / {cell(r.deployed_qat)}"
        lines.append(f"| {r.tool} | {cell(r.ptq)} | {cell(r.qat)} | {cell(r.qat_epoch_s, 1)} | {deployed} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qat-epochs", type=int, default=1, help="QAT (and float fine-tuning) epochs (default 1)")
    parser.add_argument("--calibration", type=int, default=2000, help="calibration images: the first N training images")
    parser.add_argument("--limit", type=int, default=None, help="training images per QAT epoch (default: all 60k)")
    parser.add_argument("--pt2e-quantizer", choices=("cortex-m", "xnnpack"), default="cortex-m",
                        help="ExecuTorch quantizer for the torchao PT2E row (default cortex-m)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: float CNN on 12800 images, 1280 QAT images, 512 calibration images")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of every failure")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(qat_epochs=args.qat_epochs, calibration=args.calibration, limit=args.limit,
                        pt2e_quantizer=args.pt2e_quantizer, verbose=args.verbose)
    if args.quick:
        settings = dataclasses.replace(settings, limit=args.limit or 1280, float_limit=12800,
                                       calibration=min(args.calibration, 512))
    start = time.perf_counter()

    images, labels = fashion_mnist("train")
    test_images, test_labels = fashion_mnist("test")
    x, xt = normalized(images), normalized(test_images)
    calibration = [xb for xb, _ in batches(x, labels, 250, settings.calibration)]
    data = Data(x, labels, xt, test_labels, calibration)

    model, origin = float_model(data, settings)
    folded = fold_bn(model)
    rows = []
    for name, run, source in (("float", run_float, model), ("mcuq", run_mcuq, model),
                              ("torchao PT2E", run_pt2e, folded), ("Brevitas", run_brevitas, folded)):
        print(f"[{time.perf_counter() - start:6.1f} s] {name} ...", file=sys.stderr, flush=True)
        try:
            rows.append(run(source, data, settings))
        except Exception as error:  # a peer's unexpected failure is its row, not the end of the run
            rows.append(Row(name, ptq=failed(error, settings)))
    elapsed = time.perf_counter() - start

    found = versions()
    qat_images = settings.limit or x.shape[0]
    print("Fashion-MNIST, SmallCnn, int8: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print(f"float CNN {origin}; calibration: first {settings.calibration} training images; QAT: "
          f"{settings.qat_epochs} epoch(s) x {qat_images} images, Adam lr {settings.lr}, batch {settings.batch}; "
          f"test: all {xt.shape[0]} images; {torch.get_num_threads()} thread(s).")
    print()
    print(table(rows))
    print()
    for r in rows:
        for note in r.notes:
            print(f"- {note}")
    print(f"\nTotal time {elapsed:.0f} s.")

    report = {"settings": dataclasses.asdict(settings), "float_model": origin, "versions": found,
              "rows": [dataclasses.asdict(r) for r in rows], "seconds": elapsed}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
