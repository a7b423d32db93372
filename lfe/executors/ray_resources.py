"""What a Ray cluster can run: the shape of a task (``num_cpus``, ``num_gpus``) against its nodes.

Pure functions of ``ray.nodes()``-style records (``{"Alive": bool, "Resources": {"CPU": 8.0,
"GPU": 1.0, ...}}``), so they are tested without Ray and the executor (``ray_executor``) asks the
cluster again whenever nodes may have joined or left:

- ``resolve_num_gpus``: ``num_gpus = -1`` (``AUTO``, the default) is one GPU per task when the
  cluster has GPUs, none (CPU-only tasks) otherwise;
- ``capacity``: how many tasks of a shape the live nodes run at once (a task runs on one node,
  so two 3-CPU nodes fit two 2-CPU tasks, not three);
- ``unfit``: one line when no live node can ever run the shape (a GPU task on a CPU-only
  cluster would otherwise wait for ever).
"""

from __future__ import annotations

import math

AUTO = -1.0  # num_gpus: 1 per task when the cluster has GPUs, else 0


def live(nodes: list[dict]) -> list[dict]:
    """The resources of the live nodes."""
    return [dict(n.get("Resources") or {}) for n in nodes if n.get("Alive", True)]


def resolve_num_gpus(requested: float, nodes: list[dict]) -> float:
    """``requested``, or for ``AUTO`` (any negative value): 1.0 when a live node has a GPU, else
    0.0."""
    if requested >= 0:
        return float(requested)
    return 1.0 if any(r.get("GPU", 0.0) >= 1.0 for r in live(nodes)) else 0.0


def fits(resources: dict, num_cpus: float, num_gpus: float) -> int:
    """How many tasks of this shape one node with ``resources`` runs at once (a task asking for
    nothing counts once)."""
    shares = [resources.get("CPU", 0.0) / num_cpus] if num_cpus > 0 else []
    if num_gpus > 0:
        shares.append(resources.get("GPU", 0.0) / num_gpus)
    return math.floor(min(shares) + 1e-9) if shares else 1


def capacity(nodes: list[dict], num_cpus: float, num_gpus: float) -> int:
    """Tasks of this shape the live ``nodes`` run at once (at least 1)."""
    return max(1, sum(fits(r, num_cpus, num_gpus) for r in live(nodes)))


def _summary(nodes: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in live(nodes):
        key = f"{r.get('CPU', 0.0):g} CPUs" + (f" + {r['GPU']:g} GPUs" if r.get("GPU") else "")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} × {key}" for key, n in sorted(counts.items()))


def unfit(nodes: list[dict], num_cpus: float, num_gpus: float) -> str | None:
    """None when some live node can run a task of this shape; else one line saying so, with the
    nodes there are and what to change."""
    alive = live(nodes)
    if any(fits(r, num_cpus, num_gpus) for r in alive):
        return None
    shape = f"num_cpus={num_cpus:g}, num_gpus={num_gpus:g}"
    if not alive:
        return f"the Ray cluster has no live node to run a task with {shape}; start its nodes"
    most_gpus = max(r.get("GPU", 0.0) for r in alive)
    if num_gpus > most_gpus:
        fix = (f"--config.ray.num_gpus={most_gpus:g} or less" if most_gpus else
               "--config.ray.num_gpus=0 (CPU-only tasks) or -1 (auto: 1 when there are GPUs)")
    else:  # enough GPUs somewhere, but not with enough CPUs beside them
        cpus = max(r.get("CPU", 0.0) for r in alive if r.get("GPU", 0.0) >= num_gpus)
        fix = f"--config.ray.num_cpus={cpus:g} or less"
    return (f"no node of the Ray cluster can run a task with {shape} (nodes: "
            f"{_summary(nodes)}); set {fix}, or add such a node")
