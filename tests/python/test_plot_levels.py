"""examples/python/plot_levels.py (the README's docs/images/levels.png)
keeps running and writes a real figure."""

import contextlib
import importlib.util
import io
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python" / "plot_levels.py"


def test_plot_levels_writes_the_figure_and_the_table(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("plot_levels", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    png = tmp_path / "images" / "levels.png"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # --quick: the demo's one-epoch CNN, trained into tmp_path (seconds), not the 12-epoch cache.
        status = module.main(["--out", str(png), "--demo-out", str(tmp_path), "--quick"])
    text = out.getvalue()
    assert status == 0, text
    for method in ["uniform"] + module.METHODS:
        assert f"  {method} " in text, text
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)
