"""Data parallelism (lfe.training.parallel, lfe.training.train.run) on 2 host CPU devices, in a
subprocess: XLA's
device count is fixed when JAX starts, so the test process itself cannot have two."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from lfe.training import parallel

REPO = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r"""
import functools, json
import jax, jax.numpy as jnp, numpy as np
from lfe.training import parallel, schedules, train
from lfe.training.models import get_model

assert jax.local_device_count() == 2, jax.devices()
mesh = parallel.local_mesh()

def ce(y, p):
    return -jnp.sum(y * jnp.log(p + 1e-7), -1)

rng = np.random.default_rng(0)
images = rng.integers(0, 256, (64, 16, 16, 3)).astype(np.uint8)
labels = rng.integers(0, 4, 64).astype(np.int32)
batch = {"image": images[:8], "label": labels[:8]}
# SGD: linear in the gradients, so float summation order is not amplified (first Adam steps
# are ~lr * sign(g), which flips for gradients at rounding level)
model = get_model("convnet", num_classes=4, dropout_rate=0.0)
cfg = train.default_config()
cfg.update({"optimizer": "sgd_nesterov", "schedule": "constant", "learning_rate": 0.05,
            "batch_size": 8, "steps": 20, "eval_every": 10, "eval_batch_size": 5,
            "total_steps": 20})
state = train.create_train_state(jax.random.PRNGKey(0), model, (16, 16, 3),
                                 schedules.make_optimizer(cfg))
step = functools.partial(train.train_step, loss_fn=ce, num_classes=4,
                         augment_fn=train.image_augment(train.unit_preprocess, train=True))
key = jax.random.PRNGKey(1)
one, one_metrics = jax.jit(step)(state, batch, key)
sharded = parallel.shard_batch(batch, mesh)
two, two_metrics = parallel.jit_data_parallel(step, mesh, num_args=3, batch_argnums=(1,))(
    parallel.replicate(state, mesh), sharded, parallel.replicate(key, mesh))
half, _ = jax.jit(step)(state, {k: v[:4] for k, v in batch.items()}, key)

def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))

out = {
    "batch_shard_rows": sorted({s.data.shape[0] for s in sharded["image"].addressable_shards}),
    "params_replicated": all(x.sharding.is_fully_replicated
                             for x in jax.tree.leaves(two.params)),
    "params_diff": max_diff(one.params, two.params),
    "params_moved": max_diff(one.params, state.params),
    "stats_diff": max_diff(one.batch_stats, two.batch_stats),
    "stats_diff_vs_half_batch": max_diff(half.batch_stats, two.batch_stats),
    "loss": [float(one_metrics["loss"]), float(two_metrics["loss"])],
}
try:
    train.run(model, ce, {**cfg.to_dict(), "batch_size": 7}, train_images=images,
              train_labels=labels)
except ValueError as e:
    out["odd_batch_error"] = str(e)
result = train.run(model, ce, cfg, train_images=images, train_labels=labels,
                   val_images=images[:13], val_labels=labels[:13])
out["run"] = [result.status, result.steps_run, [list(r) for r in result.curve]]
parallel.local_mesh = lambda: None  # the same run on one device, for comparison
single = train.run(model, ce, cfg, train_images=images, train_labels=labels,
                   val_images=images[:13], val_labels=labels[:13])
out["single"] = [single.status, single.steps_run, [list(r) for r in single.curve]]
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def two_devices():
    """Runs SCRIPT on 2 host devices (≈25 s of CPU: a fresh JAX, 3 compiled steps, 2 runs)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_data_parallel_step_equals_single_device_step(two_devices):
    out = two_devices
    assert out["batch_shard_rows"] == [4]  # the batch of 8 really is split over 2 devices
    assert out["params_replicated"]
    assert out["params_moved"] > 1e-3  # the step did update the parameters
    assert out["params_diff"] < 1e-5 and out["stats_diff"] < 1e-5
    assert out["loss"][0] == pytest.approx(out["loss"][1], rel=1e-5)
    # BatchNorm statistics are those of the global batch, not of one device's half
    # (Keras BN momentum 0.99: one step moves the running statistics by 1% of the batch's)
    assert out["stats_diff_vs_half_batch"] > max(1e-4, 100 * out["stats_diff"])


@pytest.mark.slow
def test_train_run_on_two_devices(two_devices):
    out = two_devices
    assert "batch_size 7 must be divisible by the 2 local devices" in out["odd_batch_error"]
    status, steps, curve = out["run"]
    assert (status, steps) == ("ok", 20) and [r[0] for r in curve] == [10, 20]
    single = out["single"]
    assert single[:2] == [status, steps]
    for a, b in zip(curve, single[2], strict=True):  # eval batch 5 is padded to 6 on 2 devices
        assert a[2] == b[2] and a[1] == pytest.approx(b[1], abs=1e-6)
        assert a[3] == pytest.approx(b[3], rel=1e-4)


def test_single_device_needs_no_mesh():
    assert parallel.local_mesh() is None or len(parallel.local_mesh().devices) > 1
    assert parallel.device_count(None) == 1
    parallel.check_batch_size(7, None)
