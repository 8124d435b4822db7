"""mcuq quickstart: what the fake-quantize ops do today, end to end.

1. Bit-exactness with PyTorch's own fake-quant ops on a million values.
2. Weight quantizers (per-tensor / per-channel / per-group, int8 / int4) and
   the error each leaves (SQNR).
3. Quantization-aware training of a small classifier with int4 weights:
   straight-through gradients to the weights, LSQ gradients to the scales.
4. The quantized model through TorchScript: script, save, load.

Run: ./scripts/demo.sh   (or .venv/bin/python examples/python/quickstart.py)
"""

import io
import math

import torch
from torch import nn

import mcuq

BITS = 3  # weight bits in the QAT example: low enough that rounding hurts


def sqnr_db(x: torch.Tensor, xq: torch.Tensor) -> float:
    return 10 * math.log10(x.pow(2).sum().item() / (x - xq).pow(2).sum().item())


def bit_exactness() -> None:
    print("1. Bit-exact with torch.fake_quantize_per_{tensor,channel}_affine")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 1000, generator=gen) * 3
    scale, zp = 0.0173, 5
    ours = mcuq.fake_quantize(x, torch.tensor(scale), torch.tensor(zp), -128, 127)
    theirs = torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)
    print(f"   per-tensor  int8, 1e6 values: identical = {torch.equal(ours, theirs)}")
    scales = torch.rand(1000, generator=gen) * 0.05 + 1e-3
    zps = torch.randint(-10, 10, (1000,), generator=gen, dtype=torch.int32)
    ours = mcuq.fake_quantize(x, scales, zps, -128, 127, axis=1)
    theirs = torch.fake_quantize_per_channel_affine(x, scales, zps, 1, -128, 127)
    print(f"   per-channel int8, 1e6 values: identical = {torch.equal(ours, theirs)}")


def weight_quantizers() -> None:
    print("\n2. Weight quantizers on a conv weight whose channels span 100x in range")
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(64, 32, 3, 3, generator=gen) * torch.logspace(-2, 0, 64).view(-1, 1, 1, 1)
    print(f"   {'quantizer':<30}{'SQNR (dB)':>10}")
    for bits in (8, 4):
        qmax = 2 ** (bits - 1) - 1
        for name, group in (("per-tensor", 64), ("per-group of 8 channels", 8), ("per-channel", 1)):
            amax = w.abs().view(64 // group, -1).amax(1)
            scale = (amax / qmax).clamp_min(2**-23)
            zp = torch.zeros_like(scale, dtype=torch.int32)
            wq = mcuq.fake_quantize(w, scale, zp, -qmax, qmax, axis=0, group_size=group)
            print(f"   int{bits} {name:<25}{sqnr_db(w, wq):>10.2f}")


class QuantLinear(nn.Linear):
    """A linear layer whose weight is fake-quantized per output channel,
    with learnable scales (LSQ)."""

    def __init__(self, n_in: int, n_out: int, bits: int) -> None:
        super().__init__(n_in, n_out)
        self.qmax = 2 ** (bits - 1) - 1
        self.scale = nn.Parameter(torch.ones(n_out))
        self.register_buffer("zero_point", torch.zeros(n_out, dtype=torch.int32))

    def init_scale(self) -> None:
        with torch.no_grad():
            self.scale.copy_((self.weight.abs().amax(1) / self.qmax).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.ops.mcuq.fake_quantize(
            self.weight, self.scale, self.zero_point, -self.qmax, self.qmax, 0, 1
        )
        return nn.functional.linear(x, w, self.bias)


def spirals(n: int, gen: torch.Generator):
    """Three interleaved spirals: a small task that needs a non-linear model."""
    label = torch.randint(0, 3, (n,), generator=gen)
    r = torch.rand(n, generator=gen)
    angle = r * 4 + label * (2 * math.pi / 3) + torch.randn(n, generator=gen) * 0.15
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
    return x, label


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item() * 100


def train(model: nn.Module, x, y, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def quantization_aware_training() -> nn.Module:
    print(f"\n3. Quantization-aware training, int{BITS} weights (per-channel, LSQ scales)")
    gen = torch.Generator().manual_seed(2)
    x_train, y_train = spirals(2000, gen)
    x_test, y_test = spirals(1000, gen)
    torch.manual_seed(0)
    model = nn.Sequential(QuantLinear(2, 64, BITS), nn.ReLU(), QuantLinear(64, 64, BITS), nn.ReLU(), QuantLinear(64, 3, BITS))
    layers = [m for m in model if isinstance(m, QuantLinear)]

    # Float training first: the weights alone learn, no quantization yet.
    float_model = nn.Sequential(*[nn.Linear(l.in_features, l.out_features) if isinstance(l, QuantLinear) else l for l in model])
    train(float_model, x_train, y_train, steps=400, lr=1e-2)
    print(f"   float accuracy:                      {accuracy(float_model, x_test, y_test):6.2f} %")

    for q, f in zip(layers, [m for m in float_model if isinstance(m, nn.Linear)]):
        q.load_state_dict(f.state_dict(), strict=False)
        q.init_scale()
    print(f"   int{BITS} weights, before QAT (PTQ):      {accuracy(model, x_test, y_test):6.2f} %")
    scale_before = layers[1].scale.detach().clone()
    train(model, x_train, y_train, steps=200, lr=3e-3)
    moved = (layers[1].scale.detach() - scale_before).abs().mean() / scale_before.mean()
    print(f"   int{BITS} weights, after 200 QAT steps:   {accuracy(model, x_test, y_test):6.2f} %")
    print(f"   LSQ moved the scales by {moved.item() * 100:.1f} % on average")
    return model


def torchscript_round_trip(model: nn.Module) -> None:
    print("\n4. TorchScript: the mcuq op is in the graph, and survives save/load")
    scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.randn(16, 2)
    ops = sorted({n.kind() for m in scripted.modules() for n in m.graph.nodes() if n.kind().startswith("mcuq::")})
    print(f"   ops in the scripted graphs: {', '.join(ops)}")
    print(f"   loaded model output identical: {torch.equal(loaded(x), model(x))}")


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"mcuq {mcuq.__version__} on torch {torch.__version__}\n")
    bit_exactness()
    weight_quantizers()
    model = quantization_aware_training()
    torchscript_round_trip(model)


if __name__ == "__main__":
    main()
