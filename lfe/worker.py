"""The only functions executors run: evaluate candidates, train one grid cell.

Plain data in, plain data out, so a task can run in this process, a spawned worker or a Ray
worker on another host. Controllers name them by target string (``TASKS``) and never import the
training stack: this module is the boundary, and it loads ``lfe.training`` (JAX) only inside
the functions, in the process that trains, and points JAX's persistent compilation cache
(``lfe.training.compilation_cache``) at its directory before training.

Test seam: ``substitute(evaluate="tests.fake_fitness:evaluate")`` swaps a task's target for the
duration of a ``with`` block; the target string travels with each submitted task, so the
substitution reaches pool and Ray workers too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from lfe.core import registry

EVALUATE = "lfe.worker:evaluate_candidate"
EVALUATE_MANY = "lfe.worker:evaluate_candidates"
TRAIN_CELL = "lfe.worker:train_cell"

# task name -> "module:function"; what the modes submit.
TASKS: dict[str, str] = {"evaluate": EVALUATE, "train_cell": TRAIN_CELL}


def target(task: str) -> str:
    """The target string that runs ``task`` now (after any ``substitute``)."""
    if task not in TASKS:
        raise ValueError(f"unknown worker task {task!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[task]


@contextlib.contextmanager
def substitute(**targets: str) -> Iterator[None]:
    """Runs the ``with`` block with some tasks done by other ``"module:function"`` targets."""
    for name, value in targets.items():
        target(name)
        registry.split(value)
    saved = dict(TASKS)
    TASKS.update(targets)
    try:
        yield
    finally:
        TASKS.clear()
        TASKS.update(saved)


def evaluate_candidate(spec: dict, fitness_config: dict, seed: int,
                       stage: str = "surrogate", checkpoint_dir: str = "",
                       rung: Sequence[int] | None = None) -> dict:
    """One candidate's fitness (gate, then its stage protocol): ``FitnessRecord.to_dict()``.

    ``checkpoint_dir``: where its runs keep mid-training checkpoints (protocols with
    ``checkpoint_every``; and a run paused at a rung); an interrupted evaluation resumes from
    them; removed when it ends, unless it paused. ``rung``: ``[index, until]`` for a candidate
    trained in rungs (``lfe.training.fitness.evaluate``)."""
    import ml_collections

    from lfe.training import checkpoint, compilation_cache, fitness, losses

    compilation_cache.enable()
    cfg = ml_collections.ConfigDict(fitness_config)
    record = fitness.evaluate(losses.from_spec(spec), cfg, seed=seed, stage=stage,
                              checkpoint_dir=checkpoint_dir,
                              rung=tuple(rung) if rung is not None else None).to_dict()
    if record["status"] != "paused":
        checkpoint.remove(checkpoint_dir)
    return record


def evaluate_candidates(specs: Sequence[dict], fitness_config: dict, seeds: Sequence[int],
                        stage: str = "surrogate", rung: Sequence[int] | None = None
                        ) -> list[dict]:
    """``evaluate_candidate`` for K candidates trained at once (``vmap`` executor; without
    checkpoints: a candidate trained in rungs trains again from step 0 in each task)."""
    from lfe.training import compilation_cache, population

    compilation_cache.enable()
    extra = () if rung is None else (tuple(rung),)
    return population.evaluate_population(specs, fitness_config, seeds, stage, *extra)


def candidates_per_population(mode: str = "auto", k: int = 0) -> int:
    """K for the ``vmap`` executor on this process's JAX backend (it trains in-process) before
    it has seen a task: ``workers``, else the backend's ``population.MEASURED_K`` entry, else 1
    (``population_k`` then measures it for the first evaluation task)."""
    from lfe.training import population

    return population.default_k(mode, k=k)


def population_k(spec: dict, fitness_config: dict, stage: str = "surrogate") -> dict:
    """K for ``evaluate_candidates`` groups of tasks like this one on this process's device
    (``lfe.training.k_choice``: measured once per device kind and protocol shape, kept in
    this process and on disk): ``Choice.to_dict()`` plus ``text``, a one-line description."""
    from lfe.training import compilation_cache, k_choice

    compilation_cache.enable()
    choice = k_choice.for_fitness(spec, fitness_config, stage)
    return {**choice.to_dict(), "text": choice.describe()}


def train_cell(spec: dict, protocol: dict, dataset: str, data_dir: str, seed: int,
               train_split: str = "train", eval_split: str = "val",
               checkpoint_dir: str = "") -> dict:
    """One grid cell: trains ``spec`` with ``protocol`` (with mid-training checkpoints in
    ``checkpoint_dir`` when it sets ``checkpoint_every``: an interrupted cell resumes there).

    ``accuracy`` is the best accuracy on ``eval_split`` over the run's evaluations (the paper's
    fitness and elimination metric on the validation split); ``final_accuracy`` the last
    evaluation's (used for test-split tables, where picking the best would select on test).
    """
    import ml_collections

    from lfe.training import compilation_cache, fitness, losses

    compilation_cache.enable()
    protocol = ml_collections.ConfigDict(protocol)
    data = fitness.load_splits(dataset, data_dir, train_split, eval_split,
                               *fitness.load_size(protocol, dataset))
    result = fitness.train_once(losses.from_spec(spec), protocol, data, seed, checkpoint_dir)
    final = next((row[2] for row in reversed(result.curve) if row[2] is not None), 0.0)
    return {"accuracy": result.best_val_accuracy, "final_accuracy": final,
            "best_train_accuracy": result.best_train_accuracy, "status": result.status,
            "steps_run": result.steps_run, "wall_time_s": result.wall_time_s,
            "curve": [list(r) for r in result.curve], "message": result.message,
            "train_split": train_split, "eval_split": eval_split}
