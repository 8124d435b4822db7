"""The levels each codebook generator gives on a real weight histogram: the
second conv of the demo's trained float Fashion-MNIST CNN (conv2, 32 x 8 x 3
x 3 = 2304 weights, one per-tensor codebook), quantized to --bits with
symmetric max-abs uniform levels and with each method of mcuq.fit_levels
(kmeans, quantile, lloyd_max_gaussian, lloyd_max_laplace, pow2, apot).
Draws one panel per generator (the histogram, its levels as vertical lines,
the MSE in the title) into --out and prints the MSE table.

The CNN comes from the demo's cache (./scripts/demo.sh leaves it) or is
trained here once, as examples/python/demo.py trains it.

Run: .venv/bin/python examples/python/plot_levels.py [--out docs/images/levels.png] [--bits 4]
     [--demo-out build/demo] [--quick]
"""

import argparse
import sys
from pathlib import Path

import torch

import mcuq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import demo  # noqa: E402
from fashion_mnist import SmallCnn  # noqa: E402

LAYER = "conv2"
METHODS = ["kmeans", "quantile", "lloyd_max_gaussian", "lloyd_max_laplace", "pow2", "apot"]


def float_cnn(demo_out: Path, quick: bool):
    """The demo's float CNN: from its cache, else trained (and cached) as the
    demo trains it. The data set is only read when training is needed."""
    channels = demo.CNN_CHANNELS
    limit, epochs = (12800, 1) if quick else (None, demo.EPOCHS)  # the demo's --quick
    tag = "quick" if quick else f"{epochs}ep"
    path = demo_out / "cache" / f"cnn{channels[0]}x{channels[1]}-{tag}.pt"
    x = y = None
    if not path.is_file():
        from mcuq.data import fashion_mnist, normalized

        torch.manual_seed(0)
        x, y = fashion_mnist("train")
        x = normalized(x)
    model, _ = demo.cached_float(lambda: SmallCnn(channels), path, x, y, epochs, limit, "float CNN epoch")
    return model


def codebooks(w: torch.Tensor, bits: int):
    """[(name, levels, thresholds)]: the uniform grid first (the baseline),
    then each generator, all per tensor."""
    # Symmetric max-abs grid, as a uniform int`bits` weight quantizer without
    # clipping search would choose: q in [-2^(b-1), 2^(b-1) - 1], zero point 0.
    qmax = 2 ** (bits - 1) - 1
    scale = (w.abs().max() / qmax).reshape(1)
    out = [("uniform", *mcuq.uniform_levels(scale, torch.zeros(1, dtype=torch.int32), -qmax - 1, qmax))]
    out += [(m, *mcuq.fit_levels(w, bits, m)) for m in METHODS]
    return out


def plot(w, rows, out: Path, bits: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 2 x 4 panels at 100 dpi: 1000 px wide, readable at README width.
    fig, axes = plt.subplots(2, 4, figsize=(10, 4.6), sharex=True, sharey=True)
    data = w.flatten().numpy()
    for ax, (name, levels, mse, ratio) in zip(axes.flat, rows):
        ax.hist(data, bins=120, color="#b8cbe0")
        # The levels actually used: duplicates (e.g. an empty cluster) collapse.
        for level in levels.unique().tolist():
            ax.axvline(level, color="#c0392b", lw=0.8)
        ax.set_title(f"{name}\nMSE {mse:.2e} ({ratio:.2f}x uniform)", fontsize=8.5)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("weight", fontsize=8)
    axes.flat[-1].axis("off")
    axes.flat[-1].text(0.02, 0.5, f"{LAYER}.weight {list(w.shape)}\n{w.numel()} weights of the demo's\n"
                       f"float Fashion-MNIST CNN,\none {bits}-bit codebook per tensor;\n"
                       f"red: the levels", fontsize=8.5, va="center", transform=axes.flat[-1].transAxes)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "levels.png", help="PNG to write")
    parser.add_argument("--bits", type=int, default=4, help="bits per weight (default 4: 16 levels)")
    parser.add_argument("--demo-out", type=Path, default=ROOT / "build" / "demo", help="the demo's folder (cache)")
    parser.add_argument("--quick", action="store_true", help="the demo's quick CNN (one epoch; tests)")
    args = parser.parse_args(argv)

    w = getattr(float_cnn(args.demo_out, args.quick), LAYER).weight.detach().float()
    rows = []  # [name, levels, MSE, MSE / uniform's]
    for name, levels, thresholds in codebooks(w, args.bits):
        # Each codebook's own thresholds: quantile's are not the midpoints.
        mse = (mcuq.fake_quantize_levels(w, levels, thresholds) - w).pow(2).mean().item()
        rows.append([name, levels, mse, mse / rows[0][2] if rows else 1.0])

    print(f"{LAYER}.weight {list(w.shape)}, {args.bits}-bit, one codebook per tensor")
    print(f"  {'method':<20}{'levels':>7}{'MSE':>11}{'MSE/uniform':>13}")
    for name, levels, mse, ratio in rows:
        print(f"  {name:<20}{levels.numel():>7}{mse:>11.3e}{ratio:>13.3f}")
    plot(w, rows, args.out, args.bits)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
