"""Small file helpers shared by every job that writes results: atomic JSON, provenance."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile


def write_json_atomic(path: str, obj, indent: int | None = 1) -> None:
    """Writes ``obj`` as JSON so that ``path`` is always either the old or the new file.

    Temp file in the same directory, flush + fsync, then rename over ``path`` (atomic on POSIX).
    A crash or SIGKILL at any moment never leaves a truncated ``path`` behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str):
    """Reads a JSON file; a corrupt one raises a one-line ValueError naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it may be truncated") from None


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The code's git revision (with ``+dirty`` for uncommitted changes), or "unknown"."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


OFF = ("off", "none", "0", "false")  # values of a cache's variable that turn it off


def user_cache_path(variable: str, name: str, environ=os.environ) -> str:
    """Where a per-user cache lives ("" = turned off): ``$variable`` (a path, or one of ``OFF``),
    else ``name`` under ``$XDG_CACHE_HOME/lfe`` (``~/.cache/lfe``)."""
    value = environ.get(variable, "").strip()
    if value.lower() in OFF:
        return ""
    if value:
        return os.path.abspath(os.path.expanduser(value))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lfe", name)

