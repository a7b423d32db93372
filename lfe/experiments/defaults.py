"""The modes' default configs and their checks, importable without JAX.

``configs/*.py`` build on these, and a config never imports JAX (the controller of an evolution
never does, and building a config should not cost a JAX import); each mode's
``default_config()`` returns its own from here (``evolve``'s lives in its JAX-free module).
Every training mode has the runner block of ``lfe.executors.runner`` — ``executor``,
``workers``, ``ray``, ``data_dir``, ``seeds`` — and ``check`` refuses a bad runner field or
protocol before the mode trains anything. A pipeline has one ``data_dir`` that every stage
references (``bind_data_dir``).
"""

from __future__ import annotations

import itertools

import ml_collections

from lfe import executors
from lfe.core import protocol as protocol_lib
from lfe.core import rundir


def check(config) -> None:
    """Refuses, with one line naming the key, a bad runner field (``executors.check_runner``)
    or a protocol whose steps are not its phases' sum (``protocol.check_protocols``)."""
    executors.check_runner(config)
    protocol_lib.check_protocols(config)


def evolve() -> ml_collections.ConfigDict:
    """``mode: evolve``: the paper's search (§3.10); ``fitness`` holds its protocols."""
    c = ml_collections.ConfigDict()
    c.mode = "evolve"
    c.op_set = "paper"
    c.init = "authors"  # "authors" (p_unary 0.7 hidden / 0.2 root) or "uniform" (§3.2 text)
    c.initial_population = 1000
    c.population_size = 100
    c.tournament_size = 20
    c.max_mutation_attempts = 2500
    c.max_failed_children = 7
    c.max_iterations = 2000
    c.max_hours = 0.0  # wall-clock budget per invocation; 0 = none
    # training budget of the whole run over all sessions: the summed wall time of its
    # evaluations (one core each on the pool executor); no new candidate once spent; 0 = none
    c.max_core_hours = 0.0
    # the same budget in training steps (gates, surrogate runs and rung tasks over all
    # sessions), which does not depend on the machine's speed; 0 = none
    c.max_steps = 0
    # a child's novelty is checked against the current population ("population", Alg. 1 and
    # §3.3: a copy may return once its original aged out) or every genome drawn ("archive")
    c.novelty = "population"
    # score the best initial genomes again with the surrogate before evolving (the authors'
    # code); on in configs/surrogate.py, whose initial and surrogate protocols differ
    c.rescore_initial = False
    # multi-fidelity (lfe.core.rungs; () = off, the paper's schedule): steps of a child's
    # surrogate run where it stops unless its best training ("train") or validation ("val")
    # accuracy so far ranks in the top rung_fraction of the children that got there before it
    c.rungs = ()
    c.rung_fraction = 1 / 3
    c.rung_score = "train"
    executors.runner(c, seed=0)  # executor, workers, ray, data_dir, seed
    c.fitness = protocol_lib.fitness_config()
    c.fitness.data_dir = c.get_ref("data_dir")  # the fitness config workers get carries it
    c.ce_band = ()  # cross-entropy's (max, mean, min) fitness on the surrogate, for Figure 4
    c.top_k = 10  # genomes kept in best.json
    c.plot_every = 10  # redraw figures every N told evaluations; 0 = no figures (mode: report)
    c.command = ""
    return c


def compare() -> ml_collections.ConfigDict:
    """``mode: compare``: losses x seeds on one protocol."""
    c = ml_collections.ConfigDict()
    c.mode = "compare"
    c.title = "Loss comparison"
    c.losses = "cross_entropy,neuroloss1,neuroloss2,neuroloss3"
    c.dataset = "cifar10"
    c.protocol = protocol_lib.training_protocol()
    executors.runner(c, seeds=5)
    c.paper = ml_collections.ConfigDict()
    c.command = ""
    return c


def eliminate() -> ml_collections.ConfigDict:
    """``mode: eliminate``: the elimination protocol (§3.9) on an evolution run."""
    c = ml_collections.ConfigDict()
    c.mode = "eliminate"
    c.source = ""  # an evolve --workdir
    # the genomes ranked for keep[0]: "surrogate" (scored by the search's surrogate), "initial"
    # (the initial population, another protocol) or "" (every evaluated genome, both scales)
    c.candidates_stage = "surrogate"
    c.keep = (150, 50, 25, 10)  # losses trained in stages 1..4 (stage k: phases 1..k)
    c.groups = 1  # >1: keep[0] each of the best keep[0] * groups, eliminated separately
    c.finalists = 0  # >0: of each group's last stage keep only this many (0 = all)
    c.references = "cross_entropy"  # trained in every stage for comparison, never eliminated
    c.dataset = "cifar10"
    c.protocol = protocol_lib.training_protocol()  # needs `phases` (one per stage)
    executors.runner(c, seeds=1)  # the ranking uses the mean over seeds
    return c


def transfer() -> ml_collections.ConfigDict:
    """``mode: transfer``: settings x losses x seeds (§4.3, Table 3)."""
    c = ml_collections.ConfigDict()
    c.mode = "transfer"
    c.title = "Transfer"
    c.losses = "neuroloss1,neuroloss2,neuroloss3,cross_entropy"  # names or genome JSON paths
    # key -> {"loss": spec, "label_smoothing": a, "name": display name (default: the key)}
    c.variants = ml_collections.ConfigDict()
    c.settings = ml_collections.ConfigDict()  # name -> setting(...)
    executors.runner(c, seeds=5)
    # Report layout: "loss" tables (rows losses; sub-tables by `split` axes, columns by
    # `columns` axes) or a "tau" table (Kendall's τ of each setting vs `reference`).
    # `order`: labels in the order the paper prints them (others follow, numbers numerically).
    c.layout = ml_collections.ConfigDict({"kind": "loss", "split": ("dataset",),
                                          "columns": ("architecture",), "rows": (),
                                          "order": ()})
    c.metric = "final"  # "final": last evaluation's accuracy; "best": best over evaluations
    c.p_values = ("greater", "two-sided")  # Welch vs cross-entropy per column; () for none
    c.reference = ""  # the setting the "tau" layout ranks against
    c.paper = ml_collections.ConfigDict()  # column title -> {loss: published value}
    c.command = ""  # lfe.main records the command line that ran it (the Reproduce line)
    return c


def setting(architecture: str, dataset: str, augmentation: str, protocol,
            train_split: str = "train+val", eval_split: str = "test") -> ml_collections.ConfigDict:
    """One column of a transfer table: ``protocol`` trained on ``dataset``."""
    return ml_collections.ConfigDict({
        "architecture": architecture, "dataset": dataset, "augmentation": augmentation,
        "protocol": protocol, "train_split": train_split, "eval_split": eval_split})


def _override(protocol: dict, overrides: dict) -> dict:
    out = dict(protocol)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _override(out[key], value)
        out[key] = value
    return out


def grid(architectures: dict, datasets: list[str], augmentations: dict | None = None,
         **split_kwargs) -> ml_collections.ConfigDict:
    """Transfer settings for every architecture × dataset × augmentation, keyed
    ``<architecture>__<dataset>__<augmentation>``. ``architectures``: name -> protocol;
    ``augmentations``: name -> protocol overrides (``{}`` keeps the architecture's own)."""
    augmentations = augmentations if augmentations is not None else {"default": {}}
    out = ml_collections.ConfigDict()
    for (arch, protocol), dataset, (aug, overrides) in itertools.product(
            architectures.items(), datasets, augmentations.items()):
        proto = _override(rundir.to_plain(protocol), rundir.to_plain(overrides))
        out[f"{arch}__{dataset}__{aug}"] = setting(arch, dataset, aug, proto, **split_kwargs)
    return out


def report() -> ml_collections.ConfigDict:
    """``mode: report``: tables and figures of a finished run directory."""
    c = ml_collections.ConfigDict()
    c.mode = "report"
    c.run_dir = ""  # the run directory to report on; "" = --workdir itself
    return c


def pipeline() -> ml_collections.ConfigDict:
    """``mode: pipeline``: evolve → eliminate → transfer → report, one ``data_dir`` for all."""
    c = ml_collections.ConfigDict()
    c.mode = "pipeline"
    c.data_dir = ""  # every stage's data ("" = $LFE_DATA_DIR, else tensorflow-datasets)
    c.evolve = evolve()
    c.eliminate = eliminate()
    c.transfers = ml_collections.ConfigDict()  # name -> a transfer config
    c.transfer_finalists = 3  # the paper carried its final three losses to §4.3
    return bind_data_dir(c)


def bind_data_dir(config) -> ml_collections.ConfigDict:
    """Points the ``data_dir`` of every stage of a pipeline ``config`` (evolve's, and so its
    fitness's; eliminate's; each transfer's) at the pipeline's own; returns ``config``. Call it
    again after replacing a stage."""
    ref = config.get_ref("data_dir")
    for stage in (config.evolve, config.eliminate, *config.transfers.values()):
        if "data_dir" not in stage or stage.get_ref("data_dir") is not ref:
            stage.data_dir = ref
    return config
