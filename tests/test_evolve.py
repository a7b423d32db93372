"""The evolve mode end to end with a fast fake fitness: run directory, resume after kill -9."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from configs import quickstart
from lfe import main, worker
from lfe.core import archive as archive_lib
from lfe.core import fileio, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = "tests.fake_fitness:evaluate"
OVERRIDES = {"executor": "inprocess", "initial_population": 8,
             "population_size": 4, "tournament_size": 3, "max_iterations": 12, "plot_every": 5}


@pytest.fixture(autouse=True)
def fake_fitness():
    """Every evaluation in this module is the fast fake (lfe.worker's test seam)."""
    with worker.substitute(evaluate=FAKE):
        yield


def small_config():
    c = quickstart.get_config("runlocal")
    for k, v in OVERRIDES.items():
        c[k] = v
    return c


def cli(workdir, *extra):
    args = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
    return [sys.executable, "-m", "tests.drive", f"--task=evaluate={FAKE}",
            "--config=configs/quickstart.py:runlocal", f"--workdir={workdir}", *args, *extra]


def told_count(events):
    try:
        with open(events) as f:
            return sum(1 for line in f if line.endswith("\n"))
    except FileNotFoundError:
        return 0


def final_state(workdir):
    return rundir.load_state(str(workdir))


def test_evolve_writes_a_complete_run_directory(tmp_path, cifar_dir):
    c = small_config()
    c.fitness.data_dir = str(cifar_dir)
    s = main.dispatch(c, str(tmp_path))
    assert s["iterations"] == 12
    files = set(os.listdir(tmp_path))
    assert {"config.json", "state.json", "events.jsonl", "best.json", "evolution.png",
            "best_phenotypes.png", "best_phenotypes_zoom.png", "tensorboard"} <= files
    events = rundir.read_events(str(tmp_path))
    assert len(events) == s["evaluated"] == len({e["id"] for e in events})
    assert {e["git_revision"] for e in events} == {fileio.git_revision()}  # the code of each
    best = json.load(open(tmp_path / "best.json"))
    assert best and best == sorted(best, key=lambda b: -b["fitness"])
    assert all("equation" in b and "genome" in b for b in best)
    # rerunning a finished run changes nothing
    before = final_state(tmp_path)
    main.dispatch(c, str(tmp_path))
    assert final_state(tmp_path) == before


def test_plot_every_0_draws_no_figures(tmp_path):
    c = small_config()
    c.plot_every, c.max_iterations = 0, 2
    main.dispatch(c, str(tmp_path))
    files = set(os.listdir(tmp_path))
    assert {"state.json", "events.jsonl", "best.json"} <= files
    assert not {f for f in files if f.endswith(".png")}


def test_changed_config_is_refused(tmp_path, cifar_dir):
    c = small_config()
    c.fitness.data_dir = str(cifar_dir)
    c.max_iterations = 1
    main.dispatch(c, str(tmp_path))
    c.ce_band, c.top_k = (0.3, 0.2, 0.1), 3  # outputs only: a resumed run may set them
    main.dispatch(c, str(tmp_path))
    assert fileio.read_json(tmp_path / "config.json")["ce_band"] == [0.3, 0.2, 0.1]
    c.tournament_size = 2
    with pytest.raises(ValueError, match="different config .*tournament_size"):
        main.dispatch(c, str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--config.rungs=(50,)", "--config.rung_fraction=0.5")],
                         ids=["paper", "rungs"])
def test_kill_9_and_resume_ends_in_the_same_state(tmp_path, cifar_dir, extra):
    """Also with rungs (issue #20): a child paused at a rung when the controller dies goes on
    from the rung after the restart, and the run ends as an uninterrupted one."""
    env = dict(os.environ, LFE_DATA_DIR=str(cifar_dir), JAX_PLATFORMS="cpu")
    straight = tmp_path / "straight"
    subprocess.run(cli(straight, *extra), cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=600)
    killed = tmp_path / "killed"
    events = killed / "events.jsonl"
    rng = random.Random(0)
    kills = 0
    # Kill on progress, not on a clock: each attempt is killed soon after the run has told
    # its target number of evaluations (of 20), so a fast machine is killed mid-run too.
    for target in (2, 7, 13, None):
        proc = subprocess.Popen(cli(killed, *extra), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        if target is None:
            proc.wait(timeout=600)
            break
        deadline = time.monotonic() + 600
        while proc.poll() is None and told_count(events) < target:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # land anywhere in the next evaluation or write
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    assert kills >= 1
    assert final_state(killed) == final_state(straight)
    told = [(e["id"], e["record"].get("rung")) for e in rundir.read_events(str(killed))
            if e["record"]["status"] != "paused"]
    paused = [(e["id"], e["record"]["rung"]) for e in rundir.read_events(str(killed))
              if e["record"]["status"] == "paused"]
    assert len(told) == len(set(told)) and len(paused) == len(set(paused))  # none told twice
    assert bool(paused) == bool(extra)


def test_evolve_configs_and_controller_modules_do_not_import_jax():
    """`python -m lfe.main --config=configs/<evolve>.py` builds its config in the controller
    process, which never imports JAX: configs and controller modules must not pull it in."""
    import subprocess
    import sys

    code = (
        "import sys, lfe.main, lfe.experiments.evolve, lfe.core.evolution, lfe.core.integrity, "
        "lfe.executors, lfe.worker, lfe.core.protocol, lfe.core.rundir\n"
        "import configs.quickstart as q, configs.surrogate as s, configs.cpu_evolution as c\n"
        "q.get_config(); q.get_config('runlocal'); s.get_config(); s.get_config('convnet')\n"
        "c.get_config(); c.get_config('runlocal')\n"
        "heavy = sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules)\n"
        "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_committed_cpu_evolution_resumes_and_reports(tmp_path, cifar_dir):
    """A run directory written before the typed state (results/cpu_evolution/run) loads,
    resumes with the command that made it (finished: nothing is trained again) and reports."""
    import shutil

    from configs import cpu_evolution
    from configs import report as report_config
    from lfe.core.state import State

    source = os.path.join(ROOT, "results", "cpu_evolution", "run")
    work = tmp_path / "run"
    shutil.copytree(source, work)
    saved = rundir.load_state(str(work))
    state = State.from_dict(saved)
    assert state.to_dict() == saved  # the same JSON, field for field
    assert len(archive_lib.rebuild(state)) == len(state.evaluated) == 114
    c = cpu_evolution.get_config()
    c.ce_band = tuple(json.load(open(work / "config.json"))["ce_band"])
    c.data_dir = str(cifar_dir)
    c.novelty, c.fitness.on_diverged = "archive", "failed"  # the rules it ran with (README)
    s = main.dispatch(c, str(work))
    assert s["evaluated"] == 114 and s["iterations"] == 30  # resumed, nothing retrained
    assert len(rundir.read_events(str(work))) == 114
    assert {"best.json", "evolution.png", "best_phenotypes.png"} <= set(os.listdir(work))
    files = main.dispatch(report_config.get_config(), str(work))
    assert any(f.endswith("run_figure4.png") for f in files)


def test_first_evaluation_prints_an_eta_and_writes_best_json_and_figures(tmp_path, capsys,
                                                                          monkeypatch):
    from lfe.experiments import evolve

    seen = []
    tell = evolve._Run.tell

    def spy(self, *args, **kwargs):
        tell(self, *args, **kwargs)
        seen.append({f for f in ("best.json", "evolution.png", "best_phenotypes.png")
                     if os.path.exists(os.path.join(self.workdir, f))})

    monkeypatch.setattr(evolve._Run, "tell", spy)
    c = small_config()
    c.max_iterations, c.plot_every = 2, 1000  # never due: the first evaluation draws anyway
    main.dispatch(c, str(tmp_path))
    assert seen[0] == {"best.json", "evolution.png", "best_phenotypes.png"}
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert lines[0].startswith("[initial 1/8] cand ") and " ETA " in lines[0]
    assert all(" ETA " in x for x in lines[:8])  # all through the initial population
    assert any(x.startswith("[iter 1/2] cand ") for x in lines)


def test_elapsed_adds_up_over_a_resumed_run(tmp_path, capsys):
    c = small_config()
    c.max_iterations, c.plot_every = 2, 0
    start = time.time()
    main.dispatch(c, str(tmp_path))
    first = fileio.read_json(tmp_path / "state.json")["elapsed_s"]
    assert 0 < first <= time.time() - start
    c.max_iterations = 4  # resumed: the clock goes on from the first session's
    start = time.time()
    main.dispatch(c, str(tmp_path))
    second = fileio.read_json(tmp_path / "state.json")["elapsed_s"]
    assert first < second <= first + (time.time() - start)
    out = capsys.readouterr().out
    assert "  elapsed: " in out and "(all sessions)" in out
    assert "best: " in out and "%" in out.split("  best: ")[-1].splitlines()[0]


def test_tensorboard_is_rebuilt_with_every_step_after_a_crash(tmp_path):
    from lfe.core import metrics

    c = small_config()
    c.max_iterations, c.plot_every = 3, 0
    main.dispatch(c, str(tmp_path))
    logdir = tmp_path / "tensorboard"
    live = metrics.read_scalars(str(logdir))
    n = len(rundir.read_events(str(tmp_path)))
    assert [step for step, _, _ in live["evaluated"]] == list(range(1, n + 1))
    main.dispatch(c, str(tmp_path))  # a finished run, rebuilt from the state: the same steps
    assert {k: [(s, v) for s, v, _ in rows] for k, rows in metrics.read_scalars(
        str(logdir)).items()} == {k: [(s, v) for s, v, _ in rows] for k, rows in live.items()}
    # a kill -9 before the writer flushed: the event file is empty, steps 1..n are gone
    for f in metrics.event_files(str(logdir)):
        open(f, "w").close()
    c.max_iterations = 6
    main.dispatch(c, str(tmp_path))
    rebuilt = metrics.read_scalars(str(logdir))
    n = len(rundir.read_events(str(tmp_path)))
    assert [step for step, _, _ in rebuilt["evaluated"]] == list(range(1, n + 1))
    assert [s for s, _, _ in rebuilt["iterations"]][-1] == n
    assert rebuilt["iterations"][-1][1] == 6
    times = {e["id"]: e["time"] for e in rundir.read_events(str(tmp_path))}
    assert rebuilt["evaluated"][0][2] == pytest.approx(min(times.values()), abs=1e-3)


def test_a_rescoring_run_shows_its_phase_and_rebuilds_the_same_tensorboard(tmp_path, capsys):
    from lfe.core import metrics

    c = small_config()
    c.max_iterations, c.plot_every, c.rescore_initial = 2, 0, True
    main.dispatch(c, str(tmp_path))
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    kinds = [x.split()[0] for x in lines]
    assert kinds.count("[initial") == 8 and kinds.count("[rescore") == 4
    assert lines[8].startswith("[rescore 1/4] cand ") and " ETA " in lines[8]
    live = metrics.read_scalars(str(tmp_path / "tensorboard"))
    main.dispatch(c, str(tmp_path))  # rebuilt from the state: the same steps and values
    rebuilt = metrics.read_scalars(str(tmp_path / "tensorboard"))
    assert {k: [(s, v) for s, v, _ in rows] for k, rows in rebuilt.items()} == \
        {k: [(s, v) for s, v, _ in rows] for k, rows in live.items()}
    assert rebuilt["population/best"][0][0] == 12  # from the start of evolution on
