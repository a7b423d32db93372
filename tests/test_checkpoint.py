"""Mid-training checkpoints (lfe.training.checkpoint, train.run(checkpoint_dir=...)): an
interrupted run resumes to exactly the uninterrupted result; off changes nothing."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import davidnet, effnetv2_s, quickstart, seresnext, surrogate, table4, wideresnet
from lfe import worker
from lfe.core import protocol as protocol_lib
from lfe.experiments import cells, evolve
from lfe.training import checkpoint, loop, train
from lfe.training.models import get_model
from tests.conftest import REPO_ROOT

SIZE = 16


def quadrant_data(n, seed):
    """uint8 noise with one brighter quadrant; the label is that quadrant (4 classes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, SIZE, SIZE, 3)).astype(np.uint8)
    labels = rng.integers(0, 4, n).astype(np.int32)
    for i, q in enumerate(labels):
        r, c = divmod(int(q), 2)
        images[i, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 100
    return images, labels


TRAIN, VAL = quadrant_data(256, 0), quadrant_data(50, 1)
RESIZED = {"train": [("resize", {"size": SIZE}), ("normalize", {"mode": "unit"})],
           "eval": [("resize", {"size": SIZE}), ("normalize", {"mode": "unit"})]}
PHASES = [{"steps": 40, "image_size": 12, "dropout": 0.1},
          {"steps": 40, "image_size": 16, "dropout": 0.3}]


class Interrupted(Exception):
    pass


def cross_entropy(y, p):
    return -jnp.sum(y * jnp.log(p + 1e-7), -1)


def config(**overrides):
    cfg = train.default_config()
    cfg.update({"steps": 80, "batch_size": 32, "eval_every": 20, "eval_batch_size": 25,
                "learning_rate": 1e-2, "warmup_steps": 10, "total_steps": 80})
    cfg.update(overrides)
    return cfg


def run(cfg, checkpoint_dir="", stop_at=None, seed=0, loss_fn=cross_entropy, rows=None,
        until=0):
    """train.run; raises Interrupted right after the evaluation at step `stop_at`."""
    def log(row):
        if rows is not None:
            rows.append(row["step"])
        if row["step"] == stop_at:
            raise Interrupted

    return train.run(get_model("convnet", num_classes=4), loss_fn, cfg, seed=seed,
                     train_images=TRAIN[0], train_labels=TRAIN[1], val_images=VAL[0],
                     val_labels=VAL[1], log_fn=log, checkpoint_dir=checkpoint_dir,
                     until=until)


def same(a, b):
    return dataclasses.replace(a, wall_time_s=0) == dataclasses.replace(b, wall_time_s=0)


def interrupt(cfg, directory, stop_at, **kwargs):
    with pytest.raises(Interrupted):
        run(cfg, str(directory), stop_at=stop_at, **kwargs)


@pytest.fixture(scope="module")
def baseline():
    return run(config())


def test_interrupted_run_resumes_exactly(tmp_path, baseline):
    cfg = config(checkpoint_every=40)
    assert same(run(cfg, str(tmp_path / "whole")), baseline)  # saving changes nothing
    assert not (tmp_path / "whole").exists()  # removed when the run ends
    folder = tmp_path / "ckpt"
    interrupt(cfg, folder, stop_at=60)  # a checkpoint at 40, killed after 60
    assert sorted(os.listdir(folder)) == ["step_00000040"]
    rows = []
    resumed = run(cfg, str(folder), rows=rows)
    assert same(resumed, baseline) and resumed.curve[:2] == baseline.curve[:2]
    assert rows == [60, 80]  # trained from step 40 on, not from 0
    assert not folder.exists()


def test_progressive_run_resumes_mid_phase(tmp_path):
    cfg = config(phases=PHASES, augment=RESIZED, eval_every=10, checkpoint_every=20)
    whole = run(cfg)
    for stop_at, saved in ((30, "step_00000020"), (70, "step_00000060")):
        folder = tmp_path / f"stop{stop_at}"  # resumes in phase 1 (crossing into 2) / in 2
        interrupt(cfg, folder, stop_at)
        assert os.listdir(folder) == [saved]
        assert same(run(cfg, str(folder)), whole)


def test_stop_rules_carry_over_a_resume(tmp_path):
    cfg = config(stop_rules=((20, 0.1), (60, 0.99)), checkpoint_every=20)
    never_learns = lambda y, p: jnp.zeros(p.shape[:1])  # noqa: E731 - chance accuracy
    whole = run(cfg, loss_fn=never_learns)
    assert whole.status == "stopped_early" and whole.steps_run == 60
    interrupt(cfg, tmp_path, 40, loss_fn=never_learns)  # resumes at 20, the first rule decided
    assert same(run(cfg, str(tmp_path), loss_fn=never_learns), whole)


def test_a_run_paused_at_rungs_continues_exactly(tmp_path, baseline):
    """Rungs (lfe.core.rungs): pause at 20, continue to 60, then to the end = one run, from the
    kept checkpoints (no checkpoint_every needed) or, without a folder, trained again."""
    folder = str(tmp_path / "rungs")
    rows = []
    first = run(config(), folder, until=20, rows=rows)
    assert first.status == "paused" and first.steps_run == 20 and rows == [20]
    assert first.curve == baseline.curve[:1] and first.start_step == 0
    assert os.listdir(folder) == ["step_00000020"]  # kept for the continuation
    second = run(config(), folder, until=60, rows=rows)
    assert second.status == "paused" and second.curve == baseline.curve[:3]
    assert second.start_step == 20 and rows == [20, 40, 60]
    again = run(config(), folder, until=60, rows=rows)  # the same task again (a lost result)
    assert again.status == "paused" and again.curve == second.curve and rows[-1] == 60
    last = run(config(), folder, rows=rows)
    assert same(last, baseline) and rows[-1] == 80 and last.start_step == 60
    assert not os.path.exists(folder)  # removed once the run ends
    fresh = run(config(), "", until=60)  # no folder: trains from 0, the same steps
    assert fresh.curve == baseline.curve[:3] and fresh.start_step == 0
    truncated = run(protocol_lib.truncated(config(), 60))  # what the vmap path trains
    assert truncated.curve == baseline.curve[:3] and truncated.status == "ok"
    with pytest.raises(ValueError, match="pause only at one of its evaluation steps"):
        run(config(), "", until=30)


def test_truncated_cuts_the_phases():
    cfg = config(phases=PHASES, augment=RESIZED)
    cut = protocol_lib.truncated(cfg, 50)
    assert cut.steps == 50 and [p["steps"] for p in cut.phases] == [40, 10]
    assert cut.total_steps == cfg.total_steps  # the same schedule
    with pytest.raises(ValueError, match="until"):
        protocol_lib.truncated(cfg, 80)


def test_checkpointing_off_changes_nothing(tmp_path, baseline):
    assert "checkpoint_every" not in protocol_lib.trainer_defaults()
    assert same(run(config(), str(tmp_path / "a")), baseline)
    assert same(run(config(checkpoint_every=0), str(tmp_path / "b")), baseline)
    assert not os.listdir(tmp_path)
    # the CPU protocols' task arguments are as before: no checkpoint folder
    for cfg in (table4.get_config(), quickstart.get_config()):
        assert "checkpoint_every" not in json.dumps(cfg.to_dict())
    cell = cells.Cell("ce__seed0", {}, ({"loss": "ce"}, config().to_dict(), "cifar10", "", 0))
    assert cells.task_args(cell, str(tmp_path / "cells")) == cell.args
    candidate = type("Candidate", (), {"id": 7, "stage": "surrogate"})
    fitness = protocol_lib.fitness_config().to_dict()
    assert evolve._checkpoint_args(fitness, str(tmp_path), candidate) == ()


def test_task_arguments_name_the_checkpoint_folder(tmp_path):
    on = config(checkpoint_every=40).to_dict()
    short = cells.Cell("stage2/ce__seed0", {}, ({"loss": "ce"}, on, "cifar10", "", 0))
    folder = str(tmp_path / "checkpoints" / "stage2" / "ce__seed0")
    assert cells.task_args(short, str(tmp_path / "cells")) == (*short.args, "train", "val",
                                                               folder)
    full = dataclasses.replace(short, args=(*short.args, "train+val", "test"))
    assert cells.task_args(full, str(tmp_path / "cells")) == (*full.args, folder)
    candidate = type("Candidate", (), {"id": 7, "stage": "surrogate"})
    fitness = protocol_lib.fitness_config().to_dict()
    fitness["surrogate"]["checkpoint_every"] = 2000
    assert evolve._checkpoint_args(fitness, str(tmp_path), candidate) == (
        str(tmp_path / "checkpoints" / "cand7"),)


def test_vmap_executor_groups_without_the_checkpoint_folder(monkeypatch):
    from lfe.executors import vmap

    calls = []
    monkeypatch.setattr(vmap, "call", lambda target, args: calls.append((target, args))
                        or vmap.Outcome(value=[{"seed": s} for s in args[2]]))
    pool = vmap.PopulationExecutor(workers=2)
    for i in range(2):
        pool.submit(str(i), worker.EVALUATE, {"n": i}, {"c": 1}, i, "surrogate", f"/ck/cand{i}")
    assert [k for k, _ in pool.wait_any()] == ["0", "1"]
    assert calls == [(worker.EVALUATE_MANY, ([{"n": 0}, {"n": 1}], {"c": 1}, [0, 1],
                                             "surrogate"))]


def test_large_model_protocols_checkpoint():
    large = [effnetv2_s.get_config(v) for v in ("", "eliminate", "large", "finetune")]
    large += [wideresnet.get_config(), seresnext.get_config(), davidnet.get_config(),
              davidnet.get_config("cutmix")]
    for cfg in large:
        assert protocol_lib.checkpoint_every(cfg.protocol) == protocol_lib.CHECKPOINT_EVERY
    assert protocol_lib.checkpoint_every(surrogate.get_config().fitness.surrogate) == 2000
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        protocol_lib.checkpoint_every({"checkpoint_every": -1})


def test_a_bad_checkpoint_is_one_line_naming_the_file(tmp_path):
    cfg = config(checkpoint_every=40)
    interrupt(cfg, tmp_path, 60)
    saved = tmp_path / "step_00000040"
    state, meta = saved / "state.npz", saved / "meta.json"
    with pytest.raises(checkpoint.CheckpointError, match="another run") as error:
        run(cfg, str(tmp_path), seed=1)
    assert str(saved) in str(error.value)
    good = state.read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF  # inside an array's data: its CRC-32 fails
    state.write_bytes(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointError) as error:
        run(cfg, str(tmp_path))
    message = str(error.value)
    assert str(state) in message and "\n" not in message and f"remove {tmp_path}" in message
    state.write_bytes(good[:100])
    with pytest.raises(checkpoint.CheckpointError, match="state.npz"):
        run(cfg, str(tmp_path))
    state.write_bytes(good)
    meta.write_text(meta.read_text()[:50])
    with pytest.raises(checkpoint.CheckpointError, match="meta.json"):
        run(cfg, str(tmp_path))
    assert state.exists()  # never silently restarted (nor deleted)


def test_save_restore_and_latest(tmp_path):
    tree = {"step": 3, "weak": jnp.asarray(2.5), "w": np.arange(6, dtype=np.float32).reshape(2, 3),
            "k": jax.random.PRNGKey(4)}
    assert checkpoint.latest(str(tmp_path)) is None
    os.makedirs(tmp_path / ".tmp-abc")  # an unfinished save is never read, and is cleaned up
    checkpoint.save(str(tmp_path), 5, tree, {"x": 1})
    path = checkpoint.save(str(tmp_path), 10, tree, {"x": 2})
    assert sorted(os.listdir(tmp_path)) == ["step_00000010"]
    assert checkpoint.latest(str(tmp_path)) == path
    back, meta = checkpoint.restore(path, tree)
    assert meta["x"] == 2 and meta["step"] == 10
    assert back["step"] == 3 and isinstance(back["step"], int)
    assert back["weak"] == 2.5 and isinstance(back["weak"], float)
    np.testing.assert_array_equal(back["w"], tree["w"])
    np.testing.assert_array_equal(back["k"], tree["k"])
    with pytest.raises(checkpoint.CheckpointError, match=r"\['w'\] is float32\[2, 3\]"):
        checkpoint.restore(path, {**tree, "w": np.zeros((3, 2), np.float32)})
    with pytest.raises(checkpoint.CheckpointError, match="leaves are not those"):
        checkpoint.restore(path, {"other": 1})


def test_background_writer_copies_at_once_and_reports_errors_on_wait(tmp_path):
    writer = checkpoint.Writer()
    state = {"w": np.zeros(3, np.float32)}
    writer.save(str(tmp_path / "ok"), 1, state, {})
    state["w"][:] = 7  # changed (as a donated buffer would be) while the write may still run
    writer.wait()
    back, _ = checkpoint.restore(checkpoint.latest(str(tmp_path / "ok")), state)
    np.testing.assert_array_equal(back["w"], np.zeros(3))
    (tmp_path / "file").write_text("not a folder")
    writer.save(str(tmp_path / "file"), 1, state, {})
    with pytest.raises(OSError):
        writer.wait()
    writer.wait()  # reported once


def test_progress_round_trips_through_json():
    progress = loop.Progress([(50, 0.3), (80, 0.5)], start_time=0.0)
    totals = {"accuracy": np.float32(7.3), "loss": np.float32(12.1), "first_nonfinite": -1}
    progress.record(20, totals, 0.3125)
    progress.record(30, totals, None)
    back = loop.Progress.from_dict(json.loads(json.dumps(progress.to_dict())), start_time=100.0)
    assert back.result(1.0) == progress.result(1.0) and back.rules == progress.rules
    assert back.start_time == 100.0 - progress.wall_time_s


# ---------------------------------------------------------------- SIGKILL on real CIFAR-10

CELL = """
import json, sys
from lfe import worker
from lfe.core import protocol
p = protocol.training_protocol(steps=120, total_steps=120, warmup_steps=20, batch_size=32,
                               eval_every=40, eval_batch_size=1000, checkpoint_every=40)
out = worker.train_cell({"name": "cross_entropy"}, p.to_dict(), "cifar10", sys.argv[1], 0,
                        "train", "val", sys.argv[2])
out.pop("wall_time_s")
print(json.dumps(out))
"""


def _cell(cifar_dir, folder, **kwargs):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", CELL, str(cifar_dir), folder], env=env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_a_cell_killed_after_a_checkpoint_resumes_exactly(cifar_dir, tmp_path):
    """A worker process SIGKILLed mid-run on real CIFAR-10: its rerun resumes from the
    checkpoint and returns exactly the uninterrupted cell's record."""
    folder = str(tmp_path / "checkpoints" / "ce__seed0")
    killed = _cell(cifar_dir, folder)
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(folder, "step_00000040")):
        assert killed.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    resumed = json.loads(_cell(cifar_dir, folder).communicate()[0])
    assert not os.path.exists(folder)
    whole = json.loads(_cell(cifar_dir, "").communicate()[0])
    assert resumed == whole and len(whole["curve"]) == 3 and whole["accuracy"] > 0.15
