"""A slow fake evaluation that leaves its worker's pid behind, for the tests that stop or kill a
controller while candidates are in flight (tests/test_stop.py).

Configured by the environment, which reaches spawned pool workers: ``LFE_TEST_SLEEP_S`` (seconds
per evaluation, default 0.5) and ``LFE_TEST_PID_DIR`` (an empty file named by each worker's pid).
A light module: workers import it by name.
"""

import os
import time

from tests import fake_fitness


def evaluate(spec: dict, fitness_config: dict, seed: int, stage: str = "surrogate",
             *rest) -> dict:
    del rest
    pid_dir = os.environ.get("LFE_TEST_PID_DIR")
    if pid_dir:
        open(os.path.join(pid_dir, str(os.getpid())), "w").close()
    time.sleep(float(os.environ.get("LFE_TEST_SLEEP_S", "0.5")))
    return fake_fitness.evaluate(spec, fitness_config, seed, stage)
