"""The configs a user can run: where they live, their modes and variants, and ``lfe --help``.

The configs are the top-level package ``configs`` beside ``lfe``: the checkout's ``configs/``
folder, or the copy ``pip install .`` puts next to the installed ``lfe``. A ``--config`` path
that does not exist where the command runs is looked up there (``resolve``), so
``lfe --config=configs/quickstart.py`` works from any directory. Imports no JAX.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import os
import textwrap

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs")
NOT_CONFIGS = ("__init__.py", "common.py")  # modules of the package that are not configs


def names() -> list[str]:
    """The config files (``quickstart.py``, ...) in ``CONFIGS_DIR``, sorted."""
    if not os.path.isdir(CONFIGS_DIR):
        return []
    return sorted(n for n in os.listdir(CONFIGS_DIR)
                  if n.endswith(".py") and n not in NOT_CONFIGS)


def resolve(spec: str) -> str:
    """``spec`` (``path[:variants]``) with its path made one that exists: as given when it does,
    else the file of that name in ``CONFIGS_DIR`` (``configs/x.py`` or ``x.py``). A path found
    in neither raises a one-line ValueError naming both places and the configs there."""
    path, colon, arg = spec.partition(":")
    if os.path.isfile(path):
        return spec
    parts = os.path.normpath(path).split(os.sep)
    if not os.path.isabs(path) and (len(parts) == 1 or (len(parts) == 2
                                                         and parts[0] == "configs")):
        installed = os.path.join(CONFIGS_DIR, parts[-1])
        if os.path.isfile(installed):
            return installed + colon + arg
    where = f"{os.getcwd()}" + ("" if os.path.isabs(path) else f" or {CONFIGS_DIR}")
    raise ValueError(f"no config file {path!r} (looked in {where}); available: "
                     + ", ".join(f"configs/{n}" for n in names()))


@dataclasses.dataclass(frozen=True)
class Entry:
    """One config as ``--help`` lists it."""

    name: str  # quickstart.py
    mode: str  # config.mode of its default (or first) variant; "?" when it cannot be built
    summary: str  # the first line of its docstring
    variants: str  # "runlocal" / "table8 | table9, runlocal" / "none"


class _Spec(Exception):
    """Carries the variant spec a config passes to ``configs.common.parse_arg``."""

    def __init__(self, spec: dict):
        super().__init__("spec")
        self.spec = spec


@contextlib.contextmanager
def _capturing_spec():
    """While active, ``configs.common.parse_arg`` raises ``_Spec`` with the config's spec
    instead of parsing: how ``--help`` reads a config's variants without building it."""
    common = importlib.import_module("configs.common")
    real = common.parse_arg

    def capture(arg, where, /, *, lazy=False, **spec):
        raise _Spec(spec)

    common.parse_arg = capture
    try:
        yield
    finally:
        common.parse_arg = real


def _listing(spec: dict) -> tuple[str, str | None]:
    """(variants as text, the first required choice or None)."""
    parts, required = [], None
    for key, value in spec.items():
        if isinstance(value, bool):
            parts.append(key)
        elif hasattr(value, "names"):  # common.OneOf: exclusive choices
            parts.append(" | ".join(value.names) + ("" if value.default is not None
                                                    else " (one required)"))
            if value.default is None and required is None:
                required = value.names[0]
        else:
            parts.append(f"{key}=<{type(value).__name__}>")
    return ", ".join(parts) or "none", required


def entry(name: str) -> Entry:
    """The ``Entry`` of config file ``name`` (in ``CONFIGS_DIR``)."""
    path = os.path.join(CONFIGS_DIR, name)
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    summary = doc.strip().splitlines()[0] if doc.strip() else ""
    module = importlib.import_module(f"configs.{name[:-3]}")
    spec = {}
    try:
        with _capturing_spec():
            module.get_config(None)
    except _Spec as s:
        spec = s.spec
    except Exception:  # noqa: BLE001 - a config that fails is listed without its variants
        spec = {}
    variants, required = _listing(spec)
    try:
        mode = str(module.get_config(required).get("mode", "?"))
    except Exception:  # noqa: BLE001 - the listing must not fail for one broken config
        mode = "?"
    return Entry(name, mode, summary, variants)


def help_text(modes) -> str:
    """What ``lfe --help`` prints: usage, the configs with their modes and variants, the modes,
    overrides, data, and the flags."""
    lines = [
        "lfe: neural loss function evolution (Morgan & Hougen, NeuroLoss1/2/3) in JAX/Flax",
        "",
        "usage:",
        "  lfe --config=configs/<name>.py[:<variant>[,<variant>...]] --workdir=DIR "
        "[--config.<key>=<value> ...]",
        "  lfe --config=configs/<name>.py[:<variants>] [--config.<key>=<value> ...] "
        "--print_config",
        "  (python -m lfe.main takes the same flags)",
        "",
        f"configs (configs/<name>.py; a path not found here is read from {CONFIGS_DIR}):",
    ]
    indent = " " * 24
    for e in (entry(n) for n in names()):
        lines += textwrap.wrap(f"{e.summary} (mode {e.mode})", 96,
                               initial_indent=f"  {e.name:<21} ", subsequent_indent=indent)
        lines += textwrap.wrap(f"variants: {e.variants}", 96, initial_indent=indent,
                               subsequent_indent=indent + "  ")
    lines += [
        "",
        "modes (config.mode; each is lfe.experiments.<mode>.run): " + ", ".join(modes),
        "",
    ]
    notes = (
        "Variants follow the path after a colon and combine with commas "
        "(--config=configs/transfer_paper.py:table9,runlocal); every config has a CPU smoke "
        "variant 'runlocal' where it trains. Config keys: --print_config prints every key of "
        "the resolved config with its value (as JSON) and exits; set any of them with "
        "--config.<key>=<value>, nested keys with dots (--config.fitness.surrogate.steps=300), "
        "tuples quoted (--config.ce_band='(0.514,0.502,0.493)'). Every value is checked before "
        "anything runs; a bad one is one 'lfe: error:' line naming the key.",
        "Data: real CIFAR-10 from LFE_DATA_DIR=/path/to/cifar-10-batches-bin (or "
        "--config.data_dir), the binary version of "
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz; without either, "
        "tensorflow-datasets' cifar10 (downloaded by tfds where the network allows).",
        "Run directories: rerun the same command to resume; Ctrl-C stops a run "
        "(rerun to resume).",
    )
    for note in notes:
        lines += textwrap.wrap(note, 96) + [""]
    lines += [
        "flags:",
        "  --config=PATH[:VARIANTS]  the config file and its variants (above)",
        "  --workdir=DIR             the run directory (created if missing; a run there resumes)",
        "  --print_config            print the resolved config as JSON and exit (no --workdir)",
        "  --config.<key>=<value>    override one config value",
        "  --helpfull                every absl flag",
    ]
    return "\n".join(lines)
