#!/usr/bin/env bash
# Sets up (idempotent), then runs every suite: GoogleTest + CMake tests
# (ctest) and pytest. Ends with one line summing all suites:
# "N passed, N failed, N skipped"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh || { echo "0 passed, 1 failed (setup)"; exit 1; }

results=build/test-results
rm -rf "$results"
mkdir -p "$results"
status=0

echo "== ctest (GoogleTest, CMake consumer, examples)"
ctest --test-dir build --output-on-failure -j"$(nproc)" \
  --output-junit "$PWD/$results/ctest.xml" || status=1

echo "== pytest"
.venv/bin/python -m pytest tests/python -q -p no:cacheprovider \
  --junitxml="$results/pytest.xml" || status=1

.venv/bin/python scripts/summarize_junit.py "$results"/*.xml || status=1
exit "$status"
