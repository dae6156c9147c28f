#!/usr/bin/env bash
# On a lent GPU machine (JAX, no TensorFlow, no network): install the carried wheels, then train
# with scripts/accelerator_train.py into $OUT. Prepare the carry with scripts/accelerator_carry.py;
# the call and what comes back: docs/accelerator.md.
#
#   bash scripts/accelerator_train.sh resnet56 --recipe fanet_cifar --time-limit 480 [--resume .data/resume/resnet56.checkpoint-0090-1of1.npz]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
: "${OUT:?OUT, the folder whose files come back, is not set}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export KERAS_ATTN_ZOO_HOME="${KERAS_ATTN_ZOO_HOME:-/tmp/keras_attn_zoo}"  # the decoded data's cache
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
commit=(); [ -f .data/COMMIT ] && commit=(--commit "$(cat .data/COMMIT)")  # written by accelerator_carry.py
python3 scripts/accelerator_train.py --data .data/cifar10-jpeg.tar.gz --output "$OUT" "${commit[@]}" "$@" 2>&1 | tee "$OUT/run.log"
exit "${PIPESTATUS[0]}"
