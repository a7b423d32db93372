"""The config surface every mode shares: the runner block (executor, workers, ray, data_dir,
seeds), one data_dir per pipeline, step counts stated once, and bad values refused before any
training (``lfe.executors.runner`` / ``check_runner``, ``lfe.core.protocol.check_protocols``)."""

import os
import shutil
import subprocess
import sys

import ml_collections
import pytest

from configs import cpu_evolution, quickstart, table4, transfer_paper
from configs import pipeline as pipeline_config
from lfe import executors
from lfe.core import evolution, fileio, rundir
from lfe.core import protocol as protocol_lib
from lfe.experiments import compare, defaults, eliminate, evolve, pipeline, transfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = {"executor", "workers", "ray", "max_task_retries", "data_dir"}


def test_every_training_mode_has_one_runner_block():
    for mode, seeds in ((compare, "seeds"), (eliminate, "seeds"), (transfer, "seeds"),
                        (evolve, "seed")):
        c = mode.default_config()
        assert RUNNER | {seeds} <= set(c), mode.__name__
        assert c.executor == "auto" and c.workers == 0 and c.data_dir == ""  # by the hardware
        assert c.ray.to_dict() == executors.ray_config().to_dict()
    assert "seed" not in compare.default_config() and "seeds" not in evolve.default_config()


def test_evolve_fitness_data_dir_is_the_top_level_one():
    c = quickstart.get_config("runlocal")
    c.lock()  # as main's config flag holds it
    c.data_dir = "/data/a"
    assert c.fitness.data_dir == "/data/a"
    assert c.fitness.to_dict()["data_dir"] == "/data/a"  # what the workers get
    c.fitness.data_dir = "/data/b"  # the older key still sets the same value
    assert c.data_dir == "/data/b" and rundir.to_plain(c)["fitness"]["data_dir"] == "/data/b"


@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_pipeline_has_one_data_dir_for_every_stage(arg):
    for c in (pipeline_config.get_config(arg), pipeline.default_config()):
        c.lock()
        c.data_dir = "/data/p"
        stages = [c.evolve, c.evolve.fitness, c.eliminate, *c.transfers.values()]
        assert [s.data_dir for s in stages] == ["/data/p"] * len(stages)
        plain = pipeline._copy(c.evolve)  # a stage as the pipeline runs it
        assert (plain.data_dir, plain.fitness.data_dir) == ("/data/p", "/data/p")
    c = pipeline_config.get_config(arg)
    c.transfers.extra = transfer_paper.get_config("table9,runlocal")
    defaults.bind_data_dir(defaults.bind_data_dir(c))  # a stage added later; binding twice
    c.data_dir = "/data/q"
    assert c.transfers.extra.data_dir == c.transfers.table9.data_dir == "/data/q"


def test_the_committed_cpu_evolution_run_resumes(tmp_path):
    """results/cpu_evolution/run/config.json was written before data_dir moved to the top level
    (and with the old evaluator key); the current config with the run's overrides resumes it."""
    saved_path = os.path.join(ROOT, "results", "cpu_evolution", "run", "config.json")
    shutil.copy(saved_path, tmp_path / "config.json")
    saved = fileio.read_json(saved_path)
    assert "data_dir" not in saved and "data_dir" in saved["fitness"]
    c = cpu_evolution.get_config()
    c.ce_band = tuple(saved["ce_band"])  # --config.ce_band from the CE baseline (docstring)
    c.max_iterations = 30  # the run was cut to 30 iterations (docstring)
    claim = {"may_change": evolve.RESUMABLE_CHANGES, "absent": evolve.BEFORE_SETTING}
    # settings newer than the run: its values must be passed to resume it, each named
    with pytest.raises(ValueError, match=r"different config \(fitness.on_diverged: 'failed' "
                                         r"\(this run, before the setting existed\) → "
                                         r"'best_so_far', novelty: 'archive' \(this run, before "
                                         r"the setting existed\) → 'population'\)"):
        rundir.claim(str(tmp_path), c, **claim)
    c.novelty, c.fitness.on_diverged = "archive", "failed"  # README: resuming this run
    assert "data_dir" in rundir.changed_keys(saved, c)  # the guard would see the new key ...
    rundir.claim(str(tmp_path), c, **claim)  # ... and lets it be
    c.population_size = 13  # a real change is still refused
    shutil.copy(saved_path, tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"different config \(population_size: 12 → 13\)"):
        rundir.claim(str(tmp_path), c, **claim)


BAD = [("executor", "nope", "unknown executor 'nope'; available: auto, inprocess, pool, devices"),
       ("workers", -1, "config.workers must be an integer >= 0, got -1"),
       ("max_task_retries", -1, "config.max_task_retries must be an integer >= 0, got -1"),
       ("ray.num_gpus", -0.5, "config.ray.num_gpus must be a number >= 0, got -0.5"),
       ("ray.max_retries", -1, "config.ray.max_retries must be an integer >= 0, got -1"),
       ("ray.timeout_s", -1.0, "config.ray.timeout_s must be a number >= 0, got -1.0"),
       ("seeds", 0, "config.seeds must be an integer >= 1, got 0"),
       ("seeds", (), "config.seeds must name at least one seed"),
       ("seeds", (0, -2), "config.seeds must be an integer >= 0, got -2")]


@pytest.mark.parametrize("key,value,message", BAD)
def test_bad_runner_fields_are_refused_in_one_line(key, value, message):
    c = compare.default_config().to_dict()
    *path, last = key.split(".")
    inner = c
    for part in path:
        inner = inner[part]
    inner[last] = value  # plain data: seeds may be a list as well as a count
    with pytest.raises(ValueError) as e:
        executors.check_runner(ml_collections.ConfigDict(c))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_evolve_seed_is_checked():
    c = evolve.default_config()
    c.seed = -1
    with pytest.raises(ValueError, match=r"config\.seed must be an integer >= 0, got -1"):
        executors.check_runner(c)
    executors.check_runner(evolve.default_config())


def test_every_mode_refuses_a_bad_field_before_any_file(tmp_path):
    configs = {"compare": table4.get_config("runlocal"),
               "transfer": transfer_paper.get_config("table9,runlocal"),
               "eliminate": eliminate.default_config(),
               "evolve": quickstart.get_config("runlocal")}
    for name, c in configs.items():
        c.workers = -2
        workdir = tmp_path / name
        with pytest.raises(ValueError, match="config.workers must be an integer >= 0"):
            {"compare": compare, "transfer": transfer, "eliminate": eliminate,
             "evolve": evolve}[name].run(c, str(workdir))
        assert not workdir.exists(), name
    p = pipeline_config.get_config("runlocal")
    p.transfers.table9.seeds = 0  # the last stage's field fails before the first stage trains
    with pytest.raises(ValueError, match="config.seeds must be an integer >= 1"):
        pipeline.run(p, str(tmp_path / "pipeline"))
    assert not (tmp_path / "pipeline").exists()


def test_cli_reports_a_bad_runner_field_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lfe.main", "--config=configs/table4.py:runlocal",
                          f"--workdir={tmp_path}/run", "--config.ray.num_cpus=-1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "lfe: error: config.ray.num_cpus must be a number >= 0, got -1.0")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ step counts, stated once

def test_phases_state_the_steps():
    phases = [{"steps": 30, "dropout": 0.1}, {"steps": 50, "dropout": 0.2}]
    p = protocol_lib.training_protocol(phases=phases, total_steps=1000)
    assert (p.steps, p.total_steps) == (80, 1000)  # total_steps: the schedule's horizon
    with pytest.raises(ValueError, match=r"^protocol: steps = 90 but the phases sum to 80 "):
        protocol_lib.training_protocol(phases=phases, steps=90)
    s = protocol_lib.surrogate_protocol()  # stops after 8,000 steps of a 64,000-step schedule
    assert (s.steps, s.total_steps) == (8000, 64000)
    protocol_lib.check_steps(s)


def test_a_mismatch_is_named_by_its_key_and_refused_before_training(tmp_path):
    c = evolve.default_config()
    c.fitness.surrogate = protocol_lib.surrogate_protocol()
    c.fitness.surrogate.steps = 9000
    with pytest.raises(ValueError, match=r"^fitness\.surrogate: steps = 9000 but the phases "
                                         r"sum to 8000 steps"):
        evolve.run(c, str(tmp_path / "evolve"))
    t = transfer_paper.get_config("table9")
    t.settings.efficientnetv2_s__cifar10__default.protocol.steps = 1
    with pytest.raises(ValueError, match=r"^settings\.efficientnetv2_s__cifar10__default\."
                                         r"protocol: steps = 1 but the phases sum to 96000"):
        transfer.run(t, str(tmp_path / "transfer"))
    assert not os.listdir(tmp_path)


def test_the_search_runs_as_the_paper_by_default_and_bad_settings_fail_before_any_file(tmp_path):
    from configs import surrogate

    c = evolve.default_config()
    assert (c.novelty, c.rescore_initial, c.fitness.on_diverged) \
        == ("population", False, "best_so_far")
    assert evolve.params_of(c) == evolution.Params(novelty="population", rescore_initial=False)
    assert surrogate.get_config().rescore_initial  # the ConvNet initial protocol differs
    assert not surrogate.get_config("convnet").rescore_initial  # the same protocol
    for key, value, message in (("novelty", "all", "novelty must be one of population, archive"),
                                ("fitness.on_diverged", "nan", "on_diverged must be one of")):
        bad = evolve.default_config()
        bad.update_from_flattened_dict({key: value})
        with pytest.raises(ValueError, match=message):
            evolve.run(bad, str(tmp_path / "run"))
        assert not (tmp_path / "run").exists()
