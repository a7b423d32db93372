"""The fitness protocol (paper §3.5, §3.7, §3.8): a loss → a ``FitnessRecord``, by training.

A child is first scored by the training-free filter when ``config.filter.enabled`` (off by
default; ``filter_record``: rejected ones are ``filtered``, untrained). A candidate is then
trained through the **gate** (``config.gate``, the ConvNet for 800 steps):
if its best training accuracy is below ``gate_min_train_accuracy`` (0.37) it is rejected
(``gated``). Otherwise it is trained with the ``stage`` protocol — ``surrogate`` for children,
``initial`` for the initial population — whose stop rules (early stop 2) may end it early; its
best validation accuracy so far is still its fitness (``stopped_early``). A non-finite loss ends
a run (``diverged``, detected in ``lfe.training.loop``): in the gate a failed child; in the
stage protocol what ``config.on_diverged`` says (``lfe.core.records``: by default, as the
authors' code, its best validation accuracy so far). ``gated`` candidates are failed children.
The protocols themselves are plain data: ``lfe.core.protocol.fitness_config``.

``gate_record`` and ``scored_record`` turn training results into records; the sequential path
(``evaluate``) and the population path (``lfe.training.population.evaluate_population``) both
use them, so a candidate gets the same record either way.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import numpy as np

from lfe.core import records
from lfe.core.records import FitnessRecord, Status
from lfe.training import data as data_lib
from lfe.training import losses as losses_lib
from lfe.training import train as train_lib
from lfe.training.models import get_model

STAGES = ("surrogate", "initial")
TRAIN_SPLITS, EVAL_SPLITS = ("train", "train+val"), ("val", "test")


def load_size(protocol: Any, name: str) -> tuple[int | None, str]:
    """(side, fit) to load dataset ``name`` at for ``protocol``: for a dataset of varying image
    size (Cars196, Flowers102, Caltech101) the largest image size its phases train or evaluate
    at (the device pipeline then crops and resizes down to each phase's size) and the
    protocol's ``image_fit`` ("crop", the default: the centred square of the shorter side;
    "squash": the whole image; ``tfds_source.resize_images``); (None, "crop") for the others,
    which are used as they are."""
    if name not in data_lib.tfds_source.VARIABLE_SIZE:
        return None, "crop"
    sizes = [int(p["image_size"]) for p in protocol.get("phases") or () if p.get("image_size")]
    if not sizes:
        raise ValueError(f"dataset {name} has images of varying size, but the protocol's phases "
                         "set no image_size to load it at")
    return max(sizes), str(protocol.get("image_fit", "crop"))


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_dir: str, image_size: int | None = None,
                 fit: str = "crop") -> data_lib.Dataset:
    """The dataset, loaded once per process (workers evaluate many candidates); a dataset of
    varying image size at ``image_size`` (``load_size``)."""
    extra = {} if image_size is None else {"image_size": image_size, "fit": fit}
    return data_lib.load(name, data_dir=data_dir or None, **extra)


@functools.lru_cache(maxsize=4)
def load_splits(name: str, data_dir: str, train_split: str = "train",
                eval_split: str = "val", image_size: int | None = None,
                fit: str = "crop") -> data_lib.Dataset:
    """The dataset with ``eval_split`` in the validation slot and ``train_split`` for training
    (``"train+val"`` trains on both, as the paper's transfer runs use the full training set)."""
    if train_split not in TRAIN_SPLITS or eval_split not in EVAL_SPLITS:
        raise ValueError(f"bad splits {train_split!r}/{eval_split!r}; available: train or "
                         "train+val for training, val or test for evaluation")
    ds = load_dataset(name, data_dir, image_size, fit)
    if not len(ds.split(eval_split)[1]):
        raise ValueError(f"dataset {name} has no {eval_split} images to score on (Cars196, "
                         "Flowers102 and Caltech101 hold none out: the paper trains on all their "
                         "training images and scores the test split, as "
                         "configs/transfer_paper.py:table10/table11 do)")
    if train_split == "train" and eval_split == "val":
        return ds
    images, labels = ds.train_images, ds.train_labels
    if train_split == "train+val":
        if eval_split == "val":
            raise ValueError("training on train+val needs eval_split 'test'")
        images = np.concatenate([images, ds.val_images])
        labels = np.concatenate([labels, ds.val_labels])
    ev_images, ev_labels = ds.split(eval_split)
    return dataclasses.replace(ds, train_images=images, train_labels=labels,
                               val_images=ev_images, val_labels=ev_labels)


def train_once(loss: losses_lib.LossDef, protocol: Any, dataset: data_lib.Dataset,
               seed: int, checkpoint_dir: str = "", until: int = 0) -> train_lib.TrainResult:
    """One real training run of ``protocol`` (its ``augment`` and ``phases`` included), with
    mid-training checkpoints in ``checkpoint_dir`` when the protocol sets ``checkpoint_every``;
    paused at step ``until`` when it is given (``train.run``)."""
    model = get_model(protocol.model, num_classes=dataset.num_classes,
                      **dict(protocol.get("model_kwargs") or {}))
    validate = bool(protocol.get("validate", True))
    return train_lib.run(
        model, loss.training_loss(protocol.get("loss_form", "data")), protocol, seed=seed,
        train_images=dataset.train_images, train_labels=dataset.train_labels,
        val_images=dataset.val_images if validate else None,
        val_labels=dataset.val_labels if validate else None,
        train_batches=data_lib.pipeline.train_batches,
        eval_batches=data_lib.pipeline.eval_batches, checkpoint_dir=checkpoint_dir, until=until)


def gate_record(gate: train_lib.TrainResult, min_train_accuracy: float) -> FitnessRecord | None:
    """The failed child's record when ``gate`` diverged or stayed below the threshold; None when
    the candidate passed."""
    acc = gate.best_train_accuracy
    if gate.status == Status.DIVERGED:
        return FitnessRecord(None, Status.DIVERGED, gate.steps_run, gate.wall_time_s, gate.curve,
                             acc, acc, message=f"gate: {gate.message}")
    if acc < min_train_accuracy:
        return FitnessRecord(None, Status.GATED, gate.steps_run, gate.wall_time_s, gate.curve,
                             acc, acc, message=f"gate: best train accuracy {acc:.4f} < "
                                               f"{min_train_accuracy}")
    return None


def scored_record(result: train_lib.TrainResult, gate: train_lib.TrainResult | None = None,
                  on_diverged: str = "failed") -> FitnessRecord:
    """The record of a candidate trained with its stage protocol (after ``gate``, if any):
    fitness = best validation accuracy. A diverged run is a failed child (fitness None) with
    ``on_diverged`` "failed", or with "best_so_far" when no evaluation came before the
    divergence; otherwise ``stopped_early`` with its best validation accuracy so far."""
    status, fitness, message = result.status, result.best_val_accuracy, result.message
    if status == Status.DIVERGED:
        scored = any(row[2] is not None for row in result.curve)
        if records.check_on_diverged(on_diverged) == "best_so_far" and scored:
            status, message = Status.STOPPED_EARLY, f"{message}; fitness: best validation so far"
        else:
            fitness = None
    return FitnessRecord(
        fitness, status, (gate.steps_run if gate else 0) + result.steps_run,
        (gate.wall_time_s if gate else 0.0) + result.wall_time_s, result.curve,
        gate.best_train_accuracy if gate else None, result.best_train_accuracy,
        result.best_val_accuracy, message)


def paused_record(result: train_lib.TrainResult, gate: train_lib.TrainResult | None,
                  steps: int, wall_time_s: float, rung: int) -> FitnessRecord:
    """The record of a run paused at rung ``rung`` (an index of the evolution's ``rungs``):
    status ``paused``, fitness = its best validation accuracy so far; ``steps`` and
    ``wall_time_s`` are what this task trained and took (the controller sums a candidate's
    tasks, ``lfe.core.rungs.merge``)."""
    return FitnessRecord(result.best_val_accuracy, Status.PAUSED, steps, wall_time_s,
                         result.curve, gate.best_train_accuracy if gate else None,
                         result.best_train_accuracy, result.best_val_accuracy, result.message,
                         rung=rung)


_PROBES: dict[tuple, tuple] = {}  # (dataset id, filter settings) -> (problem, settings, CE)


def filter_record(loss: losses_lib.LossDef, config: Any,
                  dataset: data_lib.Dataset) -> FitnessRecord | None:
    """The training-free filter (``config.filter``, ``protocol.filter_config``; off: None):
    the ``filtered`` record of a loss it rejects, else None. The probe's data and
    cross-entropy's score are computed once per process."""
    from lfe.training import loss_rejection as probe

    f = config.get("filter")
    if not f or not f.get("enabled"):
        return None
    start = time.perf_counter()
    key = (id(dataset), int(f.train_images), int(f.eval_images), int(f.steps),
           float(f.learning_rate))
    if key not in _PROBES:
        x_train, x_eval = probe.image_features(dataset.train_images[: key[1]],
                                               dataset.val_images[: key[2]])
        problem = probe.linear(x_train, dataset.train_labels[: key[1]], x_eval,
                               dataset.val_labels[: key[2]], dataset.num_classes)
        settings = probe.Settings(steps=key[3], learning_rate=key[4])
        _PROBES[key] = (problem, settings,
                        probe.fit(losses_lib.get("cross_entropy"), problem, settings))
    problem, settings, reference = _PROBES[key]
    score = probe.fit(loss, problem, settings)
    if probe.passes(score, reference, str(f.metric), float(f.ratio)):
        return None
    mine, ce = score.metric(str(f.metric)), reference.metric(str(f.metric))
    return FitnessRecord(None, Status.FILTERED, 0, time.perf_counter() - start,
                         message=f"filter: linear probe {f.metric} accuracy {mine:.4f} < "
                                 f"{f.ratio} x cross-entropy's {ce:.4f}"
                                 + ("" if score.finite else " (non-finite)"))


def stage_dataset(config: Any, stage: str) -> data_lib.Dataset:
    """The dataset of fitness ``config`` as its ``stage`` protocol loads it (``load_size``),
    once per process."""
    return load_dataset(config.dataset, config.get("data_dir", ""),
                        *load_size(config[stage], config.dataset))


def check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown fitness stage {stage!r}; available: {', '.join(STAGES)}")


def evaluate(loss: losses_lib.LossDef, config: Any, *, seed: int,
             stage: str = "surrogate", checkpoint_dir: str = "",
             rung: tuple[int, int] | None = None) -> FitnessRecord:
    """Gate (when enabled) then the ``stage`` protocol (``surrogate`` or ``initial``); with a
    ``checkpoint_dir``, each run checkpoints in its own subfolder (``gate``, ``<stage>``) when
    its protocol sets ``checkpoint_every``.

    ``rung = (index, until)``: one task of a candidate trained in rungs (``lfe.core.rungs``):
    the gate runs only in the first (index 0); the stage run continues from its checkpoint in
    ``checkpoint_dir`` (or trains again from step 0 without one) and pauses at step ``until``
    (0: to the end), giving a ``paused_record``. Such a task's record counts the steps it
    trained and the time it took."""
    def folder(name: str) -> str:
        return os.path.join(checkpoint_dir, name) if checkpoint_dir else ""

    start = time.perf_counter()
    check_stage(stage)
    dataset = stage_dataset(config, stage)
    index, until = rung if rung is not None else (0, 0)
    if stage == "surrogate" and index == 0:
        rejected = filter_record(loss, config, dataset)
        if rejected is not None:
            return rejected
    gate = None
    if config.gate_enabled and stage == "surrogate" and index == 0:
        gate = train_once(loss, config.gate, dataset, seed, folder("gate"))
        failed = gate_record(gate, config.gate_min_train_accuracy)
        if failed is not None:
            return failed
    result = train_once(loss, config[stage], dataset, seed, folder(stage), until=until)
    if rung is None:
        return scored_record(result, gate, config.get("on_diverged", "failed"))
    steps = (gate.steps_run if gate else 0) + result.steps_run - result.start_step
    wall = time.perf_counter() - start
    if result.status == "paused":
        return paused_record(result, gate, steps, wall, index)
    record = scored_record(result, gate, config.get("on_diverged", "failed"))
    return dataclasses.replace(record, steps=steps, wall_time_s=wall)
