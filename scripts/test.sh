#!/usr/bin/env bash
# Sets up (idempotent), then runs the suites on both torch legs of
# scripts/setup.sh. Ends with one line summing them all:
# "N passed, N failed, N skipped"; exits non-zero if anything failed.
#
#   primary  (torch from scripts/requirements.txt; .venv, build/): every
#            suite: ctest (GoogleTest, C runtime, CMake consumer, examples,
#            emulated MCUs) and pytest.
#   oldest   (Debian's torch 1.13; .venv-torch1.13, build-torch1.13/): every
#            test that goes through torch and its features: ctest without the
#            C runtime's own tests, pytest without the emulated-MCU tests
#            (test_mcu.py and the "mcu" marker; C that no torch touches, run
#            on the primary leg)
#            and without the torch >= 2.1 tests (marker torch21: opcheck,
#            torch.compile, torch.export, torchao PT2E), which 1.13 cannot run.
#
# MCUQ_LEGS="primary" (or "oldest") runs one leg; extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LEGS=${MCUQ_LEGS:-primary oldest}
MCUQ_LEGS=$LEGS ./scripts/setup.sh || { echo "0 passed, 1 failed (setup)"; exit 1; }

results=build/test-results
rm -rf "$results"
mkdir -p "$results"
status=0

run_leg() {
  local leg=$1 venv=$2 build=$3
  shift 3
  local ctest_args=() pytest_args=()
  if [ "$leg" = oldest ]; then
    ctest_args=(-E '^runtime_|OnCortexM')
    pytest_args=(--ignore=tests/python/test_mcu.py -m "not torch21 and not mcu")
  fi
  echo "== $leg leg: $("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)')"
  echo "== $leg: ctest (GoogleTest, CMake consumer, examples)"
  ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "${ctest_args[@]}" \
    --output-junit "$PWD/$results/$leg-ctest.xml" || status=1
  echo "== $leg: pytest"
  "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider -o junit_suite_name="$leg" \
    --junitxml="$results/$leg-pytest.xml" "${pytest_args[@]}" "$@" || status=1
}

for leg in $LEGS; do
  case $leg in
    primary) run_leg primary .venv build "$@" ;;
    oldest) run_leg oldest .venv-torch1.13 build-torch1.13 "$@" ;;
  esac
done

/usr/bin/python3 scripts/summarize_junit.py "$results"/*.xml || status=1
exit "$status"
