"""A genome's equation: human-readable text, LaTeX, and a SymPy expression.

The inline text form is canonical (it is what the integrity check compares to reject printed
duplicates). Inactive nodes never appear. The ``"let"`` style names each hidden node used more than
once and shows its definition once, like the paper's reused ŷ/(y+ε) node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from lfe.core import genome as genome_lib
from lfe.core import ops as ops_lib
from lfe.core.genome import N_INPUTS, ROOT, Genome

TEXT_INPUTS = ("y", "ŷ", "1", "-1")
LATEX_INPUTS = ("y_i", r"\hat{y}_i", "1", "-1")


def format_nodes(opset: ops_lib.OpSet, op: Sequence[int], first: Sequence[int],
                 second: Sequence[int], order: Iterable[int], *, latex: bool = False,
                 names: Mapping[int, str] | None = None) -> list[str]:
    """The texts of the nodes of an expression table: the one place equations are written.

    Node ``i < 4`` is input ``i``; node ``n`` (listed in ``order``, after its arguments) is op
    ``op[n]`` of ``opset`` applied to nodes ``first[n]`` and, for a binary op, ``second[n]``
    (ignored for a unary op). Each node is formatted once, with the op's ``text`` template (its
    ``latex`` one with ``latex=True``); nodes not in ``order`` stay "". A node in ``names``
    appears by that name where other nodes use it (its own entry is still its definition).
    A genome is such a table (``text``, ``latex``); so is the integrity check's table of a
    batch's distinct expressions, whose equations are therefore ``text``'s, character for
    character.
    """
    templates = [o.latex if latex else o.text for o in opset.ops]
    text = list(LATEX_INPUTS if latex else TEXT_INPUTS) + [""] * (len(op) - N_INPUTS)
    seen = text if names is None else list(text)  # how a node appears in its users
    for n in order:
        text[n] = templates[op[n]].format(a=seen[first[n]], b=seen[second[n]])
        if names is not None:
            seen[n] = names.get(n, text[n])
    return text


def _uses(g: Genome) -> dict[int, int]:
    """How many times each active hidden node is referenced by active nodes."""
    counts: dict[int, int] = {}
    for n in genome_lib.active_nodes(g):
        for a in g.node_args(n):
            if N_INPUTS <= a < ROOT:
                counts[a] = counts.get(a, 0) + 1
    return counts


def _format_genome(g: Genome, *, latex: bool = False, names: Mapping[int, str] | None = None
                   ) -> list[str]:
    """``format_nodes`` on an acyclic genome's table (node ids 0–8), active nodes only."""
    active = set(genome_lib.active_nodes(g))
    order = [n for n in genome_lib.topological_order(g) + [ROOT] if n in active]
    pad = [-1] * N_INPUTS
    return format_nodes(g.opset, pad + list(g.ops), pad + [a for a, _ in g.args],
                        pad + [b for _, b in g.args], order, latex=latex, names=names)


def text(g: Genome, sign: int = 1, style: str = "inline") -> str:
    """The loss as text. ``sign=-1`` prefixes the integrity check's flip.

    ``style="inline"`` writes every node where it is used; ``style="let"`` defines each hidden
    node used more than once first (``h0 = ŷ / (y+eps); L = ...``).
    """
    if style not in ("inline", "let"):
        raise ValueError(f"unknown equation style {style!r}; available: inline, let")
    if genome_lib.has_cycle(g):
        return "<cyclic graph>"
    shared = {n for n, c in _uses(g).items() if c > 1} if style == "let" else set()
    names = {n: genome_lib.node_name(n) for n in shared}
    nodes = _format_genome(g, names=names)
    lines = [f"{names[n]} = {nodes[n]}" for n in genome_lib.topological_order(g) if n in shared]
    body = nodes[ROOT] if sign == 1 else f"-({nodes[ROOT]})"
    return "; ".join(lines + [f"L = {body}"]) if lines else body


def latex(g: Genome, sign: int = 1) -> str:
    """The loss as LaTeX in the paper's form: ``-\\frac{1}{n}\\sum_i ...`` when flipped."""
    if genome_lib.has_cycle(g):
        raise ValueError("cannot write LaTeX for a cyclic graph")
    body = _format_genome(g, latex=True)[ROOT]
    prefix = r"\frac{1}{n}\sum_i" if sign == 1 else r"-\frac{1}{n}\sum_i"
    return rf"{prefix} \left({body}\right)"


# --------------------------------------------------------------------------- SymPy

def _sympy_table(sp, eps, op_set: str):
    besseli = sp.besseli
    table = {
        "neg": lambda a: -a,
        "ln": lambda a: sp.log(sp.Abs(a) + eps),
        "exp": sp.exp,
        "log10": lambda a: sp.log(sp.Abs(a) + eps, 10),
        "sigmoid": lambda a: 1 / (1 + sp.exp(-a)),
        "dsigmoid": lambda a: sp.exp(-a) / (1 + sp.exp(-a)) ** 2,
        "softsign": lambda a: a / (1 + sp.Abs(a)),
        "dsoftsign": lambda a: 1 / (1 + sp.Abs(a)) ** 2,
        "softplus": lambda a: sp.log(sp.Abs(1 + sp.exp(a)) + eps),
        "erf": sp.erf,
        "erfc": sp.erfc,
        "sin": sp.sin,
        "sinh": sp.sinh,
        "arcsinh": sp.asinh,
        "tanh": sp.tanh,
        "dtanh": lambda a: 1 - sp.tanh(a) ** 2,
        "arctanh": sp.atanh,  # the clip to (-1+eps, 1-eps) is not written symbolically
        "reciprocal": lambda a: 1 / (a + eps),
        "abs": sp.Abs,
        "square": lambda a: a ** 2,
        "bessel_i0": lambda a: besseli(0, a),
        "sqrt": lambda a: sp.sqrt(sp.Abs(a)),
        "bessel_i1": lambda a: besseli(1, a),
        "relu": lambda a: sp.Max(a, 0),
        "bessel_i1e": lambda a: sp.exp(-sp.Abs(a)) * besseli(1, a),
        "min0": lambda a: sp.Min(a, 0),
        "bessel_i0e": lambda a: sp.exp(-sp.Abs(a)) * besseli(0, a),
        "add": lambda a, b: a + b,
        "mul": lambda a, b: a * b,
        "sub": lambda a, b: a - b,
        "div": lambda a, b: a / (b + eps),
        "div_sqrt": lambda a, b: a / sp.sqrt(1 + b ** 2),
        "max": sp.Max,
        "min": sp.Min,
    }
    if op_set == "authors":
        table["arctanh"] = sp.atan
        table["dsoftsign"] = lambda a: 1 / (1 + sp.Abs(a))
    return table


def to_sympy(g: Genome, sign: int = 1, eps=None):
    """The per-class loss term as a SymPy expression in symbols ``y`` and ``yhat``.

    ``eps`` defaults to the symbol ``epsilon``; pass ``1e-7`` for a numeric expression.
    """
    import sympy as sp

    if genome_lib.has_cycle(g):
        raise ValueError("cannot build a SymPy expression for a cyclic graph")
    eps = sp.Symbol("epsilon", positive=True) if eps is None else sp.Float(eps)
    table = _sympy_table(sp, eps, g.op_set)
    leaves = (sp.Symbol("y"), sp.Symbol("yhat"), sp.Integer(1), sp.Integer(-1))
    memo: dict[int, object] = {}

    def expr(n: int):
        if n < N_INPUTS:
            return leaves[n]
        if n not in memo:
            name = g.opset.ops[g.ops[n - N_INPUTS]].name
            memo[n] = table[name](*[expr(a) for a in g.node_args(n)])
        return memo[n]

    return sign * expr(ROOT)
