#!/usr/bin/env bash
# Sets up (idempotent), then the whole journey: the op quickstart, then
# Fashion-MNIST from a float CNN to integer C running bit-exactly on emulated
# Cortex-M and AVR microcontrollers (examples/python/demo.py; report in
# build/demo/report.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
.venv/bin/python examples/python/quickstart.py
echo
exec .venv/bin/python examples/python/demo.py "$@"
