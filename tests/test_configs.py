"""The App. D configs: every variant builds with the paper's numbers, and every ``runlocal``
protocol trains end to end through ``fitness.train_once`` / ``train.run`` on tiny data."""

import numpy as np
import pytest

from configs import davidnet, effnetv2_s, seresnext, surrogate, wideresnet
from lfe.training import data as data_lib
from lfe.training import fitness, progressive
from lfe.training import losses as L

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
    with pytest.raises(ValueError, match="available: eliminate, large, finetune, runlocal"):
        effnetv2_s.get_config("large,finetune")


def test_sgd_configs_follow_app_d():
    for module, model in ((wideresnet, "wideresnet28_10"), (seresnext, "seresnext29")):
        p = module.get_config().protocol
        assert (p.model, p.optimizer, p.momentum, p.learning_rate, p.schedule) == (
            model, "sgd_nesterov", 0.9, 0.1, "warmup_cosine")
        assert (p.warmup_steps, p.steps, p.total_steps, p.batch_size) == (1000, 96186, 96186, 128)
        assert p.augment == "wideresnet" and p.weight_decay == 5e-4
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
    assert steps["randaugment"] == {"num_layers": 2, "magnitude": 5.0}
    assert steps["random_square_crop"] == {"size": 96}
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
