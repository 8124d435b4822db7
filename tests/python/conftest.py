"""Shared set-up of mcuq's Python tests.

- makes ``import mcuq`` work from a source checkout (``ops/`` on ``sys.path``;
  the op library itself comes from ``$MCUQ_LIBRARY`` or the package);
- makes the shared helpers in ``_mcuq_testing.py`` importable whatever
  pytest's import mode;
- registers the Hypothesis profile (no deadline, moderate example counts:
  the suite must stay fast on two cores; MCUQ_HYPOTHESIS_SCALE=20 multiplies
  every property test's examples for a long run);
- the ``torch21`` marker: tests of torch >= 2.1 features (``opcheck``,
  ``torch.compile``) are skipped on older torch;
- fixtures: ``make_case`` (the sample-input factory) and ``gen`` (a seeded
  ``torch.Generator``).
"""

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_OPS = _HERE.parents[1] / "ops"

if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))
try:
    import mcuq  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(_OPS))
    import mcuq  # noqa: F401,E402  (registers torch.ops.mcuq.*)

import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import _mcuq_testing as T  # noqa: E402

settings.register_profile(
    "mcuq",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("mcuq")

TORCH_2_1_REASON = "needs torch >= 2.1 (torch.library.opcheck / torch.compile)"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"torch21: {TORCH_2_1_REASON}; skipped on older torch"
    )
    config.addinivalue_line(
        "markers", "mcu: runs firmware on the emulated MCUs (C that no torch touches: the primary leg runs it)"
    )


def pytest_runtest_setup(item):
    if item.get_closest_marker("torch21") is not None and not T.torch_at_least(2, 1):
        pytest.skip(TORCH_2_1_REASON)


@pytest.fixture
def gen():
    """A seeded generator, so every test sees the same data on every run."""
    return torch.Generator().manual_seed(20240611)


@pytest.fixture
def make_case():
    """The shared sample-input factory (see ``_mcuq_testing.make_case``)."""
    return T.make_case
