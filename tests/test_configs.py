"""The App. D configs: every variant builds with the paper's numbers, and every ``runlocal``
protocol trains end to end through ``fitness.train_once`` / ``train.run`` on tiny data."""

import glob
import importlib
import itertools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from configs import common, davidnet, effnetv2_s, seresnext, surrogate, surrogate_study, wideresnet
from lfe import main
from lfe.core import protocol as protocol_lib
from lfe.training import data as data_lib
from lfe.training import fitness, progressive
from lfe.training import losses as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"effnetv2_s": effnetv2_s, "wideresnet": wideresnet, "seresnext": seresnext,
           "davidnet": davidnet}


def tiny_dataset():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 32, 32, 3)).astype(np.uint8)
    y = (np.arange(48) % 10).astype(np.int32)
    return data_lib.from_arrays(x[:40], y[:40], x[40:], y[40:], val_size=8, num_classes=10)


def test_effnetv2_variants_follow_app_d():
    p = effnetv2_s.get_config().protocol
    assert (p.model, p.augment, p.optimizer, p.learning_rate, p.batch_size) == (
        "efficientnetv2_s", "effnetv2", "adam", 1e-3, 64)
    assert (p.warmup_steps, p.hold_steps, p.total_steps, p.steps) == (6400, 12400, 96000, 96000)
    assert p.phases == progressive.paper_phases(progressive.TABLE12, 24000)
    e = effnetv2_s.get_config("eliminate").protocol
    assert (e.steps, e.total_steps, e.hold_steps) == (64000, 64000, 0)
    assert [ph["steps"] for ph in e.phases] == [16000] * 4
    large = effnetv2_s.get_config("large")
    assert large.dataset == "cars196" and large.protocol.batch_size == 32
    assert [ph["image_size"] for ph in large.protocol.phases] == [128, 186, 244, 300]
    f = effnetv2_s.get_config("finetune").protocol
    assert (f.steps, f.warmup_steps, f.hold_steps, f.batch_size) == (10000, 500, 1500, 64)
    assert f.phases == [{"steps": 10000, "image_size": 224, "dropout": 0.5,
                         "randaug_magnitude": 15.0}]
    assert f.init_from == effnetv2_s.PRETRAINED
    with pytest.raises(ValueError, match="available: eliminate, large, finetune, automl, "
                                         "runlocal"):
        effnetv2_s.get_config("large,finetune")


def test_sgd_configs_follow_app_d():
    for module, model in ((wideresnet, "wideresnet28_10"), (seresnext, "seresnext29")):
        p = module.get_config().protocol
        assert (p.model, p.optimizer, p.momentum, p.learning_rate, p.schedule) == (
            model, "sgd_nesterov", 0.9, 0.1, "warmup_cosine")
        assert (p.warmup_steps, p.steps, p.total_steps, p.batch_size) == (1000, 96186, 96186, 128)
        # the cited reference code's L2 5e-4 on kernels = 1e-3 · w on the kernels' gradients
        assert p.augment == "wideresnet" and p.weight_decay == 1e-3
        assert p.weight_decay_on == "kernels"
    cutout, cutmix = davidnet.get_config().protocol, davidnet.get_config("cutmix").protocol
    for p in (cutout, cutmix):
        assert (p.learning_rate, p.schedule, p.warmup_steps, p.steps, p.batch_size) == (
            0.4, "warmup_linear", 1176, 2940, 512)
    assert cutout.augment == "davidnet_cutout" and cutmix.augment == "davidnet_cutmix"
    assert cutout.weight_decay * 512 == pytest.approx(0.512)
    assert cutmix.weight_decay * 512 == pytest.approx(0.0256)
    with pytest.raises(ValueError, match="available: runlocal"):
        wideresnet.get_config("cutmix")
    with pytest.raises(ValueError, match="available: cutmix, runlocal"):
        davidnet.get_config("cutout")


def test_surrogate_is_the_effnetv2_96px_protocol():
    s = surrogate.get_config().fitness.surrogate
    assert (s.model, s.batch_size, s.learning_rate, s.warmup_steps, s.total_steps, s.steps) == (
        "efficientnetv2_s", 64, 1e-3, 6400, 64000, 8000)
    assert s.phases == [{"steps": 8000, "image_size": 96, "dropout": 0.1,
                         "randaug_magnitude": 5.0}]
    assert tuple(map(tuple, s.stop_rules)) == ((3000, 0.25),) and s.eval_every == 100
    steps = dict(progressive.augment_for_phase(progressive.resolve_augment(s.augment),
                                               progressive.from_protocol(s)[0])["train"])
    assert steps["randaugment"] == {"num_layers": 2, "magnitude": 5.0, "fill": "reflect",
                                    "identity_branch": True}  # the authors' RandAugment
    assert steps["random_square_crop"] == {"size": 96, "crop": "shorter_side"}
    cpu = surrogate.get_config("convnet").fitness.surrogate
    assert cpu.model == "convnet" and "phases" not in cpu
    with pytest.raises(ValueError, match="available: convnet"):
        surrogate.get_config("runlocal")


LOCAL = [("effnetv2_s", "runlocal"), ("wideresnet", "runlocal"), ("seresnext", "runlocal"),
         ("davidnet", "runlocal"),
         ("davidnet", "cutmix,runlocal")]


@pytest.mark.slow  # ≈10–25 s of CPU each: RandAugment and the models compile per phase
@pytest.mark.parametrize("name,arg", LOCAL)
def test_runlocal_protocol_trains(name, arg):
    """Each smoke variant is a compare grid; its protocol trains 2 steps on tiny data."""
    c = CONFIGS[name].get_config(arg)
    assert c.mode == "compare" and c.executor == "inprocess" and c.protocol.steps <= 100
    p = c.protocol
    if p.get("phases"):
        p.phases = [{**ph, "steps": 1} for ph in p.phases]
    p.steps, p.batch_size, p.eval_every, p.eval_batch_size = 2, 4, 1, 8
    result = fitness.train_once(L.get("cross_entropy"), p, tiny_dataset(), seed=0)
    assert result.status == "ok" and result.steps_run == 2
    assert [row[0] for row in result.curve] == [1, 2]
    assert all(np.isfinite(row[3]) for row in result.curve)


# ------------------------------------------------------------------ every config, every variant

CONFIG_NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs",
                                                                               "*.py"))
                      if os.path.basename(p) not in ("__init__.py", "common.py"))


def _named_variants(module) -> list[str]:
    """The variants a config's error lists, and the comma lists of them its docstring names."""
    with pytest.raises(ValueError, match="unknown variant 'no_such_variant'") as e:
        module.get_config("no_such_variant")
    listed = str(e.value).rsplit("available: ", 1)[1].strip()
    names = [] if listed == "none" else listed.split(", ")
    quoted = re.findall(r"``(?:configs/\w+\.py)?:?,?([\w,]+)``", module.__doc__ or "")
    combos = [q for q in quoted if "," in q and set(q.split(",")) <= set(names)]
    return names + combos


def _variants(module) -> list[str | None]:
    """Every variant of ``module`` its parser accepts among: none, each named variant, each pair
    of them and each comma list its docstring names; each one builds."""
    named = _named_variants(module)
    singles = [n for n in named if "," not in n]
    candidates = [None, *named] + [f"{a},{b}" for a, b in itertools.combinations(singles, 2)]
    built = []
    for arg in dict.fromkeys(candidates):
        try:
            module.get_config(arg)
        except ValueError as e:  # only the parser may refuse: an exclusive pair, a missing one
            assert re.search(r"exclude each other|needs one of", str(e)), (arg, str(e))
            continue
        built.append(arg)
    covered = {n for arg in built if arg for n in arg.split(",")}
    assert covered == set(singles), (module.__name__, covered, singles)
    documented = [n for n in named if "," in n]
    assert set(documented) <= set(built), (module.__name__, documented, built)
    return built


ALL_VARIANTS = {name: _variants(importlib.import_module(f"configs.{name}"))
                for name in CONFIG_NAMES}


def test_every_config_and_named_variant_builds():
    assert len(CONFIG_NAMES) == 15
    assert set(ALL_VARIANTS["transfer_paper"]) == {
        f"table{i}{s}" for s in ("", ",runlocal") for i in (8, 9, 10, 11)}
    protocols = ("eliminate", "large", "finetune")
    assert set(ALL_VARIANTS["effnetv2_s"]) == {
        None, *protocols, "automl", "runlocal", "automl,runlocal",
        *(f"{p},{flag}" for p in protocols for flag in ("automl", "runlocal"))}
    assert set(ALL_VARIANTS["eliminate"]) == {
        None, "authors", "automl", "runlocal", "authors,automl", "authors,runlocal",
        "automl,runlocal"}
    assert set(ALL_VARIANTS["surrogate"]) == {None, "convnet", "automl"}
    assert set(ALL_VARIANTS["cpu_evolution"]) == {None, "runlocal", "ce_baseline", "retrain",
                                                "rungs", "rungs_retrain"}
    assert set(ALL_VARIANTS["davidnet"]) == {None, "cutmix", "runlocal", "cutmix,runlocal"}
    for name in ("augment_grid", "report"):
        assert ALL_VARIANTS[name] == [None]
    for name, variants in ALL_VARIANTS.items():
        for arg in variants:
            c = importlib.import_module(f"configs.{name}").get_config(arg)
            assert c.mode in main.MODES, (name, arg)
            protocol_lib.check_protocols(c)  # every protocol's steps are its phases' sum


def test_configs_import_no_jax():
    """Building every config (all variants) imports neither JAX nor any trainer module."""
    code = ("import importlib, json, sys\n"
            f"for name, variants in json.loads({json.dumps(json.dumps(ALL_VARIANTS))}).items():\n"
            "    for arg in variants:\n"
            "        importlib.import_module('configs.' + name).get_config(arg)\n"
            "heavy = sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_surrogate_study_trains_every_library_loss_once_nl1_as_shipped():
    assert surrogate_study.LOSSES.split(",") == [
        n for n in L.available() if n not in ("neuroloss1_h1", "neuroloss1_printed")]
    assert L.get("neuroloss1") is L.get("neuroloss1_reading")


def test_parse_arg_flags_choices_values_and_one_line_errors():
    spec = {"table": common.one_of("t8", "t9"), "runlocal": False, "steps": 100, "lr": 0.1,
            "name": "x"}
    v = common.parse_arg("t9,runlocal,steps=7,lr=1e-3,name=y", "configs/demo.py", **spec)
    assert (v.table, v.runlocal, v.steps, v.lr, v.name) == ("t9", True, 7, 1e-3, "y")
    assert common.parse_arg(" t8 , runlocal=false ", "configs/demo.py", **spec).to_dict() == {
        "table": "t8", "runlocal": False, "steps": 100, "lr": 0.1, "name": "x"}
    available = "available: t8, t9, runlocal, steps=<int>, lr=<float>, name=<str>"
    for arg, why in (("t8,bogus", "unknown variant 'bogus'"), ("t8,t9", "exclude each other"),
                     ("runlocal", "needs one of t8, t9"), ("t8,steps=x", "expected an integer"),
                     ("t8,steps", "steps needs a value"), ("t8,runlocal=maybe", "true or false"),
                     ("t8,table=t9", "unknown variant 'table=t9'")):
        with pytest.raises(ValueError) as e:
            common.parse_arg(arg, "/somewhere/configs/demo.py", **spec)
        message = str(e.value)
        assert message.startswith(f"configs/demo.py:{arg}: ") and why in message, message
        assert message.endswith(available) and "\n" not in message
    assert common.parse_arg("", "configs/demo.py").to_dict() == {}
    lazy = common.parse_arg("runlocal,res=224", "configs/demo.py", lazy=True, runlocal=False)
    assert lazy.to_dict() == {"runlocal": True, "res": "224"}


def test_cli_names_a_bad_variant_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lfe.main", "--config=configs/davidnet.py:cutout",
                          f"--workdir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "lfe: error: configs/davidnet.py:cutout: unknown variant "
        "'cutout'; available: cutmix, runlocal")
