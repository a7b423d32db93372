#!/usr/bin/env bash
# Start the Ray head on this host (it also runs tasks with the CPUs/GPUs given here).
#   launch/ray_head.sh [--num-gpus=N] [--num-cpus=N]     # extra args go to `ray start`
# Then join workers with launch/ray_worker.sh <address printed below> and submit with
# launch/ray_submit.sh. Every host needs the same checkout (same path) or the run's
# config.ray.working_dir, the requirements (requirements.txt + requirements-ray.txt) and the data
# at $LFE_DATA_DIR (launch/README.md lists the paths each host needs).
set -euo pipefail
PORT="${RAY_PORT:-6379}"
# Tasks inherit this environment: the data folder, and no GPU memory grab by idle processes.
export LFE_DATA_DIR="${LFE_DATA_DIR:?set LFE_DATA_DIR to the CIFAR-10 binary folder on this host}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export RAY_USAGE_STATS_ENABLED=0
OUT="$(ray start --head --port="$PORT" --include-dashboard=false "$@" 2>&1 | tee /dev/stderr)"
# The address Ray itself gives ("ray start --address='<ip>:<port>'" in its output), not a guess:
# a host with several interfaces need not use the first one.
ADDRESS="$(printf '%s\n' "$OUT" | sed -n "s/.*ray start --address='\([^']*\)'.*/\1/p" | head -n 1)"
if [ -z "$ADDRESS" ]; then
  ADDRESS="$(python -c 'import ray; print(ray.util.get_node_ip_address())'):$PORT"
fi
echo "head at $ADDRESS  (export RAY_ADDRESS=$ADDRESS on the submitting host)"
