r"""The paper's search (§3.10): regularized evolution with the EfficientNetV2-S surrogate.

    python -m lfe.main --config=configs/surrogate.py --workdir=runs/surrogate

Initial population 1,000 random valid genomes scored with the ConvNet for 8,000 steps, the best
100 form the population; tournament 20 (with replacement); up to 2,500 mutation attempts per child
and 7 failed children per iteration; 2,000 iterations (the paper ran 100 h on one A100).
Fitness: the gate (ConvNet 800 steps, train acc >= 0.37), then the surrogate of §3.5.1:
EfficientNetV2-S at 96x96, RandAugment 2 layers magnitude 5, dropout 0.1, batch 64, Adam 1e-3
with linear warm-up 6,400 then cosine over 64,000 steps, stopped after 8,000 steps; early stop 2
(train acc < 0.25 by step 3,000 stops the run; the best validation accuracy so far is the
fitness). It needs an accelerator. Rerunning the command resumes the run from its work directory.

As the paper and the authors' code run the search: a child's novelty is checked against the
current population (``novelty: population``; ``archive`` checks every genome ever drawn); the
best 100 initial genomes are **re-scored** on the surrogate (gate included) before evolution
starts (``rescore_initial: True`` here, where the initial protocol, the ConvNet, differs from the
surrogate, so that one protocol's accuracies fill the tournaments; a failed re-scoring leaves
the member fitness 0 until it ages out; ``--config.rescore_initial=False`` keeps the ConvNet
scores; off in ``:convnet``, whose surrogate is the initial protocol plus early stop 2); a
surrogate run that hits a non-finite loss keeps its best validation accuracy so far
(``fitness.on_diverged: best_so_far``; ``failed`` makes it a failed child).

Executor: ``auto`` (every mode's default, ``lfe.executors.resolve``). On a host with GPUs or TPU
chips it is ``devices``: one long-lived worker process per device, each training one candidate
at a time on its own device (``CUDA_VISIBLE_DEVICES=<i>``) and keeping JAX, the dataset and the
compiled steps across candidates; on a host without one it is the pinned CPU pool (``pool``).
Choose another with ``--config.executor=``: ``ray`` for a cluster, one warm worker per GPU
(launch/README.md); ``inprocess`` to train each candidate data parallel over all local devices in
this process; ``pool`` for the CPU pool on any host. ``--config.workers=N`` sets how many
workers (more than the GPUs share them, without preallocation).
The surrogate's augmentation and stochastic depth follow the authors' code (a square of the
shorter side, i.e. no crop on CIFAR; RandAugment with reflected borders and a 17th do-nothing
branch; no stochastic depth; ``configs/effnetv2_s.py``). Variant ``:automl``: the google/automl
recipe instead (lfe's before issue #21). Variant ``:convnet``: the same search with the ConvNet
surrogate for CPUs (the protocol of the paper's initial evolutionary run, §3.6: 8,000 steps,
batch 128, Adam 1e-3, warm-up 800 + cosine, with early stop 2).
"""

import ml_collections

from configs import common
from lfe.core import protocol as protocol_lib
from lfe.experiments import evolve


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, model=common.one_of("convnet", "automl", default=""))
    c = evolve.default_config()
    if variant.model != "convnet":
        c.fitness.surrogate = protocol_lib.surrogate_protocol(
            recipe="automl" if variant.model == "automl" else "authors")
        c.rescore_initial = True  # the initial protocol (ConvNet) is not the surrogate's
    return c
