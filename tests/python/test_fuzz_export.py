"""A fixed-seed set of random models (tests/python/_model_fuzz.py): each is
prepared, calibrated, frozen and exported with a random preset and input
range, and its generated C must equal the integer reference bit for bit
(every fourth under clang's AddressSanitizer + UndefinedBehaviorSanitizer).
A model the workflow refuses must be refused with a ValueError, never a
crash. Long campaigns: scripts/fuzz_export.py."""

import pytest

from _model_fuzz import check_case, random_case

SEEDS = range(1000, 1048)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_model_exports_bit_exact_c(seed, tmp_path):
    case = random_case(seed)
    outcome = check_case(case, tmp_path, sanitize=seed % 4 == 0)
    assert outcome == "ok" or outcome.startswith("refused: mcuq."), outcome
