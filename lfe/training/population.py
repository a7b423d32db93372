"""Population training: K candidates with different genome losses trained at once on one device.

    results = run(get_model("convnet", num_classes=10), genomes, signs, protocol,
                  train_images=x, train_labels=y, val_images=xv, val_labels=yv, seeds=[0, 1])

Parameters, BatchNorm statistics and optimizer states carry a leading K axis and one jitted
step is ``vmap``ped over them and over the genome codes (``lfe.training.compile.encode``), so the
convolutions become batched/grouped convolutions. Each candidate's loss is the vmapped
``lax.switch`` evaluator ``compile.evaluate_one``: a batched switch feeds unselected ops
stop-gradient inputs, so one genome's NaN cannot reach another's gradient (a NaN in an
unselected branch of a ``jnp.where`` selection would still poison the gradient).

Semantics are ``lfe.training.train.run``'s, per candidate: candidate k uses ``seeds[k]`` for its
initialisation, its dropout/augmentation keys *and* its batch order (the training set lives on
the device; only the batch indices travel), so its result equals a sequential
``train.run(..., seed=seeds[k])`` up to float summation order. ``shared_data=True`` feeds every
candidate the batch order of ``seeds[0]`` instead (one gather per step, not K). Evaluation every
``eval_every`` steps, best accuracies, stop rules and divergence are per candidate, booked by
``train.run``'s rules (one ``lfe.training.loop.Progress`` each); a finished (stopped or
diverged) candidate's state is frozen, so it never feeds NaNs into the batched ops.
The batch runs until every candidate has finished (finished slots still cost compute).

The ``vmap`` executor (``lfe.executors.vmap``) batches up to K submitted candidate evaluations
into ``evaluate_population`` (gate, then the stage protocol).
Whether that is faster depends on the device and the protocol: ``lfe.training.k_choice``
measures the protocol's step at K = 1 (``sequential_step``), 2, 4, ... on the device and picks
K (never slower than sequential by measurement); ``MEASURED_K`` is the table it falls back on
by platform — K=1 (sequential, no vmap) on XLA:CPU, where vmapped convolutions run slower
(bench/population.py); ``default_k`` is K before any measurement.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lfe.core import protocol as protocol_lib
from lfe.core.genome import Genome
from lfe.training import compile as compile_lib
from lfe.training import fitness, loop, losses, progressive
from lfe.training import train as train_lib
from lfe.training.data import augment as augment_lib
from lfe.training.data import pipeline
from lfe.training.models import get_model
from lfe.training.schedules import shared_optimizer

# Measured best K per JAX platform (bench/population.py, BENCHMARKS.md §4). 1 = sequential runs.
# XLA:CPU: K = 1-16 ran at 0.66-0.79x sequential throughput, so never vmap there. Platforms not
# here are measured on their device by lfe.training.k_choice.
MEASURED_K = {"cpu": 1}
MODES = ("auto", "vmap", "sequential")


def default_k(mode: str = "auto", backend: str | None = None, k: int = 0) -> int:
    """Candidates per population run: "sequential" → 1, "vmap" → ``k`` (or the backend's
    measured best, at least 2), "auto" → the measured best for the backend (1 when unmeasured:
    never vmap without evidence that it is faster; the ``vmap`` executor then measures K on the
    device for each kind of evaluation, ``lfe.training.k_choice``)."""
    if mode not in MODES:
        raise ValueError(f"unknown population mode {mode!r}; available: {', '.join(MODES)}")
    backend = backend or jax.default_backend()
    if mode == "sequential":
        return 1
    if mode == "vmap":
        return int(k) if k else max(2, MEASURED_K.get(backend, 8))
    return int(k) if k else MEASURED_K.get(backend, 1)


def genome_loss(code: dict, sign: jax.Array, op_set: str) -> train_lib.LossFn:
    """``loss(y, yhat) -> [batch]`` of one encoded genome (traced arrays: vmap-able): the data
    form ``compile.GenomeProgram``, which computes what ``compile.to_loss`` does."""
    return compile_lib.DataLoss(compile_lib.GenomeProgram(op_set), {**code, "sign": sign})


def _where(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per-candidate select over pytrees with a leading K axis."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o),
                        new, old)


def _population_fns(model, augment: dict, op_set: str, shared_data: bool):
    """The jitted vmapped train step and eval function; built once per setting, so later
    populations of the same shapes reuse the compiled code (only the genome codes change)."""
    return _cached_fns(model, json.dumps(augment, sort_keys=True), op_set, shared_data)


def _candidate_step(model, train_aug, op_set: str):
    """One candidate's accumulating train step with its genome loss as data: what
    ``population`` vmaps, and (jitted alone) the sequential step ``k_choice`` measures K=1 by."""

    def one(state, totals, images, index, label, rng, code, sign):
        batch = {"image": images[index], "label": label}
        return train_lib.accumulating_train_step(
            state, totals, batch, rng, loss_fn=genome_loss(code, sign, op_set),
            augment_fn=train_aug, num_classes=model.num_classes)

    return one


@functools.lru_cache(maxsize=16)
def _cached_fns(model, augment_json: str, op_set: str, shared_data: bool):
    augment = json.loads(augment_json)
    train_aug = augment_lib.make_preprocess_fn(augment, train=True)
    eval_aug = augment_lib.make_preprocess_fn(augment, train=False)
    one = _candidate_step(model, train_aug, op_set)
    data_axis = None if shared_data else 0

    def step(states, totals, images, index, label, rngs, codes, signs, active):
        new_states, new_totals = jax.vmap(one, in_axes=(0, 0, None, data_axis, data_axis, 0, 0,
                                                        0))(
            states, totals, images, index, label, rngs, codes, signs)
        # A finished candidate (or one whose loss just went non-finite) keeps its old state.
        keep = active & (new_totals["first_nonfinite"] < 0)
        return _where(keep, new_states, states), _where(active, new_totals, totals)

    def evaluate(states, batch):
        return jax.vmap(lambda s: train_lib.eval_step(s, batch, augment_fn=eval_aug))(states)

    return jax.jit(step, donate_argnums=(0, 1)), jax.jit(evaluate), eval_aug


def sequential_step(model, augment: dict, op_set: str):
    """``_candidate_step`` jitted alone (no vmap): one candidate per step, with ``run``'s
    arguments less the K axis."""
    return _cached_sequential(model, json.dumps(augment, sort_keys=True), op_set)


@functools.lru_cache(maxsize=16)
def _cached_sequential(model, augment_json: str, op_set: str):
    augment = json.loads(augment_json)
    one = _candidate_step(model, augment_lib.make_preprocess_fn(augment, train=True), op_set)
    return jax.jit(one, donate_argnums=(0, 1))


def single_phase(model, config) -> tuple[Any, dict, Any]:
    """(the phase's model, its resolved augmentation, the phase) of a protocol ``run`` takes:
    one phase, no ``init_from`` (ValueError otherwise)."""
    phases = progressive.from_protocol(config)
    if len(phases) != 1 or config.get("init_from"):
        raise ValueError("population training takes single-phase protocols without init_from")
    model = progressive.model_for_phase(model, phases[0])
    augment = progressive.augment_for_phase(
        progressive.resolve_augment(config.get("augment", "unit")), phases[0])
    return model, augment, phases[0]


def init_states(model, config, seeds: Sequence[int], eval_aug, sample: np.ndarray):
    """(K fresh train states with a leading K axis, the K step RNG keys) for ``seeds``, at the
    model input shape ``eval_aug`` makes of images like ``sample``."""
    keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(jnp.asarray(seeds))
    init_rngs, step_rngs = keys[:, 0], keys[:, 1]
    shape = jax.eval_shape(lambda x: eval_aug(init_rngs[0], {"image": x})["image"],
                           jax.ShapeDtypeStruct(sample[:1].shape, sample.dtype)).shape
    tx = shared_optimizer(config)
    states = jax.vmap(lambda r: train_lib.create_train_state(r, model, shape[1:], tx))(init_rngs)
    return states, step_rngs


def run(
    model,
    genomes: Sequence[Genome],
    signs: Sequence[int],
    config: Any,
    *,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    seeds: Sequence[int],
    shared_data: bool = False,
    log_fn: Callable[[int, dict], None] | None = None,
) -> list[train_lib.TrainResult]:
    """Trains one candidate per genome for ``config.steps`` steps; one ``TrainResult`` each.

    ``genomes`` (K, one op set), ``signs`` (±1) and ``seeds`` are per candidate. The protocol is
    ``train.run``'s (one phase, ``config.augment``; no ``phases`` or ``init_from``). A result's
    ``wall_time_s`` is the population's wall time until that candidate finished.
    """
    start_time = time.perf_counter()
    k = len(genomes)
    if not k or len(signs) != k or len(seeds) != k:
        raise ValueError(f"need K >= 1 genomes with one sign and one seed each, got {k} genomes, "
                         f"{len(signs)} signs, {len(seeds)} seeds")
    op_sets = {g.op_set for g in genomes}
    if len(op_sets) != 1:
        raise ValueError(f"a population needs one op set, got {sorted(op_sets)}")
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(dict(config))
    model, augment, phase = single_phase(model, config)
    progress = [loop.Progress(loop.stop_rules(config), start_time) for _ in range(k)]
    boundaries = loop.eval_steps(phase.steps, int(config.get("eval_every", 100)),
                                 [s for s, _ in progress[0].rules])
    step_fn, eval_fn, eval_aug = _population_fns(model, augment, op_sets.pop(), shared_data)
    states, step_rngs = init_states(model, config, seeds, eval_aug, train_images)
    code = compile_lib.encode(list(genomes))
    codes = {name: jnp.asarray(v) for name, v in code.items()}
    sign_arr = jnp.asarray(signs, jnp.float32)
    images = jax.device_put(np.asarray(train_images))  # once; each step sends only indices
    val = []
    if val_images is not None:
        val = [jax.device_put(b) for b in pipeline.eval_batches(
            val_images, val_labels, int(config.get("eval_batch_size", 500)))]
    batch_size, positions = int(config.batch_size), np.arange(len(train_labels))
    streams = [pipeline.train_batches(positions, train_labels, batch_size, s)
               for s in (seeds[:1] if shared_data else seeds)]

    step = 0
    for boundary in boundaries:
        totals = jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)),  # donated: fresh
                              train_lib.zero_totals())
        active = np.array([p.running for p in progress])
        mask = jnp.asarray(active)
        for _ in range(boundary - step):
            batches = [next(s) for s in streams]
            index = np.stack([b["image"] for b in batches]).astype(np.int32)
            label = np.stack([b["label"] for b in batches])
            if shared_data:
                index, label = index[0], label[0]
            states, totals = step_fn(states, totals, images, index, label, step_rngs, codes,
                                     sign_arr, mask)
        totals = jax.device_get(totals)
        step = boundary
        accs = None
        if val:
            outs = jax.device_get([eval_fn(states, b) for b in val])  # dispatch all, sync once
            accs = (sum(o["correct"] for o in outs) / np.maximum(sum(o["count"] for o in outs),
                                                                  1.0))
        for i in np.flatnonzero(active).tolist():  # those still running, booked as in train.run
            mine = {name: value[i] for name, value in totals.items()}
            if progress[i].diverged(mine):
                continue
            row = progress[i].record(step, mine, float(accs[i]) if accs is not None else None)
            if log_fn is not None:
                log_fn(i, row)
        if not any(p.running for p in progress):
            break
    return [p.result() for p in progress]


# --------------------------------------------------------------------------- fitness of K at once

def _train_population(protocol: Any, loss_defs: list, dataset, seeds: list[int]):
    """``run`` for the candidates; protocols it does not take (several phases, pretrained
    weights) run one candidate after another through ``fitness.train_once``."""
    if len(progressive.from_protocol(protocol)) != 1 or protocol.get("init_from"):
        return [fitness.train_once(loss, protocol, dataset, seed)
                for loss, seed in zip(loss_defs, seeds, strict=True)]

    model = get_model(protocol.model, num_classes=dataset.num_classes,
                      **dict(protocol.get("model_kwargs") or {}))
    validate = bool(protocol.get("validate", True))
    return run(model, [d.genome for d in loss_defs], [d.sign for d in loss_defs], protocol,
               train_images=dataset.train_images, train_labels=dataset.train_labels,
               val_images=dataset.val_images if validate else None,
               val_labels=dataset.val_labels if validate else None, seeds=seeds)


def evaluate_population(specs: Sequence[dict], config: dict, seeds: Sequence[int],
                        stage: str = "surrogate", rung: tuple[int, int] | None = None
                        ) -> list[dict]:
    """``lfe.worker.evaluate_candidate`` for K candidates at once: the gate as one population
    run, then the ``stage`` protocol for those that passed; one ``FitnessRecord.to_dict()``
    each, from the same record functions as the sequential evaluation (equal up to float
    summation order). A loss without a genome (the closed-form NeuroLoss1) is evaluated
    sequentially. ``rung = (index, until)``: as ``fitness.evaluate``'s, except that nothing is
    checkpointed: the stage run trains from step 0 to ``until`` (``protocol.truncated``: the
    same steps as the full run's first ``until``) in every task."""
    if rung is not None:
        return _evaluate_rung(specs, ml_collections.ConfigDict(config), seeds, stage, rung)
    fitness.check_stage(stage)
    cfg = ml_collections.ConfigDict(config)
    dataset = fitness.stage_dataset(cfg, stage)
    loss_defs = [losses.from_spec(s) for s in specs]
    records: list[Any] = [None] * len(specs)
    todo = []
    for i, loss in enumerate(loss_defs):
        if loss.genome is None:
            records[i] = fitness.evaluate(loss, cfg, seed=seeds[i], stage=stage)
        else:
            todo.append(i)
    if stage == "surrogate":  # the training-free filter, when enabled
        for i in list(todo):
            records[i] = fitness.filter_record(loss_defs[i], cfg, dataset)
            if records[i] is not None:
                todo.remove(i)
    gates: dict[int, train_lib.TrainResult] = {}
    if cfg.gate_enabled and stage == "surrogate" and todo:
        results = _train_population(cfg.gate, [loss_defs[i] for i in todo], dataset,
                                    [seeds[i] for i in todo])
        passed = []
        for i, gate in zip(todo, results, strict=True):
            gates[i] = gate
            records[i] = fitness.gate_record(gate, cfg.gate_min_train_accuracy)
            if records[i] is None:
                passed.append(i)
        todo = passed
    if todo:
        results = _train_population(cfg[stage], [loss_defs[i] for i in todo], dataset,
                                    [seeds[i] for i in todo])
        for i, result in zip(todo, results, strict=True):
            records[i] = fitness.scored_record(result, gates.get(i),
                                               cfg.get("on_diverged", "failed"))
    return [r.to_dict() for r in records]


def _evaluate_rung(specs, cfg, seeds, stage: str, rung: tuple[int, int]) -> list[dict]:
    """``evaluate_population`` of one rung task per candidate (gate in the first only)."""
    index, until = rung
    gate_cfg = ml_collections.ConfigDict(cfg.to_dict())
    gate_cfg.gate_enabled = bool(cfg.gate_enabled) and index == 0
    if index and gate_cfg.get("filter"):  # the filter too runs in the first task only
        gate_cfg.filter.enabled = False
    if until:
        gate_cfg[stage] = protocol_lib.truncated(cfg[stage], until)
    out = []
    for record in evaluate_population(specs, gate_cfg.to_dict(), seeds, stage):
        finished_early = record["status"] not in ("ok",) or not until
        if not finished_early:  # trained to the rung: paused there
            record = {**record, "status": "paused", "rung": index,
                      "message": f"paused at step {until}"}
        out.append(record)
    return out


__all__ = ["MEASURED_K", "MODES", "default_k", "evaluate_population", "genome_loss", "run"]
