"""The training loop's rules, shared by ``train.run`` (one model) and ``population.run`` (K).

Both loops train in evaluation intervals: the step function sums the interval's loss and accuracy
on device and records the first step whose loss was non-finite (``train.accumulating_train_step``
from ``train.zero_totals()``), so the host syncs once per interval. The intervals end at
``eval_steps``. After each one, a candidate's ``Progress`` books it:

    progress = Progress(stop_rules(config))
    for boundary in eval_steps(steps, eval_every, [s for s, _ in progress.rules]):
        ...                                    # train steps_run+1 .. boundary, sum their totals
        if progress.diverged(totals):          # a non-finite loss: the run ends there
            break
        row = progress.record(boundary, totals, val_acc)   # curve row, bests, stop rules
        if not progress.running:               # a stop rule fired
            break
    return progress.result()

``population.run`` keeps one ``Progress`` per candidate and books the candidates still running.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

CurveRow = tuple[int, float, float | None, float]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Plain-data outcome of a run. `curve` rows: (step, train_acc, val_acc or None, loss)."""

    best_val_accuracy: float
    best_train_accuracy: float
    status: str  # "ok" | "stopped_early" | "diverged" | "paused" (at a rung: ``run``'s until)
    steps_run: int
    wall_time_s: float
    curve: tuple[CurveRow, ...]
    message: str = ""
    # where this session's wall time went (``lfe.training.train.run``): "setup_s" (state, data
    # to the device), "first_step_s" (the first step: its compile, or a compile-cache read),
    # "train_s" (the other steps, with the host's batch indices), "eval_s" (validation)
    timing: dict = dataclasses.field(default_factory=dict, compare=False)
    # the step this session started from (> 0: resumed from a checkpoint, ``train.run``)
    start_step: int = dataclasses.field(default=0, compare=False)


def stop_rules(config: Any) -> list[tuple[int, float]]:
    """The protocol's ``stop_rules`` as ``(at_step, threshold)`` pairs, sorted by step."""
    return sorted((int(s), float(a)) for s, a in (config.get("stop_rules") or ()))


def eval_steps(steps: int, eval_every: int, rule_steps: Iterable[int] = ()) -> list[int]:
    """Steps after which to evaluate: every ``eval_every``, at each of ``rule_steps`` (the stop
    rules' steps, phase ends) inside the run, and at the end. Raises ValueError unless both
    ``steps`` and ``eval_every`` are positive."""
    if steps <= 0 or eval_every <= 0:
        raise ValueError(f"need steps > 0 and eval_every > 0, got {steps} and {eval_every}")
    points = set(range(eval_every, steps, eval_every)) | {steps}
    return sorted(points | {s for s in rule_steps if 0 < s < steps})


class Progress:
    """One run's bookkeeping: its curve, best accuracies, stop rules, divergence and result.

    ``record`` books an interval; a stop rule ``(at_step, threshold)`` then stops the run
    ("stopped_early") if the best interval training accuracy by ``at_step`` is below
    ``threshold``. ``diverged`` ends the run ("diverged") at the step whose loss was non-finite;
    the best accuracies stay those booked before. ``totals`` are an interval's summed metrics
    on the host: ``{"loss", "accuracy", "first_nonfinite"}`` scalars (``train.zero_totals``).
    """

    def __init__(self, rules: Iterable[tuple[int, float]], start_time: float | None = None):
        self.rules = sorted(rules)  # those not yet decided
        self.start_time = time.perf_counter() if start_time is None else start_time
        self.best_val, self.best_train = 0.0, 0.0
        self.status, self.message = "ok", ""
        self.steps_run = 0  # the last booked step (or the step that diverged)
        self.wall_time_s = 0.0  # since start_time, when the last interval was booked
        self.curve: list[CurveRow] = []

    @property
    def running(self) -> bool:
        """Neither stopped early nor diverged."""
        return self.status == "ok"

    def pause(self) -> None:
        """Books the run as paused at its last booked step (a rung; ``train.run``'s until)."""
        self.status, self.message = "paused", f"paused at step {self.steps_run}"

    def diverged(self, totals: Mapping[str, Any]) -> bool:
        """True (and the run booked as diverged) if ``totals`` recorded a non-finite loss; the
        interval it ended is not booked, so the bests are those of the evaluations before it.
        What a search makes of a diverged run is ``fitness.scored_record``'s ``on_diverged``."""
        if totals["first_nonfinite"] < 0:
            return False
        self.steps_run = int(totals["first_nonfinite"]) + 1
        self.status, self.message = "diverged", f"non-finite loss at step {self.steps_run}"
        self.wall_time_s = time.perf_counter() - self.start_time
        return True

    def record(self, step: int, totals: Mapping[str, Any], val_acc: float | None) -> dict:
        """Books the interval that ends at ``step`` (its ``totals`` sum the steps since the last
        booked one) with its validation accuracy (None without validation data), then applies
        the stop rules due by ``step``. Returns the row as a log entry: ``{"step",
        "train_accuracy", "val_accuracy", "loss"}``."""
        interval = step - self.steps_run
        train_acc = float(totals["accuracy"]) / interval
        loss = float(totals["loss"]) / interval
        self.best_train = max(self.best_train, train_acc)
        self.best_val = max(self.best_val, val_acc) if val_acc is not None else self.best_val
        self.curve.append((step, train_acc, val_acc, loss))
        self.steps_run = step
        self.wall_time_s = time.perf_counter() - self.start_time
        failed = [(s, a) for s, a in self.rules if s <= step and self.best_train < a]
        self.rules = [(s, a) for s, a in self.rules if s > step]
        if failed:
            self.status = "stopped_early"
            self.message = (f"best train accuracy {self.best_train:.4f} < {failed[0][1]} "
                            f"after {failed[0][0]} steps")
        return {"step": step, "train_accuracy": train_acc, "val_accuracy": val_acc,
                "loss": loss}

    def to_dict(self) -> dict:
        """The bookkeeping as JSON-ready plain data (a mid-training checkpoint's); floats are
        Python floats, so a JSON round trip restores them exactly."""
        return {"rules": [list(r) for r in self.rules], "best_val": self.best_val,
                "best_train": self.best_train, "status": self.status, "message": self.message,
                "steps_run": self.steps_run, "wall_time_s": self.wall_time_s,
                "curve": [list(row) for row in self.curve]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], start_time: float | None = None) -> Progress:
        """The ``Progress`` that ``to_dict`` wrote, continuing now: its clock runs from
        ``start_time`` (default: now) minus the wall time already booked."""
        now = time.perf_counter() if start_time is None else start_time
        progress = cls([(int(s), float(a)) for s, a in data["rules"]],
                       now - float(data["wall_time_s"]))
        progress.best_val, progress.best_train = data["best_val"], data["best_train"]
        progress.status, progress.message = data["status"], data["message"]
        progress.steps_run, progress.wall_time_s = int(data["steps_run"]), data["wall_time_s"]
        progress.curve = [(int(s), t, v, loss) for s, t, v, loss in data["curve"]]
        return progress

    def result(self, wall_time_s: float | None = None) -> TrainResult:
        """The run's ``TrainResult``; its wall time is ``wall_time_s`` if given, else the time
        when the last interval was booked."""
        return TrainResult(
            best_val_accuracy=self.best_val,
            best_train_accuracy=self.best_train,
            status=self.status,
            steps_run=self.steps_run,
            wall_time_s=self.wall_time_s if wall_time_s is None else wall_time_s,
            curve=tuple(self.curve),
            message=self.message,
        )


__all__ = ["CurveRow", "Progress", "TrainResult", "eval_steps", "stop_rules"]
