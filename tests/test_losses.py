import json

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from lfe.core import genome as G
from lfe.core import integrity as I
from lfe.core import reference as R
from lfe.training import compile as C
from lfe.training import losses as L

EPS = 1e-7


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# Table 5 / Table 6 / §3.6 written directly from the paper, in float64 NumPy.
def _h1(y, p):
    return p / np.sqrt(1 + (p / (y + EPS)) ** 2)


def _ln(x):
    return np.log(np.abs(x) + EPS)


def _lg(x):
    return np.log10(np.abs(x) + EPS)


PRINTED = {
    "cross_entropy": lambda y, p: -(y * np.log(p + EPS)),
    "neuroloss1_printed": lambda y, p: -(_ln(_h1(y, p))
                                         + p * np.sqrt(1 + (p / (y + EPS)) ** 2)),
    "neuroloss2": lambda y, p: -(_lg(_h1(y, p)) + np.sin(_h1(y, p))),
    "neuroloss3": lambda y, p: -(_ln(_h1(y, p)) + np.minimum(y, p / (y + EPS))),
    "bessel_loss": lambda y, p: np.minimum(__import__("scipy.special").special.i0e(p), y)
    + __import__("scipy.special").special.i0e(p),
    "honorable1": lambda y, p: -_ln(p / np.sqrt(1 + y ** 2))
    / np.sqrt(1 + np.maximum(y, p / (y + EPS)) ** 2),
    "honorable2": lambda y, p: -np.maximum(_lg(_h1(y, p)), np.arcsinh(_h1(y, p))),
    "honorable3": lambda y, p: -(_lg(_h1(y, p)) + _h1(y, p) ** 2),
    "honorable4": lambda y, p: -(_ln(_h1(y, p)) + np.sinh(_h1(y, p))),
    "honorable5": lambda y, p: -(_ln(_h1(y, p)) + __import__("scipy.special").special.erf(
        p / (y + EPS))),
    "honorable6": lambda y, p: -(_lg(_h1(y, p)) + np.tanh(p / (y + EPS))),
    "honorable7": lambda y, p: -_ln(y * p) / np.sqrt(1 + (p / (y + EPS)) ** 2),
}
# Only NeuroLoss1 trains as the negation of its printed form (the integrity check flips it).
TRAINED_SIGN = {name: (-1 if name == "neuroloss1_printed" else 1) for name in PRINTED}


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, size=16)
    smoothed = np.eye(10)[labels] * 0.9 + 0.01  # label smoothing 0.1
    return logits, labels, smoothed


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_values_match_the_papers_formulas(name, batch):
    logits, labels, smoothed = batch
    p = np_softmax(logits.astype(np.float64))
    for targets, y in ((labels, np.eye(10)[labels]), (smoothed, smoothed)):
        want = TRAINED_SIGN[name] * PRINTED[name](y, p).sum(-1)
        got = np.asarray(L.get(name)(jnp.asarray(logits), jnp.asarray(targets)))
        assert got.shape == (16,)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_dropin_functions_and_label_forms(batch):
    logits, labels, _ = batch
    onehot = np.eye(10, dtype=np.float32)[labels]
    for fn in (L.cross_entropy, L.neuroloss1, L.neuroloss2, L.neuroloss3, L.bessel_loss,
               L.honorable7):
        np.testing.assert_allclose(fn(logits, labels), fn(logits, onehot), rtol=1e-6)
        assert jax.jit(fn)(logits, labels).dtype == jnp.float32
    np.testing.assert_allclose(
        L.cross_entropy(logits, labels),
        -np.log(np_softmax(logits.astype(np.float64))[np.arange(16), labels] + EPS), rtol=1e-5)
    with pytest.raises(ValueError, match="fit neither"):
        L.cross_entropy(logits, labels[:3])
    with pytest.raises(ValueError, match="fit neither"):
        L.cross_entropy(logits, labels.astype(np.float32))


@pytest.mark.parametrize("name", L.available())
def test_shipped_orientation_is_the_one_the_integrity_check_selects(name):
    loss = L.get(name)
    reason, sign, normalised = I.check_term(loss.term)
    assert (reason, sign) == ("ok", 1), "the shipped term needs no further flip"
    if name == "bessel_loss":  # a valley: minimal at yhat = 0.76 on the correct side
        assert 200 < np.argmin(normalised) < 300
    else:
        assert np.argmin(normalised) < 5, "minimal near the correct answer (index 0)"
    if loss.genome is not None:
        v = I.check_batch([loss.genome], I.Archive())[0]
        assert v.ok and v.sign == loss.sign


def test_neuroloss1_printed_is_the_negation_of_its_printed_form():
    printed = PRINTED["neuroloss1_printed"]
    reason, sign, _ = I.check_term(lambda y, p: printed(np.asarray(y, np.float64),
                                                        np.asarray(p, np.float64)))
    assert (reason, sign) == ("ok", -1)
    # its wrong-class term yhat*sqrt(1+(yhat/eps)^2) ~ 1e7 * yhat^2 makes its magnitude huge
    assert float(L.neuroloss1_printed(jnp.array([[2.0, 0.0, 0.0]]), jnp.array([0]))[0]) > 1e5


@pytest.mark.parametrize("name", ["cross_entropy", "neuroloss2", "neuroloss3", "bessel_loss"])
def test_gradients_are_finite_and_match_finite_differences(name, batch):
    logits, labels, _ = batch
    def f(z):
        return L.get(name)(z, labels[: len(z)]).mean()

    jax.test_util.check_grads(f, (jnp.asarray(logits[:4] / 3),), order=1, modes=["rev"],
                              atol=5e-2, rtol=5e-2, eps=1e-2)
    assert np.all(np.isfinite(np.asarray(jax.grad(f)(jnp.asarray(logits)))))


def test_from_genome_takes_the_checks_orientation():
    g = G.make([("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                ("sinh", ["h1"])])  # sinh(y ln yhat): decreasing, so the check flips it
    loss = L.from_genome(g)
    assert loss.sign == -1
    y, p = jnp.eye(3)[:1], jnp.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(loss.loss(y, p), -C.to_loss(g, 1)(y, p))


def _accepted_with_zero_steps(seed: int, n: int):
    """The random genomes among ``n`` drawn with ``seed`` that the check accepts and whose float32
    phenotype has zero steps (where orientations read from different float32 curves can
    disagree), with their verdicts."""
    rng = np.random.default_rng(seed)
    gs = [G.random_genome(rng) for _ in range(n)]
    return [(g, v) for g, v in zip(gs, I.check_batch(gs, I.Archive()), strict=True)
            if v.ok and np.any(np.diff(R.phenotype(g)) == 0)]


def test_from_genome_follows_the_check_where_the_jax_phenotype_disagrees():
    cases = _accepted_with_zero_steps(0, 2600)
    # the orientation from_genome took before: the shape rule on the JAX phenotype
    jax_signs = [I.check_term(C.graph_fn(g))[1] for g, _ in cases]
    disagree = [(g, v) for (g, v), s in zip(cases, jax_signs, strict=True) if s != v.sign]
    assert disagree, "seed 0's first 2,600 draws hold one such genome (draw 2513)"
    for g, v in cases:
        loss = L.from_genome(g)
        assert loss.sign == v.sign
    g, v = disagree[0]
    y, p = jnp.eye(3)[:1], jnp.array([[0.5, 0.3, 0.2]])
    np.testing.assert_array_equal(L.from_genome(g).loss(y, p), C.to_loss(g, v.sign)(y, p))


def test_from_genome_refuses_a_rejected_genome_unless_allowed(tmp_path):
    plateau = G.make([("min", ["yhat", "minus_one"]), ("neg", ["y"]), ("neg", ["h0"]),
                      ("neg", ["h0"]), ("add", ["h0", "h1"])])  # -1 - y: a constant loss
    reason = I.check_batch([plateau], I.Archive())[0].reason
    assert reason == "plateau"
    with pytest.raises(ValueError, match=rf"^genome rejected by the integrity check \({reason}\); "
                                         r"pass allow_rejected=True to use it anyway$"):
        L.from_genome(plateau)
    loss = L.from_genome(plateau, allow_rejected=True)
    assert loss.sign == I.check_term(C.graph_fn(plateau))[1]
    assert L.from_genome(plateau, sign=-1).sign == -1  # an explicit sign is not checked
    bare = tmp_path / "rejected.json"
    bare.write_text(G.dumps(plateau))
    with pytest.raises(ValueError, match=f"integrity check \\({reason}\\)"):
        L.resolve(str(bare))
    assert L.resolve(str(bare), allow_rejected=True).sign == loss.sign
    cyclic = G.make([("neg", ["h1"]), ("add", ["h0", "yhat"]), ("neg", ["y"]), ("neg", ["y"]),
                     ("add", ["h1", "h2"])])  # h0 and h1 read each other
    with pytest.raises(ValueError, match=r"\(cycle\)"):
        L.from_genome(cyclic)
    with pytest.raises(ValueError, match="has a cycle"):
        L.from_genome(cyclic, allow_rejected=True)


def test_resolve_names_and_files(tmp_path):
    assert L.resolve("neuroloss3") is L.get("neuroloss3")
    g = L.get("neuroloss2").genome
    plain = tmp_path / "nl2.json"
    plain.write_text(G.dumps(g))
    assert L.resolve(str(plain)).genome == g and L.resolve(str(plain)).sign == -1
    entry = tmp_path / "best.json"
    entry.write_text(json.dumps({"genome": G.to_dict(g), "sign": -1, "name": "mine"}))
    assert L.resolve(str(entry)).name == "mine"
    run_best = tmp_path / "run" / "best.json"  # an evolution run's top-k list, fittest first
    run_best.parent.mkdir()
    g3 = L.get("neuroloss3").genome
    run_best.write_text(json.dumps([{"id": 7, "fitness": 0.6, "sign": -1, "genome": G.to_dict(g)},
                                    {"id": 3, "fitness": 0.5, "sign": 1, "genome": G.to_dict(g3)}]))
    first, second = L.resolve(str(run_best)), L.resolve(f"{run_best}#2")
    assert (first.name, first.genome, first.sign) == ("cand7", g, -1)
    assert (second.name, second.genome, second.sign) == ("cand3", g3, 1)
    assert L.resolve(f"{run_best}#1").name == "cand7"
    for spec, message in ((f"{run_best}#3", "holds 2 entries, no entry 3"),
                          (f"{run_best}#x", "must be a number"),
                          (f"{plain}#1", "holds one genome")):
        with pytest.raises(ValueError, match=message):
            L.resolve(spec)
    with pytest.raises(ValueError, match="unknown loss 'nope'; available: bessel_loss"):
        L.resolve("nope")
    with pytest.raises(ValueError, match="cannot read loss file"):
        L.resolve(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON") as e:
        L.resolve(str(bad))
    assert "\n" not in str(e.value)
    wrong_op = tmp_path / "op.json"
    wrong_op.write_text(G.dumps(g).replace('"sin"', '"sine"'))
    with pytest.raises(ValueError, match="unknown op 'sine'"):
        L.resolve(str(wrong_op))


def test_neuroloss1_h1_reading_hugs_neuroloss2():
    a = I.check_term(L.get("neuroloss1_h1").term)[2]
    b = I.check_term(L.get("neuroloss2").term)[2]
    c = I.check_term(L.get("neuroloss1_printed").term)[2]
    assert np.abs(a - b).max() < 0.05 < np.abs(c - b).max()


def test_neuroloss1_reading_hand_computed_and_named():
    r = L.get("neuroloss1_reading")
    assert r.name == "neuroloss1_reading" and r.sign == -1 and "reading" in r.formula
    assert "reading" in L.neuroloss1_reading.__doc__
    y, yhat = np.array([[0.0, 1.0]], np.float32), np.array([[0.25, 0.75]], np.float32)
    # correct class: h1 = 0.75/sqrt(1+0.75²) = 0.6, ln(0.6) + 0.75·0.6 = -0.0608256;
    # wrong class: h1 = 0.25/sqrt(1+(2.5e6)²) = 1e-7, ln(1e-7 + 1e-7) + 0.25·1e-7 = -15.424949
    np.testing.assert_allclose(np.asarray(r.loss(y, yhat)), [15.424949 + 0.0608256], rtol=1e-5)
    h1 = L.get("neuroloss1_h1")  # the other reading: + h1 instead of + ŷ·h1
    np.testing.assert_allclose(np.asarray(h1.loss(y, yhat)), [15.424949 - 0.0891744], rtol=1e-5)
