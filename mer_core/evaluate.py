"""The evaluate stage: every experiment's numbers in ``reports/metrics.json``, and what
``notebooks/03_evaluate.ipynb`` shows of them.

Writes ``reports/metrics.json`` (DVC metrics: pooled metrics of :mod:`mer_core.metrics`, the
subject-bootstrap intervals and paired differences of :mod:`mer_core.stats`) and
``reports/plots/confusion_<experiment>.csv`` (DVC plots); builds the notebook's coverage,
confusion, per-class and per-subject tables and figures. The leakage check is
:mod:`mer_core.leakage`.

On a composite (clips of several datasets, MEGC 2019) the headline numbers pool every clip (the
composite score) and each entry gains a ``per_dataset`` block: every dataset's clips scored alone
(:func:`mer_core.stats.per_dataset`), shown by :func:`per_dataset_table`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mer_core import handover, io, vocab
from mer_core.charts import plot_grouped, save_figure
from mer_core.handover import PREDICTIONS_CSV, check_predictions, read_predictions
from mer_core.metrics import (HEADLINE, compute, confusion_frame, fold_average, per_subject_accuracy,
                              seed_summary)
from mer_core.stats import bootstrap_ci, per_dataset, subject_bootstrap


# ----------------------------------------------------------------------------------------------
# metrics.json and the DVC plots
# ----------------------------------------------------------------------------------------------
def evaluate_predictions(pred_df: pd.DataFrame, labels: Sequence[str], n_boot: int = 1000,
                         ci: float = 0.95, seed: int = 0) -> dict:
    """All numbers of one experiment: headline (mean over seeds), std, fold averages, and the
    clip-level bootstrap interval (``<m>_clip_ci_*``, for contrast only).

    Returns:
        ``{accuracy, uf1, uar, weighted_f1, <m>_clip_ci_low, <m>_clip_ci_high, <m>_std,
        fold_avg_*, n_folds, f1_<class>, recall_<class>, n, n_subjects, n_seeds, seeds}``;
        ``n`` counts clips (not clip x seed); ``seeds`` is a comma-separated string;
        ``<m>_std`` (sample std over seeds) is None for a single seed. The headline intervals
        (subject bootstrap) come from :func:`evaluate_experiments`.
    """
    labels = list(labels)
    check_predictions(pred_df)
    seeds = sorted(int(s) for s in pred_df["seed"].unique())
    per = {s: g.sort_values("sample_id") for s, g in pred_df.groupby("seed", sort=True)}
    scores = [compute(g["y_true"], g["y_pred"], labels) for g in per.values()]
    out: dict = {}
    for k in scores[0]:
        if k == "n":
            continue
        vals = np.array([s[k] for s in scores], dtype=float)
        out[k] = None if np.isnan(vals).all() else float(np.nanmean(vals))
    first = per[seeds[0]]
    y_pred = np.stack([g["y_pred"].to_numpy(dtype=object) for g in per.values()])
    for m, (lo, hi) in bootstrap_ci(first["y_true"].to_numpy(dtype=object), y_pred, labels,
                                    n=n_boot, ci=ci, seed=seed,
                                    metrics=HEADLINE).items():
        out[f"{m}_clip_ci_low"], out[f"{m}_clip_ci_high"] = lo, hi
    summary = seed_summary(pred_df, labels)
    for m in HEADLINE:
        sd = summary.loc[m, "std"]
        out[f"{m}_std"] = None if pd.isna(sd) else float(sd)
    folds = [fold_average(g["y_true"], g["y_pred"], g["subject"], labels) for g in per.values()]
    for k in ("fold_avg_accuracy", "fold_avg_uf1", "fold_avg_uar"):
        out[k] = float(np.mean([f[k] for f in folds]))
    out["n_folds"] = folds[0]["n_folds"]
    out["n"] = int(len(first))
    out["n_subjects"] = int(first["subject"].nunique())
    out["n_seeds"] = len(seeds)
    out["seeds"] = ",".join(map(str, seeds))
    return out


def evaluate_experiments(results_dir: str | Path, experiments: Mapping | Sequence[str],
                         labels: Sequence[str], reports_dir: str | Path = "reports",
                         n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                         reference: str | None = None, progress: bool = True,
                         baselines: Sequence[str] = (),
                         baselines_dir: str | Path | None = None) -> dict:
    """Score every experiment and baseline and write the DVC metrics and plots files.

    Writes (atomically):

    * ``<reports_dir>/metrics.json``: ``{experiment: evaluate_predictions(...) + frames,
      backbone, loss + the subject-bootstrap intervals m_ci_low/high and, against
      ``reference``, the paired differences m_diff, m_diff_ci_low/high (see
      :func:`subject_bootstrap`) + n_bootstrap, ci_level, ci_unit, diff_reference}`` (DVC
      metrics, so ``dvc metrics diff`` compares runs); every entry has ``kind`` (experiment
      or baseline; a baseline's frames, backbone and loss are "" and ``display`` names it)
      and, when there are baselines, ``best_baseline`` (the one with the highest pooled UF1)
      with the paired differences to it: m_diff_baseline, m_diff_baseline_ci_low/high;
      when the clips come from several datasets (a composite: the headline then pools them
      all, the MEGC 2019 composite score), ``per_dataset``: ``{dataset: {m, m_std, m_ci_low,
      m_ci_high, m_diff, m_diff_ci_low/high, n, n_subjects}}`` of that dataset's clips alone,
      its intervals resampling that dataset's subjects (:func:`mer_core.stats.per_dataset`;
      no such key for one dataset);
    * ``<reports_dir>/plots/confusion_<experiment>.csv``: columns ``actual, predicted``, one row
      per clip of the smallest seed (DVC plots, ``template: confusion``).

    Args:
        results_dir: holds ``<experiment>/predictions.csv``.
        experiments: experiment names, or a mapping name -> config with ``frames``,
            ``backbone``, ``loss`` attributes (``mer_core.config.ExperimentConfig``) or keys.
        labels: the protocol's classes (``data/dataset.json`` "labels").
        reports_dir: output folder.
        n_boot, ci, seed: bootstrap settings.
        reference: the experiment every other one is compared with (None: the first; a name
            that was not run raises).
        baselines: baseline names (:data:`mer_core.vocab.BASELINES`), read from
            ``<baselines_dir>/<name>/predictions.csv``; they must cover the experiments' clips.
        baselines_dir: their folder (default ``<results_dir>/baselines``).

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        FileNotFoundError: an experiment has no predictions.
        ValueError: an unknown reference, or experiments that predict different clips.
    """
    from tqdm import tqdm

    results_dir, reports_dir = Path(results_dir), Path(reports_dir)
    names = list(experiments)
    if reference is not None and reference not in names:
        raise ValueError(f"evaluate.reference {reference!r} is not an experiment "
                         f"({', '.join(names)})")
    reference = reference or names[0]
    base_names = list(baselines)
    clash = set(base_names) & set(names)
    if clash:
        raise ValueError(f"{sorted(clash)}: both an experiment and a baseline")
    baselines_dir = Path(baselines_dir) if baselines_dir is not None else results_dir / "baselines"
    out, preds = {}, {}
    for name in tqdm(names + base_names, desc="evaluate", disable=not progress):
        src = (results_dir if name in names else baselines_dir) / name
        pred = read_predictions(src / PREDICTIONS_CSV)
        preds[name] = pred
        m = evaluate_predictions(pred, labels, n_boot=n_boot, ci=ci, seed=seed)
        if name in base_names:
            m.update(kind="baseline", frames="", backbone="", loss="",
                     display=vocab.BASELINES[name])
        else:
            m["kind"] = "experiment"
        if name in names and isinstance(experiments, Mapping):
            spec = experiments[name]
            for key in ("frames", "backbone", "loss"):
                m[key] = spec[key] if isinstance(spec, Mapping) else getattr(spec, key)
        out[name] = m
        first = pred[pred["seed"] == pred["seed"].min()].sort_values("sample_id")
        io.write_csv(reports_dir / "plots" / f"confusion_{name}.csv",
                     pd.DataFrame({"actual": first["y_true"].to_numpy(),
                                   "predicted": first["y_pred"].to_numpy()}))
    boot = subject_bootstrap(preds, labels, n=n_boot, ci=ci, seed=seed, reference=reference,
                             metrics=HEADLINE)
    # The strongest baseline by pooled UF1 on these same subjects: a choice in the baselines'
    # favour, made on the reported subjects (the paired interval does not account for it).
    best = max(base_names, key=lambda b: out[b]["uf1"]) if base_names else None
    vs_best = subject_bootstrap(preds, labels, n=n_boot, ci=ci, seed=seed, reference=best,
                                metrics=HEADLINE) if best else {}
    by_dataset = per_dataset(preds, labels, n=n_boot, ci=ci, seed=seed, reference=reference,
                             metrics=HEADLINE)
    for name in names + base_names:
        out[name].update(boot[name])
        out[name].update(n_bootstrap=int(n_boot), ci_level=float(ci), ci_unit="subject",
                         bootstrap_seed=int(seed), diff_reference=reference)
        if best:
            out[name]["best_baseline"] = best
            out[name].update({k.replace("_diff", "_diff_baseline"): v
                              for k, v in vs_best[name].items() if "_diff" in k})
        if by_dataset:
            out[name]["per_dataset"] = by_dataset[name]
        out[name] = _json_safe(out[name])
    handover.write_metrics(reports_dir, out)
    return out


def _json_safe(d: dict) -> dict:
    """NaN -> None, also in nested dicts (``io.write_json`` refuses NaN, and JSON has none)."""
    return {k: _json_safe(v) if isinstance(v, dict)
            else None if isinstance(v, float) and np.isnan(v) else v for k, v in d.items()}


# ----------------------------------------------------------------------------------------------
# What the notebook shows
# ----------------------------------------------------------------------------------------------
def summary_columns(summary: pd.DataFrame) -> list[str]:
    """The columns of ``metrics.json`` worth a first look, in reading order."""
    cols = ["frames", "backbone", "loss", "n", "n_subjects", "n_seeds"]
    for m in HEADLINE:
        cols += [m] + [f"{m}{s}" for s in ("_ci_low", "_ci_high", "_clip_ci_low", "_clip_ci_high",
                                           "_std", "_diff", "_diff_ci_low", "_diff_ci_high")]
    return [c for c in cols if c in summary.columns]


def per_dataset_table(metric_map: Mapping[str, Mapping], parts: Mapping | None = None,
                      metrics: Sequence[str] = ("uf1", "uar")) -> pd.DataFrame:
    """UF1 and UAR of every row per dataset next to the composite (all clips pooled), long
    format, from ``metrics.json``'s ``per_dataset`` blocks.

    Args:
        metric_map: ``metrics.json`` content.
        parts: ``data/dataset.json``'s ``parts`` (dataset -> ``{"name", ...}``): the order and
            display names of the datasets; None: the order of ``metrics.json``, the dataset
            values as names.
        metrics: which metrics (each with its interval).

    Returns:
        Columns experiment, dataset (the part's name; "Composite" for the pooled score), n,
        n_subjects, and m, m_ci_low, m_ci_high per metric: per experiment the composite row,
        then a row per dataset. Empty (no rows) when no entry has a ``per_dataset`` block
        (one dataset).
    """
    cols = ["experiment", "dataset", "n", "n_subjects"]
    for m in metrics:
        cols += [m, f"{m}_ci_low", f"{m}_ci_high"]
    rows = []
    for name, entry in metric_map.items():
        blocks = entry.get("per_dataset") or {}
        if not blocks:
            continue
        order = [d for d in (parts or {}) if d in blocks] + \
            [d for d in blocks if d not in (parts or {})]
        rows.append({**{c: entry.get(c) for c in cols}, "experiment": name,
                     "dataset": "Composite"})
        for d in order:
            part = (parts or {}).get(d) or {}
            shown = part.get("label") or part.get("name") or d
            rows.append({**{c: blocks[d].get(c) for c in cols}, "experiment": name,
                         "dataset": shown})
    return pd.DataFrame(rows, columns=cols)


def coverage(predictions: Mapping[str, pd.DataFrame], n_index: int) -> pd.DataFrame:
    """Clips, subjects and seeds each experiment predicts, next to the index's clip count.

    Args:
        predictions: experiment -> its ``predictions.csv`` table.
        n_index: clips in ``data/index.csv``.

    Returns:
        One row per experiment: clips predicted, clips in index, subjects, seeds.
    """
    return pd.DataFrame({
        name: {"clips predicted": p["sample_id"].nunique(), "clips in index": n_index,
               "subjects": p["subject"].nunique(), "seeds": p["seed"].nunique()}
        for name, p in predictions.items()}).T


def confusions(predictions: Mapping[str, pd.DataFrame], labels: Sequence[str]
               ) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Confusion matrices of each experiment's smallest seed (the data of the DVC plots).

    Args:
        predictions: experiment -> its ``predictions.csv`` table.
        labels: the protocol's classes.

    Returns:
        experiment -> (counts, row-normalised), as :func:`plot_confusions` takes them.
    """
    mats = {}
    for name, p in predictions.items():
        first = p[p["seed"] == p["seed"].min()]
        mats[name] = (confusion_frame(first["y_true"], first["y_pred"], labels),
                      confusion_frame(first["y_true"], first["y_pred"], labels, normalize=True))
    return mats


def per_class_f1(metric_map: Mapping[str, Mapping], labels: Sequence[str]) -> pd.DataFrame:
    """Pooled F1 of every class and experiment, long format (experiment, class, F1).

    Args:
        metric_map: ``metrics.json`` content (its ``f1_<class>`` entries).
        labels: the protocol's classes.
    """
    return pd.DataFrame([{"experiment": n, "class": c, "F1": m[f"f1_{c}"]}
                         for n, m in metric_map.items() for c in labels])


def per_subject(predictions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`mer_core.metrics.per_subject_accuracy` of every experiment, one below the other,
    with an ``experiment`` column."""
    return pd.concat([per_subject_accuracy(p).assign(experiment=n)
                      for n, p in predictions.items()], ignore_index=True)


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
        save_figure(fig, path, dpi)
    return fig


def plot_per_class_f1(per_class: pd.DataFrame, path: str | Path | None = None, dpi: int = 80):
    """Bars of :func:`per_class_f1`: a group per class, a bar per experiment.

    Returns:
        The Matplotlib figure (saved to ``path`` unless None).
    """
    return plot_grouped(per_class, x="class", y="F1", hue="experiment",
                        title="Per-class F1 (pooled)", path=path, dpi=dpi)


def plot_per_subject(per_subject_df: pd.DataFrame, path: str | Path | None = None,
                     dpi: int = 80):
    """Bars of :func:`per_subject`: a group per test subject (LOSO fold), a bar per experiment.

    Returns:
        The Matplotlib figure (saved to ``path`` unless None).
    """
    return plot_grouped(per_subject_df, x="subject", y="accuracy", hue="experiment",
                        title="Accuracy per test subject (LOSO fold)", path=path, dpi=dpi,
                        ylabel="accuracy")


__all__ = ["evaluate_predictions", "evaluate_experiments", "summary_columns",
           "per_dataset_table", "coverage",
           "confusions", "per_class_f1", "per_subject", "plot_confusions", "plot_per_class_f1",
           "plot_per_subject"]
