"""lfe.experiments.validation: every config value checked before a mode runs (issue #18)."""

import importlib

import pytest

from configs import pipeline as pipeline_config
from configs import quickstart, transfer_paper
from lfe import catalog
from lfe.experiments import validation


def every_config_and_variant():
    """(module name, variant arg) for each config, its default and each single variant."""
    out = []
    for name in catalog.names():
        e = catalog.entry(name)
        parts = [p.strip() for p in e.variants.replace("(one required)", "").split(",")]
        choices = [c.strip() for p in parts if p != "none" for c in p.split("|")]
        required = "table9" if name == "transfer_paper.py" else None
        for arg in [required] + choices:
            if "=" in (arg or ""):
                continue
            if required and arg and arg != required and not arg.startswith("table"):
                arg = f"{required},{arg}"
            out.append((name[:-3], arg))
    return out


def test_every_shipped_config_and_variant_passes():
    seen = 0
    for module, arg in every_config_and_variant():
        config = importlib.import_module(f"configs.{module}").get_config(arg)
        validation.check(config)  # raises on the first bad key
        seen += 1
    assert seen >= 30


def bad(config, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        validation.check(config)
    assert str(info.value) == expected
    assert "\n" not in str(info.value)


def test_ce_band_needs_three_ordered_fitness_values():
    c = quickstart.get_config()
    c.ce_band = ("abc",)
    expected = ("config.ce_band: expected () or three fitness values (max, mean, min) in [0, 1], "
                "max >= mean >= min, e.g. '(0.514,0.502,0.493)', got ('abc',)")
    bad(c, expected)
    c.ce_band = (51.4, 50.2, 49.3)  # percentages, not fractions
    bad(c, expected.replace("('abc',)", "(51.4, 50.2, 49.3)"))
    c.ce_band = (0.49, 0.50, 0.51)  # min first
    with pytest.raises(ValueError, match="config.ce_band"):
        validation.check(c)
    for ok in ((), (0.514, 0.502, 0.493), [0.5, 0.5, 0.5]):
        c.ce_band = ok
        validation.check(c)


def test_search_sizes_names_and_protocol_fields():
    c = quickstart.get_config()
    c.population_size = 0
    bad(c, "config.population_size: expected an integer >= 1, got 0")
    c = quickstart.get_config()
    c.init = "3"
    bad(c, "config.init: expected one of 'authors', 'uniform', got '3'")
    c = quickstart.get_config()
    c.fitness.surrogate.stop_rules = ((300, 1.5),)
    bad(c, "config.fitness.surrogate.stop_rules: expected a tuple of (step >= 0, training "
           "accuracy in [0, 1]) pairs, got ((300, 1.5),)")
    c = quickstart.get_config()
    c.fitness.gate.learning_rate = 0.0
    bad(c, "config.fitness.gate.learning_rate: expected a number > 0, got 0.0")
    c = quickstart.get_config()
    c.fitness.gate.warmup_steps = 700
    bad(c, "config.fitness.gate.warmup_steps: warmup_steps + hold_steps must be <= total_steps "
           "(the schedule's horizon), got 700 + 0 > 600")
    c = quickstart.get_config()
    c.fitness.initial.model = "resnet50"
    with pytest.raises(ValueError, match=r"^config\.fitness\.initial\.model: expected one of "
                                         r"'convnet', .*, got 'resnet50'$"):
        validation.check(c)
    c = quickstart.get_config()
    c.fitness.gate_min_train_accuracy = 20.0
    bad(c, "config.fitness.gate_min_train_accuracy: expected a number >= 0 and <= 1, got 20.0")


def test_nested_stages_are_named_by_their_key_path():
    c = pipeline_config.get_config("runlocal")
    c.eliminate.keep = (3, 5)
    bad(c, "config.eliminate.keep: expected a non-empty, non-increasing tuple of integers >= 1, "
           "got (3, 5)")
    c = pipeline_config.get_config("runlocal")
    c.evolve.fitness.gate.batch_size = -1
    bad(c, "config.evolve.fitness.gate.batch_size: expected an integer >= 1, got -1")
    t = transfer_paper.get_config("table9,runlocal")
    t.metric = "mean"
    bad(t, "config.metric: expected one of 'final', 'best', got 'mean'")
    t = transfer_paper.get_config("table9,runlocal")
    t.p_values = ("greater", "less")
    bad(t, "config.p_values: expected a tuple of 'greater' and/or 'two-sided', got "
           "('greater', 'less')")


def test_runner_fields_are_checked_too():
    c = quickstart.get_config()
    c.executor = "threads"
    with pytest.raises(ValueError, match="unknown executor 'threads'"):
        validation.check(c)


def test_a_model_registered_at_run_time_is_accepted():
    from lfe.training import models
    from lfe.training.models.convnet import ConvNet

    c = quickstart.get_config()
    c.fitness.gate.model = "tiny_for_test"
    with pytest.raises(ValueError, match="fitness.gate.model"):
        validation.check(c)
    with models.temporary_model("tiny_for_test", ConvNet):
        validation.check(c)


def test_the_jax_free_name_lists_cover_the_jax_modules():
    """validation lists the names of JAX modules so that checking needs no JAX: each list must
    hold every name its module accepts (a new optimizer, schedule, model or preset added there
    must be added here too)."""
    from lfe.training import losses, models, schedules
    from lfe.training.data import augment

    assert set(schedules._OPTIMIZERS) <= set(validation.OPTIMIZERS)
    assert set(schedules._SCHEDULES) <= set(validation.SCHEDULES)
    assert set(models._BUILTIN) <= set(validation.MODELS)
    assert set(augment.PRESETS) <= set(validation.AUGMENTS)
    assert set(losses.LOSS_FORMS) <= set(validation.LOSS_FORMS)


def test_checking_and_help_import_no_jax():
    """The controller of an evolution never imports JAX; neither do the checks and --help."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from configs import pipeline\n"
            "from lfe import catalog, main\n"
            "from lfe.experiments import validation\n"
            "validation.check(pipeline.get_config())\n"
            "catalog.help_text(main.MODES)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jax', 'jaxlib', 'flax', 'optax')))\n")
    root = str(catalog.CONFIGS_DIR).rsplit("/", 1)[0]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
