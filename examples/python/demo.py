"""The main job, end to end and measured as the field measures it:
Fashion-MNIST from a float CNN to integer C running on emulated
microcontrollers, the whole test set through the device, bit-exact with the
host.

  1. train the example CNN in float (EPOCHS epochs, one-cycle learning rate,
     horizontal flips; cached in OUT/cache, so only the first run pays),
  2. quantize it six ways: PTQ int8, and QAT int8, W4A8, power-of-two
     scales and non-uniform weights (4- and 3-bit k-means codebooks per
     output channel, eq. 3), each fine-tuning one epoch from the float model
     (whose fair baseline is the float model fine-tuned for the same epoch),
  3. export each (mcuq.export) and measure its integer accuracy over the full
     test set with the host integer reference,
  4. stream the test set through the emulated Cortex-M4 (QEMU) for every
     preset, host in the loop (examples/mcu/mcu.py's evaluate_on_target: one
     emulator process per shard, inputs and outputs through semihosting),
     the QAT int8 CNN also through the M0, M3, M7 and RISC-V RV32
     (--core-images of them), and a small MLP through the AVR ATmega328P
     (simavr): the CNN's activations do not fit its 2 KB of RAM,
  5. print one table and write a report (Markdown + PNG plots: accuracy per
     preset, the device's confusion matrix, SQNR per layer, ranges).

Run: .venv/bin/python examples/python/demo.py [--out build/demo] [--images 10000] [--core-images 1000]
     [--jobs 2] [--quick] [--device cpu|cuda]
(training runs on --device, cuda when available; quantization, export and the
emulated MCUs on the CPU)
"""

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import mcuq
from mcuq.data import fashion_mnist, normalized

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "mcu"))
from fashion_mnist import SmallCnn, batches  # noqa: E402
from mcu import TARGETS, evaluate_on_target  # noqa: E402

PRESETS = [  # (row, preset, QAT?)
    ("PTQ int8", "int8", False),
    ("QAT int8", "int8", True),
    ("QAT W4A8", "w4a8", True),
    ("QAT pow2", "pow2", True),
    ("QAT nu4", "nu4", True),
    ("QAT nu3", "nu3", True),
]
CNN_CHANNELS = (8, 32)  # 91 % float; int8 arena 7.8 KB: fits the M0's 16 KB with the stack
EPOCHS = 12  # float training (the cache's first run)
FINE_TUNE_LR = 1e-4  # QAT, and the float baseline's same extra epoch
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class TinyMlp(nn.Module):
    """For the ATmega328P: 784 -> 16 -> 10 (12.6 KB of int8 weights in flash,
    under 1 KB of activations in RAM)."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten, self.fc1, self.relu, self.fc2 = nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


# Where training runs (--device); everything else runs on the CPU.
DEVICE = torch.device("cpu")


def train(model, x, y, epochs, desc, limit=None, lr=None):
    """Adam on DEVICE with horizontal flips: one-cycle up to 3e-3 over
    ``epochs`` (from scratch), or a constant ``lr`` (fine-tuning). The model
    is back on the CPU afterwards."""
    model.to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=lr or 3e-3)
    n = x.shape[0] if limit is None else min(limit, x.shape[0])
    steps = epochs * ((n + 63) // 64)
    schedule = None if lr else torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n)
        for i in tqdm(range(0, n, 64), desc=f"{desc} {epoch + 1}/{epochs}" if epochs > 1 else desc, unit="batch",
                      leave=False):
            index = order[i:i + 64]
            xb = x[index]
            flip = torch.rand(xb.shape[0]) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb.to(DEVICE)), y[index].to(DEVICE)).backward()
            opt.step()
            if schedule is not None:
                schedule.step()
    model.cpu()


def accuracy(predict, x, y) -> float:
    with torch.no_grad():
        correct = sum((predict(xb).argmax(1) == yb).sum().item() for xb, yb in batches(x, y, 1000))
    return 100.0 * correct / x.shape[0]


def cached_float(make, path: Path, x, y, epochs, limit, desc):
    model = make()
    if path.is_file():
        model.load_state_dict(torch.load(path))
        return model, True
    train(model, x, y, epochs, desc, limit)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model, False


def quantize(model, preset, qat, x, y, calibration, limit, desc):
    prepared = mcuq.prepare(copy.deepcopy(model).eval(), mcuq.presets.get(preset), qat=qat, freeze_bn_step=200)
    if qat:
        train(prepared, x, y, 1, desc, limit, lr=FINE_TUNE_LR)
    else:
        mcuq.calibrate(prepared, calibration, progress=False)
    return mcuq.freeze(prepared)


def float_bytes(model) -> int:
    return 4 * sum(p.numel() for p in model.parameters())


def plots(out: Path, rows, frozen_int8, calibration, device_run, labels) -> list:
    """PNG plots for the report; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # Accuracy per preset: fake-quant, host integer, on the device; each preset's float baseline.
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.27
    xs = range(len(rows))
    for k, (key, label) in enumerate([("fake_quant", "fake-quant"), ("integer", "integer (host)"),
                                      ("mcu_acc", "on the emulated MCU")]):
        ax.bar([i + (k - 1) * width for i in xs], [r[key] for r in rows], width, label=label)
    for i, r in enumerate(rows):
        ax.hlines(r["float"], i - 1.5 * width, i + 1.5 * width, colors="k", lw=2,
                  label="float (same training)" if i == 0 else None)
    ax.set_xticks(list(xs), [r["name"] for r in rows], fontsize=8)
    low = min(min(r["integer"], r["mcu_acc"], r["float"]) for r in rows)
    ax.set_ylim(low - 1, max(r["float"] for r in rows) + 0.5)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{rows[0]['run'].inputs} test images on the emulated MCU", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=110)
    names.append("accuracy.png")
    # The device's confusion matrix (QAT int8 on the M4).
    n = len(device_run.predictions)
    matrix = torch.zeros(10, 10, dtype=torch.int64)
    for t, p in zip(labels[:n].tolist(), device_run.predictions):
        matrix[t, p] += 1
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    ax.imshow(matrix.numpy(), cmap="Blues")
    for i in range(10):
        for j in range(10):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(10), CLASSES, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(10), [f"{c} ({100.0 * matrix[i, i] / max(1, matrix[i].sum()):.0f} %)"
                              for i, c in enumerate(CLASSES)], fontsize=8)
    ax.set_xlabel("predicted on the device")
    ax.set_ylabel("true class (per-class accuracy)")
    ax.set_title(f"QAT int8 on the {device_run.target}: {n} test images, {device_run.accuracy:.2f} %", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    names.append("confusion.png")
    # Per-layer SQNR of each export.
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for r in rows:
        layers = [layer for layer in r["report"]["layers"] if layer["sqnr_db"] is not None]
        ax.plot([layer["name"] for layer in layers], [layer["sqnr_db"] for layer in layers], "o-", label=r["name"])
    ax.set_ylabel("SQNR of integer output (dB)")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sqnr.png", dpi=110)
    names.append("sqnr.png")
    # Weights and activations of the QAT int8 model with the chosen ranges.
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: inputs.setdefault(n, a[0].detach()))
             for n, m in frozen_int8.named_modules() if isinstance(m, mcuq.FixedFakeQuantize)]
    with torch.no_grad():
        frozen_int8(calibration[0])
    for h in hooks:
        h.remove()
    quantizers = dict(frozen_int8.named_modules())
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    weight_name = next(n for n in quantizers if n.endswith("weight_fake_quant") and "conv2" in n)
    conv2 = quantizers[weight_name.rsplit(".", 1)[0]]
    weights = conv2.conv.weight.detach() if hasattr(conv2, "conv") else conv2.layer.weight.detach()
    wq = quantizers[weight_name]
    axes[0].hist(weights.flatten().numpy(), bins=80, color="tab:blue")
    channel_range = (wq.scale.max() * wq.quant_max).item()
    axes[0].axvline(-channel_range, color="r", lw=1)
    axes[0].axvline(channel_range, color="r", lw=1)
    axes[0].set_title("conv2 weights (widest channel range)", fontsize=9)
    for ax, name in zip(axes[1:], [n for n in inputs if n.startswith("activation")][1:3]):
        q = quantizers[name]
        lo = ((q.quant_min - q.zero_point) * q.scale).item()
        hi = ((q.quant_max - q.zero_point) * q.scale).item()
        ax.hist(inputs[name].flatten().numpy(), bins=80, color="tab:green", log=True)
        ax.axvline(lo, color="r", lw=1)
        ax.axvline(hi, color="r", lw=1)
        ax.set_title(f"{name} input, range [{lo:.2f}, {hi:.2f}]", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "ranges.png", dpi=110)
    names.append("ranges.png")
    plt.close("all")
    return names


def counts(run) -> str:
    return f"{run.count_min:,} / {run.count_median:,} / {run.count_max:,} {run.unit}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "build" / "demo", help="output folder")
    parser.add_argument("--images", type=int, default=10000,
                        help="test images streamed through the M4 (every preset) and the AVR (default: all 10000)")
    parser.add_argument("--core-images", type=int, default=1000,
                        help="test images streamed through the M0, M3, M7 and RV32 (QAT int8)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="emulator processes in parallel")
    parser.add_argument("--quick", action="store_true", help="train on 12800 images, one epoch (for tests)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to train (default: cuda when available)")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    limit = 12800 if args.quick else None
    epochs = 1 if args.quick else EPOCHS
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    x, xt = normalized(x), normalized(xt)
    calibration = [xb for xb, _ in batches(x, y, 256, 2560)]
    n_device = min(args.images, xt.shape[0])
    n_cores = min(args.core_images, xt.shape[0])
    tag = "quick" if args.quick else f"{epochs}ep"
    stream = dict(jobs=args.jobs)

    steps = tqdm(total=4 + len(PRESETS) + 2, desc="demo", unit="step")
    cnn, cached = cached_float(lambda: SmallCnn(CNN_CHANNELS), out / "cache" / f"cnn{CNN_CHANNELS[0]}x"
                               f"{CNN_CHANNELS[1]}-{tag}.pt", x, y, epochs, limit, "float CNN epoch")
    float_acc = accuracy(cnn.eval(), xt, yt)
    steps.update()
    # QAT fine-tunes for one more epoch: the fair float baseline does too.
    longer = copy.deepcopy(cnn)
    torch.manual_seed(1)
    train(longer, x, y, 1, "float CNN, same fine-tuning", limit, lr=FINE_TUNE_LR)
    longer_acc = accuracy(longer.eval(), xt, yt)
    steps.update()
    mlp, _ = cached_float(TinyMlp, out / "cache" / f"mlp-{tag}.pt", x, y, epochs, limit, "float MLP epoch")
    steps.update()

    rows, frozen_models = [], {}
    for name, preset, qat in PRESETS:
        steps.set_postfix_str(name)
        torch.manual_seed(1)
        frozen = quantize(cnn, preset, qat, x, y, calibration, limit, name)
        frozen_models[name] = frozen
        exported = mcuq.export(frozen, [1, 1, 28, 28], sample=calibration[0][:64])
        directory = out / name.lower().replace(" ", "_")
        exported.write(directory, "fmnist")
        run = evaluate_on_target("cortex-m4", exported, directory, "fmnist", xt[:n_device], yt[:n_device], **stream)
        rows.append(dict(name=name, float=longer_acc if qat else float_acc, fake_quant=accuracy(frozen.eval(), xt, yt),
                         integer=accuracy(exported, xt, yt), run=run, mcu_acc=run.accuracy, exported=exported,
                         report=exported.report("fmnist"), target="cortex-m4", model=cnn))
        steps.update()

    # The QAT int8 CNN on the other cores.
    qat_int8 = next(r for r in rows if r["name"] == "QAT int8")
    per_target = {"cortex-m4": qat_int8["run"]}
    for target in ("cortex-m0", "cortex-m3", "cortex-m7", "rv32"):
        steps.set_postfix_str(target)
        per_target[target] = evaluate_on_target(target, qat_int8["exported"], out / "qat_int8", "fmnist",
                                                xt[:n_cores], yt[:n_cores], **stream)
    steps.update()

    # The ATmega328P: the MLP, QAT int8.
    steps.set_postfix_str("atmega328p")
    torch.manual_seed(1)
    mlp_longer = copy.deepcopy(mlp)  # the float baseline gets the QAT epoch too
    train(mlp_longer, x, y, 1, "float MLP, same fine-tuning", limit, lr=FINE_TUNE_LR)
    torch.manual_seed(1)
    mlp_frozen = quantize(mlp, "int8", True, x, y, calibration, limit, "QAT int8 MLP")
    mlp_exported = mcuq.export(mlp_frozen, [1, 1, 28, 28], sample=calibration[0][:64])
    mlp_exported.write(out / "mlp_qat_int8", "fmnist_mlp")
    avr = evaluate_on_target("atmega328p", mlp_exported, out / "mlp_qat_int8", "fmnist_mlp", xt[:n_device],
                             yt[:n_device], **stream)
    mlp_row = dict(name="MLP QAT int8 (AVR)", float=accuracy(mlp_longer.eval(), xt, yt),
                   fake_quant=accuracy(mlp_frozen.eval(), xt, yt), integer=accuracy(mlp_exported, xt, yt), run=avr,
                   mcu_acc=avr.accuracy, exported=mlp_exported, target="atmega328p", model=mlp)
    steps.update()
    figures = plots(out, rows, frozen_models["QAT int8"], calibration, qat_int8["run"], yt)
    steps.update()
    steps.close()

    # ---- the table ------------------------------------------------------------
    training = "quick: 12800 training images, 1 epoch" if args.quick else f"full training set, {epochs} epochs"
    lines = [
        f"Fashion-MNIST, {xt.shape[0]} test images (float CNN {CNN_CHANNELS[0]}-{CNN_CHANNELS[1]} channels, {training}"
        f"{', from cache' if cached else ''}). On-MCU: the first {n_device} test images streamed through the "
        f"emulated device (host in the loop); MCU = host: inputs whose every output level equals the host "
        f"integer reference's.",
        "",
        "| model | float % (same training) | fake-quant % | integer % (host) | on-MCU % (target) | MCU = host | "
        "vs float (integer) | model bytes (vs float32) | arena B |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows + [mlp_row]:
        e, run = r["exported"], r["run"]
        lines.append(
            f"| {r['name']} | {r['float']:.2f} | {r['fake_quant']:.2f} | {r['integer']:.2f} | "
            f"{run.accuracy:.2f} ({r['target']}, {run.inputs} images) | "
            f"{'yes' if run.passed else 'NO'}: {run.matches}/{run.inputs} | {r['integer'] - r['float']:+.2f} pp | "
            f"{e.flash_bytes} ({e.flash_bytes / float_bytes(r['model']):.2f}x of {float_bytes(r['model'])}) | "
            f"{e.arena_bytes} |")
    lines += ["", "W4A8 weights are packed two per byte; nu4 / nu3 weights are 4- / 3-bit indices into an int8 "
              "codebook of 16 / 8 levels per output channel (conv1's 9 weights per channel stay int8, which is "
              "smaller). Float: the CNN as trained (PTQ) or after the same extra epoch the QAT models fine-tune for.",
              "", "| target | model | images | MCU = host | flash B (firmware: model + runtime + harness) | "
              "RAM B: static + stack peak | per inference: min / median / max |",
              "|---|---|---|---|---|---|---|"]
    for target, run in list(per_target.items()) + [("atmega328p", avr)]:
        model = "MLP QAT int8" if target == "atmega328p" else "CNN QAT int8"
        lines.append(f"| {TARGETS[target].description} | {model} | {run.inputs} | "
                     f"{'yes' if run.passed else 'NO'}: {run.matches}/{run.inputs} | {run.flash_bytes} | "
                     f"{run.ram_bytes} + {run.stack_bytes} | {counts(run)} |")
    elapsed = time.perf_counter() - start
    runs = [r["run"] for r in rows] + list(per_target.values()) + [avr]
    ok = all(run.passed for run in runs)
    total = sum(run.inputs for run in runs)
    lines += ["", "Stack peaks: painted stack, measured on every target. Instructions: QEMU's executed "
              "instructions (our TCG plugin); cycles: simavr, exact.", "",
              f"Total time {elapsed:.0f} s. " + (f"MCU = host: every output level of all {total:,} streamed "
                                                 "inferences on every emulated MCU equals the host integer "
                                                 "reference's." if ok else
                                                 "SOME MCU RUNS FAILED: see the rows marked NO and the firmware "
                                                 "output in the folders above.")]
    table = "\n".join(lines)
    print(table)
    report = ["# mcuq demo report", "", table, ""] + [f"![{n}]({n})" for n in figures]
    report += ["", "Per-layer export reports: `*/report.json`; generated C: `*/fmnist.{h,c}`."]
    (out / "report.md").write_text("\n".join(report) + "\n")
    (out / "results.json").write_text(json.dumps(
        {r["name"]: {**{k: r[k] for k in ("float", "fake_quant", "integer", "mcu_acc")},
                     "mcu_images": r["run"].inputs, "mcu_equals_host": r["run"].matches,
                     "count_median": r["run"].count_median, "unit": r["run"].unit}
         for r in rows + [mlp_row]}, indent=2))
    print(f"report: {out / 'report.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
