#!/usr/bin/env bash
# Run an lfe job whose evaluations are Ray tasks on the cluster at $RAY_ADDRESS.
#   RAY_ADDRESS=<head>:6379 launch/ray_submit.sh configs/surrogate.py runs/surrogate [--config.x=y ...]
# The controller (this process) keeps the run directory on this host and holds all evolution
# state; rerunning the same command after a crash resumes it (in-flight candidates are
# submitted again). Defaults: one candidate per GPU; override with --config.ray.num_gpus=0.5
# (two small surrogates per GPU) or --config.ray.num_gpus=0 (CPU-only tasks).
set -euo pipefail
CONFIG="${1:?usage: launch/ray_submit.sh <config.py[:variant]> <workdir> [--config.x=y ...]}"
WORKDIR="${2:?usage: launch/ray_submit.sh <config.py[:variant]> <workdir> [--config.x=y ...]}"
shift 2
: "${RAY_ADDRESS:?set RAY_ADDRESS=<head-host>:6379 (see launch/ray_head.sh)}"
cd "$(dirname "$0")/.."
export RAY_ADDRESS
exec python -m lfe.main --config="$CONFIG" --workdir="$WORKDIR" \
  --config.executor=ray --config.ray.num_gpus="${NUM_GPUS:-1}" "$@"
