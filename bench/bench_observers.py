#!/usr/bin/env python3
"""Observers: mcuq against torch.ao, side by side in one run (medians).

1. QAT hot path, forward + backward: mcuq.FakeQuantize (one fused op:
   EMA min/max, qparams, fake-quantize) vs
   torch.ao.quantization.FakeQuantize(MovingAverageMinMaxObserver), uint8
   affine per-tensor on an NCHW activation.
2. Calibration with a histogram: observing N batches, then choosing the range:
   mcuq.HistogramObserver(method=...) vs torch.ao's HistogramObserver (both
   2048 bins), with the quantization MSE each reached on the calibration data.

Run: .venv/bin/python bench/bench_observers.py [--numel N] [--batches B] [--repeats R]
Speed is reported as time ratios (mcuq / torch; below 1 = mcuq faster), never
asserted in tests.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.ao.quantization import FakeQuantize as TorchFakeQuantize
from torch.ao.quantization import HistogramObserver as TorchHistogramObserver
from torch.ao.quantization import MovingAverageMinMaxObserver

try:
    import mcuq
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))
    import mcuq


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def fused_qat(numel: int, repeats: int) -> None:
    channels = 64
    side = max(1, int((numel // (channels * 16)) ** 0.5))
    x = torch.randn(16, channels, side, side, requires_grad=True)
    grad = torch.ones_like(x)
    ours = mcuq.FakeQuantize(quant_min=0, quant_max=255)
    theirs = TorchFakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255)

    def step(module):
        def run():
            x.grad = None
            module(x).backward(grad)
        return run

    t_ours = median_ms(step(ours), repeats)
    t_theirs = median_ms(step(theirs), repeats)
    same = torch.equal(ours(x.detach()), theirs(x.detach()))
    print(f"1. fused observe + fake-quantize, fwd+bwd, {x.numel()} float32 ({tuple(x.shape)}), median of {repeats}")
    print(f"   mcuq.FakeQuantize        {t_ours:9.2f} ms")
    print(f"   torch.ao FakeQuantize    {t_theirs:9.2f} ms")
    print(f"   ratio mcuq/torch         {t_ours / t_theirs:9.3f}   (outputs identical: {same})")


def quantization_mse(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> float:
    xq = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), qmin, qmax)
    return float((xq - x).pow(2).mean())


def histogram(batches: int, batch_numel: int, repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    # Heavy-tailed, like activations before a saturating layer: Student-t (3 dof).
    chi2 = torch.distributions.Chi2(torch.tensor(3.0))
    torch.manual_seed(0)
    data = [torch.randn(batch_numel, generator=gen) / (chi2.sample((batch_numel,)) / 3).sqrt() for _ in range(batches)]
    everything = torch.cat(data)
    print(f"\n2. histogram calibration: {batches} batches of {batch_numel} Student-t(3) values, 2048 bins, uint8 affine, median of {repeats}")
    print(f"   {'observer':<34}{'observe ms':>12}{'qparams ms':>12}{'MSE':>14}")

    def observe_then_choose(make_observer):
        obs = make_observer()
        t = time.perf_counter()
        for b in data:
            obs(b)
        t_obs = time.perf_counter() - t
        t = time.perf_counter()
        scale, zp = obs.calculate_qparams()
        return t_obs, time.perf_counter() - t, scale, zp

    rows = [("torch.ao HistogramObserver", lambda: observe_then_choose(lambda: TorchHistogramObserver(bins=2048)))] + [
        (f"mcuq.HistogramObserver({m!r})", lambda m=m: observe_then_choose(lambda: mcuq.HistogramObserver(bins=2048, method=m)))
        for m in ("mse", "entropy", "percentile", "minmax")
    ]
    base = None
    for name, run in rows:
        results = [run() for _ in range(repeats)]
        t_obs = statistics.median(r[0] for r in results) * 1e3
        t_q = statistics.median(r[1] for r in results) * 1e3
        mse = quantization_mse(everything, results[0][2], results[0][3], 0, 255)
        base = base or (t_obs + t_q, mse)
        print(f"   {name:<34}{t_obs:12.2f}{t_q:12.2f}{mse:14.4e}   time x{(t_obs + t_q) / base[0]:.3f}, MSE x{mse / base[1]:.3f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numel", type=int, default=4 * 2**20, help="activation size for the QAT step")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-numel", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    fused_qat(args.numel, args.repeats)
    histogram(args.batches, args.batch_numel, max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
