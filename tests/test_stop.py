"""Stopping a controller: SIGINT or SIGTERM end a run with one line and a rerun finishes it; a
second signal ends it at once; the workers of a controller killed by ``kill -9`` do not outlive
it. Controllers run as subprocesses (``tests.drive``) with a slow fake evaluation."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lfe.core import rundir, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLOW = "tests.slow_tasks:evaluate"
OVERRIDES = {"executor": "pool", "workers": 2, "initial_population": 8, "population_size": 4,
             "tournament_size": 3, "max_iterations": 12, "plot_every": 0}


def cli(workdir, **changes):
    args = {**OVERRIDES, **changes}
    return [sys.executable, "-m", "tests.drive", f"--task=evaluate={SLOW}",
            "--config=configs/quickstart.py:runlocal", f"--workdir={workdir}",
            *[f"--config.{k}={v}" for k, v in args.items()]]


def env(tmp_path, sleep_s):
    os.makedirs(tmp_path / "pids", exist_ok=True)
    return dict(os.environ, JAX_PLATFORMS="cpu", LFE_TEST_SLEEP_S=str(sleep_s),
                LFE_TEST_PID_DIR=str(tmp_path / "pids"))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def until(predicate, timeout_s: float, proc=None) -> float:
    """Seconds until ``predicate()`` holds (fails after ``timeout_s``, or when ``proc`` ends)."""
    start = time.monotonic()
    while not predicate():
        assert proc is None or proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.05)
    return time.monotonic() - start


def told(workdir) -> int:
    return len(rundir.read_events(str(workdir)))


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_with_one_line_and_the_rerun_finishes(tmp_path, sig):
    work, e = tmp_path / "run", env(tmp_path, 0.3)
    proc = subprocess.Popen(cli(work), cwd=ROOT, env=e, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    until(lambda: told(work) >= 4, 120, proc)
    workers = descendants(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 128 + sig, err
    assert err.splitlines()[-1] == stop.MESSAGE and "Traceback" not in err, err
    until(lambda: not any(alive(p) for p in workers), 10)  # the pool's workers went with it
    at_stop = rundir.load_state(str(work))
    assert at_stop["iterations_done"] < 12
    done = subprocess.run(cli(work), cwd=ROOT, env=e, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    state = rundir.load_state(str(work))
    assert state["iterations_done"] == 12 and not state["in_flight"]
    ids = [event["id"] for event in rundir.read_events(str(work))]
    assert sorted(ids) == list(range(state["next_id"]))  # each candidate told once


def test_a_second_signal_ends_the_process_at_once(tmp_path):
    """The first signal raises ``Stopped``; while its clean-up runs, a second one ends it."""
    script = ("import time\nfrom lfe.core import stop\nstop.install()\n"
              "try:\n    print('ready', flush=True)\n    time.sleep(60)\n"
              "except stop.Stopped:\n    print('cleaning up', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline() == "cleaning up\n"
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == -signal.SIGINT
    assert time.monotonic() - start < 5


def _hanging(cleanup_s: float) -> str:
    """A process whose clean-up after the first signal takes ``cleanup_s`` seconds."""
    return ("import sys, time\nfrom lfe.core import stop\nstop.install()\n"
            "try:\n    print('ready', flush=True)\n    time.sleep(60)\n"
            "except stop.Stopped:\n    print('cleaning up', flush=True)\n"
            f"    time.sleep({cleanup_s})\n    print(stop.MESSAGE, file=sys.stderr)\n"
            "    sys.exit(stop.exit_status(stop.received()))\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_that_hangs_in_its_clean_up_ends_after_the_grace_period(sig):
    """A clean-up stuck for good (a lock an interrupted library call left held) does not keep a
    stopped controller alive: the watchdog ends it ``LFE_STOP_GRACE_S`` after the signal, with
    the stop's exit status and line."""
    proc = subprocess.Popen([sys.executable, "-c", _hanging(600)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, LFE_STOP_GRACE_S="2"))
    assert proc.stdout.readline() == "ready\n"
    start = time.monotonic()
    proc.send_signal(sig)
    assert proc.stdout.readline() == "cleaning up\n"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert 2 <= time.monotonic() - start < 30
    assert err.splitlines() == [
        "closing took over 2 s (LFE_STOP_GRACE_S); ended without waiting for it", stop.MESSAGE]


def test_a_clean_up_within_the_grace_period_is_not_cut_short():
    """The watchdog only acts on a stop that outlives its grace; the process's own exit, with
    its own line, comes first otherwise."""
    proc = subprocess.Popen([sys.executable, "-c", _hanging(1)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, LFE_STOP_GRACE_S="20"))
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.splitlines() == [stop.MESSAGE]


@pytest.mark.parametrize("raw", ["soon", "0", "-5"])
def test_a_bad_grace_period_is_one_line_naming_it(tmp_path, raw):
    done = subprocess.run(cli(tmp_path / "run"), cwd=ROOT, capture_output=True, text=True,
                          env=dict(env(tmp_path, 0.3), LFE_STOP_GRACE_S=raw), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"lfe: error: LFE_STOP_GRACE_S='{raw}'")
    assert not os.path.exists(tmp_path / "run")  # refused before anything was written


def test_pool_workers_exit_when_the_controller_is_killed(tmp_path):
    """``kill -9`` of a pool controller: its workers (and multiprocessing's resource tracker)
    are gone within seconds, while the evaluations they were running would take minutes."""
    work, e = tmp_path / "run", env(tmp_path, 300)
    proc = subprocess.Popen(cli(work), cwd=ROOT, env=e, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    until(lambda: len(os.listdir(tmp_path / "pids")) == 2, 120, proc)  # both workers training
    children = descendants(proc.pid)
    workers = {int(p) for p in os.listdir(tmp_path / "pids")}
    assert workers <= children
    proc.kill()
    proc.wait()
    seconds = until(lambda: not any(alive(p) for p in children), 10)
    print(f"{len(children)} processes of the killed controller gone after {seconds:.1f} s")


@pytest.mark.slow
def test_a_local_ray_ends_with_its_killed_controller(tmp_path):
    """``kill -9`` of a controller that started its own Ray (``ray.address=local``): Ray's
    processes and task workers are gone within seconds (lfe.executors.reaper ends the agents
    Ray leaves for a minute)."""
    pytest.importorskip("ray")
    work, e = tmp_path / "run", env(tmp_path, 300)
    proc = subprocess.Popen(cli(work, executor="ray", **{"ray.address": "local",
                                                         "ray.num_gpus": 0}),
                            cwd=ROOT, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    until(lambda: len(os.listdir(tmp_path / "pids")) == 2, 180, proc)  # two tasks training
    time.sleep(1.5)  # the reaper has seen every process
    children = descendants(proc.pid)
    assert {int(p) for p in os.listdir(tmp_path / "pids")} <= children
    proc.kill()
    proc.wait()
    seconds = until(lambda: not any(alive(p) for p in children), 10)
    print(f"{len(children)} processes of the killed Ray controller gone after {seconds:.1f} s")
