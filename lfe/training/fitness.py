"""The fitness protocol (paper §3.5, §3.7, §3.8; SPEC.md "Fitness"): genome → fitness record.

A candidate is first trained through the **gate** (ConvNet, 32px, no augmentation, batch 128,
Adam 1e-3 warm-up 800 + cosine over 8,000, run 800 steps): if its best training accuracy is
below 0.37 it is rejected (``gated``). Otherwise it is trained on the **surrogate** (the paper's:
EfficientNetV2-S at 96 px with RandAugment, ``surrogate_protocol``; the CPU default of
``default_config``: the ConvNet protocol), whose early stop 2 ends a run whose training accuracy
has not reached 0.25 by step 3,000 — the best validation accuracy so far is still its fitness
(``stopped_early``). A non-finite loss ends a
run (``diverged``). ``gated`` and ``diverged`` candidates are failed children (no fitness).
The **initial** protocol (ConvNet for 8,000 steps) scores the initial population.

Everything here is plain data in, plain data out, so a task can run in another process:
``evaluate_task(loss_spec, protocol_dict, seed, stage)`` is the function executors call.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import ml_collections

from lfe.core import protocol as protocol_lib

if TYPE_CHECKING:  # the training stack (JAX) is imported only where a run happens
    from lfe.training import data as data_lib
    from lfe.training import losses as losses_lib
    from lfe.training import train as train_lib

STATUSES = ("ok", "stopped_early", "gated", "diverged")
FAILED = ("gated", "diverged")


def training_protocol(**overrides) -> ml_collections.ConfigDict:
    """One training run: model, augmentation and the trainer's fields (``train.default_config``).

    The default is the paper's ConvNet protocol (Table 4): 8,000 steps, batch 128, Adam 1e-3,
    linear warm-up 800 then cosine, evaluation every 100 steps, inputs scaled to [0, 1].
    """
    p = protocol_lib.trainer_defaults()
    p.model = "convnet"
    p.model_kwargs = ml_collections.ConfigDict()
    p.augment = "unit"  # a preset of lfe.training.data.augment.PRESETS, or {"train", "eval"}
    p.validate = True  # evaluate the validation split (the gate needs only training accuracy)
    for key, value in overrides.items():
        p[key] = value
    return p


def effnetv2_protocol(phases: list[dict], *, total_steps: int, hold_steps: int = 0,
                      batch_size: int = 64, **overrides) -> ml_collections.ConfigDict:
    """EfficientNetV2-S with progressive RandAugment (App. D): Adam 1e-3 (Keras form), linear
    warm-up over 6,400 steps, ``hold_steps`` at the peak, cosine to 0 at ``total_steps``;
    ``effnetv2`` augmentation (random square crop, RandAugment 2 layers, (x - 127.5)/128) whose
    image size, magnitude and the model's dropout follow ``phases``
    (``lfe.training.progressive``)."""
    protocol = training_protocol(
        model="efficientnetv2_s", augment="effnetv2", batch_size=batch_size,
        optimizer="adam", learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=6400,
        hold_steps=hold_steps, total_steps=total_steps, phases=[dict(p) for p in phases],
        steps=sum(int(p["steps"]) for p in phases))
    for key, value in overrides.items():
        protocol[key] = value
    return protocol


def surrogate_protocol() -> ml_collections.ConfigDict:
    """The paper's surrogate (§3.5.1, App. D): EfficientNetV2-S at 96x96, RandAugment 2 layers
    magnitude 5, dropout 0.1, batch 64, Adam 1e-3 warm-up 6,400 then cosine over 64,000 steps,
    stopped after 8,000 (phase 1 of the schedule), early stop 2 at step 3,000 below 0.25 train
    accuracy, best validation accuracy over evaluations every 100 steps."""
    return effnetv2_protocol(
        [{"steps": 8000, "image_size": 96, "dropout": 0.1, "randaug_magnitude": 5.0}],
        total_steps=64000, stop_rules=((3000, 0.25),))


def default_config() -> ml_collections.ConfigDict:
    """``config.fitness``: data, gate, surrogate and initial-population protocols.

    The surrogate here is the ConvNet protocol of the paper's initial evolutionary run (§3.6)
    with early stop 2, which runs on a CPU; the paper's EfficientNetV2-S surrogate is
    ``surrogate_protocol()`` (``configs/surrogate.py``).
    """
    c = ml_collections.ConfigDict()
    c.dataset = "cifar10"
    c.data_dir = ""  # "" = $LFE_DATA_DIR, else tensorflow-datasets
    c.gate_enabled = True
    c.gate_min_train_accuracy = 0.37
    c.gate = training_protocol(steps=800, validate=False)
    c.surrogate = training_protocol(stop_rules=((3000, 0.25),))
    c.initial = training_protocol()
    return c


@dataclasses.dataclass(frozen=True)
class FitnessRecord:
    """What an evaluation tells the search. ``fitness`` is None for failed children."""

    fitness: float | None
    status: str
    steps: int  # training steps run, gate included
    wall_time_s: float
    curve: tuple = ()  # the scored run's (step, train_acc, val_acc, loss) rows
    gate_train_accuracy: float | None = None
    best_train_accuracy: float = 0.0
    best_val_accuracy: float = 0.0  # also kept for diverged runs, for inspection
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["curve"] = [list(row) for row in self.curve]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FitnessRecord:
        return cls(**{**d, "curve": tuple(tuple(row) for row in d.get("curve", ()))})


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_dir: str) -> data_lib.Dataset:
    """The dataset, loaded once per process (workers evaluate many candidates)."""
    from lfe.training import data as data_lib

    return data_lib.load(name, data_dir=data_dir or None)


def train_once(loss: losses_lib.LossDef, protocol: Any, dataset: data_lib.Dataset,
               seed: int) -> train_lib.TrainResult:
    """One real training run of ``protocol`` (its ``augment`` and ``phases`` included)."""
    from lfe.training import data as data_lib
    from lfe.training import train as train_lib
    from lfe.training.models import get_model

    model = get_model(protocol.model, num_classes=dataset.num_classes,
                      **dict(protocol.get("model_kwargs") or {}))
    validate = bool(protocol.get("validate", True))
    return train_lib.run(
        model, loss.loss, protocol, seed=seed,
        train_images=dataset.train_images, train_labels=dataset.train_labels,
        val_images=dataset.val_images if validate else None,
        val_labels=dataset.val_labels if validate else None,
        train_batches=data_lib.pipeline.train_batches,
        eval_batches=data_lib.pipeline.eval_batches)


def evaluate(loss: losses_lib.LossDef, config: Any, *, seed: int,
             stage: str = "surrogate") -> FitnessRecord:
    """Gate (when enabled) then the ``stage`` protocol (``surrogate`` or ``initial``)."""
    if stage not in ("surrogate", "initial"):
        raise ValueError(f"unknown fitness stage {stage!r}; available: surrogate, initial")
    dataset = load_dataset(config.dataset, config.get("data_dir", ""))
    steps, wall, gate_acc = 0, 0.0, None
    if config.gate_enabled and stage == "surrogate":
        gate = train_once(loss, config.gate, dataset, seed)
        steps, wall, gate_acc = gate.steps_run, gate.wall_time_s, gate.best_train_accuracy
        if gate.status == "diverged":
            return FitnessRecord(None, "diverged", steps, wall, gate.curve, gate_acc,
                                 gate.best_train_accuracy, message=f"gate: {gate.message}")
        if gate.best_train_accuracy < config.gate_min_train_accuracy:
            return FitnessRecord(None, "gated", steps, wall, gate.curve, gate_acc,
                                 gate.best_train_accuracy,
                                 message=f"gate: best train accuracy {gate_acc:.4f} < "
                                         f"{config.gate_min_train_accuracy}")
    result = train_once(loss, config[stage], dataset, seed)
    fitness = None if result.status == "diverged" else result.best_val_accuracy
    return FitnessRecord(fitness, result.status, steps + result.steps_run,
                         wall + result.wall_time_s, result.curve, gate_acc,
                         result.best_train_accuracy, result.best_val_accuracy, result.message)


def loss_spec(loss: losses_lib.LossDef) -> dict:
    """A picklable, JSON-able description of a loss for another process."""
    from lfe.training import losses as losses_lib

    if loss.genome is not None and loss.name not in losses_lib.available():
        from lfe.core import genome as genome_lib

        return {"name": loss.name, "genome": genome_lib.to_dict(loss.genome), "sign": loss.sign}
    return {"name": loss.name}


def resolve_spec(spec: dict) -> losses_lib.LossDef:
    from lfe.training import losses as losses_lib

    if "genome" in spec:
        from lfe.core import genome as genome_lib

        return losses_lib.from_genome(genome_lib.from_dict(spec["genome"]), spec.get("sign"),
                                      name=spec.get("name", "evolved"))
    return losses_lib.get(spec["name"])


def evaluate_task(spec: dict, config: dict, seed: int, stage: str = "surrogate") -> dict:
    """Executor entry point: plain data in, ``FitnessRecord.to_dict()`` out."""
    cfg = ml_collections.ConfigDict(config)
    return evaluate(resolve_spec(spec), cfg, seed=seed, stage=stage).to_dict()


def train_task(spec: dict, protocol: dict, dataset: str, data_dir: str, seed: int) -> dict:
    """Executor entry point for one plain training run (grid cells): a result dict."""
    result = train_once(resolve_spec(spec), ml_collections.ConfigDict(protocol),
                        load_dataset(dataset, data_dir), seed)
    return {"best_val_accuracy": result.best_val_accuracy,
            "best_train_accuracy": result.best_train_accuracy, "status": result.status,
            "steps_run": result.steps_run, "wall_time_s": result.wall_time_s,
            "curve": [list(r) for r in result.curve], "message": result.message}
