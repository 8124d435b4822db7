"""Writes observer_module.pt for the C++ tests and the C++ calibration example.

Run from the repository root: .venv/bin/python tests/cpp/data/make_observer_module.py
A small scripted model with mcuq observers inside, after one calibration batch.
"""

from pathlib import Path

import torch
from torch import nn

import mcuq


class Calibrated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.input_observer = mcuq.MinMaxObserver()
        self.linear = nn.Linear(8, 4)
        self.weight_observer = mcuq.MinMaxObserver(quant_min=-127, quant_max=127, symmetric=True, axis=0)
        self.output_observer = mcuq.MovingAverageMinMaxObserver(averaging_constant=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_observer(x)
        self.weight_observer(self.linear.weight)
        return self.output_observer(torch.relu(self.linear(x)))


def main() -> None:
    model = Calibrated()
    with torch.no_grad():
        model(torch.randn(16, 8, generator=torch.Generator().manual_seed(1)))
    out = Path(__file__).resolve().parent / "observer_module.pt"
    torch.jit.script(model).save(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
