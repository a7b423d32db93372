"""Transfer grids (§4.3): settings × losses × seeds as resumable cells, with a fake trainer and
one real tiny run (ConvNet on CIFAR-10, test split)."""

import json
import os

import pytest

from configs import surrogate_study, transfer_paper
from lfe import worker
from lfe.core import fileio
from lfe.experiments import cells, transfer

FAKE = "tests.fake_training:train"


@pytest.fixture
def fake_training():
    """The grid cells of a test that asks for this are the fast fake (lfe.worker's seam)."""
    with worker.substitute(train_cell=FAKE):
        yield


def test_paper_layouts_need_the_architecture_configs_or_run_locally():
    c = transfer_paper.get_config("table8,runlocal")
    assert sorted(c.settings) == ["davidnet__cifar10__cutmix", "davidnet__cifar10__cutout"]
    assert c.settings["davidnet__cifar10__cutmix"].protocol.augment == "davidnet_cutmix"
    assert c.settings["davidnet__cifar10__cutout"].eval_split == "test"
    with pytest.raises(ValueError, match="table8, table9, table10, table11"):
        transfer_paper.get_config("runlocal")


def test_grid_records_every_cell_once_and_resumes(fake_training, tmp_path, monkeypatch):
    log = tmp_path / "train.log"
    monkeypatch.setenv("LFE_FAKE_TRAIN_LOG", str(log))
    c = (transfer_paper.get_config("table10,runlocal"))
    tables = transfer.run(c, str(tmp_path / "t"))
    records = cells.read_cells(str(tmp_path / "t" / "cells"))
    assert len(records) == 5 * 2 == len(log.read_text().splitlines())
    smooth = records["efficientnetv2_s__cifar10__default/CE_0.10__seed1"]
    assert smooth["label_smoothing"] == 0.1 and smooth["spec"] == {"name": "cross_entropy"}
    assert smooth["protocol"]["augment"]["train"][-1] == ["smooth_labels", {"smoothing": 0.1}]
    assert smooth["architecture"] == "efficientnetv2_s" and smooth["eval_split"] == "test"
    [table] = tables
    assert table.header[:3] == ["loss", "cifar10 (runs)", "cifar10"]
    # the library's neuroloss1 is the reading, and tables say so
    assert [r[0] for r in table.rows] == ["neuroloss1_reading", "neuroloss2", "neuroloss3",
                                          "cross_entropy", "CE_0.10"]
    # a lost cell is retrained alone; the others are read back
    os.remove(tmp_path / "t" / "cells" / "efficientnetv2_s__cifar10__default" /
              "neuroloss2__seed0.json")
    transfer.run(c, str(tmp_path / "t"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 11 and lines[-1]["loss"] == "neuroloss2"
    # more seeds only add cells; a changed setting is refused
    c.seeds = 3
    transfer.run(c, str(tmp_path / "t"))
    assert len(log.read_text().splitlines()) == 11 + 5
    c.settings["efficientnetv2_s__cifar10__default"].protocol.steps = 61
    with pytest.raises(ValueError, match=r"different config \(settings\."):
        transfer.run(c, str(tmp_path / "t"))


def test_losses_from_genome_files_and_unique_names(fake_training, tmp_path):
    from lfe.core import genome
    from lfe.training import losses
    path = tmp_path / "evolved.json"
    fileio.write_json_atomic(str(path), {"name": "cand7", "sign": 1, "genome": genome.to_dict(
        losses.get("neuroloss3").genome)})
    c = (transfer_paper.get_config("table9,runlocal"))
    c.losses = f"cross_entropy,{path}"
    assert list(transfer.loss_entries(c)) == ["cross_entropy", "cand7"]
    assert transfer.loss_entries(c)["cand7"][0]["genome"]["format"] == "lfe-genome-v1"
    c.losses = "cross_entropy,cross_entropy"
    with pytest.raises(ValueError, match="two losses are named 'cross_entropy'"):
        transfer.loss_entries(c)


def test_surrogate_study_tau_table(fake_training, tmp_path):
    c = (surrogate_study.get_config("runlocal"))
    [table] = transfer.run(c, str(tmp_path))
    assert table.header == ["setting", "convnet"]
    assert [r[0] for r in table.rows] == ["-", "32", "48"]
    assert all("n=4" in r[1] for r in table.rows)


@pytest.mark.slow
def test_real_transfer_cell_scores_the_test_split(tmp_path, cifar_dir):
    c = transfer_paper.get_config("table9,runlocal")
    c.data_dir, c.seeds, c.losses = str(cifar_dir), 1, "cross_entropy"
    del c.settings["wideresnet28_10__cifar10__default"]
    c.settings["efficientnetv2_s__cifar10__default"].protocol.steps = 40
    c.settings["efficientnetv2_s__cifar10__default"].protocol.eval_every = 20
    transfer.run(c, str(tmp_path))
    [record] = cells.read_cells(str(tmp_path / "cells")).values()
    assert record["train_split"] == "train+val" and record["eval_split"] == "test"
    assert record["steps_run"] == 40 and 0.12 < record["final_accuracy"] <= record["accuracy"]
    assert record["final_accuracy"] == record["curve"][-1][2]


def test_cells_fan_out_over_a_process_pool(fake_training, tmp_path):
    c = (surrogate_study.get_config("runlocal"))
    c.executor, c.workers = "pool", 2
    transfer.run(c, str(tmp_path))
    records = cells.read_cells(str(tmp_path / "cells"))
    assert len(records) == 4 * 4 and all(r["status"] == "ok" for r in records.values())
