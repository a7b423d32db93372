"""Stopping a controller with SIGINT (Ctrl-C) or SIGTERM, so that a rerun resumes.

``install()`` (``lfe.main`` calls it) makes the first of these signals raise ``Stopped`` (a
KeyboardInterrupt, so that code catching ``Exception`` lets it through and Ray's blocking calls
hand it on) wherever the main thread is: nothing more is submitted, and the ``finally`` blocks of
the modes close their executors (busy pool workers are killed, Ray tasks cancelled). Nothing
needs saving: a run directory is checkpointed after every change (in-flight candidates and
finished cells included), so stopping anywhere is as safe as ``kill -9`` and the rerun submits
the in-flight work again. After the first signal both signals get their default action: a
second one ends the process at once.

Closing is bounded: a watchdog thread (started by ``install``) ends the process
``grace_s()`` seconds after the first signal if it is still running (60 s; the environment
variable ``LFE_STOP_GRACE_S`` sets it), with the same exit status and line. A controller
interrupted inside a library call can otherwise wait forever on what that call left behind
(a lock held by the interrupted code, a cluster that no longer answers); a batch scheduler's
SIGTERM must end the job either way, and nothing is lost by ending it.

Libraries may replace the handlers (``ray.init`` sets its own SIGTERM handler): ``reinstall()``
after such a call puts these back, if they were installed and no signal has come yet.
"""

from __future__ import annotations

import os
import signal
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)
MESSAGE = "stopped; rerun the same command to resume"
GRACE_ENV = "LFE_STOP_GRACE_S"
DEFAULT_GRACE_S = 60.0

_state = {"installed": False, "received": None, "watchdog": None}
_asked = threading.Event()  # set by the first signal; only the handler and the watchdog touch it


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
    _asked.set()  # the watchdog starts counting
    raise Stopped(signum)


def grace_s() -> float:
    """Seconds a stopping process may take to close (``$LFE_STOP_GRACE_S``, else 60)."""
    raw = os.environ.get(GRACE_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_GRACE_S
    except ValueError:
        raise ValueError(f"{GRACE_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{GRACE_ENV}={raw!r} must be > 0 seconds")
    return value


def _watch(grace: float) -> None:
    """The watchdog: once a stop is asked, ends the process if it outlives ``grace`` seconds
    (``os._exit``: no clean-up code of the process runs, as with ``kill -9``)."""
    _asked.wait()
    time.sleep(grace)
    line = (f"closing took over {grace:g} s ({GRACE_ENV}); ended without waiting for it\n"
            f"{MESSAGE}\n")
    try:
        os.write(2, line.encode())
    finally:
        os._exit(exit_status(_state["received"]))


def install() -> None:
    """Makes SIGINT and SIGTERM stop this process's work with ``Stopped`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    grace = grace_s()
    for s in SIGNALS:
        signal.signal(s, _first)
    _state["installed"], _state["received"] = True, None
    if _state["watchdog"] is None or not _state["watchdog"].is_alive():
        _state["watchdog"] = threading.Thread(target=_watch, args=(grace,), daemon=True,
                                              name="lfe-stop-watchdog")
        _state["watchdog"].start()


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
