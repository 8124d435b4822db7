#!/usr/bin/env python3
"""Integer inference on the host, side by side in one run (medians): the
Fashion-MNIST example's CNN, int8 PTQ, on a batch of images.

  float          the float model (PyTorch)
  fake-quant     mcuq's frozen fake-quant model (PyTorch ops + mcuq::fake_quantize)
  torch.ao int8  PyTorch's own int8 model of the same CNN (eager PTQ, converted; fbgemm or qnnpack)
  integer ref    mcuq.export's LibTorch integer reference (float64 convolutions, exact)
  C runtime      the generated C on the mcuq runtime, gcc -O2 on the host, one process per batch

Run: .venv/bin/python bench/bench_export.py [--batch N] [--repeats R]
Speed is reported as time ratios, never asserted in tests.
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import mcuq
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))
    import mcuq
import mcuq.host

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "python"))
from fashion_mnist import SmallCnn, torch_ao_ptq  # noqa: E402


def median_ms(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28)
    calibration = [torch.randn(64, 1, 28, 28) for _ in range(4)]
    model = SmallCnn().eval()

    start = time.perf_counter()
    prepared = mcuq.prepare(copy.deepcopy(model), mcuq.presets.int8(), qat=False)
    mcuq.calibrate(prepared, calibration, progress=False)
    frozen = mcuq.freeze(prepared)
    prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    exported = mcuq.export(frozen, [1, 1, 28, 28])
    export_s = time.perf_counter() - start
    levels = exported.quantize_input(x)

    engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else "qnnpack"
    ao = torch_ao_ptq(model, calibration, engine)
    if ao is None:
        raise SystemExit("bench_export: needs torch.ao.quantization (PyTorch's own int8 model is the anchor)")

    results = {}
    with torch.no_grad():
        results["float"] = median_ms(lambda: model(x), args.repeats)
        results["fake-quant"] = median_ms(lambda: frozen(x), args.repeats)
        results[f"torch.ao int8 ({engine})"] = median_ms(lambda: ao(x), args.repeats)
        results["integer ref"] = median_ms(lambda: exported.integer_reference(levels), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        exported.write(tmp, "net")
        exe = mcuq.host.compile_model(tmp, "net", "gcc", optimize="-O2")
        results["C runtime (gcc -O2)"] = median_ms(lambda: mcuq.host.run_model(exe, levels, exported), args.repeats)

    torch_ao = results[f"torch.ao int8 ({engine})"]
    print(f"Fashion-MNIST CNN, int8 PTQ, batch {args.batch}, {args.threads} thread(s), median of {args.repeats}")
    print(f"  prepare + calibrate + freeze {prepare_s * 1e3:.0f} ms; mcuq.export {export_s * 1e3:.0f} ms")
    print(f"  {'':<28}{'ms':>10}{'ms/image':>11}{'vs torch.ao int8':>18}")
    for name, ms in results.items():
        print(f"  {name:<28}{ms:10.1f}{ms / args.batch:11.4f}{ms / torch_ao:17.2f}x")
    return {"batch": args.batch, "engine": engine, "ms": results, "export_ms": export_s * 1e3}


if __name__ == "__main__":
    main()
