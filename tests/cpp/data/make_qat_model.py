"""Writes qat_model.pt for the C++ QAT example: a small CNN prepared for
quantization-aware training by mcuq.prepare (int8 preset; untrained),
scripted, together with 256 Fashion-MNIST test images and their labels.

Run from the repository root: .venv/bin/python tests/cpp/data/make_qat_model.py
"""

from pathlib import Path

import torch
from torch import nn

import mcuq
from mcuq.data import fashion_mnist


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 6 * 6, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


class WithData(nn.Module):
    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("images", images)
        self.register_buffer("labels", labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def main() -> None:
    torch.manual_seed(0)
    prepared = mcuq.prepare(SmallCnn().eval(), mcuq.presets.int8(), qat=True, freeze_bn_step=30)
    images, labels = fashion_mnist("test")
    module = torch.jit.script(WithData(prepared, images[:256].clone(), labels[:256].clone()))
    out = Path(__file__).resolve().parent / "qat_model.pt"
    module.save(str(out))
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
