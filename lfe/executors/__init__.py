"""Executors: where candidate evaluations and grid cells run (``base`` has the protocol).

A registry by name, each a lazy ``"module:Class"`` so that making one imports only what it
needs (Ray only for ``ray``, JAX only for ``vmap``'s workers). Importing this package never
imports JAX (tested).

``auto``, every mode's default, follows the hardware when the executor is made (``resolve``):
on a host with accelerators (``lfe.executors.devices``: NVIDIA GPUs, TPU chips, or
``$LFE_ACCELERATORS``) it is ``devices``, one long-lived worker process per device; on a CPU host
it is ``pool``, one pinned single-threaded worker per core.
"""

from __future__ import annotations

from lfe.core import registry, retry
from lfe.executors import devices
from lfe.executors.base import InProcessExecutor, Outcome, call, ray_config  # noqa: F401 (API)
from lfe.executors.pool import single_thread_flags  # noqa: F401 (API)

_REGISTRY = {
    "inprocess": "lfe.executors.base:InProcessExecutor",
    "pool": "lfe.executors.pool:ProcessPoolExecutor",  # CPU: one pinned worker per core
    "devices": "lfe.executors.pool:DevicePoolExecutor",  # one worker per GPU / TPU chip
    "ray": "lfe.executors.ray_executor:RayExecutor",  # Ray: optional extra
    "vmap": "lfe.executors.vmap:PopulationExecutor",  # K candidates trained at once
}
AUTO = "auto"  # devices on a host with accelerators, else pool
NAMES = (AUTO, *_REGISTRY)


def check_name(name: str) -> None:
    """Raises ValueError for an unknown executor name (cheap: starts nothing)."""
    if name not in NAMES:
        raise ValueError(f"unknown executor {name!r}; available: {', '.join(NAMES)}")


def resolve(name: str) -> str:
    """The executor ``name`` stands for on this host: ``auto`` is ``devices`` where there are
    accelerators (``devices.local()``, no JAX imported), else ``pool``; others are themselves."""
    check_name(name)
    if name != AUTO:
        return name
    return "devices" if devices.local() else "pool"


def make(name: str, workers: int | None = None, ray_options=None):
    """An executor by name (``auto``: ``resolve``). ``workers``: tasks at once (pool: processes,
    default one per core; devices: processes, default one per device; ray: tasks in flight,
    default what the cluster fits; vmap: K, default measured); ``ray_options``: the fields of
    ``ray_config()``, used by ``ray`` only."""
    name = resolve(name)
    cls = registry.resolve(_REGISTRY[name], "executor")
    if name == "inprocess":
        return cls()
    if name == "ray":
        return cls(workers=workers, **dict(ray_options or {}))
    return cls(workers)


def runner(config, *, seeds: int | None = None, seed: int | None = None):
    """Adds the runner block to a mode's ``config`` — where and how its work runs — and returns
    it: ``executor``, ``workers``, ``ray`` (``ray_config()``), ``max_task_retries``
    (``lfe.core.retry``), ``data_dir`` and, for grid modes,
    ``seeds`` (an int n: seeds 0..n-1, or a list) or, for evolution, ``seed``.
    ``check_runner`` validates it."""
    config.executor = AUTO  # "auto": "devices" on an accelerator host, else "pool" (resolve);
    # "inprocess" (deterministic) | "pool" (CPU) | "devices" | "ray" | "vmap"
    config.workers = 0  # tasks at once; 0 = one per core (pool) / per device (devices) / what
    # the cluster fits (ray)
    config.ray = ray_config()  # address, resources, retries, timeout per task (executor "ray")
    config.max_task_retries = retry.DEFAULT_MAX_RETRIES  # re-runs of a task that raised or
    # crashed before it is recorded as failed; a lost worker or host is free (lfe.core.retry)
    config.data_dir = ""  # "" = $LFE_DATA_DIR, else tensorflow-datasets
    if seeds is not None:
        config.seeds = seeds
    if seed is not None:
        config.seed = seed
    return config


def _check(value, key: str, low: int, integer: bool = True) -> None:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
        raise ValueError(f"config.{key} must be {'an integer' if integer else 'a number'} "
                         f">= {low}, got {value!r}")


def check_runner(config) -> None:
    """Refuses a bad runner block (``runner``) with one line naming the key, before any work:
    an unknown executor, ``devices`` on a host without accelerators, negative workers, task
    retries or Ray resources, fewer than one seed. Fields the config lacks are not checked."""
    if "executor" in config:
        check_name(config.executor)
        if config.executor == "devices" and not devices.local():
            raise ValueError("config.executor 'devices' needs an accelerator and this host has "
                             "none; use 'auto' or 'pool'")
    if "workers" in config:
        _check(config.workers, "workers", 0)
    if "max_task_retries" in config:
        _check(config.max_task_retries, "max_task_retries", 0)
    for key, value in (config.get("ray") or {}).items():
        if key == "num_gpus" and value == -1:
            continue  # auto: 1 per task when the cluster has GPUs, else 0
        if key in ("num_cpus", "num_gpus", "max_retries", "timeout_s", "node_wait_s"):
            _check(value, f"ray.{key}", 0, integer=key == "max_retries")
    if "seed" in config:
        _check(config.seed, "seed", 0)
    seeds = config.get("seeds")
    if isinstance(seeds, list | tuple):
        if not seeds:
            raise ValueError("config.seeds must name at least one seed, got []")
        for s in seeds:
            _check(s, "seeds", 0)
    elif seeds is not None:
        _check(seeds, "seeds", 1)
