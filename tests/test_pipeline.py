"""``mode: pipeline`` end to end on real CIFAR-10 at tiny size: evolve → eliminate → transfer →
report, then a rerun that trains nothing."""

import os

import pytest

from configs import pipeline as pipeline_config
from lfe import main
from lfe.core import fileio
from lfe.experiments import cells


def tiny(cifar_dir):
    c = pipeline_config.get_config("runlocal")
    c.data_dir = str(cifar_dir)  # every stage's
    e = c.evolve
    e.initial_population, e.population_size, e.tournament_size, e.max_iterations = 3, 2, 2, 1
    e.fitness.gate_enabled = False
    for p in (e.fitness.initial, e.fitness.surrogate):
        p.steps = p.total_steps = p.eval_every = 20
        p.warmup_steps, p.eval_batch_size = 5, 2500
    el = c.eliminate
    el.keep = (2, 1)
    el.protocol.phases = [{"steps": 10, "dropout": 0.1}, {"steps": 10, "dropout": 0.2}]
    el.protocol.steps = el.protocol.total_steps = 20
    el.protocol.eval_every, el.protocol.eval_batch_size = 10, 2500
    t = c.transfers.table9
    del t.settings["wideresnet28_10__cifar10__default"]
    p = t.settings["efficientnetv2_s__cifar10__default"].protocol
    p.steps = p.total_steps = p.eval_every = 20
    p.eval_batch_size = 2500
    return c


@pytest.mark.slow
def test_pipeline_end_to_end_writes_every_report_file(tmp_path, cifar_dir):
    c = tiny(cifar_dir)
    state = main.dispatch(c, str(tmp_path))
    assert list(state["stages"]) == ["evolve", "eliminate", "transfer/table9", "report"]
    finalists = fileio.read_json(tmp_path / "eliminate" / "elimination.json")["finalists"]
    assert len(finalists) == 1
    # stage 2 really trained phases 1..2 (10 + 10 steps, evaluated after each phase)
    stage2 = fileio.read_json(tmp_path / "eliminate" / "cells" / "stage2" /
                              f"{finalists[0]['name']}__seed0.json")
    assert stage2["steps_run"] == 20 and [row[0] for row in stage2["curve"]] == [10, 20]
    assert [p["dropout"] for p in stage2["protocol"]["phases"]] == [0.1, 0.2]
    assert 0.0 < stage2["accuracy"] < 1.0
    transfer_cells = cells.read_cells(str(tmp_path / "transfer" / "table9" / "cells"))
    assert sorted(r["loss"] for r in transfer_cells.values()) == sorted(
        [finalists[0]["name"], "cross_entropy"])

    report = tmp_path / "report"
    expected = {"README.md", "evolve.md", "evolve.csv", "evolve_figure4.png",
                "evolve_best_phenotypes.png", "evolve_best_phenotypes_zoom.png",
                "eliminate.md", "eliminate.csv", "eliminate.png",
                "eliminate_finalists_phenotypes.png", "eliminate_finalists_phenotypes_zoom.png",
                "transfer_table9.md", "transfer_table9.csv"}
    assert expected <= set(os.listdir(report))
    md = (report / "transfer_table9.md").read_text()
    assert "| loss | efficientnetv2_s (runs) | efficientnetv2_s |" in md
    assert f"| {finalists[0]['name']} | 1 |" in md
    assert "stage 2: phases 1–2, 20 steps (%)" in (report / "eliminate.md").read_text()
    readme = (report / "README.md").read_text()
    assert "evolve_figure4.png" in readme and "Table 9" in readme

    # a rerun finds every stage finished and trains nothing
    before = {k: os.stat(tmp_path / "eliminate" / "cells" / f"{k}.json").st_mtime_ns
              for k in cells.read_cells(str(tmp_path / "eliminate" / "cells"))}
    main.dispatch(tiny(cifar_dir), str(tmp_path))
    after = {k: os.stat(tmp_path / "eliminate" / "cells" / f"{k}.json").st_mtime_ns
             for k in cells.read_cells(str(tmp_path / "eliminate" / "cells"))}
    assert before == after and len(before) == (2 + 1) + (1 + 1)


def test_finalists_token_expands_in_order():
    from lfe.experiments import pipeline
    assert pipeline.transfer_losses("finalists, cross_entropy", ["a.json", "b.json"]) == \
        "a.json,b.json,cross_entropy"
