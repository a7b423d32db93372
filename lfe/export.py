"""A loss as a standalone Python file for NumPy, PyTorch, TensorFlow or JAX.

    python -m lfe.export SPEC --to={numpy,torch,tensorflow,jax} [--out=FILE.py]

SPEC is what ``lfe.training.losses.resolve`` takes: a library name (``neuroloss3``) or a genome
file (``runs/x/best.json``, ``runs/x/best.json#2``, a genome JSON). The file written (stdout
without ``--out``) imports only its framework and defines

* ``loss(y, yhat) -> [batch]``: the per-class term summed over the last axis, on target
  distributions ``y`` and softmax probabilities ``yhat`` (``[..., classes]``), in the
  orientation the loss was trained in (the sign the integrity check chose); float64 inputs stay
  float64, anything else is computed in float32, as training does;
* ``loss_from_logits(logits, labels) -> [batch]``: ``loss(one_hot(labels), softmax(logits))``
  for integer class ids; an id outside [0, classes) raises ValueError (in NumPy and PyTorch
  always; in TensorFlow and JAX where the ids are concrete, i.e. outside ``tf.function`` /
  ``jax.jit``).

Its docstring holds the equation (``lfe.core.equation``). The loss is written node by node,
each op in the form of ``lfe.core.ops`` with the same guards: ln(|x|+eps), log10(|x|+eps),
sqrt(|x|), softplus = ln(|1+e^x|+eps), arctanh of x clipped to (-1+eps, 1-eps), x1/(x2+eps),
1/(x+eps), x1/sqrt(1+x2^2), eps = 1e-7; the "authors" op set's arctan and 1/(1+|x|) where a genome
uses it. The rendering is table-driven: ``OPS`` writes each op once over primitive functions
(``_log``, ``_erf``, ...) and ``FRAMEWORKS`` says what each primitive is in each framework.
NumPy has no erf, erfc or modified Bessel functions, so its file carries them in float64:
erf/erfc by Taylor series (|x| <= 2.5) and continued fraction, i0e/i1e by power series
(|x| <= 20) and the asymptotic series (relative error <= 1e-11 against SciPy).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile

from lfe.core import equation as equation_lib
from lfe.core import genome as genome_lib
from lfe.core import ops as ops_lib
from lfe.core.genome import N_INPUTS, ROOT

INPUTS = genome_lib.INPUT_NAMES  # node ids 0-3: y, yhat, one, minus_one

# Each op once, over primitives ``_name`` that every framework defines; {a}, {b} are node names.
OPS: dict[str, str] = {
    "neg": "-{a}",
    "ln": "_log(_abs({a}) + EPS)",
    "exp": "_exp({a})",
    "log10": "_log10(_abs({a}) + EPS)",
    "sigmoid": "_sigmoid({a})",
    "dsigmoid": "_sigmoid({a}) * (1.0 - _sigmoid({a}))",
    "softsign": "{a} / (1.0 + _abs({a}))",
    "dsoftsign": "1.0 / (1.0 + _abs({a})) ** 2",
    "softplus": "_log(_abs(1.0 + _exp({a})) + EPS)",
    "erf": "_erf({a})",
    "erfc": "_erfc({a})",
    "sin": "_sin({a})",
    "sinh": "_sinh({a})",
    "arcsinh": "_arcsinh({a})",
    "tanh": "_tanh({a})",
    "dtanh": "1.0 - _tanh({a}) ** 2",
    "arctanh": "_arctanh(_clip({a}, -1.0 + EPS, 1.0 - EPS))",
    "reciprocal": "1.0 / ({a} + EPS)",
    "abs": "_abs({a})",
    "square": "{a} * {a}",
    "bessel_i0": "_i0({a})",
    "sqrt": "_sqrt(_abs({a}))",
    "bessel_i1": "_i1({a})",
    "relu": "_maximum({a}, 0.0)",
    "bessel_i1e": "_i1e({a})",
    "min0": "_minimum({a}, 0.0)",
    "bessel_i0e": "_i0e({a})",
    "add": "{a} + {b}",
    "mul": "{a} * {b}",
    "sub": "{a} - {b}",
    "div": "{a} / ({b} + EPS)",
    "div_sqrt": "{a} / _sqrt(1.0 + {b} * {b})",
    "max": "_maximum({a}, {b})",
    "min": "_minimum({a}, {b})",
}
# The "authors" op set's two other functions (lfe.core.ops), same slots and names.
AUTHORS_OPS = {"arctanh": "_arctan({a})", "dsoftsign": "1.0 / (1.0 + _abs({a}))"}
PRIMITIVES = ("exp", "log", "log10", "abs", "sqrt", "sin", "sinh", "arcsinh", "tanh", "arctanh",
              "arctan", "clip", "maximum", "minimum", "sigmoid", "erf", "erfc", "i0", "i1",
              "i0e", "i1e")

_NUMPY_SPECIAL = '''
def _floats64(x):
    return np.asarray(x, np.float64)


def _erf_series(x):  # |x| <= 2.5
    total = term = x
    for n in range(1, 80):
        term = -term * x * x / n
        total = total + term / (2 * n + 1)
    return 2.0 / np.sqrt(np.pi) * total


def _erfc_fraction(x):  # x >= 2.5
    t = x
    for n in range(60, 0, -1):
        t = x + 0.5 * n / t
    with np.errstate(over="ignore"):
        return np.exp(-x * x) / (np.sqrt(np.pi) * t)


def _erf_parts(x):
    a = np.abs(_floats64(x))
    small = a <= 2.5
    return a, small, _erf_series(np.minimum(a, 2.5)), _erfc_fraction(np.maximum(a, 2.5))


def _erf(x):
    a, small, series, fraction = _erf_parts(x)
    return (np.sign(x) * np.where(small, series, 1.0 - fraction)).astype(x.dtype)


def _erfc(x):
    a, small, series, fraction = _erf_parts(x)
    e = np.where(small, 1.0 - series, fraction)
    return np.where(x < 0, 2.0 - e, e).astype(x.dtype)


def _bessel_ie(x, nu):  # exp(-|x|) I_nu(x), nu = 0 or 1
    a = np.abs(_floats64(x))
    s = np.minimum(a, 20.0)  # power series
    term = (s / 2) ** nu
    series = term
    for k in range(1, 80):
        term = term * (s * s / 4) / (k * (k + nu))
        series = series + term
    big = np.maximum(a, 20.0)  # asymptotic series
    term = 1.0 / np.sqrt(2 * np.pi * big)
    asymptotic = term
    for k in range(1, 40):
        term = -term * (4 * nu * nu - (2 * k - 1) ** 2) / (8 * k * big)
        asymptotic = asymptotic + term
    return np.sign(x) ** nu * np.where(a <= 20.0, series * np.exp(-s), asymptotic)


def _i0e(x):
    return _bessel_ie(x, 0).astype(x.dtype)


def _i1e(x):
    return _bessel_ie(x, 1).astype(x.dtype)


def _i0(x):
    with np.errstate(over="ignore", invalid="ignore"):
        return (_bessel_ie(x, 0) * np.exp(np.abs(_floats64(x)))).astype(x.dtype)


def _i1(x):
    with np.errstate(over="ignore", invalid="ignore"):
        return (_bessel_ie(x, 1) * np.exp(np.abs(_floats64(x)))).astype(x.dtype)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))
'''

LABELS_ERROR = "labels must be integer class ids in [0, {n}), got values from {lo} to {hi}"


@dataclasses.dataclass(frozen=True)
class Framework:
    """What a primitive ``_name`` is in one framework: a function written out in ``source``,
    else ``names[name]``, else ``{ns}.{name}``; plus the few array helpers that ``loss`` and
    ``loss_from_logits`` need."""

    imports: str
    ns: str  # the module holding the elementwise functions under NumPy's names
    top: str  # the module with ones_like, float32, float64
    names: dict[str, str]  # primitive -> its expression where not ``{ns}.{name}``
    asarray: str  # to an array of the framework
    cast: str  # "{x}" to "dtype"
    sum: str  # "{x}" summed over the last axis
    softmax: str  # over the last axis
    one_hot: str  # body of _one_hot(labels, logits); ``n``, ``bad``, ``lo``, ``hi`` defined
    source: str = ""  # primitives written out, as Python source


FRAMEWORKS: dict[str, Framework] = {
    "numpy": Framework(
        imports="import numpy as np", ns="np", top="np",
        names={},
        asarray="np.asarray", cast="{x}.astype(dtype)", sum="np.sum({x}, axis=-1)",
        softmax="np.exp({x} - np.logaddexp.reduce({x}, axis=-1, keepdims=True))",
        one_hot="""    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    n = logits.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        lo, hi = labels.min(), labels.max()
        raise ValueError(LABELS_ERROR.format(n=n, lo=lo, hi=hi))
    return np.eye(n, dtype=logits.dtype)[labels]""",
        source=_NUMPY_SPECIAL),
    "torch": Framework(
        imports="import torch", ns="torch", top="torch",
        names={"i1": "torch.special.i1", "i0e": "torch.special.i0e",
               "i1e": "torch.special.i1e"},
        asarray="torch.as_tensor", cast="{x}.to(dtype)", sum="torch.sum({x}, dim=-1)",
        softmax="torch.softmax({x}, dim=-1)",
        one_hot="""    labels = torch.as_tensor(labels, device=logits.device)
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    n = logits.shape[-1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= n):
        lo, hi = int(labels.min()), int(labels.max())
        raise ValueError(LABELS_ERROR.format(n=n, lo=lo, hi=hi))
    return torch.nn.functional.one_hot(labels.long(), n).to(logits.dtype)""",
        source='''
def _maximum(a, b):
    return torch.maximum(a, torch.as_tensor(b, dtype=a.dtype, device=a.device))


def _minimum(a, b):
    return torch.minimum(a, torch.as_tensor(b, dtype=a.dtype, device=a.device))
'''),
    "tensorflow": Framework(
        imports="import tensorflow as tf", ns="tf.math", top="tf",
        names={"arcsinh": "tf.math.asinh", "arctanh": "tf.math.atanh", "arctan": "tf.math.atan",
               "clip": "tf.clip_by_value", "i0": "tf.math.bessel_i0",
               "i1": "tf.math.bessel_i1", "i0e": "tf.math.bessel_i0e",
               "i1e": "tf.math.bessel_i1e"},
        asarray="tf.convert_to_tensor", cast="tf.cast({x}, dtype)",
        sum="tf.reduce_sum({x}, axis=-1)", softmax="tf.nn.softmax({x}, axis=-1)",
        one_hot="""    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype.name}")
    n = logits.shape[-1]
    if tf.executing_eagerly() and tf.size(labels) > 0:
        lo, hi = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
        if lo < 0 or hi >= n:
            raise ValueError(LABELS_ERROR.format(n=n, lo=lo, hi=hi))
    return tf.one_hot(labels, n, dtype=logits.dtype)""",
        source='''
def _log10(x):
    return tf.math.log(x) / tf.math.log(tf.constant(10.0, x.dtype))
'''),
    "jax": Framework(
        imports="import jax\nimport jax.numpy as jnp", ns="jnp", top="jnp",
        names={"sigmoid": "jax.nn.sigmoid", "erf": "jax.scipy.special.erf",
               "erfc": "jax.scipy.special.erfc", "i0": "jax.scipy.special.i0",
               "i1": "jax.scipy.special.i1", "i0e": "jax.scipy.special.i0e",
               "i1e": "jax.scipy.special.i1e"},
        asarray="jnp.asarray", cast="{x}.astype(dtype)", sum="jnp.sum({x}, axis=-1)",
        softmax="jax.nn.softmax({x}, axis=-1)",
        one_hot="""    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    n = logits.shape[-1]
    if not isinstance(labels, jax.core.Tracer) and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n:
            raise ValueError(LABELS_ERROR.format(n=n, lo=lo, hi=hi))
    return jax.nn.one_hot(labels, n, dtype=logits.dtype)"""),
}
FRAMEWORK_NAMES = {"numpy": "NumPy", "torch": "PyTorch", "tensorflow": "TensorFlow",
                   "jax": "JAX"}


@dataclasses.dataclass(frozen=True)
class Program:
    """A loss as straight-line code: ``nodes`` are ``(name, op, argument names)`` in evaluation
    order over the inputs ``INPUTS``, the last one the output; ``sign`` × output is the term."""

    name: str
    op_set: str
    nodes: tuple[tuple[str, str, tuple[str, ...]], ...]
    sign: int
    equation: str
    latex: str = ""
    formula: str = ""
    orientation: str = ""  # how the term relates to what was evolved or printed


# Printed NeuroLoss1 is no genome (losses.py): its trained term ln(|ŷ/s|+eps) + ŷ·s,
# s = sqrt(1+(ŷ/(y+eps))^2), written with the ops of the search space.
CLOSED_FORMS: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "neuroloss1_printed": (
        ("t0", "div", ("yhat", "y")), ("t1", "div_sqrt", ("yhat", "t0")), ("t2", "ln", ("t1",)),
        ("t3", "square", ("t0",)), ("t4", "add", ("one", "t3")), ("t5", "sqrt", ("t4",)),
        ("t6", "mul", ("yhat", "t5")), ("root", "add", ("t2", "t6"))),
}


def _table_text(op_set: str, nodes, *, latex: bool = False) -> str:
    """The equation of a node table, written by ``equation.format_nodes``."""
    opset = ops_lib.get_op_set(op_set)
    ids = {name: i for i, name in enumerate(INPUTS)}
    ids.update((name, N_INPUTS + i) for i, (name, _, _) in enumerate(nodes))
    ops = [-1] * N_INPUTS + [opset.index(op) for _, op, _ in nodes]
    first = [-1] * N_INPUTS + [ids[args[0]] for _, _, args in nodes]
    second = [-1] * N_INPUTS + [ids[args[-1]] for _, _, args in nodes]
    order = range(N_INPUTS, len(ops))
    return equation_lib.format_nodes(opset, ops, first, second, order, latex=latex)[-1]


def program(loss) -> Program:
    """The straight-line form of a ``losses.LossDef``: its genome's active nodes, or its closed
    form (NeuroLoss1); a loss with neither cannot be exported (ValueError)."""
    g = loss.genome
    if g is None:
        if loss.name not in CLOSED_FORMS:
            raise ValueError(f"loss {loss.name!r} has no genome or closed form to export")
        nodes = CLOSED_FORMS[loss.name]  # already in the trained orientation
        return Program(loss.name, "paper", nodes, 1, _table_text("paper", nodes),
                       _table_text("paper", nodes, latex=True), loss.formula,
                       "the printed formula" if loss.sign == 1 else
                       "the negation of the printed formula (the integrity check flips it)")
    if genome_lib.has_cycle(g):
        raise ValueError(f"loss {loss.name!r}: its genome's active graph has a cycle")
    active = set(genome_lib.active_nodes(g))
    order = [n for n in genome_lib.topological_order(g) + [ROOT] if n in active]
    nodes = tuple((genome_lib.node_name(n), g.opset.ops[g.ops[n - N_INPUTS]].name,
                   tuple(map(genome_lib.node_name, g.node_args(n)))) for n in order)
    return Program(loss.name, g.op_set, nodes, loss.sign, equation_lib.text(g, loss.sign, "let"),
                   equation_lib.latex(g, loss.sign), loss.formula,
                   "the evolved graph as it is" if loss.sign == 1 else
                   "the negation of the evolved graph (the integrity check flips it)")


def _op_template(op_set: str, op: str) -> str:
    return (AUTHORS_OPS.get(op) if op_set == "authors" else None) or OPS[op]


def _primitives(fw: Framework, used: set[str]) -> str:
    """Source binding each used primitive ``_name``: its function from ``fw.source`` (with the
    functions that one calls), else an alias."""
    blocks = {re.match(r"def (\w+)", b).group(1): b.strip()
              for b in re.split(r"\n(?=def )", fw.source) if b.strip()}
    aliases, seen, todo = [], set(), sorted(f"_{p}" for p in used if p in PRIMITIVES)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if name in blocks:
            todo += re.findall(r"\b(_\w+)\(", blocks[name])
        elif name[1:] in PRIMITIVES:
            aliases.append(f"{name} = {fw.names.get(name[1:], f'{fw.ns}.{name[1:]}')}")
    defs = [block for name, block in blocks.items() if name in seen]  # in the source's order
    return "\n".join(sorted(aliases)) + "".join(f"\n\n\n{d}" for d in defs)


def render(prog: Program, framework: str, command: str = "") -> str:
    """The standalone source file of ``prog`` for ``framework``."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; available: {', '.join(FRAMEWORKS)}")
    fw = FRAMEWORKS[framework]
    body = [f"{name} = {_op_template(prog.op_set, op).format(a=args[0], b=args[-1])}"
            for name, op, args in prog.nodes]
    used = set(re.findall(r"\b_(\w+)\(", "\n".join(body)))
    uses = set(re.findall(r"\w+", "\n".join(body)))
    body = ["y, yhat = _floats(y, yhat)"] + [
        line for line, name in (("one = _ones_like(y)", "one"),
                                ("minus_one = -_ones_like(y)", "minus_one")) if name in uses
    ] + body + [("" if prog.sign == 1 else "-") + fw.sum.format(x=prog.nodes[-1][0])]
    body[-1] = f"return {body[-1]}"
    code = "\n".join(f"    {line}" for line in body)
    return f'''{_docstring(prog, framework, command)}
{fw.imports}

EPS = 1e-7
LABELS_ERROR = {LABELS_ERROR!r}
{_primitives(fw, used)}


def _floats(*xs):
    """Arrays in float64 if any input is float64, else in float32 (as training computes)."""
    xs = [{fw.asarray}(x) for x in xs]
    dtype = {fw.top}.float64 if any(x.dtype == {fw.top}.float64 for x in xs) else {fw.top}.float32
    return [{fw.cast.format(x="x")} for x in xs]


def _ones_like(x):
    return {fw.top}.ones_like(x)


def loss(y, yhat):
    """Per-example loss [...]: the term summed over the last (class) axis.

    y: target distributions [..., classes]; yhat: softmax probabilities [..., classes].
    """
{code}


def _one_hot(labels, logits):
{fw.one_hot}


def loss_from_logits(logits, labels):
    """``loss(one_hot(labels), softmax(logits))`` -> [batch]; labels: integer class ids."""
    (logits,) = _floats(logits)
    return loss(_one_hot(labels, logits), {fw.softmax.format(x="logits")})
'''


def _docstring(prog: Program, framework: str, command: str) -> str:
    lines = [f"{prog.name}: a loss from lfe (neural loss function evolution), for "
             f"{FRAMEWORK_NAMES[framework]}.", ""]
    if command:
        lines += [f"Written by `{command}`; imports only {FRAMEWORK_NAMES[framework]}.", ""]
    parts = prog.equation.split("; ")  # "h0 = ...; L = ..." when a node is shared
    parts[-1] = parts[-1] if parts[-1].startswith("L = ") else f"L = {parts[-1]}"
    lines += ["Per-class term L(y, ŷ), y the target probability and ŷ the softmax probability "
              "of a class,", "eps = 1e-7, in the orientation it was trained in,",
              f"{prog.orientation}:", ""] + [f"    {part}" for part in parts] + [""]
    if prog.latex:
        lines += [f"LaTeX: {prog.latex}", ""]
    if prog.formula:
        lines += [f"As printed in the paper: {prog.formula}", ""]
    lines += [f"Op set: {prog.op_set}. loss(y, yhat) sums L over classes -> [batch];",
              "loss_from_logits(logits, labels) takes integer class ids."]
    text = "\n".join(lines).replace('"""', "'''")
    return f'r"""{text}\n"""'


def export(spec: str, framework: str, out: str | None = None) -> str:
    """Resolves ``spec`` (``losses.resolve``), renders it for ``framework`` and writes it to
    ``out`` (atomically) when given; returns the source."""
    from lfe.training import losses  # noqa: PLC0415 — JAX only when exporting

    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; available: {', '.join(FRAMEWORKS)}")
    command = f"python -m lfe.export {spec} --to={framework}"
    source = render(program(losses.resolve(spec)), framework, command)
    if out is not None:
        _write_atomic(out, source)
    return source


def _write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write {path}: no directory {directory}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".py", dir=directory)
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise ValueError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lfe.export",
        description="Write a loss (library name or genome file) as a standalone Python file.")
    parser.add_argument("spec", help="library loss name, or genome file: PATH or PATH#k "
                                     "(k-th entry of an evolve run's best.json)")
    parser.add_argument("--to", required=True, choices=sorted(FRAMEWORKS), help="framework")
    parser.add_argument("--out", help="output .py file (default: standard output)")
    args = parser.parse_args(argv)
    try:
        source = export(args.spec, args.to, args.out)
    except (ValueError, OSError) as e:
        line = str(e).splitlines()[0] if str(e) else repr(e)
        print(f"lfe.export: error: {line}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(source)
    else:
        print(f"wrote {args.out} ({args.to})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
