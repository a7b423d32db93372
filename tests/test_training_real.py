"""End to end on real CIFAR-10 at tiny size: the shipped losses train (accuracy far above 10%)."""

import pytest

from lfe.core import protocol as protocol_lib
from lfe.training import fitness
from lfe.training import losses as L


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cross_entropy", "neuroloss1", "neuroloss1_printed",
                                  "neuroloss2", "neuroloss3"])
def test_shipped_losses_train_on_real_cifar10(name, cifar_dir):
    protocol = protocol_lib.training_protocol(steps=500, total_steps=1000, warmup_steps=100,
                                         eval_every=250, eval_batch_size=1000)
    dataset = fitness.load_dataset("cifar10", str(cifar_dir))
    result = fitness.train_once(L.get(name), protocol, dataset, seed=0)
    assert result.status == "ok"
    assert result.best_train_accuracy > 0.30
    assert result.best_val_accuracy > 0.20  # chance is 0.10
    vals = [row[2] for row in result.curve]
    assert vals[-1] > vals[0]  # validation accuracy improves


def _compiles(caplog, name: str) -> int:
    return sum(f"Compiling jit({name})" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_data_form_trains_real_cifar10_as_the_unrolled_form(cifar_dir):
    """A real CIFAR-10 training curve of an evolved loss is the same in the data form (what
    fitness trains) and the unrolled form, up to float rounding."""
    protocol = protocol_lib.training_protocol(steps=200, total_steps=400, warmup_steps=50,
                                         eval_every=50, eval_batch_size=1000)
    dataset = fitness.load_dataset("cifar10", str(cifar_dir))
    loss = L.from_genome(L.get("neuroloss3").genome)
    runs = {}
    for form in ("data", "unrolled"):
        protocol.loss_form = form
        runs[form] = fitness.train_once(loss, protocol, dataset, seed=0)
    data, unrolled = runs["data"], runs["unrolled"]
    assert data.status == unrolled.status == "ok" and data.best_val_accuracy > 0.13
    for (step, train_acc, val_acc, value), ref in zip(data.curve, unrolled.curve, strict=True):
        assert step == ref[0]
        assert abs(train_acc - ref[1]) < 0.01 and abs(val_acc - ref[2]) < 0.01
        assert value == pytest.approx(ref[3], rel=1e-3)


@pytest.mark.slow
def test_a_real_evolution_compiles_each_step_once_per_protocol_shape(tmp_path, cifar_dir,
                                                                     caplog):
    """The quickstart smoke evolution (shortened further) in-process on real CIFAR-10: every
    candidate's gate and surrogate runs share the train and eval steps, compiled at most once
    per distinct protocol shape — the gate and the surrogate/initial protocols here: ≤ 4 in
    all — instead of once per candidate."""
    import jax

    from configs import quickstart
    from lfe import main

    c = quickstart.get_config("runlocal")
    c.executor, c.max_iterations, c.plot_every = "inprocess", 3, 0
    c.fitness.data_dir = str(cifar_dir)
    for p in (c.fitness.initial, c.fitness.surrogate):
        p.steps, p.total_steps, p.eval_every = 40, 40, 20
    c.fitness.gate.steps, c.fitness.gate.total_steps, c.fitness.gate.eval_every = 20, 60, 20
    c.fitness.gate_min_train_accuracy = 0.0
    with jax.log_compiles(True), caplog.at_level("WARNING"):
        state = main.dispatch(c, str(tmp_path))
    assert state["evaluated"] >= 6
    train_steps = _compiles(caplog, "_program_step")
    eval_steps = _compiles(caplog, "eval_step")
    assert 1 <= train_steps <= 2 and eval_steps <= 2 and train_steps + eval_steps <= 4
