"""An evolution run's progress, for the people watching it: the run's clock across resumes, the
ETA, the progress line and summary, and the per-evaluation TensorBoard scalars rebuilt from the
state. Plain data and pure functions; ``lfe.experiments.evolve`` calls them.

Clock. A run's elapsed time is the sum of its sessions' (an invocation is a session), kept in
``state.json`` beside the controller's state (``rundir.save_state(elapsed=)``), so a resumed run
goes on counting where the last checkpoint left it; time between sessions does not count.

ETA. Timed in this session only (a resumed run may run on other hardware), from the first
evaluation it tells (evaluations told from ``events.jsonl`` on a resume are not timed): seconds
per evaluation of the phase the run is in (initial population, re-scoring, evolution) times the
evaluations left. Evaluations in flight count as half done, so the first estimate with k workers
is not k times too long. An iteration costs the evaluations per iteration seen so far (a failed
child sends its iteration back for another); until the run is in the evolution phase, an
iteration is taken to cost one evaluation of the current phase, and a new phase costs what the
one before did until an evaluation of its own is told.

Scalars. TensorBoard shows, at step n (the n-th told evaluation): ``evaluated``,
``iterations`` (completed so far), ``population/best|mean|median`` (after that evaluation, from
the start of evolution: the rows of ``state.log``, as Figure 4) and ``candidate/fitness`` (of
that evaluation, when it has one). ``history_scalars`` recomputes every step from the state,
which is what a resumed run writes afresh, so steps whose event file a ``kill -9`` cut short are
not lost. Each step shows the last row completed by then, so its statistics are exact; an
iteration
skipped because no mutation passed the check completes between two evaluations and is counted
from the evaluation after the one before it (the live run may count it one or more evaluations
later).
"""

from __future__ import annotations

import dataclasses
import math

from lfe.core import records

FITNESS_KEYS = ("best", "mean", "median", "best_evaluated")  # summary values that are fitness


def percent(value: float | None) -> str:
    """A fitness in [0, 1] as ``"41.20%"`` (``"-"`` for none)."""
    return "-" if value is None else f"{100 * value:.2f}%"


def duration(seconds: float) -> str:
    """``"42 s"``, ``"12.3 min"``, ``"2 h 05 min"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


@dataclasses.dataclass(frozen=True)
class Clock:
    """``before``: seconds the run's earlier sessions took; ``start``: this session's start."""

    before: float
    start: float

    def elapsed(self, now: float) -> float:
        return self.before + max(0.0, now - self.start)


def kind(e) -> str:
    """``"initial"``, ``"rescore"`` (an initial member scored again on the surrogate before
    evolution starts: a surrogate candidate without an iteration) or ``"child"``."""
    if e.stage == "initial":
        return "initial"
    return "rescore" if e.iteration is None else "child"


@dataclasses.dataclass(frozen=True)
class Pace:
    """This session's timing of the phase the run is in: since when, how many evaluations had
    been told then, and the seconds per evaluation of the phase before (None: not timed)."""

    phase: str
    since: float
    told: int
    before: float | None = None


def start_pace(state, now: float) -> Pace:
    """A session's pace, started after the evaluations it only replayed."""
    return Pace(state.phase, now, len(state.evaluated))


def observe(pace: Pace, state, now: float) -> Pace:
    """``pace`` after a tell: a new phase is timed from now on, the one that ended keeps its
    seconds per evaluation (what the next phase costs until it is timed itself)."""
    if state.phase == pace.phase:
        return pace
    timed = len(state.evaluated) - pace.told
    per = (now - pace.since) / timed if timed else pace.before
    return Pace(state.phase, now, len(state.evaluated), per)


def eta(pace: Pace, state, *, initial_population: int, max_iterations: int, rescore: int = 0,
        now: float) -> float | None:
    """Seconds left by this session's pace (module docstring), or None before it has timed an
    evaluation. ``rescore``: how many members will be scored again before evolution starts."""
    running = len(state.in_flight) / 2  # in flight: half done, on average
    timed = len(state.evaluated) - pace.told
    per = (now - pace.since) / (timed + running) if timed else pace.before
    if per is None:
        return None
    kinds = [kind(e) for e in state.evaluated]
    if state.phase == "initial":
        left = initial_population - kinds.count("initial") + rescore + max_iterations
    elif state.phase == "rescore":
        initial = {e.id for e in state.evaluated if e.stage == "initial"}
        left = sum(m.id in initial for m in state.population) + max_iterations
    else:
        done = state.iterations_done
        left = (max_iterations - done) * max(1.0, kinds.count("child") / done if done else 1.0)
    return per * max(0.0, left - running)


def budget_eta(eta_s: float | None, state, *, hours_left_s: float | None = None,
               max_core_hours: float = 0.0, max_steps: int = 0,
               parallel: int = 1) -> float | None:
    """``eta_s`` capped by the run's budgets, which end it before ``max_iterations`` when they
    run out first: ``hours_left_s`` (``max_hours``' wall-clock seconds left this session),
    ``max_core_hours`` (training time over all sessions, ``core_hours``), whose core-seconds
    left ``parallel`` evaluations spend side by side (the executor's capacity: one core each
    on the pool), and ``max_steps`` (``steps_spent``), its steps left at the core-seconds per
    step spent so far. None stays None unless a budget gives a bound."""
    bounds = [] if eta_s is None else [eta_s]
    if hours_left_s is not None:
        bounds.append(max(0.0, hours_left_s))
    if max_core_hours:
        left = max(0.0, max_core_hours - core_hours(state)) * 3600
        bounds.append(left / max(1, parallel))
    spent = steps_spent(state)
    if max_steps and spent:
        per_step = core_hours(state) * 3600 / spent
        bounds.append(max(0, max_steps - spent) * per_step / max(1, parallel))
    return min(bounds) if bounds else None


def line(state, candidate_id: int, record: dict, *, initial_population: int,
         max_iterations: int, max_failed_children: int, elapsed: float,
         eta_s: float | None) -> str:
    """The progress line of one told evaluation. An initial genome reads ``[initial k/N]`` (k
    told so far), a re-scoring ``[rescore k/P]``; a child reads ``[iter i/M]`` with its own
    iteration i, also when it failed and the iteration goes on with another child."""
    e = state.entry(candidate_id)
    fit = record.get("fitness")
    outcome = record["status"] + ("" if fit is None else f" {percent(fit)}")
    if record["status"] == "stopped_at_rung":  # which rung, and its rank there
        outcome += f" ({record.get('message')})"
    what = kind(e)
    if what == "initial":
        done = sum(kind(x) == "initial" for x in state.evaluated)
        head = f"[initial {done}/{initial_population}] cand {e.id}"
    elif what == "rescore":
        done = sum(kind(x) == "rescore" for x in state.evaluated)
        head = f"[rescore {done}/{len(state.population)}] cand {e.id} (re-scores {e.parent})"
    else:
        head = f"[iter {e.iteration}/{max_iterations}] cand {e.id} (child of {e.parent})"
        if records.is_failed(record):
            failed = e.failed_children + 1
            outcome += (f", failed child {failed}/{max_failed_children}"
                        + ("; iteration skipped" if failed >= max_failed_children
                           else "; another child"))
    best = [x.fitness for x in state.evaluated if not records.is_failed(x.record)]
    parts = [f"{head}: {outcome}", f"best so far {percent(max(best) if best else None)}",
             f"evaluated {len(state.evaluated)}"]
    if state.phase == "evolve":
        parts.append(f"iterations done {state.iterations_done}/{max_iterations}")
    parts.append(f"elapsed {duration(elapsed)}")
    if eta_s is not None and not (state.phase == "evolve"
                                  and state.iterations_done >= max_iterations):
        parts.append(f"ETA {duration(eta_s)}")
    return "  ".join(parts)


def rung_line(candidate: dict, arrival, schedule, max_iterations: int) -> str:
    """The line of a child promoted at a rung (it trains on: nothing is told yet)."""
    k = arrival.rung
    nxt = f"step {schedule.steps[k + 1]}" if k + 1 < schedule.top else "the end"
    return (f"[iter {candidate['iteration']}/{max_iterations}] cand {candidate['id']} "
            f"(child of {candidate['parent']}): rung {k + 1}/{schedule.top} (step "
            f"{schedule.steps[k]}) best {schedule.score} accuracy {percent(arrival.score)}, "
            f"promoted; trains on to {nxt}")


def summary_lines(summary: dict, elapsed: float | None = None) -> list[str]:
    """``evolution.summary`` as ``key: value`` lines, fitness values as percentages (``best``,
    ``mean``, ``median`` are the population's; ``best_evaluated`` the best ever evaluated)."""
    out = [f"{key}: {percent(value) if key in FITNESS_KEYS else value}"
           for key, value in summary.items()]
    if elapsed is not None:
        out.append(f"elapsed: {duration(elapsed)} (all sessions)")
    return out


def scalars(evaluated: int, row, fitness: float | None) -> dict:
    """The TensorBoard scalars of step ``evaluated``, after the log row ``row`` (None before
    the first): its iterations and population statistics (module docstring)."""
    out = {"evaluated": evaluated, "iterations": 0 if row is None else row.iteration}
    if row is not None:
        out |= {f"population/{k}": getattr(row, k) for k in ("best", "mean", "median")
                if getattr(row, k) is not None}
    if fitness is not None:
        out["candidate/fitness"] = fitness
    return out


def step_scalars(state, candidate_id: int) -> dict:
    """The scalars of the evaluation just told: ``history_scalars``' last step, except that an
    iteration skipped for want of a mutation counts from the first evaluation told after it
    (``history_scalars`` may count it earlier)."""
    return scalars(len(state.evaluated), state.log[-1] if state.log else None,
                   state.entry(candidate_id).fitness)


def _visible_at(state) -> list[int]:
    """For each row of ``state.log``, the index of the first told evaluation that saw it."""
    position = {e.id: i for i, e in enumerate(state.evaluated)}
    last_before_children, last_of_iteration = -1, {}
    for i, e in enumerate(state.evaluated):
        if kind(e) == "child":
            last_of_iteration[e.iteration] = i
        else:  # the evolution starts with the last initial evaluation or re-scoring
            last_before_children = i
    at, previous = [], -1
    for row in state.log:
        if row.outcome == "initial":
            previous = last_before_children
        elif row.child is not None:
            previous = position[row.child]
        elif row.outcome == "skipped_failed_children":
            previous = last_of_iteration[row.id]
        else:  # skipped_mutation: completed in an ask, seen by the next evaluation told
            previous += 1
        at.append(previous)
    return at


def history_scalars(state) -> list[tuple[int, int, dict]]:
    """``(step, candidate id, scalars)`` for every told evaluation, recomputed from the state."""
    at, rows = _visible_at(state), state.log
    out, k = [], -1  # rows[k]: the last row seen
    for i, e in enumerate(state.evaluated):
        while k + 1 < len(rows) and at[k + 1] <= i:
            k += 1
        out.append((i + 1, e.id, scalars(i + 1, rows[k] if k >= 0 else None, e.fitness)))
    return out


def _paused_tasks(state) -> list:
    """The rung tasks of children still in flight (their records are not told yet)."""
    flying = {c.id for c in state.in_flight}
    return [a for a in state.rung_log if a.id in flying]


def steps_spent(state) -> int:
    """Training steps spent so far: the evaluations' (gate and surrogate run, every task of a
    child trained in rungs) and those of the tasks of children paused at a rung."""
    return (sum(int(e.record.get("steps") or 0) for e in state.evaluated)
            + sum(a.steps for a in _paused_tasks(state)))


def core_hours(state) -> float:
    """Training time spent so far: the evaluations' wall times (each on one core with the pool
    executor), with the tasks of children paused at a rung, in hours."""
    return math.fsum([float(e.record.get("wall_time_s") or 0.0) for e in state.evaluated]
                     + [a.wall_time_s for a in _paused_tasks(state)]) / 3600
