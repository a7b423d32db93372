"""``mode: report`` — markdown and CSV tables in the paper's layouts, and the figures.

Tables are built from recorded cells only (``lfe.cells``), so a report can be (re)made at any
time from a run directory:

- Tables 4, 8, 9, 10, 11 (``loss_table``): one row per loss, one column group per setting,
  ``mean ± std`` (%) with the best mean of each column in bold and, where asked, Welch's p-value
  against cross-entropy (one-sided "greater" as Tables 4 and 8 report, and/or two-sided).
- Table 3 (``tau_table``): Kendall's τ between each setting's ranking of the losses and the
  reference (full) protocol's ranking.
- The elimination protocol (``elimination_table``): each stage's ranking.
- Figure 4 from the evolution's state and Figures 2–3 for the finalists (``write_figures``).

``run(config, workdir)`` turns a finished run directory (evolve, eliminate, transfer, compare
or a whole pipeline) into ``<workdir>/report/``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import ml_collections

from lfe import stats

BASELINE = "cross_entropy"
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


def _mean_std(values: list[float]) -> str:
    s = stats.summarize(values)
    return "-" if not s.n else f"{s.mean:.3f} ± {s.std:.3f}"


def loss_table(title: str, losses: list[str], columns: dict[str, dict[str, list[float]]], *,
               p_values: tuple[str, ...] = (), baseline: str = BASELINE,
               paper: dict[str, dict[str, str]] | None = None, note: str = "") -> Table:
    """Tables 4 and 8–11: rows ``losses``, for each column title ``columns[title][loss]`` the
    accuracies (%) of its runs; ``p_values`` adds Welch's test vs ``baseline`` per column
    ("greater" and/or "two-sided"); ``paper[title][loss]`` adds the published value."""
    paper = paper or {}
    header, csv_header = ["loss"], ["loss"]
    for title_ in columns:
        header += [f"{title_} (runs)", title_] + [P_TITLES[a] for a in p_values]
        csv_header += [f"{title_} runs", f"{title_} mean", f"{title_} std"]
        csv_header += [f"{title_} {P_TITLES[a]}" for a in p_values]
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
            cell = _mean_std(values)
            row += [str(s.n), f"**{cell}**" if s.n and s.mean == best[t] else cell]
            raw += [s.n, s.mean, s.std]
            for alternative in p_values:
                p = None if loss == baseline else stats.welch(values, base, alternative)
                row.append(stats.format_p(p))
                raw.append("" if p is None else p)
            if t in paper:
                row.append(paper[t].get(loss) or "-")
                raw.append(paper[t].get(loss) or "")
        rows.append(row)
        csv_rows.append(raw)
    return Table(title, header, rows, csv_header, csv_rows, note)


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
    header += [f"stage {s['stage']}: phases 1–{s['phases']}, {s['steps']} steps (%)"
               for s in stages]
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


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.mode = "report"
    c.run_dir = ""  # the run directory to report on; "" = --workdir itself
    return c
