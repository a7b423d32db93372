"""K for the ``vmap`` executor: chosen by a short measurement on the device it runs on.

    choice = k_choice.choose(protocol, image_shape=(32, 32, 3), num_classes=10)
    choice.k, choice.source, choice.rates   # 4, "measured", [{"k": 1, "rate": ...}, ...]

The rule (``select``): candidate-steps per second of the protocol's own train step at K = 1, 2,
4, 8, ... (doubling, up to ``MAX_K``). K = 1 is the sequential step
(``population.sequential_step``: one candidate, no vmap); K >= 2 is the vmapped population step
(``population._population_fns``) over K states. Doubling goes on while each doubling raises the
throughput by at least ``MIN_GAIN`` (10%) and stops at the first K that does not, or that fails
(out of device memory); the choice is the last K that gained. K = 1 is always measured and every
K accepted after it was faster than the one before, so **the choice is never slower than
sequential, by measurement** — of the train steps alone (evaluation passes and compiles are not
in it; a population compiles once per K, sequential runs once per candidate).

Where the answer comes from, the first that has it:

1. this process's cache, per (device, protocol shape);
2. the table on disk, ``$LFE_K_CHOICE`` (default ``~/.cache/lfe/k_choice.json``, beside
   JAX's compilation cache ``~/.cache/lfe/jax``; ``off``: none), keyed by device kind and then
   protocol shape, so a host measures once (delete the file to measure again);
3. ``population.MEASURED_K`` by platform (``{"cpu": 1}``: on XLA:CPU vmapped convolutions ran at
   0.66-0.79x sequential, BENCHMARKS.md §4), so a CPU process spends no time measuring;
4. the measurement, which fills 1 and 2. If it fails at K = 1 the answer is the table's, or 1.

A protocol that population training does not take (several phases, ``init_from``) is K = 1
without measuring. The protocol shape is what a step's cost depends on: the model and its
``model_kwargs`` (precision included), batch size, the phase's augmentation, image shape,
classes, the genome op set and the jax version. The measurement trains on random uint8 images of
the dataset's shape (throughput does not depend on the pixels) with library genomes of the op
set, ``STEPS`` steps after ``WARMUP`` (compiling) ones, repeated until ``MIN_SECONDS`` have passed.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lfe.core import fileio
from lfe.core import genome as genome_lib

MIN_GAIN = 0.10  # a doubling of K must raise candidate-steps/s by this much to be taken
MAX_K = 128
WARMUP, STEPS, MIN_SECONDS, MAX_ROUNDS = 2, 5, 1.0, 20
ENV = "LFE_K_CHOICE"

Rate = Callable[[int], float]  # K -> candidate-steps per second (raises when K does not fit)


@dataclasses.dataclass(frozen=True)
class Choice:
    k: int
    source: str  # "measured", "disk", "table", "protocol", "fallback: ..."
    device: str = ""
    rates: tuple = ()  # ({"k": 1, "rate": 21.5}, {"k": 2, "rate": 17.0} or {"k", "error"}, ...)

    def to_dict(self) -> dict:
        return {"k": self.k, "source": self.source, "device": self.device,
                "rates": [dict(r) for r in self.rates]}

    def describe(self) -> str:
        rates = ", ".join(f"K={r['k']} " + (f"{r['rate']:.3g}" if "rate" in r else "failed")
                          for r in self.rates)
        return (f"K = {self.k} ({self.source}" + (f" on {self.device}" if self.device else "")
                + (f"; candidate-steps/s {rates}" if rates else "") + ")")


def doubling(max_k: int = MAX_K) -> list[int]:
    """1, 2, 4, ... up to ``max_k``."""
    ks, k = [], 1
    while k <= max(1, int(max_k)):
        ks.append(k)
        k *= 2
    return ks


def select(rate: Rate, ks: Sequence[int] = tuple(doubling()),
           min_gain: float = MIN_GAIN) -> tuple[int, list[dict]]:
    """(the chosen K, what was measured): ``rate(k)`` for k in ``ks`` (ascending, first = the
    sequential baseline) while each one gains ``min_gain`` over the last accepted; a K whose
    ``rate`` raises (out of memory) ends the search. The first K's failure is raised."""
    best, rows = None, []
    for k in ks:
        try:
            r = float(rate(k))
        except Exception as e:  # noqa: BLE001 (out of device memory, or any failure at this K)
            if best is None:
                raise
            rows.append({"k": k, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            break
        rows.append({"k": k, "rate": r})
        if best is None or r >= best[1] * (1.0 + min_gain):
            best = (k, r)
        else:
            break
    return best[0], rows


def _library_genomes(op_set: str, k: int) -> list:
    from lfe.training import losses

    found = [g for g in (losses.get(n).genome for n in losses.available())
             if g is not None and g.op_set == op_set]
    if not found:
        rng = np.random.default_rng(0)
        found = [genome_lib.random_genome(rng, op_set) for _ in range(4)]
    return [found[i % len(found)] for i in range(k)]


def _model_for(protocol, num_classes: int):
    from lfe.training.models import get_model

    return get_model(protocol.model, num_classes=num_classes,
                     **dict(protocol.get("model_kwargs") or {}))


def measure(protocol: Any, *, image_shape: Sequence[int], num_classes: int,
            op_set: str = "paper", steps: int = STEPS, min_seconds: float = MIN_SECONDS,
            max_rounds: int = MAX_ROUNDS, clock: Callable[[], float] = time.perf_counter,
            on_row: Callable[[dict], None] | None = None) -> Rate:
    """``rate(k)``: candidate-steps/s of ``protocol``'s step with K candidates on JAX's default
    device (K = 1: the sequential step). Each K compiles once (cached with the process's other
    population steps, so a population of that K and shape later reuses it); ``on_row`` gets
    ``{"k", "rate", "compile_s", "peak_bytes"}`` per K."""
    from lfe.training import compile as compile_lib
    from lfe.training import population

    model, augment, _ = population.single_phase(_model_for(protocol, num_classes), protocol)
    batch = int(protocol.batch_size)
    rng = np.random.default_rng(0)
    host = rng.integers(0, 256, (4 * batch, *image_shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, len(host)).astype(np.int32)
    images = jax.device_put(host)

    def rate(k: int) -> float:
        start = clock()
        genomes = _library_genomes(op_set, k)
        codes = {n: jnp.asarray(v) for n, v in compile_lib.encode(genomes).items()}
        signs = jnp.ones(k, jnp.float32)
        eval_aug = population._population_fns(model, augment, op_set, False)[2]
        states, rngs = population.init_states(model, protocol, list(range(k)), eval_aug, host)
        totals = jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)),
                              population.train_lib.zero_totals())
        order = [rng.integers(0, len(host), (k, batch)).astype(np.int32) for _ in range(4)]
        if k == 1:  # the sequential step: one candidate's arrays, no K axis
            fn = population.sequential_step(model, augment, op_set)
            states, totals, rngs, codes, signs = jax.tree.map(
                lambda x: x[0], (states, totals, rngs, codes, signs))
            order, extra = [o[0] for o in order], ()
        else:
            fn = population._population_fns(model, augment, op_set, False)[0]
            extra = (jnp.ones(k, bool),)

        def step(i, s, t):
            index = order[i % len(order)]
            return fn(s, t, images, index, labels[index], rngs, codes, signs, *extra)

        for i in range(WARMUP):
            states, totals = step(i, states, totals)
        jax.block_until_ready(totals)
        compiled, done = clock(), 0
        for _ in range(max(1, max_rounds)):
            for i in range(steps):
                states, totals = step(i, states, totals)
            jax.block_until_ready(totals)
            done += steps
            if clock() - compiled >= min_seconds:
                break
        value = k * done / max(clock() - compiled, 1e-9)
        if on_row is not None:
            on_row({"k": k, "rate": value, "compile_s": compiled - start,
                    "peak_bytes": peak_bytes()})
        del states, totals
        gc.collect()
        return value

    return rate


def peak_bytes() -> int | None:
    """The default device's ``peak_bytes_in_use`` (None where the backend keeps no stats)."""
    try:
        return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001 (a backend without memory stats)
        return None


# ------------------------------------------------------------------------------- the caches

_CACHE: dict[tuple[str, str], Choice] = {}


def path(environ: Mapping[str, str] = os.environ) -> str:
    """The on-disk table ("" = none): ``$LFE_K_CHOICE``, else ``~/.cache/lfe/k_choice.json``."""
    return fileio.user_cache_path(ENV, "k_choice.json", environ)


def _read(file: str) -> dict:
    if not file or not os.path.exists(file):
        return {}
    try:
        table = fileio.read_json(file)
    except (OSError, ValueError):
        return {}  # unreadable: measure again (and rewrite it)
    return table if isinstance(table, dict) else {}


def _write(file: str, device: str, key: str, choice: Choice) -> None:
    if not file:
        return
    table = _read(file)  # read-modify-write: another process's entries are kept
    table.setdefault(device, {})[key] = {**choice.to_dict(), "jax": jax.__version__,
                                         "date": time.strftime("%Y-%m-%d %H:%M")}
    try:
        fileio.write_json_atomic(file, table)
    except OSError:
        pass  # a read-only home: the in-process cache still holds it


def shape_key(protocol: Any, *, image_shape: Sequence[int], num_classes: int,
              op_set: str) -> str:
    """What a step's cost depends on, as one JSON string (the caches' key)."""
    from lfe.training import progressive

    phase = progressive.from_protocol(protocol)[0]
    augment = progressive.augment_for_phase(
        progressive.resolve_augment(protocol.get("augment", "unit")), phase)
    kwargs = protocol.get("model_kwargs") or {}
    if isinstance(kwargs, ml_collections.ConfigDict):
        kwargs = kwargs.to_dict()
    return json.dumps({"model": protocol.model, "model_kwargs": kwargs, "augment": augment,
                       "batch_size": int(protocol.batch_size),
                       "dropout": getattr(phase, "dropout", None),
                       "image_shape": list(image_shape), "num_classes": int(num_classes),
                       "op_set": op_set, "jax": jax.__version__}, sort_keys=True, default=str)


def takes_population(protocol: Any) -> bool:
    from lfe.training import progressive

    return len(progressive.from_protocol(protocol)) == 1 and not protocol.get("init_from")


def choose(protocol: Any, *, image_shape: Sequence[int], num_classes: int,
           op_set: str = "paper", table: Mapping[str, int] | None = None,
           file: str | None = None, rate: Rate | None = None, max_k: int = MAX_K,
           min_gain: float = MIN_GAIN) -> Choice:
    """K for populations of ``protocol`` on JAX's default device (module docstring: in-process
    cache, disk table ``file`` (default ``path()``), ``table`` (default
    ``population.MEASURED_K``) by platform, then the measurement ``rate`` (default
    ``measure(...)``))."""
    from lfe.training import population

    if not isinstance(protocol, ml_collections.ConfigDict):
        protocol = ml_collections.ConfigDict(dict(protocol))
    dev = jax.devices()[0]
    device = f"{dev.platform}:{dev.device_kind}"
    if not takes_population(protocol):
        return Choice(1, "protocol", device)
    key = shape_key(protocol, image_shape=image_shape, num_classes=num_classes, op_set=op_set)
    if (device, key) in _CACHE:
        return _CACHE[(device, key)]
    file = path() if file is None else file
    entries = _read(file).get(device)
    stored = entries.get(key) if isinstance(entries, dict) else None
    if isinstance(stored, dict) and int(stored.get("k", 0)) >= 1:
        found = Choice(int(stored["k"]), "disk", device, tuple(stored.get("rates", ())))
        _CACHE[(device, key)] = found
        return found
    table = population.MEASURED_K if table is None else table
    if dev.platform in table:
        return Choice(int(table[dev.platform]), "table", device)
    if rate is None:
        rate = measure(protocol, image_shape=image_shape, num_classes=num_classes,
                       op_set=op_set)
    try:
        k, rows = select(rate, doubling(max_k), min_gain)
    except Exception as e:  # noqa: BLE001 (the sequential step failed: let training report it)
        return Choice(1, f"fallback: measurement failed ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:200] if str(e) else ''})", device)
    found = Choice(k, "measured", device, tuple(rows))
    _CACHE[(device, key)] = found
    _write(file, device, key, found)
    return found


def for_fitness(spec: dict, fitness_config: Any, stage: str = "surrogate") -> Choice:
    """``choose`` for the ``stage`` protocol of a fitness config (the longer run: a group's
    gate runs at the same K), on its dataset's image shape and classes and ``spec``'s op set."""
    from lfe.training import fitness, losses

    cfg = ml_collections.ConfigDict(fitness_config)
    dataset = fitness.stage_dataset(cfg, stage)
    loss = losses.from_spec(spec)
    return choose(cfg[stage], image_shape=dataset.train_images.shape[1:],
                  num_classes=dataset.num_classes,
                  op_set=loss.genome.op_set if loss.genome is not None else "paper")


__all__ = ["MAX_K", "MIN_GAIN", "Choice", "choose", "doubling", "for_fitness", "measure",
           "path", "select"]
