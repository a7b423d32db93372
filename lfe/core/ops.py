"""The op registry: the paper's 27 unary and 7 binary operations (Tables 1 and 2).

Each op has a name (used in genome JSON and configs), an arity, a JAX function (resolved on first
call, so importing this module does not import JAX), a NumPy function (used by the integrity
check, which runs in the JAX-free controller process), and printable / LaTeX templates in
which ``{a}`` and ``{b}`` stand for the arguments.

Numerical guards follow the authors' TensorFlow code: ln(|x|+eps), log10(|x|+eps),
sqrt(|x|), softplus = ln(|1+e^x|+eps), arctanh with its argument clipped to (-1+eps, 1-eps),
x1/(x2+eps) and 1/(x+eps), with eps = 1e-7 everywhere.

Two op sets exist:
  * ``"paper"`` (default): the ops as the paper lists them.
  * ``"authors"``: the variant found in the authors' code: arctan in the arctanh slot and
    softsign' = 1/(1+|x|) instead of 1/(1+|x|)^2.
Both sets have the same names in the same slots, so a genome's op indices mean the same slot in
either set; the set only changes the functions behind two slots.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable

import numpy as np
import scipy.special as sps

EPS = 1e-7


@functools.cache
def _resolve(path: str) -> Callable:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class _LazyJax:
    """A dotted JAX name (``jnp.exp``, ``jax.nn.sigmoid``) looked up when first called.

    Importing the registry must not import JAX: the evolution controller and its integrity check
    use only the NumPy forms and run in a process that never imports JAX.
    """

    def __init__(self, path: str):
        self._path = path

    def __getattr__(self, name: str) -> _LazyJax:
        if name.startswith("__"):  # copy/pickle/inspect probes must not become JAX names
            raise AttributeError(name)
        return _LazyJax(f"{self._path}.{name}")

    def __call__(self, *args, **kwargs):
        return _resolve(self._path)(*args, **kwargs)

    def __repr__(self) -> str:
        return self._path


jax = _LazyJax("jax")
jnp = _LazyJax("jax.numpy")


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation of the search space."""

    name: str
    arity: int
    fn: Callable  # JAX implementation, elementwise
    np_fn: Callable  # NumPy reference implementation, elementwise
    text: str  # printable form, e.g. "ln({a})"
    latex: str  # LaTeX form, e.g. r"\ln\left(\left|{a}\right|+\epsilon\right)"


def _sigmoid_np(x):
    return sps.expit(x)


def _dsigmoid(x):
    s = jax.nn.sigmoid(x)
    return s * (1.0 - s)


def _dsigmoid_np(x):
    s = sps.expit(x)
    return s * (1.0 - s)


def _softplus(x):
    return jnp.log(jnp.abs(1.0 + jnp.exp(x)) + EPS)


def _softplus_np(x):
    return np.log(np.abs(1.0 + np.exp(x)) + EPS)


def _arctanh(x):
    return jnp.arctanh(jnp.clip(x, -1.0 + EPS, 1.0 - EPS))


def _arctanh_np(x):
    # Clip in the argument's own precision; a float32 1-1e-7 rounds to 1-6e-8, still < 1.
    lo, hi = np.asarray(-1.0 + EPS, x.dtype), np.asarray(1.0 - EPS, x.dtype)
    return np.arctanh(np.clip(x, lo, hi))


def _u(name, fn, np_fn, text, latex):
    return Op(name, 1, fn, np_fn, text, latex)


def _b(name, fn, np_fn, text, latex):
    return Op(name, 2, fn, np_fn, text, latex)


# Paper Table 1, in the table's reading order. The order defines the op index of each slot.
_UNARY: tuple[Op, ...] = (
    _u("neg", lambda x: -x, lambda x: -x, "-({a})", r"-\left({a}\right)"),
    _u("ln", lambda x: jnp.log(jnp.abs(x) + EPS), lambda x: np.log(np.abs(x) + EPS),
       "ln(|{a}|+eps)", r"\ln\left(\left|{a}\right|+\epsilon\right)"),
    _u("exp", jnp.exp, np.exp, "exp({a})", r"e^{{{a}}}"),
    _u("log10", lambda x: jnp.log10(jnp.abs(x) + EPS), lambda x: np.log10(np.abs(x) + EPS),
       "log10(|{a}|+eps)", r"\log_{{10}}\left(\left|{a}\right|+\epsilon\right)"),
    _u("sigmoid", jax.nn.sigmoid, _sigmoid_np, "sigmoid({a})", r"\sigma\left({a}\right)"),
    _u("dsigmoid", _dsigmoid, _dsigmoid_np, "sigmoid'({a})", r"\sigma'\left({a}\right)"),
    _u("softsign", lambda x: x / (1.0 + jnp.abs(x)), lambda x: x / (1.0 + np.abs(x)),
       "softsign({a})", r"\mathrm{{softsign}}\left({a}\right)"),
    _u("dsoftsign", lambda x: 1.0 / (1.0 + jnp.abs(x)) ** 2,
       lambda x: 1.0 / (1.0 + np.abs(x)) ** 2,
       "softsign'({a})", r"\mathrm{{softsign}}'\left({a}\right)"),
    _u("softplus", _softplus, _softplus_np, "softplus({a})",
       r"\mathrm{{softplus}}\left({a}\right)"),
    _u("erf", jax.scipy.special.erf, sps.erf, "erf({a})", r"\mathrm{{erf}}\left({a}\right)"),
    _u("erfc", jax.scipy.special.erfc, sps.erfc, "erfc({a})",
       r"\mathrm{{erfc}}\left({a}\right)"),
    _u("sin", jnp.sin, np.sin, "sin({a})", r"\sin\left({a}\right)"),
    _u("sinh", jnp.sinh, np.sinh, "sinh({a})", r"\sinh\left({a}\right)"),
    _u("arcsinh", jnp.arcsinh, np.arcsinh, "arcsinh({a})",
       r"\operatorname{{arcsinh}}\left({a}\right)"),
    _u("tanh", jnp.tanh, np.tanh, "tanh({a})", r"\tanh\left({a}\right)"),
    _u("dtanh", lambda x: 1.0 - jnp.tanh(x) ** 2, lambda x: 1.0 - np.tanh(x) ** 2,
       "tanh'({a})", r"\tanh'\left({a}\right)"),
    _u("arctanh", _arctanh, _arctanh_np, "arctanh({a})",
       r"\operatorname{{arctanh}}\left({a}\right)"),
    _u("reciprocal", lambda x: 1.0 / (x + EPS), lambda x: 1.0 / (x + EPS),
       "1/({a}+eps)", r"\frac{{1}}{{{a}+\epsilon}}"),
    _u("abs", jnp.abs, np.abs, "|{a}|", r"\left|{a}\right|"),
    _u("square", jnp.square, np.square, "({a})^2", r"\left({a}\right)^2"),
    _u("bessel_i0", jax.scipy.special.i0, sps.i0, "bessel_i0({a})",
       r"\mathrm{{bessel}}_{{i0}}\left({a}\right)"),
    _u("sqrt", lambda x: jnp.sqrt(jnp.abs(x)), lambda x: np.sqrt(np.abs(x)),
       "sqrt(|{a}|)", r"\sqrt{{\left|{a}\right|}}"),
    _u("bessel_i1", jax.scipy.special.i1, sps.i1, "bessel_i1({a})",
       r"\mathrm{{bessel}}_{{i1}}\left({a}\right)"),
    _u("relu", lambda x: jnp.maximum(x, 0.0), lambda x: np.maximum(x, 0.0),
       "max({a}, 0)", r"\max\left({a}, 0\right)"),
    _u("bessel_i1e", jax.scipy.special.i1e, sps.i1e, "bessel_i1e({a})",
       r"\mathrm{{bessel}}_{{i1e}}\left({a}\right)"),
    _u("min0", lambda x: jnp.minimum(x, 0.0), lambda x: np.minimum(x, 0.0),
       "min({a}, 0)", r"\min\left({a}, 0\right)"),
    _u("bessel_i0e", jax.scipy.special.i0e, sps.i0e, "bessel_i0e({a})",
       r"\mathrm{{bessel}}_{{i0e}}\left({a}\right)"),
)

# Paper Table 2.
_BINARY: tuple[Op, ...] = (
    _b("add", jnp.add, np.add, "({a} + {b})", r"\left({a} + {b}\right)"),
    _b("mul", jnp.multiply, np.multiply, "({a} * {b})", r"{a} \cdot {b}"),
    _b("sub", jnp.subtract, np.subtract, "({a} - {b})", r"\left({a} - {b}\right)"),
    _b("div", lambda a, b: a / (b + EPS), lambda a, b: a / (b + EPS),
       "({a} / ({b}+eps))", r"\frac{{{a}}}{{{b}+\epsilon}}"),
    _b("div_sqrt", lambda a, b: a / jnp.sqrt(1.0 + b * b), lambda a, b: a / np.sqrt(1.0 + b * b),
       "({a} / sqrt(1+({b})^2))", r"\frac{{{a}}}{{\sqrt{{1+\left({b}\right)^2}}}}"),
    _b("max", jnp.maximum, np.maximum, "max({a}, {b})", r"\max\left({a}, {b}\right)"),
    _b("min", jnp.minimum, np.minimum, "min({a}, {b})", r"\min\left({a}, {b}\right)"),
)

# The authors' code variant: replaces two unary slots, names unchanged.
_AUTHORS_OVERRIDES: dict[str, Op] = {
    "arctanh": _u("arctanh", jnp.arctan, np.arctan, "arctan({a})", r"\arctan\left({a}\right)"),
    "dsoftsign": _u("dsoftsign", lambda x: 1.0 / (1.0 + jnp.abs(x)),
                    lambda x: 1.0 / (1.0 + np.abs(x)),
                    "1/(1+|{a}|)", r"\frac{{1}}{{1+\left|{a}\right|}}"),
}


@dataclasses.dataclass(frozen=True)
class OpSet:
    """An ordered set of ops: unary ops take indices [0, n_unary), binary the rest."""

    name: str
    unary: tuple[Op, ...]
    binary: tuple[Op, ...]

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.unary + self.binary

    @property
    def n_unary(self) -> int:
        return len(self.unary)

    @property
    def n_binary(self) -> int:
        return len(self.binary)

    def __len__(self) -> int:
        return len(self.unary) + len(self.binary)

    def arity(self, index: int) -> int:
        return 1 if index < self.n_unary else 2

    def index(self, name: str) -> int:
        """Global index of the op called ``name``; a one-line error lists the known names."""
        for i, op in enumerate(self.ops):
            if op.name == name:
                return i
        raise ValueError(
            f"unknown op {name!r} in op set {self.name!r}; known ops: "
            + ", ".join(op.name for op in self.ops)
        )


def _make_sets() -> dict[str, OpSet]:
    authors_unary = tuple(_AUTHORS_OVERRIDES.get(op.name, op) for op in _UNARY)
    return {
        "paper": OpSet("paper", _UNARY, _BINARY),
        "authors": OpSet("authors", authors_unary, _BINARY),
    }


_OP_SETS = _make_sets()


def available_op_sets() -> list[str]:
    return sorted(_OP_SETS)


def get_op_set(name: str = "paper") -> OpSet:
    """Returns the op set called ``name`` (``"paper"`` or ``"authors"``)."""
    try:
        return _OP_SETS[name]
    except KeyError:
        raise ValueError(
            f"unknown op set {name!r}; available: {', '.join(available_op_sets())}"
        ) from None
