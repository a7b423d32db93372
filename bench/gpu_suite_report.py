"""The BENCHMARKS.md section of a ``bench.gpu_suite`` results dict (``render``, ``write``)."""

from __future__ import annotations

from bench import common

GATE, SURROGATE_STEPS, EFF_STEPS, EVAL_EVERY = 800, (2000, 8000), 8000, 100
PRECISIONS = {"default": "float32 (XLA's default: TF32 allowed on NVIDIA GPUs)",
              "highest": 'float32, `jax.default_matmul_precision("highest")`',
              "bfloat16": "bf16 compute, float32 parameters and loss (`model_kwargs.dtype`)"}


def _row(result, name, model="convnet", k=1, precision="default"):
    return next((r for r in result["rows"] if (r["name"], r["model"], r["k"], r["precision"])
                 == (name, model, k, precision)), None)


def _gib(x) -> str:
    return "n/a" if x is None else f"{x / 2 ** 30:.2f}"


def _runs(rows: list[dict]) -> str:
    peak, table = 0, []
    for r in rows:
        rose = (r["peak_bytes_in_use"] or 0) > peak
        peak = max(peak, r["peak_bytes_in_use"] or 0)
        name = r["name"] + ("" if r["status"] == ["ok"] else f" ({', '.join(r['status'])})")
        table.append([name, r["model"], r["k"], r["precision"], r["steps"], r["compile_s"],
                      1 / r["step_s"], r["k"] / r["step_s"], r["eval_s"],
                      ("" if rose else "≤ ") + _gib(r["peak_bytes_in_use"])])
    return common.table(
        ["run", "model", "K", "precision", "steps", "compile + setup s", "steps/s",
         "candidate-steps/s", "s per 5k evaluation", "peak device GiB"], table)


def _candidates(result: dict) -> list[str]:
    gate, sur = _row(result, "sequential gate"), _row(result, "sequential surrogate")
    cand = []
    if gate and sur:
        for n in SURROGATE_STEPS:
            s = (gate["compile_s"] + GATE * gate["step_s"] + sur["compile_s"] + n * sur["step_s"]
                 + n / EVAL_EVERY * sur["eval_s"])
            cand.append(["sequential (`train.run`)", 1, n, s, 3600 / s,
                         gate["compile_s"] + sur["compile_s"]])
    for r in (r for r in result["rows"] if r["name"] == "vmapped"):
        for n in SURROGATE_STEPS:
            s = ((GATE + n) * r["step_s"] + n / EVAL_EVERY * r["eval_s"]) / r["k"]
            cand.append(["vmapped (`population.run`)", r["k"], n, s, 3600 / s, r["compile_s"]])
    if not cand:
        return []
    warm = "after the warm-up run" if _row(result, "warm-up (first compile)") else (
        "here without a warm-up run, so the sequential compile + setup includes the compile")
    return [f"ConvNet candidates/hour, extrapolated to the real protocol (gate {GATE} steps, then "
            "the surrogate with a 5,000-image evaluation every 100 steps; every candidate passes "
            "the gate and none stops early). Sequential: an evolved genome's loss in the data "
            "form, whose step `train.run` compiles once per process and every later candidate "
            f"reuses ({warm}), so a candidate pays its setup and first evaluation; vmapped: the "
            "compile is paid once per K per process and is left out of the per-candidate time.",
            common.table(["mode", "K", "surrogate steps", "s per candidate", "candidates/h",
                          "compile s"], cand)]


def _effnet(result: dict) -> list[str]:
    gate = _row(result, "sequential gate")
    g = gate["compile_s"] + GATE * gate["step_s"] if gate else 0.0
    out = []
    for precision in ("default", "bfloat16"):
        e = _row(result, "surrogate", "efficientnetv2_s", precision=precision)
        if not e:
            continue
        run = EFF_STEPS * e["step_s"] + EFF_STEPS / EVAL_EVERY * e["eval_s"]
        first = run + e["compile_s"]
        out.append(
            f"EfficientNetV2-S surrogate (96 px, batch 64, RandAugment), {PRECISIONS[precision]}: "
            f"{1 / e['step_s']:.1f} steps/s, {e['eval_s']:.2f} s per evaluation, compile + setup "
            f"{e['compile_s']:.0f} s → {EFF_STEPS:,} steps + {EFF_STEPS // EVAL_EVERY} "
            f"evaluations = **{run / 60:.1f} min per candidate** once the step is compiled "
            f"({first / 60:.1f} min for a process's first, compile included; "
            f"{(run + g) / 60:.1f} min with the ConvNet gate; 2,000 candidates ≈ "
            f"{2000 * (run + g) / 3600:.0f} h on one device). The paper: ~3 min per candidate "
            "on an A100 (2,000 candidates in ~100 h).")
    return out


def _precision(result: dict) -> list[str]:
    prec = []
    for model, name in (("convnet", "sequential surrogate"), ("efficientnetv2_s", "surrogate")):
        d = _row(result, name, model)
        if not d:
            continue
        h = _row(result, name, model, precision="highest")
        b = _row(result, name, model, precision="bfloat16")
        if not (h or b):
            continue
        prec.append([model, 1 / d["step_s"], 1 / h["step_s"] if h else "",
                     1 / b["step_s"] if b else "", d["step_s"] / b["step_s"] if b else "",
                     d["compile_s"], b["compile_s"] if b else ""])
    if not prec:
        return []
    return ["Precision: " + "; ".join(f"{k} = {v}" for k, v in PRECISIONS.items()) + ". bf16 "
            "keeps parameters, gradients, Adam state, BatchNorm statistics, logits, softmax and "
            "loss in float32 (`lfe.core.protocol.with_precision`). The bf16 EfficientNetV2-S run "
            "comes before the float32 one, so each peak in the first table is its own.",
            common.table(["model", "default steps/s", "highest steps/s", "bf16 steps/s",
                          "bf16 speed-up over default", "compile s (default)",
                          "compile s (bf16)"], prec)]


def _k_choice(result: dict) -> list[str]:
    c = result.get("k_choice")
    if not c:
        return []
    table = [[r["k"], r.get("rate", ""), r.get("compile_s", ""), _gib(r.get("peak_bytes")),
              r.get("error", "")] for r in c["rows"]]
    return [f"K choice (`lfe.training.k_choice`, what the `vmap` executor picks for the ConvNet "
            f"surrogate protocol on this device; K = 1 is the sequential step): **K = {c['k']}** "
            f"({c['wall_s']:.0f} s of measuring, doubling up to {c['max_k']} while each doubling "
            "gains ≥ 10%).",
            common.table(["K", "candidate-steps/s", "compile + warm-up s",
                          "peak device GiB (process)", "failed"], table)]


def render(result: dict) -> str:
    """The BENCHMARKS.md section body of a results dict (what ``gpu_suite.measure`` returns)."""
    lines = [_runs(result["rows"]), *_candidates(result), *_effnet(result),
             *_precision(result), *_k_choice(result)]
    if result.get("errors"):
        lines.append("Failed: " + "; ".join(result["errors"]) + ".")
    if result["skipped"]:
        lines.append("Skipped (time budget): " + "; ".join(result["skipped"]) + ".")
    head = (f"Device: **{result['device']}** ({result['platform']}), jax {result['jax']} "
            f"(jaxlib {result['jaxlib']}, flax {result.get('flax', '?')}), Python "
            f"{result['python']}; revision {result['revision']}, {result['date']}; measured "
            f"with `{result['command']}` "
            f"({result['total_s']:.0f} s). Data: {result['data']}."
            + (" **--tiny: a code-path check, not a measurement.**" if result["tiny"] else "")
            + "\n\nEach row is one shortened training run; compile + setup = first evaluation "
            "interval minus one steady interval; steps/s = steady, evaluations excluded; peak "
            "device memory is the process's peak after the row (≤: the row did not raise it).")
    return "\n\n".join([head, *lines])


def write(result: dict, path: str) -> str:
    slug = result["device"].lower().replace("nvidia ", "").replace(" ", "-")
    return common.write_section(f"gpu-suite-{slug}", f"7. One accelerator: {result['device']}",
                                render(result), path=path)
