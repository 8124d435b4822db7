"""The main job, end to end: Fashion-MNIST from a float CNN to integer C
running on emulated microcontrollers, bit-exact with the host.

  1. train the example CNN in float (cached in the output folder),
  2. quantize it four ways: PTQ int8, QAT int8, QAT W4A8, QAT power-of-two,
  3. export each (mcuq.export) and measure its integer accuracy over the full
     test set with the integer reference,
  4. run sample test images on an emulated Cortex-M4 (QEMU), the QAT int8
     model also on the M0, M3, M7 and RISC-V RV32, and a small MLP on the AVR ATmega328P
     (simavr): the CNN's 8.6 KB of activations do not fit its 2 KB of RAM,
  5. print one table and write a report (Markdown + PNG plots).

Run: .venv/bin/python examples/python/demo.py [--out build/demo] [--images 16] [--quick] [--device cpu|cuda]
(training runs on --device, cuda when available; quantization, export and the
emulated MCUs on the CPU)
"""

import argparse
import copy
import json
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
from mcu import TARGETS, run_on_target  # noqa: E402

PRESETS = [  # (row, preset, QAT?)
    ("PTQ int8", "int8", False),
    ("QAT int8", "int8", True),
    ("QAT W4A8", "w4a8", True),
    ("QAT pow2", "pow2", True),
]


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


def train_epoch(model, x, y, lr, desc, limit=None):
    """One epoch on DEVICE; the model is back on the CPU afterwards."""
    model.to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = x.shape[0] if limit is None else min(limit, x.shape[0])
    for xb, yb in tqdm(list(batches(x, y, 64, n)), desc=desc, unit="batch", leave=False):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb.to(DEVICE)), yb.to(DEVICE)).backward()
        opt.step()
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
    for epoch in range(epochs):
        train_epoch(model, x, y, 3e-3 if epoch == 0 else 5e-4, f"{desc} epoch {epoch + 1}", limit)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model, False


def quantize(model, preset, qat, x, y, calibration, limit, desc):
    prepared = mcuq.prepare(copy.deepcopy(model).eval(), mcuq.presets.get(preset), qat=qat, freeze_bn_step=200)
    if qat:
        train_epoch(prepared, x, y, 5e-4, desc, limit)
    else:
        mcuq.calibrate(prepared, calibration, progress=False)
    return mcuq.freeze(prepared)


def passed(run) -> bool:
    """The firmware ran every input, bit-exact, exited 0 and was counted."""
    return (run.exit_code == 0 and run.bit_exact == run.vectors and len(run.counts) == run.vectors
            and min(run.counts) > 0 and not run.stack_overflow)


def sample_accuracy(run, labels) -> float:
    """Accuracy of the classes the MCU printed for the sampled images."""
    return 100.0 * sum(int(c == t) for c, t in zip(run.classes, labels.tolist())) / len(labels)


def float_bytes(model) -> int:
    return 4 * sum(p.numel() for p in model.parameters())


def plots(out: Path, rows, frozen_int8, calibration) -> list:
    """PNG plots for the report; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # Accuracy per preset.
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [r["name"] for r in rows]
    width = 0.38
    ax.bar([i - width / 2 for i in range(len(rows))], [r["fake_quant"] for r in rows], width, label="fake-quant")
    ax.bar([i + width / 2 for i in range(len(rows))], [r["integer"] for r in rows], width, label="integer (C)")
    ax.axhline(rows[0]["float"], color="k", lw=1, ls="--", label="float")
    ax.set_xticks(range(len(rows)), labels)
    ax.set_ylim(min(r["integer"] for r in rows) - 3, max(r["fake_quant"] for r in rows) + 1.5)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=110)
    names.append("accuracy.png")
    # Per-layer SQNR of each export.
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, r in enumerate(rows):
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "build" / "demo", help="output folder")
    parser.add_argument("--images", type=int, default=16, help="test images run on each emulated MCU")
    parser.add_argument("--quick", action="store_true", help="train on 12800 images (for tests)")
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
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    x, xt = normalized(x), normalized(xt)
    calibration = [xb for xb, _ in batches(x, y, 256, 2560)]
    sample, sample_labels = xt[: args.images], yt[: args.images]
    tag = "quick" if args.quick else "full"

    steps = tqdm(total=4 + len(PRESETS) + 2, desc="demo", unit="step")
    cnn, cached = cached_float(SmallCnn, out / "cache" / f"cnn-{tag}.pt", x, y, 1, limit, "float CNN")
    float_acc = accuracy(cnn.eval(), xt, yt)
    steps.update()
    # QAT fine-tunes for one more epoch: the fair float baseline does too.
    longer = copy.deepcopy(cnn)
    torch.manual_seed(1)
    train_epoch(longer, x, y, 5e-4, "float CNN, same fine-tuning", limit)
    longer_acc = accuracy(longer.eval(), xt, yt)
    steps.update()
    mlp, _ = cached_float(TinyMlp, out / "cache" / f"mlp-{tag}.pt", x, y, 2, limit, "float MLP")
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
        fake = accuracy(frozen.eval(), xt, yt)
        integer = accuracy(exported, xt, yt)
        run = run_on_target("cortex-m4", exported, directory, "fmnist", sample)
        reference = exported.integer_reference(exported.quantize_input(sample)).argmax(1).tolist()
        rows.append(dict(name=name, float=longer_acc if qat else float_acc, fake_quant=fake, integer=integer, run=run,
                         mcu_matches=passed(run) and run.classes == reference,
                         mcu_acc=sample_accuracy(run, sample_labels), exported=exported, report=exported.report("fmnist")))
        steps.update()

    # The QAT int8 CNN on the other cores.
    qat_int8 = next(r for r in rows if r["name"] == "QAT int8")
    per_target = {"cortex-m4": qat_int8["run"]}
    for target in ("cortex-m0", "cortex-m3", "cortex-m7", "rv32"):
        steps.set_postfix_str(target)
        per_target[target] = run_on_target(target, qat_int8["exported"], out / "qat_int8", "fmnist", sample)
    steps.update()

    # The ATmega328P: the MLP, QAT int8.
    steps.set_postfix_str("atmega328p")
    torch.manual_seed(1)
    mlp_longer = copy.deepcopy(mlp)  # the float baseline gets the QAT epoch too
    train_epoch(mlp_longer, x, y, 5e-4, "float MLP, same fine-tuning", limit)
    mlp_float_acc = accuracy(mlp_longer.eval(), xt, yt)
    torch.manual_seed(1)
    mlp_frozen = quantize(mlp, "int8", True, x, y, calibration, limit, "QAT int8 MLP")
    mlp_exported = mcuq.export(mlp_frozen, [1, 1, 28, 28], sample=calibration[0][:64])
    mlp_exported.write(out / "mlp_qat_int8", "fmnist_mlp")
    avr = run_on_target("atmega328p", mlp_exported, out / "mlp_qat_int8", "fmnist_mlp", sample)
    mlp_reference = mlp_exported.integer_reference(mlp_exported.quantize_input(sample)).argmax(1).tolist()
    mlp_row = dict(name="MLP QAT int8 (AVR)", float=mlp_float_acc, fake_quant=accuracy(mlp_frozen.eval(), xt, yt),
                   integer=accuracy(mlp_exported, xt, yt), run=avr,
                   mcu_matches=passed(avr) and avr.classes == mlp_reference,
                   mcu_acc=sample_accuracy(avr, sample_labels),
                   exported=mlp_exported)
    steps.update()
    figures = plots(out, rows, frozen_models["QAT int8"], calibration)
    steps.update()
    steps.close()

    # ---- the table ------------------------------------------------------------
    lines = [
        f"Fashion-MNIST, {xt.shape[0]} test images ({'quick: 12800 training images' if args.quick else 'full training set'}"
        f"{', float model from cache' if cached else ''}); on-MCU: the first {len(sample)} test images.",
        "",
        "| model | float % (same training) | fake-quant % | integer % | on-MCU (target) | MCU = host | model bytes "
        "(vs float32) | arena B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, target in [(r, "cortex-m4") for r in rows] + [(mlp_row, "atmega328p")]:
        e = r["exported"]
        model = cnn if target == "cortex-m4" else mlp
        lines.append(
            f"| {r['name']} | {r['float']:.2f} | {r['fake_quant']:.2f} | {r['integer']:.2f} | "
            f"{r['mcu_acc']:.1f} % ({target}) | {'yes' if r['mcu_matches'] else 'NO'} | "
            f"{e.flash_bytes} ({e.flash_bytes / float_bytes(model):.2f}x of {float_bytes(model)}) | {e.arena_bytes} |")
    lines += ["", "W4A8 weights are packed two per byte. Float: the CNN after one "
              "epoch (PTQ) or after the same extra epoch the QAT models fine-tune for.",
              "", "| target | model | flash B (size, without the test images) | RAM B: static + stack peak | per inference |",
              "|---|---|---|---|---|"]
    for target, run in list(per_target.items()) + [("atmega328p", avr)]:
        t = TARGETS[target]
        model, e = ("MLP QAT int8", mlp_exported) if target == "atmega328p" else ("CNN QAT int8", qat_int8["exported"])
        element = 2 if e.activation_dtype == torch.int16 else 1
        images = len(sample) * element * sum(  # the test vectors compiled in
            int(torch.tensor(e.report()[k]["shape"]).prod()) for k in ("input", "output"))
        ram = f"{run.ram_bytes} + {run.stack_bytes}" if run.stack_bytes is not None else f"{run.ram_bytes} + ?"
        lines.append(f"| {t.description} | {model} | {run.flash_bytes - images} | {ram} | "
                     f"{run.count_per_inference:,} {run.unit} |")
    elapsed = time.perf_counter() - start
    ok = all(r["mcu_matches"] for r in rows + [mlp_row]) and all(passed(run) for run in per_target.values())
    lines += ["", "Stack peaks are measured on the AVR (painted stack); QEMU targets report static RAM only.", "",
              f"Total time {elapsed:.0f} s. " + ("MCU = host: every output level of every sampled image on every "
                                                 "emulated MCU equals the host integer reference's." if ok else
                                                 "SOME MCU RUNS FAILED: see the rows marked NO and the firmware "
                                                 "output in the folders above.")]
    table = "\n".join(lines)
    print(table)
    report = ["# mcuq demo report", "", table, ""] + [f"![{n}]({n})" for n in figures]
    report += ["", "Per-layer export reports: `*/report.json`; generated C: `*/fmnist.{h,c}`."]
    (out / "report.md").write_text("\n".join(report) + "\n")
    (out / "results.json").write_text(json.dumps(
        {r["name"]: {k: r[k] for k in ("float", "fake_quant", "integer", "mcu_acc", "mcu_matches")}
         for r in rows + [mlp_row]}, indent=2))
    print(f"report: {out / 'report.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
