import os
import subprocess
import sys

import pytest

from lfe.core import malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_glibc = pytest.mark.skipif(not malloc.applies({}), reason="glibc only (Linux)")


@needs_glibc
def test_env_merges_tunables_and_keeps_the_users():
    out = malloc.env({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.top_pad=1:glibc.x.y=2"})
    assert out["PATH"] == "/bin"
    pairs = dict(item.split("=") for item in out["GLIBC_TUNABLES"].split(":"))
    assert pairs["glibc.malloc.top_pad"] == "1" and pairs["glibc.x.y"] == "2"  # the user's win
    assert pairs["glibc.malloc.mmap_threshold"] == malloc.TUNABLES["glibc.malloc.mmap_threshold"]
    assert malloc.tuned(out) and not malloc.tuned({"GLIBC_TUNABLES": "glibc.x.y=2"})


def test_opt_out_leaves_the_environment_alone():
    environ = {malloc.OPT_OUT: "1", "GLIBC_TUNABLES": "glibc.x.y=2"}
    assert malloc.env(environ) == environ
    assert not malloc.tuned(environ) and not malloc.applies(environ)


def _run(code: str, *args: str, **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(PYTHONPATH=ROOT, **extra)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=120)


REEXEC = ("import os, sys; print('start', flush=True); from lfe.core import malloc; "
          "malloc.reexec(); print(os.environ.get('GLIBC_TUNABLES', '')); print(sys.argv[1:])")


@needs_glibc
def test_reexec_restarts_once_with_the_tunables_and_the_same_arguments():
    out = _run(REEXEC, "--config=x.py", "a b")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == lines[1] == "start" and len(lines) == 4  # exactly one re-execution
    assert malloc.tuned({"GLIBC_TUNABLES": lines[2]})
    assert lines[3] == "['--config=x.py', 'a b']"


def test_reexec_respects_the_opt_out():
    out = _run(REEXEC, "z", **{malloc.OPT_OUT: "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["start", "", "['z']"]
