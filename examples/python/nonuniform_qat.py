"""Non-uniform weights in QAT, side by side with uniform ones: the demo's
Fashion-MNIST CNN (8-32 channels, float, from the demo's cache or trained
here once) fine-tuned one epoch with each weight scheme, activations int8:
uniform 4-bit (w4a8) and 3-bit, and k-means codebooks of 16 and 8 levels
(nu4, nu3) per output channel or one per layer, refitted as the weights
train (or learned by gradient descent). Each is frozen (codebooks snapped
onto the int8 grid), exported to integer C and evaluated on the full test
set: fake-quant and integer (host reference of the generated C) accuracy,
and the model's flash (weights, codebooks, biases, requantization tables;
weight bits per weight in brackets).

Run: .venv/bin/python examples/python/nonuniform_qat.py [--out build/demo] [--quick]
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

import mcuq
from mcuq.data import fashion_mnist, normalized

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import demo  # noqa: E402
from fashion_mnist import SmallCnn  # noqa: E402

SCHEMES = [
    ("uniform 4-bit (w4a8)", lambda: mcuq.presets.get("w4a8")),
    ("k-means 16 levels (nu4)", lambda: mcuq.presets.get("nu4")),
    ("k-means 16 levels, learned", lambda: mcuq.presets.get("nu4").with_weight(codebook_learned=True)),
    ("k-means 16 levels per layer", lambda: mcuq.presets.get("nu4").with_weight(per_channel=False)),
    ("uniform 3-bit", lambda: mcuq.presets.get("w4a8").with_weight(bits=3)),
    ("k-means 8 levels (nu3)", lambda: mcuq.presets.get("nu3")),
    ("k-means 8 levels, learned", lambda: mcuq.presets.get("nu3").with_weight(codebook_learned=True)),
    ("k-means 8 levels per layer", lambda: mcuq.presets.get("nu3").with_weight(per_channel=False)),
]


def weight_bits(report: dict) -> float:
    """Bits of flash per weight over the weighted layers (indices + codebooks, or the weights)."""
    layers = [l for l in report["layers"] if "bits_per_weight" in l]
    weights = sum(l["weight_bytes"] * 8 / l["bits_per_weight"] for l in layers)
    return sum(l["weight_bytes"] * 8 for l in layers) / weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "build" / "demo", help="the demo's folder")
    parser.add_argument("--quick", action="store_true", help="2560 training images, one float epoch (tests)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    x, xt = normalized(x), normalized(xt)
    limit, epochs = (2560, 1) if args.quick else (None, demo.EPOCHS)
    tag = "quick" if args.quick else f"{epochs}ep"
    channels = demo.CNN_CHANNELS
    cnn, _ = demo.cached_float(lambda: SmallCnn(channels), args.out / "cache" / f"cnn{channels[0]}x{channels[1]}-{tag}.pt",
                               x, y, epochs, limit, "float CNN epoch")
    longer = copy.deepcopy(cnn)
    torch.manual_seed(1)
    demo.train(longer, x, y, 1, "float, same fine-tuning", limit, lr=demo.FINE_TUNE_LR)
    print(f"Fashion-MNIST, {xt.shape[0]} test images, CNN {channels[0]}-{channels[1]} channels; one epoch of QAT "
          f"at {demo.FINE_TUNE_LR:g} from the float model; activations int8")
    print(f"  {'scheme':<30}{'fake-quant':>11}{'integer':>9}{'flash B':>9}{'(bits/w)':>10}")
    print(f"  {'float (same fine-tuning)':<30}{demo.accuracy(longer.eval(), xt, yt):10.2f}%")
    sample = xt[:64]
    for name, preset in SCHEMES:
        torch.manual_seed(1)
        start = time.perf_counter()
        prepared = mcuq.prepare(copy.deepcopy(cnn).eval(), preset(), qat=True, freeze_bn_step=200)
        demo.train(prepared, x, y, 1, name, limit, lr=demo.FINE_TUNE_LR)
        frozen = mcuq.freeze(prepared)
        fake = demo.accuracy(frozen.eval(), xt, yt)
        exported = mcuq.export(frozen, [1, 1, 28, 28], sample=sample)
        integer = demo.accuracy(exported, xt, yt)
        report = exported.report("fmnist")
        print(f"  {name:<30}{fake:10.2f}%{integer:8.2f}%{report['flash_bytes']:>9}{weight_bits(report):>9.2f} "
              f"  (QAT epoch + export {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
