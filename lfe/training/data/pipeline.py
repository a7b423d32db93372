"""Host-side batching: deterministic, exactly resumable training batches; padded eval batches.

Why the permutation of epoch e is a pure function of (seed, e): a run restored at step s must
see exactly the batches that an uninterrupted run sees from step s on, without replaying the
stream. Batches are dicts of numpy arrays, `{"image": uint8 [B, H, W, C], "label": int32 [B]}`
(+ `"mask"` for eval); augmentation is done on device by `augment.preprocess`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of `epoch`, derived from (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder is dropped so every step has the same shape."""
    return num_examples // batch_size


def train_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, start_step: int = 0
) -> Iterator[Batch]:
    """Infinite shuffled batches; the batch of step s is the same whatever `start_step` was.

    Each epoch uses `epoch_permutation(n, seed, epoch)` and drops the last partial batch.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if batch_size < 1 or start_step < 0:
        raise ValueError(f"need batch_size >= 1 and start_step >= 0, got {batch_size}, "
                         f"{start_step}")
    per_epoch = steps_per_epoch(len(images), batch_size)
    if per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(images)} examples")
    return _train_batches(images, labels, batch_size, seed, start_step, per_epoch)


def _train_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, step: int,
    per_epoch: int,
) -> Iterator[Batch]:
    epoch, order = -1, None
    while True:
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            order = epoch_permutation(len(images), seed, epoch)
        start = (step % per_epoch) * batch_size
        index = order[start:start + batch_size]
        yield {"image": images[index], "label": labels[index]}
        step += 1


def num_eval_batches(num_examples: int, batch_size: int) -> int:
    """Batches `eval_batches` yields: ceil(num_examples / batch_size)."""
    return -(-num_examples // batch_size)


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> Iterator[Batch]:
    """Every example once, in order; the last batch is zero-padded to `batch_size`.

    Every batch carries `"mask"` (float32 [B], 1 real / 0 padding) so that all batches share one
    shape and structure (one compilation) and metrics are `sum(metric * mask) / sum(mask)`.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(images), batch_size):
        image, label = images[start:start + batch_size], labels[start:start + batch_size]
        real = len(label)
        mask = np.zeros(batch_size, np.float32)
        mask[:real] = 1.0
        if real < batch_size:
            image = _pad(image, batch_size)
            label = _pad(label, batch_size)
        yield {"image": image, "label": label, "mask": mask}


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size,) + array.shape[1:], array.dtype)
    out[:len(array)] = array
    return out


_END = object()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetch(Iterator[Any]):
    """Iterates `iterator` through a bounded queue filled by a daemon thread.

    Why a class with `close`: a consumer that stops early (a gate rejection, an early stop)
    must not leave a thread blocked on a full queue; `close()` (also called by `with`, by
    exhausting, and on garbage collection) tells the producer to stop. Producer exceptions are
    re-raised in the consumer.
    """

    def __init__(self, iterator: Iterator[Any], size: int = 2):
        if size < 1:
            raise ValueError(f"prefetch size must be >= 1, got {size}")
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=_produce, args=(iter(iterator), self._queue, self._stop), daemon=True,
            name="lfe-prefetch")
        self._thread.start()

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Raised):
            self.close()
            raise item.error
        return item

    def close(self, timeout: float | None = 1.0) -> None:
        """Stops the producer thread (waits up to `timeout` seconds for it to finish)."""
        self._done = True
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()


def _produce(iterator: Iterator[Any], out: queue.Queue, stop: threading.Event) -> None:
    # Only `iterator`, the queue and the event are referenced here, never the Prefetch object,
    # so an abandoned Prefetch can be garbage collected and its __del__ stops this thread.
    try:
        for item in iterator:
            if not _put(out, item, stop):
                return
        _put(out, _END, stop)
    except BaseException as error:  # noqa: BLE001 - handed to the consumer
        _put(out, _Raised(error), stop)


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def prefetch(iterator: Iterator[Any], size: int = 2) -> Prefetch:
    """Runs `iterator` `size` items ahead in a daemon thread (see `Prefetch`)."""
    return Prefetch(iterator, size)
