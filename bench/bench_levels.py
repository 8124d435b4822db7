"""Non-uniform codebooks against uniform quantization: mean squared error of
each generator of mcuq.fit_levels at 3 and 4 bits on a Gaussian and a
Laplace sample and on the demo CNN's trained weights (per output channel),
beside symmetric uniform quantization with its MSE-best clipping (per
channel for the weights): the fair uniform baseline.

    .venv/bin/python bench/bench_levels.py [--weights build/demo/cache/cnn8x32-12ep.pt]

The weights come from the demo's cache (./scripts/demo.sh leaves it); without
it the laws only. Figures are exact for a given seed; this is a benchmark,
not a test (tests/python/test_levels.py asserts the laws' ordering).
"""

import argparse
import math
import sys
from pathlib import Path

import torch

import mcuq

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["kmeans", "quantile", "lloyd_max_gaussian", "lloyd_max_laplace", "pow2", "apot"]


def laplace(n: int, g: torch.Generator) -> torch.Tensor:
    """Laplace(0, 1) samples from a seeded generator (inverse CDF)."""
    u = torch.rand(n, generator=g, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()


def uniform_mse(w: torch.Tensor, bits: int) -> float:
    """Sum of squared errors of symmetric uniform quantization of one row,
    clipping searched over max|w| 2^(-k/32)."""
    qmax = 2 ** (bits - 1) - 1
    zero = torch.zeros(1, dtype=torch.int32)
    best = math.inf
    for k in range(192):
        scale = torch.tensor([max(w.abs().max().item(), 1e-30) * 2 ** (-k / 32) / qmax])
        best = min(best, (mcuq.fake_quantize(w, scale, zero, -qmax - 1, qmax) - w).pow(2).sum().item())
    return best


def row_errors(rows: torch.Tensor, bits: int) -> dict:
    """Mean squared error over all rows (each row its own codebook)."""
    n = rows.numel()
    errors = {"uniform": sum(uniform_mse(r, bits) for r in rows) / n}
    for method in METHODS:
        levels, _ = mcuq.fit_levels(rows, bits, method, axis=0)
        errors[method] = (mcuq.fake_quantize_levels(rows, levels, axis=0) - rows).pow(2).sum().item() / n
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=ROOT / "build" / "demo" / "cache" / "cnn8x32-12ep.pt")
    parser.add_argument("--samples", type=int, default=20000)
    args = parser.parse_args(argv)
    g = torch.Generator().manual_seed(11)
    sets = {"Gaussian": torch.randn(1, args.samples, generator=g),
            "Laplace": laplace(args.samples, g)[None]}
    if args.weights.is_file():
        state = torch.load(args.weights)
        for name in ("conv2.weight", "fc.weight"):
            w = state[name]
            sets[f"demo CNN {name} {list(w.shape)}"] = w.reshape(w.shape[0], -1)
    else:
        print(f"(no {args.weights}: run ./scripts/demo.sh for the real weights)")
    print("| data | bits | uniform (best clip) | " + " | ".join(METHODS) + " | best / uniform |")
    print("|---|---|---|" + "---|" * len(METHODS) + "---|")
    for name, rows in sets.items():
        for bits in (3, 4):
            e = row_errors(rows, bits)
            best = min(METHODS, key=e.get)
            scale = e["uniform"]
            print(f"| {name} | {bits} | {scale:.4g} | " + " | ".join(f"{e[m]:.4g}" for m in METHODS)
                  + f" | {e[best] / scale:.2f} ({best}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
