#!/usr/bin/env bash
# Fuzzes the runtime kernels with libFuzzer under AddressSanitizer and
# UndefinedBehaviorSanitizer (issue 18): one fuzzer per kernel family
# (tests/fuzz/fuzz_kernels.c), each comparing the kernels with the naive
# references bit for bit. Its corpus is kept in build/fuzz/corpus/FAMILY so a
# later run goes on from there; a finding lands in build/fuzz/findings/FAMILY
# (replay it: build/fuzz/fuzz_FAMILY FILE).
#
#   scripts/fuzz_kernels.sh [SECONDS_PER_FAMILY (600)] [FAMILY ...]
#   families: conv2d fully_connected pool2d add requantize lut mul shape softmax (default: all)
#
# Prints one line per family (runs, coverage, findings) and exits 1 on any finding.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
shift || true
all=(conv2d fully_connected pool2d add requantize lut mul shape softmax)
families=("$@")
[ ${#families[@]} -eq 0 ] && families=("${all[@]}")
work=${MCUQ_FUZZ_DIR:-$repo/build/fuzz}
mkdir -p "$work"
found=0
for family in "${families[@]}"; do
  index=-1
  for i in "${!all[@]}"; do [ "${all[$i]}" = "$family" ] && index=$i; done
  if [ "$index" -lt 0 ]; then
    echo "fuzz_kernels.sh: unknown family '$family' (expected one of: ${all[*]})" >&2
    exit 2
  fi
  fuzzer=$work/fuzz_$family
  clang -std=c99 -Wall -Wextra -Werror -pedantic -O1 -g -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -DMCUQ_FUZZ_FAMILY="$index" -I "$repo/csrc/runtime" -I "$repo/tests/runtime" \
    "$repo/tests/fuzz/fuzz_kernels.c" "$repo"/csrc/runtime/*.c -o "$fuzzer"
  mkdir -p "$work/corpus/$family" "$work/findings/$family"
  status=0
  "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/findings/$family/" \
    "$work/corpus/$family" > "$work/fuzz_$family.log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz_$family.log" | tail -1)
  coverage=$(grep -o 'cov: [0-9]*' "$work/fuzz_$family.log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "$work/corpus/$family" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    found=1
    echo "fuzz_kernels $family: FINDING after ${runs:-?} runs (exit $status); see $work/fuzz_$family.log:"
    grep -m3 -E 'fuzz_kernels:|ERROR|runtime error|Test unit written' "$work/fuzz_$family.log" || true
  else
    echo "fuzz_kernels $family: ${runs:-?} runs in $seconds s, coverage ${coverage:-?} edges, corpus $corpus inputs, 0 findings"
  fi
done
exit $found
