#!/usr/bin/env bash
# The GPU figures the README reports, in one short run on a lent GPU (the device machine):
#
#     bash bench/gpu_check.sh
#
# The device image has torch but not pydantic (willie.config): carry its wheels in .whl/
# (README, "GPU figures"); they are installed into /tmp/site first when present.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
echo "== tokenizer at 17×128×128, bf16 autocast (training batch 8)"
python3 bench/bench_tokenizer.py --device cuda --size 128 --batch 8
echo "== tokenizer at 17×64×64 (the CPU preset's size), bf16 autocast (training batch 8)"
python3 bench/bench_tokenizer.py --device cuda --size 64 --batch 8
