"""Loss rejection without training a network: a filter of candidate losses in seconds.

In the spirit of AutoLoss-Zero's loss-rejection protocol (Li et al., CVPR 2022), which
optimises predictions directly with a candidate loss on a few samples and rejects the loss
when the evaluation metric does not improve, and of its gradient-equivalence check, which
skips a candidate whose gradients equal an evaluated one's. Neither is in the NeuroLoss paper;
this module is the reusable part, pure functions on arrays.

**Probe** (``fit``): a softmax classifier ``logits = x @ W + b`` on fixed features, optimised
with the candidate loss (batch mean of ``loss(y, softmax(logits))``, the trainer's contract) by
full-batch Adam or SGD for ``steps`` steps. ``W`` starts at ``init_scale`` × N(0, 1) divided by
the features' root mean square row norm (so the initial logits have standard deviation about
``init_scale``), ``b`` at zero. Two problems (``Problem``):

- ``free_logits(labels)``: the features are the identity, so each sample's logits are free
  parameters (AutoLoss-Zero's setting). It asks whether minimising the loss moves every sample's
  argmax to its target over all C classes at once (the integrity check looks at two classes);
  it is evaluated on its own samples.
- ``linear(x_train, ...)``: a linear classifier on real features (``image_features``: pooled,
  standardised pixels), evaluated on held-out samples. All samples share ``W``, so how the loss
  weighs samples against each other matters, as it does when a network trains.

``Score``: the eval accuracy after the last step, the best over steps, and the mean over steps
(the area under the accuracy curve divided by its length: it rewards learning fast), and
whether the loss and parameters stayed finite. ``passes``: finite and ``metric`` at least
``ratio`` × the reference loss's (cross-entropy's) on the same probe.

**Gradient equivalence** (``gradient_signature``): the gradient of the batch-mean loss with
respect to the logits at fixed random logits and labels, scaled to unit L2 norm. Two losses
whose signatures agree within ``tol`` (``equivalent``) train alike under a scale-free optimiser
such as Adam; terms that depend on ``y`` alone and positive scale factors vanish from it.

Losses come as a ``LossDef`` or a plain ``loss(y, yhat) -> [batch]``. A genome loss runs in the
data form (``lfe.training.compile.DataLoss``), so one compiled probe serves every genome of an
op set; any other loss compiles its own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lfe.training import compile as compile_lib
from lfe.training import losses as losses_lib

OPTIMIZERS = ("adam", "sgd")
METRICS = ("final", "best", "mean")


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """Features and integer labels to fit (``x_train`` [N, D], ``y_train`` [N]) and to score
    (``x_eval`` [M, D], ``y_eval`` [M]), float32 / int32, ``classes`` classes."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    classes: int

    def __post_init__(self) -> None:
        for x, y, split in ((self.x_train, self.y_train, "train"),
                            (self.x_eval, self.y_eval, "eval")):
            if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
                raise ValueError(f"problem {self.name!r}: {split} features must be [N, D] with "
                                 f"N > 0 labels [N], got {x.shape} and {y.shape}")
            if y.min() < 0 or y.max() >= self.classes:
                raise ValueError(f"problem {self.name!r}: {split} labels must lie in "
                                 f"[0, {self.classes})")
        if self.x_train.shape[1] != self.x_eval.shape[1]:
            raise ValueError(f"problem {self.name!r}: train and eval features differ in width")


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: int = 200
    learning_rate: float = 0.01
    optimizer: str = "adam"
    init_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; available: "
                             f"{', '.join(OPTIMIZERS)}")
        if self.steps < 1 or self.learning_rate <= 0 or self.init_scale < 0:
            raise ValueError(f"probe settings need steps >= 1, learning_rate > 0 and "
                             f"init_scale >= 0, got {self}")


@dataclasses.dataclass(frozen=True)
class Score:
    final: float  # eval accuracy after the last step
    best: float  # best eval accuracy over the steps
    mean: float  # mean eval accuracy over the steps
    finite: bool  # loss and parameters finite at every step
    curve: tuple[float, ...] = ()  # eval accuracy after each step

    def metric(self, name: str) -> float:
        if name not in METRICS:
            raise ValueError(f"unknown probe metric {name!r}; available: {', '.join(METRICS)}")
        return getattr(self, name)


def free_logits(labels: np.ndarray, classes: int) -> Problem:
    """Each sample's logits as free parameters (identity features), scored on the samples."""
    labels = np.asarray(labels, np.int32)
    eye = np.eye(labels.shape[0], dtype=np.float32)
    return Problem("free_logits", eye, labels, eye, labels, classes)


def linear(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
           classes: int) -> Problem:
    """A linear classifier on features ``x_*`` (float32 [N, D])."""
    return Problem("linear", np.asarray(x_train, np.float32), np.asarray(y_train, np.int32),
                   np.asarray(x_eval, np.float32), np.asarray(y_eval, np.int32), classes)


def image_features(train_images: np.ndarray, eval_images: np.ndarray,
                   pool: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, H, W, C] → float32 [N, (H/pool)(W/pool)C]: pixels / 255, averaged over
    ``pool`` × ``pool`` blocks, standardised per feature with the training images' statistics."""
    def pooled(images: np.ndarray) -> np.ndarray:
        n, h, w, c = images.shape
        if h % pool or w % pool:
            raise ValueError(f"pool {pool} does not divide the image size {h}x{w}")
        x = images.astype(np.float32).reshape(n, h // pool, pool, w // pool, pool, c) / 255.0
        return x.mean(axis=(2, 4)).reshape(n, -1)

    train, evals = pooled(np.asarray(train_images)), pooled(np.asarray(eval_images))
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    return (train - mean) / std, (evals - mean) / std


def as_program(loss: losses_lib.LossDef | Callable) -> tuple[Callable, Any]:
    """``(program, params)`` of a loss: the data form for a genome loss, else the loss itself."""
    fn = loss.training_loss("data") if isinstance(loss, losses_lib.LossDef) else loss
    return compile_lib.as_program(fn)


def _mean_loss(program, params, logits, labels, classes):
    y = jax.nn.one_hot(labels, classes, dtype=jnp.float32)
    return jnp.mean(program(params, y, jax.nn.softmax(logits, axis=-1)))


def _optimizer(name: str, learning_rate) -> optax.GradientTransformation:
    return optax.adam(learning_rate) if name == "adam" else optax.sgd(learning_rate)


# Only the loop's length and the optimizer are compile-time constants: the learning rate, the
# initial scale and the seed are traced, so one compilation serves every setting of a probe.
@functools.partial(jax.jit, static_argnames=("program", "steps", "optimizer", "classes"))
def _fit(program, params, x_train, y_train, x_eval, y_eval, learning_rate, init_scale, seed, *,
         steps, optimizer, classes):
    key = jax.random.PRNGKey(seed)
    rms = jnp.sqrt(jnp.mean(jnp.sum(x_train ** 2, axis=1))) + 1e-12
    w = init_scale * jax.random.normal(key, (x_train.shape[1], classes)) / rms
    weights = {"w": w, "b": jnp.zeros((classes,), jnp.float32)}
    tx = _optimizer(optimizer, learning_rate)

    def objective(weights):
        return _mean_loss(program, params, x_train @ weights["w"] + weights["b"], y_train,
                          classes)

    def step(carry, _):
        weights, opt_state = carry
        value, grads = jax.value_and_grad(objective)(weights)
        updates, opt_state = tx.update(grads, opt_state, weights)
        weights = optax.apply_updates(weights, updates)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(weights["w"]))
        logits = x_eval @ weights["w"] + weights["b"]
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y_eval)
        return (weights, opt_state), (accuracy, finite)

    _, (accuracy, finite) = jax.lax.scan(step, (weights, tx.init(weights)), None, length=steps)
    return accuracy, jnp.all(finite)


def fit(loss: losses_lib.LossDef | Callable, problem: Problem,
        settings: Settings = Settings()) -> Score:
    """The probe (module docstring): ``loss`` optimises ``problem`` with ``settings``."""
    program, params = as_program(loss)
    accuracy, finite = _fit(program, params, problem.x_train, problem.y_train, problem.x_eval,
                            problem.y_eval, np.float32(settings.learning_rate),
                            np.float32(settings.init_scale), np.uint32(settings.seed),
                            steps=settings.steps, optimizer=settings.optimizer,
                            classes=problem.classes)
    curve = np.asarray(accuracy, np.float64)
    finite = bool(finite)
    if not finite:  # accuracies after a non-finite step are argmax of NaN: not a score
        return Score(0.0, 0.0, 0.0, False, tuple(curve.tolist()))
    return Score(float(curve[-1]), float(curve.max()), float(curve.mean()), True,
                 tuple(curve.tolist()))


def passes(score: Score, reference: Score, metric: str = "mean", ratio: float = 0.9) -> bool:
    """Finite, and ``metric`` at least ``ratio`` × the reference's on the same probe."""
    return score.finite and score.metric(metric) >= ratio * reference.metric(metric)


@functools.partial(jax.jit, static_argnames=("program", "classes"))
def _signature(program, params, logits, labels, *, classes):
    grads = jax.grad(lambda z: _mean_loss(program, params, z, labels, classes))(logits)
    return grads.reshape(-1)


def gradient_signature(loss: losses_lib.LossDef | Callable, *, samples: int = 256,
                       classes: int = 10, scale: float = 3.0, seed: int = 0) -> np.ndarray:
    """The loss's gradient with respect to logits (scale × N(0, 1), random labels; both from
    ``seed``), flattened and scaled to unit L2 norm (all zeros when the gradient is zero or
    not finite: such a loss cannot train)."""
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((samples, classes))).astype(np.float32)
    labels = rng.integers(0, classes, samples).astype(np.int32)
    program, params = as_program(loss)
    g = np.asarray(_signature(program, params, logits, labels, classes=classes), np.float64)
    norm = np.linalg.norm(g)
    if not np.isfinite(norm) or norm == 0.0:
        return np.zeros_like(g)
    return g / norm


def equivalent(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> bool:
    """Whether two gradient signatures agree within ``tol`` everywhere (and neither is zero)."""
    if a.shape != b.shape:
        raise ValueError(f"signatures of different shapes {a.shape} and {b.shape}")
    return bool(np.any(a) and np.any(b) and np.max(np.abs(a - b)) <= tol)


def equivalence_groups(signatures: Sequence[np.ndarray], tol: float = 1e-4) -> list[list[int]]:
    """Indices of ``signatures`` grouped by ``equivalent`` to a group's first member (in
    order), groups of two or more only."""
    groups: list[list[int]] = []
    for i, s in enumerate(signatures):
        for group in groups:
            if equivalent(signatures[group[0]], s, tol):
                group.append(i)
                break
        else:
            groups.append([i])
    return [g for g in groups if len(g) > 1]
