"""The losses as a library: the stable cross-entropy, the saturation the docstring documents,
label checks, and resolve's integrity check on genome files."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lfe.core import genome as G
from lfe.training import losses as L


def _value_and_grad(fn, logits, labels):
    value, grad = jax.value_and_grad(lambda z: fn(z, labels).sum())(jnp.asarray(logits))
    return float(value), np.asarray(grad)


def test_softmax_cross_entropy_is_stable_where_cross_entropy_saturates():
    logits, label = np.array([[100.0, 0.0, 0.0]], np.float32), np.array([1])
    value, grad = _value_and_grad(L.softmax_cross_entropy, logits, label)
    assert value == pytest.approx(100.0)
    np.testing.assert_allclose(grad, [[1.0, -1.0, 0.0]], atol=1e-6)
    value, grad = _value_and_grad(L.cross_entropy, logits, label)
    assert value == pytest.approx(-np.log(1e-7), rel=1e-6)  # 16.118: capped by ε
    np.testing.assert_array_equal(np.abs(grad), 0.0)
    assert "softmax_cross_entropy" in L.cross_entropy.__doc__


def test_softmax_cross_entropy_equals_optax_for_ids_and_targets():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(8, 10)) * 4).astype(np.float32)
    labels = rng.integers(0, 10, size=8)
    smoothed = np.eye(10, dtype=np.float32)[labels] * 0.9 + 0.01
    np.testing.assert_allclose(L.softmax_cross_entropy(logits, labels),
                               optax.softmax_cross_entropy_with_integer_labels(logits, labels),
                               rtol=1e-6)
    np.testing.assert_allclose(L.softmax_cross_entropy(logits, smoothed),
                               optax.softmax_cross_entropy(logits, smoothed), rtol=1e-6)
    # far from saturation (probabilities >> ε) the two cross-entropies agree
    np.testing.assert_allclose(L.softmax_cross_entropy(logits / 4, labels),
                               L.cross_entropy(logits / 4, labels), rtol=1e-4)


def test_the_saturation_table_in_the_docstring_is_what_the_losses_do():
    doc = L.__doc__
    table = doc[doc.index("    loss           gap 10"):].split("\n\n")[0].splitlines()
    gaps = [float(g) for g in re.findall(r"gap (\d+)", table[0])]
    assert gaps == [10, 17, 20, 100] and len(table) == 5
    for row in table[1:]:
        name, cells = row.split()[0], re.findall(r"([\d.e+-]+), ([\d.e+-]+)", row)
        for gap, (value, grad) in zip(gaps, cells, strict=True):
            v, g = _value_and_grad(L.get(name), np.array([[gap, 0.0, 0.0]], np.float32),
                                   np.array([1]))
            assert v == pytest.approx(float(value), rel=6e-4), (name, gap)
            assert np.abs(g).max() == pytest.approx(float(grad), rel=0.03, abs=1e-12), (name, gap)


@pytest.mark.parametrize("fn", [L.cross_entropy, L.neuroloss3, L.softmax_cross_entropy])
def test_labels_outside_the_classes_are_an_error(fn):
    logits = np.zeros((4, 10), np.float32)
    for bad in (12, -1):
        with pytest.raises(ValueError, match=rf"class ids in \[0, 10\), got values from "
                                             rf"{min(bad, 0)} to {max(bad, 3)}$"):
            fn(logits, np.array([0, 1, bad, 3]))
    assert fn(logits, np.array([0, 9, 5, 3])).shape == (4,)


def test_labels_under_jit_are_not_checked_and_give_a_zero_target_row():
    """The documented limit: a traced label is not checked; its row has no target."""
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 10)), jnp.float32)
    out = jax.jit(L.cross_entropy)(logits, jnp.array([3, 12]))
    assert float(out[1]) == 0.0 and float(out[0]) > 0.0
    assert "checkify" in L.targets.__doc__


def _write(path, genome, **entry):
    path.write_text(json.dumps({"genome": G.to_dict(genome), **entry}))
    return str(path)


def test_resolve_refuses_a_rejected_genome_also_with_a_sign(tmp_path):
    constant = G.make([("min", ["yhat", "minus_one"]), ("neg", ["y"]), ("neg", ["h0"]),
                       ("neg", ["h0"]), ("add", ["h0", "h1"])])  # -1 - y
    no_yhat = G.make([("neg", ["y"]), ("exp", ["h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                      ("add", ["h0", "h1"])])  # -y + exp(-y)
    for genome, reason in ((constant, "plateau"), (no_yhat, "missing_yhat")):
        for sign in (1, -1):
            spec = _write(tmp_path / f"{reason}{sign}.json", genome, sign=sign)
            with pytest.raises(ValueError, match=rf"integrity check \({reason}\); pass "
                                                 "allow_rejected=True"):
                L.resolve(spec)
            loss = L.resolve(spec, allow_rejected=True)
            assert (loss.genome, loss.sign) == (genome, sign)
    accepted = _write(tmp_path / "nl3.json", L.get("neuroloss3").genome, sign=-1)
    assert L.resolve(accepted).sign == -1


def test_readme_saturation_table_is_the_docstrings():
    import os

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    doc_rows = {r.split()[0]: re.findall(r"[\d.e+-]+, [\d.e+-]+", r) for r in
                L.__doc__[L.__doc__.index("    loss           gap 10"):].split("\n\n")[0]
                .splitlines()[1:]}
    for name, cells in doc_rows.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
        assert [c.strip() for c in row.strip("|").split("|")[1:]] == cells, name
    stable = next(line for line in readme.splitlines()
                  if line.startswith("| `softmax_cross_entropy` |"))
    for gap in (10.0, 17.0, 20.0, 100.0):
        v, g = _value_and_grad(L.softmax_cross_entropy, np.array([[gap, 0.0, 0.0]], np.float32),
                               np.array([1]))
        assert v == pytest.approx(gap, rel=1e-3) and np.abs(g).max() == pytest.approx(1.0, rel=1e-3)
    assert "100, 1 (gradient [1, −1, 0])" in stable


def test_fingerprints_name_what_a_loss_computes():
    prints = {n: L.fingerprint(L.to_spec(L.get(n))) for n in L.available()}
    assert "neuroloss1" not in prints  # an alias, not a loss of its own
    assert len(set(prints.values())) == len(prints)  # every library loss its own
    assert L.fingerprint({"name": "neuroloss1"}) == prints["neuroloss1_reading"]
    assert all(len(p) == 12 and int(p, 16) >= 0 for p in prints.values())
    nl2 = L.get("neuroloss2")
    evolved = {"name": "cand9", "genome": G.to_dict(nl2.genome), "sign": nl2.sign}
    assert L.fingerprint(evolved) == prints["neuroloss2"]  # by genome and sign, not by name
    assert L.fingerprint({**evolved, "sign": -nl2.sign}) != prints["neuroloss2"]
