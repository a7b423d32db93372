"""Result tables in the paper's layouts, as plain data rendered to markdown and CSV.

- Tables 4, 8, 9, 10, 11 (``loss_table``): one row per loss, one column group per setting,
  ``mean ± std`` (%) with the best mean of each column in bold and, where asked, Welch's p-value
  against cross-entropy (one-sided "greater" as Tables 4 and 8 report, and/or two-sided).
- The paired-by-seed side note (``paired_table``): per loss, its runs matched by seed with
  cross-entropy's (a seed fixes the initial weights and the batch order for every loss).
- Table 3 (``tau_table``): Kendall's τ between each setting's ranking of the losses and the
  reference (full) protocol's ranking.
- The elimination protocol (``elimination_tables``): each stage's ranking.
- Transfer grids (``transfer_tables``) in the layout their config names.

The paper's values stand beside a run's only where the run's setting is the one they were
measured on (``paper_values``); a table's note ends with the command that reproduces it
(``provenance``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

from lfe.core import rundir, stats
from lfe.experiments import cells

BASELINE = "cross_entropy"
MAX_LABEL = "max over training, authors' metric"
MAX_NOTE = (" The result is the final test accuracy; the column marked \"max over training, "
            "authors' metric\" is the best test accuracy over the run's evaluations, as the "
            "paper's authors report it (their script evaluates the test set every 100 steps "
            "and keeps the maximum, a choice made on the test set): for comparison with the "
            "paper only.")
P_TITLES = {"greater": "p (> CE, one-sided)", "two-sided": "p (two-sided)"}


@dataclasses.dataclass(frozen=True)
class Table:
    """A rendered table: ``header`` and ``rows`` of display strings, plus raw CSV rows."""

    title: str
    header: list[str]
    rows: list[list[str]]
    csv_header: list[str]
    csv_rows: list[list]
    note: str = ""


def mean_std(values: list[float]) -> str:
    s = stats.summarize(values)
    if s.n < 2:  # no spread from one run
        return f"{s.mean:.3f} (one run)" if s.n else "-"
    return f"{s.mean:.3f} ± {s.std:.3f}"


def loss_table(title: str, losses: list[str], columns: dict[str, dict[str, list[float]]], *,
               p_values: tuple[str, ...] = (), baseline: str = BASELINE,
               paper: dict[str, dict[str, str]] | None = None, note: str = "",
               also: tuple[str, dict[str, dict[str, list[float]]]] | None = None) -> Table:
    """Tables 4 and 8–11: rows ``losses``, for each column title ``columns[title][loss]`` the
    accuracies (%) of its runs; ``p_values`` adds Welch's test vs ``baseline`` per column
    ("greater" and/or "two-sided"); ``paper[title][loss]`` adds the published value;
    ``also = (label, values)`` adds a comparison column "<title> (<label>)" of mean ± std of
    ``values[title][loss]`` (never bold, no test). The CSV also holds a 95% bootstrap
    confidence interval of each mean."""
    paper = paper or {}
    also_label, also_values = also or ("", {})
    header, csv_header = ["loss"], ["loss"]
    for title_ in columns:
        header += [f"{title_} (runs)", title_] + [P_TITLES[a] for a in p_values]
        csv_header += [f"{title_} runs", f"{title_} mean", f"{title_} std",
                       f"{title_} ci95 low", f"{title_} ci95 high"]
        csv_header += [f"{title_} {P_TITLES[a]}" for a in p_values]
        if title_ in also_values:
            header.append(f"{title_} ({also_label})")
            csv_header += [f"{title_} {also_label} mean", f"{title_} {also_label} std"]
        if title_ in paper:
            header.append(f"{title_} (paper)")
            csv_header.append(f"{title_} paper")
    best = {t: max((stats.summarize(v).mean for v in col.values() if v), default=None)
            for t, col in columns.items()}
    rows, csv_rows = [], []
    for loss in losses:
        row, raw = [loss], [loss]
        for t, col in columns.items():
            values, base = col.get(loss, []), col.get(baseline, [])
            s = stats.summarize(values)
            cell = mean_std(values)
            row += [str(s.n), f"**{cell}**" if s.n and s.mean == best[t] else cell]
            raw += [s.n, s.mean, s.std, *stats.bootstrap_ci(values)]
            for alternative in p_values:
                p = None if loss == baseline else stats.welch(values, base, alternative)
                row.append(stats.format_p(p))
                raw.append("" if p is None else p)
            if t in also_values:
                other = also_values[t].get(loss, [])
                row.append(mean_std(other))
                raw += [stats.summarize(other).mean, stats.summarize(other).std]
            if t in paper:
                row.append(paper[t].get(loss) or "-")
                raw.append(paper[t].get(loss) or "")
        rows.append(row)
        csv_rows.append(raw)
    return Table(title, header, rows, csv_header, csv_rows, note)


def paired_table(title: str, losses: list[str], by_seed: dict[str, dict[int, float]], *,
                 baseline: str = BASELINE, note: str = "") -> Table:
    """Each loss against ``baseline`` over the seeds both ran (``by_seed[loss][seed]``:
    accuracy, %): pairs, mean ± std of the per-seed difference (points), seeds where the loss
    is above, and the paired t-test's two-sided p (``stats.paired``)."""
    header = ["loss", "seeds paired", f"difference vs {baseline} (points)",
              f"seeds above {baseline}", "p (paired, two-sided)"]
    base = by_seed.get(baseline, {})
    rows, csv_rows = [], []
    for loss in losses:
        if loss == baseline:
            continue
        seeds = sorted(set(by_seed.get(loss, {})) & set(base))
        a = [by_seed[loss][s] for s in seeds]
        b = [base[s] for s in seeds]
        diff = [x - y for x, y in zip(a, b, strict=True)]
        d = stats.summarize(diff)
        above = sum(x > 0 for x in diff)
        p = stats.paired(a, b)
        shown = "-" if not d.n else (f"{d.mean:+.3f} ± {d.std:.3f}" if d.n > 1
                                     else f"{d.mean:+.3f} (one pair)")
        rows.append([loss, str(d.n), shown, f"{above} of {d.n}", stats.format_p(p)])
        csv_rows.append([loss, d.n, d.mean, d.std, above, p])
    return Table(title, header, rows, ["loss", "pairs", "difference mean", "difference std",
                                       "seeds above", "p paired two-sided"], csv_rows, note)


def paper_values(config) -> tuple[dict, str]:
    """``config.paper`` and "", or ``{}`` and a sentence naming the keys that differ when the
    run's setting is not the one the paper's values were measured on: ``config.paper_setting``,
    which the config that names the values records (``configs/common.py``'s ``with_paper``,
    before a variant or an override changes the dataset or protocol). A config without
    ``paper_setting`` (run directories made before it) shows its values as before."""
    paper = rundir.to_plain(config.get("paper") or {})
    setting = config.get("paper_setting")
    if not paper or not setting:
        return paper, ""
    setting = rundir.to_plain(setting)
    changed = rundir.changed_keys(setting, {k: config.get(k) for k in setting})
    if not changed:
        return paper, ""
    named = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4
                                      else "")
    return {}, ("The paper's values are not shown: this run differs from the setting they were "
                f"measured on in {named}.")


def provenance(config, omitted: str = "") -> str:
    """The end of a result table's note: why the paper's values are left out (``omitted``,
    from ``paper_values``) and the command that made the run (``config.command``, which
    ``lfe.main`` records with its overrides)."""
    text = f" {omitted}" if omitted else ""
    if config.get("command"):
        text += f"\n\nReproduce: `{config.get('command')}`"
    return text


def tau_table(title: str, row_names: list[str], col_names: list[str],
              taus: dict[tuple[str, str], tuple[float, float, int]], note: str = "") -> Table:
    """Table 3: Kendall's τ of each (row, column) setting against the reference ranking;
    ``taus[(row, col)] = (tau, p, number of losses)``."""
    header = ["setting"] + col_names
    rows, csv_rows = [], []
    for r in row_names:
        row, raw = [r], [r]
        for c in col_names:
            tau, p, n = taus.get((r, c), (None, None, 0))
            row.append("-" if tau is None or tau != tau else f"{tau:.4f} (n={n}, p={p:.3f})")
            raw += ["" if tau is None else tau, "" if p is None else p, n]
        rows.append(row)
        csv_rows.append(raw)
    csv_header = ["setting"] + [f"{c} {k}" for c in col_names for k in ("tau", "p", "n")]
    return Table(title, header, rows, csv_header, csv_rows, note)


def elimination_tables(summary: dict, candidates: dict[str, dict]) -> list[Table]:
    """One row per loss that entered the protocol — ordered by how far it got, then by its last
    stage's rank — with its accuracy (%) in each stage it was trained in (best in bold).
    ``candidates[name]`` gives the equation and the search fitness."""
    stages = summary["stages"]
    scores = {(s["stage"], r["loss"]): r for s in stages for r in s["ranking"] + s["references"]}
    order, seen = [], set()
    for s in reversed(stages):
        for r in s["ranking"]:
            if r["loss"] not in seen:
                seen.add(r["loss"])
                order.append((r["loss"], False))
    order += [(r["loss"], True) for r in stages[0]["references"]]
    best = {s["stage"]: max((r["score"] for r in s["ranking"]), default=None) for s in stages}
    header = ["rank", "loss", "equation", "search fitness (%)"]
    header += [f"stage {s['stage']}: phase{'s 1–' if s['phases'] > 1 else ' '}{s['phases']}, "
               f"{s['steps']} steps (%)" for s in stages]
    csv_header = ["rank", "loss", "equation", "search_fitness"]
    csv_header += [f"stage{s['stage']}_accuracy" for s in stages]
    rows, csv_rows = [], []
    for i, (name, is_ref) in enumerate(order):
        c = candidates.get(name, {})
        fit = c.get("search_fitness")
        row = ["ref" if is_ref else str(i + 1), name, f"`{c['equation']}`" if c else "-",
               "-" if fit is None else f"{100 * fit:.2f}"]
        raw = ["" if is_ref else i + 1, name, c.get("equation", ""), "" if fit is None else fit]
        for s in stages:
            r = scores.get((s["stage"], name))
            value = None if r is None or not r["values"] else 100 * r["score"]
            text = "-" if value is None else (
                f"{value:.2f}" if r["score"] >= 0 else f"{r['statuses']}")
            if value is not None and not is_ref and r["score"] == best[s["stage"]]:
                text = f"**{text}**"
            row.append(text)
            raw.append("" if value is None else r["score"])
        rows.append(row)
        csv_rows.append(raw)
    note = ("Validation accuracy (best over the run's evaluations; mean over seeds). Each stage "
            "retrains its entrants from scratch; `ref` rows are trained for comparison only.")
    return [Table("Elimination protocol", header, rows, csv_header, csv_rows, note)]


def _label(setting: dict, axes) -> str:
    return " / ".join(str(setting[a]) for a in axes)


def ordered(labels, preferred=()) -> list[str]:
    """``labels`` deduplicated: those in ``preferred`` first, in its order, then the rest with
    numbers in numeric order (config mappings iterate in sorted key order, so the layout says
    which order the paper's columns have)."""
    preferred = list(preferred)
    unique = list(dict.fromkeys(labels))

    def key(label: str):
        if label in preferred:
            return (0, preferred.index(label), 0, "")
        return (1, 0, int(label) if label.isdigit() else 1 << 30, label)

    return sorted(unique, key=key)


def _values(records: list[dict], final: bool) -> tuple[list[str], dict[str, dict[str, list]]]:
    """(losses in table order, setting -> loss -> accuracies in %)."""
    index: dict[str, int] = {}  # a loss added to a grid later may carry another index
    for r in records:
        index[r["loss"]] = min(index.get(r["loss"], 1 << 30), r.get("loss_index", 0))
    values: dict[str, dict[str, list]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        values.setdefault(r["setting"], {}).setdefault(r["loss"], []).append(
            100 * cells.accuracy(r, final=final))
    return sorted(index, key=lambda n: (index[n], n)), values


def transfer_tables(records: list[dict], config: dict) -> list[Table]:
    """Tables 8–11 (``layout.kind: loss``) or Table 3 (``layout.kind: tau``) from transfer
    cells; ``config`` is the transfer config as plain data (its ``config.json``)."""
    final = config.get("metric", "final") == "final"
    names, values = _values(records, final)
    paper, omitted = paper_values(config)
    # Beside a final test accuracy, the authors' figure: the best test accuracy over the run's
    # evaluations, i.e. chosen on the test set (their script reports it): a comparison only.
    maxima = _values(records, False)[1] if final else {}
    settings, layout = config["settings"], config["layout"]
    split_name = "test" if any(s.get("eval_split") == "test" for s in settings.values()) \
        else "validation"
    what = f"{'final' if final else 'best'} {split_name} accuracy (%)"
    if layout["kind"] == "tau":
        return [_tau_from_settings(config, names, values)]
    split, order = list(layout.get("split") or ()), layout.get("order") or ()
    groups: dict[str, list[str]] = {}
    for name, st in settings.items():
        groups.setdefault(_label(st, split), []).append(name)
    tables = []
    for group in ordered(groups, order):
        members = groups[group]
        col_axes = list(layout.get("columns") or ())
        col_axes += [a for a in ("architecture", "dataset", "augmentation")
                     if a not in split + col_axes
                     and len({settings[m][a] for m in members}) > 1]
        titles = {m: _label(settings[m], col_axes) or m for m in members}
        members = sorted(members, key=lambda m: ordered(titles.values(), order).index(titles[m]))
        columns = {titles[m]: values.get(m, {}) for m in members}
        test_max = {titles[m]: maxima.get(m, {}) for m in members
                    if settings[m].get("eval_split") == "test"}
        title = f"{config['title']}: {group}" if group else config["title"]
        tables.append(loss_table(
            title, names, columns, p_values=tuple(config.get("p_values") or ()),
            paper=paper,
            also=(MAX_LABEL, test_max) if test_max else None,
            note=f"Mean ± std of the {what} over seeds"
                 + ("; p: Welch's t-test vs cross-entropy." if config.get("p_values") else ".")
                 + (MAX_NOTE if test_max else "")))
    return [dataclasses.replace(t, note=t.note + provenance(config, omitted)) for t in tables]


def _tau_from_settings(config: dict, names: list[str], values: dict) -> Table:
    settings, layout, ref = config["settings"], config["layout"], config["reference"]
    if ref not in settings:
        raise ValueError(f"reference setting {ref!r} is not among the settings: "
                         + ", ".join(settings))

    def means(setting: str) -> dict[str, float]:
        return {n: stats.summarize(v).mean for n, v in values.get(setting, {}).items() if v}

    reference = means(ref)
    rows, cols, taus = [], [], {}
    for name, st in settings.items():
        if name == ref:
            continue
        r, c = _label(st, layout["rows"]) or name, _label(st, layout["columns"]) or "τ"
        rows += [r] if r not in rows else []
        cols += [c] if c not in cols else []
        mine = means(name)
        common = [n for n in names if n in mine and n in reference]
        tau, p = stats.kendall_tau([mine[n] for n in common], [reference[n] for n in common])
        taus[(r, c)] = (tau, p, len(common))
    rows, cols = ordered(rows, layout.get("order") or ()), ordered(cols, layout.get("order") or ())
    note = (f"Kendall's τ-b between each setting's ranking of the losses (mean over seeds) and "
            f"the ranking under `{ref}`; n = losses ranked, p two-sided.")
    return tau_table(config["title"], rows, cols, taus, note)


def to_markdown(table: Table) -> str:
    lines = [f"## {table.title}", "", "| " + " | ".join(table.header) + " |",
             "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.csv_header)
    writer.writerows(table.csv_rows)
    return out.getvalue()


def write_tables(tables: list[Table], directory: str, stem: str, heading: str = "") -> list[str]:
    """``<stem>.md`` (all tables) and ``<stem>.csv`` (or ``<stem>_<i>.csv`` for several)."""
    os.makedirs(directory, exist_ok=True)
    md = (f"# {heading}\n\n" if heading else "") + "\n".join(to_markdown(t) for t in tables)
    paths = [os.path.join(directory, f"{stem}.md")]
    with open(paths[0], "w") as f:
        f.write(md)
    for i, table in enumerate(tables):
        name = f"{stem}.csv" if len(tables) == 1 else f"{stem}_{i + 1}.csv"
        paths.append(os.path.join(directory, name))
        with open(paths[-1], "w", newline="") as f:
            f.write(to_csv(table))
    return paths
