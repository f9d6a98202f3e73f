#!/usr/bin/env bash
# Create the peer's own venv for bench/bench_tokenizer_vs_magvit2.py:
# lucidrains' magvit2-pytorch 0.5.1 with torch 2.14.1 + torchvision 0.29.1.
#
#     bash bench/magvit2_venv.sh                 # → bench/.venv-magvit2
#     bash bench/magvit2_venv.sh /some/other/dir
#
# Kept apart from the project venv because the peer gets its own torch/torchvision stack
# (it imports torchvision at module import time for its VGG perceptual loss) and pulls in
# opencv, kornia, accelerate, x-transformers, … that willie does not need.
#
# torch 2.14.1 here is the CUDA build (its nvidia-* wheels are ~3 GB); pip takes every one
# of them from this machine's local wheel index, so the install needs no download, only
# disk (5.8 GB unpacked) and about 1.5 minutes. The benchmark runs the peer on the CPU all the
# same. The venv is git-ignored (bench/.venv-magvit2/); ruff skips it through .gitignore.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.venv-magvit2}"
python="${PYTHON:-python3.11}"

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --no-input --progress-bar off)
"${pip[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${pip[@]}" "magvit2-pytorch==0.5.1"
# Import check: fails here, not in the middle of a benchmark.
"$venv/bin/python" -c "import magvit2_pytorch, torch, torchvision; print('magvit2-pytorch', \
__import__('importlib.metadata').metadata.version('magvit2-pytorch'), 'torch', torch.__version__, \
'torchvision', torchvision.__version__)"
echo "peer venv ready: $venv"
