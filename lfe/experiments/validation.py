"""Every config value checked before a mode runs: one line naming the key and what it expects.

``lfe.main`` (``dispatch``, ``--print_config``) calls ``check`` before any mode starts, so a bad
value fails at once instead of after hours of training (``--config.ce_band=abc`` used to end a
finished evolution with ``zip() argument 2 is longer than argument 1``). ml_collections already
refuses an override whose scalar type is not its key's (``--config.top_k=abc``); this checks
what it cannot: tuples (``ce_band``, ``stop_rules``, ``keep``), names from a fixed set
(``init``, ``optimizer``, ``schedule``, ``model``, ...), ranges (sizes, probabilities, rates)
and relations (a schedule's warm-up within its horizon).

The rules are data. ``MODE_RULES[mode]`` applies to a config with that ``mode`` (dotted keys
reach into its sub-configs), ``PROTOCOL_RULES`` to every training protocol nested anywhere (a
mapping with ``total_steps``: ``fitness.gate``, ``protocol``, ``settings.<name>.protocol``,
...), and a pipeline's stages are checked as the modes they are; the runner block and the
protocols' phases go through ``defaults.check`` as the modes do. A key a config lacks is not
checked, and a key no rule names is left to its mode. Imports no JAX: the names that live in
JAX modules (optimizers, schedules, models, augmentations, loss forms) are listed here, and a
test keeps them equal to those modules' own lists.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from lfe.core import evolution, ops, records, rundir, rungs
from lfe.experiments import defaults, tables

# The names of JAX modules, for a JAX-free check (tests/test_validation.py compares them).
OPTIMIZERS = ("adam", "sgd_nesterov")  # lfe.training.schedules
SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")  # lfe.training.schedules
MODELS = ("convnet", "davidnet", "efficientnetv2_s", "resnet9v2", "seresnext29",
          "wideresnet28_10")  # lfe.training.models (built in; registered ones are added)
LOSS_FORMS = ("data", "unrolled")  # lfe.training.losses
INITS = ("authors", "uniform")  # lfe.core.genome.random_genome


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a key's value must be: ``ok(value)``, described as ``expected`` in the error."""

    expected: str
    ok: Callable[[Any], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def integer(low: int | None = None) -> Rule:
    return Rule("an integer" + ("" if low is None else f" >= {low}"),
                lambda v: _is_int(v) and (low is None or v >= low))


def number(low: float | None = None, high: float | None = None, *,
           positive: bool = False, below_high: bool = False) -> Rule:
    """A finite number in [low, high] (``positive``: > 0; ``below_high``: < high)."""
    parts = ["> 0"] if positive else []
    if low is not None:
        parts.append(f">= {low}")
    if high is not None:
        parts.append(f"{'<' if below_high else '<='} {high}")
    return Rule("a number" + (" " + " and ".join(parts) if parts else ""),
                lambda v: _is_number(v) and (not positive or v > 0)
                and (low is None or v >= low)
                and (high is None or (v < high if below_high else v <= high)))


def boolean() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def text(nonempty: bool = False) -> Rule:
    return Rule("a non-empty string" if nonempty else "a string",
                lambda v: isinstance(v, str) and (bool(v.strip()) or not nonempty))


def one_of(*names: str, dynamic: Callable[[], tuple[str, ...]] | None = None) -> Rule:
    """A name of ``names`` (plus, when given, those ``dynamic()`` returns at check time)."""
    def ok(v) -> bool:
        return isinstance(v, str) and v in names + (dynamic() if dynamic else ())
    return Rule("one of " + ", ".join(repr(n) for n in names), ok)


def sequence(rule: Rule, what: str, *, nonempty: bool = False) -> Rule:
    """A list or tuple (non-empty with ``nonempty``) of values that each pass ``rule``."""
    def ok(v) -> bool:
        return (isinstance(v, list | tuple) and (bool(v) or not nonempty)
                and all(rule.ok(x) for x in v))
    return Rule(what, ok)


def _band(v) -> bool:
    """``()`` or (max, mean, min) fitness values in [0, 1], max >= mean >= min."""
    if not isinstance(v, list | tuple):
        return False
    if not v:
        return True
    return (len(v) == 3 and all(_is_number(x) and 0 <= x <= 1 for x in v)
            and v[0] >= v[1] >= v[2])


def _stop_rules(v) -> bool:
    return isinstance(v, list | tuple) and all(
        isinstance(r, list | tuple) and len(r) == 2 and _is_int(r[0]) and r[0] >= 0
        and _is_number(r[1]) and 0 <= r[1] <= 1 for r in v)


def _keep(v) -> bool:
    return (isinstance(v, list | tuple) and bool(v) and all(_is_int(k) and k >= 1 for k in v)
            and all(a >= b for a, b in zip(v, v[1:], strict=False)))


def _augment(v) -> bool:
    if isinstance(v, str):
        return v in _augment_presets()
    return _is_mapping(v) and {"train", "eval"} <= set(v)


def _augment_presets() -> tuple[str, ...]:
    """The augmentation presets: lfe.training.data.augment's when it is loaded (a registered
    pipeline counts), else the built-in names."""
    loaded = sys.modules.get("lfe.training.data.augment")
    return tuple(loaded.PRESETS) if loaded is not None else AUGMENTS


AUGMENTS = ("unit", "wideresnet", "davidnet_cutout", "davidnet_cutmix", "effnetv2",
            "effnetv2_automl")  # lfe.training.data.augment.PRESETS


def _registered_models() -> tuple[str, ...]:
    """Models registered at run time (``lfe.training.models.register``) when it is loaded."""
    loaded = sys.modules.get("lfe.training.models")
    return tuple(loaded.available()) if loaded is not None else ()


def _phases(v) -> bool:
    if not isinstance(v, list | tuple) or not v:
        return False
    steps = integer(1)
    return all(_is_mapping(p) and steps.ok(p.get("steps")) for p in v)


PROTOCOL_RULES: dict[str, Rule] = {
    "steps": integer(1),
    "batch_size": integer(1),
    "eval_every": integer(1),
    "eval_batch_size": integer(1),
    "stop_rules": Rule("a tuple of (step >= 0, training accuracy in [0, 1]) pairs", _stop_rules),
    "optimizer": one_of(*OPTIMIZERS),
    "learning_rate": number(positive=True),
    "b1": number(0, 1, below_high=True),
    "b2": number(0, 1, below_high=True),
    "eps": number(positive=True),
    "keras_eps": boolean(),
    "momentum": number(0, 1, below_high=True),
    "weight_decay": number(0),
    "weight_decay_on": one_of("all", "kernels"),  # lfe.training.schedules.WEIGHT_DECAY_ON
    "image_fit": one_of("crop", "squash"),  # lfe.training.data.tfds_source.FITS
    "schedule": one_of(*SCHEDULES),
    "warmup_steps": integer(0),
    "hold_steps": integer(0),
    "total_steps": integer(1),
    "validate": boolean(),
    "checkpoint_every": integer(0),
    "model": one_of(*MODELS, dynamic=_registered_models),
    "augment": Rule("an augmentation preset (" + ", ".join(AUGMENTS)
                    + ") or a {train, eval} mapping", _augment),
    "loss_form": one_of(*LOSS_FORMS),
    "init_from": text(),
    "phases": Rule("a non-empty tuple of phases, each with steps >= 1", _phases),
}

_RUNNER = {"data_dir": text(), "command": text()}  # the rest: executors.check_runner

MODE_RULES: dict[str, dict[str, Rule]] = {
    "evolve": {
        "op_set": one_of(*ops.available_op_sets()),
        "init": one_of(*INITS),
        "initial_population": integer(1),
        "population_size": integer(1),
        "tournament_size": integer(1),
        "max_mutation_attempts": integer(1),
        "max_failed_children": integer(1),
        "max_iterations": integer(0),
        "max_hours": number(0),
        "max_core_hours": number(0),
        "max_steps": integer(0),
        "novelty": one_of(*evolution.NOVELTY_SCOPES),
        "rescore_initial": boolean(),
        "rungs": sequence(integer(1), "() or increasing steps of a child's surrogate run at "
                          "which it may be stopped, e.g. '(400,1200)'"),
        "rung_fraction": number(0, 1, positive=True),
        "rung_score": one_of(*rungs.SCORES),
        "fitness.on_diverged": one_of(*records.ON_DIVERGED),
        "fitness.filter.enabled": boolean(),
        "fitness.filter.train_images": integer(1),
        "fitness.filter.eval_images": integer(1),
        "fitness.filter.steps": integer(1),
        "fitness.filter.learning_rate": number(positive=True),
        "fitness.filter.metric": one_of("final", "best", "mean"),
        "fitness.filter.ratio": number(0),
        "ce_band": Rule("() or three fitness values (max, mean, min) in [0, 1], max >= mean >= "
                        "min, e.g. '(0.514,0.502,0.493)'", _band),
        "top_k": integer(1),
        "plot_every": integer(0),
        "fitness.dataset": text(nonempty=True),
        "fitness.data_dir": text(),
        "fitness.gate_enabled": boolean(),
        "fitness.gate_min_train_accuracy": number(0, 1),
        **_RUNNER,
    },
    "compare": {"losses": text(nonempty=True), "dataset": text(nonempty=True),
                "title": text(), **_RUNNER},
    "eliminate": {
        "source": text(),
        "candidates_stage": one_of("", "surrogate", "initial"),
        "keep": Rule("a non-empty, non-increasing tuple of integers >= 1", _keep),
        "references": text(),
        "groups": integer(1),
        "finalists": integer(0),
        "dataset": text(nonempty=True),
        **_RUNNER,
    },
    "transfer": {
        "losses": text(nonempty=True),
        "metric": one_of("final", "best"),
        "p_values": sequence(one_of(*tables.P_TITLES),
                             "a tuple of " + " and/or ".join(map(repr, tables.P_TITLES))),
        "layout.kind": one_of("loss", "tau"),
        "reference": text(),
        "title": text(),
        **_RUNNER,
    },
    "pipeline": {"transfer_finalists": integer(1), "data_dir": text()},
    "phenotypes": {"losses": text(nonempty=True), "num_random": integer(0),
                   "op_set": one_of(*ops.available_op_sets()), "init": one_of(*INITS),
                   "seed": integer(0)},
    "augment_grid": {"dataset": text(nonempty=True), "image_size": integer(1),
                     "magnitudes": sequence(number(0), "a non-empty tuple of numbers >= 0",
                                           nonempty=True),
                     "num_images": integer(1), "num_layers": integer(0),
                     "cutmix_alpha": number(positive=True), "seed": integer(0),
                     "split": one_of("train", "val", "test"), "data_dir": text()},
    "report": {"run_dir": text()},
}


def _is_mapping(value) -> bool:
    return isinstance(value, Mapping) or hasattr(value, "items")  # a ConfigDict is not a Mapping


def _get(config, dotted: str) -> tuple[bool, Any]:
    value = config
    for key in dotted.split("."):
        if not _is_mapping(value) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _apply(config, rules: Mapping[str, Rule], where: str) -> None:
    for key, rule in rules.items():
        present, value = _get(config, key)
        if present and not rule.ok(rundir.to_plain(value)):
            shown = rundir.to_plain(value) if hasattr(value, "to_dict") else value
            raise ValueError(f"config.{where}{key}: expected {rule.expected}, got {shown!r}")


def _protocol_relations(protocol, where: str) -> None:
    schedule = protocol.get("schedule", "warmup_cosine")
    if str(schedule).startswith("warmup"):
        warm, hold = protocol.get("warmup_steps", 0), protocol.get("hold_steps", 0)
        total = protocol.get("total_steps")
        if warm + hold > total:
            raise ValueError(f"config.{where}warmup_steps: warmup_steps + hold_steps must be <= "
                             f"total_steps (the schedule's horizon), got {warm} + {hold} > "
                             f"{total}")


def _walk(config, where: str) -> None:
    """Applies the rules to ``config`` (at key path ``where``) and everything nested in it."""
    mode = config.get("mode")
    if isinstance(mode, str) and mode in MODE_RULES:
        _apply(config, MODE_RULES[mode], where)
        defaults.check(config)  # runner fields, phases that sum to steps
    if "total_steps" in config:
        _apply(config, PROTOCOL_RULES, where)
        _protocol_relations(config, where)
    for key, value in config.items():
        if _is_mapping(value):
            _walk(value, f"{where}{key}.")


def check(config) -> None:
    """Raises a one-line ValueError naming the first key of ``config`` (any mode, nested stages
    and protocols included) whose value breaks its rule, with what the key expects."""
    _walk(config, "")
