"""``mode: eliminate`` — the loss function elimination protocol (paper §3.9).

The best ``keep[0]`` genomes of an evolution run directory (150 in the paper) are trained on
progressive phase 1; the best ``keep[1]`` (50) are retrained *from scratch* on phases 1–2, the
best ``keep[2]`` (25) on phases 1–3 and the best ``keep[3]`` (10) on phases 1–4. "Phases 1..k"
is the protocol with ``phases[:k]`` and ``steps`` = the sum of their steps (names.md); one
optimizer and schedule (``total_steps`` of the protocol) runs across them. Losses are compared
by validation accuracy (best over the run's evaluations), the mean over ``seeds``.

Candidates are the run's genomes scored by ``candidates_stage`` ("surrogate" by default: the
children scored with the search's surrogate; the initial population's fitness comes from another
protocol, the ConvNet, so ranking both together mixes two scales; "" takes every evaluated
genome, "initial" the initial population only). ``groups`` > 1 splits them, best first, into
that many runs of ``keep[0]`` each that are eliminated separately, and ``finalists`` > 0 keeps
only that many of each group's last stage: the authors' script (two halves of 75, trained
75 → 25 → 12 → 6, best 4 of each kept; ``configs/eliminate.py:authors``).

Run directory (``--workdir``):
  config.json        the config; a rerun with another protocol, keep, source or dataset is refused
  candidates.json    the genomes taken from the evolution run (frozen at the first run, so the
                     source may keep evolving without changing this elimination)
  cells/stage<k>/<loss>__seed<s>.json   one finished training (loss spec, seed, protocol, git
                     revision, accuracy, curve), written atomically as it finishes: a rerun after
                     a crash retrains nothing that has a file
  elimination.json   per stage: entrants, ranking, survivors; and the finalists
  finalists/<rank>_<loss>.json   the last stage's ranking as loss files
  (``lfe.training.losses.resolve``)
  results.md, results.csv        the stage tables

``references`` (cross-entropy by default) are trained in every stage beside the candidates for
comparison; they are never eliminated and never finalists.
"""

from __future__ import annotations

import os

import ml_collections

from lfe.core import evolution, fileio, rundir
from lfe.core.state import State
from lfe.experiments import cells, defaults, tables
from lfe.training import losses, progressive


def stage_protocol(protocol: dict, k: int) -> dict:
    """The protocol trained in stage ``k`` (1-based): phases 1..k, steps = their sum."""
    n = len(protocol.get("phases") or ())
    if not 1 <= k <= n:
        raise ValueError(f"stage {k} needs phases 1..{k}, but the protocol has {n} phases "
                         "(set protocol.phases)")
    return rundir.to_plain(progressive.first_phases(ml_collections.ConfigDict(protocol), k))


def select_candidates(source: str, k: int, stage: str = "") -> list[dict]:
    """The top ``k`` evaluated genomes of evolution run ``source`` (fittest first)."""
    saved = rundir.load_state(source)
    if saved is None:
        raise ValueError(f"no evolution run in {source!r} (state.json missing); set "
                         "config.source to an evolve --workdir")
    state = State.from_dict(saved)
    top = evolution.best(state, k, stage=stage or None)
    if not top:
        scored = f" scored by the {stage} stage (candidates_stage)" if stage else ""
        raise ValueError(f"evolution run {source!r} has no successfully evaluated genome"
                         f"{scored} yet" + ("; set candidates_stage='' to take every evaluated "
                                            "genome" if stage else ""))
    return [{"name": f"cand{b['id']}", "id": b["id"], "genome": b["genome"], "sign": b["sign"],
             "equation": b["equation"], "search_fitness": b["fitness"], "stage": b["stage"]}
            for b in top]


def _groups(config) -> int:
    return int(config.get("groups", 1) or 1)


def _candidates(config, workdir: str) -> list[dict]:
    path = os.path.join(workdir, "candidates.json")
    if os.path.exists(path):
        return fileio.read_json(path)
    found = select_candidates(config.source, int(config.keep[0]) * _groups(config),
                              config.candidates_stage)
    fileio.write_json_atomic(path, found)
    return found


def _spec(candidate: dict) -> dict:
    return {"name": candidate["name"], "genome": candidate["genome"], "sign": candidate["sign"]}


def rank(records: list[dict], names: list[str]) -> list[dict]:
    """``names`` best first by mean accuracy over their records; a diverged run counts as the
    worst value (its partial accuracy never wins), ties break by name."""
    rows = []
    for name in names:
        mine = [r for r in records if r["loss"] == name]
        values = [cells.accuracy(r) for r in mine]
        score = -1.0 if any(r["status"] == "diverged" for r in mine) or not values \
            else sum(values) / len(values)
        rows.append({"loss": name, "score": score, "values": values,
                     "statuses": sorted({r["status"] for r in mine})})
    return sorted(rows, key=lambda r: (-r["score"], r["loss"]))


def _seeds(config) -> list[int]:
    return list(range(config.seeds)) if isinstance(config.seeds, int) else list(config.seeds)


def stage_cells(config, k: int, entrants: list[dict], refs: dict[str, dict]) -> list[cells.Cell]:
    protocol = stage_protocol(rundir.to_plain(config.protocol), k)
    data_dir = config.get("data_dir", "")
    specs = {c["name"]: (_spec(c), c.get("id")) for c in entrants}
    specs |= {name: (spec, None) for name, spec in refs.items()}
    return [cells.Cell(f"stage{k}/{cells.safe_name(name)}__seed{s}",
                       {"loss": name, "candidate": cid, "stage": k, "seed": s, "spec": spec,
                        "dataset": config.dataset, "protocol": protocol},
                       (spec, protocol, config.dataset, data_dir, s))
            for s in _seeds(config) for name, (spec, cid) in specs.items()]


def _check(config) -> None:
    keep = [int(n) for n in config.keep]
    if not keep or any(b > a for a, b in zip(keep, keep[1:], strict=False)) or min(keep) < 1:
        raise ValueError(f"keep must be positive and non-increasing, got {keep}")
    if _groups(config) < 1 or int(config.get("finalists", 0) or 0) < 0:
        raise ValueError(f"groups must be >= 1 and finalists >= 0 (0 = all of the last stage), "
                         f"got {config.get('groups')} and {config.get('finalists')}")
    stage_protocol(rundir.to_plain(config.protocol), len(keep))  # enough phases


def run(config, workdir: str) -> dict:
    defaults.check(config)
    _check(config)
    refs = {n: losses.to_spec(losses.resolve(n)) for n in
            [s.strip() for s in (config.references or "").split(",") if s.strip()]}
    os.makedirs(workdir, exist_ok=True)
    with rundir.lock(workdir):  # one controller per run directory
        return _run(config, workdir, refs)


def _run(config, workdir: str, refs: dict[str, dict]) -> dict:
    rundir.claim(workdir, config, fixed=("protocol", "keep", "source", "dataset", "seeds",
                                          "references", "candidates_stage", "groups",
                                          "finalists"))
    candidates = _candidates(config, workdir)
    by_name = {c["name"]: c for c in candidates}
    first = int(config.keep[0])
    groups = [candidates[g * first:(g + 1) * first] for g in range(_groups(config))]
    stages = []
    for k, size in enumerate(config.keep, start=1):
        groups = [group[:int(size)] for group in groups]
        entrants = [c for group in groups for c in group]
        todo = stage_cells(config, k, entrants, refs)
        done = cells.run_cells(todo, os.path.join(workdir, "cells"), config.executor,
                               config.get("workers") or None, ray_options=config.get("ray"),
                               label=f"elimination stage {k} ({len(entrants)} losses, "
                                     f"phases 1..{k})",
                               max_retries=config.get("max_task_retries"))
        cells.check_complete(todo, done, os.path.join(workdir, "cells"),
                             f"elimination stage {k}")
        records = list(done.values())
        rankings = [rank(records, [c["name"] for c in group]) for group in groups]
        stages.append({"stage": k, "phases": k, "steps": todo[0].meta["protocol"]["steps"],
                       "entrants": [c["name"] for c in entrants],
                       "ranking": sorted((r for g in rankings for r in g),
                                         key=lambda r: (-r["score"], r["loss"])),
                       "references": rank(records, list(refs))})
        if len(groups) > 1:
            stages[-1]["groups"] = [[r["loss"] for r in g] for g in rankings]
        groups = [[by_name[r["loss"]] for r in g] for g in rankings]
        if k < len(config.keep):
            stages[-1]["survivors"] = [c["name"] for g in groups
                                       for c in g[:int(config.keep[k])]]
        else:
            count = int(config.get("finalists", 0) or 0) or None
            stages[-1]["finalists"] = [c["name"] for g in groups for c in g[:count]]
        _write_summary(workdir, stages, by_name)
    return fileio.read_json(os.path.join(workdir, "elimination.json"))


def _write_summary(workdir: str, stages: list[dict], by_name: dict[str, dict]) -> None:
    """``elimination.json``, ``results.md/csv`` and (after the last stage) ``finalists/``."""
    last = stages[-1]
    summary = {"stages": stages}
    if "survivors" not in last:  # the protocol is complete
        finalists = []
        kept = set(last.get("finalists") or [r["loss"] for r in last["ranking"]])
        for i, row in enumerate(r for r in last["ranking"] if r["loss"] in kept):
            c = by_name[row["loss"]]
            entry = {**_spec(c), "rank": i + 1, "accuracy": row["score"],
                     "equation": c["equation"], "search_fitness": c["search_fitness"],
                     "id": c["id"]}
            path = os.path.join(workdir, "finalists", f"{i + 1:02d}_{c['name']}.json")
            fileio.write_json_atomic(path, entry)
            finalists.append({**entry, "path": os.path.relpath(path, workdir)})
        summary["finalists"] = finalists
    fileio.write_json_atomic(os.path.join(workdir, "elimination.json"), summary)
    tables.write_tables(tables.elimination_tables(summary, by_name), workdir, "results",
                        heading="Loss function elimination protocol (§3.9)")


def finalist_paths(workdir: str, top: int | None = None) -> list[str]:
    """Loss files of the finalists, best first (for transfer)."""
    summary = fileio.read_json(os.path.join(workdir, "elimination.json"))
    if "finalists" not in summary:
        raise ValueError(f"the elimination in {workdir} has not finished")
    return [os.path.join(workdir, f["path"]) for f in summary["finalists"][:top]]


def default_config() -> ml_collections.ConfigDict:
    return defaults.eliminate()  # JAX-free, for configs/
