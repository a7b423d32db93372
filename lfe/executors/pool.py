"""The process pools: tasks in spawned, long-lived worker processes, one task per worker at a time.

``ProcessPoolExecutor`` (executor ``pool``) is the CPU pool: one worker per core, each pinned to
its core with single-threaded XLA and ``JAX_PLATFORMS=cpu`` set before anything imports JAX: on 2
cores, two single-core workers evaluate more candidates per hour than one process using both
(BENCHMARKS.md §3). ``DevicePoolExecutor`` (executor ``devices``; what ``auto`` picks on a host
with accelerators, ``lfe.executors.devices``) starts one worker per accelerator instead, each
with that device made its only visible one (``CUDA_VISIBLE_DEVICES=<i>``, or one TPU chip) and
nothing of the CPU pool's: no pinning, no single-threaded XLA, no ``JAX_PLATFORMS=cpu``. Either
way a worker serves task after task in one process, so it imports JAX, loads the dataset
(``lfe.training.fitness.load_dataset`` is cached per process) and compiles its steps once, not
per candidate.

Workers start with *spawn* (never fork: JAX is multithreaded) and with ``lfe.core.malloc``'s
glibc settings, which glibc reads only at process start: the pool puts them into this process's
environment while it lives (workers are spawned on demand) and restores the environment when it
is closed.

Each worker runs one task at a time over its own pipe, so the pool always knows which task a
worker runs. When a worker dies (killed, out of memory, a crash in native code) only its task is
reported, as ``worker failed: ...`` (``lost`` when a signal from outside killed it:
``death``), and a new worker on the same core or device takes its place; the other workers and
their tasks go on untouched (``concurrent.futures``' pool, by contrast, breaks and fails every
pending task when one worker dies). ``close`` stops idle workers and kills busy ones.
"""

from __future__ import annotations

import atexit
import collections
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
import time

from lfe.core import malloc
from lfe.executors import devices
from lfe.executors.base import Outcome, call

# Signals a process raises on itself when it faults: its task's doing (charged, lfe.core.retry).
# Any other signal (SIGKILL, SIGTERM, SIGINT, SIGHUP, ...) came from outside: the worker is lost.
FAULT_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                           signal.SIGABRT, signal.SIGSYS, signal.SIGTRAP})


def _init_worker(slot, threads: int) -> None:
    """Sets this worker up before anything imports JAX: a device worker (``slot``: the
    environment of its device, ``devices.worker_env``) takes its device's variables and nothing
    else; a CPU worker is pinned to core ``slot`` (None: not pinned) with ``JAX_PLATFORMS=cpu``
    and, when it owns one core (``threads`` 1), single-threaded XLA. Either ends with its
    controller (``exit_with_parent``) and leaves Ctrl-C to the controller (which stops busy
    workers itself when it stops: ``lfe.core.stop``)."""
    exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if isinstance(slot, dict):
        os.environ.update(slot)
        return
    if slot is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {slot})
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        os.environ["XLA_FLAGS"] = single_thread_flags(flags)


def exit_with_parent(period_s: float = 0.5) -> None:
    """Ends this spawned process (``os._exit``) within ``period_s`` of its parent's death, however
    the parent died (``kill -9`` included), so no worker trains on for a controller that is
    gone: a daemon thread polls ``os.getppid()`` against the parent's pid (an orphan is
    re-parented). Not ``prctl(PR_SET_PDEATHSIG)``: that fires when the parent *thread* that
    started the process ends, which need not be the controller's end."""
    parent = mp.parent_process()
    pid = parent.pid if parent is not None else os.getppid()

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="lfe-exit-with-parent", daemon=True).start()


def single_thread_flags(flags: str) -> str:
    """``XLA_FLAGS`` for a worker that owns one core (on CPU, one single-threaded process per
    core evaluates more candidates per hour than one process using every core)."""
    if "--xla_cpu_multi_thread_eigen" in flags:
        return flags
    return (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def death(exitcode: int | None) -> Outcome:
    """The outcome of a task whose worker process ended with ``exitcode`` (``multiprocessing``'s:
    negative for a signal): lost when a signal from outside killed it, charged otherwise."""
    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return Outcome(error=f"worker failed: killed by signal {-exitcode}", lost=True)
        return Outcome(error=f"worker failed: killed by {sig.name}",
                       lost=sig not in FAULT_SIGNALS)
    return Outcome(error=f"worker failed: its process exited with status {exitcode}")


def _serve(conn, slot, threads: int) -> None:
    """A worker's life: set up on ``slot`` (a core, None, or a device's environment) by
    ``_init_worker``, then run the tasks it is sent, one at a time, until told to stop
    (``None``) or the controller is gone."""
    _init_worker(slot, threads)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the controller is gone
            return
        if task is None:
            return
        try:
            outcome = call(*task)
        except KeyboardInterrupt:  # Ctrl-C reached the worker too: die of it (a loss, not the
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # task's fault), not of an exit status
            os.kill(os.getpid(), signal.SIGINT)
            raise
        try:
            conn.send(outcome)
        except (EOFError, OSError):
            return
        except Exception as e:  # noqa: BLE001 - a value that cannot be pickled is the task's error
            conn.send(Outcome(error=f"result not sendable: {type(e).__name__}: {e}"))


def _slot_name(slot) -> str:
    return ",".join(f"{k}={v}" for k, v in slot.items() if "VISIBLE" in k)[:60] \
        if isinstance(slot, dict) else str(slot)


class _Worker:
    """One worker process, its end of the pipe, its slot (a core, None: not pinned, or a
    device's environment) and its task."""

    def __init__(self, ctx, slot, threads: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, slot, threads),
                                   name=f"lfe-pool-worker-{_slot_name(slot)}")
        self.process.start()
        child.close()
        self.slot = slot
        self.task: str | None = None  # key of the task it runs

    def stop(self, kill: bool) -> None:
        """Ends the process: asks an idle one to stop, terminates a busy one (or any, ``kill``)."""
        if self.process.is_alive():
            if self.task is None and not kill:
                try:
                    self.conn.send(None)
                except OSError:
                    pass
            else:
                self.process.terminate()
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self.conn.close()


class ProcessPoolExecutor:
    """Runs tasks in spawned worker processes, ``workers`` at once (default: one per core),
    or one per entry of ``slots`` (device environments: ``DevicePoolExecutor``)."""

    def __init__(self, workers: int | None = None, pin: bool = True,
                 slots: list[dict] | None = None):
        available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else list(range(os.cpu_count() or 1))
        self.capacity = len(slots) if slots else int(workers or len(available))
        self._saved_env = {k: os.environ.get(k) for k in malloc.env(os.environ)
                           if os.environ.get(k) != malloc.env(os.environ)[k]}
        os.environ.update(malloc.env(os.environ))  # until close(): workers spawn on demand
        self._ctx = mp.get_context("spawn")
        pinned = pin and self.capacity <= len(available)
        self._slots = (list(slots) if slots else list(available[: self.capacity]) if pinned
                       else [None] * self.capacity)  # what the next workers start on
        self._threads = max(1, len(available) // self.capacity)
        self._queue: collections.deque = collections.deque()  # (key, target, args) not started
        self._workers: list[_Worker] = []
        self._closed = False
        atexit.register(self.close)  # never leave workers behind, even when not closed

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(w.task is not None for w in self._workers)

    def submit(self, key: str, target: str, *args) -> None:
        self._queue.append((key, target, args))
        self._dispatch()

    def _dispatch(self) -> None:
        """Hands queued tasks to idle workers, starting workers up to ``capacity``."""
        while self._queue:
            idle = next((w for w in self._workers if w.task is None), None)
            if idle is None:
                if len(self._workers) >= self.capacity:
                    return
                idle = _Worker(self._ctx, self._slots.pop(0), self._threads)
                self._workers.append(idle)
            key, target, args = self._queue[0]
            try:
                idle.conn.send((target, args))
            except OSError:  # it died while idle: replace it, the task waits for the next
                self._replace(idle)
                continue
            self._queue.popleft()
            idle.task = key

    def _replace(self, dead: _Worker) -> None:
        dead.stop(kill=True)
        self._workers.remove(dead)
        self._slots.append(dead.slot)  # its replacement takes the same core or device

    def wait_any(self) -> list[tuple[str, Outcome]]:
        """At least one finished task (its value or error; a dead worker's task as ``worker
        failed``), sorted by key; [] when nothing is pending."""
        self._dispatch()
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        ready = set(mp_connection.wait([w.conn for w in busy] +
                                       [w.process.sentinel for w in busy]))
        finished = [self._collect(w) for w in busy
                    if w.conn in ready or w.process.sentinel in ready]
        self._dispatch()
        return sorted(finished, key=lambda kv: kv[0])

    def _collect(self, w: _Worker) -> tuple[str, Outcome]:
        """The result of ``w``'s task, or its death (then ``w`` is replaced)."""
        key, w.task = w.task, None
        try:
            if w.conn.poll():
                return key, w.conn.recv()
        except (EOFError, OSError):
            pass
        w.process.join()
        self._replace(w)
        return key, death(w.process.exitcode)

    def close(self) -> None:
        """Stops idle workers, kills busy ones (their results would be dropped) and drops the
        queue; restores the environment. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._queue.clear()
        for w in self._workers:
            w.stop(kill=False)
        self._workers.clear()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class DevicePoolExecutor(ProcessPoolExecutor):
    """One long-lived worker process per accelerator of this host (``lfe.executors.devices``),
    each seeing only its own device; ``workers`` more than the GPUs share them round-robin
    (without preallocation), fewer use the first ones; TPUs take one worker per chip at most.
    Refuses, in one line, a host without accelerators."""

    def __init__(self, workers: int | None = None, accelerators=None):
        found = devices.local() if accelerators is None else accelerators
        if not found:
            raise ValueError("executor 'devices' needs an accelerator and this host has none "
                             "(nvidia-smi, /dev/accel*, $LFE_ACCELERATORS); use executor "
                             "'pool' (or 'auto') on a CPU host")
        n = devices.workers_for(found, workers or 0)
        self.accelerators = found
        super().__init__(slots=[devices.worker_env(found, i, n) for i in range(n)])
