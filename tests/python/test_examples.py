"""The Python examples keep running (their figures are asserted elsewhere:
accuracy bounds in test_prepare.py)."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fashion_mnist_example_prints_every_row(capsys):
    _load("fashion_mnist").main(["--quick"])
    out = capsys.readouterr().out
    for row in ("float32", "mcuq PTQ int8", "float32 + same fine-tuning", "mcuq QAT int8", "mcuq QAT w4a8",
                "torch.ao PTQ int8", "epoch time: float"):
        assert row in out, out
