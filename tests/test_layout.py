"""The layout's rules: the core and the executors never load JAX; no import cycles in lfe."""

import ast
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LFE = os.path.join(ROOT, "lfe")
HEAVY = ("jax", "jaxlib", "flax", "optax")


def modules(package_dir: str = LFE, prefix: str = "lfe") -> list[str]:
    """Every module under ``package_dir`` (packages by their ``__init__``), sorted."""
    found = []
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(root, package_dir)
        base = prefix if rel == "." else f"{prefix}.{rel.replace(os.sep, '.')}"
        for name in sorted(files):
            if name.endswith(".py"):
                found.append(base if name == "__init__.py" else f"{base}.{name[:-3]}")
    return sorted(found)


def jax_free_modules() -> list[str]:
    """lfe, lfe.main, lfe.worker, lfe.core.* and lfe.executors.* (Ray's executor when Ray is
    installed: it is an optional extra)."""
    names = ["lfe", "lfe.main", "lfe.worker"]
    names += [m for m in modules() if m.startswith(("lfe.core", "lfe.executors"))]
    if importlib.util.find_spec("ray") is None:
        names.remove("lfe.executors.ray_executor")
    return names


def test_core_and_executors_import_no_jax_in_a_fresh_interpreter():
    names = jax_free_modules()
    assert "lfe.core.evolution" in names and "lfe.executors.pool" in names
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]", f"JAX-free modules loaded: {out.stdout.strip()}"


def _targets(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The lfe modules ``module`` imports anywhere in its code (inside functions too)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the containing package
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known and n != module}
    return out


def import_graph() -> dict[str, set[str]]:
    known = set(modules())
    graph = {}
    for name in known:
        rel = name.split(".")[1:]
        path = os.path.join(LFE, *rel)
        is_package = os.path.isdir(path)
        path = os.path.join(path, "__init__.py") if is_package else path + ".py"
        with open(path) as f:
            graph[name] = _targets(ast.parse(f.read()), name, is_package, known)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_hand_made_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_lfe_modules():
    graph = import_graph()
    assert "lfe.training.fitness" in graph["lfe.training.population"]  # the graph sees imports
    assert "lfe.training.population" in graph["lfe.worker"]  # ... inside functions too
    assert cycles(graph) == []


def test_layers_import_downwards_only():
    """core imports only core; executors import core (and lfe.worker by name); training never
    imports experiments, executors or the worker."""
    for name, targets in import_graph().items():
        if name.startswith("lfe.core"):
            assert all(t.startswith("lfe.core") for t in targets), (name, targets)
        if name.startswith("lfe.training"):
            assert not any(t.startswith(("lfe.experiments", "lfe.executors", "lfe.worker"))
                           for t in targets), (name, targets)
        if name.startswith("lfe.executors"):
            assert not any(t.startswith(("lfe.experiments", "lfe.training")) for t in targets), (
                name, targets)
