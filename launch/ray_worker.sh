#!/usr/bin/env bash
# Join this host to a running Ray cluster as a worker node.
#   launch/ray_worker.sh <head address printed by ray_head.sh> [--num-gpus=N] [--num-cpus=N]
# Ray detects the GPUs; each task that asks for num_gpus=1 gets one of them through
# CUDA_VISIBLE_DEVICES, so one candidate trains per GPU. See launch/README.md (GPU hosts).
set -euo pipefail
HEAD="${1:?usage: launch/ray_worker.sh <head-host>:6379 [ray start args]}"
shift
export LFE_DATA_DIR="${LFE_DATA_DIR:?set LFE_DATA_DIR to the CIFAR-10 binary folder on this host}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export RAY_USAGE_STATS_ENABLED=0
ray start --address="$HEAD" "$@"
