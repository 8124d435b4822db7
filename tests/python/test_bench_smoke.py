"""Smoke test: bench/bench_fake_quantize.py still runs (and --check passes).

It asserts the report's shape and the bit-exactness check, never timings.
"""

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_fake_quantize.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_fake_quantize", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports mcuq, registering torch.ops.mcuq.*
    return module


def test_bench_runs_small(tmp_path):
    bench = _load_bench()
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        report = bench.main(["--numel", "4096", "--repeats", "2", "--check", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)  # main() sets it; don't leak into other tests

    assert json.loads(out.read_text())["header"]["numel"] == 4096
    assert len(report["results"]) == 6
    for result in report["results"]:
        assert set(result["contenders"]) == {"mcuq", "torch", "copy_"}
        assert set(result["ratios"]) == {"mcuq/torch", "mcuq/copy_"}
        for timing in result["contenders"].values():
            assert len(timing["samples_ms"]) == 2


def test_bench_export_runs_small():
    spec = importlib.util.spec_from_file_location("bench_export", BENCH.parent / "bench_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        report = module.main(["--batch", "4", "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    assert report["batch"] == 4 and len(report["ms"]) == 5 and report["export_ms"] > 0


@pytest.mark.torch21
def test_bench_peers_runs_quick(tmp_path):
    """bench/bench_peers.py --quick: every tool of the pinned set still runs
    (a peer's API change shows as a "failed: ..." cell), each within reach of
    float. torchao, ExecuTorch and Brevitas are pinned on the primary leg."""
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH.parent / "bench_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        report = module.main(["--quick", "--json", str(tmp_path / "peers.json")])
    finally:
        torch.set_num_threads(threads)
    rows = {row["tool"].split()[0]: row for row in report["rows"]}
    assert set(rows) == {"float32", "mcuq", "torchao", "Brevitas"}, list(rows)
    for row in rows.values():
        for key in ("ptq", "qat"):
            assert isinstance(row[key], float), (row["tool"], key, row[key])
        assert abs(row["ptq"] - rows["float32"]["ptq"]) < 2.0, row
    for key in ("deployed_ptq", "deployed_qat"):
        assert isinstance(rows["mcuq"][key], float) and isinstance(rows["torchao"][key], float)
