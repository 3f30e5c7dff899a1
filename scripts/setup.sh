#!/usr/bin/env bash
# Shared set-up for scripts/pipeline.sh and scripts/test.sh; safe to run again.
#   bash scripts/setup.sh PIP_ARGS...
#   - installs the Fashion-MNIST files from Debian's package (root and apt only)
#   - makes .venv and pip-installs PIP_ARGS into it, torch pinned by constraints.txt
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ -z "${CNN_DATA_DIR:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: Fashion-MNIST not installed; run 'sudo apt-get install dataset-fashion-mnist'," \
         "or set CNN_DATA_DIR, or let the first run download it" >&2
  fi
fi

if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "setup: $PY cannot make virtual environments: install python3-venv" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
export PIP_CONSTRAINT="$PWD/constraints.txt"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "$@"
