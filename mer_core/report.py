"""Table 4, its ablations and the README results section, assembled from ``reports/metrics.json``.

Table 4 of the paper compares frame strategies for SE-ResNeXt-50 + Focal Loss. Its numbers are
not public, so every table here is regenerated from this project's own predictions; a header
block says which dataset (synthetic or real) and which settings produced them.

Tables (only rows whose experiments exist in ``metrics.json``):

* ``table4``: frame strategy (onset, middle, random, spotted apex, annotated apex) with
  ``seresnext50_32x4d`` + ``focal``;
* ``backbone``: ResNet-50, ResNeXt-50, SE-ResNet-50, SE-ResNeXt-50 on annotated apex + focal;
* ``loss``: cross-entropy, class-weighted CE, focal on annotated apex + SE-ResNeXt-50;

each with a majority-class reference row and McNemar's exact test against the reference
experiment (``params.yaml: evaluate.reference``), Holm-adjusted, and the paired subject-bootstrap
difference of every row to it.

CLI: ``python -m mer_core.report readme [--readme README.md] [--results reports/results.md]``
copies ``reports/results.md`` between the README's results markers.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import io, metrics, vocab

_PAPER = (vocab.BACKBONES[vocab.PAPER_BACKBONE], vocab.LOSSES[vocab.PAPER_LOSS])
_REF = vocab.frame_label(vocab.REFERENCE_FRAMES).lower()
TABLE_TITLES = {
    "table4": f"Table 4: frame strategy ({_PAPER[0]} + {_PAPER[1]})",
    "backbone": f"Ablation: backbone ({_REF} + {_PAPER[1]})",
    "loss": f"Ablation: loss ({_REF} + {_PAPER[0]})",
}
ROW_HEADERS = {"table4": "Frames", "backbone": "Backbone", "loss": "Loss"}
METRIC_COLUMNS = (("accuracy", "Accuracy (%)"), ("uf1", "UF1"), ("uar", "UAR"))
NOTEBOOKS = ("00_data", "01_apex_extraction", "02_train_loso", "03_evaluate", "04_table4")
START, END = "<!-- results:start -->", "<!-- results:end -->"
PAPER_NOTE = ("The paper's own Table 4 numbers are not public (only its abstract is), so there "
              "is no paper column to copy: these rows reproduce the comparison, not its values.")


# ----------------------------------------------------------------------------------------------
# Row selection
# ----------------------------------------------------------------------------------------------
def spotter_summary(per_fold: Mapping[str, int] | None) -> str | None:
    """``{"frame_diff": 25, "lbp": 1}`` -> "frame_diff in 25, lbp in 1 of 26 folds"."""
    if not per_fold:
        return None
    total = sum(per_fold.values())
    parts = [f"{m} in {n}" for m, n in sorted(per_fold.items(), key=lambda x: (-x[1], x[0]))]
    return ", ".join(parts) + f" of {total} folds"


def _spec(metrics_or_spec, key):
    return metrics_or_spec[key] if isinstance(metrics_or_spec, Mapping) \
        else getattr(metrics_or_spec, key)


def select_rows(specs: Mapping, table: str, best_spotter: str | None = None
                ) -> list[tuple[str, str]]:
    """The (row label, experiment) pairs of one table, in display order.

    Args:
        specs: experiment -> object or mapping with ``frames``, ``backbone``, ``loss`` (the
            entries of ``metrics.json`` carry them; ``config.ExperimentConfig`` too).
        table: ``table4``, ``backbone`` or ``loss``.
        best_spotter: name shown for ``spotted:best``.
    """
    rows = []
    for name, s in specs.items():
        frames, backbone, loss = (_spec(s, k) for k in ("frames", "backbone", "loss"))
        paper_backbone, paper_loss = backbone == vocab.PAPER_BACKBONE, loss == vocab.PAPER_LOSS
        if table == "table4" and paper_backbone and paper_loss:
            kind = vocab.SPOTTED if vocab.spotter_of(frames) is not None else frames
            if kind in vocab.FRAME_ORDER:
                rows.append((vocab.FRAME_ORDER.index(kind), frames,
                             vocab.frame_label(frames, best_spotter), name))
        elif table == "backbone" and frames == vocab.REFERENCE_FRAMES and paper_loss \
                and backbone in vocab.BACKBONES:
            rows.append((list(vocab.BACKBONES).index(backbone), "", vocab.BACKBONES[backbone],
                         name))
        elif table == "loss" and frames == vocab.REFERENCE_FRAMES and paper_backbone \
                and loss in vocab.LOSSES:
            rows.append((list(vocab.LOSSES).index(loss), "", vocab.LOSSES[loss], name))
        elif table not in TABLE_TITLES:
            raise ValueError(f"unknown table {table!r}; expected one of {list(TABLE_TITLES)}")
    rows.sort(key=lambda r: (r[0], r[1], r[3]))
    return [(label, name) for _, _, label, name in rows]


# ----------------------------------------------------------------------------------------------
# Table assembly (numeric)
# ----------------------------------------------------------------------------------------------
def reference_of(metric_map: Mapping[str, Mapping]) -> str:
    """The reference experiment that ``metrics.json``'s paired differences are taken against.

    Raises:
        ValueError: the entries name no reference, or different ones.
    """
    refs = {m.get("diff_reference") for m in metric_map.values()}
    if len(refs) != 1 or None in refs:
        raise ValueError(f"metrics.json: expected one diff_reference in every entry, got {refs} "
                         f"(rerun the evaluate stage)")
    ref = refs.pop()
    if ref not in metric_map:
        raise ValueError(f"metrics.json: the reference {ref!r} has no entry")
    return ref


def summary_columns(summary: pd.DataFrame) -> list[str]:
    """The columns of ``metrics.json`` worth a first look, in reading order."""
    cols = ["frames", "backbone", "loss", "n", "n_subjects", "n_seeds"]
    for m in metrics.HEADLINE:
        cols += [m] + [f"{m}{s}" for s in ("_ci_low", "_ci_high", "_clip_ci_low", "_clip_ci_high",
                                           "_std", "_diff", "_diff_ci_low", "_diff_ci_high")]
    return [c for c in cols if c in summary.columns]


def majority_row(y_true, labels: Sequence[str], n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0, sample_ids=None, subjects=None,
                 reference_pred: pd.DataFrame | None = None, reference: str | None = None) -> dict:
    """Numeric row of the majority-class reference, with subject-bootstrap intervals.

    Given ``subjects`` (aligned with ``y_true``), the intervals resample subjects, on the same
    resamples as :func:`mer_core.metrics.subject_bootstrap` draws for the experiments (same
    seed, same subjects), and with ``reference_pred`` the row's paired difference to the
    reference experiment comes from those resamples too. Without subjects: clip bootstrap.
    ``sample_ids`` lets :func:`build_table` test the row against the reference with McNemar."""
    base = metrics.majority_baseline(y_true, labels)
    row = {"row": f"Majority class (always '{base['majority_class']}')",
           "experiment": "majority_class", "frames": "", "backbone": "", "loss": "",
           "n": base["n"], "n_seeds": 1, "is_baseline": True}
    for m, _ in METRIC_COLUMNS:
        row[m] = base[m]
    if subjects is not None and sample_ids is not None:
        maj = pd.DataFrame({"sample_id": [str(x) for x in sample_ids],
                            "subject": [str(x) for x in subjects], "y_true": list(y_true),
                            "y_pred": base["y_pred"], "seed": 0})
        tables = {"majority_class": maj}
        if reference_pred is not None and reference is not None:
            tables[reference] = reference_pred
        boot = metrics.subject_bootstrap(tables, labels, n=n_boot, ci=ci, seed=seed,
                                         reference=reference if len(tables) > 1 else None,
                                         metrics=[m for m, _ in METRIC_COLUMNS])
        row.update(boot["majority_class"])
    else:
        cis = metrics.bootstrap_ci(y_true, base["y_pred"], labels, n=n_boot, ci=ci, seed=seed)
        for m, _ in METRIC_COLUMNS:
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = cis[m]
    row["_y_pred"] = base["y_pred"]
    row["_sample_id"] = None if sample_ids is None else [str(x) for x in sample_ids]
    return row


def build_table(metric_map: Mapping[str, Mapping], rows: Sequence[tuple[str, str]],
                predictions: Mapping[str, pd.DataFrame] | None = None,
                reference: str | None = None, baseline: Mapping | None = None,
                table: str = "table4") -> pd.DataFrame:
    """One table as numbers: a row per experiment, then the majority-class row.

    Args:
        metric_map: ``metrics.json`` content (experiment -> metrics).
        rows: (label, experiment) pairs from :func:`select_rows`.
        predictions: experiment -> predictions table, for McNemar (optional).
        reference: the experiment every row is tested against (McNemar, exact).
        baseline: a :func:`majority_row` dict, appended last (optional).
        table: the table's name (``table`` column).

    Returns:
        DataFrame with columns table, row, experiment, frames, backbone, loss, and for m in
        accuracy, uf1, uar: m, m_ci_low, m_ci_high, m_std, m_diff, m_diff_ci_low,
        m_diff_ci_high (paired difference to the reference, subject bootstrap); n, n_seeds,
        is_reference, is_baseline, mcnemar_b (row right & reference wrong), mcnemar_c,
        mcnemar_p, mcnemar_p_holm (Holm-adjusted over the table's tests), mcnemar_seed.
        Values are fractions (accuracy too).
    """
    out = []
    can_test = predictions is not None and reference is not None and reference in predictions
    for label, name in rows:
        m = metric_map[name]
        r = {"table": table, "row": label, "experiment": name,
             **{k: m.get(k, "") for k in ("frames", "backbone", "loss")}}
        for k, _ in METRIC_COLUMNS:
            r[k] = m[k]
            for suffix in ("_ci_low", "_ci_high", "_std", "_diff", "_diff_ci_low",
                           "_diff_ci_high"):
                r[f"{k}{suffix}"] = m.get(f"{k}{suffix}")
        r.update(n=m.get("n"), n_seeds=m.get("n_seeds", 1), is_reference=name == reference,
                 is_baseline=False)
        if can_test and name != reference and name in predictions:
            ca, cb, s = metrics.paired_correct(predictions[name], predictions[reference])
            t = metrics.mcnemar_exact(ca, cb)
            r.update(mcnemar_b=t["b"], mcnemar_c=t["c"], mcnemar_p=t["p_value"], mcnemar_seed=s)
        out.append(r)
    if baseline is not None:
        r = {"table": table, **{k: v for k, v in baseline.items() if not k.startswith("_")},
             "is_reference": False}
        ids = baseline.get("_sample_id")
        if can_test and ids is not None:
            ref = predictions[reference]
            ref = ref[ref["seed"] == ref["seed"].min()].set_index("sample_id")
            if set(ids) == set(ref.index) and len(ids) == len(ref):
                ref = ref.loc[ids]              # the baseline's clip order
                cb = (ref["y_true"].astype(str) == ref["y_pred"].astype(str)).to_numpy()
                ca = ref["y_true"].astype(str).to_numpy() == np.asarray(baseline["_y_pred"])
                t = metrics.mcnemar_exact(ca, cb)
                r.update(mcnemar_b=t["b"], mcnemar_c=t["c"], mcnemar_p=t["p_value"],
                         mcnemar_seed=int(ref["seed"].iloc[0]))
        out.append(r)
    cols = ["table", "row", "experiment", "frames", "backbone", "loss"]
    for k, _ in METRIC_COLUMNS:
        cols += [k, f"{k}_ci_low", f"{k}_ci_high", f"{k}_std", f"{k}_diff", f"{k}_diff_ci_low",
                 f"{k}_diff_ci_high"]
    cols += ["n", "n_seeds", "is_reference", "is_baseline", "mcnemar_b", "mcnemar_c",
             "mcnemar_p", "mcnemar_p_holm", "mcnemar_seed"]
    df = pd.DataFrame(out).reindex(columns=cols)
    df["mcnemar_p_holm"] = metrics.holm(df["mcnemar_p"].tolist())
    return df


def build_tables(metric_map: Mapping[str, Mapping], labels: Sequence[str],
                 predictions: Mapping[str, pd.DataFrame] | None = None,
                 reference: str | None = None, best_spotter: str | None = None,
                 y_true=None, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                 min_rows: int = 2) -> dict[str, pd.DataFrame]:
    """Table 4 and the ablations that have at least ``min_rows`` experiments.

    Args:
        metric_map: ``metrics.json`` content; each entry has frames, backbone, loss.
        labels: the protocol's classes.
        predictions: experiment -> predictions (McNemar, and the majority row's clips).
        reference: experiment tested against (McNemar).
        best_spotter: named in the spotted-apex row.
        y_true: clips of the majority row; default: the reference's (or first experiment's)
            predictions of its smallest seed, so the row covers the same clips as the others.
        min_rows: an ablation with fewer experiments is left out (Table 4 never is).

    Returns:
        ``{"table4": df, "backbone": df, "loss": df}`` (ablations only when present).
    """
    ids = subjects = ref_pred = None
    if y_true is None:
        if not predictions:
            raise ValueError("build_tables: give y_true or predictions for the majority row")
        src = predictions.get(reference)
        ref_pred = src
        src = src if src is not None else next(iter(predictions.values()))
        src = src[src["seed"] == src["seed"].min()].sort_values("sample_id")
        y_true = src["y_true"].astype(str).to_numpy(dtype=object)
        ids = src["sample_id"].astype(str).tolist()
        subjects = src["subject"].astype(str).tolist()
    base = majority_row(y_true, labels, n_boot=n_boot, ci=ci, seed=seed, sample_ids=ids,
                        subjects=subjects, reference_pred=ref_pred,
                        reference=reference if ref_pred is not None else None)
    tables = {}
    for t in TABLE_TITLES:
        rows = select_rows(metric_map, t, best_spotter)
        if t != "table4" and len(rows) < min_rows:
            continue
        tables[t] = build_table(metric_map, rows, predictions, reference, base, table=t)
    return tables


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


def display_table(df: pd.DataFrame, bold: str = "md") -> pd.DataFrame:
    """Strings for display: "value [low, high]" (and "+- std" with several seeds), the best
    experiment value per column in bold (``bold`` = "md", "tex" or "none"), McNemar p."""
    table = str(df["table"].iloc[0]) if len(df) else "table4"
    exp_rows = ~df["is_baseline"].astype(bool)
    out = pd.DataFrame({ROW_HEADERS.get(table, "Row"): df["row"].astype(str),
                        "Experiment": df["experiment"].astype(str)})
    for m, title in METRIC_COLUMNS:
        shown = df[m].map(lambda v: _fmt(v, m))
        best = shown[exp_rows & df[m].notna()].map(float).max() if exp_rows.any() else None
        cells = []
        for i, r in df.iterrows():
            v = shown.loc[i]
            if bold != "none" and best is not None and exp_rows.loc[i] and v != "n/a" \
                    and float(v) == best:
                v = f"**{v}**" if bold == "md" else f"\\textbf{{{v}}}"
            sd = r.get(f"{m}_std")
            if sd is not None and not pd.isna(sd) and (r.get("n_seeds") or 1) > 1:
                pm = " ± " if bold != "tex" else " $\\pm$ "
                v += pm + _fmt(sd, m)
            lo, hi = r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high")
            if lo is not None and not pd.isna(lo):
                v += f" [{_fmt(lo, m)}, {_fmt(hi, m)}]"
            cells.append(v)
        out[title] = cells
    ref = df.loc[df["is_reference"].astype(bool), "experiment"]
    if len(ref):
        out[f"ΔUF1 vs {ref.iloc[0]}"] = [
            "ref." if r["is_reference"] else _fmt_diff(r, "uf1") for _, r in df.iterrows()]
    p_title = f"McNemar p (Holm) vs {ref.iloc[0]}" if len(ref) else "McNemar p (Holm)"
    out[p_title] = ["ref." if r["is_reference"] else _fmt_p(r.get("mcnemar_p_holm"))
                    for _, r in df.iterrows()]
    return out


def _fmt_diff(r, m: str) -> str:
    d = r.get(f"{m}_diff")
    if d is None or pd.isna(d):
        return ""
    lo, hi = r.get(f"{m}_diff_ci_low"), r.get(f"{m}_diff_ci_high")
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
    rows = [r for _, r in df.iterrows() if not r["is_reference"]]
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


def to_markdown(df: pd.DataFrame) -> str:
    """A numeric table (:func:`build_table`) as a GitHub Markdown table, best values bold."""
    shown = display_table(df, bold="md")
    cols = list(shown.columns)
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join([":---", ":---"] + ["---:"] * (len(cols) - 2)) + "|"]
    for _, r in shown.iterrows():
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

    def cell(c, v):
        if c in (t for _, t in METRIC_COLUMNS):
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
# Header, writers, README
# ----------------------------------------------------------------------------------------------
def header_lines(dataset: Mapping, train, n_boot: int, ci: float,
                 best_spotter: str | None = None, reference: str | None = None,
                 mcnemar_seed: int | None = None, n_subjects: int | None = None,
                 calibration: Mapping | None = None, machine: Sequence[str] = (),
                 n_tests: int | None = None) -> list[str]:
    """The facts every table is printed with (Markdown bullet lines), including how every
    choice the table depends on was made.

    Args:
        dataset: ``data/dataset.json`` content (description, synthetic, protocol, labels,
            n_clips, n_excluded).
        train: ``config.TrainConfig`` (or a mapping with seeds/seed+n_seeds, epochs,
            image_size, lr, batch_size, schedule, optimizer, augment, pretrained).
        n_boot, ci: bootstrap settings (the intervals resample subjects).
        best_spotter: how the spotted apex was chosen per fold (:func:`spotter_summary`).
        reference: the experiment every row is compared with.
        mcnemar_seed: the seed McNemar was computed on.
        n_subjects: LOSO folds (= subjects resampled by the bootstrap).
        calibration: ``reports/calibration.json`` (``benchmarks/calibrate.py``), or None.
        machine: :func:`machine_lines` of the runs behind the table.
        n_tests: McNemar tests per table (Holm family), for the text.
    """
    def get(k, default=None):
        return train.get(k, default) if isinstance(train, Mapping) else getattr(train, k, default)

    seeds = get("seeds")
    if seeds is None:
        seeds = list(range(int(get("seed", 0)), int(get("seed", 0)) + int(get("n_seeds", 1))))
    pretrained = str(get("pretrained", "") or "")
    weights = ("random initialisation (no pretrained weights)" if not pretrained
               else f"initialised from `{pretrained}`")
    synthetic = bool(dataset.get("synthetic"))
    desc = dataset.get("description") or dataset.get("dataset", "unknown dataset")
    kind = ("**SYNTHETIC** data: these numbers are not CASME II results and not the paper's"
            if synthetic else f"real data ({dataset.get('dataset', '?')})")
    folds = f", {n_subjects} folds" if n_subjects else ""
    subjects = f"the {n_subjects} test subjects" if n_subjects else "the test subjects"
    seed_text = (f"seeds {', '.join(map(str, seeds))} (cells: mean ± sd over seeds)"
                 if len(seeds) > 1 else f"seed {seeds[0]}")
    lines = [
        f"- **Dataset:** {desc} ({kind}).",
        f"- **Protocol:** {dataset.get('protocol', '?')}, classes "
        f"{', '.join(dataset.get('labels', []))}; {dataset.get('n_clips', '?')} clips "
        f"({dataset.get('n_excluded', 0)} excluded); leave-one-subject-out{folds}.",
        f"- **Training:** {seed_text}; {get('epochs', '?')} epochs (fixed budget, no epoch "
        f"chosen on any test subject); input {get('image_size', '?')} px; {weights}.",
        recipe_line(train, calibration, synthetic),
        f"- **Metrics:** predictions of all folds pooled, then scored (MEGC convention): "
        f"accuracy in %, UF1 = macro F1, UAR = macro recall; [low, high] = {round(100 * ci)} % "
        f"percentile interval of a subject-level bootstrap ({n_boot} resamples of {subjects}, "
        f"each with all its clips: clips of one subject are not independent); Δ = paired "
        f"difference to the reference row with its interval from the same resamples; best "
        f"experiment value per column in bold.",
    ]
    if reference:
        on = f" on seed {mcnemar_seed}" if mcnemar_seed is not None else ""
        family = (f" over each table's tests (Table 4: {n_tests})" if n_tests
                  else " over each table's tests")
        lines.append(f"- **Significance:** McNemar's exact test of each row against "
                     f"`{reference}`{on} (same clips), p Holm-adjusted{family}.")
    if best_spotter:
        smooth = ""
        if calibration and calibration.get("spotters"):
            smooth = (f"; the spotters' smoothing window ({calibration['spotters']['chosen_smooth']}"
                      f" frames) was chosen on the calibration population")
        lines.append(f"- **Spotted apex:** for each fold, the spotter with the lowest apex error "
                     f"on that fold's TRAINING subjects (never the test subject's annotation): "
                     f"{best_spotter}{smooth}.")
    lines += [f"- {m}" for m in machine]
    lines.append(f"- {PAPER_NOTE}")
    return lines


RECIPE_KEYS = ("lr", "epochs", "image_size", "batch_size", "optimizer", "schedule", "augment",
               "weight_decay", "precision")


def recipe_line(train, calibration: Mapping | None, synthetic: bool) -> str:
    """How the training recipe was chosen, generated from ``reports/calibration.json``."""
    def get(k):
        return train.get(k) if isinstance(train, Mapping) else getattr(train, k, None)

    recipe = ", ".join(f"{k} {get(k)}" for k in RECIPE_KEYS if get(k) is not None)
    if not calibration:
        return (f"- **Recipe:** {recipe}; no calibration record (`reports/calibration.json`) "
                f"was found, so how it was chosen is not documented here.")
    pop = calibration["population"]
    chosen = calibration["recipe"]["chosen"]
    differs = [f"{k} {get(k)} (calibration chose {v})" for k, v in chosen.items()
               if get(k) is not None and float(get(k)) != float(v)]
    where = (f"a separate calibration population ({pop['description']}; seed "
             f"{pop['synthetic_seed']}, never reported) by `benchmarks/calibrate.py` "
             f"({calibration['date']}; `reports/calibration.md`)")
    text = f"- **Recipe:** {recipe}. Learning rate and epochs were chosen on {where}"
    text += "; the other values were fixed before it (listed there)."
    if not synthetic:
        text += (" On this real dataset no value was tuned on its subjects: the recipe is the "
                 "synthetic calibration's.")
    if differs:
        text += " **This run departs from the calibrated recipe:** " + "; ".join(differs) + "."
    return text


def machine_lines(info: pd.DataFrame) -> list[str]:
    """Where the runs behind a table were made (device, CPU or GPU model, precision, threads
    per fold), from ``run.json``: one line when every experiment agrees."""
    cols = ["device", "device_name", "precision", "threads"]
    if info.empty or not set(cols) <= set(info.columns):
        return []
    known = info.dropna(subset=["device"])
    if known.empty:
        return []
    groups = known.groupby(cols, dropna=False)["experiment"].apply(list)
    out = []
    for (device, name, precision, threads), names in groups.items():
        who = "all experiments" if len(groups) == 1 else ", ".join(f"`{n}`" for n in names)
        t = ("threads unknown" if pd.isna(threads)
             else f"{int(threads)} thread{'s' * (int(threads) != 1)} per fold")
        name = "model unknown" if pd.isna(name) or not name else name
        out.append(f"**Run on:** {device} ({name}), {precision}, {t} "
                   f"({who}).")
    return out


def tables_markdown(tables: Mapping[str, pd.DataFrame], level: int = 3) -> str:
    """Every table under its own heading."""
    parts = []
    for name, df in tables.items():
        text = verdict(df)
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


def notebook_links(reports_dir: str | Path = "reports", relative_to: str | Path = ".") -> list[str]:
    """Markdown links to the rendered notebooks: the five stages' ``reports/<name>.html`` and
    any other ``*.html`` already in ``reports_dir`` (e.g. per-experiment training reports)."""
    reports_dir = Path(reports_dir)
    base = Path(relative_to)
    per_experiment = sorted(p.stem for p in reports_dir.glob("*.html") if p.stem not in NOTEBOOKS)
    # dvc.yaml renders 02_train_loso once per experiment (02_train_loso_<name>.html)
    names = [n for n in NOTEBOOKS if not (n == "02_train_loso" and any(
        e.startswith("02_train_loso_") for e in per_experiment))] + per_experiment
    links = []
    for n in names:
        target = Path(reports_dir / f"{n}.html")
        try:
            target = target.relative_to(base)
        except ValueError:
            pass
        links.append(f"[{n}]({target.as_posix()})")
    return links


def results_markdown(header: Sequence[str], tables: Mapping[str, pd.DataFrame],
                     figures: Sequence[tuple[str, str]] = (), measured: Sequence[str] = (),
                     links: Sequence[str] = (), extra: str = "") -> str:
    """The README results section (paths relative to the repository root)."""
    parts = ["*Generated by `notebooks/04_table4.ipynb` from `reports/`; do not edit by hand.*",
             "", *header, ""]
    if measured:
        parts += ["**Measured on this run:**", "", *measured, ""]
    parts.append(tables_markdown(tables, 3))
    if extra:
        parts += [extra, ""]
    for title, path in figures:
        parts += [f"![{title}]({path})", ""]
    if links:
        parts += ["Rendered notebooks: " + " · ".join(links), ""]
    return "\n".join(parts).rstrip() + "\n"


def write_readme_section(readme_path: str | Path, results_md: str) -> bool:
    """Replace the text between ``<!-- results:start -->`` and ``<!-- results:end -->``.

    Returns:
        True if the README changed (it is not rewritten when the section is already current).

    Raises:
        FileNotFoundError: no README.
        ValueError: a marker is missing, repeated or out of order.
    """
    path = Path(readme_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: README not found")
    text = path.read_text()
    for mark in (START, END):
        if text.count(mark) != 1:
            raise ValueError(f"{path}: expected the marker {mark!r} exactly once, found "
                             f"{text.count(mark)}")
    i, j = text.index(START), text.index(END)
    if j < i:
        raise ValueError(f"{path}: {END!r} comes before {START!r}")
    new = text[:i + len(START)] + "\n" + results_md.strip("\n") + "\n" + text[j:]
    if new == text:
        return False
    io.write_text(path, new)
    return True


def _given(r, key) -> bool:
    return r.get(key) is not None and not pd.isna(r.get(key))


def measured_lines(info: pd.DataFrame) -> list[str]:
    """Bullet lines of the per-experiment training cost (only what run.json had). With parallel
    fold workers the line leads with the elapsed time and gives the summed fold time after it."""
    lines, total, any_parallel = [], 0.0, False
    known = info[info["wall_s"].notna()]
    for _, r in known.iterrows():
        par = _given(r, "workers") and int(r["workers"]) > 1 and _given(r, "elapsed_s")
        extra = []
        if par:
            extra.append(f"{int(r['workers'])} fold workers in parallel, "
                         f"{r['wall_s'] / 60:.1f} min of fold time")
        if _given(r, "n_folds"):
            extra.append(f"{int(r['n_folds'])} folds")
        if _given(r, "mean_fold_s"):
            extra.append(f"{r['mean_fold_s']:.0f} s per fold")
        if _given(r, "train_images_per_s"):
            extra.append(f"{r['train_images_per_s']:.0f} training images/s"
                         + " per worker" * par)
        dev = " ".join(str(r[k]) for k in ("device", "precision") if _given(r, k))
        if dev and _given(r, "threads"):
            n = int(r["threads"])
            dev += f", {n} thread{'s' * (n != 1)}" + " each" * par
        if dev:
            extra.append(dev)
        took_s = float(r["elapsed_s"] if par else r["wall_s"])
        total += took_s
        any_parallel |= par
        tail = f" ({'; '.join(extra)})" if extra else ""
        lines.append(f"- `{r['experiment']}`: training {took_s / 60:.1f} min"
                     f"{' elapsed' * par}{tail}")
    if len(known) > 1:
        lines.append(f"- all experiments: {total / 60:.1f} min of training"
                     + " (elapsed)" * any_parallel)
    return lines


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def plot_table_bars(df: pd.DataFrame, path: str | Path | None = None, dpi: int = 80):
    """Grouped bars (accuracy, UF1, UAR) with bootstrap intervals, one group per row."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(df) + 2), 3.6))
    x = np.arange(len(df))
    w = 0.26
    for j, (m, title) in enumerate(METRIC_COLUMNS):
        v = df[m].astype(float).to_numpy()
        lo = df[f"{m}_ci_low"].astype(float).to_numpy()
        hi = df[f"{m}_ci_high"].astype(float).to_numpy()
        err = np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)])
        ax.bar(x + (j - 1) * w, v, w, yerr=err, capsize=3,
               label=title.replace(" (%)", ""), alpha=0.9)
    ax.set_xticks(x)
    ax.set_xticklabels([str(r).replace(" (", "\n(") for r in df["row"]], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (fraction)")
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.set_title("Table 4: frame strategy (intervals: bootstrap over clips)", fontsize=10)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def select_cam_examples(cams: pd.DataFrame, labels: Sequence[str], per_class: int = 3
                        ) -> pd.DataFrame:
    """Up to ``per_class`` clips per true class, correctly classified ones first, then by id."""
    if cams.empty:
        return cams
    df = cams.assign(correct=cams["y_true"] == cams["y_pred"])
    df = df.sort_values(["correct", "sample_id"], ascending=[False, True])
    parts = [df[df["y_true"] == c].head(per_class) for c in labels]
    return pd.concat(parts, ignore_index=True) if parts else df.head(0)


def plot_gradcam(examples: pd.DataFrame, frames: np.ndarray, index_ids: Sequence[str],
                 labels: Sequence[str], path: str | Path | None = None, dpi: int = 80):
    """Class-activation maps over their frames: a row per class, ``per_class`` columns.

    Args:
        examples: from :func:`select_cam_examples`.
        frames: the frame cache (N x S x S x 3 uint8) of the reference experiment's strategy.
        index_ids: ``sample_id`` of each cache row (``data/index.csv`` order).
    """
    import matplotlib.pyplot as plt

    row_of = {str(s): i for i, s in enumerate(index_ids)}
    labels = list(labels)
    ncols = max(1, int(examples.groupby("y_true").size().max()) if len(examples) else 1)
    fig, axes = plt.subplots(len(labels), ncols, figsize=(1.9 * ncols, 1.9 * len(labels)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, c in enumerate(labels):
        ex = examples[examples["y_true"] == c]
        axes[r, 0].set_title(c, fontsize=9, loc="left")
        for j, (_, e) in enumerate(ex.iterrows()):
            if e["sample_id"] not in row_of:
                raise ValueError(f"cams: {e['sample_id']!r} is not in the frame cache's index")
            img = frames[row_of[e["sample_id"]]]
            s = img.shape[0]
            cam = np.asarray(e["cam"], dtype=np.float32)
            span = float(cam.max() - cam.min())
            cam = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
            ax = axes[r, j]
            ax.imshow(img, extent=(0, s, s, 0))
            ax.imshow(cam, cmap="jet", alpha=0.45, extent=(0, s, s, 0), interpolation="bilinear",
                      vmin=0, vmax=1)
            mark = "ok" if e["y_pred"] == c else f"-> {e['y_pred']}"
            ax.text(1, s - 2, mark, color="white", fontsize=7,
                    bbox=dict(facecolor="black", alpha=0.5, pad=1, lw=0))
    fig.suptitle("Grad-CAM over apex frames (row = true class; 'ok' = correct)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def plot_confusions(mats: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
                    path: str | Path | None = None, dpi: int = 80):
    """Counts and row-normalised confusion matrices, one row of two panels per experiment."""
    import matplotlib.pyplot as plt

    n = len(mats)
    fig, axes = plt.subplots(n, 2, figsize=(8.4, 3.6 * n), squeeze=False)
    for r, (name, (counts, norm)) in enumerate(mats.items()):
        for c, (mat, fmt, title) in enumerate(((counts, "d", "counts"),
                                               (norm, ".2f", "row-normalised"))):
            ax = axes[r, c]
            v = mat.to_numpy()
            ax.imshow(v, cmap="Blues", vmin=0, vmax=max(1e-9, v.max()) if c == 0 else 1)
            k = len(mat)
            ax.set_xticks(range(k))
            ax.set_xticklabels(mat.columns, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(k))
            ax.set_yticklabels(mat.index, fontsize=7)
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(v[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if v[i, j] > 0.6 * v.max() else "black")
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("actual", fontsize=8)
            ax.set_title(f"{name}: {title}", fontsize=9)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def plot_grouped(df: pd.DataFrame, x: str, y: str, hue: str, title: str,
                 path: str | Path | None = None, dpi: int = 80, ylabel: str | None = None):
    """Grouped bars of ``y`` by ``x`` (groups) and ``hue`` (bars), long-format ``df``."""
    import matplotlib.pyplot as plt

    wide = df.pivot_table(index=x, columns=hue, values=y, sort=False)
    width = min(14, max(6, 0.3 * len(wide) * max(1, wide.shape[1]) + 2))
    fig, ax = plt.subplots(figsize=(width, 3.6))
    wide.plot.bar(ax=ax, width=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=min(6, wide.shape[1]), loc="upper center",
              bbox_to_anchor=(0.5, -0.22), frameon=False)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    if path is not None:
        _save(fig, path, dpi)
    return fig


def _save(fig, path, dpi):
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mer_core.report",
                                     description="Report utilities of the MER companion.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("readme", help="copy reports/results.md into README.md between markers")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--results", default="reports/results.md")
    args = parser.parse_args(argv)
    if args.command == "readme":
        results = Path(args.results)
        if not results.is_file():
            print(f"{results}: not found (run notebooks/04_table4.ipynb first)", file=sys.stderr)
            return 1
        try:
            changed = write_readme_section(args.readme, results.read_text())
        except (ValueError, FileNotFoundError) as e:
            print(e, file=sys.stderr)
            return 1
        print(f"{args.readme}: results section {'updated' if changed else 'already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
