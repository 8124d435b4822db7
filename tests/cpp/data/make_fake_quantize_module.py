"""Writes fake_quantize_module.pt for the C++ TorchScript test.

Run from the repository root: .venv/bin/python tests/cpp/data/make_fake_quantize_module.py
The module stores its example input and the output mcuq computed for it.
"""

from pathlib import Path

import torch

import mcuq  # noqa: F401  (registers torch.ops.mcuq)


class PerChannelFakeQuantize(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("scale", torch.linspace(0.01, 0.08, 4))
        self.register_buffer("zero_point", torch.tensor([0, -3, 5, 1], dtype=torch.int32))
        self.register_buffer("example_input", torch.randn(2, 4, 3, 3, generator=gen) * 3)
        self.register_buffer("expected_output", torch.empty(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mcuq.fake_quantize(x, self.scale, self.zero_point, -128, 127, 1)


def main() -> None:
    module = PerChannelFakeQuantize()
    module.expected_output = module(module.example_input)
    out = Path(__file__).resolve().parent / "fake_quantize_module.pt"
    torch.jit.script(module).save(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
