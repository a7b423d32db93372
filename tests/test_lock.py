"""One controller per run directory: ``lfe.core.rundir.lock`` refuses a second process at once
with one line naming the directory and the holder, and dies with its holder (``kill -9``)."""

import os
import socket
import subprocess
import sys

import pytest

from lfe.core import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = ("import sys, time\nfrom lfe.core import rundir\n"
        "with rundir.lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(600)\n")


@pytest.fixture
def holder(tmp_path):
    """A process holding the lock on ``tmp_path`` (killed at the end)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_with_the_holder_named(tmp_path, holder):
    with pytest.raises(rundir.BusyRunError) as refused:
        with rundir.lock(str(tmp_path)):
            pass
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path} is in use by another lfe run (pid {holder.pid} on "
                              f"host {socket.gethostname()} since ")
    assert message.endswith("); wait for it to finish or stop it, or use another --workdir")


def test_the_lock_dies_with_its_holder(tmp_path, holder):
    holder.kill()  # kill -9: no clean-up runs
    holder.wait()
    with rundir.lock(str(tmp_path)):  # taken at once
        assert f'"pid": {os.getpid()}' in (tmp_path / rundir.LOCK).read_text()
    assert (tmp_path / rundir.LOCK).read_text() == ""  # released: no holder recorded


def test_nested_use_in_one_process_and_release(tmp_path):
    with rundir.lock(str(tmp_path)):
        with rundir.lock(str(tmp_path / ".." / tmp_path.name)):  # the same directory
            pass
        check = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"),
                                str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
        assert check.returncode == 1 and "BusyRunError" in check.stderr  # still held
    check = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"),
                            str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout == "locked\n"  # released after the outer


def test_a_second_controller_is_one_line_and_exit_status_2(tmp_path, holder):
    run = subprocess.run([sys.executable, "-m", "tests.drive",
                          "--task=evaluate=tests.fake_fitness:evaluate",
                          "--config=configs/quickstart.py:runlocal", f"--workdir={tmp_path}",
                          "--config.executor=inprocess"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert run.returncode == 2
    [line] = run.stderr.splitlines()
    assert line.startswith(f"lfe: error: {tmp_path} is in use by another lfe run "
                           f"(pid {holder.pid} on host {socket.gethostname()} since ")
    assert line.endswith("wait for it to finish or stop it, or use another --workdir")
    assert not (tmp_path / "config.json").exists()  # refused before writing anything
