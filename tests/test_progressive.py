"""Tests for lfe.training.progressive and progressive runs of lfe.training.train.run (tiny
synthetic data)."""

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfe.training import progressive, train
from lfe.training.data import augment
from lfe.training.models import get_model

SIZE = 16


def data(n, seed):
    """uint8 noise with one brighter quadrant; the label is that quadrant (4 classes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, SIZE, SIZE, 3)).astype(np.uint8)
    labels = rng.integers(0, 4, n).astype(np.int32)
    for i, q in enumerate(labels):
        r, c = divmod(int(q), 2)
        images[i, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 100
    return images, labels


TRAIN, VAL = data(256, 0), data(40, 1)
RESIZED = {"train": [("resize", {"size": SIZE}), ("normalize", {"mode": "unit"})],
           "eval": [("resize", {"size": SIZE}), ("normalize", {"mode": "unit"})]}


def cross_entropy(y, p):
    return -jnp.sum(y * jnp.log(p + 1e-7), -1)


def protocol(phases, **overrides):
    cfg = train.default_config()
    cfg.update({"batch_size": 16, "eval_every": 10, "eval_batch_size": 20, "learning_rate": 1e-2,
                "warmup_steps": 5, "total_steps": 60})
    cfg.phases = phases
    cfg.steps = sum(p["steps"] for p in phases)
    cfg.augment = RESIZED
    cfg.update(overrides)
    return cfg


def run(cfg, model=None, loss_fn=cross_entropy, **kwargs):
    return train.run(model or get_model("convnet", num_classes=4), loss_fn, cfg,
                     train_images=TRAIN[0], train_labels=TRAIN[1], val_images=VAL[0],
                     val_labels=VAL[1], **kwargs)


# ---------------------------------------------------------------- plain-data phases


def test_paper_tables_as_phases():
    phases = progressive.paper_phases(progressive.TABLE12, 16_000)
    assert [p["image_size"] for p in phases] == [128, 160, 192, 224]
    assert [p["dropout"] for p in phases] == [0.1, 0.2, 0.3, 0.4]
    assert [p["randaug_magnitude"] for p in phases] == [5, 8, 12, 15]
    assert sum(p["steps"] for p in phases) == 64_000
    large = progressive.paper_phases(progressive.TABLE13, 24_000)
    assert [(p["image_size"], p["dropout"]) for p in large] == [
        (128, 0.10), (186, 0.17), (244, 0.24), (300, 0.30)]


def test_parse_and_protocol_validation():
    with pytest.raises(ValueError, match="unknown key.*size.*available: steps, image_size"):
        progressive.parse([{"steps": 1, "size": 3}])
    with pytest.raises(ValueError, match="phase 2: needs steps > 0"):
        progressive.parse([{"steps": 1}, {"steps": 0}])
    cfg = protocol([{"steps": 3}, {"steps": 4, "dropout": 0.3}])
    assert progressive.from_protocol(cfg) == (progressive.Phase(3),
                                              progressive.Phase(4, dropout=0.3))
    assert [(a, b) for a, b, _ in progressive.segments(progressive.from_protocol(cfg))] == [
        (0, 3), (3, 7)]
    cfg.steps = 100
    with pytest.raises(ValueError, match="steps = 100 but the phases sum to 7"):
        progressive.from_protocol(cfg)
    no_phases = train.default_config()
    assert progressive.from_protocol(no_phases) == (progressive.Phase(8000),)


def test_first_phases_keeps_the_schedule_horizon():
    cfg = protocol(progressive.paper_phases(progressive.TABLE12, 16_000), total_steps=64_000)
    two = progressive.first_phases(cfg, 2)
    assert two.steps == 32_000 and len(two.phases) == 2 and two.total_steps == 64_000
    assert len(cfg.phases) == 4  # the original is untouched
    with pytest.raises(ValueError, match=r"k must be in 1\.\.4"):
        progressive.first_phases(cfg, 5)


def test_augment_for_phase_rewrites_steps_by_op_name():
    cfg = {"train": [("random_crop", {"pad": 2}), ("resize", {"size": 32}),
                     {"op": "cutout", "size": 4}],
           "eval": ["flip_left_right", ("resize", {"size": 32})]}
    out = progressive.augment_for_phase(cfg, progressive.Phase(5, image_size=96))
    assert out["train"] == [("random_crop", {"pad": 2}), ("resize", {"size": 96}),
                            ("cutout", {"size": 4})]  # cutout's size is not an image size
    assert out["eval"] == [("flip_left_right", {}), ("resize", {"size": 96})]
    assert progressive.augment_for_phase(cfg, progressive.Phase(5))["train"][1] == (
        "resize", {"size": 32})
    with pytest.raises(ValueError, match="train pipeline has no randaugment"):
        progressive.augment_for_phase(cfg, progressive.Phase(5, randaug_magnitude=5))
    with pytest.raises(ValueError, match="eval pipeline has no random_square_crop or resize"):
        progressive.augment_for_phase({"train": cfg["train"], "eval": []},
                                      progressive.Phase(5, image_size=8))


def test_model_for_phase_sets_dropout():
    model = get_model("convnet", num_classes=4)
    assert progressive.model_for_phase(model, progressive.Phase(1)) is model
    assert progressive.model_for_phase(model, progressive.Phase(1, dropout=0.3)).dropout_rate \
        == 0.3

    class NoDropout(nn.Module):
        num_classes: int = 4

    with pytest.raises(ValueError, match="no dropout_rate field"):
        progressive.model_for_phase(NoDropout(), progressive.Phase(1, dropout=0.3))


# ---------------------------------------------------------------- progressive runs


class Probe(nn.Module):
    """A tiny classifier; `record` gets (train?, image side, dropout rate) at every call."""

    num_classes: int
    dropout_rate: float = 0.0
    record: Callable | None = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.record is not None:
            seen = ("train" if train else "eval", x.shape[1], self.dropout_rate)
            jax.debug.callback(functools.partial(self.record, seen), ordered=True)
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x.mean(axis=(1, 2)))
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(self.num_classes)(x)


def test_phases_switch_at_the_right_steps(monkeypatch):
    """Image size, dropout and RandAugment magnitude seen at each step; one compile per
    distinct phase setting; evaluation at the phase's image size."""
    log, magnitudes, traces = [], [], []

    def probe_randaugment(rng, images, *, magnitude, num_layers=2):
        del rng, num_layers
        jax.debug.callback(lambda: magnitudes.append(magnitude), ordered=True)
        return images

    monkeypatch.setitem(augment.OPS, "randaugment",
                        augment.Op("randaugment", probe_randaugment, False))

    def counting_loss(y, p):
        traces.append(1)  # runs once per trace, i.e. per compilation of the train step
        return cross_entropy(y, p)

    phases = [{"steps": 3, "image_size": 8, "dropout": 0.1, "randaug_magnitude": 5},
              {"steps": 4, "image_size": 12, "dropout": 0.2, "randaug_magnitude": 8},
              {"steps": 2, "image_size": 8, "dropout": 0.1, "randaug_magnitude": 5}]
    cfg = protocol(phases, eval_every=2, augment={
        "train": [("resize", {"size": SIZE}), ("randaugment", {"magnitude": 0.0}),
                  ("normalize", {"mode": "unit"})],
        "eval": [("resize", {"size": SIZE}), ("normalize", {"mode": "unit"})]})
    result = run(cfg, model=Probe(num_classes=4, record=log.append), loss_fn=counting_loss)
    jax.effects_barrier()
    assert result.status == "ok" and result.steps_run == 9
    assert [row[0] for row in result.curve] == [2, 3, 4, 6, 7, 8, 9]  # + phase ends 3, 7
    train_calls = [(size, rate) for kind, size, rate in log if kind == "train"]
    assert train_calls == [(8, 0.1)] * 3 + [(12, 0.2)] * 4 + [(8, 0.1)] * 2
    assert magnitudes == [5.0] * 3 + [8.0] * 4 + [5.0] * 2
    assert len(traces) == 2  # phases 1 and 3 share their compiled step
    eval_sizes = [size for kind, size, _ in log if kind == "eval"]
    # model.init at phase 1's eval size, then 2 eval batches of 20 at each of 7 evaluations
    assert eval_sizes == [8] + [size for size in (8, 8, 12, 12, 12, 8, 8) for _ in range(2)]


def test_one_schedule_and_state_run_across_phases():
    """Phases that change nothing reproduce the plain run exactly (optimizer, schedule, BN
    statistics and data carried over), and phases 1..k are a prefix of the full run."""
    split = protocol([{"steps": 20}, {"steps": 20}])
    plain = protocol([{"steps": 40}])
    del plain.phases
    model = Probe(num_classes=4)
    assert run(split, model).curve == run(plain, model).curve
    full = protocol([{"steps": 20, "dropout": 0.1}, {"steps": 20, "dropout": 0.4}])
    first = progressive.first_phases(full, 1)
    full_curve, first_curve = run(full, model).curve, run(first, model).curve
    assert first_curve == full_curve[:2] and len(full_curve) == 4


def test_phase_settings_need_the_augment_config():
    cfg = protocol([{"steps": 2, "image_size": 8}])
    with pytest.raises(ValueError, match="need the protocol's augment config"):
        run(cfg, preprocess_fn=train.unit_preprocess)
    with pytest.raises(ValueError, match="unknown augmentation preset 'nope'"):
        del cfg.augment
        cfg.augment = "nope"
        run(cfg)
