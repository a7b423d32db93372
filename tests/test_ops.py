import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

from lfe.core import ops

X = np.linspace(-3.0, 3.0, 61, dtype=np.float32)


def test_paper_op_set_has_27_unary_and_7_binary_ops():
    s = ops.get_op_set("paper")
    assert (s.n_unary, s.n_binary, len(s)) == (27, 7, 34)
    assert len({op.name for op in s.ops}) == 34
    assert all(s.arity(i) == 1 for i in range(27)) and all(s.arity(i) == 2 for i in range(27, 34))


@pytest.mark.parametrize("op_set", ["paper", "authors"])
def test_jax_and_numpy_forms_agree(op_set):
    s = ops.get_op_set(op_set)
    for op in s.unary:
        np.testing.assert_allclose(np.asarray(op.fn(jnp.asarray(X))), op.np_fn(X), rtol=2e-5,
                                   atol=1e-6, err_msg=op.name)
    for op in s.binary:
        a, b = X, X[::-1].copy()
        np.testing.assert_allclose(np.asarray(op.fn(jnp.asarray(a), jnp.asarray(b))),
                                   op.np_fn(a, b), rtol=2e-5, atol=1e-6, err_msg=op.name)


def test_guarded_forms_follow_spec():
    s = ops.get_op_set("paper")
    f = {op.name: op.np_fn for op in s.ops}
    x = np.array([-2.0, 0.0, 0.5], np.float64)
    np.testing.assert_allclose(f["ln"](x), np.log(np.abs(x) + 1e-7))
    np.testing.assert_allclose(f["log10"](x), np.log10(np.abs(x) + 1e-7))
    np.testing.assert_allclose(f["sqrt"](x), np.sqrt(np.abs(x)))
    np.testing.assert_allclose(f["softplus"](x), np.log(np.abs(1 + np.exp(x)) + 1e-7))
    np.testing.assert_allclose(f["reciprocal"](x), 1 / (x + 1e-7))
    np.testing.assert_allclose(f["dsoftsign"](x), 1 / (1 + np.abs(x)) ** 2)
    np.testing.assert_allclose(f["bessel_i0e"](x), sps.i0e(x))
    np.testing.assert_allclose(f["div_sqrt"](x, x), x / np.sqrt(1 + x * x))
    # arctanh is clipped to (-1+eps, 1-eps): finite at and beyond +-1
    assert np.all(np.isfinite(f["arctanh"](np.array([-5.0, -1.0, 1.0, 5.0]))))
    assert np.all(np.isfinite(np.asarray(s.ops[s.index("arctanh")].fn(jnp.array([1.0, -1.0])))))


def test_authors_variant_replaces_two_slots():
    paper, authors = ops.get_op_set("paper"), ops.get_op_set("authors")
    assert [op.name for op in paper.ops] == [op.name for op in authors.ops]
    x = np.array([0.5, 2.0])
    np.testing.assert_allclose(authors.ops[authors.index("arctanh")].np_fn(x), np.arctan(x))
    np.testing.assert_allclose(authors.ops[authors.index("dsoftsign")].np_fn(x), 1 / (1 + x))
    changed = [p.name for p, a in zip(paper.ops, authors.ops, strict=True) if p is not a]
    assert sorted(changed) == ["arctanh", "dsoftsign"]


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="unknown op 'foo'.*ln") as e:
        ops.get_op_set("paper").index("foo")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown op set 'x'; available: authors, paper"):
        ops.get_op_set("x")


def test_templates_format_with_arguments():
    for op in ops.get_op_set("paper").ops:
        assert "{a}" in op.text
        assert ("{b}" in op.text) == (op.arity == 2)
        op.latex.format(a="x", b="z")  # no stray braces
