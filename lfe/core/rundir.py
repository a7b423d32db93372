"""The run directory of a search: checkpointed state, event log, best genomes.

``state.json`` holds everything the controller knows, as ``{"version", "sha256", "state"}``; the
checksum covers the canonical JSON of ``state``. A run that keeps its clock adds ``elapsed_s``
(seconds its sessions have run so far, ``save_state(elapsed=)``): it lies beside the state, so a
resumed run's state stays exactly an uninterrupted run's. Each save writes a temp file (fsync),
keeps the previous checkpoint as ``state.prev.json`` and renames the new one into place, so a
kill at any moment leaves at least one good checkpoint. Loading verifies the checksum and falls
back to the previous checkpoint with a warning; if neither is good it stops with an error — a
damaged run is never silently restarted.

``events.jsonl`` gets one line per finished evaluation *before* the state that includes it is
saved (flushed and fsynced), so a restart can take a finished evaluation from the log instead of
training it again: no finished evaluation is lost.

``claim`` records a run's config and refuses a rerun with an incompatible one; ``lock`` keeps a
second controller off a run directory while one runs (``.lock``, an OS lock that ends with its
holder).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

from lfe.core import fileio

STATE = "state.json"
PREVIOUS = "state.prev.json"
EVENTS = "events.jsonl"
VERSION = 1


class CorruptRunError(ValueError):
    """No good checkpoint in a run directory that has one."""


def _digest(state) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_state(workdir: str, state: dict, *, elapsed: float | None = None) -> None:
    path = os.path.join(workdir, STATE)
    tmp = os.path.join(workdir, ".state.next.json")
    checkpoint = {"version": VERSION, "sha256": _digest(state), "state": state}
    if elapsed is not None:
        checkpoint["elapsed_s"] = round(float(elapsed), 3)
    fileio.write_json_atomic(tmp, checkpoint, indent=None)
    if os.path.exists(path):
        os.replace(path, os.path.join(workdir, PREVIOUS))
    os.replace(tmp, path)
    _fsync_dir(workdir)


def _fsync_dir(workdir: str) -> None:
    fd = os.open(workdir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_checkpoint(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CorruptRunError(f"{path} is truncated or not JSON ({e})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or "state" not in data:
        raise CorruptRunError(f"{path} is not an lfe state checkpoint (version {VERSION})")
    if _digest(data["state"]) != data.get("sha256"):
        raise CorruptRunError(f"{path} fails its checksum")
    return data


def load_state(workdir: str) -> dict | None:
    """The newest good checkpoint's state, or None for a fresh run directory."""
    checkpoint = load_checkpoint(workdir)
    return None if checkpoint is None else checkpoint["state"]


def elapsed_of(checkpoint: dict | None) -> float:
    """The seconds a checkpoint's run had run (0 when it kept no clock, or none was saved)."""
    value = (checkpoint or {}).get("elapsed_s", 0.0)
    return float(value) if isinstance(value, int | float) and value >= 0 else 0.0


def load_checkpoint(workdir: str) -> dict | None:
    """The newest good checkpoint (``{"version", "sha256", "state"}`` and, when kept,
    ``elapsed_s``), or None for a fresh run directory."""
    paths = [os.path.join(workdir, name) for name in (STATE, PREVIOUS)]
    if not any(os.path.exists(p) for p in paths):
        return None
    errors = []
    for path in paths:
        if not os.path.exists(path):
            continue
        try:
            checkpoint = _read_checkpoint(path)
        except CorruptRunError as e:
            errors.append(str(e))
            continue
        if errors:
            print(f"warning: {errors[0]}; resuming from the previous checkpoint {path}",
                  file=sys.stderr)
        return checkpoint
    raise CorruptRunError(f"no good checkpoint in {workdir}: {'; '.join(errors)} "
                          "(refusing to restart over a damaged run; use a new --workdir)")


def append_event(workdir: str, event: dict) -> None:
    with open(os.path.join(workdir, EVENTS), "a") as f:
        f.write(json.dumps(event, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def repair_events(workdir: str) -> None:
    """Cuts a last line left incomplete by a kill, so the next event starts on its own line."""
    path = os.path.join(workdir, EVENTS)
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_events(workdir: str) -> list[dict]:
    """Every complete event line (a line cut short by a kill is ignored)."""
    path = os.path.join(workdir, EVENTS)
    if not os.path.exists(path):
        return []
    events = []
    with open(path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


# --------------------------------------------------------------------------- the run's config

CONFIG = "config.json"


def to_plain(value):
    """A ConfigDict (or nested dicts/lists/tuples of them, numpy scalars) as plain JSON data."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value


def _flat(value, prefix: str = "") -> dict[str, object]:
    """``{"a.b.c": leaf}`` for nested dicts (lists are leaves)."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: value}


def _under(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def changed_keys(saved: dict, now: dict, *, fixed=None, may_change=(),
                 absent=None) -> list[str]:
    """The dotted key paths whose values differ between two plain configs: only those under
    ``fixed`` when it is given, never those under ``may_change``. ``absent``: dotted keys newer
    than the saved config, and the value an older run without them ran with."""
    a, b = _flat(to_plain(saved)), _flat(to_plain(now))
    a = {**(absent or {}), **a}
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if fixed is not None:
        changed = [k for k in changed if _under(k, fixed)]
    return [k for k in changed if not _under(k, may_change)]


def claim(workdir: str, config, *, fixed=None, may_change=(), absent=None) -> None:
    """Records ``config`` in ``workdir/config.json``. A rerun whose config differs from the
    recorded one where it matters (``fixed`` keys, or any key not in ``may_change``) is refused
    with one line naming the changed keys (and, for a key the recorded config lacks, the
    ``absent`` value its run had), each with its recorded and its new value
    (``describe_changes``): its results would mix two experiments."""
    path = os.path.join(workdir, CONFIG)
    mine = to_plain(config)
    if os.path.exists(path):
        saved = fileio.read_json(path)
        changed = changed_keys(saved, mine, fixed=fixed, may_change=may_change, absent=absent)
        if changed:
            raise ValueError(f"{workdir} holds a run with a different config "
                             f"({describe_changes(saved, mine, changed, absent)}); use a new "
                             "--workdir or the same config")
    fileio.write_json_atomic(path, mine)


def describe_changes(saved: dict, now: dict, keys: list[str], absent=None,
                     width: int = 60) -> str:
    """``key: old → new`` for each dotted key of ``keys``: ``(none)`` for a side that lacks it,
    and for a key newer than the saved config the ``absent`` value its run had; each value's
    repr cut to ``width`` characters."""
    old, new = _flat(to_plain(saved)), _flat(to_plain(now))

    def shown(flat: dict, key: str) -> str:
        if key not in flat:
            return "(none)"
        text = repr(flat[key])
        return text if len(text) <= width else text[: width - 3] + "..."

    parts = []
    for key in keys:
        before = shown(old, key)
        if key not in old and absent and key in absent:
            before = f"{absent[key]!r} (this run, before the setting existed)"
        parts.append(f"{key}: {before} → {shown(new, key)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- the run's lock

LOCK = ".lock"
_held: dict[str, list] = {}  # real path of a locked directory -> [fd, depth] (this process)
_held_guard = threading.Lock()


class BusyRunError(ValueError):
    """Another process holds the run directory's lock."""


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it: ``pid N on host H since T``."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        info = json.loads(text)
        return f"pid {info['pid']} on host {info['host']} since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """Holds ``<workdir>/.lock`` (``fcntl.flock``, exclusive) for the ``with`` block: one
    controller per run directory. A second process is refused at once with one line naming the
    directory and the holder (``BusyRunError``, a ValueError); the operating system drops the
    lock when its holder ends, however it ends (``kill -9`` included), so a rerun never waits
    for a stale lock. The file holds the holder's pid, host and start time (JSON, for the
    message; the lock itself is the flock). Nested use in one process is allowed (a pipeline's
    stages). ``workdir`` must exist."""
    key = os.path.realpath(workdir)
    with _held_guard:
        if key not in _held:
            _held[key] = [_acquire(workdir), 0]
        _held[key][1] += 1
    try:
        yield
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if not _held[key][1]:
                fd = _held.pop(key)[0]
                os.ftruncate(fd, 0)  # no holder recorded; closing the file drops the flock
                os.close(fd)


def _acquire(workdir: str) -> int:
    fd = os.open(os.path.join(workdir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)  # not inherited
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise BusyRunError(f"{workdir} is in use by another lfe run ({holder}); wait for it to "
                           "finish or stop it, or use another --workdir") from None
    except OSError as e:  # a file system without flock (some network mounts)
        print(f"warning: cannot lock {workdir} ({e.strerror}); make sure no other run uses it",
              file=sys.stderr)
        return fd
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return fd
