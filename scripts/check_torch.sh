#!/usr/bin/env bash
# Builds and tests mcuq against the torch of $PYTHON (default python3), e.g. a
# pip-installed torch 2.x, on a machine without Debian's packages: fmt and
# GoogleTest come from .deps/ (scripts/vendor_deps.sh). Runs ctest and pytest,
# including the torch >= 2.1 checks (torch.library.opcheck, torch.compile).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
build=$(realpath -m "${BUILD_DIR:-build-torch}")
jobs=$(nproc)
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

torch_prefix=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')
"$PYTHON" -c 'import torch; print("torch", torch.__version__)'

cmake -S .deps/googletest -B "$build/googletest" "${generator[@]}" \
  -DCMAKE_INSTALL_PREFIX="$build/gtest" -DBUILD_GMOCK=OFF >/dev/null
cmake --build "$build/googletest" -j"$jobs" >/dev/null
cmake --install "$build/googletest" >/dev/null

cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$build/gtest" \
  -DMCUQ_FMT_INCLUDE_DIR="$PWD/.deps/fmt/include"
cmake --build "$build" -j"$jobs"

status=0
# The Fashion-MNIST tests read Debian's dataset files; vendored ones if there.
[ -d .deps/fashion-mnist ] && export MCUQ_FASHION_MNIST="$PWD/.deps/fashion-mnist"
ctest --test-dir "$build" --output-on-failure -j"$jobs" || status=1
MCUQ_LIBRARY="$build/libmcuq.so" PYTHONPATH="$PWD/ops" \
  "$PYTHON" -m pytest tests/python -q -p no:cacheprovider -rs "$@" || status=1
exit "$status"
