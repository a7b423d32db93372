"""2c. The ConvNet step on XLA:CPU: convolution lowering × malloc settings × threads.

    python -m bench.convnet_xla [--steps 50] [--repeats 2] [--no-write]

Each setting runs `bench.convnet_throughput`'s ``jax_step`` worker (NeuroLoss3, batch 128,
batches already on the device) in its own process; PyTorch (eager, torch.compile) runs in the
same thread settings as the reference. Settings:

- threads: ``all cores`` (XLA's default thread pool) or ``1 core`` (``taskset`` to one core and
  ``--xla_cpu_multi_thread_eigen=false``: a worker of the process-pool executor);
- malloc: glibc's defaults or `lfe.core.malloc`'s (``GLIBC_TUNABLES``, what ``python -m lfe.main``
  and the executors' workers run with);
- conv: ``taps`` (`lfe.training.models.common.TapsConv`) or ``xla`` (XLA's convolution).

Settings run interleaved (the order rotates every repeat); a process reports its best block.
Kernel (system) CPU time per step is reported separately: with glibc's defaults it is the page
faults of buffers that are unmapped and mapped again every step.
"""

from __future__ import annotations

import argparse
import itertools
import os

from bench import common, convnet_throughput

LOSS = "neuroloss3"


def settings() -> list[dict]:
    out = []
    for threads, tuned, conv in itertools.product(("all cores", "1 core"), (False, True),
                                                  ("taps", "xla")):
        out.append({"variant": "jax_step", "threads": threads, "tuned": tuned, "conv": conv})
    for threads, variant in itertools.product(("all cores", "1 core"),
                                              ("torch_eager", "torch_compile")):
        out.append({"variant": variant, "threads": threads, "tuned": True, "conv": "—"})
    return out


def _env(setting: dict) -> dict:
    from lfe.core import malloc

    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["JAX_PLATFORMS"] = "cpu"
    if setting["threads"] == "1 core":
        from lfe import executors

        env["XLA_FLAGS"] = executors.single_thread_flags(env.get("XLA_FLAGS", ""))
    return malloc.env(env) if setting["tuned"] else {**env, malloc.OPT_OUT: "1"}


def measure(setting: dict, steps: int, blocks: int) -> dict:
    import resource

    core = min(os.sched_getaffinity(0)) if setting["threads"] == "1 core" else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = convnet_throughput.spawn(setting["variant"], LOSS, steps, blocks,
                                   conv_impl=setting["conv"] if setting["conv"] != "—" else
                                   "auto", env=_env(setting), core=core)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    best = max(res["blocks"], key=lambda b: b["steps_per_s"])
    return {"steps_per_s": best["steps_per_s"], "cpu_ms": best["cpu_ms_per_step"],
            "sys_share": (after.ru_stime - before.ru_stime) / max(
                1e-9, (after.ru_stime - before.ru_stime) + (after.ru_utime - before.ru_utime))}


def label(s: dict) -> str:
    malloc = "lfe.core.malloc" if s["tuned"] else "glibc default"
    return f"{s['variant']} | {s['threads']} | {malloc} | {s['conv']}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=50, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    todo = [s for s in settings() if not (args.no_torch and s["variant"] != "jax_step")]
    results: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        shift = r % len(todo)
        for s in todo[shift:] + todo[:shift]:
            m = measure(s, args.steps, args.blocks)
            results.setdefault(label(s), []).append(m)
            print(f"repeat {r + 1} {label(s):55s} {m['steps_per_s']:6.1f} steps/s "
                  f"{m['cpu_ms']:6.1f} CPU ms/step, kernel {100 * m['sys_share']:.0f}%", flush=True)
    rows = []
    for s in todo:
        ms = results[label(s)]
        rows.append([*label(s).split(" | "), common.spread([m["steps_per_s"] for m in ms]),
                     common.spread([m["cpu_ms"] for m in ms]),
                     common.spread([100 * m["sys_share"] for m in ms])])
    text = (f"{LOSS}, batch 128; {args.repeats} repeats of one process per setting, each timing "
            f"{args.blocks} blocks of {args.steps} steps after compilation (best block). "
            "Cells: median (min–max) over repeats. 'kernel %' is the process's system CPU time "
            "over its total (whole process, compilation included).\n\n")
    text += common.table(["variant", "threads", "malloc", "conv", "steps/s", "CPU ms/step",
                          "kernel %"], rows)
    print(text)
    if not args.no_write:
        common.write_section("convnet_xla", "2c. ConvNet step on XLA:CPU: lowering × malloc × "
                             "threads", text)


if __name__ == "__main__":
    main()
