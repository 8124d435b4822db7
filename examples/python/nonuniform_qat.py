"""Non-uniform weights in QAT, side by side with uniform ones: the demo's
Fashion-MNIST CNN (8-32 channels, float, from the demo's cache or trained
here once) fine-tuned one epoch with each weight scheme, activations int8:
uniform 4-bit (w4a8) and 3-bit, and k-means codebooks of 16 and 8 levels per
output channel (nu4, nu3; refitted as the weights train, or learned by
gradient descent). Prints fake-quant accuracy over the full test set (the
integer export of codebook weights is not built yet: issue 14).

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
    ("uniform 3-bit", lambda: mcuq.presets.get("w4a8").with_weight(bits=3)),
    ("k-means 8 levels (nu3)", lambda: mcuq.presets.get("nu3")),
    ("k-means 8 levels, learned", lambda: mcuq.presets.get("nu3").with_weight(codebook_learned=True)),
]


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
    print(f"  {'float (same fine-tuning)':<30}{demo.accuracy(longer.eval(), xt, yt):7.2f} %")
    for name, preset in SCHEMES:
        torch.manual_seed(1)
        start = time.perf_counter()
        prepared = mcuq.prepare(copy.deepcopy(cnn).eval(), preset(), qat=True, freeze_bn_step=200)
        demo.train(prepared, x, y, 1, name, limit, lr=demo.FINE_TUNE_LR)
        frozen = mcuq.freeze(prepared)
        acc = demo.accuracy(frozen.eval(), xt, yt)
        print(f"  {name:<30}{acc:7.2f} %   (QAT epoch {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
