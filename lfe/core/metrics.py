"""Metric writer: TensorBoard event files through tensorboardX, with clu's method names.

The flax examples write metrics through ``clu.metric_writers``; in clu 0.0.12 importing that
package imports TensorFlow (``metric_writers/__init__`` pulls in its TF summary writer), and this
project does not depend on TensorFlow. ``MetricWriter`` keeps clu's interface
(``write_scalars``, ``write_texts``, ``write_hparams``, ``flush``, ``close``) so code written
against clu reads the same, and it writes the same TensorBoard event files.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from absl import logging


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

    def __init__(self, logdir: str, *, log: bool = False):
        self._writer = _summary_writer_class()(logdir=logdir)
        self._log = log

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, float(value), step)
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
