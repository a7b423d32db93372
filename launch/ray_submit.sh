#!/usr/bin/env bash
# Run an lfe job whose evaluations are Ray tasks on the cluster at $RAY_ADDRESS.
#   RAY_ADDRESS=<head>:6379 launch/ray_submit.sh configs/surrogate.py runs/surrogate [--config.x=y ...]
# The controller (this process) keeps the run directory on this host and holds all evolution
# state; rerunning the same command after a crash or a stop (Ctrl-C, SIGTERM) resumes it
# (in-flight candidates are submitted again). GPUs per task: config.ray.num_gpus, by default -1
# (auto: one candidate per GPU when the cluster has GPUs, CPU-only tasks when it has none);
# NUM_GPUS=0.5 (two small surrogates per GPU) or NUM_GPUS=0 (CPU-only tasks) sets it, as does
# --config.ray.num_gpus=<n>. A request no node can run fails with one line (config.ray.node_wait_s).
set -euo pipefail
CONFIG="${1:?usage: launch/ray_submit.sh <config.py[:variant]> <workdir> [--config.x=y ...]}"
WORKDIR="${2:?usage: launch/ray_submit.sh <config.py[:variant]> <workdir> [--config.x=y ...]}"
shift 2
: "${RAY_ADDRESS:?set RAY_ADDRESS=<head-host>:6379 (see launch/ray_head.sh)}"
cd "$(dirname "$0")/.."
export RAY_ADDRESS
export RAY_USAGE_STATS_ENABLED=0
exec python -m lfe.main --config="$CONFIG" --workdir="$WORKDIR" --config.executor=ray \
  ${NUM_GPUS:+"--config.ray.num_gpus=$NUM_GPUS"} "$@"
