"""Writes frozen_model.pt for the C++ test: a small model trained with
quantization-aware training (torch.ao eager prepare_qat with an mcuq preset),
frozen with mcuq.freeze and scripted. It carries its example input and the
output Python computed for it.

Run from the repository root: .venv/bin/python tests/cpp/data/make_frozen_model.py
"""

from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, prepare_qat

import mcuq


class WithExample(nn.Module):
    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("example_input", example)
        self.register_buffer("expected_output", model(example).detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(QuantStub(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), DeQuantStub())
    model.qconfig = mcuq.presets.int8().qconfig()
    model = prepare_qat(model.train())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        x = torch.randn(32, 8)
        opt.zero_grad()
        (model(x) - x[:, :4]).pow(2).mean().backward()
        opt.step()
    frozen = mcuq.freeze(model)
    out = Path(__file__).resolve().parent / "frozen_model.pt"
    torch.jit.script(WithExample(frozen, torch.randn(5, 8))).save(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
