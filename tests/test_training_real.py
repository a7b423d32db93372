"""End to end on real CIFAR-10 at tiny size: the shipped losses train (accuracy far above 10%)."""

import pytest

from lfe.core import protocol as protocol_lib
from lfe.training import fitness
from lfe.training import losses as L


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cross_entropy", "neuroloss1", "neuroloss2", "neuroloss3"])
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
