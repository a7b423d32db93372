"""The elimination protocol (§3.9): stage bookkeeping with a fake trainer and resume after
SIGKILL. Real training through the protocol runs in tests/test_pipeline.py."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from configs import eliminate as eliminate_config
from configs import quickstart
from lfe import worker
from lfe.core import fileio
from lfe.experiments import cells, eliminate, evolve
from lfe.training import losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = "tests.fake_training:train"


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    """A small finished evolution run directory (fake fitness)."""
    workdir = tmp_path_factory.mktemp("evolve")
    c = quickstart.get_config("runlocal")
    for k, v in {"executor": "inprocess",
                 "initial_population": 12, "population_size": 6, "tournament_size": 3,
                 "max_iterations": 10, "plot_every": 100}.items():
        c[k] = v
    with worker.substitute(evaluate="tests.fake_fitness:evaluate"):
        evolve.run(c, str(workdir))
    return workdir


@pytest.fixture(autouse=True)
def fake_training():
    """Every grid cell in this module is the fast fake (lfe.worker's test seam)."""
    with worker.substitute(train_cell=FAKE):
        yield


def fake_config(source, keep=(6, 3, 2)):
    c = eliminate_config.get_config("runlocal")
    c.source, c.keep = str(source), keep
    return c


def read_log(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def test_stage_protocol_is_phases_one_to_k():
    p = eliminate_config.get_config().protocol.to_dict()
    stages = [eliminate.stage_protocol(p, k) for k in (1, 2, 3, 4)]
    assert [s["steps"] for s in stages] == [16000, 32000, 48000, 64000]
    assert [len(s["phases"]) for s in stages] == [1, 2, 3, 4]
    assert stages[1]["phases"][1] == {"steps": 16000, "image_size": 160, "dropout": 0.2,
                                      "randaug_magnitude": 8.0}
    assert all(s["total_steps"] == 64000 and s["model"] == "efficientnetv2_s" for s in stages)
    with pytest.raises(ValueError, match="stage 5 needs phases 1..5"):
        eliminate.stage_protocol(p, 5)


def test_stages_keep_the_best_and_retrain_from_scratch(evolved, tmp_path, monkeypatch):
    log = tmp_path / "train.log"
    monkeypatch.setenv("LFE_FAKE_TRAIN_LOG", str(log))
    work = tmp_path / "elim"
    summary = eliminate.run(fake_config(evolved), str(work))
    top = eliminate.select_candidates(str(evolved), 6)
    candidates = fileio.read_json(work / "candidates.json")
    assert [c["id"] for c in candidates] == [t["id"] for t in top]
    fits = [t["search_fitness"] for t in top]
    assert fits == sorted(fits, reverse=True) and len(top) == 6

    stages = summary["stages"]
    assert [len(s["entrants"]) for s in stages] == [6, 3, 2]
    for s, nxt in zip(stages, stages[1:], strict=False):
        ranked = [r["loss"] for r in s["ranking"]]
        scores = [r["score"] for r in s["ranking"]]
        assert scores == sorted(scores, reverse=True)
        assert s["survivors"] == ranked[:len(nxt["entrants"])] == nxt["entrants"]
    # each stage trains its entrants plus cross-entropy once, with phases 1..k
    trained = read_log(log)
    assert len(trained) == (6 + 1) + (3 + 1) + (2 + 1)
    for k, s in enumerate(stages, start=1):
        names = sorted(t["loss"] for t in trained if t["steps"] == 40 * k)
        assert names == sorted(s["entrants"] + ["cross_entropy"])
        record = fileio.read_json(work / "cells" / f"stage{k}" / f"{s['entrants'][0]}__seed0.json")
        assert record["protocol"]["steps"] == 40 * k and len(record["protocol"]["phases"]) == k
        assert record["spec"]["genome"] and record["seed"] == 0 and record["git_revision"]

    finalists = summary["finalists"]
    assert [f["name"] for f in finalists] == [r["loss"] for r in stages[-1]["ranking"]]
    paths = eliminate.finalist_paths(str(work))
    assert len(paths) == 2 and losses.resolve(paths[0]).name == finalists[0]["name"]
    md = (work / "results.md").read_text()
    assert "stage 3: phases 1–3, 120 steps (%)" in md and md.count("**") == 2 * 3
    assert "stage 1: phase 1, 40 steps (%)" in md
    assert "| ref | cross_entropy |" in md

    # a finished protocol reruns nothing; a changed protocol is refused
    eliminate.run(fake_config(evolved), str(work))
    assert len(read_log(log)) == len(trained)
    c = fake_config(evolved)
    c.protocol.warmup_steps = 10
    with pytest.raises(ValueError, match=r"different config \(protocol\."):
        eliminate.run(c, str(work))


def test_authors_variant_eliminates_two_groups_and_keeps_the_best_of_each(evolved, tmp_path):
    """``configs/eliminate.py:authors`` (here at runlocal size: 2 groups, keep 2 -> 1, 1
    finalist each): the best 4 split into halves by search rank, each eliminated on its own."""
    c = eliminate_config.get_config("authors,runlocal")
    c.source = str(evolved)
    summary = eliminate.run(c, str(tmp_path / "elim"))
    names = [t["name"] for t in eliminate.select_candidates(str(evolved), 4)]
    first, second = summary["stages"]
    assert first["entrants"] == names and len(first["groups"]) == 2
    assert sorted(first["groups"][0]) == sorted(names[:2])  # the best half
    assert sorted(first["groups"][1]) == sorted(names[2:])
    assert first["survivors"] == [g[0] for g in first["groups"]] == second["entrants"]
    assert second["finalists"] == second["entrants"]  # one group member each: both kept
    assert sorted(f["name"] for f in summary["finalists"]) == sorted(second["entrants"])
    c.finalists = -1
    with pytest.raises(ValueError, match="groups must be >= 1 and finalists >= 0"):
        eliminate.run(c, str(tmp_path / "bad"))


def test_candidates_default_to_the_surrogate_scored_genomes(evolved):
    assert eliminate_config.get_config().candidates_stage == "surrogate"
    top = eliminate.select_candidates(str(evolved), 100, "surrogate")
    assert top and {t["stage"] for t in top} == {"surrogate"}


def test_bad_keep_and_missing_source_are_refused(tmp_path):
    with pytest.raises(ValueError, match="non-increasing"):
        eliminate.run(fake_config(tmp_path, keep=(2, 3)), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="stage 4 needs phases 1..4"):
        eliminate.run(fake_config(tmp_path, keep=(4, 3, 2, 1)), str(tmp_path / "b"))
    with pytest.raises(ValueError, match="no evolution run"):
        eliminate.run(fake_config(tmp_path), str(tmp_path / "c"))


def test_resume_after_sigkill_retrains_nothing_finished(evolved, tmp_path):
    work, log = tmp_path / "elim", tmp_path / "train.log"
    env = {**os.environ, "LFE_FAKE_TRAIN_LOG": str(log), "LFE_FAKE_TRAIN_SLEEP": "0.3",
           "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "tests.drive", f"--task=train_cell={FAKE}",
           "--config=configs/eliminate.py:runlocal", f"--workdir={work}",
           f"--config.source={evolved}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    # kill in the middle of stage 1 (4 candidates + cross-entropy)
    while len(cells.read_cells(str(work / "cells"))) < 3 and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {k: os.stat(work / "cells" / f"{k}.json").st_mtime_ns
                for k in cells.read_cells(str(work / "cells"))}
    assert 3 <= len(finished) < 5
    before = read_log(log)

    env["LFE_FAKE_TRAIN_SLEEP"] = "0"
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    after = read_log(log)[len(before):]
    retrained = {f"stage{t['steps'] // 40}/{t['loss']}__seed{t['seed']}" for t in after}
    assert not retrained & set(finished)  # nothing finished was trained again
    for key, mtime in finished.items():
        assert os.stat(work / "cells" / f"{key}.json").st_mtime_ns == mtime
    assert len(after) == (5 + 3 + 2) - len(finished)
    assert json.load(open(work / "elimination.json"))["finalists"]
