"""``mode: pipeline`` — the paper end to end: evolve → eliminate → transfer → report.

    <workdir>/evolve/            the search (``mode: evolve``, ``config.evolve``)
    <workdir>/eliminate/         the elimination protocol on the search's best genomes
    <workdir>/transfer/<name>/   each transfer experiment of ``config.transfers``; the token
                                 ``finalists`` in its ``losses`` stands for the best
                                 ``config.transfer_finalists`` losses of the elimination
    <workdir>/report/            tables and figures of all of them (``mode: report``)
    <workdir>/pipeline.json      the stages finished so far

Every stage resumes on its own (checkpointed state, per-cell records); ``pipeline.json`` lets
a rerun skip finished stages outright, so rerunning the command after a crash continues where
it stopped. Stage configs are the modes' own configs, nested.
"""

from __future__ import annotations

import os
import time

import ml_collections

from lfe.core import fileio, rundir
from lfe.experiments import defaults, eliminate, evolve, report, transfer

STATE = "pipeline.json"


def _copy(config) -> ml_collections.ConfigDict:
    """An unlocked, independent copy of a nested config (the pipeline's is locked by main)."""
    return ml_collections.ConfigDict(config.to_dict())


def _done(workdir: str) -> dict:
    path = os.path.join(workdir, STATE)
    return fileio.read_json(path) if os.path.exists(path) else {"stages": {}}


def _mark(workdir: str, state: dict, stage: str) -> None:
    state["stages"][stage] = {"finished_at": time.time(), "git_revision": fileio.git_revision()}
    fileio.write_json_atomic(os.path.join(workdir, STATE), state)


def transfer_losses(spec: str, finalists: list[str]) -> str:
    """``spec`` with the token ``finalists`` replaced by the finalists' loss files."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    out = []
    for name in names:
        out += finalists if name == "finalists" else [name]
    return ",".join(out)


def run(config, workdir: str) -> dict:
    for stage in (config.evolve, config.eliminate, *config.transfers.values()):
        defaults.check(stage)  # a bad field of a late stage fails before the first trains
    os.makedirs(workdir, exist_ok=True)
    with rundir.lock(workdir):  # one controller per run directory; each stage locks its own
        return _run(config, workdir)


def _run(config, workdir: str) -> dict:
    rundir.claim(workdir, config, fixed=())  # each stage refuses incompatible reruns itself
    state = _done(workdir)
    stages: list[tuple[str, object]] = [("evolve", None), ("eliminate", None)]
    stages += [(f"transfer/{name}", name) for name in config.transfers]
    stages.append(("report", None))
    evolve_dir, elim_dir = os.path.join(workdir, "evolve"), os.path.join(workdir, "eliminate")
    for stage, name in stages:
        if stage in state["stages"]:
            print(f"pipeline: {stage} already finished", flush=True)
            continue
        print(f"pipeline: {stage}", flush=True)
        if stage == "evolve":
            evolve.run(_copy(config.evolve), evolve_dir)
        elif stage == "eliminate":
            c = _copy(config.eliminate)
            c.source = evolve_dir
            eliminate.run(c, elim_dir)
        elif stage == "report":
            report.run(ml_collections.ConfigDict({"mode": "report", "run_dir": workdir}),
                       workdir)
        else:
            c = _copy(config.transfers[name])
            finalists = eliminate.finalist_paths(elim_dir, int(config.transfer_finalists))
            c.losses = transfer_losses(c.losses, finalists)
            transfer.run(c, os.path.join(workdir, stage))
        _mark(workdir, state, stage)
    return state


def default_config() -> ml_collections.ConfigDict:
    return defaults.pipeline()  # JAX-free, for configs/; one data_dir for every stage
