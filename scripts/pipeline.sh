#!/usr/bin/env bash
# The main job, from a fresh clone: set up, train and export LeNet-5 on all of
# Fashion-MNIST, then a short AlexNet run on a CPU budget. Outputs go to runs/.
#   bash scripts/pipeline.sh
# ALEXNET_STEPS (default 50) and ALEXNET_SUBSET (default 3200) size the AlexNet run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh -e ".[train]"
source .venv/bin/activate
set -x
cnn train lenet5 --out runs
cnn train alexnet --max-steps "${ALEXNET_STEPS:-50}" --subset "${ALEXNET_SUBSET:-3200}" --out runs
