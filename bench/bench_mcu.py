"""MCU kernel speed: executed instructions per MAC (QEMU plugin; cycles on
the AVR) of the exported C on emulated targets, per layer, side by side with
CMSIS-NN, plus whole models and the runtime's code size.

    .venv/bin/python bench/bench_mcu.py [--targets cortex-m0,cortex-m4] [--optimize -O2] [--models]
        [--preset nu4/per_tensor --baseline int8]

Five single-layer int8 models, the layer set CMSIS-NN is usually measured on
(issue 12): (a) conv 3x3 28x28x1 -> 8, pad 1; (b) conv 3x3 14x14x8 -> 16,
pad 1; (c) depthwise 3x3 14x14x16, pad 1; (d) conv 1x1 14x14x16 -> 32;
(e) fully connected 784 -> 10. Each is prepared (int8 PTQ), calibrated on
noise, frozen, exported and run on each target, where the firmware checks
its outputs against the host integer reference (bit-exact or the run
fails). The CMSIS-NN column is the figure issue 12 quotes (CMSIS-NN's s8
kernels, GCC 12.2 -O2, the same QEMU machines and instruction counter):
this repository neither contains nor builds CMSIS-NN. ``--models`` adds the
exporter zoo's Fashion-MNIST CNN (fashion_mnist.py's, 8-16 channels; the
demo trains a wider one), its depthwise and residual CNNs (instructions per
inference; AVR: cycles), and the zoo's MLPs, which fit the AVR's 2 KB of RAM
(of the five layers only the fully connected one does). Weights and inputs
are seeded: figures are exact and repeatable; this is a benchmark, not a
test.

``--preset`` quantizes the layers with another preset ("NAME/per_tensor":
its weights per tensor, e.g. one codebook per layer for nu4, so that every
layer, the 9-weight filters too, stores codebook indices), and
``--baseline PRESET`` measures that one as well and prints the ratio of
instructions per MAC, preset / baseline.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "examples" / "mcu", REPO / "tests" / "python", REPO / "ops"):
    sys.path.insert(0, str(path))

import mcuq  # noqa: E402
from mcu import TARGETS, available, run_on_target, runtime_code_size  # noqa: E402

# (name, model, input shape, CMSIS-NN i/MAC on the M4 and M0 at -O2, as issue 12 measured them)
LAYERS: List[Tuple[str, nn.Module, List[int], Dict[str, float]]] = [
    ("a conv3x3 28x28x1->8", nn.Sequential(nn.Conv2d(1, 8, 3, padding=1)), [1, 1, 28, 28], {"cortex-m4": 14.0}),
    ("b conv3x3 14x14x8->16", nn.Sequential(nn.Conv2d(8, 16, 3, padding=1)), [1, 8, 14, 14], {"cortex-m4": 2.88}),
    ("c depthwise3x3 14x14x16", nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16)), [1, 16, 14, 14],
     {"cortex-m4": 8.14}),
    ("d conv1x1 14x14x16->32", nn.Sequential(nn.Conv2d(16, 32, 1)), [1, 16, 14, 14], {"cortex-m4": 3.90}),
    ("e fc 784->10", nn.Sequential(nn.Linear(784, 10)), [1, 784], {"cortex-m4": 1.96}),
]
CMSIS_TOTAL = {"cortex-m4": 4.96, "cortex-m0": 13.70}


def export(model: nn.Module, shape: List[int], preset: str, directory: Path):
    from _export_zoo import preset as preset_named
    torch.manual_seed(0)
    for module in model.modules():  # the weights too, so that every run measures the same layers
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    prepared = mcuq.prepare(model.eval(), preset_named(preset), qat=False)
    mcuq.calibrate(prepared, [torch.randn(16, *shape[1:]) for _ in range(2)], progress=False)
    exported = mcuq.export(mcuq.freeze(prepared), shape)
    exported.write(directory, "net")
    return exported


def fits(target: str, exported) -> bool:
    """Input, output and arena fit the part's RAM with room for the stack (the AVR's 2 KB)."""
    numel = lambda qparams: int(torch.tensor(qparams["shape"]).prod())  # noqa: E731
    data = (numel(exported.input_qparams) + numel(exported.output_qparams)) * exported.activation_dtype.itemsize
    return data + exported.arena_bytes <= 0.75 * TARGETS[target].ram_bytes


def count(target: str, exported, directory: Path, shape: List[int], optimize: str) -> int:
    torch.manual_seed(2)  # the requantize and clamp paths depend on the data
    run = run_on_target(target, exported, directory, "net", torch.randn(2, *shape[1:]), optimize=optimize)
    if run.exit_code != 0 or run.bit_exact != run.vectors:
        raise RuntimeError(f"{target}: {run.vectors - run.bit_exact} of {run.vectors} inputs differ from the "
                           f"integer reference\n{run.output[-2000:]}")
    return run.count_per_inference


def print_layers(preset: str, rows, targets: List[str], optimize: str) -> None:
    unit = {t: "cycles" if TARGETS[t].family == "avr" else "i" for t in targets}
    print(f"\n{preset} layers, firmware {optimize}; instructions per MAC (AVR: cycles per MAC)")
    print(f"{'layer':<26}{'MACs':>9}" + "".join(f"{t:>12}" for t in targets) + f"{'CMSIS-NN M4':>13}")
    for name, macs, counts in rows:
        cmsis = next(c for n, _, _, c in LAYERS if n == name).get("cortex-m4")
        print(f"{name:<26}{macs:>9}" + "".join(
            f"{counts[t] / macs:>12.2f}" if t in counts else f"{'-':>12}" for t in targets) + f"{cmsis:>13.2f}")
    total_macs = sum(macs for _, macs, _ in rows)
    print(f"{'all five':<26}{total_macs:>9}" + "".join(
        f"{sum(c[t] for _, _, c in rows) / total_macs:>12.2f}" if all(t in c for _, _, c in rows) else
        f"{'-':>12}" for t in targets) + f"{CMSIS_TOTAL['cortex-m4']:>13.2f}")
    print(f"(CMSIS-NN all five on the M0: {CMSIS_TOTAL['cortex-m0']:.2f}; units: "
          + ", ".join(f"{t} {unit[t]}" for t in targets) + ")")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="cortex-m0,cortex-m3,cortex-m4,cortex-m7,rv32,atmega328p")
    parser.add_argument("--optimize", default="-O2", help="firmware optimization flag (default -O2, as CMSIS-NN's)")
    parser.add_argument("--preset", default="int8", help='the layers\' preset ("NAME/per_tensor": weights per tensor)')
    parser.add_argument("--baseline", default="", help="also measure this preset and print preset / baseline")
    parser.add_argument("--models", action="store_true", help="also the zoo's Fashion-MNIST, depthwise and residual CNNs")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    for t in targets:
        if t not in TARGETS:
            parser.error(f"unknown target {t!r} (known: {', '.join(TARGETS)})")
    targets = [t for t in targets if available(t)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcuq-bench-mcu-") as tmp:
        work = Path(tmp)
        measured = {}
        for preset in [args.preset] + ([args.baseline] if args.baseline else []):
            rows = []
            for index, (name, model, shape, _) in enumerate(LAYERS):
                directory = work / f"{preset.replace('/', '_')}-layer{index}"
                exported = export(model, shape, preset, directory)
                counts = {t: count(t, exported, directory, shape, args.optimize) for t in targets if fits(t, exported)}
                rows.append((name, exported.macs, counts))
            measured[preset] = rows
            print_layers(preset, rows, targets, args.optimize)
        if args.baseline:
            print(f"\n{args.preset} / {args.baseline}, instructions per MAC (AVR: cycles)")
            print(f"{'layer':<26}{'':>9}" + "".join(f"{t:>12}" for t in targets))
            for (name, _, counts), (_, _, base) in zip(measured[args.preset], measured[args.baseline]):
                print(f"{name:<26}{'':>9}" + "".join(
                    f"{counts[t] / base[t]:>12.3f}" if t in counts and t in base else f"{'-':>12}" for t in targets))
            total = lambda rows, t: sum(c[t] for _, _, c in rows)  # noqa: E731
            print(f"{'all five':<26}{'':>9}" + "".join(
                f"{total(measured[args.preset], t) / total(measured[args.baseline], t):>12.3f}"
                if all(t in c for _, _, c in measured[args.preset] + measured[args.baseline]) else f"{'-':>12}"
                for t in targets))

        if args.models:
            from _export_zoo import ZOO, frozen
            print(f"\nwhole models, instructions (AVR: cycles) per inference (firmware {args.optimize})")
            for zoo_name in ("fashion_cnn", "fashion_cnn_nu4", "depthwise_cnn", "depthwise_cnn_w4a8",
                             "depthwise_cnn_nu3_per_tensor",
                             "residual_cnn", "mlp", "mlp_w4a8", "mlp_nu4", "lut_mlp"):
                model = next(m for m in ZOO if m.name == zoo_name)
                directory = work / zoo_name
                exported = mcuq.export(frozen(model), model.input_shape)
                exported.write(directory, "net")
                counts = {t: count(t, exported, directory, model.input_shape, args.optimize)
                          for t in targets if fits(t, exported)}
                print(f"{zoo_name:<16}{exported.macs:>9} MACs  " +
                      "  ".join(f"{t} {c:,} ({c / exported.macs:.1f}/MAC)" for t, c in counts.items()))

        print("\nruntime code (-Os, text bytes, all kernels)")
        for t in targets:
            sizes = runtime_code_size(t, work / "sizes")
            print(f"{t:<11}{sum(sizes.values()):>7}  " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
