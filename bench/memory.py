"""Memory: peak RSS of one ConvNet fitness evaluation and of a controller holding an archive.

    python -m bench.memory [--steps 100] [--archive 10000] [--no-write]

Each measurement runs in a fresh subprocess (spawned interpreter) and reads its peak resident
set size from ``resource.getrusage`` (Linux reports KiB), so nothing of this process counts:

* fitness: the gate protocol's training run (ConvNet, batch 128, Adam, no augmentation) with
  cross-entropy on the real CIFAR-10 in ``$LFE_DATA_DIR``, shortened to ``--steps`` steps (the
  peak is reached once the train step is compiled and the data are resident);
* controller: a JAX-free process that samples random genomes until ``--archive`` of them pass
  the integrity check (the novelty archive then holds that many phenotypes), plus the
  evolution-state candidates of those genomes as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench import common

FITNESS = r"""
import json, os, resource, sys, time
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
steps = int(sys.argv[1]); out = {"python": rss()}
from lfe.core import protocol as protocol_lib
from lfe.training import fitness, losses
out["imports"] = rss()
cfg = protocol_lib.fitness_config()
data = fitness.load_dataset(cfg.dataset, os.environ.get("LFE_DATA_DIR", ""))
out["dataset"] = rss()
cfg.gate.steps = steps
t = time.perf_counter()
res = fitness.train_once(losses.get("cross_entropy"), cfg.gate, data, seed=0)
out["train_s"] = time.perf_counter() - t
out["train"] = rss()
out["steps_run"] = res.steps_run
print(json.dumps(out))
"""

CONTROLLER = r"""
import json, resource, sys
import numpy as np
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
n = int(sys.argv[1]); out = {"python": rss()}
from lfe.core import equation, genome, integrity
out["imports"] = rss()
archive = integrity.Archive()
found = integrity.sample_valid(np.random.default_rng(0), n, archive, batch_size=4096)
out["archive"] = rss()
cands = [{"id": i, "genome": genome.to_dict(g), "sign": v.sign,
          "equation": equation.text(g, v.sign)} for i, (g, v) in enumerate(found)]
out["state_mb"] = len(json.dumps(cands)) / 2 ** 20
out["archive_mb"] = archive.nbytes / 2 ** 20
out["archive_used_mb"] = archive.phenotypes.nbytes / 2 ** 20
out["jax_imported"] = "jax" in sys.modules
out["final"] = rss()
print(json.dumps(out))
"""


def measure(script: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=common.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("JAX_PLATFORMS", "cpu")
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=common.ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"benchmark subprocess failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--archive", type=int, default=10_000)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if not os.environ.get("LFE_DATA_DIR"):
        sys.exit("set LFE_DATA_DIR to the CIFAR-10 binary directory")
    fit = measure(FITNESS, str(a.steps))
    print("fitness", fit, flush=True)
    ctl = measure(CONTROLLER, str(a.archive))
    print("controller", ctl, flush=True)
    body = "\n\n".join([
        "Peak RSS (MiB, `resource.getrusage` ru_maxrss) of a fresh process after each phase:",
        common.table(["process", "after imports", "after data / archive", "peak (end)", "notes"], [
            ["ConvNet fitness evaluation (gate protocol, cross-entropy, real CIFAR-10)",
             fit["imports"], fit["dataset"], fit["train"],
             f"{fit['steps_run']} steps in {fit['train_s']:.0f} s"],
            [f"controller with a {a.archive:,}-genome archive (JAX-free: "
             f"{not ctl['jax_imported']})", ctl["imports"], ctl["archive"], ctl["final"],
             f"archive store {ctl['archive_mb']:.1f} MiB ({ctl['archive_used_mb']:.1f} MiB "
             f"used), candidates as JSON {ctl['state_mb']:.1f} MiB"],
        ]),
        "What limits it: the fitness process is dominated by JAX/XLA itself and the resident "
        "CIFAR-10 arrays (50,000 × 32 × 32 × 3 uint8 ≈ 147 MiB plus the validation split) "
        "and the compiled train step; the controller's archive costs 4 KB per phenotype "
        "(1,000 float32), grown by doubling, so 10,000 genomes are ~40–80 MiB; the rest is "
        "NumPy/SciPy and the check's working set while sampling.",
    ])
    print(body)
    if not a.no_write:
        common.write_section("memory", "6. Memory", body)


if __name__ == "__main__":
    main()
