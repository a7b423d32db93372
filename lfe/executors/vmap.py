"""The ``vmap`` executor: K queued candidate evaluations trained at once as one population.

Runs in this process on its default device. Consecutive ``lfe.worker:evaluate_candidate``
tasks with the same fitness config and stage are grouped, up to K, into one
``lfe.worker:evaluate_candidates`` call (``lfe.training.population``: parameters with a leading
K axis, one vmapped step); any other task runs alone, like ``inprocess``. K = ``workers``, or
the measured best for this process's JAX backend (``lfe.training.population.default_k``: 1,
i.e. sequential, on XLA:CPU, where vmapped convolutions run slower).
"""

from __future__ import annotations

import json

from lfe import worker
from lfe.executors.base import Outcome, call


class PopulationExecutor:
    """``evaluate_candidate`` tasks K at a time, in submission order; others one by one."""

    def __init__(self, workers: int | None = None, mode: str = "auto"):
        self.capacity = worker.candidates_per_population(mode, int(workers or 0))
        self._queue: list[tuple[str, str, tuple]] = []

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, key: str, target: str, *args) -> None:
        self._queue.append((key, target, args))

    @staticmethod
    def _group_key(target: str, args: tuple) -> str | None:
        """What tasks must share to train together (None: not an evaluation)."""
        if target != worker.EVALUATE:
            return None
        _, config, _, *rest = args
        return json.dumps([config, rest[0] if rest else "surrogate"], sort_keys=True)

    def wait_any(self) -> list[tuple[str, Outcome]]:
        if not self._queue:
            return []
        key, target, args = self._queue.pop(0)
        same = self._group_key(target, args)
        if same is None or self.capacity == 1:
            return [(key, call(target, args))]
        group, rest = [(key, args)], []
        for task in self._queue:
            if len(group) < self.capacity and self._group_key(task[1], task[2]) == same:
                group.append((task[0], task[2]))
            else:
                rest.append(task)
        self._queue = rest
        _, config, _, *stage = args[:4]  # a population run keeps no mid-training checkpoints
        outcome = call(worker.EVALUATE_MANY, ([a[0] for _, a in group], config,
                                              [a[2] for _, a in group], *stage))
        if outcome.error is not None:
            return [(k, outcome) for k, _ in group]
        return [(k, Outcome(value=v)) for (k, _), v in zip(group, outcome.value, strict=True)]

    def close(self) -> None:
        self._queue.clear()
