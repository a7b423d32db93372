"""The training loop's shared rules (lfe.training.loop): evaluation steps, stop rules, bookkeeping.
train.run and population.run are tested end to end in test_train and test_population."""

import ml_collections
import numpy as np
import pytest

from lfe.training import loop


def totals(accuracy, loss=1.0, first_nonfinite=-1):
    """An interval's summed metrics as the host sees them (NumPy scalars)."""
    return {"accuracy": np.float32(accuracy), "loss": np.float32(loss),
            "first_nonfinite": np.int32(first_nonfinite)}


def test_eval_steps():
    assert loop.eval_steps(300, 100) == [100, 200, 300]
    assert loop.eval_steps(250, 100, [150, 100, 250, 400, 0]) == [100, 150, 200, 250]
    assert loop.eval_steps(5, 10) == [5]
    for steps, every in ((0, 10), (10, 0)):
        with pytest.raises(ValueError, match="need steps > 0 and eval_every > 0"):
            loop.eval_steps(steps, every)


def test_stop_rules_are_sorted_pairs():
    config = ml_collections.ConfigDict({"stop_rules": ((3000, "0.25"), (800, 0.37))})
    assert loop.stop_rules(config) == [(800, 0.37), (3000, 0.25)]
    assert loop.stop_rules(ml_collections.ConfigDict({"stop_rules": None})) == []
    assert loop.stop_rules({}) == []


def test_record_books_interval_means_and_bests():
    p = loop.Progress([], start_time=0.0)
    row = p.record(100, totals(50.0, 200.0), 0.4)
    assert row == {"step": 100, "train_accuracy": 0.5, "val_accuracy": 0.4, "loss": 2.0}
    p.record(150, totals(20.0, 25.0), 0.3)  # a 50-step interval
    p.record(200, totals(45.0, 10.0), None)
    assert [r[1] for r in p.curve] == [0.5, 0.4, 0.9]
    assert (p.best_train, p.best_val, p.steps_run, p.running) == (0.9, 0.4, 200, True)
    result = p.result(wall_time_s=1.5)
    assert result == loop.TrainResult(0.4, 0.9, "ok", 200, 1.5, tuple(p.curve))
    assert p.result().wall_time_s == p.wall_time_s > 0


def test_stop_rule_fires_on_the_best_train_accuracy_by_its_step():
    p = loop.Progress([(200, 0.6), (100, 0.3)])
    p.record(100, totals(50.0), None)  # 0.5 >= 0.3: passes
    assert p.running and p.rules == [(200, 0.6)]
    p.record(150, totals(5.0), None)  # the rule at 200 is not due
    assert p.running
    p.record(200, totals(25.0), None)
    assert p.status == "stopped_early" and p.steps_run == 200
    assert p.message == "best train accuracy 0.5000 < 0.6 after 200 steps"
    assert p.result().best_train_accuracy == 0.5


def test_divergence_keeps_the_earlier_bests():
    p = loop.Progress([])
    assert not p.diverged(totals(40.0))
    p.record(100, totals(40.0), 0.25)
    assert p.diverged(totals(np.nan, np.nan, first_nonfinite=149))
    r = p.result()
    assert (r.status, r.steps_run, r.message) == ("diverged", 150, "non-finite loss at step 150")
    assert (r.best_train_accuracy, r.best_val_accuracy, len(r.curve)) == (0.4, 0.25, 1)
    assert not p.running
