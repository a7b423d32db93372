"""Metric writer: TensorBoard event files through tensorboardX, with clu's method names.

The flax examples write metrics through ``clu.metric_writers``; in clu 0.0.12 importing that
package imports TensorFlow (``metric_writers/__init__`` pulls in its TF summary writer), and this
project does not depend on TensorFlow. ``MetricWriter`` keeps clu's interface
(``write_scalars``, ``write_texts``, ``write_hparams``, ``flush``, ``close``) so code written
against clu reads the same, and it writes the same TensorBoard event files. ``read_scalars``
reads them back (no TensorFlow or ``tensorboard`` needed); ``remove_event_files`` clears a log
directory before it is written afresh (an evolve run rebuilds its events on every start).

The viewer is not a dependency: ``pip install -r requirements-tensorboard.txt``, then
``tensorboard --logdir <workdir>/tensorboard``.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Mapping
from typing import Any

from absl import logging

FLUSH_SECS = 10  # tensorboardX's default (120 s) leaves a live view minutes behind


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch (on first use, not at import).

    ``tensorboardX.writer`` probes ``try: import torch`` when it is first imported (to accept
    torch tensors as values, unused here); where torch is installed that costs every controller
    and worker seconds of start-up and hundreds of MB, and a torch build's OpenMP runtime beside
    XLA's thread pool. So for that one import, and only when torch is not already loaded,
    ``sys.modules["torch"]`` is set to None (which makes ``import torch`` raise ImportError, as
    where torch is absent) and removed again afterwards: nothing else in ``sys.modules`` is
    touched, and a later ``import torch`` elsewhere works as usual.
    """
    masked = "torch" not in sys.modules
    if masked:
        sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` -> ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if masked:
            del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """TensorBoard event files under ``logdir``; also logs scalars through absl when ``log``."""

    def __init__(self, logdir: str, *, log: bool = False, flush_secs: int = FLUSH_SECS):
        self._writer = _summary_writer_class()(logdir=logdir, flush_secs=flush_secs)
        self._log = log

    def write_scalars(self, step: int, scalars: Mapping[str, Any], *,
                      walltime: float | None = None) -> None:
        """``walltime``: the event's time (seconds since the epoch; default now)."""
        for key, value in scalars.items():
            self._writer.add_scalar(key, float(value), step, walltime=walltime)
        if self._log:
            logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.4g}"
                                                    for k, v in scalars.items()))

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        for key, value in texts.items():
            self._writer.add_text(key, value, step)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self._writer.add_text("hparams", "\n".join(f"{k}: {v}" for k, v in hparams.items()), 0)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def create_writer(workdir: str, *, log: bool = False) -> MetricWriter:
    return MetricWriter(workdir, log=log)


EVENT_PREFIX = "events.out.tfevents"


def event_files(logdir: str) -> list[str]:
    """The TensorBoard event files directly in ``logdir``, oldest name first."""
    if not os.path.isdir(logdir):
        return []
    return sorted(os.path.join(logdir, f) for f in os.listdir(logdir)
                  if f.startswith(EVENT_PREFIX))


def remove_event_files(logdir: str) -> int:
    """Deletes the event files directly in ``logdir`` (nothing else); returns how many."""
    files = event_files(logdir)
    for path in files:
        os.remove(path)
    return len(files)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float, float]]]:
    """Every scalar in the event files of ``logdir``: tag -> ``[(step, value, walltime)]`` in
    file order. A record cut short (a writer killed mid-write) ends its file's reading."""
    from tensorboardX.proto import event_pb2  # noqa: PLC0415 (with the writer, on first use)

    out: dict[str, list[tuple[int, float, float]]] = {}
    for path in event_files(logdir):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):  # TFRecord: length, its CRC, the record, its CRC
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            if pos + 12 + length + 4 > len(data):
                break
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value, event.wall_time))
            pos += 12 + length + 4
    return out
