import numpy as np
import pytest
import sympy as sp

from lfe.core import equation as E
from lfe.core import genome as G
from lfe.core import integrity as I
from lfe.training import compile as C

NL3 = [("div", ["yhat", "y"]), ("div_sqrt", ["yhat", "h0"]), ("ln", ["h1"]),
       ("min", ["y", "h0"]), ("add", ["h2", "h3"])]


def test_inline_text_elides_inactive_nodes():
    g = G.make([("ln", ["yhat"]), ("mul", ["y", "h0"]), ("sinh", ["h0"]), ("exp", ["h0"]),
                ("neg", ["h1"])])
    assert E.text(g) == "-((y * ln(|ŷ|+eps)))"
    assert E.text(g, sign=-1) == "-(-((y * ln(|ŷ|+eps))))"


def test_let_style_shows_shared_nodes_once():
    g = G.make(NL3)
    assert E.text(g, style="let") == (
        "h0 = (ŷ / (y+eps)); L = (ln(|(ŷ / sqrt(1+(h0)^2))|+eps) + min(y, h0))")
    assert E.text(g).count("(ŷ / (y+eps))") == 2  # inline form repeats the shared node


def test_format_nodes_writes_a_table_of_expressions():
    opset = G.make(NL3).opset
    ln, mul, neg = (opset.index(name) for name in ("ln", "mul", "neg"))
    # node 4 = ln(ŷ), node 5 = y * node 4, node 6 = -node 5, node 7 = unused
    op, first, second = [-1] * 4 + [ln, mul, neg, ln], [-1] * 4 + [1, 0, 5, 0], \
        [-1] * 4 + [-1, 4, -1, -1]
    text = E.format_nodes(opset, op, first, second, [4, 5, 6])
    assert text == [*E.TEXT_INPUTS, "ln(|ŷ|+eps)", "(y * ln(|ŷ|+eps))",
                    "-((y * ln(|ŷ|+eps)))", ""]
    named = E.format_nodes(opset, op, first, second, [4, 5, 6], names={4: "h0"})
    assert named[4:7] == ["ln(|ŷ|+eps)", "(y * h0)", "-((y * h0))"]
    tex = E.format_nodes(opset, op, first, second, [4], latex=True)
    assert tex[:4] == list(E.LATEX_INPUTS) and r"\hat{y}_i" in tex[4]


def test_latex_is_paper_style():
    tex = E.latex(G.make(NL3), sign=-1)
    assert tex.startswith(r"-\frac{1}{n}\sum_i")
    assert r"\hat{y}_i" in tex and r"\ln" in tex and "y_i" in tex
    assert tex.count("{") == tex.count("}")


def test_sympy_export_matches_compiled_values():
    rng = np.random.default_rng(0)
    y = np.array([0.0, 1.0, 0.3, 0.7], np.float64)
    yhat = np.array([0.2, 0.9, 0.5, 0.01], np.float64)
    checked = 0
    while checked < 40:
        g = G.random_genome(rng)
        if I.structural_reason(g) is not None:
            continue
        name_ops = {g.opset.ops[g.ops[n - 4]].name for n in G.active_nodes(g)}
        if "arctanh" in name_ops:  # the clip is not written symbolically
            continue
        expr = E.to_sympy(g, eps=1e-7)
        f = sp.lambdify((sp.Symbol("y"), sp.Symbol("yhat")), expr, modules=["scipy", "numpy"])
        with np.errstate(all="ignore"):
            want = np.array([complex(f(a, b)) for a, b in zip(y, yhat, strict=True)])
        got = np.asarray(C.graph_fn(g)(y.astype(np.float32), yhat.astype(np.float32)))
        ok = np.isfinite(want.real) & (np.abs(want.imag) < 1e-9) & np.isfinite(got)
        ok &= np.abs(want.real) < 1e6
        np.testing.assert_allclose(got[ok], want.real[ok], rtol=2e-3, atol=1e-4,
                                   err_msg=E.text(g))
        checked += 1


def test_sympy_symbolic_eps():
    expr = E.to_sympy(G.make(NL3), sign=-1)
    assert sp.Symbol("epsilon", positive=True) in expr.free_symbols


def test_cyclic_graphs():
    g = G.make([("add", ["y", "h1"]), ("mul", ["yhat", "h0"]), ("neg", ["h3"]),
                ("neg", ["h2"]), ("neg", ["h0"])])
    assert E.text(g) == "<cyclic graph>"
    with pytest.raises(ValueError, match="cyclic"):
        E.to_sympy(g)
