"""The failure policy of tasks (candidate evaluations, grid cells): when a failed one runs again.

Executors report a failed task as an ``Outcome`` with ``error`` set, and ``lost`` when its
worker or host was lost through no fault of its own. The rules:

- **Charged**: the task raised, or its worker died of its own doing — an exit status (a fatal
  error, ``os._exit``), a fault signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS,
  SIGTRAP), Ray's ``WorkerCrashedError`` (after Ray's own ``ray.max_retries`` re-runs),
  ``OutOfMemoryError``, or a warm GPU actor's ``ActorDiedError`` on a live node (the actor is
  replaced and the task re-queued ``ray.max_retries`` times first). It runs again while its
  charged failures are at most ``max_retries`` (``config.max_task_retries``, default 2: three
  attempts), then it is recorded as failed with its last error (an evolution's
  ``records.errored`` child, a grid's ``<key>.failed.json``).
- **Not charged** (``lost``): a host loss or a kill from outside — Ray's ``NodeDiedError``
  (preemption, a dead raylet), an actor's ``ActorDiedError`` whose node is gone, a lost object,
  a pool worker killed by SIGKILL, SIGTERM, SIGINT, SIGHUP or any other signal that is not a
  fault of its own. It runs again for free, but only ``FREE_LOSSES`` times per task: later
  losses are charged, so a task whose worker is killed every time (the kernel's OOM killer sends
  SIGKILL too) still ends.
- A timeout is a failed result at once (a retry would run as long again).

Executors never cancel other tasks for a failed one; the controller (``lfe.experiments``) keeps
each task's failed attempts (an evolution in its state, so they survive a restart) and asks
``again`` whether to submit it once more.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_MAX_RETRIES = 2
FREE_LOSSES = 5


def charged(attempts: Iterable[bool]) -> int:
    """How many of a task's failed attempts (``True``: its worker was lost) count against it."""
    count = losses = 0
    for lost in attempts:
        if lost and losses < FREE_LOSSES:
            losses += 1
        else:
            count += 1
    return count


def again(attempts: Iterable[bool], max_retries: int) -> bool:
    """Whether a task whose failed attempts so far are ``attempts`` (``True``: lost, in order)
    runs once more."""
    return charged(attempts) <= max_retries


def describe(attempts: list[bool], max_retries: int) -> str:
    """``retry 1/2`` or ``worker lost, not charged``: why a failed attempt runs again."""
    if attempts[-1] and charged(attempts) == charged(attempts[:-1]):
        return "worker lost, not charged"
    return f"retry {charged(attempts)}/{max_retries}"
