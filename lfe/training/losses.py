"""Drop-in replacements for cross-entropy, in optax style.

Every loss here is ``fn(logits, labels) -> [batch]`` (no reduction over the batch), where
``labels`` are integer class ids ``[batch]`` or target distributions ``[batch, classes]``
(label smoothing, CutMix). Inside, ``yhat = softmax(logits)`` in float32 and the per-class term
``term(y, yhat)`` is summed over classes — the exact setting the losses were evolved in.
Integer class ids outside [0, classes) are an error where they are concrete (``targets``).

Saturation: working on probabilities with an ε guard, every loss here stops responding once the
correct class's probability falls under ε = 1e-7 (a logit gap of ln(1/ε) ≈ 16.1). Measured
with logits [gap, 0, 0] and label 1 (float32):

    loss           gap 10: value, |grad|   gap 17            gap 20            gap 100
    cross_entropy  10.00, 1.00             15.77, 0.29       16.10, 0.020      16.118, 0
    neuroloss2     17.74, 0.43             20.41, 0.23       20.68, 0.018      20.699, 0
    neuroloss3     40.85, 1.00             46.99, 0.53       47.62, 0.040      47.661, 0
    bessel_loss    3.466, 1.1e-4           3.466, 6.0e-8     3.466, 1.5e-9     3.466, 0

(|grad|: largest component over the logits; printed NeuroLoss1's wrong-class term 1e7·ŷ²
dominates it: 9.9981e6 at gap 10, 1e7 from gap 17 on, gradient 0 at gap 100). A badly wrong
example thus adds a constant and no gradient, where log-softmax cross-entropy gives value = gap and
gradient [1, -1, 0]: ``softmax_cross_entropy`` is that stable form for training with CE.

The library: ``cross_entropy``, ``neuroloss1``–``neuroloss3`` (paper Table 5), ``bessel_loss``
(§3.6) and the seven honorable mentions ``honorable1``–``honorable7`` (Table 6, in table order).
In Table 6 the paper writes ``\\log`` beside ``\\ln``; those entries use log10 (the paper's
log10 op). Every loss is a ``Genome`` (``get(name).genome``) except ``neuroloss1_printed``, so the
integrity check and the phenotype plots treat it like an evolved loss.

NeuroLoss1 comes in two forms, and ``neuroloss1`` is the reading:

- ``neuroloss1_printed`` is Table 5's formula as printed. It *decreases* toward the correct
  answer, so the loss that trains is the negation of the printed expression (the orientation the
  integrity check selects; every other loss keeps its printed sign). Its second term
  ŷ·sqrt(1+(ŷ/(y+ε))²) needs a product with a square root, which no single op of Table 2 gives
  (x1/sqrt(1+x2²) divides), and the cell has no hidden node to spare for it: it cannot be what
  evolution found, and ships as a closed form (``integrity.check_term`` / ``plots`` take any
  per-class term). On Table 4's protocol it trains to 51.40 ± 0.71% against cross-entropy's
  57.21 ± 0.63% (10 seeds, below CE on every seed by 4.4-6.9 points; ``results/table4/``).
- ``neuroloss1_reading`` (``neuroloss1`` is the same loss; tables name it
  ``neuroloss1_reading``) is a *reading* of Table 5's NL1 that the search space can express,
  -(ln(|h1|+ε) + ŷ·h1) with h1 = ŷ/sqrt(1+(ŷ/(y+ε))²): the printed second term
  ŷ·sqrt(1+(ŷ/(y+ε))²) read as ŷ·(ŷ/sqrt(1+(ŷ/(y+ε))²)), the product of ŷ and the reused node
  h1 (a 4-node genome, no flip). It was chosen, before any training, from the expressible
  readings by what the paper says of NL1 apart from Table 5 (its phenotype hugs NeuroLoss2's at
  small and large ŷ and lies under it for ŷ < 0.4, Figure 2; NeuroLoss2 dips below it and below
  CE on ŷ in [0.99, 1], Figure 3, as below NeuroLoss3; its global minimum is at ŷ ≈ 0.99998 and
  its normalised phenotype lies above CE's, §4.5; the ``log(y, ŷ) + f(y, ŷ)`` form with the
  repeated ŷ/(y+ε)); the printed formula's 1e7·ŷ² wrong-class term fails these, and of 485
  one-node second terms only this one, NL3's own and exp(h1) / arctanh(h1) pass them all
  (``results/neuroloss1/README.md``). On Table 4's protocol it trains at cross-entropy's level:
  57.26 ± 0.67% against CE's 57.21 ± 0.63% over 10 seeds (Welch one-sided p = 0.43; paired
  with CE by seed +0.05 ± 0.17 points, above CE on 7 of 10 seeds; ``results/table4/``). Like
  every loss here it lands about 1.4 points under its paper value (58.71).
- ``neuroloss1_h1`` is another reading, -(ln(|h1|+ε) + h1) (the printed product read as the
  fraction h1): it fits Figure 2 but not Figure 3 or CE's ordering; it is kept so that the two
  can be compared by training.

References: Morgan & Hougen, "Neural Loss Function Evolution for Large-Scale Image Classifier
Convolutional Neural Networks" (Tables 5 and 6, §3.6).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp

from lfe.core import genome as genome_lib
from lfe.core import integrity
from lfe.core.genome import Genome
from lfe.core.ops import EPS
from lfe.training import compile as compile_lib

Term = Callable[[jax.Array, jax.Array], jax.Array]
LOSS_FORMS = ("data", "unrolled")  # how an evolved loss is compiled (``LossDef.training_loss``)


@dataclasses.dataclass(frozen=True)
class LossDef:
    """A loss of the library or an evolved one, in its trained orientation."""

    name: str
    term: Term  # per-class term f(y, yhat), elementwise, already oriented
    genome: Genome | None = None
    sign: int = 1  # orientation applied to the genome's graph output
    formula: str = ""  # the paper's printed formula, for reference
    from_graph: bool = False  # term is sign × the genome's graph (``from_genome``)

    def loss(self, y, yhat) -> jax.Array:
        """The trainer's contract: ``loss(y, yhat) -> [batch]`` on probabilities, float32."""
        y = jnp.asarray(y, jnp.float32)
        yhat = jnp.asarray(yhat, jnp.float32)
        return jnp.sum(self.term(y, yhat), axis=-1)

    def training_loss(self, form: str = "data") -> Callable:
        """The loss the trainer gets. For a loss made from its genome's graph (``from_genome``)
        in ``form`` "data", the data form ``compile.DataLoss`` (the same values and gradients;
        one compiled train step serves every genome of its op set); otherwise ``loss`` (the
        unrolled form, compiled per loss)."""
        if form not in LOSS_FORMS:
            raise ValueError(f"unknown loss form {form!r}; available: {', '.join(LOSS_FORMS)}")
        if form == "data" and self.from_graph:
            return compile_lib.data_loss(self.genome, self.sign)
        return self.loss

    def __call__(self, logits, labels) -> jax.Array:
        """The drop-in form: ``(logits, labels or targets) -> [batch]``."""
        return self.loss(*targets_and_probs(logits, labels))


def targets_and_probs(logits, labels) -> tuple[jax.Array, jax.Array]:
    """``(y, yhat)``: float32 targets and softmax probabilities from logits and labels."""
    logits = jnp.asarray(logits)
    return targets(logits, labels), jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def targets(logits, labels) -> jax.Array:
    """Float32 targets ``[..., C]`` from integer class ids ``[...]`` or target distributions.

    Class ids outside [0, C) raise ValueError where they are concrete arrays (eager calls).
    Under ``jax.jit`` they are tracers and are not checked: ``one_hot`` then gives an all-zero
    target row, so the example adds a constant to the loss and no gradient; check labels
    before the jitted step, or wrap it with ``jax.experimental.checkify``.
    """
    logits = jnp.asarray(logits)
    if logits.ndim < 1:
        raise ValueError(f"logits must have a class axis, got shape {logits.shape}")
    labels = jnp.asarray(labels)
    n = logits.shape[-1]
    if labels.shape == logits.shape[:-1] and jnp.issubdtype(labels.dtype, jnp.integer):
        if not isinstance(labels, jax.core.Tracer) and labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= n:
                raise ValueError(f"labels must be integer class ids in [0, {n}), "
                                 f"got values from {lo} to {hi}")
        return jax.nn.one_hot(labels, n, dtype=jnp.float32)
    if labels.shape == logits.shape:
        return labels.astype(jnp.float32)
    raise ValueError(f"labels of shape {labels.shape} ({labels.dtype}) fit neither integer "
                     f"class ids {logits.shape[:-1]} nor targets {logits.shape}")


def softmax_cross_entropy(logits, labels) -> jax.Array:
    """Cross-entropy in its numerically stable form: ``-sum_c y_c log_softmax(logits)_c``.

    The same ``(logits, labels or targets) -> [batch]`` contract as ``cross_entropy`` and the
    same values as ``optax.softmax_cross_entropy``, in float32. ``cross_entropy`` is
    -sum y ln(softmax + ε) on probabilities, the form the losses were evolved and compared in:
    it saturates (module docstring) where this one does not: a wrong-class logit of 100
    (logits [100, 0, 0], label 1) gives 100 with gradient [1, -1, 0] here, 16.12 with gradient
    [0, 0, 0] there. Use this one to train with cross-entropy outside the search.
    """
    y = targets(logits, labels)
    log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    return -jnp.sum(y * log_probs, axis=-1)


def from_genome(g: Genome, sign: int | None = None, name: str = "evolved", *,
                allow_rejected: bool = False) -> LossDef:
    """A genome as a loss, ``sign`` × its graph output summed over classes.

    ``sign=None`` takes the orientation that the integrity check (``integrity.check_batch``, the
    NumPy check evolution runs) selects, so a bare genome trains the way it was accepted. The
    JAX phenotype is not used for this: where a float32 phenotype has zero steps it can read a
    curve's direction differently from the check. A genome the check rejects raises
    ``ValueError`` unless ``allow_rejected``; then it gets the orientation of the shape rule on
    its JAX phenotype (``integrity.check_term``), whatever the rule's verdict.
    """
    if sign is None:
        sign = _checked_sign(g, allow_rejected)
    f = compile_lib.graph_fn(g)
    return LossDef(name, lambda y, yhat: sign * f(y, yhat), genome=g, sign=sign,
                   from_graph=True)


def _verdict(g: Genome, allow_rejected: bool) -> integrity.Verdict:
    """The integrity check's verdict on ``g`` alone; a rejection raises unless allowed."""
    verdict = integrity.check_batch([g], integrity.Archive())[0]
    if not verdict.ok and not allow_rejected:
        raise ValueError(f"genome rejected by the integrity check ({verdict.reason}); "
                         "pass allow_rejected=True to use it anyway")
    return verdict


def _checked_sign(g: Genome, allow_rejected: bool) -> int:
    verdict = _verdict(g, allow_rejected)
    if verdict.ok:
        return verdict.sign
    if verdict.reason == "cycle":
        raise ValueError("cannot build a loss from a genome whose active graph has a cycle")
    return integrity.check_term(compile_lib.graph_fn(g))[1]


# --------------------------------------------------------------------------- the library

def _neuroloss1_term(y, yhat):
    scale = jnp.sqrt(1.0 + (yhat / (y + EPS)) ** 2)
    # Trained orientation: the negation of Table 5's printed -(ln(...) + yhat*scale).
    return jnp.log(jnp.abs(yhat / scale) + EPS) + yhat * scale


# The shared structure of NeuroLoss 2/3 and most honorable mentions: h0 = ŷ/(y+ε),
# h1 = ŷ/sqrt(1+h0²).
_H01 = [("div", ["yhat", "y"]), ("div_sqrt", ["yhat", "h0"])]

# name -> (nodes for h0..h3 and root, orientation, printed formula)
_GENOMES: dict[str, tuple[list, int, str]] = {
    "cross_entropy": (
        [("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
         ("neg", ["h1"])], 1, "-(1/n) sum_i y_i ln(yhat_i + eps)"),
    "neuroloss2": (
        _H01 + [("log10", ["h1"]), ("sin", ["h1"]), ("add", ["h2", "h3"])], -1,
        "-(1/n) sum_i (log10(|yhat/sqrt(1+(yhat/(y+eps))^2)|+eps) "
        "+ sin(yhat/sqrt(1+(yhat/(y+eps))^2)))"),
    "neuroloss3": (
        _H01 + [("ln", ["h1"]), ("min", ["y", "h0"]), ("add", ["h2", "h3"])], -1,
        "-(1/n) sum_i (ln(|yhat/sqrt(1+(yhat/(y+eps))^2)|+eps) + min(y, yhat/(y+eps)))"),
    "bessel_loss": (
        [("bessel_i0e", ["yhat"]), ("min", ["h0", "y"]), ("neg", ["h0"]), ("neg", ["h0"]),
         ("add", ["h1", "h0"])], 1, "(1/n) sum_i (min(bessel_i0e(yhat), y) + bessel_i0e(yhat))"),
    "honorable1": (
        [("div", ["yhat", "y"]), ("div_sqrt", ["yhat", "y"]), ("ln", ["h1"]),
         ("max", ["y", "h0"]), ("div_sqrt", ["h2", "h3"])], -1,
        "-(1/n) sum_i ln(|yhat/sqrt(1+y^2)|+eps) / sqrt(1+max(y, yhat/(y+eps))^2)"),
    "honorable2": (
        _H01 + [("log10", ["h1"]), ("arcsinh", ["h1"]), ("max", ["h2", "h3"])], -1,
        "-(1/n) sum_i max(log(|h1|+eps), arcsinh(h1)), h1 = yhat/sqrt(1+(yhat/(y+eps))^2)"),
    "honorable3": (
        _H01 + [("log10", ["h1"]), ("square", ["h1"]), ("add", ["h2", "h3"])], -1,
        "-(1/n) sum_i (log(|h1|+eps) + h1^2)"),
    "honorable4": (
        _H01 + [("ln", ["h1"]), ("sinh", ["h1"]), ("add", ["h2", "h3"])], -1,
        "-(1/n) sum_i (ln(|h1|+eps) + sinh(h1))"),
    "honorable5": (
        _H01 + [("ln", ["h1"]), ("erf", ["h0"]), ("add", ["h2", "h3"])], -1,
        "-(1/n) sum_i (ln(|h1|+eps) + erf(yhat/(y+eps)))"),
    "honorable6": (
        _H01 + [("log10", ["h1"]), ("tanh", ["h0"]), ("add", ["h2", "h3"])], -1,
        "-(1/n) sum_i (log(|h1|+eps) + tanh(yhat/(y+eps)))"),
    "honorable7": (
        [("div", ["yhat", "y"]), ("mul", ["y", "yhat"]), ("ln", ["h1"]), ("neg", ["h0"]),
         ("div_sqrt", ["h2", "h0"])], -1,
        "-(1/n) sum_i ln(y*yhat+eps) / sqrt(1+(yhat/(y+eps))^2)"),
}


# Library names that stand for another loss: ``neuroloss1`` is the paper's NeuroLoss1 as this
# library ships it, the reading (module docstring); the printed formula is
# ``neuroloss1_printed``.
ALIASES = {"neuroloss1": "neuroloss1_reading"}


def _build_registry() -> dict[str, LossDef]:
    registry = {}
    for name, (nodes, sign, formula) in _GENOMES.items():
        loss = from_genome(genome_lib.make(nodes), sign=sign, name=name)
        registry[name] = dataclasses.replace(loss, formula=formula)
    registry["neuroloss1_reading"] = dataclasses.replace(
        from_genome(genome_lib.make(_H01 + [("ln", ["h1"]), ("mul", ["yhat", "h1"]),
                                            ("add", ["h2", "h3"])]), sign=-1,
                    name="neuroloss1_reading"),
        formula="-(1/n) sum_i (ln(|h1|+eps) + yhat*h1), h1 = yhat/sqrt(1+(yhat/(y+eps))^2)  "
                "[a reading of Table 5's NL1, not its printed formula: the second term "
                "yhat*sqrt(1+(yhat/(y+eps))^2) read as yhat*h1]")
    registry["neuroloss1_h1"] = dataclasses.replace(
        from_genome(genome_lib.make(_H01 + [("ln", ["h1"]), ("neg", ["h0"]),
                                            ("add", ["h2", "h1"])]), sign=-1,
                    name="neuroloss1_h1"),
        formula="-(1/n) sum_i (ln(|h1|+eps) + h1), h1 = yhat/sqrt(1+(yhat/(y+eps))^2)  "
                "[not in the paper: Table 5's NL1 read with its second term as the node h1]")
    registry["neuroloss1_printed"] = LossDef(
        "neuroloss1_printed", _neuroloss1_term, genome=None, sign=-1,
        formula="-(1/n) sum_i (ln(|yhat/sqrt(1+(yhat/(y+eps))^2)|+eps) "
                "+ yhat*sqrt(1+(yhat/(y+eps))^2))  [Table 5 as printed; trained: the negation]")
    for alias, name in ALIASES.items():  # the same LossDef: cells and tables say ``name``
        registry[alias] = registry[name]
    return registry


_REGISTRY = _build_registry()
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def available() -> list[str]:
    """The library's losses, one name each (an alias such as ``neuroloss1`` is not listed)."""
    return sorted(n for n in _REGISTRY if n not in ALIASES)


def get(name: str) -> LossDef:
    """The library loss called ``name``; an unknown name lists the available ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        aliases = ", ".join(f"{a} (= {n})" for a, n in ALIASES.items())
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(available())}, "
                         f"{aliases}, or a path to a genome JSON file") from None


def resolve(spec: str, *, allow_rejected: bool = False) -> LossDef:
    """A library name, or a path to a JSON file holding a genome (optionally with its sign).

    The file holds a genome object (``lfe.core.genome.to_dict``), an entry
    ``{"genome": {...}, "sign": -1, "name": "..."}``, or a list of entries as an evolution run
    writes to ``best.json`` (fittest first): ``best.json`` is its first entry, ``best.json#3``
    the third, named ``cand<id>`` after the run's candidate id. A genome without a sign is
    oriented, or refused, by the integrity check as ``from_genome`` does; one with a sign keeps
    it but is refused all the same when the check rejects it (a constant loss, one without ŷ,
    ...): ``allow_rejected=True`` is the explicit override for both.

    ``name=file`` names a genome file's loss explicitly (``rungs=results/run/best.json#1``):
    two runs' best entries may share a ``cand<id>``, and a grid needs distinct names.
    """
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    alias, eq, rest = spec.partition("=")
    if eq and os.path.sep not in alias:  # (a path may hold '=' in a folder's name)
        if not _ALIAS.fullmatch(alias) or alias in _REGISTRY:
            raise ValueError(f"loss {spec!r}: the name before '=' must be letters, digits, '_', "
                             "'.' or '-' and not a library loss's name")
        if not (rest.partition("#")[0].endswith(".json") or os.path.sep in rest):
            raise ValueError(f"loss {spec!r}: only a genome file can be renamed; "
                             f"{rest!r} is not a path")
        return dataclasses.replace(resolve(rest, allow_rejected=allow_rejected), name=alias)
    path, _, rank = spec.partition("#") if ".json#" in spec else (spec, "", "")
    if not (path.endswith(".json") or os.path.sep in path):
        return get(spec)
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read loss file {path!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"loss file {path!r} is not valid JSON: {e}") from None
    stem = os.path.splitext(os.path.basename(path))[0]
    if isinstance(data, list):
        if not rank.isdigit() and rank:
            raise ValueError(f"loss {spec!r}: the rank after '#' must be a number from 1")
        i = int(rank or 1)
        if not 1 <= i <= len(data) or not isinstance(data[i - 1], dict):
            raise ValueError(f"loss {spec!r}: {path!r} holds {len(data)} entries, no entry {i}")
        data = data[i - 1]
        if "id" in data:
            stem = f"cand{data['id']}"
    elif rank:
        raise ValueError(f"loss {spec!r}: '#{rank}' picks an entry of a list (best.json), "
                         f"but {path!r} holds one genome")
    if isinstance(data, dict) and "genome" in data:
        sign = data.get("sign")
        if sign not in (None, 1, -1):
            raise ValueError(f"loss file {path!r}: sign must be 1 or -1, got {sign!r}")
        g = genome_lib.from_dict(data["genome"])
        if sign is not None:
            _verdict(g, allow_rejected)
        return from_genome(g, sign, name=data.get("name") or stem, allow_rejected=allow_rejected)
    return from_genome(genome_lib.from_dict(data), name=stem, allow_rejected=allow_rejected)


def to_spec(loss: LossDef) -> dict:
    """A plain-data description of ``loss`` for another process (``from_spec`` inverts it):
    a library loss by name, any other genome loss by its genome and sign."""
    if loss.genome is not None and loss.name not in _REGISTRY:
        return {"name": loss.name, "genome": genome_lib.to_dict(loss.genome), "sign": loss.sign}
    return {"name": loss.name}


def fingerprint(spec: dict) -> str:
    """12 hex digits naming what the ``to_spec`` dict ``spec`` computes: its genome and sign,
    or, for a closed form (printed NeuroLoss1), its library name and printed formula. A grid
    records it with each cell, so a finished cell is never reused for another loss that took
    its name (a renamed library loss, a different ``cand9``)."""
    d = from_spec(spec)
    body = ({"genome": genome_lib.to_dict(d.genome), "sign": d.sign} if d.genome is not None
            else {"closed_form": d.name, "formula": d.formula})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def from_spec(spec: dict) -> LossDef:
    """The loss a ``to_spec`` dict (or an evolution candidate's spec) describes."""
    if "genome" in spec:
        return from_genome(genome_lib.from_dict(spec["genome"]), spec.get("sign"),
                           name=spec.get("name", "evolved"))
    return get(spec["name"])


def _dropin(name: str):
    loss = _REGISTRY[name]

    def fn(logits, labels):
        return loss(logits, labels)

    fn.__name__ = name
    fn.__doc__ = f"{name}(logits, labels) -> [batch]. Per-class term: {loss.formula}"
    return fn


cross_entropy = _dropin("cross_entropy")
cross_entropy.__doc__ += (" On probabilities with an ε guard, as the losses were evolved: it "
                          "saturates at ln(1/ε) = 16.12 with zero gradient once the correct "
                          "class's probability is under ε = 1e-7; softmax_cross_entropy is the "
                          "stable form.")
neuroloss1 = _dropin("neuroloss1")
neuroloss1_reading = _dropin("neuroloss1_reading")
neuroloss1_printed = _dropin("neuroloss1_printed")
neuroloss2 = _dropin("neuroloss2")
neuroloss3 = _dropin("neuroloss3")
bessel_loss = _dropin("bessel_loss")
honorable1 = _dropin("honorable1")
honorable2 = _dropin("honorable2")
honorable3 = _dropin("honorable3")
honorable4 = _dropin("honorable4")
honorable5 = _dropin("honorable5")
honorable6 = _dropin("honorable6")
honorable7 = _dropin("honorable7")
