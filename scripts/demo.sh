#!/usr/bin/env bash
# Sets up (idempotent), then runs the best end-to-end examples there are:
# the op quickstart, then float / PTQ / QAT on Fashion-MNIST.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
.venv/bin/python examples/python/quickstart.py
echo
exec .venv/bin/python examples/python/fashion_mnist.py
