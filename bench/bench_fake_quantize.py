#!/usr/bin/env python3
"""Benchmark torch.ops.mcuq.fake_quantize against PyTorch's own ops.

Project rule: speed goals are *ratios*, measured side by side in one run,
against PyTorch's native fake-quantize ops and against a preallocated
``dst.copy_(src)`` (the memory-bandwidth ceiling for a read-one/write-one
elementwise op). Never as timed test assertions. All numbers are medians.

Contenders, per case:
  mcuq   torch.ops.mcuq.fake_quantize
  torch  torch.fake_quantize_per_tensor_affine / _per_channel_affine
         (tensor qparams: scale float32, zero_point int32)
  copy_  forward: y.copy_(x) into a preallocated y;
         fwd+bwd: two copies, y.copy_(x) and gx.copy_(g) (the forward's
         read+write plus the backward's read-grad/write-grad), all preallocated.

GB/s is *nominal* bytes / median time, with nominal bytes = what the copy_
anchor moves (forward 8 B/element, fwd+bwd 16 B/element), so the three GB/s
columns are directly comparable. Both fake-quantize ops allocate fresh outputs
(and torch's backward path also writes a mask), so their time includes that
allocation/page-fault cost while the anchor's does not.

Ratios are time ratios: mcuq/torch < 1 means mcuq is faster; mcuq/copy_ is how
far mcuq is from the bandwidth ceiling (1.0 = at the ceiling).

Run (from the repository root):
  MCUQ_LIBRARY=/path/to/libmcuq.so PYTHONPATH=ops python3 bench/bench_fake_quantize.py
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import mcuq  # noqa: F401  (registers torch.ops.mcuq.*)
except ImportError:  # allow running without PYTHONPATH=ops
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))
    import mcuq  # noqa: F401

QMIN, QMAX = -128, 127  # int8 range
MIN_SAMPLE_S = 2e-3  # small tensors: repeat calls inside one sample up to this


# --------------------------------------------------------------------------
# Cases: tensors + the three contenders as zero-argument callables
# --------------------------------------------------------------------------


def _pow2_rows(numel):
    """A square-ish row count dividing numel (16M -> 4096 x 4096)."""
    return math.gcd(numel, 1 << (numel.bit_length() // 2))


def make_qparams(x, axis, per_channel, gen):
    """Qparams that make a few percent of the values saturate."""
    if not per_channel:
        scale = torch.tensor([3.0 / 127], dtype=torch.float32)
        zero_point = torch.tensor([3], dtype=torch.int32)
        return scale, zero_point
    dims = [d for d in range(x.dim()) if d != axis]
    amax = x.detach().abs().amax(dim=dims).clamp_min(1e-6)
    scale = (0.8 * amax / 127).to(torch.float32)
    zero_point = torch.randint(-8, 9, (x.shape[axis],), generator=gen, dtype=torch.int32)
    return scale, zero_point


def make_case(name, shape, axis, per_channel, backward):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float32)
    scale, zp = make_qparams(x, axis, per_channel, gen)

    def mcuq_fq(inp):
        return torch.ops.mcuq.fake_quantize(inp, scale, zp, QMIN, QMAX, axis, 1)

    if per_channel:
        def torch_fq(inp):
            return torch.fake_quantize_per_channel_affine(inp, scale, zp, axis, QMIN, QMAX)
    else:
        def torch_fq(inp):
            return torch.fake_quantize_per_tensor_affine(inp, scale, zp, QMIN, QMAX)

    y_pre = torch.empty_like(x)  # preallocated destination(s) for the anchor
    g = torch.ones_like(x)  # preallocated upstream gradient
    if backward:
        x.requires_grad_(True)
        gx_pre = torch.empty_like(x)

        # autograd.grad returns the gradient without accumulating into x.grad
        # (accumulation would add an extra read+write pass).
        def fwd_bwd(fq):
            return lambda: torch.autograd.grad(fq(x), x, g)[0]

        def anchor():
            with torch.no_grad():
                y_pre.copy_(x)
                gx_pre.copy_(g)

        fns = {"mcuq": fwd_bwd(mcuq_fq), "torch": fwd_bwd(torch_fq), "copy_": anchor}
        nominal_bytes = 16 * x.numel()
    else:
        fns = {
            "mcuq": lambda: mcuq_fq(x),
            "torch": lambda: torch_fq(x),
            "copy_": lambda: y_pre.copy_(x),
        }
        nominal_bytes = 8 * x.numel()

    return {
        "case": name,
        "shape": list(shape),
        "axis": axis if per_channel else None,
        "backward": backward,
        "nominal_bytes": nominal_bytes,
        "fns": fns,
        "ops": {"mcuq": mcuq_fq, "torch": torch_fq},
        "x": x,
        "g": g,
    }


def build_cases(numel):
    """Yields the cases one at a time, so only one case's tensors are alive."""
    rows = _pow2_rows(numel)
    last = math.gcd(numel, 256)
    for backward in (False, True):
        tag = "fwd+bwd" if backward else "fwd"
        yield make_case(f"per-tensor {tag}", (numel,), 0, False, backward)
        # linear weight [out, in], one scale per output channel
        yield make_case(f"per-channel axis0 {tag}", (rows, numel // rows), 0, True, backward)
        # channels-last activation [N*H*W, C], one scale per channel (last dim)
        yield make_case(f"per-channel last {tag}", (numel // last, last), 1, True, backward)


# --------------------------------------------------------------------------
# Correctness (--check): bit-identical to torch native on the bench tensors
# --------------------------------------------------------------------------


def check_case(case):
    """Forward outputs (and, for fwd+bwd cases, input gradients) must be equal."""
    x, g, ops = case["x"], case["g"], case["ops"]
    with torch.enable_grad():
        ya, yb = ops["mcuq"](x), ops["torch"](x)
        pairs = [("output", ya, yb)]
        if case["backward"]:
            ga = torch.autograd.grad(ya, x, g)[0]
            gb = torch.autograd.grad(yb, x, g)[0]
            pairs.append(("input gradient", ga, gb))
    for what, a, b in pairs:
        if not torch.equal(a, b):
            diff = (a != b).sum().item()
            raise AssertionError(f"{case['case']}: mcuq {what} differs from torch in {diff} elements")


# --------------------------------------------------------------------------
# Timing: warm up, calibrate, then alternate contenders within each repeat
# --------------------------------------------------------------------------


def time_case(case, repeats, warmup):
    fns = case["fns"]
    names = list(fns)
    grad_mode = torch.enable_grad if case["backward"] else torch.no_grad
    inner = {}
    with grad_mode():
        for name in names:  # warm-up; also sizes the inner loop for tiny tensors
            for _ in range(warmup):
                t0 = time.perf_counter()
                fns[name]()
                dt = time.perf_counter() - t0
            inner[name] = max(1, math.ceil(MIN_SAMPLE_S / max(dt, 1e-9)))
        samples = {name: [] for name in names}
        for r in range(repeats):
            # rotate the order every repeat so drift/cache state hits all equally
            for name in names[r % len(names):] + names[: r % len(names)]:
                fn, n = fns[name], inner[name]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - t0) / n)
    out = {}
    for name in names:
        med = statistics.median(samples[name])
        out[name] = {
            "median_ms": med * 1e3,
            "gbps": case["nominal_bytes"] / med / 1e9,
            "calls_per_sample": inner[name],
            "samples_ms": [s * 1e3 for s in samples[name]],
        }
    return out


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(results):
    cols = ["mcuq ms", "torch ms", "copy_ ms", "mcuq GB/s", "torch GB/s", "copy_ GB/s",
            "mcuq/torch", "mcuq/copy_"]
    head = f"{'case':<26} {'shape':>12} " + " ".join(f"{c:>10}" for c in cols)
    print(head)
    print("-" * len(head))
    for r in results:
        c = r["contenders"]
        vals = [c[n]["median_ms"] for n in ("mcuq", "torch", "copy_")]
        vals += [c[n]["gbps"] for n in ("mcuq", "torch", "copy_")]
        vals += [r["ratios"]["mcuq/torch"], r["ratios"]["mcuq/copy_"]]
        shape = "x".join(map(str, r["shape"]))
        print(f"{r['case']:<26} {shape:>12} " + " ".join(f"{v:10.3f}" for v in vals))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--numel", type=int, default=16 * 1024 * 1024, help="elements per tensor (default 16M)")
    p.add_argument("--repeats", type=int, default=21, help="timed samples per contender (median quoted)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per contender first")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    p.add_argument("--check", action="store_true", help="first assert outputs bit-identical to torch")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    header = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "numel": args.numel,
        "dtype": "float32",
        "quant_range": [QMIN, QMAX],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "bytes_note": "GB/s = nominal bytes (fwd 8 B/elem, fwd+bwd 16 B/elem) / median time",
        "anchor_note": "copy_: fwd = y.copy_(x); fwd+bwd = y.copy_(x) + gx.copy_(g); all preallocated",
    }
    print(f"torch {header['torch']} | threads {header['threads']} (cpus {header['cpu_count']}) | "
          f"CPU {header['cpu']}")
    print(f"numel {args.numel} float32, int8 range [{QMIN}, {QMAX}], median of {args.repeats} "
          f"(after {args.warmup} warm-up calls)")
    print(f"anchor {header['anchor_note']}; {header['bytes_note']}")
    print("ratios are time ratios (lower = mcuq faster)\n")

    results = []
    for case in build_cases(args.numel):
        if args.check:
            check_case(case)
        timings = time_case(case, args.repeats, args.warmup)
        results.append({
            "case": case["case"],
            "shape": case["shape"],
            "axis": case["axis"],
            "backward": case["backward"],
            "nominal_bytes": case["nominal_bytes"],
            "contenders": timings,
            "ratios": {
                "mcuq/torch": timings["mcuq"]["median_ms"] / timings["torch"]["median_ms"],
                "mcuq/copy_": timings["mcuq"]["median_ms"] / timings["copy_"]["median_ms"],
            },
        })
    if args.check:
        print("check: mcuq outputs/gradients bit-identical to torch native (torch.equal)\n")
    print_table(results)

    report = {"header": header, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
