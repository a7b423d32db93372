import json
import os

import ml_collections
import numpy as np
import pytest
from scipy import stats as sps

from configs import table4
from lfe.core import stats
from lfe.experiments import compare, tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(cifar_dir):
    c = table4.get_config("runlocal")
    c.data_dir = str(cifar_dir)
    c.protocol.steps = c.protocol.total_steps = 40
    c.protocol.warmup_steps = 10
    c.protocol.eval_every = 20
    c.protocol.eval_batch_size = 1000
    return c


@pytest.mark.slow
def test_grid_runs_resumes_and_tabulates(cifar_dir, tmp_path):
    c = tiny_config(cifar_dir)
    table = compare.run(c, str(tmp_path))
    cells = sorted(os.listdir(tmp_path / "cells"))
    assert cells == ["cross_entropy__seed0.json", "cross_entropy__seed1.json",
                     "neuroloss3__seed0.json", "neuroloss3__seed1.json"]
    assert [r[0] for r in table.csv_rows] == ["cross_entropy", "neuroloss3"]
    assert all(r[1] == 2 and 0.05 < r[2] / 100 < 1 for r in table.csv_rows)
    md = (tmp_path / "results.md").read_text()
    assert "| neuroloss3 | 2 |" in md
    assert "58.660" not in md and "were measured on in protocol." in md  # not Table 4's
    assert (tmp_path / "results.csv").read_text().startswith(
        "loss,validation accuracy (%) runs,validation accuracy (%) mean")
    assert "| neuroloss3 | 2 |" in (tmp_path / "results_paired.md").read_text()
    record = json.loads((tmp_path / "cells" / "neuroloss3__seed1.json").read_text())
    assert record["protocol"]["steps"] == 40 and record["loss"] == "neuroloss3"
    assert 0.05 < record["accuracy"] < 1 and record["git_revision"]

    # an interrupted grid: one cell lost; the rerun trains only that one
    kept = tmp_path / "cells" / "cross_entropy__seed0.json"
    before = kept.stat().st_mtime_ns
    os.remove(tmp_path / "cells" / "neuroloss3__seed1.json")
    compare.run(c, str(tmp_path))
    assert kept.stat().st_mtime_ns == before
    assert (tmp_path / "cells" / "neuroloss3__seed1.json").exists()

    c.protocol.steps = 50
    with pytest.raises(ValueError, match=r"different config \(protocol\."):
        compare.run(c, str(tmp_path))


def test_results_table_statistics_match_scipy():
    rng = np.random.default_rng(0)
    ce, nl = rng.normal(57, 0.6, 5), rng.normal(58, 0.5, 5)
    # one legacy record (before cells carried "accuracy") must still be read
    cells = {f"cross_entropy__seed{i}": {"loss": "cross_entropy", "best_val_accuracy": v / 100,
                                         "git_revision": "72f8807300e9"}
             for i, v in enumerate(ce)}
    cells |= {f"neuroloss1_printed__seed{i}": {"loss": "neuroloss1_printed", "accuracy": v / 100}
              for i, v in enumerate(nl)}
    c = table4.get_config()
    c.losses = "cross_entropy,neuroloss1_printed"
    table = compare.results_table(cells, c)
    row = table.csv_rows[1]
    assert row[2] == pytest.approx(nl.mean()) and row[3] == pytest.approx(nl.std(ddof=1))
    assert row[6] == pytest.approx(
        sps.ttest_ind(nl, ce, equal_var=False, alternative="greater").pvalue)
    assert row[7] == pytest.approx(sps.ttest_ind(nl, ce, equal_var=False).pvalue)
    md = tables.to_markdown(table)
    assert md.count("**") == 2 and "| cross_entropy | 5 |" in md
    assert "| neuroloss1_printed | 5 | **" in md and "58.711 ± 0.455" in md
    assert "revision(s) 72f8807, unknown." in md  # the runs' own code revisions


def test_the_paired_side_note_matches_runs_by_seed():
    ce = {0: 57.0, 1: 56.0, 2: 58.0}
    nl = {0: 58.0, 1: 58.0, 3: 99.0}  # seed 3 has no cross-entropy run: left out
    cells = {f"{n}__seed{s}": {"loss": n, "seed": s, "accuracy": v / 100}
             for n, runs in (("cross_entropy", ce), ("neuroloss2", nl)) for s, v in runs.items()}
    del cells["cross_entropy__seed1"]["seed"]  # an older record: the seed is in its cell id
    c = table4.get_config()
    c.losses = "cross_entropy,neuroloss2"
    table = compare.paired_table(cells, c)
    # pairs (58, 57) and (58, 56): differences 1 and 2, mean 1.5, std sqrt(0.5)
    assert table.rows == [["neuroloss2", "2", "+1.500 ± 0.707", "2 of 2",
                           stats.format_p(stats.paired([58, 58], [57, 56]))]]
    assert table.csv_rows[0][:5] == ["neuroloss2", 2, pytest.approx(1.5),
                                     pytest.approx(0.5 ** 0.5), 2]


def test_welch_by_hand():
    # a = [1, 2, 3], b = [2, 4, 6]: t = -2/sqrt(1/3 + 4/3) = -1.549, df = 2.941
    p = stats.welch([1, 2, 3], [2, 4, 6])
    t = -2 / np.sqrt(1 / 3 + 4 / 3)
    df = (5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2)
    assert p == pytest.approx(2 * sps.t.cdf(t, df))
    assert np.isnan(stats.welch([1], [2, 3]))


def test_cpu_evolution_retrain_reuses_table4_cross_entropy():
    """The evolved loss is re-trained on Table 4's exact protocol and seeds, so the Table 4
    cross-entropy cells (same keys) are reused by copying them into its run directory."""
    from configs import cpu_evolution

    r, t = cpu_evolution.get_config("retrain"), table4.get_config()
    assert r.protocol == t.protocol and r.seeds == t.seeds and r.dataset == t.dataset
    assert r.losses.split(",") == ["cross_entropy", "results/cpu_evolution/best.json#1"]


def test_rungs_retrain_names_cand127_and_shares_table4_cells(monkeypatch):
    """The rungs run's best is re-trained at 10 seeds under its own name, on Table 4's protocol:
    its grid's keys are Table 4's cross-entropy cells and ``rungs_cand127`` cells, whose loss is
    the rungs run's best genome (the grid that trained them checks its fingerprint)."""
    from configs import cpu_evolution
    from lfe.training import losses as L

    monkeypatch.chdir(ROOT)  # the config names the loss by its path in the repository
    r, t = cpu_evolution.get_config("rungs_retrain"), table4.get_config()
    assert r.protocol == t.protocol and r.dataset == t.dataset and r.seeds == 10
    keys = [x.key for x in compare.grid(r)]
    assert keys[:4] == ["cross_entropy__seed0", "rungs_cand127__seed0",
                        "cross_entropy__seed1", "rungs_cand127__seed1"]
    assert len(keys) == 20
    with open("results/rungs_evolution/best.json") as f:
        best = json.load(f)[0]
    loss = L.resolve("rungs_cand127=results/rungs_evolution/best.json#1")
    assert best["id"] == 127 and loss.name == "rungs_cand127"
    want = L.fingerprint(L.to_spec(loss))  # the committed re-training ran exactly this loss
    import pathlib

    records = [json.loads(p.read_text()) for p in
               sorted(pathlib.Path("results/rungs_evolution/retrain/cells").glob("rungs_cand127__*"))]
    assert len(records) == 10 and {rec["loss_fingerprint"] for rec in records} == {want}


def test_a_genome_file_is_named_by_its_loss_in_cells_and_tables(tmp_path):
    from lfe.core import genome as G
    from lfe.training import losses as L

    best = tmp_path / "best.json"  # an evolution run's top-k list
    best.write_text(json.dumps([{"id": 9, "fitness": 0.5, "sign": -1,
                                 "genome": G.to_dict(L.get("neuroloss2").genome)}]))
    c = table4.get_config()
    c.losses, c.seeds = f"cross_entropy,{best}#1", 2
    grid = compare.grid(c)
    assert [x.key for x in grid] == ["cross_entropy__seed0", "cand9__seed0",
                                     "cross_entropy__seed1", "cand9__seed1"]
    assert grid[1].meta["loss"] == "cand9" and grid[1].meta["spec"] == f"{best}#1"
    records = {x.key: {**x.meta, "accuracy": 0.5 + 0.01 * i} for i, x in enumerate(grid)}
    assert [r[0] for r in compare.results_table(records, c).csv_rows] == ["cross_entropy",
                                                                         "cand9"]
    best.unlink()  # a report made after the file moved still finds the name in the cells
    assert [r[0] for r in compare.results_table(records, c).csv_rows][1] == "cand9"


def _cells(names, base=0.5):
    return {f"{n}__seed{i}": {"loss": n, "accuracy": base + 0.01 * i}
            for n in names for i in range(3)}


def test_the_paper_s_column_only_on_the_paper_s_dataset_and_protocol():
    records = _cells(["cross_entropy", "neuroloss3"])
    c = table4.get_config()
    c.losses = "cross_entropy,neuroloss3"  # other losses or seeds: still Table 4's setting
    md = tables.to_markdown(compare.results_table(records, c))
    assert "validation accuracy (%) (paper)" in md and "58.660 ± 0.557" in md
    assert "not shown" not in md
    c.dataset = "npz:/data/other.npz"
    md = tables.to_markdown(compare.results_table(records, c))
    assert "(paper)" not in md and "58.660" not in md
    assert ("The paper's values are not shown: this run differs from the setting they were "
            "measured on in dataset.") in md
    c = table4.get_config("runlocal")  # a variant that shortens the protocol
    note = compare.results_table(records, c).note
    assert ("measured on in protocol.steps, protocol.total_steps, protocol.warmup_steps."
            in note)
    saved = table4.get_config().to_dict()  # a run directory made before paper_setting
    del saved["paper_setting"]
    saved["dataset"] = "npz:/data/other.npz"
    assert "58.660" in tables.to_markdown(compare.results_table(records, ml_collections
                                                                .ConfigDict(saved)))


def test_the_reproduce_line_is_the_recorded_command():
    c = table4.get_config()
    c.losses = "cross_entropy"
    c.command = "python -m lfe.main --config=configs/table4.py --workdir=r '--config.seeds=3'"
    note = compare.results_table(_cells(["cross_entropy"]), c).note
    assert note.endswith("\n\nReproduce: `python -m lfe.main --config=configs/table4.py "
                         "--workdir=r '--config.seeds=3'`")
    c.command = ""
    assert "Reproduce" not in compare.results_table(_cells(["cross_entropy"]), c).note


def test_transfer_tables_drop_the_paper_s_values_for_another_setting():
    settings = {"a": {"architecture": "convnet", "dataset": "cifar10", "augmentation": "x",
                      "protocol": {"steps": 10}, "eval_split": "val"}}
    config = {"title": "T", "settings": settings, "metric": "best", "p_values": [],
              "layout": {"kind": "loss", "split": [], "columns": ["dataset"], "order": []},
              "paper": {"cifar10": {"cross_entropy": "50.0 ± 1.0"}},
              "paper_setting": {"settings": settings}, "command": "python -m lfe.main x"}
    records = [{"loss": "cross_entropy", "seed": s, "setting": "a", "accuracy": 0.5}
               for s in range(2)]
    (table,) = tables.transfer_tables(records, config)
    assert "cifar10 (paper)" in table.header and table.note.endswith(
        "Reproduce: `python -m lfe.main x`")
    changed = {"a": {**settings["a"], "protocol": {"steps": 20}}}
    (table,) = tables.transfer_tables(records, {**config, "settings": changed})
    assert "cifar10 (paper)" not in table.header
    assert "measured on in settings.a.protocol.steps." in table.note


def test_two_genome_files_with_one_candidate_name_must_be_named_apart(tmp_path):
    """Two runs' ``best.json#1`` can both be ``cand9``: the grid refuses the clash (cell ids
    and rows are by name) and ``name=file`` names one explicitly."""
    from lfe.core import genome as G
    from lfe.training import losses as L

    for run, loss in (("a", "neuroloss2"), ("b", "neuroloss3")):
        (tmp_path / run).mkdir()
        (tmp_path / run / "best.json").write_text(json.dumps(
            [{"id": 9, "fitness": 0.5, "sign": -1, "genome": G.to_dict(L.get(loss).genome)}]))
    a, b = f"{tmp_path}/a/best.json#1", f"{tmp_path}/b/best.json#1"
    c = table4.get_config()
    c.losses, c.seeds = f"cross_entropy,{a},{b}", 1
    with pytest.raises(ValueError, match="both named 'cand9'"):
        compare.grid(c)
    c.losses = f"cross_entropy,{a},rungs9={b}"
    grid = compare.grid(c)
    assert [x.key for x in grid] == ["cross_entropy__seed0", "cand9__seed0", "rungs9__seed0"]
    assert grid[2].meta == {**grid[2].meta, "loss": "rungs9", "spec": f"rungs9={b}"}
    # the named loss is b's genome, in b's sign, shipped to workers under its new name
    spec = grid[2].args[0]
    assert spec["name"] == "rungs9" and spec["sign"] == -1
    assert G.to_dict(L.from_spec(spec).genome) == G.to_dict(L.get("neuroloss3").genome)
    with pytest.raises(ValueError, match="not a library loss's name"):
        L.resolve(f"neuroloss2={b}")
    with pytest.raises(ValueError, match="only a genome file can be renamed"):
        L.resolve("x=neuroloss2")


def test_a_finished_cell_of_another_loss_of_the_same_name_is_refused(tmp_path):
    """Cells record what their loss computes; a grid whose loss took a finished cell's name
    (a best.json rewritten by a resumed run, a renamed library loss) stops with one line
    instead of reusing it. Records older than the fingerprint are trusted."""
    from lfe import worker
    from lfe.core import genome as G
    from lfe.training import losses as L

    best = tmp_path / "best.json"

    def write(loss):
        best.write_text(json.dumps([{"id": 9, "fitness": 0.5, "sign": -1,
                                     "genome": G.to_dict(L.get(loss).genome)}]))

    write("neuroloss2")
    c = table4.get_config()
    c.losses, c.seeds, c.executor = f"cross_entropy,{best}#1", 2, "inprocess"
    work = tmp_path / "grid"
    with worker.substitute(train_cell="tests.fake_training:train"):
        compare.run(c, str(work))
        first = json.loads((work / "cells" / "cand9__seed0.json").read_text())
        assert first["loss_fingerprint"] == L.fingerprint(L.to_spec(L.resolve(f"{best}#1")))
        assert len({json.loads(p.read_text())["loss_fingerprint"]
                    for p in (work / "cells").glob("*.json")}) == 2  # one per loss
        compare.run(c, str(work))  # same losses: every cell reused
        write("neuroloss3")
        with pytest.raises(ValueError, match=r"cand9__seed\d\.json was trained with another "
                                             r"loss named 'cand9' \(fingerprint"):
            compare.run(c, str(work))
        for p in (work / "cells").glob("cand9__*.json"):  # an older record: trusted
            r = json.loads(p.read_text())
            del r["loss_fingerprint"]
            p.write_text(json.dumps(r))
        compare.run(c, str(work))
    assert json.loads((work / "cells" / "cand9__seed0.json").read_text()) == {
        k: v for k, v in first.items() if k != "loss_fingerprint"}
