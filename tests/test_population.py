"""Population training (K candidates vmapped) against K sequential `train.run` calls."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfe import executors, worker
from lfe.core import genome as G
from lfe.core import protocol as protocol_lib
from lfe.core import records
from lfe.training import fitness, population
from lfe.training import losses as L
from lfe.training import train as T
from lfe.training.models import get_model

# exp(1/(0+eps)) = inf; inf - inf = nan: non-finite for every input (as in test_fitness)
NAN_GENOME = G.make([("reciprocal", ["y"]), ("exp", ["h0"]), ("mul", ["h1", "yhat"]),
                     ("neg", ["h0"]), ("sub", ["h2", "h1"])])


def _data(n=192, classes=4, size=12, seed=0):
    """Images whose brightness encodes the class: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int32)
    base = (labels * 60 + 20)[:, None, None, None]
    images = np.clip(base + rng.integers(-20, 20, (n, size, size, 3)), 0, 255).astype(np.uint8)
    return images, labels


def _protocol(**overrides):
    c = T.default_config()
    c.steps, c.batch_size, c.eval_every, c.eval_batch_size = 12, 16, 4, 32
    c.warmup_steps, c.total_steps, c.learning_rate = 2, 12, 1e-2
    for key, value in overrides.items():
        c[key] = value
    return c


def _losses():
    return [L.get("cross_entropy"), L.get("neuroloss3"), L.get("honorable6")]


def _model():
    return get_model("convnet", num_classes=4)


def _sequential(losses, config, seeds, data, val):
    return [T.run(_model(), loss.loss, config, train_images=data[0], train_labels=data[1],
                  val_images=val[0], val_labels=val[1], seed=seed)
            for loss, seed in zip(losses, seeds, strict=True)]


def _population(losses, config, seeds, data, val):
    return population.run(_model(), [x.genome for x in losses], [x.sign for x in losses], config,
                          train_images=data[0], train_labels=data[1], val_images=val[0],
                          val_labels=val[1], seeds=seeds)


def _assert_same(got, want):
    assert got.status == want.status and got.steps_run == want.steps_run
    assert got.best_val_accuracy == pytest.approx(want.best_val_accuracy, abs=1e-6)
    assert got.best_train_accuracy == pytest.approx(want.best_train_accuracy, abs=1e-6)
    assert [r[0] for r in got.curve] == [r[0] for r in want.curve]
    np.testing.assert_allclose([r[3] for r in got.curve], [r[3] for r in want.curve],
                               rtol=1e-4, atol=1e-5)


def test_vmapped_step_params_match_sequential_steps():
    """Params after n vmapped steps equal n steps of `train_step` run per candidate."""
    losses, seeds, n, k = _losses()[:2], [3, 4], 4, 2
    model, config = _model(), _protocol()
    images, labels = _data()
    augment = population.progressive.augment_for_phase(  # as `run` builds it: compiled once
        population.progressive.resolve_augment("unit"), population.progressive.Phase(12))
    step_fn, _, _ = population._population_fns(model, augment, "paper", shared_data=False)
    tx = population.shared_optimizer(config)
    keys = [jax.random.split(jax.random.PRNGKey(s)) for s in seeds]
    singles = [T.create_train_state(key[0], model, images.shape[1:], tx) for key in keys]
    states = jax.tree.map(lambda *xs: jnp.stack(xs), *singles)
    code = {name: jnp.asarray(v) for name, v in
            population.compile_lib.encode([x.genome for x in losses]).items()}
    totals = jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)), T.zero_totals())
    rng = np.random.default_rng(0)
    index = [rng.integers(0, len(labels), (k, 16)).astype(np.int32) for _ in range(n)]
    for i in range(n):
        states, totals = step_fn(states, totals, jnp.asarray(images), index[i], labels[index[i]],
                                 jnp.stack([key[1] for key in keys]), code,
                                 jnp.asarray([x.sign for x in losses], jnp.float32),
                                 jnp.ones(k, bool))
    unit = T.image_augment(T.unit_preprocess, train=True)
    for c, (loss, key, state) in enumerate(zip(losses, keys, singles, strict=True)):
        step = jax.jit(functools.partial(T.train_step, loss_fn=loss.loss, augment_fn=unit,
                                         num_classes=4))
        for i in range(n):
            state, _ = step(state, {"image": images[index[i][c]], "label": labels[index[i][c]]},
                            key[1])
        mine = jax.tree.map(lambda x, c=c: x[c], states.params)
        for layer in mine:
            for name in mine[layer]:
                if layer in ("conv1", "conv2") and name == "bias":
                    continue  # BN follows: its true gradient is 0, Adam amplifies float noise
                np.testing.assert_allclose(mine[layer][name], state.params[layer][name],
                                           rtol=1e-4, atol=1e-6, err_msg=f"{layer}/{name}")
        assert int(states.step[c]) == n


DATA, VAL = _data(), _data(64, seed=1)
CONFIG = _protocol(stop_rules=((8, 0.30),))


@pytest.fixture(scope="module")
def sequential_ce():
    """Cross-entropy trained alone with seed 0 (shared by two comparisons)."""
    return _sequential([L.get("cross_entropy")], CONFIG, [0], DATA, VAL)[0]


def test_population_run_matches_sequential_runs(sequential_ce):
    losses = [L.get("cross_entropy"), L.get("neuroloss3")]
    got = _population(losses, CONFIG, [0, 1], DATA, VAL)
    want = [sequential_ce] + _sequential(losses[1:], CONFIG, [1], DATA, VAL)
    for g, w in zip(got, want, strict=True):
        _assert_same(g, w)
    assert max(r.best_train_accuracy for r in got) > 0.5  # it learned something


def test_nan_genome_does_not_touch_the_other_candidates(sequential_ce):
    losses = [L.from_genome(NAN_GENOME, sign=1), L.get("cross_entropy")]
    got = _population(losses, CONFIG, [1, 0], DATA, VAL)
    assert got[0].status == "diverged" and got[0].steps_run == 1 and not got[0].curve
    assert got[0].message == "non-finite loss at step 1"
    _assert_same(got[1], sequential_ce)


def test_stop_rules_are_per_candidate_and_finish_the_run():
    config = _protocol(stop_rules=((4, 1.01),))
    got = _population(_losses()[:2], config, [0, 1], DATA, (None, None))
    assert [(r.status, r.steps_run, len(r.curve)) for r in got] == [("stopped_early", 4, 1)] * 2
    assert all(r.best_val_accuracy == 0.0 for r in got)  # no validation data


def test_bad_arguments_raise():
    data = _data()
    with pytest.raises(ValueError, match="one sign and one seed"):
        population.run(_model(), [L.get("cross_entropy").genome], [1, 1], _protocol(),
                       train_images=data[0], train_labels=data[1], seeds=[0])
    with pytest.raises(ValueError, match="available: auto, vmap, sequential"):
        population.default_k("fast")


def test_default_k_is_sequential_on_cpu():
    assert population.default_k("auto", "cpu") == 1
    assert population.default_k("sequential", "gpu") == 1
    assert population.default_k("vmap", "cpu", k=4) == 4


def test_executor_groups_fitness_tasks(monkeypatch):
    calls = []

    def fake(specs, config, seeds, stage):
        calls.append((len(specs), stage))
        return [{"fitness": float(s)} for s in seeds]

    monkeypatch.setattr(population, "evaluate_population", fake)
    ex = executors.make("vmap", 2)
    assert ex.capacity == 2
    cfg = {"a": 1}
    for i in range(3):
        ex.submit(str(i), worker.EVALUATE, {"name": "cross_entropy"}, cfg, i, "surrogate")
    ex.submit("x", worker.EVALUATE, {"name": "c"}, cfg, 9, "initial")
    ex.submit("y", "builtins:max", 1, 5)
    got = []
    while ex.pending:
        got += ex.wait_any()
    assert calls == [(2, "surrogate"), (1, "surrogate"), (1, "initial")]
    assert [(k, o.value) for k, o in got] == [("0", {"fitness": 0.0}), ("1", {"fitness": 1.0}),
                                              ("2", {"fitness": 2.0}), ("x", {"fitness": 9.0}),
                                              ("y", 5)]


def test_losses_without_a_genome_are_evaluated_sequentially(monkeypatch):
    seen = []

    def fake(loss, config, *, seed, stage):
        seen.append((loss.name, seed, stage))
        return records.FitnessRecord(0.5, "ok", 1, 0.0)

    monkeypatch.setattr(fitness, "evaluate", fake)
    monkeypatch.setattr(fitness, "load_dataset", lambda *a: None)
    got = population.evaluate_population([{"name": "neuroloss1_printed"}],
                                         protocol_lib.fitness_config(), [7], "initial")
    assert seen == [("neuroloss1_printed", 7, "initial")] and got[0]["fitness"] == 0.5


@pytest.mark.slow
def test_evaluate_population_equals_evaluate_candidate(cifar_dir):
    c = protocol_lib.fitness_config()
    c.data_dir = str(cifar_dir)
    for p in (c.gate, c.surrogate):
        p.eval_batch_size, p.eval_every, p.total_steps, p.warmup_steps = 1000, 10, 100, 5
    c.gate.steps, c.surrogate.steps = 10, 20
    c.gate_min_train_accuracy = 0.0  # both reach the stage run (the NaN one diverges first)
    specs = [L.to_spec(L.from_genome(NAN_GENOME, 1, name="nan")),
             {"name": "cross_entropy"}]
    got = population.evaluate_population(specs, c.to_dict(), [5, 6])
    want = [worker.evaluate_candidate(s, c.to_dict(), seed)
            for s, seed in zip(specs, [5, 6], strict=True)]
    assert [g["status"] for g in got] == ["diverged", "ok"]
    for g, w in zip(got, want, strict=True):
        assert (g["status"], g["steps"], g["message"]) == (w["status"], w["steps"], w["message"])
        assert g["fitness"] == pytest.approx(w["fitness"], abs=1e-6)
        assert g["gate_train_accuracy"] == pytest.approx(w["gate_train_accuracy"], abs=1e-6)
