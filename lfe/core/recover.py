"""Rebuilding an evolution run's state from its logs when both state checkpoints are damaged.

``state.json`` and ``state.prev.json`` are written atomically, so a kill never damages both;
should a disk fault or a hand edit damage both anyway, the run refuses to restart over them, and

    python -m lfe.core.recover DIR

rebuilds the controller state from what the run directory logs apart from it: ``config.json``
(the settings and the seed), ``asked.jsonl`` (every candidate handed out, appended and fsynced
before it is submitted: ``log_asked``) and ``events.jsonl`` (every finished evaluation in the
order it was told, with its candidate). The initial genomes are drawn from the seed alone, so
the initial population is rebuilt even for a run older than ``asked.jsonl``. Rerunning the
run's command then resumes from the rebuilt state.

What the rebuilt state holds: every finished evaluation told again in its order (population,
ages, per-iteration log, best genomes, Figure 4's rows); candidates asked and not finished are
in flight, so the resumed run evaluates them again; an iteration number that no candidate
carries was skipped (every mutation failed) and is logged as skipped where it falls. What it
loses: failed attempts (retries count from zero again), and the random stream: it is seeded
again from (seed, next candidate id), so the search goes on as a valid run of the same config
but not as the uninterrupted one would have. The damaged checkpoints are kept beside it as
``*.damaged``. A finished evaluation whose genome no log holds (a child of a run older than
``asked.jsonl`` and the candidate in ``events.jsonl``) cannot be told again: then nothing is
rebuilt and the error names how many there are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from lfe.core import evolution, fileio, integrity, rundir
from lfe.core.state import Candidate, State

ASKED = "asked.jsonl"
DAMAGED = ".damaged"


def log_asked(workdir: str, candidates) -> None:
    """Appends the candidates just asked (``Candidate`` objects) to ``asked.jsonl``, fsynced:
    call it before they are submitted."""
    if not candidates:
        return
    with open(os.path.join(workdir, ASKED), "a") as f:
        for c in candidates:
            f.write(json.dumps(c.to_dict(), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_asked(workdir: str) -> dict[int, dict]:
    """Every complete line of ``asked.jsonl`` by candidate id (a line cut by a kill is skipped)."""
    path = os.path.join(workdir, ASKED)
    out: dict[int, dict] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    c = json.loads(line)
                    out.setdefault(int(c["id"]), c)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    return out


def params_of(config: dict) -> evolution.Params:
    """``evolution.Params`` from a run's ``config.json`` (fields it lacks keep their defaults)."""
    names = {f.name for f in dataclasses.fields(evolution.Params)}
    return evolution.Params(**{k: v for k, v in config.items() if k in names})


def _candidate(d: dict) -> Candidate:
    names = [f.name for f in dataclasses.fields(Candidate)]
    return Candidate(**{n: d[n] for n in names})


def _start(state: State, c: Candidate, children: set[int]) -> None:
    """Bookkeeping of asking child ``c``: a retry it answered is used up; a new iteration is
    started, after the skipped ones before it (numbers ``children`` lacks)."""
    if c.iteration is None:  # an initial genome's re-scoring, not a child
        return
    if c.failed_children:
        state.retries = [r for r in state.retries if r.iteration != c.iteration]
        return
    for skipped in range(state.iterations_started + 1, c.iteration):
        if skipped not in children:
            evolution._complete(state, skipped, "skipped_mutation")  # noqa: SLF001 - its log row
    state.iterations_started = max(state.iterations_started, c.iteration)


def _in_flight(state: State, c: Candidate, children: set[int]) -> State:
    """``state`` with ``c`` handed out as ``ask`` would have."""
    state = state.copy()
    queued = [q for q in state.initial_queue if q.id == c.id]
    if queued:
        state.initial_queue.remove(queued[0])
    else:
        _start(state, c, children)
    state.in_flight.append(c)
    return state


def _flying(state: State, cid: int) -> bool:
    return any(c.id == cid for c in state.in_flight)


def rebuild(params: evolution.Params, seed: int, events: list[dict],
            asked: dict[int, dict]) -> tuple[State, dict]:
    """The state that tells ``events`` (in order) after the candidates of ``asked``, and a
    summary (``told``, ``in_flight``, ``missing``: finished evaluations without a genome)."""
    state = evolution.init(params, seed)
    state, _, _ = evolution.ask(params, state, integrity.Archive(), 0)  # the initial genomes
    known = {c.id: c for c in state.initial_queue}
    for e in events:
        d = asked.get(e.get("id")) or e.get("candidate")
        if d is not None and e.get("id") not in known:
            known[e["id"]] = _candidate(d)
    for i, d in asked.items():
        known.setdefault(i, _candidate(d))
    children = {c.iteration for c in known.values() if c.iteration is not None
                and not c.failed_children}
    told, missing = set(), []
    for e in events:
        cid = e.get("id")
        if cid in told:
            continue
        if cid not in known:
            missing.append(cid)
            continue
        if not _flying(state, cid):  # a child paused at a rung is still in flight
            state = _in_flight(state, known[cid], children)
        state = evolution.tell(params, state, cid, e["record"])
        if not _flying(state, cid):  # told (not promoted at a rung)
            told.add(cid)
    if missing:
        raise ValueError(
            f"{len(missing)} finished evaluations in {rundir.EVENTS} (candidates "
            f"{', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}) have no "
            f"genome in {ASKED} or in the event (a run older than both); they cannot be "
            "told again")
    lost = sorted(set(range(max(known) + 1)) - set(known))
    if lost:  # candidate ids are archive rows: a hole would shift every later one
        raise ValueError(f"candidates {', '.join(map(str, lost[:5]))}"
                         f"{', ...' if len(lost) > 5 else ''} were asked but no {ASKED} holds "
                         "their genomes (a run older than it); the state cannot be rebuilt")
    initial = {c.id for c in state.initial_queue}
    for cid in sorted(set(known) - told):
        if (cid not in initial or cid in asked) and not _flying(state, cid):
            state = _in_flight(state, known[cid], children)
    state = state.copy()
    state.in_flight.sort(key=lambda c: c.id)
    state.next_id = max([state.next_id, *(i + 1 for i in known)])
    state.rng = np.random.default_rng([int(seed), state.next_id]).bit_generator.state
    return state, {"told": len(told), "in_flight": len(state.in_flight), "phase": state.phase,
                   "iterations": state.iterations_done}


def recover(workdir: str) -> dict:
    """Rebuilds ``workdir``'s state (``rebuild``) when neither checkpoint is good, keeping the
    damaged ones as ``*.damaged``; returns the summary. A ValueError (one line) when there is
    nothing to recover or it cannot be done."""
    config_path = os.path.join(workdir, rundir.CONFIG)
    if not os.path.exists(config_path):
        raise ValueError(f"{workdir} is not an evolve run directory (no {rundir.CONFIG})")
    config = fileio.read_json(config_path)
    if config.get("mode") != "evolve":
        raise ValueError(f"{workdir} holds a {config.get('mode')!r} run; only an evolve run "
                         "has a state to rebuild (the other modes keep one file per cell)")
    try:
        if rundir.load_state(workdir) is not None:
            raise ValueError(f"{workdir} has a good state checkpoint; nothing to recover "
                             "(rerun its command to resume)")
    except rundir.CorruptRunError:
        pass  # both checkpoints damaged: the case this command is for
    rundir.repair_events(workdir)
    state, summary = rebuild(params_of(config), int(config.get("seed", 0)),
                             rundir.read_events(workdir), read_asked(workdir))
    for name in (rundir.STATE, rundir.PREVIOUS):
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            os.replace(path, path + DAMAGED)
    rundir.save_state(workdir, state.to_dict())
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lfe.core.recover",
        description="Rebuild an evolve run's state.json from config.json, asked.jsonl and "
                    "events.jsonl when both state checkpoints are damaged; then rerun the "
                    "run's command to resume.")
    parser.add_argument("workdir", help="the run directory (--workdir of the evolve run)")
    args = parser.parse_args(argv)
    try:
        s = recover(args.workdir)
    except (ValueError, OSError) as e:
        print(f"lfe: error: {e}", file=sys.stderr)
        return 2
    print(f"rebuilt {os.path.join(args.workdir, rundir.STATE)}: {s['told']} finished "
          f"evaluations told again, {s['in_flight']} to evaluate again, phase {s['phase']}, "
          f"{s['iterations']} iterations done; the damaged checkpoints are *{DAMAGED}; rerun "
          "the run's command to resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
