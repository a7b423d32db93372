"""Mid-training checkpoints: a pytree of arrays and a JSON document, saved atomically.

``train.run(..., checkpoint_dir=DIR)`` keeps its newest checkpoint here and resumes from it:

    DIR/step_00002000/state.npz   the tree's leaves as arrays "000000", "000001", ... in
                                  ``jax.tree_util`` order (``np.savez``, uncompressed: each
                                  member carries a CRC-32, checked when it is read)
    DIR/step_00002000/meta.json   {"format", "step", "leaves": the leaves' key paths,
                                  "shapes", "dtypes", and the caller's own fields}
    DIR/.tmp-*                    a save in progress; never read, removed by the next save

A save writes both files into a temporary directory, fsyncs them and renames it to
``step_<step>``, then removes the older checkpoints (``train.run`` writes in a background thread,
``Writer``, from a host copy taken at the step); a reader takes the highest complete
``step_*``, so a process killed at any instant leaves either the previous checkpoint or the new
one. A checkpoint that cannot be read, or whose leaves do not match the run's state, raises
``CheckpointError`` (one line naming the file) rather than silently training from step 0.

Why ``.npz`` + JSON rather than orbax-checkpoint (pinned, and fine for sharded multi-host
arrays): the training state here is replicated on the devices of one host, so one host copy is
the whole state; ``np.savez`` writes the ConvNet's state in ≈6 ms here (≈50 ms with the
fsyncs) against 0.17–0.34 s for ``ocp.StandardCheckpointer`` with its 8 files and its own
threads, restores bit for bit, and both files can be read with numpy and a text editor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import zipfile
from typing import Any

import jax
import numpy as np

from lfe.core import protocol
from lfe.training import loop

FORMAT = "lfe-train-checkpoint-v1"
STATE, META = "state.npz", "meta.json"
_STEP = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: unreadable, or not this run's."""


def latest(directory: str) -> str | None:
    """The newest complete checkpoint under ``directory`` (None when there is none)."""
    if not directory or not os.path.isdir(directory):
        return None
    steps = [(int(m.group(1)), name) for name in os.listdir(directory)
             if (m := _STEP.match(name))]
    return os.path.join(directory, max(steps)[1]) if steps else None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A tree's leaves copied to the host (key paths and arrays), ready to ``write``."""

    names: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]


def snapshot(tree: Any) -> Snapshot:
    """Host copies of ``tree``'s leaves (own memory: the device buffers may be donated to the
    next step while a ``Writer`` is still writing them)."""
    paths, leaves = zip(*jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0],
                        strict=True)
    return Snapshot(tuple(jax.tree_util.keystr(p) for p in paths),
                    tuple(np.array(leaf, copy=True) for leaf in leaves))


def write(directory: str, step: int, snap: Snapshot, meta: dict) -> str:
    """Writes ``snap`` and ``meta`` (JSON) as ``directory/step_<step>``, atomically; removes
    older checkpoints and unfinished saves. Returns the new path."""
    os.makedirs(directory, exist_ok=True)
    doc = {"format": FORMAT, "step": int(step), "leaves": list(snap.names),
           "shapes": [list(a.shape) for a in snap.arrays],
           "dtypes": [str(a.dtype) for a in snap.arrays], **meta}
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=directory)
    with open(os.path.join(tmp, STATE), "wb") as f:
        np.savez(f, **{f"{i:06d}": a for i, a in enumerate(snap.arrays)})
        f.flush()
        os.fsync(f.fileno())
    with open(os.path.join(tmp, META), "w") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    final = os.path.join(directory, f"step_{int(step):08d}")
    shutil.rmtree(final, ignore_errors=True)  # a leftover of the same step (not the newest)
    os.rename(tmp, final)
    _fsync_dir(directory)
    for name in os.listdir(directory):
        if name != os.path.basename(final) and (_STEP.match(name) or name.startswith(".tmp-")):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return final


def save(directory: str, step: int, tree: Any, meta: dict) -> str:
    """``write(directory, step, snapshot(tree), meta)``: a checkpoint of ``tree`` (arrays and
    scalars), now."""
    return write(directory, step, snapshot(tree), meta)


class Writer:
    """Checkpoints written in a background thread, so training goes on while a large state
    reaches the disk: ``save`` takes the host copy at once and returns; the next ``save`` or
    ``wait`` waits for the write in flight and raises its error, if any."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, directory: str, step: int, tree: Any, meta: dict) -> None:
        self.wait()
        snap = snapshot(tree)

        def work() -> None:
            try:
                write(directory, step, snap, meta)
            except BaseException as error:  # noqa: BLE001 - raised by the next wait
                self._error = error

        self._thread = threading.Thread(target=work, name="lfe-checkpoint", daemon=True)
        self._thread.start()

    def wait(self, *, check: bool = True) -> None:
        """Waits for the write in flight; raises its error unless ``check`` is False."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and check:
            raise error


def restore(path: str, template: Any) -> tuple[Any, dict]:
    """The tree saved at ``path`` (a ``step_*`` directory) in the structure of ``template``, and
    its meta document. Leaves come back as numpy arrays, except where ``template`` holds a
    Python scalar or a weak-typed scalar: those come back as Python scalars, so a jitted
    function sees the same argument types as in the run that saved them."""
    meta_path, state_path = os.path.join(path, META), os.path.join(path, STATE)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as error:
        raise _error(meta_path, error) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _error(meta_path, f"not an {FORMAT} document")
    paths, leaves = zip(*jax.tree_util.tree_flatten_with_path(template)[0], strict=True)
    names = [jax.tree_util.keystr(p) for p in paths]
    if meta.get("leaves") != names:
        raise _error(meta_path, "its leaves are not those of this run's training state")
    try:
        with np.load(state_path, allow_pickle=False) as npz:
            arrays = [npz[f"{i:06d}"] for i in range(len(names))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise _error(state_path, error) from None
    out = []
    for name, leaf, array in zip(names, leaves, arrays, strict=True):
        if _scalar(leaf):  # its dtype is the saved run's reading of a Python number
            if array.shape != ():
                raise _error(state_path, f"{name} has shape {list(array.shape)}, not a scalar")
            out.append(array.item())
            continue
        if (array.shape, array.dtype) != (leaf.shape, leaf.dtype):
            raise _error(state_path, f"{name} is {array.dtype}{list(array.shape)}, the run's "
                                     f"{leaf.dtype}{list(leaf.shape)}")
        out.append(array)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), out), meta


def remove(directory: str) -> None:
    """Deletes ``directory`` and every checkpoint in it (a finished run's)."""
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


def _scalar(leaf: Any) -> bool:
    return isinstance(leaf, (int, float)) or bool(getattr(leaf, "weak_type", False))


def _error(path: str, reason: Any) -> CheckpointError:
    reason = " ".join(str(reason).split())
    return CheckpointError(f"{path}: unreadable checkpoint ({reason}); remove "
                           f"{os.path.dirname(os.path.dirname(path))} to train from step 0")


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FORMAT", "CheckpointError", "Snapshot", "Writer", "latest", "remove", "restore",
           "save", "snapshot", "write"]


class RunSaver:
    """`lfe.training.train.run`'s checkpoints: when to save, what (state, step RNG,
    `Progress`), and resuming."""

    def __init__(self, directory: str, config, seed: int, num_train: int):
        self.directory, self.every = directory, protocol.checkpoint_every(config)
        fields = {k: v for k, v in config.to_dict().items() if k != "checkpoint_every"}
        what = json.dumps({"protocol": fields, "seed": seed, "train_examples": num_train},
                          sort_keys=True, default=str)
        self.fingerprint = hashlib.sha256(what.encode()).hexdigest()[:16]
        self.saved = 0  # the step of the newest checkpoint
        self.writer = Writer()

    def resume(self, state, step_rng, progress: loop.Progress):
        """(state, step_rng, progress) from the newest checkpoint, or as given without one."""
        path = latest(self.directory)
        if path is None:
            return state, step_rng, progress
        tree, meta = restore(path, {"state": state, "step_rng": step_rng})
        if meta.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"{path}: a checkpoint of another run (protocol, seed or training set differ); "
                f"remove {self.directory} to train from step 0")
        self.saved = int(meta["step"])
        return (tree["state"], tree["step_rng"],
                loop.Progress.from_dict(meta["progress"], progress.start_time))

    def maybe_save(self, step: int, state, step_rng, progress: loop.Progress) -> None:
        if self.every and step // self.every > self.saved // self.every:
            self.save(step, state, step_rng, progress)

    def save(self, step: int, state, step_rng, progress: loop.Progress) -> None:
        if step > self.saved:  # a run resumed at its pause step has that checkpoint already
            self.writer.save(self.directory, step, {"state": state, "step_rng": step_rng},
                             {"fingerprint": self.fingerprint, "progress": progress.to_dict()})
        self.saved = step
