"""Trainer: (model, data, loss) → best validation accuracy, with the paper's stop rules.

    result = run(get_model("convnet", num_classes=10), loss_fn, default_config(),
                 train_images=x, train_labels=y, val_images=xv, val_labels=yv, seed=0)

A loss is `loss_fn(y, yhat) -> [batch]` on float32 target distributions `y` and softmax
probabilities `yhat`, both `[batch, classes]`; the trainer takes the batch mean. Batches are
dicts `{"image": uint8 [B,H,W,C], "label": int32 [B]}` (optionally `"target"` float [B,C] for
mixed labels; eval batches carry `"mask"`). The batch source is injected; augmentation runs on
device, from the protocol's `augment` (a preset name or `{"train": [...], "eval": [...]}`, see
`lfe.training.data.augment`) or from an injected image-only `preprocess_fn(rng, images, train=...)`.
Label-mixing ops (CutMix) see and rewrite the target `y` that the loss consumes.

A protocol with `phases` trains progressively (`lfe.training.progressive`); with more than one local
device the step is data parallel over them (`lfe.training.parallel`); `init_from` starts from
pretrained
weights (`lfe.training.models.pretrained`) instead of a fresh initialisation. With a
`checkpoint_dir` and a protocol's `checkpoint_every` > 0 a run saves its whole state there
(`lfe.training.checkpoint`) and an interrupted run resumes from it exactly.

Speed (2-core CPU, ConvNet, batch 128, 32×32, CE, 1000-step `run` with 5k-image validation every
100 steps): ≈20 steps/s end to end, ≈22 without the ~3.7 s init + compile (XLA conv: ≈19); two
one-core processes side by side: 14 steps/s each. One host sync per eval interval.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from lfe.core import protocol
from lfe.training import checkpoint, loop, parallel, progressive
from lfe.training import compile as compile_lib
from lfe.training.data import augment as augment_lib
from lfe.training.data import pipeline
from lfe.training.loop import TrainResult
from lfe.training.schedules import shared_optimizer

Batch = dict[str, Any]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
PreprocessFn = Callable[..., jax.Array]
AugmentFn = Callable[[jax.Array, Batch], Batch]
BatchSource = Callable[..., Iterator[Batch]]


class TrainState(train_state.TrainState):
    batch_stats: Any


@functools.lru_cache(maxsize=32)
def _jitted_init(model) -> Callable:
    """One jitted `model.init` per (equal) model, so a worker process that trains many
    candidates compiles it once, not once per candidate (~4-5 s CPU each for the ConvNet)."""
    return jax.jit(functools.partial(model.init, train=False))


def init_variables(rng: jax.Array, model, image_shape: Sequence[int]) -> dict:
    """`model.init` on a dummy float batch of `image_shape` (H, W, C)."""
    try:
        init = _jitted_init(model)
    except TypeError:  # a user model with unhashable fields: not cached
        init = jax.jit(functools.partial(model.init, train=False))
    return init(rng, jnp.zeros((1, *image_shape), jnp.float32))


def create_train_state(
    rng: jax.Array, model, image_shape: Sequence[int], tx: optax.GradientTransformation,
    variables: dict | None = None,
) -> TrainState:
    """A fresh state for `model` (or one holding `variables`, e.g. pretrained weights)."""
    if variables is None:
        variables = init_variables(rng, model, image_shape)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
    )


def unit_preprocess(rng: jax.Array, images: jax.Array, train: bool = False) -> jax.Array:
    """uint8 → float32 in [0, 1] (the ConvNet / ResNet9V2 input scaling)."""
    del rng, train
    return images.astype(jnp.float32) / 255.0


def image_augment(preprocess_fn: PreprocessFn, *, train: bool) -> AugmentFn:
    """Lifts an image-only `preprocess_fn(rng, images, train=...)` to an `AugmentFn`."""

    def apply(rng: jax.Array, batch: Batch) -> Batch:
        return {**batch, "image": preprocess_fn(rng, batch["image"], train=train)}

    return apply


def _targets(batch: Batch, num_classes: int) -> jax.Array:
    if "target" in batch:
        return batch["target"].astype(jnp.float32)
    return jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.float32)


def train_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss_fn: LossFn,
    augment_fn: AugmentFn,
    num_classes: int,
) -> tuple[TrainState, dict]:
    """One update. `rng` is a base key; this step uses `fold_in(rng, state.step)`.

    `augment_fn(rng, {"image": uint8 [B,H,W,C], "target": float32 [B,K]})` returns the model
    input `"image"` (float32 [B,H',W',C]) and the target `y` the loss sees.
    """
    aug_rng, dropout_rng = jax.random.split(jax.random.fold_in(rng, state.step))
    inputs = augment_fn(aug_rng, {"image": batch["image"],
                                  "target": _targets(batch, num_classes)})
    images, targets = inputs["image"], inputs["target"].astype(jnp.float32)

    def batch_loss(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            rngs={"dropout": dropout_rng},
            mutable=["batch_stats"],
        )
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        per_example = loss_fn(targets, probs)
        if per_example.shape != targets.shape[:1]:
            raise ValueError(
                f"loss_fn must return [batch] = {targets.shape[:1]}, got {per_example.shape}"
            )
        return jnp.mean(per_example.astype(jnp.float32)), (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(batch_loss, has_aux=True)(
        state.params
    )
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    correct = jnp.argmax(logits, -1) == jnp.argmax(targets, -1)  # Keras categorical_accuracy
    return state, {"loss": loss, "accuracy": jnp.mean(correct.astype(jnp.float32))}


def eval_step(state: TrainState, batch: Batch, *, augment_fn: AugmentFn) -> dict:
    """Correct predictions and examples in `batch`, ignoring entries with mask 0 (padding)."""
    images = augment_fn(jax.random.PRNGKey(0), {"image": batch["image"]})["image"]
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
    )
    mask = batch.get("mask", jnp.ones(batch["label"].shape, jnp.float32)).astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32) * mask
    return {"correct": correct.sum(), "count": mask.sum()}


def zero_totals() -> dict:
    """The start of an interval's sums for `accumulating_train_step`: zero loss and accuracy, no
    non-finite loss yet (-1)."""
    return {
        "loss": jnp.zeros([], jnp.float32),
        "accuracy": jnp.zeros([], jnp.float32),
        "first_nonfinite": jnp.full([], -1, jnp.int32),
    }


def accumulating_train_step(state, totals, batch, rng, **kwargs):
    """`train_step` that sums its metrics on device and records the first non-finite loss,
    so the host syncs once per eval interval instead of every step."""
    step = state.step
    state, metrics = train_step(state, batch, rng, **kwargs)
    bad = ~jnp.isfinite(metrics["loss"]) & (totals["first_nonfinite"] < 0)
    return state, {
        "loss": totals["loss"] + metrics["loss"],
        "accuracy": totals["accuracy"] + metrics["accuracy"],
        "first_nonfinite": jnp.where(bad, step, totals["first_nonfinite"]),
    }


def default_config() -> ml_collections.ConfigDict:
    """The trainer's fields and defaults: the paper's ConvNet protocol (``lfe.core.protocol``)."""
    return protocol.trainer_defaults()


def evaluate(eval_fn, state: TrainState, batches: Sequence[Batch]) -> float:
    totals = jax.device_get([eval_fn(state, b) for b in batches])  # dispatch all, sync once
    count = sum(t["count"] for t in totals)
    return float(sum(t["correct"] for t in totals) / max(count, 1.0))


@dataclasses.dataclass(frozen=True)
class _PhaseFns:
    """A phase's model, its augmentation (unjitted) and its jitted step and eval functions."""

    model: Any
    eval_augment: AugmentFn
    step_fn: Callable  # step_fn(state, totals, batch, rng, loss_params, images or None)
    eval_fn: Callable


_MODELS: dict = {}  # one object per equal model: bound `apply` methods compare by identity


def _shared_model(model):
    try:
        return _MODELS.setdefault(model, model)
    except TypeError:  # an unhashable user model: not shared
        return model


def _augments(augment_key: str | None, preprocess_fn) -> tuple[AugmentFn, AugmentFn]:
    """(train, eval) augmentation: from a phase's augment config as JSON, else `preprocess_fn`."""
    if augment_key is None:
        return (image_augment(preprocess_fn, train=True),
                image_augment(preprocess_fn, train=False))
    cfg = json.loads(augment_key)
    return (augment_lib.make_preprocess_fn(cfg, train=True),
            augment_lib.make_preprocess_fn(cfg, train=False))


def _program_step(state, totals, batch, rng, loss_params, images, *, program, **kwargs):
    """`accumulating_train_step` with the loss `program(loss_params, y, yhat)`: the params are an
    argument, so one compiled step serves every loss of the program (`compile.DataLoss`). With
    `images` (the training set, resident on the device) the batch's "image" holds indices and
    the step gathers its images on the device."""
    if images is not None:
        batch = {**batch, "image": images[batch["image"]]}
    return accumulating_train_step(state, totals, batch, rng,
                                   loss_fn=functools.partial(program, loss_params), **kwargs)


def _build_fns(model, program, augment_key, preprocess_fn, mesh) -> _PhaseFns:
    train_aug, eval_aug = _augments(augment_key, preprocess_fn)
    step = functools.partial(_program_step, program=program, augment_fn=train_aug,
                             num_classes=model.num_classes)
    return _PhaseFns(
        model=model,
        eval_augment=eval_aug,
        step_fn=parallel.jit_data_parallel(step, mesh, num_args=6, batch_argnums=(2,),
                                           donate_argnums=(0, 1)),
        eval_fn=_eval_fn(model, augment_key, preprocess_fn, mesh))


@functools.lru_cache(maxsize=32)
def _cached_fns(*key) -> _PhaseFns:
    return _build_fns(*key)


@functools.lru_cache(maxsize=32)
def _cached_eval_fn(model, augment_key, preprocess_fn, mesh) -> Callable:
    eval_aug = _augments(augment_key, preprocess_fn)[1]
    return parallel.jit_data_parallel(functools.partial(eval_step, augment_fn=eval_aug), mesh,
                                      num_args=2, batch_argnums=(1,))


def _eval_fn(*key) -> Callable:
    try:
        return _cached_eval_fn(*key)
    except TypeError:
        return _cached_eval_fn.__wrapped__(*key)


def _phase_fns(phase, model, program, augment, preprocess_fn, mesh) -> _PhaseFns:
    """The functions of `phase`, built once per process for each distinct (model, loss program,
    augmentation, mesh) — not per run, so a worker that trains many candidates of one protocol
    compiles its step and eval functions once (the loss params are an argument of the step).
    Unhashable parts (a user's model or loss) get functions of their own."""
    model = _shared_model(progressive.model_for_phase(model, phase))
    augment_key = None if augment is None else json.dumps(
        progressive.augment_for_phase(augment, phase), sort_keys=True, default=str)
    key = (model, program, augment_key, preprocess_fn, mesh)
    try:
        return _cached_fns(*key)
    except TypeError:
        return _build_fns(*key)


def _initial_state(rng: jax.Array, fns: _PhaseFns, sample: np.ndarray, config) -> TrainState:
    """Fresh (or `config.init_from` pretrained) state at the first phase's eval image shape."""
    shape = jax.eval_shape(lambda x: fns.eval_augment(rng, {"image": x})["image"],
                           jax.ShapeDtypeStruct(sample.shape, sample.dtype)).shape
    variables = None
    if config.get("init_from"):
        from lfe.training.models import pretrained  # only fine-tuning runs read checkpoints

        variables = pretrained.load_variables(config.init_from, fns.model, shape[1],
                                               fns.model.num_classes, rng=rng)
    return create_train_state(rng, fns.model, shape[1:], shared_optimizer(config), variables)


def run(
    model,
    loss_fn: LossFn,
    config: Any,
    *,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    seed: int = 0,
    preprocess_fn: PreprocessFn | None = None,
    train_batches: BatchSource = pipeline.train_batches,
    eval_batches: BatchSource = pipeline.eval_batches,
    log_fn: Callable[[dict], None] | None = None,
    checkpoint_dir: str = "",
    until: int = 0,
) -> TrainResult:
    """Trains `model` for `config.steps` steps; returns the best validation accuracy.

    Every `eval_every` steps (and at each stop-rule step, phase end and the last step) the mean
    training accuracy and loss of the interval are recorded and the validation split, if given,
    is evaluated (at the current phase's image size). A stop rule `(at_step, threshold)` stops
    the run ("stopped_early") if the best interval training accuracy after `at_step` steps is
    below `threshold`; the best validation accuracy so far is still returned; rules with
    `at_step > steps` never fire. A non-finite loss ends the run as "diverged" with `steps_run`
    = the step that produced it; best accuracies are those before the divergence.
    Augmentation comes from `config.augment` (default "unit") unless `preprocess_fn` is given;
    phases that resize or set a RandAugment magnitude need the former. The model must have a
    `num_classes` field (every registered model does); phases that set dropout need a
    `dropout_rate` field.

    Checkpoints (`checkpoint_dir` given and `config.checkpoint_every` > 0): after the first
    evaluation at or past each multiple of `checkpoint_every` (not the last) the state,
    the step RNG and the bookkeeping (curve, bests, stop rules) are saved in `checkpoint_dir`;
    a run that finds a checkpoint there starts from it, with the batches from that step on
    (`train_batches(..., start_step=step)`), and returns exactly what an uninterrupted run
    returns (its wall time counts both sessions). The directory is removed when the run ends;
    one written for another protocol, seed or data set, or unreadable, raises
    `checkpoint.CheckpointError`.

    `until` (a rung, `lfe.core.rungs`; 0 = train to the end): the run pauses after the
    evaluation at step `until` (one of its evaluation steps, below its last): status "paused",
    its curve and bests so far, and, with a `checkpoint_dir`, a checkpoint at that step that is
    kept (whatever `checkpoint_every` is) so that a later call with a larger `until` (or none)
    continues from it exactly; without one, a later call trains again from step 0 (the same
    seed gives the same steps). A stop rule or divergence before `until` ends the run as
    usual. The result's `start_step` is the step this call started from.

    Throughput: with the default `train_batches` (`pipeline.train_batches`) a training set up to
    `RESIDENT_MAX_BYTES` stays on the device(s) and each step gathers its batch there from the
    host's indices (the same batch order). The step and eval functions are compiled once per
    process for each (model, loss program, augmentation, mesh): a loss in the data form
    (`compile.DataLoss`) passes its genome as an argument, so every genome of an op set shares
    them. The result's `timing` says where this session's time went.
    """
    start_time = time.perf_counter()
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(dict(config))
    phases = progressive.from_protocol(config)
    segments = progressive.segments(phases)
    progress = loop.Progress(loop.stop_rules(config), start_time)
    boundaries = loop.eval_steps(sum(p.steps for p in phases), int(config.get("eval_every", 100)),
                                 [s for s, _ in progress.rules] + [end for _, end, _ in segments])
    pause_at = _pause_step(until, boundaries)
    augment = None
    if preprocess_fn is None:
        augment = progressive.resolve_augment(config.get("augment", "unit"))
    elif any(p.image_size is not None or p.randaug_magnitude is not None for p in phases):
        raise ValueError("phases that set image_size or randaug_magnitude need the protocol's "
                         "augment config, not a preprocess_fn")
    mesh = parallel.local_mesh()
    parallel.check_batch_size(int(config.batch_size), mesh)
    devices = parallel.device_count(mesh)  # eval batches are padded, so round them up
    eval_batch_size = -(-int(config.get("eval_batch_size", 500)) // devices) * devices
    init_rng, step_rng = jax.random.split(jax.random.PRNGKey(seed))

    program, loss_params = compile_lib.as_program(loss_fn)
    compiled: dict[tuple, _PhaseFns] = {}  # one set of functions per distinct phase setting

    def fns_of(phase) -> _PhaseFns:
        if phase.settings not in compiled:
            compiled[phase.settings] = _phase_fns(phase, model, program, augment, preprocess_fn,
                                                  mesh)
        return compiled[phase.settings]

    state = _initial_state(init_rng, fns_of(phases[0]), np.asarray(train_images[:1]), config)
    saver = None
    if checkpoint_dir and (protocol.checkpoint_every(config) or pause_at
                           or checkpoint.latest(checkpoint_dir)):  # (one left by a pause)
        saver = checkpoint.RunSaver(checkpoint_dir, config, seed, len(train_images))
        state, step_rng, progress = saver.resume(state, step_rng, progress)
    start_step = progress.steps_run
    state = parallel.replicate(state, mesh)
    val = []
    if val_images is not None:  # moved to the device(s) once, reused at every evaluation
        val = [parallel.shard_batch(b, mesh)
               for b in eval_batches(val_images, val_labels, eval_batch_size)]
    resume = {"start_step": progress.steps_run} if progress.steps_run else {}
    images = None  # the training set on the device(s), when it fits: batches are then indices
    if train_batches is pipeline.train_batches and resident(train_images):
        images = parallel.replicate(np.asarray(train_images), mesh)
        positions = np.arange(len(train_labels), dtype=np.int32)
        batches = train_batches(positions, train_labels, int(config.batch_size), seed, **resume)
    else:
        batches = train_batches(train_images, train_labels, int(config.batch_size), seed,
                                **resume)
    step_rng = parallel.replicate(step_rng, mesh)
    loss_params = parallel.replicate(loss_params, mesh)
    timing = {"setup_s": time.perf_counter() - start_time, "first_step_s": 0.0, "train_s": 0.0,
              "eval_s": 0.0}

    try:
        for boundary in (b for b in boundaries if progress.steps_run < b <= (pause_at or b)):
            index = next(i for i, (_, end, _) in enumerate(segments) if progress.steps_run < end)
            fns = fns_of(segments[index][2])
            state = state.replace(apply_fn=fns.model.apply)  # the phase's dropout rate
            totals = parallel.replicate(zero_totals(), mesh)
            clock = time.perf_counter()
            for i in range(boundary - progress.steps_run):
                state, totals = fns.step_fn(state, totals, next(batches), step_rng, loss_params,
                                            images)
                if i == 0 and not timing["first_step_s"]:  # its compile (once per run)
                    jax.block_until_ready(totals)
                    timing["first_step_s"] = time.perf_counter() - clock
                    clock = time.perf_counter()
            totals = jax.device_get(totals)
            timing["train_s"] += time.perf_counter() - clock
            if progress.diverged(totals):
                break
            clock = time.perf_counter()
            val_acc = evaluate(fns.eval_fn, state, val) if val else None
            timing["eval_s"] += time.perf_counter() - clock
            row = progress.record(boundary, totals, val_acc)
            if log_fn is not None:
                log_fn({**row, "phase": index + 1})
            if not progress.running:  # a stop rule fired
                break
            if boundary == pause_at:
                if saver is not None:  # saved running: the continuation goes on from here
                    saver.save(boundary, state, step_rng, progress)
            elif saver is not None and boundary < boundaries[-1]:
                saver.maybe_save(boundary, state, step_rng, progress)
    except BaseException:
        if saver is not None:  # an interrupted run leaves its last checkpoint complete
            saver.writer.wait(check=False)
        raise
    if pause_at and progress.running and progress.steps_run >= pause_at:
        progress.pause()
    if saver is not None:
        saver.writer.wait()
        if progress.status != "paused":
            checkpoint.remove(checkpoint_dir)
    result = progress.result(wall_time_s=time.perf_counter() - progress.start_time)
    return dataclasses.replace(result, timing={k: round(v, 4) for k, v in timing.items()},
                               start_step=start_step)


def _pause_step(until: int, boundaries: list[int]) -> int:
    """`until` checked against the run's evaluation steps (0: no pause)."""
    until = int(until or 0)
    if not until:
        return 0
    if until not in boundaries[:-1]:
        raise ValueError(f"a run can pause only at one of its evaluation steps before its last "
                         f"({boundaries[-1]}), got until={until}")
    return until


RESIDENT_MAX_BYTES = 4 << 30  # a training set up to this size is kept on the device(s)


def resident(train_images) -> bool:
    """Whether `run` keeps this training set on the device(s) and gathers each batch there from
    the host's indices (no image batch crosses to the device per step). CIFAR-10's 45,000
    training images are 138 MB."""
    return int(np.asarray(train_images).nbytes) <= RESIDENT_MAX_BYTES


__all__ = [
    "AugmentFn",
    "TrainResult",
    "TrainState",
    "accumulating_train_step",
    "create_train_state",
    "default_config",
    "eval_step",
    "evaluate",
    "image_augment",
    "init_variables",
    "resident",
    "run",
    "train_step",
    "unit_preprocess",
    "zero_totals",
]
