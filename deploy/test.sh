#!/usr/bin/env bash
# One command: set up this machine, then run every test (unit and real-service).
# Extra arguments go to pytest (e.g. tests/unit, or -k launch).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
.venv/bin/ruff check src tests bench api workers
exec .venv/bin/python -m pytest "$@"
