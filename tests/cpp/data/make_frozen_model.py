"""Writes frozen_model.pt for the C++ test: a small CNN prepared with
mcuq.prepare (int8 preset: Conv+BN+ReLU QAT blocks, weight and activation
fake-quantizers), trained a few QAT steps, frozen with mcuq.freeze and
scripted. It carries its example input and the output Python computed for it.

Run from the repository root: .venv/bin/python tests/cpp/data/make_frozen_model.py
"""

from pathlib import Path

import torch
from torch import nn

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
    float_model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 7 * 7, 3),
    )
    model = mcuq.prepare(float_model.eval(), mcuq.presets.int8(), qat=True, freeze_bn_step=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        x = torch.randn(16, 1, 16, 16)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    frozen = mcuq.freeze(model)
    out = Path(__file__).resolve().parent / "frozen_model.pt"
    torch.jit.script(WithExample(frozen, torch.randn(5, 1, 16, 16))).save(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
