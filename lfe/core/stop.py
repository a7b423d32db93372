"""Stopping a controller with SIGINT (Ctrl-C) or SIGTERM, so that a rerun resumes.

``install()`` (``lfe.main`` calls it) makes the first of these signals raise ``Stopped`` (a
KeyboardInterrupt, so that code catching ``Exception`` lets it through and Ray's blocking calls
hand it on) wherever the main thread is: nothing more is submitted, and the ``finally`` blocks of
the modes close their executors (busy pool workers are killed, Ray tasks cancelled). Nothing
needs saving: a run directory is checkpointed after every change (in-flight candidates and
finished cells included), so stopping anywhere is as safe as ``kill -9`` and the rerun submits
the in-flight work again. After the first signal both signals get their default action: a
second one ends the process at once.

Libraries may replace the handlers (``ray.init`` sets its own SIGTERM handler): ``reinstall()``
after such a call puts these back, if they were installed and no signal has come yet.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
MESSAGE = "stopped; rerun the same command to resume"

_state = {"installed": False, "received": None}


class Stopped(KeyboardInterrupt):
    """The controller was asked to stop by a signal (its number: ``signum``)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _first(signum: int, frame) -> None:
    del frame
    _state["received"] = signum
    for s in SIGNALS:  # a second signal ends the process at once
        signal.signal(s, signal.SIG_DFL)
    raise Stopped(signum)


def install() -> None:
    """Makes SIGINT and SIGTERM stop this process's work with ``Stopped`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in SIGNALS:
        signal.signal(s, _first)
    _state["installed"], _state["received"] = True, None


def reinstall() -> None:
    """Puts the handlers back after a library replaced them (``install`` was called, no signal
    has come yet, main thread)."""
    if _state["installed"] and _state["received"] is None:
        install()


def received() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _state["received"]


def exit_status(signum: int | None) -> int:
    """The shell's convention for a process ended by ``signum``: 128 + its number."""
    return 128 + int(signum or signal.SIGINT)
