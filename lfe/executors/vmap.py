"""The ``vmap`` executor: K queued candidate evaluations trained at once as one population.

Runs in this process on its default device. Consecutive ``lfe.worker:evaluate_candidate``
tasks with the same fitness config and stage are grouped, up to K, into one
``lfe.worker:evaluate_candidates`` call (``lfe.training.population``: parameters with a leading
K axis, one vmapped step); any other task runs alone, like ``inprocess``.

K = ``workers`` when given. Otherwise (``workers`` 0, mode "auto") it is chosen for each kind
of evaluation when its first task is submitted (``lfe.worker.population_k``,
``lfe.training.k_choice``): candidate-steps/s of the stage protocol's step measured on this
device at K = 1 (sequential), 2, 4, ... while each doubling gains >= 10%, so the choice is never
slower than sequential by measurement; kept per device kind and protocol shape in this process
and in ``~/.cache/lfe/k_choice.json``; on XLA:CPU the measured table
``population.MEASURED_K`` answers 1 without measuring (vmapped convolutions run slower there).
K = 1 runs each candidate as ``inprocess`` would. ``capacity`` is the K of the latest submitted
evaluation's kind (1 until the first is chosen), which the modes read before asking for more.
"""

from __future__ import annotations

import json

from lfe import worker
from lfe.executors.base import Outcome, call


class PopulationExecutor:
    """``evaluate_candidate`` tasks K at a time, in submission order; others one by one."""

    def __init__(self, workers: int | None = None, mode: str = "auto"):
        self.capacity = worker.candidates_per_population(mode, int(workers or 0))
        self._choose = mode == "auto" and not workers  # measure K per kind of evaluation
        self._k: dict[str, int] = {}  # group key -> its K (chosen ones)
        self._queue: list[tuple[str, str, tuple]] = []

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, key: str, target: str, *args) -> None:
        same = self._group_key(target, args)
        if same is not None and self._choose:
            if same not in self._k:
                spec, config, _, *stage = args[:4]
                try:
                    choice = worker.population_k(spec, config, *stage)
                    self._k[same], text = int(choice["k"]), choice["text"]
                except Exception as e:  # noqa: BLE001 (the evaluation itself will report it)
                    self._k[same] = self.capacity
                    text = f"K = {self.capacity} (not chosen: {type(e).__name__}: {e})"
                print(f"vmap executor: {text}", flush=True)
            self.capacity = self._k[same]
        self._queue.append((key, target, args))

    @staticmethod
    def _group_key(target: str, args: tuple) -> str | None:
        """What tasks must share to train together (None: not an evaluation)."""
        if target != worker.EVALUATE:
            return None
        _, config, _, *rest = args
        rung = rest[2] if len(rest) > 2 else None  # (stage, checkpoint folder, rung)
        return json.dumps([config, rest[0] if rest else "surrogate", rung], sort_keys=True)

    def wait_any(self) -> list[tuple[str, Outcome]]:
        if not self._queue:
            return []
        key, target, args = self._queue.pop(0)
        same = self._group_key(target, args)
        size = self._k.get(same, self.capacity) if same is not None else 1
        if size == 1:
            return [(key, call(target, args))]
        group, rest = [(key, args)], []
        for task in self._queue:
            if len(group) < size and self._group_key(task[1], task[2]) == same:
                group.append((task[0], task[2]))
            else:
                rest.append(task)
        self._queue = rest
        _, config, _, *stage = args[:4]  # a population run keeps no mid-training checkpoints
        rung = tuple(args[5:6])  # a child in rungs: trained again from step 0 to its rung
        outcome = call(worker.EVALUATE_MANY, ([a[0] for _, a in group], config,
                                              [a[2] for _, a in group], *(stage or ["surrogate"]),
                                              *rung))
        if outcome.error is not None:
            return [(k, outcome) for k, _ in group]
        return [(k, Outcome(value=v)) for (k, _), v in zip(group, outcome.value, strict=True)]

    def close(self) -> None:
        self._queue.clear()
