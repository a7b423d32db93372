r"""What every config shares: the parser of its ``:variant`` argument, and ``with_paper``.

``python -m lfe.main --config=configs/<x>.py:<arg>`` calls ``get_config(arg)``; ``arg`` is a
comma-separated list of variants, in the spirit of big_vision's ``configs/common.py``:

    v = common.parse_arg(arg, __file__, table=common.one_of(*TABLES), runlocal=False)
    # "table8,runlocal" -> v.table == "table8", v.runlocal is True

Each keyword of the spec is a key with its default, whose type the default gives: a bool is a
flag (``runlocal``, or ``runlocal=false``), an int, float or str takes ``key=value``, and
``one_of(...)`` names exclusive variants chosen by a bare name (``table9``; ``one_of`` without a
default must be chosen). An unknown variant or key, a key given twice, a value of the wrong type
or a missing choice raises a one-line ``ValueError`` that lists the available variants.
``lazy=True`` keeps unknown ``key=value`` pairs as strings (bare names as ``True``) instead.

``with_paper(c, values)`` attaches the paper's published values to a config together with the
setting they were measured on (``c.paper_setting``: the dataset and protocol as they are at that
point of ``get_config``); tables show them only while a run's setting is that one, so a variant
or a ``--config.*`` override that changes the dataset or the protocol drops them
(``lfe.experiments.tables.paper_values``).

Configs import no JAX (``tests/test_configs.py`` checks every variant): the controller of an
evolution never imports it, and building a config should not cost a JAX import.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from lfe.core import rundir


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A key whose value is one of ``names``, chosen by naming it; ``default`` None = required."""

    names: tuple[str, ...]
    default: str | None = None


def one_of(*names: str, default: str | None = None) -> OneOf:
    """Exclusive variants (``one_of("eliminate", "large", "finetune", default="")``)."""
    return OneOf(tuple(names), default)


def _listing(spec: dict) -> str:
    out = []
    for key, value in spec.items():
        if isinstance(value, OneOf):
            out += value.names
        elif isinstance(value, bool):
            out.append(key)
        else:
            out.append(f"{key}=<{type(value).__name__}>")
    return ", ".join(out) or "none"


def _convert(key: str, default, text: str | None):
    """``text`` (None for a bare name) as the type of ``default``."""
    if isinstance(default, bool):
        if text is None or text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{key}={text}: expected true or false")
    if text is None:
        raise ValueError(f"{key} needs a value ({key}=<{type(default).__name__}>)")
    try:
        return type(default)(text)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(type(default), type(default).__name__)
        raise ValueError(f"{key}={text}: expected {kind}") from None


def parse_arg(arg: str | None, where: str, /, *, lazy: bool = False,
              **spec) -> ml_collections.ConfigDict:
    """The variants of ``arg`` as a ConfigDict of ``spec``'s keys (defaults for those not named).

    ``where``: the config's file (``__file__``), named in error messages.
    """
    config = "/".join(os.path.normpath(where).split(os.sep)[-2:])
    values = {k: v.default if isinstance(v, OneOf) else v for k, v in spec.items()}
    choices = {name: k for k, v in spec.items() if isinstance(v, OneOf) for name in v.names}
    given: dict[str, str] = {}
    try:
        for part in (p.strip() for p in (arg or "").split(",")):
            if not part:
                continue
            key, eq, text = part.partition("=")
            key = key.strip()
            if not eq and key in choices:
                key, value = choices[key], key
            elif key in spec and not isinstance(spec[key], OneOf):
                value = _convert(key, spec[key], text.strip() if eq else None)
            elif lazy and key not in spec:
                value = text.strip() if eq else True
            else:
                raise ValueError(f"unknown variant {part!r}")
            if key in given:
                raise ValueError(f"{given[key]!r} and {part!r} exclude each other")
            given[key], values[key] = part, value
        missing = [v.names for k, v in spec.items() if isinstance(v, OneOf) and values[k] is None]
        if missing:
            raise ValueError(f"needs one of {', '.join(missing[0])}")
    except ValueError as e:
        raise ValueError(f"{config}:{arg or ''}: {e}; available: {_listing(spec)}") from None
    return ml_collections.ConfigDict(values)


def with_paper(c: ml_collections.ConfigDict, values: dict,
               keys: tuple[str, ...] = ("dataset", "protocol")) -> ml_collections.ConfigDict:
    """Sets ``c.paper`` (the paper's values as printed, in the layout the mode's tables take:
    loss -> value for compare, column -> loss -> value for transfer) and ``c.paper_setting`` (a
    copy of ``c``'s ``keys`` now: what those values were measured on); returns ``c``. Call it
    before a variant changes the setting (a transfer config: ``keys=("settings",)``)."""
    c.paper = ml_collections.ConfigDict(values)
    c.paper_setting = ml_collections.ConfigDict({k: rundir.to_plain(c[k]) for k in keys})
    return c
