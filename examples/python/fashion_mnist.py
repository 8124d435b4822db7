"""Fashion-MNIST, float vs post-training and quantization-aware int8, with
mcuq and with torch.ao's eager PTQ side by side.

A small CNN (conv-bn-relu x2, max-pool, linear) trains one epoch in float;
then:
  - mcuq PTQ int8: prepare(qat=False) -> calibrate -> freeze
  - mcuq QAT int8 and W4A8: prepare(qat=True) -> one epoch of fine-tuning -> freeze,
    compared with the float model fine-tuned for the same epoch
  - torch.ao eager PTQ int8 (fuse, prepare, calibrate, convert; a real int8 model)
Test accuracies are over the full 10k test set. For mcuq's models both the
fake-quant accuracy and the integer accuracy (the model exported with
mcuq.export and run by its LibTorch integer reference, which the generated C
matches bit for bit) are printed. Epoch times of float and QAT training are
printed side by side.

Training runs on --device (default: cuda when a GPU is available, else cpu);
freezing, export and the integer reference run on the CPU.

Run: .venv/bin/python examples/python/fashion_mnist.py [--epochs N] [--quick] [--device cpu|cuda]
"""

import argparse
import copy
import time

import torch
from torch import nn

import mcuq
from mcuq.data import fashion_mnist, normalized


class SmallCnn(nn.Module):
    def __init__(self, channels=(8, 16)) -> None:
        super().__init__()
        c1, c2 = channels
        self.quant = nn.Identity()  # torch_ao_ptq puts torch.ao's stubs here
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c2 * 7 * 7, 10)
        self.dequant = nn.Identity()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool(self.relu2(self.bn2(self.conv2(x))))
        return self.dequant(self.fc(self.flatten(x)))


def torch_ao_ptq(model, calibration, engine="qnnpack"):
    """PyTorch's own eager PTQ int8 of the CNN (a real int8 model), or None
    where torch.ao.quantization (deprecated) is gone."""
    try:
        from torch.ao.quantization import DeQuantStub, QuantStub, convert, fuse_modules, get_default_qconfig, prepare
    except ImportError:
        return None
    torch.backends.quantized.engine = engine
    ao = copy.deepcopy(model).eval()
    ao.quant, ao.dequant = QuantStub(), DeQuantStub()
    ao.qconfig = get_default_qconfig(engine)
    ao = prepare(fuse_modules(ao, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]]))
    with torch.no_grad():
        for xb in calibration:
            ao(xb)
    return convert(ao)


def batches(x, y, size, limit=None):
    n = x.shape[0] if limit is None else min(limit, x.shape[0])
    for i in range(0, n, size):
        yield x[i:i + size], y[i:i + size]


def device_of(model) -> torch.device:
    p = next(model.parameters(), None)  # torch.ao's int8 model has none: CPU
    return p.device if p is not None else torch.device("cpu")


def train_epoch(model, x, y, lr, limit=None) -> float:
    """One epoch on the model's device; seconds taken."""
    device = device_of(model)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    for xb, yb in batches(x, y, 64, limit):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def accuracy(model, x, y) -> float:
    device = device_of(model)
    model.eval()
    with torch.no_grad():
        correct = sum((model(xb.to(device)).argmax(1).cpu() == yb).sum().item() for xb, yb in batches(x, y, 1000))
    return 100.0 * correct / x.shape[0]


def integer_accuracy(frozen, x, y) -> float:
    """Accuracy of the exported integer model (mcuq.export's integer reference)."""
    exported = mcuq.export(frozen, [1, *x.shape[1:]], sample=x[:64])
    correct = sum((exported(xb).argmax(1) == yb).sum().item() for xb, yb in batches(x, y, 1000))
    return 100.0 * correct / x.shape[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1, help="float training epochs")
    parser.add_argument("--quick", action="store_true", help="train on 12800 images only (for tests)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to train (default: cuda when available)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    images, labels = fashion_mnist("train")
    test_images, test_labels = fashion_mnist("test")
    x, y = normalized(images), labels
    xt, yt = normalized(test_images), test_labels
    limit = 12800 if args.quick else None
    calibration = [xb for xb, _ in batches(x, y, 256, 2560)]

    model = SmallCnn().to(device)
    float_time = sum(train_epoch(model, x, y, 3e-3, limit) for _ in range(args.epochs)) / args.epochs
    results = [("float32", accuracy(model, xt, yt))]

    prepared = mcuq.prepare(copy.deepcopy(model).cpu().eval(), mcuq.presets.int8(), qat=False)
    mcuq.calibrate(prepared, calibration, progress=False)
    frozen = mcuq.freeze(prepared)
    results.append(("mcuq PTQ int8", accuracy(frozen, xt, yt)))
    integer = {"mcuq PTQ int8": integer_accuracy(frozen, xt, yt)}

    # QAT fine-tunes for one more epoch: the fair float baseline does too.
    longer = copy.deepcopy(model)
    train_epoch(longer, x, y, 5e-4, limit)
    results.append(("float32 + same fine-tuning", accuracy(longer, xt, yt)))

    qat_time = None
    for name in ("int8", "w4a8"):
        qat = mcuq.prepare(copy.deepcopy(model).eval(), mcuq.presets.get(name), qat=True, freeze_bn_step=200)
        seconds = train_epoch(qat, x, y, 5e-4, limit)
        qat_time = qat_time or seconds
        frozen = mcuq.freeze(qat.cpu())
        results.append((f"mcuq QAT {name}", accuracy(frozen, xt, yt)))
        integer[f"mcuq QAT {name}"] = integer_accuracy(frozen, xt, yt)

    model = model.cpu()
    ao = torch_ao_ptq(model, calibration)
    results.append(("torch.ao PTQ int8 (qnnpack)", accuracy(ao, xt, yt) if ao is not None else float("nan")))

    print(f"Fashion-MNIST test accuracy ({xt.shape[0]} images), small CNN, "
          f"{'quick: 12800 training images' if args.quick else f'{args.epochs} float epoch(s)'}")
    base = dict(results)
    print(f"  {'model':<30}{'accuracy':>9}   {'integer':>9}")
    for name, acc in results:
        reference = "float32 + same fine-tuning" if "QAT" in name else "float32"
        exported = f"{integer[name]:7.2f} %" if name in integer else " " * 9
        print(f"  {name:<30}{acc:7.2f} %   {exported}   ({acc - base[reference]:+.2f} pp vs {reference})")
    print("  (integer: the exported int8 model run by mcuq's integer reference, bit-exact with the generated C)")
    print(f"epoch time on {device}: float {float_time:.1f} s, QAT int8 {qat_time:.1f} s "
          f"(ratio {qat_time / float_time:.2f})")


if __name__ == "__main__":
    main()
