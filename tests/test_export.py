"""lfe.export: a loss as a standalone NumPy / PyTorch / TensorFlow / JAX file, checked against
the JAX loss it was made from (every library loss, random accepted genomes of both op sets, every
op alone); PyTorch and TensorFlow only where installed."""

import ast
import json
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfe import export
from lfe.core import genome as G
from lfe.core import integrity as I
from lfe.core import ops as O
from lfe.training import losses as L

FRAMEWORKS = ["numpy", "torch", "tensorflow", "jax"]
MODULES = {"numpy": {"numpy"}, "torch": {"torch"}, "tensorflow": {"tensorflow"},
           "jax": {"jax", "jax.numpy"}}


@pytest.fixture(params=FRAMEWORKS)
def framework(request):
    if request.param in ("torch", "tensorflow"):
        pytest.importorskip(request.param)
    return request.param


def _load(source: str) -> types.ModuleType:
    module = types.ModuleType("exported")
    exec(compile(source, "exported.py", "exec"), module.__dict__)
    return module


def _np(x) -> np.ndarray:
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(16, 10)) * 3).astype(np.float32)
    labels = rng.integers(0, 10, size=16)
    smoothed = np.eye(10)[labels] * 0.9 + 0.01
    return logits, labels, smoothed, _softmax(logits.astype(np.float64))


@pytest.fixture(scope="module")
def accepted():
    """Random genomes the integrity check accepts, with their orientation, in both op sets."""
    paper = I.sample_valid(np.random.default_rng(1), 60, I.Archive())
    authors = I.sample_valid(np.random.default_rng(2), 20, I.Archive(), op_set="authors")
    return [L.from_genome(g, v.sign) for g, v in paper + authors]


def _imports(source: str) -> set[str]:
    tree = ast.parse(source)
    return {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def _close(got, want, rtol, atol=None):
    """Equal within ``rtol``, and ``atol`` (default: 1% of ``rtol`` × the largest finite value,
    for sums with cancellation); inf equal to inf, nan to nan."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if atol is None:
        atol = rtol * 1e-2 * np.max(np.abs(want[np.isfinite(want)]), initial=1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


def test_every_library_loss_matches_its_jax_loss(framework, batch):
    logits, labels, smoothed, p = batch
    y32, p32 = smoothed.astype(np.float32), p.astype(np.float32)
    for name in L.available():
        loss = L.get(name)
        source = export.render(export.program(loss), framework)
        assert _imports(source) == MODULES[framework], name
        module = _load(source)
        with np.errstate(all="ignore"):
            got = module.loss(y32, p32)
            from_logits = module.loss_from_logits(logits, labels)
        assert _np(got).shape == (16,) and _np(got).dtype == np.float32, name
        _close(_np(got), loss.loss(y32, p32), 1e-5)
        _close(_np(from_logits), loss(logits, labels), 1e-5)


def test_random_accepted_genomes_match_the_jax_loss(framework, batch, accepted):
    """float64 (JAX with x64) to 1e-8, and float32 as trained to 1e-4."""
    _, _, smoothed, p = batch
    y32, p32 = smoothed.astype(np.float32), p.astype(np.float32)
    for loss in accepted:
        module = _load(export.render(export.program(loss), framework))
        with jax.enable_x64(True), np.errstate(all="ignore"):
            want = jnp.sum(loss.term(jnp.asarray(smoothed), jnp.asarray(p)), axis=-1)
            got = module.loss(smoothed, p)
            assert _np(got).dtype == np.float64
            _close(_np(got), want, 1e-8)
        with np.errstate(all="ignore"):
            _close(_np(module.loss(y32, p32)), loss.loss(y32, p32), 1e-4)


@pytest.mark.parametrize("op_set", O.available_op_sets())
def test_every_op_alone_matches_lfe_core_ops(framework, op_set):
    """Each op (its guards, clips and special functions) against its NumPy form, in float64,
    over [-60, 60] and tiny arguments."""
    grid = np.concatenate([-np.logspace(-9, np.log10(60), 300), [0.0],
                           np.logspace(-9, np.log10(60), 300), np.linspace(-3, 3, 61)])
    other = np.random.default_rng(0).permutation(grid)
    for op in O.get_op_set(op_set).ops:
        args = ("y",) if op.arity == 1 else ("y", "yhat")
        prog = export.Program(op.name, op_set, (("root", op.name, args),), 1, op.text)
        module = _load(export.render(prog, framework))
        with jax.enable_x64(True), np.errstate(all="ignore"):
            got = _np(module.loss(grid[:, None], other[:, None]))
            want = op.np_fn(grid) if op.arity == 1 else op.np_fn(grid, other)
        _close(got, want, 1e-9, atol=1e-14)


def test_file_holds_the_equation_orientation_and_runs_alone(tmp_path, batch):
    logits, labels, smoothed, p = batch
    out = tmp_path / "nl2.py"
    assert export.main(["neuroloss2", "--to=numpy", f"--out={out}"]) == 0
    text = out.read_text()
    g = L.get("neuroloss2").genome
    from lfe.core import equation

    assert all(part in text for part in equation.text(g, -1, "let").split("; "))
    assert "negation of the evolved graph" in text
    assert equation.latex(g, -1) in text
    # a fresh interpreter in which lfe, JAX and SciPy cannot be imported
    code = ("import sys, runpy, numpy as np\n"
            "for m in ('lfe', 'jax', 'scipy', 'torch'):\n    sys.modules[m] = None\n"
            f"m = runpy.run_path({str(out)!r})\n"
            f"print(repr(m['loss_from_logits'](np.array({logits.tolist()}, np.float32), "
            f"np.array({labels.tolist()})).tolist()))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    _close(ast.literal_eval(run.stdout.strip()), L.neuroloss2(logits, labels), 1e-5)


def test_neuroloss1_printed_closed_form_is_trained_orientation():
    prog = export.program(L.get("neuroloss1_printed"))
    assert prog.sign == 1 and "negation of the printed formula" in prog.orientation
    y, p = np.array([[0.0, 1.0]], np.float32), np.array([[0.25, 0.75]], np.float32)
    # wrong class: ln(1e-7 + 1e-7)... computed by the JAX loss; the export agrees
    module = _load(export.render(prog, "numpy"))
    _close(module.loss(y, p), L.get("neuroloss1_printed").loss(y, p), 1e-6)


def test_cli_reads_genome_files_and_fails_in_one_line(tmp_path, capsys, batch):
    logits, labels, _, _ = batch
    g3, g2 = L.get("neuroloss3").genome, L.get("neuroloss2").genome
    best = tmp_path / "best.json"
    best.write_text(json.dumps([{"id": 7, "sign": -1, "genome": G.to_dict(g2)},
                                {"id": 3, "sign": -1, "genome": G.to_dict(g3)}]))
    assert export.main([f"{best}#2", "--to=numpy"]) == 0
    module = _load(capsys.readouterr().out)
    _close(module.loss_from_logits(logits, labels), L.neuroloss3(logits, labels), 1e-5)
    assert "cand3" in module.__doc__
    plateau = tmp_path / "constant.json"  # -1 - y: rejected (plateau)
    plateau.write_text(G.dumps(G.make([("min", ["yhat", "minus_one"]), ("neg", ["y"]),
                                       ("neg", ["h0"]), ("neg", ["h0"]),
                                       ("add", ["h0", "h1"])])))
    out = tmp_path / "x.py"
    for spec, message in (("nope", "unknown loss 'nope'; available: bessel_loss"),
                          (f"{best}#5", "holds 2 entries, no entry 5"),
                          (str(tmp_path / "missing.json"), "cannot read loss file"),
                          (str(plateau), "rejected by the integrity check (plateau)")):
        assert export.main([spec, "--to=torch", f"--out={out}"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("lfe.export: error: ") and message in err, err
        assert err[len("lfe.export: error: "):][0] not in "'\"", err  # the text, not its repr
        assert err.count("\n") == 1
    assert not out.exists()
    assert export.main(["neuroloss3", "--to=numpy", f"--out={tmp_path}/no/such/dir/x.py"]) == 1
    assert "no directory" in capsys.readouterr().err
    assert export.main(["neuroloss3", "--to=numpy", f"--out={tmp_path}"]) == 1  # a directory
    err = capsys.readouterr().err
    assert err == f"lfe.export: error: cannot write {tmp_path}: Is a directory\n"
    with pytest.raises(SystemExit) as e:
        export.main(["neuroloss3", "--to=caffe"])
    assert e.value.code == 2


def test_labels_outside_the_classes_are_an_error(framework, batch):
    logits, labels, _, _ = batch
    module = _load(export.render(export.program(L.get("cross_entropy")), framework))
    for bad in (12, -1):
        wrong = labels.copy()
        wrong[3] = bad
        with pytest.raises(ValueError, match=r"class ids in \[0, 10\)"):
            module.loss_from_logits(logits, wrong)
    with pytest.raises(ValueError, match="integer class ids"):
        module.loss_from_logits(logits, labels.astype(np.float32))


def test_torch_gradient_equals_jax_gradient(batch):
    torch = pytest.importorskip("torch")
    logits, labels, _, _ = batch
    for name in ("cross_entropy", "neuroloss3"):
        module = _load(export.render(export.program(L.get(name)), "torch"))
        z = torch.tensor(logits, requires_grad=True)
        module.loss_from_logits(z, torch.tensor(labels)).sum().backward()
        want = jax.grad(lambda x, n=name: L.get(n)(x, labels).sum())(jnp.asarray(logits))
        _close(z.grad.numpy(), want, 1e-4)
