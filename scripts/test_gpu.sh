#!/usr/bin/env bash
# The CUDA tests, on a machine with a GPU: every op against its CPU kernel
# (tests/python/test_cuda.py), the kernels' registration, and, with --bench,
# bench/bench_cuda.py. Ends with pytest's count line. CI has no GPU and runs
# only the registration test (inside scripts/test.sh).
#
#   MCUQ_PYTHON     the Python whose torch to use (default: .venv/bin/python,
#                   else python3)
#   MCUQ_BUILD_DIR  the build of libmcuq.so (default: build/); configured and
#                   built (the library alone) when missing
#   MCUQ_CUDA_ARCHITECTURES  for that build (default: the library's list)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${MCUQ_PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
BUILD=${MCUQ_BUILD_DIR:-build}
bench=0
[ "${1:-}" = "--bench" ] && bench=1

nvidia-smi -L || true
if [ ! -f "$BUILD/libmcuq.so" ]; then
  prefix=$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  extra=()
  [ -n "${MCUQ_CUDA_ARCHITECTURES:-}" ] && extra+=(-DMCUQ_CUDA_ARCHITECTURES="$MCUQ_CUDA_ARCHITECTURES")
  [ -n "${MCUQ_FMT_INCLUDE_DIR:-}" ] && extra+=(-DMCUQ_FMT_INCLUDE_DIR="$MCUQ_FMT_INCLUDE_DIR")
  [ -n "${MCUQ_WERROR:-}" ] && extra+=(-DMCUQ_WERROR="$MCUQ_WERROR")
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DMCUQ_CUDA=ON \
    -DCMAKE_PREFIX_PATH="$prefix" "${extra[@]}" >/dev/null
  cmake --build "$BUILD" --target mcuq -j"$(nproc)"
fi
export MCUQ_LIBRARY=$PWD/$BUILD/libmcuq.so
status=0
"$PYTHON" -m pytest tests/python/test_cuda.py tests/python/test_cuda_registration.py -q -p no:cacheprovider -rs || status=1
if [ "$bench" = 1 ]; then
  "$PYTHON" bench/bench_cuda.py || status=1
fi
exit "$status"
