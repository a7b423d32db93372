"""Training protocols as plain data, importable without JAX.

A protocol is a ConfigDict: the model, its augmentation and the trainer's fields (steps, batch,
optimizer, schedule, evaluation, stop rules, optional progressive ``phases``). Configs and the
evolution controller build them here without importing JAX (the controller process never does),
and ``lfe.training`` runs them. ``fitness_config`` is ``config.fitness`` of ``mode: evolve``: the
dataset and the gate, surrogate and initial-population protocols (paper §3.5, §3.7, §3.8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections


def trainer_defaults() -> ml_collections.ConfigDict:
    """The ConvNet fitness protocol (§3.5, §3.7; authors' `fitness_function_convnet_standard`).

    The gate is this with `steps=800, stop_rules=((800, 0.37),)` and no validation data; the
    surrogate's early stop 2 is `stop_rules=((3000, 0.25),)`. `steps` is how many updates the
    run makes (with `phases`, their sum: `check_steps`); `total_steps` is the learning-rate
    schedule's horizon, which may exceed `steps` (the paper's surrogate stops after 8,000 steps
    of a 64,000-step schedule). Optional fields: `phases`
    (progressive training, `lfe.training.progressive`), `augment` (default "unit"), `init_from` (a
    pretrained-weights file for `lfe.training.models.pretrained.load_variables`),
    `checkpoint_every` (steps between mid-training checkpoints, `checkpoint_every()`; absent or 0:
    none, as in these short CPU protocols, whose configs and task arguments it leaves as they
    were; the paper's large-model protocols set `CHECKPOINT_EVERY`), `loss_form` ("data", the
    default: an evolved loss is trained in the data form, one compiled step for every genome;
    "unrolled": compiled per loss; `lfe.training.losses.LOSS_FORMS`), `model_kwargs.dtype`
    (the compute precision, `precision()`: absent or "float32" is float32 throughout, as every
    protocol so far; "bfloat16" is mixed precision for the large models on accelerators:
    convolutions, matmuls and activations in bfloat16, parameters, optimizer state, BatchNorm
    statistics, logits → softmax → loss in float32; set it with `with_precision` or the
    builders' `precision=`, never a `precision` key, which `check_protocols` refuses),
    `weight_decay_on` ("all", the default, or "kernels": SGD's weight decay on convolution and
    dense kernels only, `lfe.training.schedules`), `image_fit` ("crop", the default, or
    "squash": how a dataset of varying image size is resized when loaded,
    `lfe.training.fitness.load_size`).
    """
    return ml_collections.ConfigDict(
        {
            "steps": 8000,  # updates run; with phases, their sum
            "batch_size": 128,
            "eval_every": 100,
            "eval_batch_size": 500,
            "stop_rules": (),  # (at_step, min_best_train_accuracy) pairs
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-7,
            "keras_eps": True,
            "momentum": 0.9,
            "weight_decay": 0.0,
            "schedule": "warmup_cosine",
            "warmup_steps": 800,
            "hold_steps": 0,
            "total_steps": 8000,  # the schedule's horizon (>= steps when a run stops early)
        }
    )


CHECKPOINT_EVERY = 2000  # the large-model protocols': a checkpoint at the first evaluation >= it


def checkpoint_every(protocol: Mapping[str, Any]) -> int:
    """Steps between a run's mid-training checkpoints (``lfe.training.checkpoint``), 0 = none.

    A run given a checkpoint directory saves its whole state after the first evaluation at or
    past each multiple of this, resumes from the newest checkpoint there, and removes them when
    it finishes; controllers pass a directory only when this is positive."""
    every = int(protocol.get("checkpoint_every", 0) or 0)
    if every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0 = off), got {every}")
    return every


PRECISIONS = ("float32", "bfloat16")


def precision(protocol: Mapping[str, Any]) -> str:
    """A protocol's compute precision: its ``model_kwargs.dtype``, "float32" when absent."""
    kwargs = protocol.get("model_kwargs") or {}
    return str(kwargs.get("dtype", "float32") or "float32")


def with_precision(protocol: ml_collections.ConfigDict, value: str) -> ml_collections.ConfigDict:
    """``protocol`` (changed in place and returned) computing in ``value`` (``PRECISIONS``).

    "bfloat16" builds the model with ``dtype="bfloat16"`` (every registered model has the field;
    ``param_dtype`` stays float32: float32 master weights, float32 gradients and Adam state);
    BatchNorm statistics are float32 (flax reduces and keeps them in float32) and the trainer
    casts the logits to float32 before the softmax and the loss. bfloat16 has float32's exponent
    range, so no loss scaling is needed. "float32" removes the key, so a float32 protocol's
    config is what it was before precision existed."""
    if value not in PRECISIONS:
        raise ValueError(f"unknown precision {value!r}; available: {', '.join(PRECISIONS)}")
    if protocol.get("model_kwargs") is None:
        protocol.model_kwargs = ml_collections.ConfigDict()
    kwargs = protocol.model_kwargs
    if value == "float32":
        if "dtype" in kwargs:
            del kwargs["dtype"]
    else:
        kwargs.dtype = value
    return protocol


def training_protocol(**overrides) -> ml_collections.ConfigDict:
    """One training run: model, augmentation and the trainer's fields (``trainer_defaults``).

    The default is the paper's ConvNet protocol (Table 4): 8,000 steps, batch 128, Adam 1e-3,
    linear warm-up 800 then cosine, evaluation every 100 steps, inputs scaled to [0, 1]. With
    ``phases`` and no ``steps``, ``steps`` is the phases' sum; a mismatch is refused.
    ``precision="bfloat16"``: mixed precision (``with_precision``).
    """
    p = trainer_defaults()
    p.model = "convnet"
    p.model_kwargs = ml_collections.ConfigDict()
    p.augment = "unit"  # a preset of lfe.training.data.augment.PRESETS, or {"train", "eval"}
    p.validate = True  # evaluate the validation split (the gate needs only training accuracy)
    compute = overrides.pop("precision", "float32")
    if overrides.get("phases") and "steps" not in overrides:
        overrides["steps"] = sum(int(phase["steps"]) for phase in overrides["phases"])
    for key, value in overrides.items():
        p[key] = value
    check_steps(p)
    return with_precision(p, compute)


# EfficientNetV2-S recipes: (augmentation preset, stochastic depth). "authors": the paper's
# authors' code (a square of the shorter side, i.e. no crop on CIFAR; RandAugment with reflected
# borders and a 17th do-nothing branch; no stochastic depth); "automl": the google/automl
# EfficientNetV2 recipe, lfe's before issue #21 (a square of 5-100% of the area; grey 128 fill;
# always one of 16 ops; drop_path_rate 0.2). README "Protocols" gives the sources.
EFFNETV2_RECIPES = {"authors": ("effnetv2", 0.0), "automl": ("effnetv2_automl", 0.2)}


def effnetv2_protocol(phases: list[dict], *, total_steps: int, hold_steps: int = 0,
                      batch_size: int = 64, precision: str = "float32", recipe: str = "authors",
                      **overrides) -> ml_collections.ConfigDict:
    """EfficientNetV2-S with progressive RandAugment (App. D): Adam 1e-3 (Keras form), linear
    warm-up over 6,400 steps, ``hold_steps`` at the peak, cosine to 0 at ``total_steps``;
    augmentation (random square crop, RandAugment 2 layers, (x - 127.5)/128) and stochastic
    depth of ``recipe`` (``EFFNETV2_RECIPES``), whose image size, magnitude and the model's
    dropout follow ``phases`` (``lfe.training.progressive``); a checkpoint every
    ``CHECKPOINT_EVERY`` steps; ``precision``: ``with_precision``."""
    if recipe not in EFFNETV2_RECIPES:
        raise ValueError(f"unknown EfficientNetV2 recipe {recipe!r}; available: "
                         + ", ".join(EFFNETV2_RECIPES))
    augment, drop_path_rate = EFFNETV2_RECIPES[recipe]
    protocol = training_protocol(
        model="efficientnetv2_s", augment=augment, batch_size=batch_size,
        optimizer="adam", learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=6400,
        hold_steps=hold_steps, total_steps=total_steps, phases=[dict(p) for p in phases],
        checkpoint_every=CHECKPOINT_EVERY, precision=precision)
    if drop_path_rate:  # the model's default is the authors' 0
        protocol.model_kwargs.drop_path_rate = drop_path_rate
    for key, value in overrides.items():
        protocol[key] = value
    return protocol


def surrogate_protocol(precision: str = "float32",
                       recipe: str = "authors") -> ml_collections.ConfigDict:
    """The paper's surrogate (§3.5.1, App. D): EfficientNetV2-S at 96x96, RandAugment 2 layers
    magnitude 5, dropout 0.1, batch 64, Adam 1e-3 warm-up 6,400 then cosine over 64,000 steps,
    stopped after 8,000 (phase 1 of the schedule), early stop 2 at step 3,000 below 0.25 train
    accuracy, best validation accuracy over evaluations every 100 steps. ``precision``:
    "bfloat16" for mixed precision (``with_precision``; the paper does not say); ``recipe``:
    ``EFFNETV2_RECIPES`` (the authors' augmentation and stochastic depth by default)."""
    return effnetv2_protocol(
        [{"steps": 8000, "image_size": 96, "dropout": 0.1, "randaug_magnitude": 5.0}],
        total_steps=64000, stop_rules=((3000, 0.25),), precision=precision, recipe=recipe)


def fitness_config() -> ml_collections.ConfigDict:
    """``config.fitness``: data, gate, surrogate and initial-population protocols.

    Gate (early stopping 1, §3.7): the ConvNet for 800 steps without validation; a candidate
    whose best training accuracy stays below 0.37 is a failed child. The surrogate here is the
    ConvNet protocol of the paper's initial evolutionary run (§3.6) with early stop 2 (training
    accuracy below 0.25 at step 3,000 ends the run; its best validation accuracy so far is still
    its fitness), which runs on a CPU; the paper's EfficientNetV2-S surrogate is
    ``surrogate_protocol()`` (``configs/surrogate.py``). The initial population is scored with
    the ConvNet for 8,000 steps (§3.10). ``on_diverged``: what a scored run that hits a
    non-finite loss becomes (``lfe.core.records.ON_DIVERGED``): ``best_so_far``, as the authors'
    code, or ``failed``, a failed child (lfe's first rule); the gate always fails it.
    """
    c = ml_collections.ConfigDict()
    c.dataset = "cifar10"
    c.data_dir = ""  # "" = $LFE_DATA_DIR, else tensorflow-datasets
    # best_so_far (default): the paper's §3.7 rule for a stopped run, which is what Keras'
    # TerminateOnNaN makes a NaN run in the authors' code; "failed": a failed child
    c.on_diverged = "best_so_far"
    c.gate_enabled = True
    c.gate_min_train_accuracy = 0.37
    c.gate = training_protocol(steps=800, validate=False)
    c.filter = filter_config()
    c.surrogate = training_protocol(stop_rules=((3000, 0.25),))
    c.initial = training_protocol()
    return c


def filter_config() -> ml_collections.ConfigDict:
    """``config.fitness.filter``: the training-free filter, a first rung before the gate (off
    by default; not in the paper; ``lfe.training.loss_rejection``, results/fidelity). A child's
    loss trains a linear softmax classifier on 2x2-pooled standardised pixels of the first
    ``train_images`` training images for ``steps`` full-batch Adam steps; it is rejected
    (``filtered``, a failed child that trained nothing) unless its ``metric`` accuracy on the
    first ``eval_images`` validation images reaches ``ratio`` x cross-entropy's on the same
    probe. The settings are the ones results/fidelity chose before scoring any candidate
    (AUC 0.88 between the CPU evolution's gated and scored children; about a second each)."""
    return ml_collections.ConfigDict({
        "enabled": False, "train_images": 2000, "eval_images": 1000, "steps": 200,
        "learning_rate": 0.001, "metric": "mean", "ratio": 0.9})


# App. D: (image size, dropout, RandAugment magnitude) per progressive phase.
TABLE12 = {"image_size": (128, 160, 192, 224), "dropout": (0.10, 0.20, 0.30, 0.40),
           "randaug_magnitude": (5.0, 8.0, 12.0, 15.0)}  # CIFAR-10/100 (adapted)
TABLE13 = {"image_size": (128, 186, 244, 300), "dropout": (0.10, 0.17, 0.24, 0.30),
           "randaug_magnitude": (5.0, 8.0, 12.0, 15.0)}  # Cars196, Flowers102, Caltech101


def paper_phases(table: Mapping[str, Sequence[Any]], steps_per_phase: int) -> list[dict]:
    """Plain-data phases from a table such as `TABLE12`, each `steps_per_phase` long."""
    count = len(table["image_size"])
    return [{"steps": int(steps_per_phase), **{k: v[i] for k, v in table.items()}}
            for i in range(count)]


def truncated(protocol: Mapping[str, Any], until: int) -> ml_collections.ConfigDict:
    """A copy of ``protocol`` that runs only its first ``until`` steps: the same schedule
    (``total_steps``), stop rules, evaluations and phases up to there, so with the same seed it
    trains exactly the full run's first ``until`` steps (the phases are cut to sum to
    ``until``). ``until`` must be below the protocol's ``steps``."""
    steps = int(protocol["steps"])
    if not 0 < int(until) < steps:
        raise ValueError(f"truncated: until must be between 0 and the protocol's {steps} steps, "
                         f"got {until}")
    out = ml_collections.ConfigDict(dict(protocol.items()) if not hasattr(protocol, "to_dict")
                                    else protocol.to_dict())
    out.steps = int(until)
    if protocol.get("phases"):
        left, phases = int(until), []
        for phase in protocol["phases"]:
            if left <= 0:
                break
            phases.append({**dict(phase), "steps": min(int(phase["steps"]), left)})
            left -= phases[-1]["steps"]
        out.phases = phases
    return out


def check_steps(protocol: Mapping[str, Any], where: str = "protocol") -> None:
    """Refuses a protocol whose ``steps`` is not the sum of its ``phases``' steps (one line
    naming both numbers); ``total_steps``, the schedule's horizon, may differ from both."""
    phases = protocol.get("phases")
    if not phases:
        return
    total = sum(int(phase.get("steps", 0)) for phase in phases)
    if int(protocol.get("steps", total)) != total:
        raise ValueError(f"{where}: steps = {protocol['steps']} but the phases sum to {total} "
                         "steps; set steps to the sum (or leave it out: it is derived)")


def check_protocols(config: Any, where: str = "") -> None:
    """``check_steps`` on every protocol (a mapping with ``total_steps``) nested in ``config``,
    each named by its key path; for a mode's config before it trains anything."""
    if not hasattr(config, "items"):
        return
    if "total_steps" in config:
        check_steps(config, where or "protocol")
        check_precision(config, where or "protocol")
        return
    for key, value in config.items():
        check_protocols(value, f"{where}.{key}" if where else str(key))


def check_precision(protocol: Mapping[str, Any], where: str = "protocol") -> None:
    """Refuses, in one line, an unknown ``model_kwargs.dtype`` and a ``precision`` key (which
    nothing reads: the precision is the model's ``dtype``)."""
    if "precision" in protocol:
        raise ValueError(f"{where}: precision is set by model_kwargs.dtype "
                         "(protocol.with_precision), not a 'precision' key")
    if precision(protocol) not in PRECISIONS:
        raise ValueError(f"{where}: unknown model_kwargs.dtype {precision(protocol)!r}; "
                         f"available: {', '.join(PRECISIONS)}")
