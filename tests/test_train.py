"""Tests for lfe.training.train and lfe.training.schedules on small synthetic data (brightest
quadrant = class)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lfe.training import schedules, train
from lfe.training.data import pipeline
from lfe.training.models import get_model

SIZE = 16


def cross_entropy(y, p):
    return -jnp.sum(y * jnp.log(p + 1e-7), -1)


def quadrant_data(n, seed):
    """uint8 noise with one brighter quadrant; the label is that quadrant (4 classes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, SIZE, SIZE, 3)).astype(np.uint8)
    labels = rng.integers(0, 4, n).astype(np.int32)
    h = SIZE // 2
    for i, q in enumerate(labels):
        r, c = divmod(int(q), 2)
        images[i, r * h : (r + 1) * h, c * h : (c + 1) * h] += 100
    return images, labels


TRAIN = quadrant_data(512, 0)
VAL = quadrant_data(100, 1)  # not a multiple of the eval batch: exercises padding


def config(**overrides):
    cfg = train.default_config()
    cfg.update(
        {
            "steps": 300,
            "batch_size": 32,
            "eval_every": 100,
            "eval_batch_size": 64,
            "learning_rate": 1e-2,
            "warmup_steps": 30,
            "total_steps": 300,
        }
    )
    cfg.update(overrides)
    return cfg


def model():
    return get_model("convnet", num_classes=4)


def run(loss_fn=cross_entropy, seed=0, with_val=True, **overrides):
    kwargs = {"val_images": VAL[0], "val_labels": VAL[1]} if with_val else {}
    return train.run(
        model(),
        loss_fn,
        config(**overrides),
        train_images=TRAIN[0],
        train_labels=TRAIN[1],
        seed=seed,
        **kwargs,
    )


@pytest.fixture(scope="module")
def baseline():
    return run()


# ---------------------------------------------------------------- schedules and optimizers


def test_warmup_cosine_key_steps():
    s = schedules.warmup_cosine(1.0, warmup_steps=100, total_steps=1000, hold_steps=200)
    values = {step: float(s(step)) for step in (0, 50, 100, 200, 299, 300, 650, 1000, 1500)}
    assert values[0] == 0.0 and values[50] == pytest.approx(0.5)
    assert values[100] == values[200] == values[299] == values[300] == pytest.approx(1.0)
    assert values[650] == pytest.approx(0.5)  # halfway through the cosine
    assert values[1000] == pytest.approx(0.0, abs=1e-7) and values[1500] == values[1000]


def test_surrogate_schedule_is_still_warming_up_when_the_run_stops():
    s = schedules.warmup_cosine(1e-3, warmup_steps=6400, total_steps=64_000)
    assert float(s(3200)) == pytest.approx(5e-4)
    assert float(s(8000)) == pytest.approx(0.5e-3 * (1 + np.cos(np.pi * 1600 / 57_600)))
    gate = schedules.warmup_cosine(1e-3, warmup_steps=800, total_steps=8000)
    assert float(gate(800)) == pytest.approx(1e-3) and float(gate(4400)) == pytest.approx(5e-4)


def test_warmup_linear_and_constant():
    s = schedules.warmup_linear(0.4, warmup_steps=1176, total_steps=2940)
    assert float(s(0)) == 0.0 and float(s(588)) == pytest.approx(0.2)
    assert float(s(1176)) == pytest.approx(0.4)
    assert float(s(2058)) == pytest.approx(0.2) and float(s(2940)) == pytest.approx(0.0)
    assert float(schedules.constant(0.1)(12345)) == pytest.approx(0.1)


def test_unknown_schedule_and_optimizer_list_names():
    with pytest.raises(ValueError, match="available: constant, warmup_cosine, warmup_linear"):
        schedules.make_schedule({"schedule": "step", "total_steps": 10})
    with pytest.raises(ValueError, match="available: adam, sgd_nesterov"):
        schedules.make_optimizer({"optimizer": "lamb", "total_steps": 10})


def test_adam_matches_keras_formula():
    tx = schedules.make_optimizer(
        {"optimizer": "adam", "schedule": "constant", "learning_rate": 0.1}
    )
    w, m, v = np.float32(1.0), 0.0, 0.0
    params = {"w": jnp.array(1.0)}
    state = tx.init(params)
    for t, g in enumerate([1e-6, -3e-7, 2.0], start=1):  # tiny gradients: eps placement matters
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w = w - 0.1 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
        updates, state = tx.update({"w": jnp.array(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)
        assert float(params["w"]) == pytest.approx(w, rel=1e-5)


def test_sgd_nesterov_weight_decay_is_added_to_gradients():
    tx = schedules.make_optimizer(
        {
            "optimizer": "sgd_nesterov",
            "schedule": "constant",
            "learning_rate": 0.1,
            "weight_decay": 0.5,
        }
    )
    params = {"w": jnp.array(1.0)}
    updates, _ = tx.update({"w": jnp.array(0.0)}, tx.init(params), params)
    # g = 0 + 0.5 * w; m = g; nesterov step = -lr * (g + 0.9 * m)
    assert float(updates["w"]) == pytest.approx(-0.1 * (0.5 + 0.9 * 0.5))


# ---------------------------------------------------------------- steps


def test_train_step_and_eval_step_jitted_at_call_site():
    cfg = config()
    state = train.create_train_state(
        jax.random.PRNGKey(0), model(), (SIZE, SIZE, 3), schedules.make_optimizer(cfg)
    )
    step = jax.jit(
        functools.partial(
            train.train_step,
            loss_fn=cross_entropy,
            augment_fn=train.image_augment(train.unit_preprocess, train=True),
            num_classes=4,
        )
    )
    batch = next(pipeline.train_batches(*TRAIN, 32, seed=0))
    new_state, metrics = step(state, batch, jax.random.PRNGKey(1))
    assert int(new_state.step) == 1 and set(metrics) == {"loss", "accuracy"}
    assert not np.allclose(new_state.batch_stats["bn1"]["mean"], state.batch_stats["bn1"]["mean"])
    bad = jax.jit(
        functools.partial(
            train.train_step,
            loss_fn=lambda y, p: y * p,
            augment_fn=train.image_augment(train.unit_preprocess, train=True),
            num_classes=4,
        )
    )
    with pytest.raises(ValueError, match=r"loss_fn must return \[batch\]"):
        bad(new_state, batch, jax.random.PRNGKey(1))


def test_eval_masking_counts_only_real_examples():
    cfg = config()
    state = train.create_train_state(
        jax.random.PRNGKey(0), model(), (SIZE, SIZE, 3), schedules.make_optimizer(cfg)
    )
    images, labels = VAL[0][:10], VAL[1][:10]
    batches = list(pipeline.eval_batches(images, labels, 4))
    assert [b["image"].shape[0] for b in batches] == [4, 4, 4]
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
    eval_fn = jax.jit(functools.partial(
        train.eval_step, augment_fn=train.image_augment(train.unit_preprocess, train=False)))
    totals = [jax.device_get(eval_fn(state, b)) for b in batches]
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        images.astype(np.float32) / 255.0,
        train=False,
    )
    expected = int(np.sum(np.argmax(logits, -1) == labels))
    assert sum(t["count"] for t in totals) == 10
    assert sum(t["correct"] for t in totals) == expected
    acc = train.evaluate(eval_fn, state, batches)
    assert acc == pytest.approx(expected / 10)


def test_run_rejects_empty_protocols():
    with pytest.raises(ValueError, match="steps > 0"):
        run(steps=0)
    with pytest.raises(ValueError, match="eval_every > 0"):
        run(eval_every=0)


# ---------------------------------------------------------------- the loop


def test_accuracy_rises(baseline):
    assert baseline.status == "ok" and baseline.steps_run == 300
    assert [c[0] for c in baseline.curve] == [100, 200, 300]
    assert baseline.best_val_accuracy > 0.8
    assert baseline.best_train_accuracy > 0.8
    assert baseline.curve[-1][1] > baseline.curve[0][1]  # interval train accuracy rises
    assert baseline.best_val_accuracy == max(c[2] for c in baseline.curve)
    assert all(np.isfinite(c[3]) for c in baseline.curve)
    assert baseline.wall_time_s > 0
    timing = baseline.timing  # where the time went; the parts fit in the wall time
    assert set(timing) == {"setup_s", "first_step_s", "train_s", "eval_s"}
    assert all(v > 0 for v in timing.values())
    assert sum(timing.values()) <= baseline.wall_time_s + 1e-3


def test_the_training_set_stays_on_the_device_when_it_fits(monkeypatch):
    """With the default pipeline the step gets indices and gathers the images on the device; a
    training set above the limit takes the host path; both train the same batches."""
    assert train.resident(TRAIN[0])
    resident_run = run(steps=100, eval_every=50)
    monkeypatch.setattr(train, "RESIDENT_MAX_BYTES", 0)
    assert not train.resident(TRAIN[0])
    host_run = run(steps=100, eval_every=50)
    for a, b in zip(resident_run.curve, host_run.curve, strict=True):
        np.testing.assert_allclose(a[1:], b[1:], rtol=1e-5, atol=1e-6)


def test_same_seeds_give_identical_results(baseline):
    again = run()
    assert dataclasses.replace(again, wall_time_s=0) == dataclasses.replace(baseline, wall_time_s=0)
    other = run(seed=1)
    assert other.curve != baseline.curve


def test_nan_loss_is_reported_as_diverged_not_raised():
    result = run(loss_fn=lambda y, p: jnp.full(p.shape[:1], jnp.nan))
    assert result.status == "diverged" and result.steps_run == 1
    assert result.curve == () and result.best_val_accuracy == 0.0


def test_divergence_step_is_exact_and_earlier_best_is_kept():
    def batches(images, labels, batch_size, seed, start_step=0):
        for step, batch in enumerate(pipeline.train_batches(images, labels, batch_size, seed)):
            target = np.eye(4, dtype=np.float32)[batch["label"]]
            if step == 149:
                target[0, 0] = np.nan
            yield {**batch, "target": target}

    cfg = config()
    result = train.run(
        model(),
        cross_entropy,
        cfg,
        train_images=TRAIN[0],
        train_labels=TRAIN[1],
        val_images=VAL[0],
        val_labels=VAL[1],
        train_batches=batches,
    )
    assert result.status == "diverged" and result.steps_run == 150
    assert [c[0] for c in result.curve] == [100]
    assert result.best_val_accuracy == result.curve[0][2] > 0


def test_stop_rule_fires_and_returns_best_val_so_far():
    # a constant loss never learns: chance-level training accuracy
    result = run(loss_fn=lambda y, p: jnp.zeros(p.shape[:1]), steps=500, stop_rules=((200, 0.9),))
    assert result.status == "stopped_early" and result.steps_run == 200
    assert [c[0] for c in result.curve] == [100, 200]
    assert result.best_val_accuracy == max(c[2] for c in result.curve) > 0
    assert "0.9" in result.message


def test_stop_rule_between_evaluations_and_rules_that_pass(baseline):
    stopped = run(
        loss_fn=lambda y, p: jnp.zeros(p.shape[:1]), stop_rules=[(150, 0.9)], with_val=False
    )
    assert stopped.status == "stopped_early" and stopped.steps_run == 150
    assert [c[0] for c in stopped.curve] == [100, 150]
    assert stopped.curve[0][2] is None and stopped.best_val_accuracy == 0.0
    passed = run(stop_rules=[(100, 0.3)])
    assert passed.status == "ok" and passed.steps_run == 300
    assert passed.curve == baseline.curve  # a passing rule changes nothing


# ---------------------------------------------------------------- fine-tuning (init_from)


def test_init_from_starts_at_the_pretrained_weights(tmp_path):
    from lfe.training.models import pretrained

    cfg = config(steps=40)
    state = train.create_train_state(
        jax.random.PRNGKey(5), model(), (SIZE, SIZE, 3), schedules.make_optimizer(cfg)
    )
    step = jax.jit(functools.partial(
        train.train_step, loss_fn=cross_entropy, num_classes=4,
        augment_fn=train.image_augment(train.unit_preprocess, train=True)))
    batches = pipeline.train_batches(*TRAIN, 32, seed=3)
    for _ in range(40):  # a "pretrained" network: far better than chance on this task
        state, _ = step(state, next(batches), jax.random.PRNGKey(1))
    path = tmp_path / "convnet.npz"
    pretrained.save_variables(path, {"params": state.params, "batch_stats": state.batch_stats})
    frozen = {"schedule": "constant", "learning_rate": 0.0, "steps": 1, "eval_every": 1}
    fresh = run(**frozen)
    loaded = run(**frozen, init_from=str(path))
    # lr 0: the one step's training accuracy is that of the initial weights (BN in train mode;
    # the running statistics of 40 steps are not settled enough to compare validation)
    assert loaded.best_train_accuracy > 0.9 > 0.5 > fresh.best_train_accuracy
    wrong = tmp_path / "wrong.npz"
    pretrained.save_variables(wrong, {"params": {"head": state.params["head"]}})
    with pytest.raises(ValueError, match="does not fit ConvNet"):
        run(**frozen, init_from=str(wrong))


def test_init_is_compiled_once_per_model():
    """A worker that trains many candidates reuses one jitted init per (equal) model; a model
    with unhashable fields still initialises (uncached)."""
    train._jitted_init.cache_clear()
    a, b = get_model("convnet", num_classes=10), get_model("convnet", num_classes=10)
    va = train.init_variables(jax.random.PRNGKey(0), a, (32, 32, 3))
    vb = train.init_variables(jax.random.PRNGKey(0), b, (32, 32, 3))
    assert train._jitted_init.cache_info().hits == 1
    jax.tree.map(np.testing.assert_array_equal, va, vb)

    class Unhashable(get_model("convnet", num_classes=3).__class__):
        __hash__ = None

    v = train.init_variables(jax.random.PRNGKey(0), Unhashable(num_classes=3), (32, 32, 3))
    assert train._jitted_init.cache_info().currsize == 1 and v["params"]


# ---------------------------------------------------------------- the data form: one compile

def compiles(caplog, name: str) -> int:
    """How many times JAX compiled a function called ``name`` (``jax.log_compiles`` lines)."""
    return sum(f"Compiling jit({name})" in r.getMessage() for r in caplog.records)


def test_one_compiled_step_trains_two_genomes_as_the_unrolled_form_does(caplog):
    """Two genomes in the data form train through one compiled train step and one eval step
    (the codes are arguments), and each run equals the unrolled form's run up to float
    rounding."""
    from lfe.core import genome as G
    from lfe.training import compile as C

    ce = G.make([("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                 ("neg", ["h1"])])
    other = G.make([("sqrt", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h1"]), ("abs", ["h0"]),
                    ("add", ["h2", "h1"])])
    short = {"steps": 100, "eval_every": 50}
    with jax.log_compiles(True), caplog.at_level("WARNING"):
        data = [run(C.data_loss(g, 1), **short) for g in (ce, other)]
    assert compiles(caplog, "_program_step") == 1 and compiles(caplog, "eval_step") <= 1
    for g, got in zip((ce, other), data, strict=True):
        want = run(C.to_loss(g, 1), **short)
        assert got.status == want.status and got.steps_run == want.steps_run
        for (step, train_acc, val_acc, loss), ref in zip(got.curve, want.curve, strict=True):
            assert step == ref[0]
            np.testing.assert_allclose([train_acc, val_acc], ref[1:3], atol=0.02)
            np.testing.assert_allclose(loss, ref[3], rtol=1e-3, atol=1e-5)
    assert data[0].curve != data[1].curve  # two genomes, two different runs
