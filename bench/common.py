"""Shared helpers for ``bench/``: the machine description, markdown tables, BENCHMARKS.md sections.

Each benchmark owns one section of BENCHMARKS.md, delimited by ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; writing it again replaces it in place and leaves the others alone. The
file's header (between ``<!-- machine -->`` markers) is refreshed with the current machine.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")
TITLE = "# Benchmarks"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(package: str) -> str:
    """An installed package's version, without importing it (JAX stays out of the process)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    """Short commit hash, with ``+dirty`` when tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout
    rev = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def machine() -> dict[str, str]:
    """What a reader needs to compare numbers: CPU, cores, memory, versions, revision, date."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable)",
        "ram": f"{psutil.virtual_memory().total / 2 ** 30:.1f} GiB",
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "jax": version("jax"),
        "revision": git_revision(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average (1 min)": f"{load:.1f}",
    }


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; floats are printed with 3 significant digits."""
    def cell(x):
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
        return str(x)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def command() -> str:
    """The command that is running, as typed (interpreter shown as ``python``)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return shlex.join(["python"] + argv[1:])


def header(info: dict[str, str]) -> str:
    rows = "\n".join(f"- {k}: {v}" for k, v in info.items())
    return (f"<!-- machine -->\nLast written on this machine (each section also names its own "
            f"revision and date):\n\n{rows}\n<!-- /machine -->")


def write_section(name: str, title: str, body: str, *, path: str = BENCHMARKS,
                  info: dict[str, str] | None = None) -> str:
    """Replaces (or appends) section ``name`` of BENCHMARKS.md; returns the section text."""
    info = info or machine()
    section = (f"<!-- bench:{name} -->\n## {title}\n\n"
               f"Command: `{command()}` (revision {info['revision']}, {info['date']}, "
               f"load average {info['load average (1 min)']})\n\n{body.strip()}\n"
               f"<!-- /bench:{name} -->")
    text = open(path).read() if os.path.exists(path) else f"{TITLE}\n\n{header(info)}\n"
    machine_block = re.compile(r"<!-- machine -->.*?<!-- /machine -->", re.S)
    text = (machine_block.sub(lambda _: header(info), text, count=1) if machine_block.search(text)
            else text.replace(TITLE, f"{TITLE}\n\n{header(info)}", 1))
    block = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->",
                       re.S)
    text = (block.sub(lambda _: section, text, count=1) if block.search(text)
            else text.rstrip("\n") + "\n\n" + section + "\n")
    with open(path, "w") as f:
        f.write(text)
    return section


def spread(values: Sequence[float]) -> str:
    """``median (min–max)`` of repeated measurements."""
    v = sorted(values)
    mid = v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
    return f"{mid:.3g} ({v[0]:.3g}–{v[-1]:.3g})"
