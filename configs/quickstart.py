r"""Quickstart: a CPU-sized evolution on real CIFAR-10 (28 min measured on 2 shared cores).

    python -m lfe.main --config=configs/quickstart.py --workdir=runs/quickstart

The paper's method scaled down: 16 random valid genomes in the initial population (ConvNet,
600 steps), population 8, tournament 4, 20 iterations; each child passes a 200-step ConvNet gate
(train acc >= 0.20) before a 600-step ConvNet surrogate run. Two worker processes, one per core.
Produces the full run directory (state, events, best genomes, Figures 2-4, TensorBoard events).
Variant ``:runlocal``: a smoke run (4 initial, population 3, 4 iterations, 100 steps): 76 s
measured in-process on an idle 2-core machine (BENCHMARKS.md §5), 16–19 min with the 2 cores
shared by several other jobs.
"""

import ml_collections

from configs import common
from lfe.experiments import evolve


def _shorten(protocol, steps: int, total: int, warmup: int, eval_every: int) -> None:
    protocol.steps, protocol.total_steps = steps, total
    protocol.warmup_steps, protocol.eval_every = warmup, eval_every
    protocol.eval_batch_size = 1000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, runlocal=False)
    c = evolve.default_config()
    c.initial_population = 16
    c.population_size = 8
    c.tournament_size = 4
    c.max_iterations = 20
    f = c.fitness
    _shorten(f.initial, 600, 600, 100, 100)
    _shorten(f.surrogate, 600, 600, 100, 100)
    f.surrogate.stop_rules = ((300, 0.15),)
    _shorten(f.gate, 200, 600, 100, 100)
    f.gate_min_train_accuracy = 0.20
    if variant.runlocal:
        c.initial_population, c.population_size, c.tournament_size = 4, 3, 2
        c.max_iterations = 4
        for p in (f.initial, f.surrogate, f.gate):
            _shorten(p, 100, 100, 20, 50)
        f.surrogate.stop_rules = ()
        f.gate_min_train_accuracy = 0.12
    return c
