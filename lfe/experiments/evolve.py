"""``mode: evolve`` — run regularized evolution with an executor and a run directory.

The loop: the controller (``lfe.core.evolution``) asks for candidates, the executor evaluates
them (the worker task ``evaluate``, ``lfe.worker.evaluate_candidate``), each finished evaluation
is appended to ``events.jsonl`` and told to the controller, and the state is checkpointed
(``lfe.core.rundir``) after every change. Rerunning the same command on the same work directory
resumes: evaluations already in the event log are told from it, the other in-flight candidates
are submitted again. With the in-process executor and a fixed seed, an interrupted-and-resumed
run ends in exactly the same state as an uninterrupted one. An evaluation that raises or loses
its worker is submitted again as ``lfe.core.retry`` allows (``max_task_retries``; its failed
attempts are kept in the state, so a restart goes on counting), then told as a failed child
with status ``error`` and its last error; the other evaluations in flight go on.

With ``executor: ray`` the controller (this process) keeps all evolution state and never imports
JAX: training runs only in workers, and the figures (which need the losses, hence JAX) are
drawn in a spawned helper process (CPU-only). With ``devices`` (what ``auto`` is on an
accelerator host) the figures are drawn there too, so the controller never starts a JAX backend
on the GPUs its workers use. ``state.json`` holds the in-flight candidates (saved before
they are submitted), so a restarted controller submits them again; only the controller writes
``events.jsonl`` and a candidate is told once, so a result is never counted twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import shutil
import sys
import time

import ml_collections

from lfe import executors, worker
from lfe.core import archive as archive_lib
from lfe.core import equation, evolution, fileio, metrics, protocol, records, registry, rundir
from lfe.core import genome as genome_lib
from lfe.core import progress as progress_lib
from lfe.core import retry as retry_policy
from lfe.core import rungs as rungs_lib
from lfe.core.state import State
from lfe.executors import pool
from lfe.experiments import defaults

# Fields that may change between a run and its resumption; any other change is refused.
RESUMABLE_CHANGES = ("max_iterations", "max_hours", "max_core_hours", "max_steps", "executor",
                     "workers", "ray", "plot_every",
                     "command", "ce_band", "top_k",  # the last two only change outputs
                     "data_dir", "fitness.data_dir",  # the data may move (older runs: no data_dir)
                     "evaluator",  # older runs name the evaluation, now always lfe.worker's
                     "max_task_retries")  # how a failed evaluation is retried (older: absent)
# Settings newer than the first runs, and what runs without them did (``rundir.claim``).
BEFORE_SETTING = {"novelty": "archive", "rescore_initial": False, "fitness.on_diverged": "failed",
                  "rungs": [], "rung_fraction": 1 / 3, "rung_score": "train",
                  **{f"fitness.filter.{k}": v
                     for k, v in protocol.filter_config().to_dict().items()}}


def default_config() -> ml_collections.ConfigDict:
    return defaults.evolve()  # JAX-free, for configs/


def params_of(config) -> evolution.Params:
    records.check_on_diverged(config.fitness.get("on_diverged", "failed"))  # read by workers
    params = evolution.Params(
        population_size=config.population_size, initial_population=config.initial_population,
        tournament_size=config.tournament_size,
        max_mutation_attempts=config.max_mutation_attempts,
        max_failed_children=config.max_failed_children, max_iterations=config.max_iterations,
        op_set=config.op_set, init=config.init, novelty=config.get("novelty", "archive"),
        rescore_initial=bool(config.get("rescore_initial", False)),
        rungs=tuple(config.get("rungs", ())), rung_fraction=config.get("rung_fraction", 1 / 3),
        rung_score=config.get("rung_score", "train"))
    if params.rungs:
        rungs_lib.check_schedule(params.rungs, config.fitness.surrogate)
    return params


def _spec(candidate) -> dict:
    return {"name": f"candidate{candidate.id}", "genome": candidate.genome,
            "sign": candidate.sign}


def _checkpoint_args(fitness_cfg: dict, workdir: str, candidate, rung=None) -> tuple:
    """``(<workdir>/checkpoints/cand<id>,)`` (absolute) when a protocol the candidate trains sets
    ``checkpoint_every``; else ``()``, so the task's arguments stay as they were. A child
    trained in rungs always has the folder, and ``rung`` (``[index, until]``) after it."""
    folder = os.path.join(os.path.abspath(workdir), "checkpoints", f"cand{candidate.id}")
    if rung is not None:
        return folder, list(rung)
    trained = [fitness_cfg[candidate.stage], fitness_cfg.get("gate") or {}]
    if not any(protocol.checkpoint_every(p) for p in trained):
        return ()
    return (folder,)


class _Run:
    """Mutable glue around the pure controller: state, archive, executor, files."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir = config, workdir
        self.params = params_of(config)
        # no JAX computation in this process where workers need the devices (or on Ray)
        self.isolated = executors.resolve(config.executor) in ("ray", "devices")
        self.evaluate = worker.target("evaluate")
        self.fitness_cfg = config.fitness.to_dict()
        checkpoint = rundir.load_checkpoint(workdir)
        self.resumed = checkpoint is not None
        self.state = (State.from_dict(checkpoint["state"]) if checkpoint is not None
                      else evolution.init(self.params, config.seed))
        self.archive = archive_lib.rebuild(self.state)
        self.start = time.time()
        self.clock = progress_lib.Clock(rundir.elapsed_of(checkpoint), self.start)
        # set by start_session, after the evaluations a resume tells from events.jsonl
        self.writer: metrics.MetricWriter | None = None
        self.pace: progress_lib.Pace | None = None
        self.told_since_plot = 0
        self.parallel = 1  # evaluations side by side: the executor's capacity, once it exists
        self.outputs_written = False
        self.with_figures = bool(config.plot_every)
        self.figures = _SpawnedFigures() if self.isolated and self.with_figures else None

    def save(self) -> None:
        rundir.save_state(self.workdir, self.state.to_dict(),
                          elapsed=self.clock.elapsed(time.time()))

    def tell(self, candidate_id: int, record: dict, *, log: bool = True) -> None:
        candidate = self.in_flight(candidate_id)
        asked = candidate.to_dict() if candidate is not None else None
        if log:  # the candidate too, so lfe.core.recover can rebuild a lost state from the log
            rundir.append_event(self.workdir, {"id": candidate_id, "record": record,
                                               "candidate": asked, "time": time.time(),
                                               "git_revision": fileio.git_revision()})
        self.state = evolution.tell(self.params, self.state, candidate_id, record)
        self.save()
        if self.in_flight(candidate_id):  # promoted at a rung: trains on (lfe.core.rungs)
            arrival = self.state.rung_log[-1]
            print(progress_lib.rung_line(asked, arrival, self.params.schedule,
                                         self.params.max_iterations), flush=True)
            return
        if self.params.rungs and candidate is not None:  # told: a rung's checkpoint goes
            shutil.rmtree(_checkpoint_args(self.fitness_cfg, self.workdir, candidate, ())[0],
                          ignore_errors=True)
        self.told_since_plot += 1
        # the record as told: a child stopped at a rung was told stopped_at_rung, not paused
        self.progress(candidate_id, self.state.entry(candidate_id).record)

    def in_flight(self, candidate_id: int):
        """The in-flight candidate ``candidate_id``, or None."""
        return next((c for c in self.state.in_flight if c.id == candidate_id), None)

    def replay_events(self) -> set[int]:
        """Tells in-flight candidates whose evaluation finished before a kill."""
        rundir.repair_events(self.workdir)
        waiting = {c.id for c in self.state.in_flight}
        told = set()
        booked = {(a.id, a.rung) for a in self.state.rung_log}  # rung arrivals in the state
        for event in rundir.read_events(self.workdir):
            cid, record = event["id"], event["record"]
            if cid not in waiting or cid in told:
                continue
            if record.get("status") == "paused":
                if (cid, record.get("rung")) not in booked:
                    self.tell(cid, record, log=False)
                    booked.add((cid, record.get("rung")))
                if self.in_flight(cid):
                    continue
            else:
                self.tell(cid, record, log=False)
            told.add(cid)
        return told

    def start_session(self) -> None:
        """After the replayed evaluations: TensorBoard rebuilt from the state (every step so
        far, at its time in ``events.jsonl``; ``lfe.core.progress``), and this session's pace
        (the ETA) starts."""
        logdir = os.path.join(self.workdir, "tensorboard")
        metrics.remove_event_files(logdir)
        self.writer = metrics.create_writer(logdir)
        times = {}
        for event in rundir.read_events(self.workdir):
            times.setdefault(event["id"], event.get("time"))
        for step, candidate_id, scalars in progress_lib.history_scalars(self.state):
            self.writer.write_scalars(step, scalars, walltime=times.get(candidate_id))
        self.writer.flush()
        self.pace = progress_lib.start_pace(self.state, time.time())

    def progress(self, candidate_id: int, record: dict) -> None:
        """The progress line; live, also TensorBoard and (after the session's first evaluation,
        then every ``plot_every``) best.json and the figures."""
        now, p = time.time(), self.params
        eta = None
        if self.pace is not None:
            self.pace = progress_lib.observe(self.pace, self.state, now)
            rescore = p.population_size if p.rescore_initial else 0
            eta = progress_lib.eta(self.pace, self.state, initial_population=p.initial_population,
                                   max_iterations=p.max_iterations, rescore=rescore, now=now)
            hours = self.config.max_hours
            eta = progress_lib.budget_eta(
                eta, self.state, hours_left_s=hours * 3600 - (now - self.start) if hours else None,
                max_core_hours=self.config.get("max_core_hours", 0.0),
                max_steps=self.config.get("max_steps", 0), parallel=self.parallel)
        print(progress_lib.line(self.state, candidate_id, record,
                                initial_population=p.initial_population,
                                max_iterations=p.max_iterations,
                                max_failed_children=p.max_failed_children,
                                elapsed=self.clock.elapsed(now), eta_s=eta), flush=True)
        if self.writer is None:  # replaying events.jsonl: start_session writes these steps
            return
        self.writer.write_scalars(len(self.state.evaluated),
                                  progress_lib.step_scalars(self.state, candidate_id))
        every = self.config.plot_every
        if not self.outputs_written or (every and self.told_since_plot >= every):
            self.write_outputs()

    def budget_left(self) -> bool:
        hours, core_hours = self.config.max_hours, self.config.get("max_core_hours", 0.0)
        if core_hours and progress_lib.core_hours(self.state) >= core_hours:
            return False
        steps = self.config.get("max_steps", 0)
        if steps and progress_lib.steps_spent(self.state) >= steps:
            return False
        return not hours or (time.time() - self.start) < hours * 3600

    def submit(self, executor, candidate) -> None:
        args = (_spec(candidate), self.fitness_cfg,
                int(self.config.seed) * 1_000_003 + int(candidate.id), candidate.stage)
        rung = None
        if self.params.rungs and candidate.iteration is not None:  # a child: in rungs
            index = rungs_lib.next_rung(self.state, candidate.id)
            rung = [index, self.params.schedule.until(index)]
        args += _checkpoint_args(self.fitness_cfg, self.workdir, candidate, rung)
        executor.submit(str(candidate.id), self.evaluate, *args)

    def failed_attempt(self, executor, candidate_id: int, outcome) -> None:
        """An evaluation that raised or lost its worker: recorded in the state (so a restart
        keeps counting), then submitted again or, when ``lfe.core.retry`` gives up, told as an
        ``error`` child with its last error."""
        self.state = evolution.record_attempt(self.state, candidate_id, outcome.error,
                                              outcome.lost)
        self.save()  # before the event that may follow: a restart sees every attempt
        attempts = evolution.attempts_of(self.state, candidate_id)
        limit = int(self.config.get("max_task_retries", retry_policy.DEFAULT_MAX_RETRIES))
        if not retry_policy.again(attempts, limit):
            message = f"{outcome.error} (gave up after {len(attempts)} attempts)"
            self.tell(candidate_id, records.errored(message).to_dict())
            return
        print(f"[retry] cand {candidate_id}: {outcome.error} "
              f"({retry_policy.describe(attempts, limit)})", flush=True)
        self.submit(executor, next(c for c in self.state.in_flight if c.id == candidate_id))

    def write_outputs(self, final: bool = False) -> None:
        self.told_since_plot, self.outputs_written = 0, True
        write_best(self.state, self.workdir, self.config.top_k)
        args = (self.workdir, evolution.history(self.state), tuple(self.config.ce_band) or None,
                evolution.best(self.state, 3))
        if self.figures is not None:
            self.figures.draw(*args, wait=final)
        elif self.with_figures:
            draw_figures(*args)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.figures is not None:
            self.figures.close()
        if self.writer is not None:
            self.writer.close()


def draw_figures(workdir: str, rows: list[dict], band: tuple | None, top: list[dict]) -> None:
    """Figure 4 from the iteration ``rows``; Figures 2-3 for CE and the ``top`` genomes."""
    from lfe.training import losses as losses_lib  # JAX: only where figures are drawn
    from lfe.training import plots

    plots.plot_evolution(rows, os.path.join(workdir, "evolution.png"), ce_band=band)
    if top:
        chosen = [losses_lib.get("cross_entropy")] + [
            losses_lib.from_genome(genome_lib.from_dict(b["genome"]), b["sign"],
                                   name=f"#{i + 1} ({100 * b['fitness']:.1f}%)")
            for i, b in enumerate(top)]
        plots.write_figures(chosen, workdir, prefix="best_")


def _cpu_only() -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the controller host needs no accelerator
    pool.exit_with_parent()  # the helper ends with the controller, even after a kill -9


class _SpawnedFigures:
    """Draws figures in one spawned helper process, so the controller never imports JAX. A
    request made while a drawing is running is dropped (a later one catches up); the final one
    waits, and raises what the drawing raised."""

    def __init__(self):
        self._pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                            initializer=_cpu_only)
        self._future: cf.Future | None = None

    def draw(self, *args, wait: bool = False) -> None:
        if self._future is not None and not self._future.done():
            if not wait:
                return
            self._future.result()
        self._future = self._pool.submit(draw_figures, *args)
        if wait:
            self._future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def write_best(state, workdir: str, k: int) -> list[dict]:
    """``best.json``: the top-k evaluated genomes with fitness, orientation and equations."""
    top = []
    for b in evolution.best(state, k):
        g = genome_lib.from_dict(b["genome"])
        top.append({"id": b["id"], "fitness": b["fitness"], "sign": b["sign"],
                    "genome": b["genome"], "equation": equation.text(g, b["sign"]),
                    "equation_shared": equation.text(g, b["sign"], style="let"),
                    "latex": equation.latex(g, b["sign"])})
    fileio.write_json_atomic(os.path.join(workdir, "best.json"), top)
    return top


def _evolve(r: _Run, executor) -> None:
    """Asks, submits and tells until the run is done (or out of budget) and nothing is pending;
    the in-flight candidates of a resumed run are submitted first. Each ask is logged to
    ``asked.jsonl`` before it is submitted (``lfe.core.recover`` rebuilds a lost state from it)."""
    from lfe.core import recover
    for candidate in r.state.in_flight:
        r.submit(executor, candidate)
    while True:
        if r.budget_left() and not evolution.is_done(r.params, r.state):
            r.state, new, admitted = evolution.ask(r.params, r.state, r.archive,
                                                   executor.capacity)
            for phenotype, equation_text in admitted:
                r.archive.add(phenotype, equation_text)
            r.save()  # in-flight candidates are on disk before they are submitted
            recover.log_asked(r.workdir, new)
            for candidate in new:
                r.submit(executor, candidate)
        if not executor.pending:
            return
        for key, outcome in executor.wait_any():
            if outcome.timed_out:  # a failed child, like a gated one: the search goes on
                r.tell(int(key), records.timed_out(outcome.error).to_dict())
            elif outcome.error is not None:  # run again, or a failed child (lfe.core.retry)
                r.failed_attempt(executor, int(key), outcome)
            else:
                r.tell(int(key), outcome.value)
                promoted = r.in_flight(int(key))
                if promoted is not None:  # the next rung's task
                    r.submit(executor, promoted)


def run(config, workdir: str) -> dict:
    defaults.check(config)  # a bad runner field or protocol fails before any file
    params_of(config)  # so does a bad evolution setting
    registry.check(worker.target("evaluate"))  # so does an unknown evaluation target
    if worker.target("evaluate") == worker.EVALUATE and config.executor != "ray":
        from lfe.training import fitness  # missing data fails early (on Ray it is per host)

        fitness.load_dataset(config.fitness.dataset, config.fitness.get("data_dir", ""))
    os.makedirs(workdir, exist_ok=True)
    with rundir.lock(workdir):  # one controller per run directory
        return _run(config, workdir)


def _run(config, workdir: str) -> dict:
    rundir.claim(workdir, config, may_change=RESUMABLE_CHANGES, absent=BEFORE_SETTING)
    r = _Run(config, workdir)
    chosen = executors.resolve(config.executor)  # auto: devices or pool, by the hardware
    print(f"evolve: {'resuming' if r.resumed else 'starting'} in {workdir} ({config.executor} "
          f"executor{': ' + chosen if chosen != config.executor else ''})", flush=True)
    r.replay_events()
    r.start_session()
    executor = None
    try:
        executor = executors.make(chosen, config.get("workers") or None,
                                  config.get("ray"))
        r.parallel = executor.capacity
        _evolve(r, executor)
        r.write_outputs(final=True)
    finally:
        if executor is not None:
            executor.close()
        r.close()
    s = evolution.summary(r.state)
    print_summary({**s, "core_hours": round(progress_lib.core_hours(r.state), 3),
                   "training_steps": progress_lib.steps_spent(r.state)}, workdir,
                  r.clock.elapsed(time.time()))
    return s


def print_summary(s: dict, workdir: str, elapsed: float | None = None) -> None:
    """The summary, fitness as percentages (``best``/``mean``/``median``: the population's;
    ``best_evaluated``: the best ever), the run's elapsed time over all sessions, the top 5."""
    print(f"\nevolve summary ({workdir}):", file=sys.stdout)
    for text in progress_lib.summary_lines(s, elapsed):
        print(f"  {text}")
    best_path = os.path.join(workdir, "best.json")
    if os.path.exists(best_path):
        for i, b in enumerate(fileio.read_json(best_path)[:5]):
            print(f"  #{i + 1} {100 * b['fitness']:.2f}%  {b['equation']}")
