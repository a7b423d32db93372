"""Functions the Ray executor tests run inside Ray workers (imported there by name, so this
module stays light: no JAX, no lfe controller code)."""

import os
import signal
import time

import ray

from tests import fake_fitness


def where(_=None):
    """What a task sees: its environment, GPUs, node and process."""
    env = {k: os.environ.get(k) for k in ("JAX_PLATFORMS", "XLA_FLAGS",
                                          "XLA_PYTHON_CLIENT_PREALLOCATE", "CUDA_VISIBLE_DEVICES")}
    time.sleep(0.3)  # long enough for the scheduler to spread a batch over both nodes
    return {"env": env, "gpus": ray.get_gpu_ids(), "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id()}


def boom(x):
    raise RuntimeError(f"bad input {x}")


def sleep_and_report(pid_file, seconds):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "woke"


def die_once(marker, value):
    """Kills its own worker process the first time (mid-task), returns ``value`` the next."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def killing_evaluate(spec, fitness_config, seed, stage="surrogate"):
    """The fake fitness; the first attempt at every eighth candidate kills its worker."""
    cid = int(spec["name"].removeprefix("candidate"))
    if cid % 8 == 1:
        die_once(os.path.join(fitness_config["kill_dir"], str(cid)), None)
    return fake_fitness.evaluate(spec, fitness_config, seed, stage)


def slow_evaluate(spec, fitness_config, seed, stage="surrogate"):
    time.sleep(0.4)  # a controller kill lands while candidates are in flight
    return fake_fitness.evaluate(spec, fitness_config, seed, stage)


def meet(directory, group, n):
    """Waits (120 s at most) until ``n`` tasks of ``group`` run at once, so each is on its own
    worker; returns what the task sees."""
    open(os.path.join(directory, f"{group}.{os.getpid()}"), "w").close()
    deadline = time.time() + 120
    while len([f for f in os.listdir(directory) if f.startswith(f"{group}.")]) < n:
        if time.time() > deadline:
            raise TimeoutError(f"only some of {n} tasks of {group} ran at once")
        time.sleep(0.05)
    return where()


def hold_once(marker, value):
    """The first attempt writes its pid to ``marker`` and sleeps (to be killed from outside);
    later attempts return ``value`` and their pid."""
    if not os.path.exists(marker):
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
        time.sleep(300)
    return {"value": value, "pid": os.getpid()}
