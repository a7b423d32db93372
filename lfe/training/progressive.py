"""Progressive training (§3.5, App. D Tables 12–13): image size, dropout and RandAugment
magnitude grow phase by phase while one optimizer and one learning-rate schedule run throughout.

A protocol (``ml_collections.ConfigDict``, see ``lfe.training.train.default_config``) may carry
``phases``: a list of plain dicts ``{"steps": int, "image_size": int, "dropout": float,
"randaug_magnitude": float}`` (only ``steps`` is required; a missing key leaves that setting as
the protocol has it). The run is the phases back to back: its length is the sum of the phases'
steps (``steps`` must equal it: ``lfe.core.protocol.check_steps``, which also holds the paper's
phase tables, JAX-free), the schedule horizon ``total_steps`` stays the protocol's, and
the ``TrainState`` (parameters, BatchNorm statistics, optimizer state and step) is carried from
phase to phase. "Phases 1..k" of a protocol is ``first_phases(protocol, k)``.

A phase rewrites the augmentation pipeline by op name — the ``size`` of every
``random_square_crop`` and ``resize`` step (train and eval) and the ``magnitude`` of every
``randaugment`` step — and the model's ``dropout_rate`` field. Evaluation during a phase uses
the phase's eval pipeline, i.e. the phase's image size: the network is scored at the resolution
it is being trained at (a train/test resolution mismatch costs accuracy, Touvron et al. 2019),
and a run stopped after phase k (the elimination protocol) is scored as it was trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from lfe.core.protocol import TABLE12, TABLE13, check_steps, paper_phases
from lfe.training.data import augment as augment_lib

SIZE_OPS = ("random_square_crop", "resize")
MAGNITUDE_OPS = ("randaugment",)
PHASE_KEYS = ("steps", "image_size", "dropout", "randaug_magnitude")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase: `steps` updates with these settings (None = leave as the protocol has it)."""

    steps: int
    image_size: int | None = None
    dropout: float | None = None
    randaug_magnitude: float | None = None

    @property
    def settings(self) -> tuple[int | None, float | None, float | None]:
        """What the compiled step depends on: phases with equal settings share one compile."""
        return (self.image_size, self.dropout, self.randaug_magnitude)


def parse(phases: Sequence[Mapping[str, Any]]) -> tuple[Phase, ...]:
    """Validates plain-data phases (unknown keys, missing or non-positive steps)."""
    parsed = []
    for index, phase in enumerate(phases):
        phase = dict(phase)
        unknown = sorted(set(phase) - set(PHASE_KEYS))
        if unknown:
            raise ValueError(f"phase {index + 1}: unknown key(s) {', '.join(unknown)}; "
                             f"available: {', '.join(PHASE_KEYS)}")
        if int(phase.get("steps", 0)) <= 0:
            raise ValueError(f"phase {index + 1}: needs steps > 0, got {phase.get('steps')}")
        parsed.append(Phase(
            steps=int(phase["steps"]),
            image_size=None if phase.get("image_size") is None else int(phase["image_size"]),
            dropout=None if phase.get("dropout") is None else float(phase["dropout"]),
            randaug_magnitude=(None if phase.get("randaug_magnitude") is None
                               else float(phase["randaug_magnitude"]))))
    return tuple(parsed)


def from_protocol(protocol: Any) -> tuple[Phase, ...]:
    """The protocol's phases; a protocol without `phases` is one phase of `steps` steps."""
    phases = protocol.get("phases")
    if not phases:
        return (Phase(steps=int(protocol["steps"])),)
    parsed = parse(phases)
    check_steps(protocol)
    return parsed


def first_phases(protocol: Any, k: int) -> ml_collections.ConfigDict:
    """A copy of `protocol` that trains phases 1..k (its `steps` set to their sum)."""
    phases = list(protocol.get("phases") or ())
    if not 1 <= k <= len(phases):
        raise ValueError(f"k must be in 1..{len(phases)} (the protocol's phases), got {k}")
    out = ml_collections.ConfigDict(protocol.to_dict() if hasattr(protocol, "to_dict")
                                    else dict(protocol))
    out.phases = [dict(p) for p in phases[:k]]
    out.steps = sum(int(p["steps"]) for p in phases[:k])
    return out


def segments(phases: Sequence[Phase]) -> list[tuple[int, int, Phase]]:
    """(first step, end step, phase) per phase; steps count updates already applied."""
    out, start = [], 0
    for phase in phases:
        out.append((start, start + phase.steps, phase))
        start += phase.steps
    return out


def resolve_augment(spec: Any) -> dict:
    """A preset name of `augment.PRESETS` or a `{"train": [...], "eval": [...]}` mapping."""
    if isinstance(spec, str):
        if spec not in augment_lib.PRESETS:
            raise ValueError(f"unknown augmentation preset {spec!r}; available: "
                             + ", ".join(sorted(augment_lib.PRESETS)))
        return augment_lib.PRESETS[spec]
    return dict(spec)


def augment_for_phase(augment: Mapping[str, Any], phase: Phase) -> dict:
    """`augment` with the phase's image size and RandAugment magnitude written into its steps.

    Raises ValueError when the phase sets a value that no step of the pipeline takes (a silent
    no-op would train a different protocol than the config says).
    """
    out = {}
    for split in ("train", "eval"):
        steps = []
        for name, kwargs in augment_lib.parse_steps(augment[split]):
            if phase.image_size is not None and name in SIZE_OPS:
                kwargs = {**kwargs, "size": phase.image_size}
            if phase.randaug_magnitude is not None and name in MAGNITUDE_OPS:
                kwargs = {**kwargs, "magnitude": phase.randaug_magnitude}
            steps.append((name, kwargs))
        out[split] = steps
    names = {split: [name for name, _ in out[split]] for split in out}
    if phase.image_size is not None:
        for split in out:
            if not any(n in SIZE_OPS for n in names[split]):
                raise ValueError(f"a phase sets image_size but the {split} pipeline has no "
                                 f"{' or '.join(SIZE_OPS)} step")
    if phase.randaug_magnitude is not None and not any(n in MAGNITUDE_OPS
                                                       for n in names["train"]):
        raise ValueError("a phase sets randaug_magnitude but the train pipeline has no "
                         f"{' or '.join(MAGNITUDE_OPS)} step")
    return out


def model_for_phase(model: Any, phase: Phase) -> Any:
    """`model` (a flax Module) with the phase's `dropout_rate`."""
    if phase.dropout is None:
        return model
    if not hasattr(model, "dropout_rate"):
        raise ValueError(f"a phase sets dropout but model {type(model).__name__} has no "
                         "dropout_rate field")
    return model.clone(dropout_rate=phase.dropout)


__all__ = [
    "MAGNITUDE_OPS", "PHASE_KEYS", "SIZE_OPS", "TABLE12", "TABLE13", "Phase",
    "augment_for_phase", "first_phases", "from_protocol", "model_for_phase", "paper_phases",
    "parse", "resolve_augment", "segments",
]
