#!/usr/bin/env bash
# Idempotent setup: installs missing Debian packages, builds into build/,
# creates .venv (on Debian's Python, seeing its torch) and installs mcuq
# editable. Safe to run again; it redoes only what is missing or stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
  build-essential cmake ninja-build git
  libtorch-dev python3-torch
  libgtest-dev libgmock-dev libfmt-dev libbenchmark-dev
  python3-venv python3-pip python3-pytest python3-hypothesis
  dataset-fashion-mnist python3-tqdm
  clang libclang-rt-dev  # exported C is tested with gcc and clang, under ASan/UBSan
  # MCU targets: Cortex-M and RISC-V under QEMU, AVR under simavr (examples/mcu);
  # the RISC-V firmware needs no C library, so no 1 GB picolibc
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  gcc-avr avr-libc simavr libsimavr-dev
  gcc-riscv64-unknown-elf qemu-system-misc
  python3-matplotlib  # the demo's report plots
)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

PYTHON=/usr/bin/python3  # Debian's Python: the one that sees python3-torch
torch_prefix=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')

if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix"
fi
cmake --build build -j"$(nproc)"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv --system-site-packages .venv
fi
# Builds nothing new (build/ is current); copies libmcuq.so into the package.
PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q --no-index \
  --no-build-isolation --no-deps -e .
.venv/bin/python -c 'import mcuq, torch; print(f"setup: mcuq {mcuq.__version__} on torch {torch.__version__}")'
