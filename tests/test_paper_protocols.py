"""Every paper setting trains (issue #21): the protocols of the paper's configs — the search's
gate, initial and surrogate protocols, the elimination, Tables 3, 4 and 8–11 — each run for one
step of its first phase on its own dataset, loaded the way its cells load it (real CIFAR-10, tfds
mock data for CIFAR-100, Cars196, Flowers102 and Caltech101), with the large models in their
shallow variants (same block code; their full graphs take minutes to compile on a CPU) and a tiny
image size; every later phase's pipeline and model are built too. A setting whose data cannot be
loaded, whose augmentation or phases do not fit its model, or whose pretrained weights cannot be
read fails here instead of on an accelerator.

Also: the fixes of issue #21 that are not about augmentation (tests/test_augment.py and
tests/test_randaugment.py hold those): Tables 10/11 load their data, Table 8 takes DavidNet's
two protocols, the authors' elimination variant, the documented protocol values.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import (
    davidnet,
    effnetv2_s,
    eliminate,
    seresnext,
    surrogate,
    surrogate_study,
    table4,
    transfer_paper,
    wideresnet,
)
from lfe.core import protocol as protocol_lib
from lfe.core import rundir
from lfe.training import fitness, models, progressive
from lfe.training import losses as L
from lfe.training.data import augment as augment_lib
from lfe.training.data import tfds_source
from lfe.training.models import efficientnetv2, pretrained
from tests.test_models_large import TINY

tfds = pytest.importorskip("tensorflow_datasets")

SIZE = 32  # every phase's image size in the smoke runs


def paper_settings() -> dict[str, tuple[str, dict]]:
    """name -> (dataset, protocol as plain data) of every paper config's default variant."""
    out = {}
    fit = surrogate.get_config().fitness
    for stage in ("gate", "initial", "surrogate"):
        out[f"search.{stage}"] = ("cifar10", fit[stage].to_dict())
    out["eliminate"] = ("cifar10", eliminate.get_config().protocol.to_dict())
    out["table4"] = ("cifar10", table4.get_config().protocol.to_dict())
    for name, module in (("effnetv2_s", effnetv2_s), ("wideresnet", wideresnet),
                         ("seresnext", seresnext), ("davidnet", davidnet)):
        out[name] = ("cifar10", module.get_config().protocol.to_dict())
    for table in transfer_paper.TABLES:
        for key, st in transfer_paper.get_config(table).settings.items():
            out[f"{table}.{key}"] = (st.dataset, st.protocol.to_dict())
    for key, st in surrogate_study.get_config().settings.items():
        out[f"table3.{key}"] = (st.dataset, st.protocol.to_dict())
    return out


def shrink(protocol: dict, weights: str) -> ml_collections.ConfigDict:
    """The protocol at smoke size: one step of its first phase at SIZE px, batch 2, the model's
    shallow variant, pretrained weights from `weights`; everything else (augmentation,
    optimizer, schedule, stop rules, the phase's dropout and magnitude) as the paper config has
    it. (A step per phase would compile each phase's step: minutes per setting on 2 cores.)"""
    p = dict(protocol)
    if p["model"] in TINY:  # its sizes; rates and flags as the config has them
        sizes = {k: v for k, v in TINY[p["model"]].items()
                 if k not in ("dropout_rate", "drop_path_rate")}
        p["model_kwargs"] = {**sizes, **(p.get("model_kwargs") or {})}
    if p.get("phases"):
        first = p["phases"][0]
        p["phases"] = [{**first, "steps": 1, **({"image_size": SIZE} if "image_size" in first
                                                else {})}]
    p["steps"] = 1
    if isinstance(p.get("augment"), dict):  # Table 3's pipelines name their size
        p["augment"] = {split: [(n, {**kw, "size": SIZE} if "size" in kw else kw)
                                for n, kw in augment_lib.parse_steps(steps)]
                        for split, steps in p["augment"].items()}
    p.update(batch_size=2, eval_batch_size=4, eval_every=1, checkpoint_every=0)
    if p.get("init_from"):
        p["init_from"] = weights
    return ml_collections.ConfigDict(p)


def distinct(settings: dict[str, tuple[str, dict]]) -> dict[str, tuple[str, dict]]:
    """One setting per (dataset, shrunk protocol): Table 3's sizes, the splits of a setting
    and the configs that share a protocol collapse."""
    out, seen = {}, set()
    for name, (dataset, protocol) in settings.items():
        key = json.dumps([dataset, shrink(protocol, "w").to_dict()], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out[name] = (dataset, protocol)
    return out


SETTINGS = distinct(paper_settings())


def test_the_smoke_covers_every_paper_dataset_model_and_augmentation():
    datasets = {d for d, _ in SETTINGS.values()}
    assert datasets == {"cifar10", "cifar100", "cars196", "oxford_flowers102", "caltech101"}
    assert {p["model"] for _, p in SETTINGS.values()} == {
        "convnet", "resnet9v2", "efficientnetv2_s", "wideresnet28_10", "seresnext29", "davidnet"}
    augments = {p.get("augment") if isinstance(p.get("augment"), str) else "custom"
                for _, p in SETTINGS.values()}
    assert augments == {"unit", "effnetv2", "wideresnet", "davidnet_cutout", "davidnet_cutmix",
                        "custom"}
    assert any(p.get("init_from") for _, p in SETTINGS.values())  # Table 11 fine-tunes


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A pretrained-weights file of the shallow EfficientNetV2 (1000 classes, as ImageNet's)."""
    sizes = {k: TINY["efficientnetv2_s"][k] for k in ("stages", "head_features")}
    model = efficientnetv2.EfficientNetV2(num_classes=1000, **sizes)
    variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(
        jnp.zeros((1, SIZE, SIZE, 3)))
    path = tmp_path_factory.mktemp("weights") / "tiny-imagenet.npz"
    pretrained.save_variables(path, variables)
    return str(path)


@pytest.fixture
def loaded(cifar_dir, monkeypatch):
    """`load(dataset, protocol)`: the dataset as a transfer or compare cell loads it (at the
    protocol's `load_size`), tfds mock data for all but CIFAR-10; cut to a few images."""
    monkeypatch.setitem(tfds_source.PAPER_VAL_SIZE, "cifar100", 2)  # of 4 mock examples
    fitness.load_dataset.cache_clear()
    fitness.load_splits.cache_clear()

    def load(dataset, protocol):
        data_dir = str(cifar_dir) if dataset == "cifar10" else ""
        split = ("train", "val") if dataset.startswith("cifar") else ("train+val", "test")
        if dataset == "cifar10":
            ds = fitness.load_splits(dataset, data_dir, *split,
                                     *fitness.load_size(protocol, dataset))
        else:
            with tfds.testing.mock_data(num_examples=4):
                ds = fitness.load_splits(dataset, data_dir, *split,
                                         *fitness.load_size(protocol, dataset))
        return dataclasses.replace(ds, train_images=ds.train_images[:4],
                                   train_labels=ds.train_labels[:4],
                                   val_images=ds.val_images[:4], val_labels=ds.val_labels[:4])

    yield load
    fitness.load_dataset.cache_clear()  # no mock data left for a later test
    fitness.load_splits.cache_clear()


def test_every_phase_of_every_paper_setting_builds_its_pipeline_and_model():
    """Each phase's augmentation (sizes and magnitude written into the pipeline) and model
    (its dropout) build, with the setting's model fields, for all phases, not only the first."""
    for name, (_, protocol) in paper_settings().items():
        p = ml_collections.ConfigDict(protocol)
        augment = progressive.resolve_augment(p.get("augment", "unit"))
        model = models.get_model(p.model, num_classes=10, **dict(p.get("model_kwargs") or {}))
        for phase in progressive.from_protocol(p):
            steps = progressive.augment_for_phase(augment, phase)
            for split in ("train", "eval"):
                augment_lib.parse_steps(steps[split])
            assert progressive.model_for_phase(model, phase) is not None, name


@pytest.mark.slow  # 10-60 s each on 2 cores: a setting compiles its model and augmentation
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_paper_setting_trains_one_step(name, loaded, weights):
    dataset, protocol = SETTINGS[name]
    p = shrink(protocol, weights)
    data = loaded(dataset, p)
    if dataset in ("cars196", "oxford_flowers102", "caltech101"):
        assert data.image_shape == (SIZE, SIZE, 3)  # resized once, at the phase's size
    result = fitness.train_once(L.get("cross_entropy"), p, data, seed=0)
    assert result.status == "ok" and result.steps_run == 1, result.message
    [(step, _, val_acc, loss)] = result.curve
    assert step == 1 and np.isfinite(loss)
    assert (val_acc is not None) == p.validate  # the gate evaluates nothing


# ------------------------------------------------------------------ item 6: Tables 10/11's data

@pytest.mark.parametrize("table, largest", [("table10", 300), ("table11", 224)])
def test_tables_10_and_11_load_their_datasets_at_the_largest_phase_size(table, largest):
    settings = transfer_paper.get_config(table).settings
    for st in settings.values():
        assert fitness.load_size(st.protocol, st.dataset) == (largest, "crop")
    cifar = transfer_paper.get_config("table9").settings
    assert {fitness.load_size(st.protocol, st.dataset) for st in cifar.values()} == {
        (None, "crop")}  # CIFAR is used as it is
    squash = dict(settings[next(iter(settings))].protocol.to_dict(), image_fit="squash")
    assert fitness.load_size(squash, "cars196") == (largest, "squash")
    with pytest.raises(ValueError, match="dataset cars196 has images of varying size, but the "
                                         "protocol's phases set no image_size"):
        fitness.load_size({"steps": 10}, "cars196")


def test_a_varying_size_dataset_loads_through_the_cell_path(monkeypatch):
    """The path a Table 10 cell takes (`worker.train_cell`'s loading) used to raise 'has images
    of varying size; set image_size'; now it loads at the protocol's size, centre-cropped."""
    fitness.load_dataset.cache_clear()
    fitness.load_splits.cache_clear()
    p = transfer_paper.get_config("table10").settings["efficientnetv2_s__cars196__default"]
    protocol = dict(p.protocol.to_dict(), phases=[{**ph, "image_size": 24}
                                                 for ph in p.protocol.phases])
    try:
        with tfds.testing.mock_data(num_examples=3):
            ds = fitness.load_splits("cars196", "", "train+val", "test",
                                     *fitness.load_size(protocol, "cars196"))
            with pytest.raises(ValueError, match="dataset cars196 has no val images to score "
                                                 "on"):  # a compare grid's default split
                fitness.load_splits("cars196", "", "train", "val",
                                    *fitness.load_size(protocol, "cars196"))
    finally:
        fitness.load_dataset.cache_clear()
        fitness.load_splits.cache_clear()
    assert ds.image_shape == (24, 24, 3) and len(ds.train_labels) == 3 and len(ds.val_labels) == 3


# ------------------------------------------------------------------ item 7: Table 8's protocols

def test_table8_takes_davidnets_cutout_and_cutmix_protocols_whole():
    settings = rundir.to_plain(transfer_paper.get_config("table8").settings)
    cutout, cutmix = (rundir.to_plain(davidnet.get_config(v).protocol) for v in (None, "cutmix"))
    for dataset in ("cifar10", "cifar100"):
        assert settings[f"davidnet__{dataset}__cutout"]["protocol"] == cutout
        assert settings[f"davidnet__{dataset}__cutmix"]["protocol"] == cutmix
    assert cutout["augment"] == "davidnet_cutout" and cutmix["augment"] == "davidnet_cutmix"


# ------------------------------------------------------------------ item 8: decided values

def test_effnetv2_protocols_follow_the_authors_recipe_with_automl_as_a_switch():
    for p in (effnetv2_s.get_config().protocol, surrogate.get_config().fitness.surrogate,
              eliminate.get_config().protocol, effnetv2_s.get_config("large").protocol):
        assert p.augment == "effnetv2" and "drop_path_rate" not in p.model_kwargs
    for p in (effnetv2_s.get_config("automl").protocol,
              surrogate.get_config("automl").fitness.surrogate,
              eliminate.get_config("automl").protocol):
        assert p.augment == "effnetv2_automl" and p.model_kwargs.drop_path_rate == 0.2
    with pytest.raises(ValueError, match="unknown EfficientNetV2 recipe 'tf'; available: "
                                         "authors, automl"):
        protocol_lib.effnetv2_protocol([{"steps": 1}], total_steps=1, recipe="tf")


def test_wrn_and_seresnext_use_the_cited_reference_codes_decay_and_layout():
    for module in (wideresnet, seresnext):
        p = module.get_config().protocol
        assert (p.weight_decay, p.weight_decay_on) == (1e-3, "kernels")
    assert seresnext.get_config().protocol.model_kwargs.project_every_block is True
    assert seresnext.get_config("runlocal").protocol.model_kwargs.project_every_block is True


def test_elimination_follows_the_paper_and_offers_the_authors_counts():
    paper = eliminate.get_config()
    assert tuple(paper.keep) == (150, 50, 25, 10) and paper.groups == 1
    assert paper.finalists == 0 and paper.candidates_stage == "surrogate"
    assert tuple(paper.protocol.stop_rules) == ()
    authors = eliminate.get_config("authors")
    assert (tuple(authors.keep), authors.groups, authors.finalists) == ((75, 25, 12, 6), 2, 4)
    assert tuple(map(tuple, authors.protocol.stop_rules)) == ((4000, 0.45),)
    assert authors.protocol.eval_every == 100
