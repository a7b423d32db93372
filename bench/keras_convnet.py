"""2d. The authors' ConvNet step in Keras, timed in one run with the project's step and PyTorch.

    python -m bench.keras_convnet [--repeats 3] [--steps 100] [--blocks 2] [--threads all,1]
                                  [--variants ...] [--keras-python PATH] [--tiny] [--no-write]

The authors ran their ConvNet fitness (fitness_functions.py of their public code) as TF 2.x
`tf.keras` (Keras 2): a functional `Model`, `compile(loss, tf.optimizers.Adam(), metrics=
['accuracy'])` with Keras's defaults (so no XLA: `jit_compile` is off unless asked for), and
`model.fit` on a `tf.data` pipeline of batch 128 with a callback that sets the warmup-cosine
learning rate before every batch. `build_keras_convnet` is that model as the paper describes it
(the same layers as `lfe.training.models.convnet`: 13,930 trainable parameters at 10 classes, plus
72 BatchNorm statistics); the Keras side needs TensorFlow 2.15 (bench/requirements-keras.txt),
whose numpy < 2 pins clash with the project's, so it runs in its own virtual environment
(`.venv-bench`, found automatically; `--keras-python` names another interpreter).

Variants, each process timing `--blocks` blocks of `--steps` steps after compilation and a
10-step warm-up, on the same 8 synthetic batches resident in memory (`convnet_throughput.
_synthetic`, seed 0):

- `jax_step`: the project's jitted step (`bench.convnet_throughput`'s worker: donated state,
  batches already on the device, uint8 → [0, 1] inside the step);
- `torch_eager`, `torch_compile`: `bench.torch_convnet` (same model, loss and Keras-form Adam);
- `keras`: the authors' protocol step: one `model.fit(..., steps_per_epoch=steps)` call per
  block (an epoch of their 80 × 100-step run, without its validation pass) over a `tf.data`
  dataset of the same batches (float32 in [0, 1], one-hot labels, prefetched, as their
  pipeline hands them over), per-batch learning-rate callback, Adam (lr 1e-3 peak, Keras
  defaults), categorical cross-entropy on the softmax head, accuracy metric; `keras_xla`: the same
  with `compile(jit_compile=True)`.

The project's step and PyTorch use `--loss` (default `cross_entropy`, the genome of the loss the
Keras step uses). Thread settings: `all` (every usable core: XLA's default pool,
`torch.set_num_threads(n)`, TensorFlow's intra/inter-op pools of n) and `1` (`taskset` to one
core, `--xla_cpu_multi_thread_eigen=false`, one torch thread, TensorFlow pools of 1); every
process starts with `lfe.core.malloc`'s settings, as `python -m lfe.main` runs. Within a repeat
each thread setting runs all its variants back to back in an order that rotates every repeat,
and the thread settings alternate, so machine load hits all variants alike. Ratios are taken
within a repeat: project steps/s over the other's (wall), the other's CPU ms/step over the
project's (CPU time of the whole process, all threads).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

from bench import convnet_throughput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("jax_step", "torch_eager", "torch_compile", "keras", "keras_xla")
THREADS = {"all": "all cores", "1": "1 core"}
BATCH = convnet_throughput.BATCH
KERAS_VENV_PYTHON = os.path.join(ROOT, ".venv-bench", "bin", "python")


# --- the Keras side (runs in the TensorFlow interpreter: stdlib, numpy and tensorflow only) ---

def build_keras_convnet(num_classes: int = 10, shape=(32, 32, 3)):
    """The paper's ConvNet in tf.keras: Conv 12 → BN → swish → Conv 24 /2 → BN → swish →
    Conv 48 /2 → global average pool → dropout 0.1 → Dense softmax (Keras layer defaults:
    biases, Glorot-uniform kernels, BN momentum 0.99 and epsilon 1e-3, TF 'same' padding)."""
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = layers.Input(shape=shape)
    x = layers.Conv2D(12, (3, 3), padding="same")(inputs)
    x = layers.Activation("swish")(layers.BatchNormalization()(x))
    x = layers.Conv2D(24, (3, 3), strides=(2, 2), padding="same")(x)
    x = layers.Activation("swish")(layers.BatchNormalization()(x))
    x = layers.Conv2D(48, (3, 3), strides=(2, 2), padding="same")(x)
    x = layers.Dropout(0.1)(layers.GlobalAveragePooling2D()(x))
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return tf.keras.Model(inputs, outputs)


def warmup_cosine(step: int, peak=1e-3, warmup=800, total=8000) -> float:
    """The protocol's learning rate (`lfe.training.schedules.warmup_cosine`), on the host."""
    if step < warmup:
        return peak * step / warmup
    t = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return 0.5 * peak * (1.0 + math.cos(math.pi * t))


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


def worker_keras(steps: int, blocks: int, jit: bool) -> dict:
    import numpy as np
    import tensorflow as tf

    threads = len(os.sched_getaffinity(0))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(0)
    model = build_keras_convnet()
    model.compile(loss="categorical_crossentropy", optimizer=tf.keras.optimizers.Adam(),
                  metrics=["accuracy"], jit_compile=jit)

    class Schedule(tf.keras.callbacks.Callback):  # the learning rate set before every batch
        step = 0

        def on_train_batch_begin(self, batch, logs=None):
            # a variable in Keras 2 (tf_keras, TF 2.15) and Keras 3 (TF >= 2.16) alike
            self.model.optimizer.learning_rate.assign(warmup_cosine(Schedule.step))
            Schedule.step += 1

    images, labels = convnet_throughput._synthetic(8 * BATCH, 0)
    x = np.stack([images[i::8] for i in range(8)]).astype(np.float32) / 255.0
    y = np.eye(10, dtype=np.float32)[np.stack([labels[i::8] for i in range(8)])]
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().prefetch(tf.data.AUTOTUNE)
    schedule = Schedule()

    def block(n: int) -> dict:
        wall, cpu = time.perf_counter(), time.process_time()
        history = model.fit(data, epochs=1, steps_per_epoch=n, verbose=0, callbacks=[schedule])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"steps_per_s": n / wall, "cpu_ms_per_step": 1000 * cpu / n,
                "loss": float(history.history["loss"][-1])}

    t = time.perf_counter()
    block(3)  # traces (and with jit, compiles) the train function
    compile_s = time.perf_counter() - t
    block(10)  # warm-up
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"blocks": [block(steps) for _ in range(blocks)], "compile_s": compile_s,
            "threads": threads, "trainable": trainable, "non_trainable": frozen,
            "versions": f"tensorflow {tf.__version__}, keras {_version('keras')}",
            "jit_compile": bool(model.jit_compile)}


# --- the parent: which interpreters, which processes, interleaving, the report ---

def project_param_counts() -> tuple[int, int]:
    """(trainable, BatchNorm statistics) of `lfe.training.models.convnet` at 10 classes."""
    import jax
    import numpy as np

    from lfe.training.models import get_model

    shapes = jax.eval_shape(lambda: get_model("convnet", num_classes=10).init(
        jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32), train=False))
    count = lambda tree: int(sum(np.prod(a.shape) for a in jax.tree.leaves(tree)))  # noqa: E731
    return count(shapes["params"]), count(shapes.get("batch_stats", {}))


def keras_python(requested: str | None = None) -> str | None:
    """The interpreter with TensorFlow: ``requested``, else .venv-bench's, else this one when it
    has TensorFlow; None when there is none."""
    if requested:
        return requested
    if os.path.exists(KERAS_VENV_PYTHON):
        return KERAS_VENV_PYTHON
    return sys.executable if importlib.util.find_spec("tensorflow") else None


def available(variants, keras_py: str | None) -> tuple[list[str], list[str]]:
    """(runnable variants, notes on the ones skipped)."""
    keep, notes = [], []
    has_torch = importlib.util.find_spec("torch") is not None
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; available: {', '.join(VARIANTS)}")
        if v.startswith("torch") and not has_torch:
            notes.append(f"{v} skipped: torch is not installed (pip install -r "
                         f"bench/requirements.txt)")
        elif v.startswith("keras") and keras_py is None:
            notes.append(f"{v} skipped: no interpreter with TensorFlow (see bench/README.md)")
        else:
            keep.append(v)
    return keep, notes


def _env(threads: str, keras: bool) -> dict:
    from bench import convnet_xla

    env = convnet_xla._env({"threads": THREADS[threads], "tuned": True})
    if keras:  # TensorFlow's own XLA reads XLA_FLAGS; its pools are set in the worker
        env.pop("XLA_FLAGS", None)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def measure(variant: str, threads: str, loss: str, steps: int, blocks: int,
            keras_py: str | None) -> dict:
    core = min(os.sched_getaffinity(0)) if threads == "1" else None
    if not variant.startswith("keras"):
        return convnet_throughput.spawn(variant, loss, steps, blocks, env=_env(threads, False),
                                        core=core)
    cmd = [keras_py, "-m", "bench.keras_convnet", f"--worker={variant}", f"--steps={steps}",
           f"--blocks={blocks}"]
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_env(threads, True))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def schedule(variants, threads, repeats) -> list[tuple[int, str, str]]:
    """(repeat, threads, variant) in run order: thread settings alternate, variants rotate."""
    out = []
    for r in range(repeats):
        ts = threads if r % 2 == 0 else threads[::-1]
        for t in ts:
            shift = r % len(variants)
            out += [(r, t, v) for v in variants[shift:] + variants[:shift]]
    return out


def best(res: dict, field: str = "steps_per_s") -> float:
    """A process's number: its best block (the least disturbed by other load)."""
    pick = max if field == "steps_per_s" else min
    return pick(b[field] for b in res["blocks"])


def report(results: dict, variants, threads, *, repeats, steps, blocks, loss, params, notes,
           versions: str = "") -> str:
    from bench import common

    rows, ratio_rows = [], []
    for t in threads:
        for v in variants:
            runs = results.get((t, v), [])
            if not runs:
                continue
            note = f"compile {sorted(r['compile_s'] for r in runs)[len(runs) // 2]:.1f} s"
            rows.append([THREADS[t], v, common.spread([best(r) for r in runs]),
                         common.spread([best(r, "cpu_ms_per_step") for r in runs]), note])
        mine = results.get((t, "jax_step"), [])
        for v in variants:
            theirs = results.get((t, v), [])
            if v == "jax_step" or not mine or not theirs:
                continue
            pairs = list(zip(mine, theirs, strict=True))
            ratio_rows.append([THREADS[t], f"jax_step / {v}",
                               common.spread([best(a) / best(b) for a, b in pairs]),
                               common.spread([best(b, "cpu_ms_per_step") /
                                              best(a, "cpu_ms_per_step") for a, b in pairs])])
    (p_train, p_stats), (k_train, k_stats) = params
    same = "equal" if (p_train, p_stats) == (k_train, k_stats) else "**differ**"
    text = (f"Batch {BATCH}, 32×32×3, the same 8 synthetic batches resident in memory; "
            f"project and PyTorch step: loss `{loss}`, Keras-form Adam + warmup-cosine; Keras: "
            f"the authors' `model.fit` step (categorical cross-entropy, Adam, per-batch "
            f"learning-rate callback, accuracy metric), `keras` with Keras's default "
            f"(no XLA), `keras_xla` with `jit_compile=True`{versions}. Parameters: project "
            f"ConvNet {p_train:,} trainable + {p_stats} BatchNorm statistics, Keras "
            f"{k_train:,} + {k_stats} ({same}). {repeats} repeats; a process times {blocks} "
            f"blocks of {steps} steps after compilation and a 10-step warm-up and reports its "
            f"best block; cells: median (min–max) over repeats.\n\n")
    text += common.table(["threads", "variant", "steps/s", "CPU ms/step", "note"], rows)
    text += ("\n\nRatios within each repeat (>1: the project's step is faster); CPU ratio = "
             "the other's CPU ms/step / the project's:\n\n")
    text += common.table(["threads", "ratio", "wall, median (min–max)", "CPU, median (min–max)"],
                         ratio_rows)
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def main(argv=None) -> str | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=100, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=2, help="timed blocks per process")
    p.add_argument("--threads", default="all,1", help="thread settings: all, 1 or all,1")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--loss", default="cross_entropy", help="the project's and PyTorch's loss")
    p.add_argument("--keras-python", default=None,
                   help="interpreter with TensorFlow 2.15 (default: .venv-bench/bin/python)")
    p.add_argument("--tiny", action="store_true",
                   help="1 repeat of 1 block of 3 steps (a check that everything runs)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker_keras(args.steps, args.blocks, args.worker == "keras_xla")),
              flush=True)
        return None
    if args.tiny:
        args.repeats, args.steps, args.blocks = 1, 3, 1
    threads = args.threads.split(",")
    if not set(threads) <= set(THREADS):
        p.error(f"--threads: choose from {', '.join(THREADS)}")
    keras_py = keras_python(args.keras_python)
    variants, notes = available(args.variants.split(","), keras_py)
    if "jax_step" not in variants:
        p.error("--variants must include jax_step (the reference of every ratio)")
    for n in notes:
        print(n, flush=True)

    results: dict[tuple[str, str], list[dict]] = {}
    for r, t, v in schedule(variants, threads, args.repeats):
        res = measure(v, t, args.loss, args.steps, args.blocks, keras_py)
        results.setdefault((t, v), []).append(res)
        print(f"repeat {r + 1} {THREADS[t]:9s} {v:14s} {best(res):6.1f} steps/s "
              f"{best(res, 'cpu_ms_per_step'):6.1f} CPU ms/step", flush=True)
    project = project_param_counts()
    keras_runs = [res for (_, v), runs in results.items() if v.startswith("keras") for res in runs]
    keras = ((keras_runs[0]["trainable"], keras_runs[0]["non_trainable"]) if keras_runs else
             project)
    versions = f" ({keras_runs[0]['versions']})" if keras_runs else ""
    print(f"parameters: project ConvNet {project[0]:,} trainable + {project[1]} BatchNorm "
          f"statistics; Keras {keras[0]:,} + {keras[1]}", flush=True)
    body = report(results, variants, threads, repeats=args.repeats, steps=args.steps,
                  blocks=args.blocks, loss=args.loss, params=(project, keras), notes=notes,
                  versions=versions)
    print(body)
    if not args.no_write:
        from bench import common

        common.write_section("keras_convnet", "2d. The authors' Keras ConvNet step beside the "
                             "project's and PyTorch's", body)
    return body


if __name__ == "__main__":
    main()
