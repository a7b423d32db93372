#!/usr/bin/env bash
# Start the Ray head on this host (it also runs tasks with the CPUs/GPUs given here).
#   launch/ray_head.sh [--num-gpus=N] [--num-cpus=N]     # extra args go to `ray start`
# Then join workers with launch/ray_worker.sh <this host>:6379 and submit with launch/ray_submit.sh.
# Every host needs the same checkout (same path) or the run's config.ray.working_dir, the
# requirements (requirements.txt + requirements-ray.txt) and the data at $LFE_DATA_DIR.
set -euo pipefail
PORT="${RAY_PORT:-6379}"
# Tasks inherit this environment: the data folder, and no GPU memory grab by idle processes.
export LFE_DATA_DIR="${LFE_DATA_DIR:?set LFE_DATA_DIR to the CIFAR-10 binary folder on this host}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
ray start --head --port="$PORT" --include-dashboard=false "$@"
echo "head at $(hostname -I | awk '{print $1}'):$PORT  (export RAY_ADDRESS=<that> on the submitting host)"
