import csv
import json
import os

import pytest

from bench import fidelity, fidelity_filter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _evaluated(**kw):
    base = dict(id=1, stage="surrogate", status="ok", fitness=0.5, curve=[], steps=2800,
                wall_time_s=280.0, told=0, told_time=1000.0, gate_accuracy=0.4, equation="",
                genome={}, sign=1)
    return fidelity.Evaluated(**{**base, **kw})


def test_arrival_time_at_a_surrogate_step_by_hand():
    # told at 1000 s after 280 s for 800 gate + 2000 surrogate steps: 0.1 s a step, so step 400
    # of the surrogate run (step 1200 of 2800) was reached 1600 steps = 160 s before the end
    assert _evaluated().time_at(400) == pytest.approx(840.0)
    assert _evaluated(stage="initial", steps=2000, wall_time_s=200.0).time_at(400) == \
        pytest.approx(840.0)


def test_replay_of_the_stored_run_writes_consistent_tables(tmp_path):
    fidelity.main(["--no-filter", "--draws", "20", "--out", str(tmp_path),
                   "--run", os.path.join(ROOT, "results/cpu_evolution/run"),
                   "--ce-cells", os.path.join(ROOT, "results/cpu_evolution/ce_baseline/cells"),
                   "--cells", os.path.join(ROOT, "results/table4/cells"),
                   os.path.join(ROOT, "results/cpu_evolution/retrain/cells")])
    for name in ("results.md", "tau_evolution.csv", "tau_table4.csv", "replay.csv", "tau.png",
                 "replay_stops.json", "summary.json", "gate_early.csv"):
        assert os.path.exists(tmp_path / name), name
    stops = json.loads((tmp_path / "replay_stops.json").read_text())
    with open(tmp_path / "replay.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(stops)
    for row in rows:
        detail = stops[fidelity.replay_key(
            tuple(map(int, row["rungs"].split("/"))),
            tuple(map(int, row["fraction"].split("/"))), row["order"], row["score"])]
        assert len(detail) == 51  # the scored candidates: 24 initial + 27 children
        saved = sum(2000 - rung for rung in detail.values() if rung is not None)
        assert int(row["steps_saved"]) == saved
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["candidates"], summary["scored"], summary["run_steps"]) == (114, 51, 174000)


def test_filter_summary_counts_children_by_hand():
    def row(name, kind, status, score, fitness=None, gate=None):
        values = {f"{p}_{m}": score for p in ("logits", "linear")
                  for m in ("final", "best", "mean")}
        return {"loss": name, "kind": kind, "status": status, "fitness": fitness,
                "gate_accuracy": gate, "linear_finite": True, **values}

    rows = [row("cross_entropy", "library", "library", 0.5),
            row("cand1", "initial", "ok", 0.2, fitness=0.3),
            row("cand73", "surrogate", "ok", 0.5, 0.50, 0.40),
            row("cand94", "surrogate", "ok", 0.4, 0.49, 0.39),
            row("cand110", "surrogate", "ok", 0.6, 0.48, 0.38),
            row("cand5", "surrogate", "gated", 0.3, gate=0.2),
            row("cand6", "surrogate", "gated", 0.46, gate=0.1)]
    table, decisions = fidelity_filter.summarize(rows)
    linear_mean = next(t for t in table if (t["probe"], t["metric"]) == ("linear", "mean"))
    # positives 0.5, 0.4, 0.6 vs negatives 0.3, 0.46: 5 of 6 pairs won
    assert linear_mean["auc_children"] == pytest.approx(5 / 6)
    assert decisions["threshold"] == pytest.approx(0.45)
    assert decisions["children"] == {"pass_good": 2, "pass_bad": 1, "reject_good": 1,
                                     "reject_bad": 1}
    assert decisions["best_rejected"] == ["cand94"] and decisions["initial_rejected"] == ["cand1"]
