"""Ends the processes a controller started once the controller is gone, however it ended.

Why: a Ray started by the controller itself (``ray.init()`` without a cluster to join) ties most
of its processes to the controller (kernel fate-sharing: ``prctl(PR_SET_PDEATHSIG)`` on the GCS
server, the raylet and the monitors it starts), and the raylet's workers end when their raylet
does. Measured on this repository's machine (Ray 2.60, ``kill -9`` of a controller with two
tasks running): GCS, raylet and monitors gone in 0.2 s, the two task workers in 2.5 s, but the
raylet's dashboard and runtime-env agents lived on for 62 s (each reports its raylet's death to
the GCS, which is gone, with a 60 s timeout). This watcher closes that gap.

``start(pid)`` runs this file (``python -I reaper.py <pid>``) in its own session (a Ctrl-C in the
terminal does not reach it). It records the descendants of ``pid`` every ``PERIOD_S`` seconds
(from ``/proc``: Linux only; elsewhere nothing is started) and, once ``pid`` is gone, kills
those still running (SIGKILL, matched by pid and start time, so a reused pid is never hit),
then exits. The executor stops it when it closes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PERIOD_S = 1.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def descendants(pid: int) -> dict[int, int]:
    """Every live process below ``pid``: pid -> start time."""
    stats = {p: _stat(p) for p in map(int, filter(str.isdigit, os.listdir("/proc")))}
    stats = {p: s for p, s in stats.items() if s is not None}
    found, frontier = {}, {pid}
    while frontier:
        frontier = {p for p, (parent, _) in stats.items() if parent in frontier} - set(found)
        found |= {p: stats[p][1] for p in frontier}
    return found


def watch(pid: int, period_s: float = PERIOD_S) -> None:
    """Records ``pid``'s descendants until ``pid`` is gone, then kills those left."""
    started = (_stat(pid) or (0, None))[1]
    seen: dict[int, int] = {}
    while started is not None and (_stat(pid) or (0, None))[1] == started:
        seen |= descendants(pid)
        time.sleep(period_s)
    for child, start in seen.items():
        if child != os.getpid() and (_stat(child) or (0, None))[1] == start:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass


def start(pid: int | None = None) -> subprocess.Popen | None:
    """A reaper for ``pid`` (default: this process), or None where there is no ``/proc``."""
    if not os.path.isdir("/proc"):
        return None
    return subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__),  # stdlib only
                             str(pid or os.getpid())], stdin=subprocess.DEVNULL,
                            start_new_session=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
