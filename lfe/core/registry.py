"""``"module:attribute"`` targets: the one resolver behind every lazily named callable.

Executors receive work as a target string plus plain-data arguments (``lfe.worker``'s functions),
so a controller can hand work to another process without importing the code that does it; the
model registry names its architectures the same way, so importing it loads no architecture.

    fn = registry.resolve("lfe.worker:evaluate_candidate")   # imports lfe.worker
    registry.check("lfe.worker:evaluate_candidate")           # finds the module, imports nothing
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any


def split(target: str) -> tuple[str, str]:
    """``("module", "attribute")`` of ``"module:attribute"``; a ValueError for anything else."""
    module, sep, name = str(target).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"bad target {target!r}: expected 'package.module:function'")
    return module, name


def resolve(target: str | Callable, what: str = "function") -> Any:
    """The attribute named by ``target`` (a callable is returned as it is); one ValueError line
    naming ``what`` when the module or the attribute does not exist."""
    if not isinstance(target, str):
        return target
    module, name = split(target)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {what} {target!r}: {e}") from None


def check(target: str, what: str = "function") -> None:
    """Raises like ``resolve`` when ``target``'s module cannot be found, without importing it
    (a Ray controller checks its workers' targets this way and stays free of JAX)."""
    module, _ = split(target)
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        raise ValueError(f"cannot load {what} {target!r}: {e}") from None
    if found is None:
        raise ValueError(f"cannot load {what} {target!r}: no module named {module!r}")
