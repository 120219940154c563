"""Table 4 and its ablations as text: display cells, the generated verdict, Markdown, LaTeX,
and the files ``reports/table4.md|csv|tex``.

Input: the numeric tables of :func:`mer_core.table4.build_tables`. A cell reads "value [low,
high]" (subject-bootstrap interval; "± sd" with several seeds), the best experiment value per
column in bold; the verdict says which rows differ from the reference (paired interval excludes
0) and which do not, and whether each deep row beats the strongest classical baseline. On a
composite the overall columns are headed "Composite" and each dataset gets UF1 and UAR columns
headed by its name (:func:`metric_columns`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from mer_core import io, vocab
from mer_core.table4 import DATASET_METRICS, METRIC_COLUMNS, TABLE_TITLES, dataset_column

ROW_HEADERS = {"table4": "Frames", "backbone": "Backbone", "loss": "Loss", "inputs": "Input"}


# ----------------------------------------------------------------------------------------------
# Formatting: Markdown and LaTeX
# ----------------------------------------------------------------------------------------------
def _fmt(v, metric: str) -> str:
    if v is None or pd.isna(v):
        return "n/a"
    return f"{100 * v:.1f}" if metric == "accuracy" else f"{v:.3f}"


def _fmt_p(p) -> str:
    if p is None or pd.isna(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def metric_columns(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The metric columns a numeric table is shown with: ``(column, metric, title)``.

    One dataset: accuracy, UF1, UAR (:data:`mer_core.table4.METRIC_COLUMNS`). A composite
    (``uf1@<dataset>`` columns; names from ``df.attrs["dataset_names"]``, else the dataset
    values): the pooled columns headed "Composite", then UF1 and UAR of each dataset.
    """
    names = df.attrs.get("dataset_names") or {}
    first = dataset_column(DATASET_METRICS[0][0], "")
    datasets = list(names) or [c[len(first):] for c in df.columns if c.startswith(first)
                               and not c.endswith(("_ci_low", "_ci_high", "_std"))]
    if not datasets:
        return [(m, m, title) for m, title in METRIC_COLUMNS]
    out = [(m, m, f"Composite {title[0].lower()}{title[1:]}" if m == "accuracy"
            else f"Composite {title}") for m, title in METRIC_COLUMNS]
    for d in datasets:
        out += [(dataset_column(m, d), m, f"{names.get(d, d)} {title}")
                for m, title in DATASET_METRICS]
    return out


def _metric_cells(df: pd.DataFrame, col: str, m: str, bold: str) -> list[str]:
    """The cells of one metric column: value (bold when the best experiment value), "± sd"
    with several seeds, "[low, high]"."""
    exp_rows = ~df["is_baseline"].astype(bool)
    shown = df[col].map(lambda v: _fmt(v, m))
    best = shown[exp_rows & df[col].notna()].map(float).max() if exp_rows.any() else None
    cells = []
    for i, r in df.iterrows():
        v = shown.loc[i]
        if bold != "none" and best is not None and exp_rows.loc[i] and v != "n/a" \
                and float(v) == best:
            v = f"**{v}**" if bold == "md" else f"\\textbf{{{v}}}"
        sd = r.get(f"{col}_std")
        if sd is not None and not pd.isna(sd) and (r.get("n_seeds") or 1) > 1:
            pm = " ± " if bold != "tex" else " $\\pm$ "
            v += pm + _fmt(sd, m)
        lo, hi = r.get(f"{col}_ci_low"), r.get(f"{col}_ci_high")
        if lo is not None and not pd.isna(lo):
            v += f" [{_fmt(lo, m)}, {_fmt(hi, m)}]"
        cells.append(v)
    return cells


def display_table(df: pd.DataFrame, bold: str = "md") -> pd.DataFrame:
    """Strings for display: "value [low, high]" (and "+- std" with several seeds), the best
    experiment value per column in bold (``bold`` = "md", "tex" or "none"), McNemar p; on a
    composite, UF1 and UAR per dataset after the composite columns (:func:`metric_columns`)."""
    table = str(df["table"].iloc[0]) if len(df) else "table4"
    out = pd.DataFrame({ROW_HEADERS.get(table, "Row"): df["row"].astype(str),
                        "Experiment": df["experiment"].astype(str)})
    for col, m, title in metric_columns(df):
        out[title] = _metric_cells(df, col, m, bold)
    ref = df.loc[df["is_reference"].astype(bool), "experiment"]
    if len(ref):
        out[f"ΔUF1 vs {ref.iloc[0]}"] = [
            "ref." if r["is_reference"] else _fmt_diff(r, "uf1") for _, r in df.iterrows()]
    p_title = f"McNemar p (Holm) vs {ref.iloc[0]}" if len(ref) else "McNemar p (Holm)"
    out[p_title] = ["ref." if r["is_reference"] else _fmt_p(r.get("mcnemar_p_holm"))
                    for _, r in df.iterrows()]
    best = df["best_baseline"].dropna() if "best_baseline" in df else pd.Series(dtype=object)
    if len(best):
        out[f"ΔUF1 vs best baseline ({best.iloc[0]})"] = [
            "best baseline" if r["experiment"] == best.iloc[0]
            else "" if r["is_baseline"] else _fmt_diff(r, "uf1", "_diff_baseline")
            for _, r in df.iterrows()]
    return out


def _fmt_diff(r, m: str, kind: str = "_diff") -> str:
    d = r.get(f"{m}{kind}")
    if d is None or pd.isna(d):
        return ""
    lo, hi = r.get(f"{m}{kind}_ci_low"), r.get(f"{m}{kind}_ci_high")
    scale = 100 if m == "accuracy" else 1
    fmt = (lambda v: f"{scale * v:+.1f}") if m == "accuracy" else (lambda v: f"{v:+.3f}")
    return f"{fmt(d)} [{fmt(lo)}, {fmt(hi)}]"


def distinguishable(r, m: str = "uf1") -> bool | None:
    """True when the row's paired-difference interval to the reference excludes 0."""
    lo, hi = r.get(f"{m}_diff_ci_low"), r.get(f"{m}_diff_ci_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return None
    return bool(lo > 0 or hi < 0)


def verdict(df: pd.DataFrame, metric: str = "uf1", alpha: float = 0.05) -> str:
    """One paragraph, generated from the numbers, saying which rows of a table differ from its
    reference (paired subject-bootstrap interval of the difference excludes 0) and which do
    not, and what McNemar's test (Holm-adjusted) says."""
    ref = df.loc[df["is_reference"].astype(bool), "row"]
    if not len(ref):
        return ""
    name = {"uf1": "UF1", "uar": "UAR", "accuracy": "accuracy"}[metric]
    # the classical baselines have a sentence of their own (baseline_verdict)
    rows = [r for _, r in df.iterrows() if not r["is_reference"]
            and not (r.get("is_baseline") and r.get("experiment") in vocab.BASELINES)]
    yes = [r for r in rows if distinguishable(r, metric)]
    no = [r for r in rows if distinguishable(r, metric) is False]
    def item(r):
        return f"{r['row']} ({_fmt_diff(r, metric)})"

    parts = [f"Against **{ref.iloc[0]}** (paired {name} difference, row minus reference, with "
             f"its subject-bootstrap interval):"]
    if yes:
        parts.append("Distinguishable from zero: " + "; ".join(map(item, yes)) + ".")
    if no:
        parts.append(("Not distinguishable from zero (the interval contains 0, so this "
                      "ordering may be noise): ") + "; ".join(map(item, no)) + ".")
    sig = [r for r in rows if r.get("mcnemar_p_holm") is not None
           and not pd.isna(r.get("mcnemar_p_holm")) and r["mcnemar_p_holm"] < alpha]
    tested = [r for r in rows if r.get("mcnemar_p_holm") is not None
              and not pd.isna(r.get("mcnemar_p_holm"))]
    if tested:
        parts.append(f"McNemar (Holm over {len(tested)} tests): p < {alpha} for "
                     + (", ".join(r["row"] for r in sig) if sig else "no row") + ".")
    return " ".join(parts)


def baseline_verdict(df: pd.DataFrame, metric: str = "uf1") -> str:
    """One sentence per table, generated from the numbers: does each deep row beat the
    strongest baseline (paired subject-bootstrap interval of the difference above 0), and
    which do not. "" when the table has no baseline comparison."""
    best = df["best_baseline"].dropna() if "best_baseline" in df else pd.Series(dtype=object)
    deep = [r for _, r in df.iterrows() if not r["is_baseline"]
            and not pd.isna(r.get(f"{metric}_diff_baseline"))]
    if not len(best) or not deep:
        return ""
    name = {"uf1": "UF1", "uar": "UAR", "accuracy": "accuracy"}[metric]
    base = df.loc[df["experiment"] == best.iloc[0], "row"]
    label = base.iloc[0] if len(base) else vocab.BASELINES.get(best.iloc[0], best.iloc[0])
    groups = {"beat": [], "tie": [], "below": []}
    for r in deep:
        lo, hi = r[f"{metric}_diff_baseline_ci_low"], r[f"{metric}_diff_baseline_ci_high"]
        groups["beat" if lo > 0 else "below" if hi < 0 else "tie"].append(
            f"{r['row']} ({_fmt_diff(r, metric, '_diff_baseline')})")
    parts = [f"Against the strongest classical baseline, **{label}** (highest pooled UF1 of the "
             f"baselines on these subjects; paired {name} difference, row minus baseline):"]
    if groups["beat"]:
        parts.append("Rows that beat it (the interval is above 0): "
                     + "; ".join(groups["beat"]) + ".")
    if groups["tie"]:
        parts.append("Rows that do NOT beat it (the interval contains 0): "
                     + "; ".join(groups["tie"]) + ".")
    if groups["below"]:
        parts.append("Rows WORSE than it (the interval is below 0): "
                     + "; ".join(groups["below"]) + ".")
    return " ".join(parts)


def to_markdown(df: pd.DataFrame) -> str:
    """A numeric table (:func:`mer_core.table4.build_table`) as a GitHub Markdown table, best
    values bold, the Baselines block under a row of its own."""
    shown = display_table(df, bold="md")
    cols = list(shown.columns)
    is_base = df["is_baseline"].astype(bool).to_numpy()
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join([":---", ":---"] + ["---:"] * (len(cols) - 2)) + "|"]
    for i, (_, r) in enumerate(shown.iterrows()):
        if is_base[i] and i > 0 and not is_base[i - 1] and is_base.sum() > 1:
            lines.append("| *Baselines (same folds)* |" + " |" * (len(cols) - 1))
        lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
               "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "±": r"$\pm$"}


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "tab:table4") -> str:
    """A numeric table as a booktabs ``table`` environment, best values in ``\\textbf``."""
    shown = display_table(df, bold="tex")
    cols = list(shown.columns)
    is_base = df["is_baseline"].astype(bool).to_numpy()
    metric_titles = {t for _, _, t in metric_columns(df)}

    def cell(c, v):
        if c in metric_titles:
            return str(v).replace("%", r"\%")           # already TeX (\textbf, $\pm$)
        if str(v) == "<0.001":
            return "$<$0.001"
        return tex_escape(v)

    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + tex_escape(caption) + "}")
    lines += [r"\label{" + label + "}", r"\begin{tabular}{ll" + "r" * (len(cols) - 2) + "}",
              r"\toprule",
              " & ".join(tex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for i, (_, r) in enumerate(shown.iterrows()):
        if is_base[i] and i > 0 and not is_base[i - 1]:
            lines.append(r"\midrule")
        lines.append(" & ".join(cell(c, r[c]) for c in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------
def tables_markdown(tables: Mapping[str, pd.DataFrame], level: int = 3) -> str:
    """Every table under its own heading."""
    parts = []
    for name, df in tables.items():
        text = "\n\n".join(t for t in (verdict(df), baseline_verdict(df)) if t)
        parts.append(f"{'#' * level} {TABLE_TITLES.get(name, name)}\n\n{to_markdown(df)}"
                     + (f"\n{text}\n" if text else ""))
    return "\n".join(parts)


def write_tables(tables: Mapping[str, pd.DataFrame], header: Sequence[str],
                 reports_dir: str | Path = "reports") -> dict[str, Path]:
    """Write ``table4.md`` (header + tables), ``table4.csv`` (numbers, every table, fractions)
    and ``table4.tex`` (booktabs, header as comments) atomically.

    Returns:
        ``{"md": path, "csv": path, "tex": path}``.
    """
    reports_dir = Path(reports_dir)
    md = "# Table 4 and ablations\n\n" + "\n".join(header) + "\n\n" + tables_markdown(tables, 2)
    csv = pd.concat(list(tables.values()), ignore_index=True)
    tex = ["% Generated by mer_core.report (notebooks/04_table4.ipynb); do not edit.",
           *("% " + re.sub(r"\*\*|`", "", h.lstrip("- ")) for h in header), ""]
    for name, df in tables.items():
        tex.append(to_latex(df, caption=TABLE_TITLES.get(name, name), label=f"tab:{name}"))
    return {"md": io.write_text(reports_dir / "table4.md", md),
            "csv": io.write_csv(reports_dir / "table4.csv", csv),
            "tex": io.write_text(reports_dir / "table4.tex", "\n".join(tex))}


__all__ = ["metric_columns", "display_table", "distinguishable", "verdict", "baseline_verdict", "to_markdown", "tex_escape", "to_latex",
           "tables_markdown", "write_tables", "ROW_HEADERS"]
