"""A genome's equation: human-readable text, LaTeX, and a SymPy expression.

The inline text form is canonical (it is what the integrity check compares to reject printed
duplicates). Inactive nodes never appear. The ``"let"`` style names each hidden node used more than
once and shows its definition once, like the paper's reused ŷ/(y+ε) node.
"""

from __future__ import annotations

from lfe.core import genome as genome_lib
from lfe.core.genome import N_INPUTS, ROOT, Genome

_TEXT_INPUTS = ("y", "ŷ", "1", "-1")
_LATEX_INPUTS = ("y_i", r"\hat{y}_i", "1", "-1")


def _uses(g: Genome) -> dict[int, int]:
    """How many times each active hidden node is referenced by active nodes."""
    counts: dict[int, int] = {}
    for n in genome_lib.active_nodes(g):
        for a in g.node_args(n):
            if N_INPUTS <= a < ROOT:
                counts[a] = counts.get(a, 0) + 1
    return counts


def _render(g: Genome, start: int, template_of, inputs, shared: set[int]) -> str:
    """Writes node ``start``; nodes in ``shared`` (other than ``start``) appear by name."""
    memo: dict[int, str] = {}

    def expr(n: int, top: bool = False) -> str:
        if n < N_INPUTS:
            return inputs[n]
        if n in shared and not top:
            return genome_lib.node_name(n)
        if n not in memo:
            slot = n - N_INPUTS
            parts = [expr(a) for a in g.node_args(n)]
            memo[n] = template_of(g.opset.ops[g.ops[slot]]).format(
                a=parts[0], b=parts[1] if len(parts) > 1 else "")
        return memo[n]

    return expr(start, top=True)


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
    order = [n for n in genome_lib.topological_order(g) or [] if n in shared]
    lines = []
    for n in order:
        defined = _render(g, n, lambda op: op.text, _TEXT_INPUTS, shared)
        lines.append(f"{genome_lib.node_name(n)} = {defined}")
    body = _render(g, ROOT, lambda op: op.text, _TEXT_INPUTS, shared)
    body = body if sign == 1 else f"-({body})"
    return "; ".join(lines + [f"L = {body}"]) if lines else body


def latex(g: Genome, sign: int = 1) -> str:
    """The loss as LaTeX in the paper's form: ``-\\frac{1}{n}\\sum_i ...`` when flipped."""
    if genome_lib.has_cycle(g):
        raise ValueError("cannot write LaTeX for a cyclic graph")
    body = _render(g, ROOT, lambda op: op.latex, _LATEX_INPUTS, set())
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
