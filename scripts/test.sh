#!/usr/bin/env bash
# The README's test command, and exactly what CI runs: set up, then tox
# (ruff lint and format check, then the whole pytest suite, slow tests included).
#   bash scripts/test.sh [tox arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh tox
.venv/bin/tox "$@"
