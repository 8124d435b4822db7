#!/usr/bin/env bash
# Copies the header-only fmt and GoogleTest's sources from Debian's packages
# into .deps/ (git-ignored), for building on a machine without apt, e.g. one
# with a pip-installed torch 2.x (see scripts/check_torch.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rm -rf .deps
mkdir -p .deps/fmt/include
cp -r /usr/include/fmt .deps/fmt/include/
cp -r /usr/src/googletest .deps/googletest
echo "vendored fmt and googletest into .deps/"
