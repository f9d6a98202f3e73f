#!/usr/bin/env bash
# The GPU figures the README reports, in one short run (< 8 minutes) on a lent GPU:
#
#     bash bench/gpu_check.sh          # on the GPU machine: the figures, with the card's name
#     bash bench/gpu_check.sh --cpu    # here: the same script on tiny shapes, a dry run
#
# It prints: the tokenizer's bf16 training step and clips/s at 17×128×128 (the seed's scale; at
# the preset's width and at the GPU recipe's) and 17×64×64, tokenize (encode) clips/s, a
# torch.compile smoke run, the transformer's training tokens/s and MFU per attention backend
# (sdpa, flex, flash-attn where importable) for the bench's model and the GPU recipe's, and
# KV-cached generation tokens/s. Library functions only: no MLflow, no DVC, no data.
#
# The device image has torch but not pydantic (willie.config) or PyAV (willie.data.video, which
# the tokenizer's stage module imports) and cannot download: carry the
# wheels in the git-ignored .whl/ (README, "Scale: GPUs"); they are installed first where
# pydantic is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--cpu" ]]; then
    DEVICE=cpu BIG=32 SMALL=16 BATCH=2 TINY=--tiny WIDE=32
else
    DEVICE=cuda BIG=128 SMALL=64 BATCH=8 TINY= WIDE=128
fi
if ! python3 -c "import pydantic" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
if [[ $DEVICE == cuda ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() \
if torch.cuda.is_available() else 'CPU')"
# Each section runs on its own (a time limit each): one that fails is reported and the others
# still print; the script exits non-zero if any failed.
failed=()
section() {
    local title=$1 limit=$2
    shift 2
    echo "== $title"
    if ! timeout "$limit" "$@"; then
        echo "!! section failed or timed out: $title"
        failed+=("$title")
    fi
}
section "tokenizer at 17×${BIG}×${BIG} (training batch $BATCH; encode = tokenize)" 120 \
    python3 bench/bench_tokenizer.py --device $DEVICE --size $BIG --batch $BATCH
section "tokenizer at 17×${SMALL}×${SMALL} (training batch $BATCH)" 90 \
    python3 bench/bench_tokenizer.py --device $DEVICE --size $SMALL --batch $BATCH
section "the GPU recipe's width (channels $WIDE) at 17×${BIG}×${BIG}, batch $BATCH" 120 \
    python3 bench/bench_tokenizer.py --device $DEVICE --size $BIG --batch $BATCH --channels $WIDE
section "tokenizer with torch.compile (the stages' compile: true), 17×${SMALL}×${SMALL}" 150 \
    python3 bench/bench_tokenizer.py --device $DEVICE --size $SMALL --batch $BATCH --compile
section "transformer training: tokens/s and MFU per attention backend" 150 \
    python3 bench/bench_transformer.py --part train --device $DEVICE $TINY
section "transformer: KV-cached generation" 90 \
    python3 bench/bench_transformer.py --part generate --device $DEVICE $TINY
if ((${#failed[@]})); then
    echo "gpu_check: ${#failed[@]} section(s) failed: ${failed[*]}"
    exit 1
fi
echo "gpu_check: done"
