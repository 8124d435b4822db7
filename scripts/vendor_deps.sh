#!/usr/bin/env bash
# Copies the header-only fmt, GoogleTest's sources and the Fashion-MNIST files
# from Debian's packages into .deps/ (git-ignored), for building and testing
# on a machine without apt, e.g. one with a pip-installed torch 2.x (see
# scripts/check_torch.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rm -rf .deps
mkdir -p .deps/fmt/include
cp -r /usr/include/fmt .deps/fmt/include/
cp -r /usr/src/googletest .deps/googletest
cp -r /usr/share/datasets/fashion-mnist .deps/fashion-mnist
echo "vendored fmt, googletest and fashion-mnist into .deps/"
