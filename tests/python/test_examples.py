"""The Python examples keep running (their figures are asserted elsewhere:
accuracy bounds in test_prepare.py)."""

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fashion_mnist_output():
    """What `fashion_mnist.py --quick` prints (run once for this module)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _load("fashion_mnist").main(["--quick"])
    return out.getvalue()


def test_fashion_mnist_example_prints_every_row(fashion_mnist_output):
    out = fashion_mnist_output
    for row in ("float32", "mcuq PTQ int8", "float32 + same fine-tuning", "mcuq QAT int8", "mcuq QAT w4a8",
                "torch.ao PTQ int8", "epoch time on "):
        assert row in out, out


def test_fashion_mnist_integer_accuracy_within_a_tenth_of_fake_quant(fashion_mnist_output):
    """The exported integer models (mcuq.export's integer reference, which
    the generated C matches bit for bit) classify the full test set within
    0.1 pp of their fake-quant models."""
    out = fashion_mnist_output
    rows = re.findall(r"(mcuq \S+ \S+)\s+([\d.]+) %\s+([\d.]+) %", out)
    assert len(rows) == 3, out
    for name, fake_quant, integer in rows:
        assert abs(float(fake_quant) - float(integer)) <= 0.1, (name, fake_quant, integer)


def test_demo_runs_the_whole_journey(tmp_path):
    """examples/python/demo.py (./scripts/demo.sh's main job), quick: every
    preset exported, test images streamed through the emulated MCUs, every
    output level equal to the host's, stack peaks measured everywhere."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = _load("demo").main(["--quick", "--images", "12", "--core-images", "6", "--jobs", "2",
                                     "--out", str(tmp_path)])
    text = out.getvalue()
    assert status == 0, text
    for row in ("PTQ int8", "QAT int8", "QAT W4A8", "QAT pow2", "QAT nu4", "QAT nu3", "MLP QAT int8 (AVR)", "Cortex-M0",
                "ATmega328P"):
        assert row in text, text
    assert "| NO" not in text and text.count("| yes: 12/12 |") == 9 and text.count("| yes: 6/6 |") == 4, text
    assert len(re.findall(r"\| \d+ \+ \d+ \|", text)) == 6, text  # static + stack peak on every target
    for name in ("report.md", "accuracy.png", "confusion.png"):
        assert (tmp_path / name).is_file(), name
