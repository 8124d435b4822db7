#!/usr/bin/env bash
# Sets up (idempotent), then runs the best end-to-end example there is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
exec .venv/bin/python examples/python/quickstart.py
