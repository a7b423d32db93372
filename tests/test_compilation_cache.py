"""lfe.training.compilation_cache: where the persistent cache lives, and that a second process
loads what the first compiled."""

import json
import os
import subprocess
import sys

from lfe.training import compilation_cache as cc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_directory_from_the_environment(tmp_path):
    assert cc.directory({cc.ENV: str(tmp_path)}) == str(tmp_path)
    assert cc.directory({cc.ENV: "~/x"}) == os.path.join(os.path.expanduser("~"), "x")
    for off in ("off", "OFF", "none", "0"):
        assert cc.directory({cc.ENV: off}) == ""
    assert cc.directory({"XDG_CACHE_HOME": "/c"}) == "/c/lfe/jax"
    assert cc.directory({"HOME": os.path.expanduser("~")}).endswith(os.path.join(".cache", "lfe",
                                                                                  "jax"))


def test_enable_respects_off_and_jax_own_setting(tmp_path):
    assert cc.enable({cc.ENV: "off"}) == ""
    assert cc.enable({"JAX_COMPILATION_CACHE_DIR": "/elsewhere"}) == "/elsewhere"
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert cc.enable({cc.ENV: str(blocked / "sub")}) == ""  # cannot be created: no cache


CHILD = """
import json, jax, jax.numpy as jnp
from lfe.training import compilation_cache
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None)
path = compilation_cache.enable()
out = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + 1.0)(jnp.ones((64, 64)))
print(json.dumps({"path": path, "hits": len(hits), "sum": float(out.sum())}))
"""


def test_a_second_process_loads_the_executable_the_first_compiled(tmp_path):
    env = {**os.environ, cc.ENV: str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)

    def child():
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    first, second = child(), child()
    assert first["path"] == second["path"] == str(tmp_path / "cache")
    assert first["hits"] == 0 and second["hits"] >= 1
    assert first["sum"] == second["sum"]
    assert os.listdir(tmp_path / "cache")
