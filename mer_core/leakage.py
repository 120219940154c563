"""Leakage check: how much choosing each fold's epoch on its test subject inflates the scores.

Choosing each fold's epoch by its own test score is an INVALID protocol (the test subject selects
the model); some published codebases do it. The evaluate stage (``notebooks/03_evaluate.ipynb``)
puts it next to the valid fixed-budget score, from ``results/<experiment>/epoch_log.csv`` and
``epoch_predictions.csv``, and writes ``reports/leakage.csv``. Its numbers are never results.

With ``train.select`` the valid protocol's epoch of each (seed, fold) is the one its nested
cross-validation chose inside the training subjects (``results/<experiment>/selection.csv``).

The classical baselines get the same check for their one choice, the regularisation C: the C
each fold chose inside its training subjects (valid) next to the C that its test subject scores
best with (INVALID), from ``results/baselines/<name>/choices.csv`` and ``grid_predictions.csv``
(:func:`baseline_grid_log` turns the C grid into an epoch log: "epoch" k = the k-th smallest C).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mer_core import handover
from mer_core.baselines import read_choices
from mer_core.charts import plot_grouped
from mer_core.metrics import compute

#: The columns of an epoch log (:data:`mer_core.handover.EPOCH_COLUMNS`) this check reads.
NEEDED_COLUMNS = ("seed", "fold", "epoch", "test_accuracy", "test_uf1", "test_uar")


def leakage_folds(epoch_log: pd.DataFrame, n_test: Mapping[str, int] | None = None,
                  select: str = "test_accuracy",
                  fixed_epoch: int | Mapping | None = None) -> pd.DataFrame:
    """Per (seed, fold): the fixed-budget epoch next to the epoch chosen on the test subject.

    Choosing each fold's epoch by its own test score is an INVALID protocol (the test subject
    selects the model); some published codebases do it. This table measures how much it
    inflates the scores.

    Args:
        epoch_log: ``epoch_log.csv`` (seed, fold, epoch, test_accuracy, test_uf1, test_uar;
            an ``n_test`` column, as ``mer_core.loso`` writes, gives the fold sizes).
        n_test: test clips per fold (subject); default: the log's ``n_test`` column if any.
        select: the column maximised to pick the "best" epoch (ties: the earliest epoch).
        fixed_epoch: the valid protocol's epoch: one for every fold, a mapping fold -> epoch,
            or a mapping (seed, fold) -> epoch (e.g. the epochs chosen by the nested
            cross-validation, :func:`selected_epochs`); default: each fold's last logged epoch.

    Returns:
        One row per (seed, fold): ``n_test``, ``fixed_epoch``, ``fixed_<m>``, ``best_epoch``,
        ``best_<m>`` for m in accuracy, uf1, uar.
    """
    missing = [c for c in NEEDED_COLUMNS if c not in epoch_log.columns]
    if missing:
        raise ValueError(f"epoch_log: missing column(s) {missing}; expected {list(NEEDED_COLUMNS)}")
    if select not in epoch_log.columns:
        raise ValueError(f"epoch_log: no column {select!r} to select the best epoch by")
    if epoch_log.empty:
        raise ValueError("epoch_log: no rows")
    log = epoch_log.assign(fold=epoch_log["fold"].astype(str))
    rows = []
    for (seed, fold), g in log.groupby(["seed", "fold"], sort=True):
        g = g.sort_values("epoch")
        if fixed_epoch is None:
            fixed = g.iloc[-1]
        else:
            want = _wanted_epoch(fixed_epoch, int(seed), str(fold))
            hit = g[g["epoch"] == want]
            if hit.empty:
                raise ValueError(f"epoch_log: seed {seed} fold {fold} has no epoch {want}")
            fixed = hit.iloc[0]
        best = g.loc[g[select].idxmax()]
        if n_test is not None:
            size = int(n_test[fold]) if fold in n_test else pd.NA
        elif "n_test" in g.columns:
            size = int(g["n_test"].iloc[-1])
        else:
            size = pd.NA
        row = {"seed": int(seed), "fold": str(fold), "n_test": size,
               "fixed_epoch": int(fixed["epoch"]), "best_epoch": int(best["epoch"])}
        for m in ("accuracy", "uf1", "uar"):
            row[f"fixed_{m}"] = float(fixed[f"test_{m}"])
            row[f"best_{m}"] = float(best[f"test_{m}"])
        rows.append(row)
    return pd.DataFrame(rows)


def _wanted_epoch(fixed_epoch: int | Mapping, seed: int, fold: str) -> int:
    """The valid epoch of (seed, fold): ``fixed_epoch``, or its (seed, fold) or fold entry."""
    if not isinstance(fixed_epoch, Mapping):
        return fixed_epoch
    if (seed, fold) in fixed_epoch:
        return fixed_epoch[(seed, fold)]
    if fold in fixed_epoch:
        return fixed_epoch[fold]
    raise ValueError(f"fixed_epoch: no epoch for seed {seed} fold {fold} (keys are folds or "
                     f"(seed, fold) pairs)")


def selected_epochs(selection: pd.DataFrame) -> dict[tuple[int, str], int]:
    """(seed, fold) -> the epoch the nested cross-validation chose (``selection.csv`` rows with
    ``chosen`` True; exactly one per (seed, fold))."""
    chosen = selection[selection["chosen"].astype(str).str.lower() == "true"]
    keys = list(zip(chosen["seed"].astype(int), chosen["fold"].astype(str)))
    if len(set(keys)) != len(keys):
        raise ValueError("selection.csv: more than one chosen row for some (seed, fold)")
    return dict(zip(keys, chosen["epoch"].astype(int)))


def leakage_table(epoch_log: pd.DataFrame, n_test: Mapping[str, int] | None = None,
                  select: str = "test_accuracy",
                  fixed_epoch: int | Mapping | None = None,
                  epoch_predictions: pd.DataFrame | None = None,
                  labels: Sequence[str] | None = None,
                  protocols: tuple[str, str] = ("fixed epoch budget (valid)",
                                                "best test epoch per fold by {select} (INVALID)")
                  ) -> pd.DataFrame:
    """Fixed-budget score vs the INVALID "best test epoch per fold" score.

    From ``epoch_log`` alone (per-fold test scores):

    * ``pooled_accuracy``: exact, the per-fold accuracies weighted by the fold sizes
      (``n_test`` or the log's ``n_test`` column; without either, an unweighted mean, and
      ``weighted`` is False);
    * ``mean_fold_accuracy``, ``mean_fold_uf1``, ``mean_fold_uar``: means over (seed, fold).

    The pooled UF1/UAR of the best-epoch predictions need the per-epoch predictions: given
    ``epoch_predictions`` (``epoch_predictions.csv``: seed, fold, epoch, sample_id, y_true,
    y_pred) and ``labels``, the columns ``pooled_uf1`` and ``pooled_uar`` are exact (the chosen
    epoch's predictions of every fold pooled, mean over seeds); otherwise they are NaN.

    Args:
        See :func:`leakage_folds`; ``epoch_predictions`` and ``labels`` as above;
        ``protocols``: the names of the valid and the INVALID row (``{select}`` is filled in).

    Returns:
        Two rows, ``protocol`` = "fixed epoch budget (valid)" and "best test epoch per fold
        (INVALID)", plus ``valid`` (bool), ``weighted``, ``n_folds``, ``n_seeds`` (the means run
        over every (seed, fold)); a third row ``inflation (INVALID - valid)`` holds the
        differences.
    """
    folds = leakage_folds(epoch_log, n_test, select, fixed_epoch)
    weighted = bool(folds["n_test"].notna().all())
    w = folds["n_test"].astype(float).to_numpy() if weighted else np.ones(len(folds))
    n_folds, n_seeds = int(folds["fold"].nunique()), int(folds["seed"].nunique())
    pooled = {}
    if epoch_predictions is not None:
        if labels is None:
            raise ValueError("leakage_table: epoch_predictions needs labels")
        ep = epoch_predictions.assign(fold=epoch_predictions["fold"].astype(str))
        for kind in ("fixed", "best"):
            chosen = folds[["seed", "fold", f"{kind}_epoch"]].rename(
                columns={f"{kind}_epoch": "epoch"})
            sel = ep.merge(chosen, on=["seed", "fold", "epoch"], how="inner")
            per_fold = sel.groupby(["seed", "fold"]).size()
            if len(per_fold) != len(folds):
                raise ValueError(f"epoch_predictions: {len(per_fold)} of {len(folds)} (seed, fold) "
                                 f"pairs have predictions at the {kind} epoch")
            scores = [compute(g["y_true"], g["y_pred"], labels)
                      for _, g in sel.groupby("seed", sort=True)]
            pooled[kind] = {m: float(np.mean([x[m] for x in scores])) for m in ("uf1", "uar")}
    rows = []
    for kind, label, valid in (("fixed", protocols[0].format(select=select), True),
                               ("best", protocols[1].format(select=select), False)):
        rows.append({
            "protocol": label, "valid": valid, "weighted": weighted,
            "n_folds": n_folds, "n_seeds": n_seeds,
            "pooled_accuracy": float(np.average(folds[f"{kind}_accuracy"], weights=w)),
            "pooled_uf1": pooled.get(kind, {}).get("uf1", np.nan),
            "pooled_uar": pooled.get(kind, {}).get("uar", np.nan),
            "mean_fold_accuracy": float(folds[f"{kind}_accuracy"].mean()),
            "mean_fold_uf1": float(folds[f"{kind}_uf1"].mean()),
            "mean_fold_uar": float(folds[f"{kind}_uar"].mean()),
            "mean_epoch": float(folds[f"{kind}_epoch"].mean()),
        })
    diff = {"protocol": "inflation (INVALID - valid)", "valid": False,
            "weighted": weighted, "n_folds": n_folds, "n_seeds": n_seeds}
    for c in ("pooled_accuracy", "pooled_uf1", "pooled_uar", "mean_fold_accuracy",
              "mean_fold_uf1", "mean_fold_uar", "mean_epoch"):
        diff[c] = rows[1][c] - rows[0][c]
    rows.append(diff)
    return pd.DataFrame(rows)


def baseline_grid_log(choices: pd.DataFrame, grid: pd.DataFrame, labels: Sequence[str]
                      ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """A baseline's C grid as an epoch log: "epoch" k is the k-th smallest C.

    Args:
        choices: ``choices.csv`` (``subject``, ``C``: the C each fold chose).
        grid: ``grid_predictions.csv`` (seed, fold, C, sample_id, y_true, y_pred).
        labels: the protocol's classes.

    Returns:
        ``(epoch_log, epoch_predictions, chosen)`` for :func:`leakage_table`: per (seed, fold,
        C) the test accuracy, UF1, UAR and ``n_test``; the grid with its ``epoch``; and fold ->
        the epoch of the C it chose.
    """
    rank = {c: k + 1 for k, c in enumerate(sorted(grid["C"].unique()))}
    ep = grid.assign(fold=grid["fold"].astype(str), epoch=grid["C"].map(rank))
    rows = []
    for (seed, fold, epoch), g in ep.groupby(["seed", "fold", "epoch"], sort=True):
        m = compute(g["y_true"], g["y_pred"], labels)
        rows.append({"seed": seed, "fold": fold, "epoch": epoch, "test_accuracy": m["accuracy"],
                     "test_uf1": m["uf1"], "test_uar": m["uar"], "n_test": len(g)})
    chosen = {str(s): rank[c] for s, c in zip(choices["subject"], choices["C"])}
    return pd.DataFrame(rows), ep, chosen


def check_experiments(results_dir: str | Path, predictions: Mapping[str, pd.DataFrame],
                      labels: Sequence[str], baselines_dir: str | Path | None = None
                      ) -> pd.DataFrame | None:
    """:func:`leakage_table` of every experiment that has an ``epoch_log.csv``, and of every
    baseline in ``baselines_dir`` (its C grid, :func:`baseline_grid_log`).

    The fold sizes come from the experiment's predictions (smallest seed); without
    ``epoch_predictions.csv`` the pooled UF1/UAR are NaN. Prints a line for each file missing.

    Args:
        results_dir: holds ``<experiment>/epoch_log.csv`` and ``epoch_predictions.csv``.
        predictions: experiment (or baseline) -> its ``predictions.csv`` table.
        labels: the protocol's classes.
        baselines_dir: holds ``<baseline>/choices.csv`` and ``grid_predictions.csv`` (default
            ``<results_dir>/baselines``).

    Returns:
        The tables one below the other, ``experiment`` first (``reports/leakage.csv``), or None
        when no experiment has an epoch log.
    """
    results_dir = Path(results_dir)
    baselines_dir = Path(baselines_dir) if baselines_dir else results_dir / "baselines"
    leak = []
    for name, p in predictions.items():
        if (baselines_dir / name / handover.CHOICES_CSV).is_file():
            log, ep, chosen = baseline_grid_log(*read_choices(
                baselines_dir / name), labels)
            leak.append(leakage_table(log, fixed_epoch=chosen, epoch_predictions=ep,
                                      labels=labels, protocols=(
                                          "C chosen inside the training subjects (valid)",
                                          "best test C per fold by {select} (INVALID)"))
                        .assign(experiment=name))
            continue
        log, ep = handover.read_merged_epochs(results_dir / name)
        if log is None:
            print(f"{results_dir / name / handover.EPOCH_LOG_CSV}: not found, no leakage check "
                  f"for {name}")
            continue
        n_test = p[p["seed"] == p["seed"].min()].groupby("subject").size().to_dict()
        if ep is None:
            print(f"{results_dir / name / handover.EPOCH_PREDICTIONS_CSV}: not found, pooled "
                  f"UF1/UAR of the leakage check left out for {name}")
        selection = handover.read_selection(results_dir / name)
        extra = {} if selection is None else {
            "fixed_epoch": selected_epochs(selection),
            "protocols": ("epoch chosen inside the training subjects (valid)",
                          "best test epoch per fold by {select} (INVALID)")}
        leak.append(leakage_table(log, n_test, epoch_predictions=ep, labels=labels, **extra)
                    .assign(experiment=name))
    if not leak:
        return None
    leakage = pd.concat(leak, ignore_index=True)
    return leakage[["experiment"] + [c for c in leakage.columns if c != "experiment"]]


def headline_mismatches(leakage: pd.DataFrame, metric_map: Mapping[str, Mapping],
                        tol: float = 1e-6) -> list[str]:
    """Cross-check: the valid row must reproduce the headline accuracy of ``metrics.json``
    (the last epoch's predictions, or with ``train.select`` the chosen epoch's, are
    ``predictions.csv``).

    Args:
        leakage: from :func:`check_experiments`.
        metric_map: ``metrics.json`` content.
        tol: the largest accepted difference.

    Returns:
        A WARNING line per experiment whose two accuracies differ (none when all agree).
    """
    out = []
    for r in leakage[leakage["valid"]].itertuples():
        if abs(r.pooled_accuracy - metric_map[r.experiment]["accuracy"]) > tol:
            out.append(f"WARNING {r.experiment}: the valid epoch's accuracy in epoch_log.csv "
                       f"({r.pooled_accuracy:.4f}) differs from predictions.csv "
                       f"({metric_map[r.experiment]['accuracy']:.4f})")
    return out


def plot_leakage(leakage: pd.DataFrame, path: str | Path | None = None, dpi: int = 80):
    """Valid and INVALID score of every experiment side by side: pooled UF1 where every row has
    it, else pooled accuracy.

    Args:
        leakage: from :func:`check_experiments`.
        path: where to save the figure (None: not saved).
        dpi: resolution.

    Returns:
        The Matplotlib figure.
    """
    wide = leakage[leakage["protocol"] != "inflation (INVALID - valid)"].assign(
        protocol=lambda d: d["valid"].map({True: "chosen without the test subject (valid)",
                                           False: "chosen on the test subject (INVALID)"}))
    y = "pooled_uf1" if wide["pooled_uf1"].notna().all() else "pooled_accuracy"
    return plot_grouped(wide, x="experiment", y=y, hue="protocol",
                        title=f"Leakage check: {y} (orange = INVALID protocol)",
                        path=path, dpi=dpi, ylabel=y)


__all__ = ["baseline_grid_log", "leakage_folds", "leakage_table", "check_experiments",
           "headline_mismatches", "plot_leakage", "selected_epochs", "NEEDED_COLUMNS"]
