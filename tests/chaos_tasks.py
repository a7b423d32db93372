"""Evaluations that misbehave on purpose, for the failure-policy and chaos tests.

``evaluate`` is the fake fitness (``tests/fake_fitness.py``) plus chaos, set by the fitness
config's ``chaos`` block (``chaos_config``):

- ``raise``: candidate ids whose evaluation always raises ``RuntimeError: poison candidate <id>``;
- ``crash``: candidate ids whose evaluation always ends its worker process (``os._exit(70)``:
  an exit status, the task's own doing);
- ``kill_rate``, ``max_kills``, ``seed``: every other evaluation is killed mid-task by SIGKILL
  (a kill from outside, as a preemption or the OOM killer would) with probability ``kill_rate``,
  at most ``max_kills`` times per candidate; the draw is a function of the seed, the candidate
  and how often it was killed before, so a run's kills are reproducible.

Each kill and crash leaves a marker file in ``dir`` (``kill.<id>.<n>``, ``crash.<id>.<n>``),
which is how tests count them across worker processes and hosts. A light module (no JAX, no
Ray): pool and Ray workers import it by name. ``get_config(path)`` loads a config from a JSON
file, so a controller started as a subprocess (``tests.drive``) runs a test's exact config.
"""

import json
import os
import random
import signal
import time

from tests import fake_fitness

CRASH_STATUS = 70


def chaos_config(directory: str, *, poison_raise=(), poison_crash=(), kill_rate: float = 0.0,
                 max_kills: int = 0, seed: int = 0) -> dict:
    """The fitness config's ``chaos`` block (plain data: it travels with every task)."""
    os.makedirs(directory, exist_ok=True)
    return {"dir": str(directory), "raise": list(poison_raise), "crash": list(poison_crash),
            "kill_rate": float(kill_rate), "max_kills": int(max_kills), "seed": int(seed)}


def markers(directory: str, kind: str) -> dict[int, int]:
    """Candidate id -> how many ``kind`` ("kill" or "crash") markers it left."""
    out: dict[int, int] = {}
    for name in os.listdir(directory):
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == kind:
            out[int(parts[1])] = out.get(int(parts[1]), 0) + 1
    return out


def _mark(directory: str, kind: str, cid: int) -> int:
    """Leaves the next ``kind`` marker of ``cid``; returns how many there were before."""
    n = 0
    while True:
        try:
            os.close(os.open(os.path.join(directory, f"{kind}.{cid}.{n}"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n
        except FileExistsError:
            n += 1


def evaluate(spec: dict, fitness_config: dict, seed: int, stage: str = "surrogate",
             *rest) -> dict:
    chaos = fitness_config.get("chaos") or {}
    cid = int(spec["name"].removeprefix("candidate"))
    if cid in chaos.get("raise", ()):
        raise RuntimeError(f"poison candidate {cid}")
    if cid in chaos.get("crash", ()):
        _mark(chaos["dir"], "crash", cid)
        os._exit(CRASH_STATUS)
    if chaos.get("kill_rate"):
        kills = markers(chaos["dir"], "kill").get(cid, 0)
        draw = random.Random(f"{chaos['seed']}:{cid}:{kills}").random()
        if kills < chaos["max_kills"] and draw < chaos["kill_rate"]:
            _mark(chaos["dir"], "kill", cid)
            time.sleep(0.05)  # mid-task: the other workers are busy too
            os.kill(os.getpid(), signal.SIGKILL)
    return fake_fitness.evaluate(spec, fitness_config, seed, stage)


def train_cell(spec: dict, protocol: dict, dataset: str, data_dir: str, seed: int,
               *rest) -> dict:
    """The fake training cell (``tests/fake_training.py``); raises for seed
    ``protocol["poison_seed"]`` while the file ``protocol["poison_file"]`` exists."""
    from tests import fake_training

    if seed == protocol.get("poison_seed") and os.path.exists(protocol.get("poison_file", "")):
        raise RuntimeError(f"poison cell seed {seed}")
    return fake_training.train(spec, protocol, dataset, data_dir, seed, *rest[:2])


# --------------------------------------------------------------------------- pool worker tasks

def where(seconds: float, pid_file: str = "") -> tuple[int, list[int]]:
    """This worker's pid and cores, after ``seconds`` (its pid first goes to ``pid_file``)."""
    if pid_file:
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(pid_file + ".tmp", pid_file)
    time.sleep(seconds)
    return os.getpid(), sorted(os.sched_getaffinity(0))


def die(how: str, after: float = 0.0) -> None:
    """Ends this worker process after ``after`` seconds: ``exit`` (status 3), or by a signal it
    sends itself (``SIGSEGV``, ``SIGKILL``, ...)."""
    import resource

    time.sleep(after)
    if how == "exit":
        os._exit(3)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a fault signal leaves no core file
    os.kill(os.getpid(), getattr(signal, how))
    time.sleep(10)  # a signal whose handler returns: never reached for these


def hold(directory: str, name: str) -> str:
    """A Ray task that says where it runs (``<directory>/started.<name>``: its node id), then
    waits for ``<directory>/release`` (a minute at most) and returns its node id."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    with open(os.path.join(directory, f"started.{name}"), "w") as f:
        f.write(node)
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(directory, "release")) and time.time() < deadline:
        time.sleep(0.05)
    return node


def get_config(path: str):
    """A config from its JSON (``--config=tests/chaos_tasks.py:<path>``)."""
    import ml_collections

    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))
