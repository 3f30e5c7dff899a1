#!/usr/bin/env bash
# The main job, from a fresh clone: set up, then `cnn pipeline`: train and export
# LeNet-5 on all of Fashion-MNIST, a short AlexNet run on a CPU budget, and a
# comparison of the numba and onnxruntime backends on both. Outputs go to runs/.
#   bash scripts/pipeline.sh [cnn pipeline options, e.g. --alexnet-steps 300]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh -e ".[train,cli]"
exec .venv/bin/cnn pipeline "$@"
