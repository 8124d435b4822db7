#!/usr/bin/env bash
# Idempotent setup of both torch legs; redoes only what is missing or stale.
#
#   primary  the pinned PyPI torch of scripts/requirements.txt (with torchao,
#            the peers and the test tools) in .venv, on Debian's Python without
#            its site packages; mcuq built in build/ against that torch's own
#            LibTorch (its CMake config), so C++ programs link the same one.
#   oldest   Debian's torch 1.13 (python3-torch, libtorch-dev), the oldest
#            supported: .venv-torch1.13 (Debian's Python with its site
#            packages) and build-torch1.13/.
#
# MCUQ_LEGS="primary oldest" (the default) picks the legs. Wheels are kept in
# MCUQ_WHEELHOUSE (~/.cache/mcuq/wheels): a second run, or a fresh clone on
# the same machine, downloads nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LEGS=${MCUQ_LEGS:-primary oldest}
WHEELHOUSE=${MCUQ_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcuq/wheels}
PIP_VERSION=26.3
PYTHON=/usr/bin/python3  # Debian's Python: the one that sees python3-torch
export PIP_DISABLE_PIP_VERSION_CHECK=1

PACKAGES=(
  build-essential cmake ninja-build git
  python3-venv python3-pip
  libtorch-dev python3-torch python3-pytest python3-hypothesis python3-tqdm  # the oldest leg
  libgtest-dev libgmock-dev libfmt-dev libbenchmark-dev
  dataset-fashion-mnist
  clang libclang-rt-dev  # exported C is tested with gcc and clang, under ASan/UBSan
  # MCU targets: Cortex-M and RISC-V under QEMU, AVR under simavr (examples/mcu);
  # the RISC-V firmware needs no C library, so no 1 GB picolibc
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  gcc-avr avr-libc simavr libsimavr-dev
  gcc-riscv64-unknown-elf qemu-system-misc
  python3-matplotlib  # the demo's report plots on the oldest leg
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

# Installs $2... into venv $1 from the wheelhouse, filling it from PyPI first
# when something is missing there.
pip_install() {
  local venv=$1
  shift
  if ! "$venv/bin/python" -m pip install -q --no-index --find-links "$WHEELHOUSE" "$@" 2>/dev/null; then
    echo "setup: downloading into $WHEELHOUSE: $*"
    mkdir -p "$WHEELHOUSE"
    "$venv/bin/python" -m pip wheel -q --wheel-dir "$WHEELHOUSE" --find-links "$WHEELHOUSE" "$@"
    "$venv/bin/python" -m pip install -q --no-index --find-links "$WHEELHOUSE" "$@"
  fi
}

# Configures (when new, or when it was configured against another torch) and
# builds $1 against the torch of Python $2.
build_leg() {
  local build=$1 python=$2
  local torch_dir
  torch_dir=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  if [ -f "$build/CMakeCache.txt" ] && ! grep -q "^MCUQ_TORCH_PYTHON_DIR:[A-Z]*=$torch_dir\$" "$build/CMakeCache.txt"; then
    echo "setup: $build was configured for another torch; configuring it anew"
    rm -rf "$build"
  fi
  if [ ! -f "$build/CMakeCache.txt" ]; then
    # The torch folder itself first, so that its lib/ wins over a system
    # libtorch of another version; then its CMake packages.
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$torch_dir;$torch_dir/share/cmake" \
      -DMCUQ_TORCH_PYTHON_DIR="$torch_dir" >/dev/null
  fi
  cmake --build "$build" -j"$(nproc)"
}

# Builds nothing new (the build folder is current); puts libmcuq.so into the
# package for this torch (ops/mcuq/lib/torch<major.minor>/).
install_editable() {
  local venv=$1 build=$2
  MCUQ_BUILD_DIR="$PWD/$build" "$venv/bin/python" -m pip install -q --no-index \
    --no-build-isolation --no-deps -e .
  "$venv/bin/python" -c 'import mcuq, torch; print(f"setup: mcuq {mcuq.__version__} on torch {torch.__version__}")'
}

for leg in $LEGS; do
  case $leg in
    primary)
      [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
      stamp=.venv/mcuq-requirements.sha256
      if ! sha256sum --status -c "$stamp" 2>/dev/null; then
        pip_install .venv "pip==$PIP_VERSION"
        pip_install .venv -r scripts/requirements.txt
        sha256sum scripts/requirements.txt >"$stamp"
      fi
      build_leg build .venv/bin/python
      install_editable .venv build
      ;;
    oldest)
      [ -x .venv-torch1.13/bin/python ] || "$PYTHON" -m venv --system-site-packages .venv-torch1.13
      build_leg build-torch1.13 .venv-torch1.13/bin/python
      install_editable .venv-torch1.13 build-torch1.13
      ;;
    *)
      echo "setup: unknown leg '$leg' in MCUQ_LEGS (expected primary, oldest)" >&2
      exit 2
      ;;
  esac
done
