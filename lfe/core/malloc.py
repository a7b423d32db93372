"""glibc malloc settings for XLA:CPU training processes.

XLA:CPU allocates each step's buffers (a ConvNet batch of 128 images has several activations of
a few MB) with ``malloc``. With glibc's defaults, blocks above the dynamic mmap threshold get a
fresh ``mmap`` and are unmapped when freed, and the heap's free top is returned to the kernel,
so every training step page-faults its buffers in again: kernel time was 20% of a single-core
ConvNet run here. Raising the mmap and trim thresholds keeps those pages in the process.
Measured (BENCHMARKS.md §3): the ConvNet step on one pinned core 11.2 → 14.1 steps/s, on two
cores 16.0 → 19–21 (XLA's convolution).

glibc reads these settings only when a process starts (``GLIBC_TUNABLES``), so:

- ``python -m lfe.main`` re-executes itself once with them set (``reexec``);
- the process-pool executor sets them in its environment before it spawns workers, and Ray
  tasks start with them (`lfe.executors.ray_executor.task_env`);
- code importing ``lfe`` as a library can start Python with ``env(os.environ)``.

Set ``LFE_MALLOC_DEFAULT=1`` to keep glibc's defaults. Elsewhere than glibc (macOS) this is a
no-op. The cost: memory a process freed stays in it (peak RSS is what it was, see §6).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Mapping

TUNABLES = {
    "glibc.malloc.mmap_threshold": "4294967296",
    "glibc.malloc.trim_threshold": "4294967296",
    "glibc.malloc.top_pad": "268435456",
}
OPT_OUT = "LFE_MALLOC_DEFAULT"


@functools.cache
def _glibc() -> bool:
    # platform.libc_ver reads the interpreter binary: once per process, not per conv layer
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def applies(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the settings apply here: Linux glibc, and no opt-out."""
    environ = os.environ if environ is None else environ
    return _glibc() and environ.get(OPT_OUT, "") in ("", "0")


def _parse(value: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in value.split(":") if "=" in item)
    return {k: v for k, v in pairs}


def env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with TUNABLES merged into ``GLIBC_TUNABLES`` (keys the user set win)."""
    out = dict(environ)
    if not applies(environ):
        return out
    merged = {**TUNABLES, **_parse(out.get("GLIBC_TUNABLES", ""))}
    out["GLIBC_TUNABLES"] = ":".join(f"{k}={v}" for k, v in merged.items())
    return out


def tuned(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a process started with ``environ`` runs with these settings (or a user's own)."""
    environ = os.environ if environ is None else environ
    present = _parse(environ.get("GLIBC_TUNABLES", ""))
    return applies(environ) and all(k in present for k in TUNABLES)


def reexec(orig_argv: list[str] | None = None) -> None:
    """Replaces this process with itself started under ``env(os.environ)``, once (call it first
    thing in ``__main__``). Returns when nothing needs doing."""
    if not applies() or tuned():
        return
    argv = list(sys.orig_argv if orig_argv is None else orig_argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env(os.environ))
