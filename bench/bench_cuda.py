"""mcuq's CUDA kernels against the GPU's bandwidth ceiling and PyTorch's own
ops, side by side in one run (issue 17).

For each op on one large float32 tensor: the median time of --repeat runs
(CUDA events, after warm-up), its effective bandwidth (bytes read + written
once), and that as a share of a preallocated device-to-device ``copy_`` of
the same tensor (the ceiling). Then the fused observe-and-fake-quantize
against torch.ao's observer followed by torch's fake-quantize, and a QAT
epoch of the demo's CNN on the CPU and on the GPU.

Run: python bench/bench_cuda.py [--numel 2**27] [--repeat 20] [--qat-images 20000]
"""

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ops"))
import mcuq  # noqa: E402

OPS = torch.ops.mcuq


def timed(fn, repeat):
    """Median milliseconds of fn() over `repeat` runs, after 3 warm-ups."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def row(name, ms, nbytes, copy_gbs, torch_ms=None):
    gbs = nbytes / ms / 1e6
    vs_torch = f"{torch_ms / ms:9.2f}x" if torch_ms else " " * 10
    print(f"| {name:<44} | {ms:8.3f} | {gbs:8.0f} | {100 * gbs / copy_gbs:6.1f} % | {vs_torch} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numel", type=lambda s: int(eval(s)), default=2**27)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--qat-images", type=int, default=20000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_cuda: no CUDA device")
    dev = torch.device("cuda")
    n, c, r = args.numel, args.channels, args.repeat
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, {n} float32 elements "
          f"({4 * n / 2**20:.0f} MiB), median of {r}")
    x = torch.randn(n, device=dev) * 3
    out = torch.empty_like(x)
    nbytes = 4 * n
    copy_ms = timed(lambda: out.copy_(x), r)
    copy_gbs = 2 * nbytes / copy_ms / 1e6
    print(f"\n| {'op':<44} | {'ms':>8} | {'GB/s':>8} | {'of copy_':>8} | {'vs torch':>10} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 12}|")
    row("copy_ (device to device)", copy_ms, 2 * nbytes, copy_gbs)

    # fake_quantize per tensor
    s, z = torch.tensor([0.05], device=dev), torch.tensor([3], dtype=torch.int32, device=dev)
    torch_pt = timed(lambda: torch.fake_quantize_per_tensor_affine(x, s, z, -128, 127), r)
    row("torch.fake_quantize_per_tensor_affine", torch_pt, 2 * nbytes, copy_gbs)
    ours = timed(lambda: OPS.fake_quantize(x, s, z, -128, 127), r)
    row("mcuq fake_quantize, per tensor", ours, 2 * nbytes, copy_gbs, torch_pt)

    # per channel, axis 0 and the innermost axis
    xc = x.view(c, -1)
    sc = torch.rand(c, device=dev) * 0.1 + 0.01
    zc = torch.randint(-10, 10, (c,), dtype=torch.int32, device=dev)
    torch_pc = timed(lambda: torch.fake_quantize_per_channel_affine(xc, sc, zc, 0, -128, 127), r)
    row(f"torch.fake_quantize_per_channel_affine ({c} ch)", torch_pc, 2 * nbytes, copy_gbs)
    ours = timed(lambda: OPS.fake_quantize(xc, sc, zc, -128, 127, 0), r)
    row(f"mcuq fake_quantize, per channel (axis 0)", ours, 2 * nbytes, copy_gbs, torch_pc)
    xl = x.view(-1, c)
    torch_pl = timed(lambda: torch.fake_quantize_per_channel_affine(xl, sc, zc, 1, -128, 127), r)
    ours = timed(lambda: OPS.fake_quantize(xl, sc, zc, -128, 127, 1), r)
    row(f"mcuq fake_quantize, per channel (last axis)", ours, 2 * nbytes, copy_gbs, torch_pl)

    # gradients
    g = torch.randn_like(x)
    ours = timed(lambda: OPS._fake_quantize_backward(g, x, s, z.float(), -128, 127, 0, 1, False, False), r)
    row("mcuq fake_quantize backward (STE)", ours, 3 * nbytes, copy_gbs)
    ours = timed(lambda: OPS._fake_quantize_backward(g, x, s, z.float(), -128, 127, 0, 1, True, True), r)
    row("mcuq fake_quantize backward (LSQ)", ours, 3 * nbytes, copy_gbs)

    try:
        observers(x, xc, c, r, copy_gbs, nbytes, dev)
    except Exception as e:  # torch.ao's quantization may be gone in a later torch
        print(f"(observer comparison failed: {type(e).__name__}: {e})")
    qat_epochs(args.qat_images)


def observers(x, xc, c, r, copy_gbs, nbytes, dev):
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

    ao = MinMaxObserver().to(dev)
    torch_obs = timed(lambda: ao(x), r)
    row("torch.ao MinMaxObserver", torch_obs, nbytes, copy_gbs)
    state = [torch.full((1,), float("inf"), device=dev), torch.full((1,), -float("inf"), device=dev),
             torch.zeros(1, dtype=torch.int64, device=dev)]
    ours = timed(lambda: OPS.observe_minmax_(x, *state, None, 0, 1), r)
    row("mcuq observe_minmax_, per tensor", ours, nbytes, copy_gbs, torch_obs)
    aoc = PerChannelMinMaxObserver(ch_axis=0).to(dev)
    torch_obc = timed(lambda: aoc(xc), r)
    row(f"torch.ao PerChannelMinMaxObserver ({c} ch)", torch_obc, nbytes, copy_gbs)
    state_c = [torch.full((c,), float("inf"), device=dev), torch.full((c,), -float("inf"), device=dev),
               torch.zeros(1, dtype=torch.int64, device=dev)]
    ours = timed(lambda: OPS.observe_minmax_(xc, *state_c, 0.01, 0, 1), r)
    row("mcuq observe_minmax_, per channel, EMA", ours, nbytes, copy_gbs, torch_obc)

    # fused observe + fake-quantize vs torch.ao's observer then torch's fake-quantize
    def torch_unfused():
        ao(x)
        scale, zp = ao.calculate_qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)

    torch_fused_ms = timed(torch_unfused, r)
    row("torch.ao observer + fake_quantize", torch_fused_ms, 3 * nbytes, copy_gbs)
    fstate = [*[t.clone() for t in state], torch.ones(1, device=dev), torch.zeros(1, dtype=torch.int32, device=dev)]
    on = torch.ones(1, dtype=torch.uint8, device=dev)
    ours = timed(lambda: OPS.observe_fake_quantize(x, *fstate, on, on, 0.01, -128, 127, False, False, 0, 1), r)
    row("mcuq observe_fake_quantize (fused)", ours, 3 * nbytes, copy_gbs, torch_fused_ms)
    tfq = torch.ao.quantization.FusedMovingAvgObsFakeQuantize().to(dev)
    tfq_ms = timed(lambda: tfq(x), r)
    row("torch FusedMovingAvgObsFakeQuantize", tfq_ms, 3 * nbytes, copy_gbs)

    # histogram observer, counts on the GPU
    hist = [torch.zeros(2048, dtype=torch.int64, device=dev), torch.zeros(2, dtype=torch.float64, device=dev),
            torch.full((1,), float("inf"), device=dev), torch.full((1,), -float("inf"), device=dev),
            torch.zeros(1, dtype=torch.int64, device=dev)]
    sums = torch.zeros(2048, dtype=torch.float64, device=dev)
    ours = timed(lambda: OPS.observe_histogram_(x, *hist, 0, sums), r)
    row("mcuq observe_histogram_ (2048 bins, sums)", ours, nbytes, copy_gbs)
    xs = x[: 2**22].cpu()
    hist_cpu = [t.cpu() for t in hist]
    t0 = time.perf_counter()
    OPS.observe_histogram_(xs, *hist_cpu, 0, sums.cpu())
    cpu_ms = (time.perf_counter() - t0) * 1e3 * (x.numel() / xs.numel())
    print(f"(observe_histogram_ on the CPU, {torch.get_num_threads()} threads, scaled to the same size: {cpu_ms:.1f} ms)")


def qat_epochs(images):
    """Seconds per QAT epoch of `images` images of the demo's CNN, int8 preset."""
    sys.path.insert(0, str(ROOT / "examples" / "python"))
    from fashion_mnist import SmallCnn

    from mcuq.data import fashion_mnist, normalized

    try:
        tx, ty = fashion_mnist("train")
    except FileNotFoundError as e:
        print(f"\n(QAT epoch skipped: {e})")
        return
    tx, ty = normalized(tx[:images]), ty[:images]
    for batch in (128, 1024):
        qat_epoch(SmallCnn, tx, ty, images, batch)


def qat_epoch(SmallCnn, tx, ty, images, batch):
    print(f"\nQAT epoch of the demo CNN (int8 preset, {images} images, batch {batch}, "
          f"CPU: {torch.get_num_threads()} threads):")
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = mcuq.prepare(SmallCnn(), mcuq.presets.get("int8"), qat=True).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xs, ys = tx.to(device), ty.to(device)
        for _ in range(2):  # the second epoch is timed (first: warm-up, allocator)
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(0, images, batch):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xs[i : i + batch]), ys[i : i + batch])
                loss.backward()
                opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        print(f"  {device:>4}: {seconds:6.2f} s ({images / seconds:8.0f} images/s)")


if __name__ == "__main__":
    main()
