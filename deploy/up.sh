#!/usr/bin/env bash
# One command: set up this machine, then run binderq with the demo staging.
# Extra arguments go to `binderq up` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
exec .venv/bin/binderq up --demo "$@"
