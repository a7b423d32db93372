"""The fitness protocol on real CIFAR-10 at tiny step counts."""

import jax.numpy as jnp
import pytest

from lfe import worker
from lfe.core import genome as G
from lfe.core import protocol as protocol_lib
from lfe.core import records
from lfe.training import fitness, loop
from lfe.training import losses as L


def tiny(cifar_dir, **surrogate):
    c = protocol_lib.fitness_config()
    c.data_dir = str(cifar_dir)
    for p in (c.gate, c.surrogate, c.initial):
        p.eval_batch_size = 1000
    c.gate.steps, c.gate.total_steps, c.gate.warmup_steps = 60, 300, 30
    c.surrogate.steps, c.surrogate.total_steps, c.surrogate.warmup_steps = 100, 300, 30
    c.surrogate.eval_every = 50
    for k, v in surrogate.items():
        c.surrogate[k] = v
    return c


def test_gate_rejects_a_loss_that_does_not_learn(cifar_dir):
    c = tiny(cifar_dir)
    c.gate_min_train_accuracy = 0.99
    record = fitness.evaluate(L.get("cross_entropy"), c, seed=0)
    assert record.status == "gated" and record.failed and record.fitness is None
    assert record.steps == 60 and 0.1 < record.gate_train_accuracy < 0.99
    assert "gate" in record.message


def test_surrogate_early_stop_returns_best_validation_so_far(cifar_dir):
    c = tiny(cifar_dir, stop_rules=((50, 0.99),))
    c.gate_min_train_accuracy = 0.0
    record = fitness.evaluate(L.get("cross_entropy"), c, seed=0)
    assert record.status == "stopped_early" and not record.failed
    assert record.steps == 60 + 50
    assert record.fitness == record.best_val_accuracy > 0.1
    assert [row[0] for row in record.curve] == [50]


def test_nan_loss_is_reported_as_diverged(cifar_dir):
    # 1/((y - yhat) + eps) ... with yhat ~ y it is huge; ln of a negative softplus... use a
    # genome that is NaN for every input: sqrt(-1) is guarded, so build 0 * inf instead.
    nodes = [("reciprocal", ["y"]), ("exp", ["h0"]), ("mul", ["h1", "yhat"]), ("neg", ["h0"]),
             ("sub", ["h2", "h1"])]  # exp(1/(0+eps)) = inf; inf - inf = nan
    loss = L.from_genome(G.make(nodes), sign=1)
    assert not jnp.isfinite(loss.loss(jnp.eye(3)[:1], jnp.full((1, 3), 1 / 3))).all()
    c = tiny(cifar_dir)
    record = fitness.evaluate(loss, c, seed=0)
    assert record.status == "diverged" and record.fitness is None and record.failed
    assert record.steps == 1


def test_initial_protocol_skips_the_gate(cifar_dir):
    c = tiny(cifar_dir)
    c.initial.steps, c.initial.total_steps, c.initial.warmup_steps = 50, 300, 30
    c.initial.eval_every = 50
    record = fitness.evaluate(L.get("neuroloss3"), c, seed=1, stage="initial")
    assert record.status == "ok" and record.gate_train_accuracy is None
    assert record.steps == 50 and record.fitness is not None
    again = records.FitnessRecord.from_dict(record.to_dict())
    assert again == record


def test_evaluate_candidate_round_trips_plain_data(cifar_dir):
    c = tiny(cifar_dir)
    c.gate_min_train_accuracy = 0.99
    g = L.get("neuroloss2").genome
    spec = {"name": "x", "genome": G.to_dict(g), "sign": -1}
    out = worker.evaluate_candidate(spec, c.to_dict(), 0)
    assert out["status"] == "gated" and isinstance(out["curve"], list)
    with pytest.raises(ValueError, match="unknown fitness stage"):
        fitness.evaluate(L.get("cross_entropy"), c, seed=0, stage="final")
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        c.surrogate.augment = "nope"
        c.gate_min_train_accuracy = 0.0
        fitness.evaluate(L.get("cross_entropy"), c, seed=0)


def _run(status, curve, best_val, message=""):
    return loop.TrainResult(best_val, 0.5, status, 350, 2.0, curve, message)


CURVE = ((100, 0.30, 0.40, 2.0), (200, 0.50, 0.42, 1.5), (300, 0.45, 0.41, 1.6))


def test_a_diverged_run_keeps_its_best_validation_so_far_or_fails_as_configured():
    diverged = _run("diverged", CURVE, 0.42, "non-finite loss at step 350")
    kept = fitness.scored_record(diverged, on_diverged="best_so_far")
    assert (kept.fitness, kept.status, kept.failed) == (0.42, "stopped_early", False)
    assert kept.message.startswith("non-finite loss at step 350") and kept.steps == 350
    failed = fitness.scored_record(diverged, on_diverged="failed")
    assert (failed.fitness, failed.status, failed.failed) == (None, "diverged", True)
    # diverged before its first evaluation: no accuracy so far, a failed child either way
    early = fitness.scored_record(_run("diverged", (), 0.0), on_diverged="best_so_far")
    assert (early.fitness, early.status) == (None, "diverged")
    unscored = ((100, 0.3, None, 2.0),)  # rows without validation do not count
    assert fitness.scored_record(_run("diverged", unscored, 0.0), on_diverged="best_so_far"
                                 ).fitness is None
    ok = _run("ok", CURVE, 0.42)
    assert fitness.scored_record(ok, on_diverged="failed") == fitness.scored_record(
        ok, on_diverged="best_so_far")
    with pytest.raises(ValueError, match="on_diverged must be one of best_so_far, failed"):
        fitness.scored_record(diverged, on_diverged="nanmax")


@pytest.mark.parametrize("policy,expected", [("best_so_far", 0.42), ("failed", None)])
def test_evaluate_reads_on_diverged_from_the_config_and_the_gate_ignores_it(
        monkeypatch, policy, expected):
    c = protocol_lib.fitness_config()
    assert c.on_diverged == "best_so_far"  # the authors' code (lfe.core.records)
    c.on_diverged = policy
    runs = {}
    monkeypatch.setattr(fitness, "load_dataset", lambda *a, **k: None)
    monkeypatch.setattr(fitness, "train_once",
                        lambda loss, protocol, data, seed, folder, until=0: runs[protocol.steps])
    runs[c.gate.steps] = _run("ok", (), 0.0)  # gate passed (best train accuracy 0.5)
    runs[c.surrogate.steps] = _run("diverged", CURVE, 0.42, "non-finite loss at step 350")
    assert fitness.evaluate(L.get("cross_entropy"), c, seed=0).fitness == expected
    runs[c.gate.steps] = _run("diverged", (), 0.0)  # a gate that diverges always fails
    assert fitness.evaluate(L.get("cross_entropy"), c, seed=0).status == "diverged"
