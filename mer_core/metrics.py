"""Evaluation of LOSO predictions: pooled metrics, intervals, significance, leakage check.

Conventions (the MEGC convention, used for every headline number of this project):

* **Pooled.** The predictions of all leave-one-subject-out folds are concatenated first and
  scored once. Averaging per-fold scores instead is biased when a test subject lacks whole
  classes (most CASME II subjects do); such numbers exist here only as ``fold_avg_*``.
* **UF1** (unweighted F1) = mean over the classes of ``labels`` of
  ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``. A class that is neither present nor predicted has
  ``0 / 0``, counted as F1 = 0 (scikit-learn ``zero_division=0``); on pooled LOSO predictions
  every class is present, so this only matters for bootstrap resamples and tiny smoke runs.
* **UAR** (unweighted average recall) = mean of ``TP_c / N_c`` over the classes with
  ``N_c > 0`` in ``y_true`` (recall of an absent class is undefined and is left out).
* **Intervals resample subjects.** Clips of one subject share a face, a recording session and
  a fold's model, so they are not independent: :func:`subject_bootstrap` draws subjects with
  replacement and takes all their clips (a cluster bootstrap), scoring every row of a table on
  the SAME resamples, so the interval of a difference between two rows (paired by clip) comes
  from the same draws. :func:`bootstrap_ci` (clips as the unit) is kept to show how much
  narrower, and wrong, the clip-level interval is.
* **Several comparisons.** McNemar p-values of a table are Holm-adjusted (:func:`holm`).

Several seeds: ``predictions.csv`` holds one block of rows per seed. Headline numbers are the
mean over seeds of the per-seed pooled metrics; :func:`seed_summary` gives mean +- std.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import handover, io

HEADLINE = ("accuracy", "uf1", "uar", "weighted_f1")


# ----------------------------------------------------------------------------------------------
# Label encoding and confusion counts
# ----------------------------------------------------------------------------------------------
def encode(values, labels: Sequence[str], what: str = "labels") -> np.ndarray:
    """Class names -> integer codes in the order of ``labels``.

    Raises:
        ValueError: a value is not one of ``labels`` (nothing is dropped silently).
    """
    labels = [str(c) for c in labels]
    values = np.asarray(values, dtype=object).ravel()
    codes = pd.Index(labels).get_indexer(pd.Index(values.astype(str), dtype=object))
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any():
        bad = sorted({str(v) for v, c in zip(values, codes) if c < 0})
        raise ValueError(f"{what}: value(s) {bad[:5]} not in the class list {labels}")
    return codes


def confusion_counts(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """K x K confusion counts (rows = actual, columns = predicted) from integer codes."""
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from confusion counts; ``cm`` is K x K or B x K x K (vectorised over B)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)          # row sums: true count per class
    predicted = cm.sum(axis=-2)        # column sums: predicted count per class
    n = support.sum(axis=-1)
    denom = support + predicted        # = 2TP + FP + FN
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
        present = support > 0
        uar = np.where(present.any(axis=-1),
                       np.nansum(recall, axis=-1) / np.maximum(present.sum(axis=-1), 1), np.nan)
        accuracy = tp.sum(axis=-1) / np.where(n > 0, n, 1)
        weighted_f1 = (f1 * support).sum(axis=-1) / np.where(n > 0, n, 1)
    return {"accuracy": accuracy, "uf1": f1.mean(axis=-1), "uar": uar,
            "weighted_f1": weighted_f1, "f1": f1, "recall": recall, "n": n}


# ----------------------------------------------------------------------------------------------
# Point metrics
# ----------------------------------------------------------------------------------------------
def compute(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Pooled metrics of one set of predictions (see the module docstring for conventions).

    Args:
        y_true: true class names, one per clip (all folds pooled).
        y_pred: predicted class names, aligned with ``y_true``.
        labels: the protocol's classes, in their fixed order.

    Returns:
        ``{"accuracy", "uf1", "uar", "weighted_f1", "f1_<class>", "recall_<class>", "n"}``;
        ``recall_<class>`` is NaN for a class absent from ``y_true``.

    Raises:
        ValueError: lengths differ, no clips, or a name is not in ``labels``.
    """
    labels = list(labels)
    t = encode(y_true, labels, "y_true")
    p = encode(y_pred, labels, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} entries but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("no predictions to score")
    s = _scores(confusion_counts(t, p, len(labels)))
    out = {k: float(s[k]) for k in HEADLINE}
    for i, c in enumerate(labels):
        out[f"f1_{c}"] = float(s["f1"][i])
    for i, c in enumerate(labels):
        out[f"recall_{c}"] = float(s["recall"][i])
    out["n"] = int(len(t))
    return out


def fold_average(y_true, y_pred, groups, labels: Sequence[str]) -> dict:
    """Fold-averaged metrics: the mean over test subjects of per-fold scores.

    NOT the headline metric (see the module docstring); reported to show how much the two
    conventions differ. Within a fold, F1 and recall are macro-averaged over the classes present
    in that fold's ``y_true`` or ``y_pred`` (what ``sklearn.metrics.f1_score(average="macro")``
    does without ``labels=``, the usual per-fold practice).

    Args:
        y_true, y_pred: class names, aligned.
        groups: the fold (test subject) of each clip.
        labels: the protocol's classes.

    Returns:
        ``{"fold_avg_accuracy", "fold_avg_uf1", "fold_avg_uar", "n_folds"}``.
    """
    labels = list(labels)
    t = encode(y_true, labels, "y_true")
    p = encode(y_pred, labels, "y_pred")
    g = np.asarray(groups, dtype=object)
    if not len(t) == len(p) == len(g):
        raise ValueError(f"lengths differ: y_true {len(t)}, y_pred {len(p)}, groups {len(g)}")
    acc, f1s, uars = [], [], []
    for fold in pd.unique(g):
        m = g == fold
        cm = confusion_counts(t[m], p[m], len(labels))
        s = _scores(cm)
        used = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
        acc.append(float(s["accuracy"]))
        f1s.append(float(s["f1"][used].mean()))
        uars.append(float(s["uar"]))
    return {"fold_avg_accuracy": float(np.mean(acc)), "fold_avg_uf1": float(np.mean(f1s)),
            "fold_avg_uar": float(np.mean(uars)), "n_folds": len(acc)}


# ----------------------------------------------------------------------------------------------
# Bootstrap intervals
# ----------------------------------------------------------------------------------------------
def bootstrap_ci(y_true, y_pred, labels: Sequence[str], n: int = 1000, ci: float = 0.95,
                 seed: int = 0, metrics: Iterable[str] = ("accuracy", "uf1", "uar"),
                 chunk: int = 250) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over clips, vectorised with :func:`numpy.bincount`.

    Each resample draws ``len(y_true)`` clips with replacement and scores the pooled
    predictions. With several seeds, pass ``y_pred`` as an S x N array (one row per seed, same
    clip order as ``y_true``): every resample uses the same clips for all seeds and scores the
    mean over seeds, matching the headline number.

    Args:
        y_true: N true class names.
        y_pred: N predicted class names, or S x N (seeds x clips).
        labels: the protocol's classes.
        n: number of resamples.
        ci: coverage of the interval (0.95 -> 2.5th and 97.5th percentiles).
        seed: NumPy seed; same seed, same intervals.
        metrics: which of accuracy, uf1, uar, weighted_f1.
        chunk: resamples scored per step (bounds the memory to chunk x S x N integers).

    Returns:
        ``{metric: (low, high)}``.
    """
    labels = list(labels)
    k = len(labels)
    t = encode(y_true, labels, "y_true")
    pred = np.asarray(y_pred, dtype=object)
    if pred.ndim == 1:
        pred = pred[None, :]
    if pred.ndim != 2 or pred.shape[1] != len(t):
        raise ValueError(f"y_pred must have {len(t)} entries per seed, got shape {pred.shape}")
    if len(t) == 0:
        raise ValueError("no predictions to bootstrap")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    metrics = list(metrics)
    p = encode(pred.ravel(), labels, "y_pred").reshape(pred.shape)
    code = t[None, :] * k + p                          # S x N cell index of each prediction
    s_count, n_clips = code.shape
    rng = np.random.default_rng(seed)
    values = {m: np.empty(n) for m in metrics}
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        idx = rng.integers(0, n_clips, size=(b, n_clips))
        cells = code[:, idx]                           # S x b x N
        offset = (np.arange(s_count)[:, None] * b + np.arange(b)[None, :]) * (k * k)
        flat = (cells + offset[:, :, None]).ravel()
        cm = np.bincount(flat, minlength=s_count * b * k * k).reshape(s_count, b, k, k)
        s = _scores(cm)
        for m in metrics:
            values[m][start:start + b] = np.nanmean(s[m], axis=0) if s_count > 1 else s[m][0]
    alpha = (1 - ci) / 2
    return {m: (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))
            for m, v in values.items()}


def _aligned(predictions: Mapping[str, pd.DataFrame]) -> tuple[list[str], np.ndarray, dict]:
    """Sample ids (sorted), subject of each, and name -> S x N predicted names in that order."""
    names = list(predictions)
    first = predictions[names[0]]
    first = first[first["seed"] == first["seed"].min()]
    first = first.assign(sample_id=first["sample_id"].astype(str)).sort_values("sample_id")
    ids = first["sample_id"].tolist()
    subjects = first["subject"].astype(str).to_numpy()
    y_true = first["y_true"].astype(str).to_numpy(dtype=object)
    preds = {}
    for name in names:
        df = handover.check_predictions(predictions[name], name)
        blocks = []
        for s, g in df.groupby("seed", sort=True):
            g = g.set_index(g["sample_id"].astype(str))
            if sorted(g.index) != ids:
                raise ValueError(f"{name} seed {s}: predicts {len(g)} clips, {names[0]} "
                                 f"{len(ids)} (or other ids); a table compares the same clips")
            g = g.loc[ids]
            if not (g["y_true"].astype(str).to_numpy(dtype=object) == y_true).all():
                raise ValueError(f"{name} seed {s}: true classes differ from {names[0]}'s for "
                                 f"the same clips")
            blocks.append(g["y_pred"].astype(str).to_numpy(dtype=object))
        preds[name] = np.stack(blocks)
    return ids, subjects, {"y_true": y_true, **preds}


def subject_bootstrap(predictions: Mapping[str, pd.DataFrame], labels: Sequence[str],
                      n: int = 1000, ci: float = 0.95, seed: int = 0,
                      reference: str | None = None,
                      metrics: Iterable[str] = ("accuracy", "uf1", "uar")) -> dict:
    """Subject-level (cluster) bootstrap of every row of a table, with paired differences.

    Each resample draws the test subjects with replacement (as many as there are) and takes all
    clips of each draw; every row is scored on the same resamples (mean over its seeds, as the
    headline), so ``row - reference`` per resample gives the interval of the paired difference.

    Args:
        predictions: name -> predictions table (``sample_id``, ``subject``, ``y_true``,
            ``y_pred``, ``seed``); every table covers the same clips.
        labels: the protocol's classes.
        n: number of resamples.
        ci: coverage (0.95 -> 2.5th and 97.5th percentiles).
        seed: NumPy seed; same seed, same subjects drawn, same intervals.
        reference: the row every other row is compared with (None: no differences).
        metrics: which of accuracy, uf1, uar, weighted_f1.

    Returns:
        ``{name: {m_ci_low, m_ci_high, and unless name is the reference: m_diff (point
        difference to the reference), m_diff_ci_low, m_diff_ci_high}}`` plus the key
        ``"_bootstrap"``: ``{"unit": "subject", "n_subjects", "n_resamples", "ci_level",
        "seed", "reference"}``.

    Raises:
        ValueError: tables that cover different clips, an unknown reference, no clips.
    """
    if reference is not None and reference not in predictions:
        raise ValueError(f"reference {reference!r} is not among the rows {list(predictions)}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    labels, metrics = list(labels), list(metrics)
    k = len(labels)
    ids, subjects, arrays = _aligned(predictions)
    if not ids:
        raise ValueError("no predictions to bootstrap")
    names_g, g = np.unique(subjects, return_inverse=True)
    n_g = len(names_g)
    t = encode(arrays.pop("y_true"), labels, "y_true")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_g, size=(n, n_g))
    w = np.zeros((n, n_g))
    np.add.at(w, (np.repeat(np.arange(n), n_g), draws.ravel()), 1)   # n x G subject counts
    alpha = (1 - ci) / 2
    values, points = {}, {}
    for name, pred in arrays.items():
        p = encode(pred.ravel(), labels, name).reshape(pred.shape)
        s_count = p.shape[0]
        # per seed and subject: confusion counts (S x G x K*K)
        cell = (np.arange(s_count)[:, None] * n_g + g[None, :]) * (k * k) + t[None, :] * k + p
        per = np.bincount(cell.ravel(), minlength=s_count * n_g * k * k).reshape(
            s_count, n_g, k * k).astype(np.float64)
        cm = np.einsum("bg,sgc->sbc", w, per).reshape(s_count, n, k, k)
        sc = _scores(cm)
        full = _scores(per.sum(axis=1).reshape(s_count, k, k))
        values[name] = {m: np.nanmean(sc[m], axis=0) for m in metrics}
        points[name] = {m: float(np.nanmean(full[m])) for m in metrics}
    out: dict = {}
    for name in arrays:
        row = {}
        for m in metrics:
            v = values[name][m]
            row[f"{m}_ci_low"] = float(np.nanquantile(v, alpha))
            row[f"{m}_ci_high"] = float(np.nanquantile(v, 1 - alpha))
            if reference is not None and name != reference:
                d = v - values[reference][m]
                row[f"{m}_diff"] = points[name][m] - points[reference][m]
                row[f"{m}_diff_ci_low"] = float(np.nanquantile(d, alpha))
                row[f"{m}_diff_ci_high"] = float(np.nanquantile(d, 1 - alpha))
        out[name] = row
    out["_bootstrap"] = {"unit": "subject", "n_subjects": int(n_g), "n_resamples": int(n),
                         "ci_level": float(ci), "seed": int(seed), "reference": reference}
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (same order; None stays None).

    The i-th smallest of m p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``: the
    family-wise error rate over the table's comparisons stays at the nominal level.
    """
    present = [(i, float(p)) for i, p in enumerate(p_values) if p is not None and not pd.isna(p)]
    m = len(present)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(present, key=lambda x: x[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


# ----------------------------------------------------------------------------------------------
# Baseline, seeds, significance
# ----------------------------------------------------------------------------------------------
def majority_class(y_true, labels: Sequence[str]) -> str:
    """Most frequent class of ``y_true`` (ties: the first in ``labels`` order)."""
    counts = np.bincount(encode(y_true, labels, "y_true"), minlength=len(labels))
    return list(labels)[int(np.argmax(counts))]


def majority_baseline(y_true, labels: Sequence[str], groups=None) -> dict:
    """Metrics of always predicting the majority class.

    Args:
        y_true: true class names (all clips, pooled).
        labels: the protocol's classes.
        groups: optional test subject of each clip. Given, each fold predicts the majority
            class of its *training* subjects (the LOSO-honest variant); omitted, the majority
            class of the pooled set (the usual reference; on CASME II 5-class both are "others").

    Returns:
        :func:`compute`'s dict plus ``majority_class`` (the pooled majority) and ``y_pred``
        (the baseline's predictions, a list).
    """
    labels = list(labels)
    y = np.asarray(y_true, dtype=object)
    if groups is None:
        pred = np.full(len(y), majority_class(y, labels), dtype=object)
    else:
        g = np.asarray(groups, dtype=object)
        pred = np.empty(len(y), dtype=object)
        for fold in pd.unique(g):
            train = y[g != fold]
            pred[g == fold] = majority_class(train if len(train) else y, labels)
    out = compute(y, pred, labels)
    out["majority_class"] = majority_class(y, labels)
    out["y_pred"] = pred.tolist()
    return out


def per_seed(pred_df: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """One row per seed: pooled accuracy, uf1, uar, weighted_f1 and n of that seed's run."""
    handover.check_predictions(pred_df)
    rows = []
    for s, g in pred_df.groupby("seed", sort=True):
        m = compute(g["y_true"], g["y_pred"], labels)
        rows.append({"seed": int(s), **{k: m[k] for k in HEADLINE}, "n": m["n"]})
    return pd.DataFrame(rows)


def seed_summary(pred_df: pd.DataFrame, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean +- standard deviation over seeds of the pooled metrics.

    Args:
        pred_df: a ``predictions.csv`` table (one block of rows per seed).
        labels: the classes; default: from the ``p_<class>`` columns, in their order.

    Returns:
        DataFrame indexed by metric (accuracy, uf1, uar, weighted_f1) with columns ``mean``,
        ``std`` (sample standard deviation, ddof=1; NaN for a single seed) and ``n_seeds``.
    """
    labels = labels_from_predictions(pred_df) if labels is None else list(labels)
    ps = per_seed(pred_df, labels)
    std = ps[list(HEADLINE)].std(ddof=1) if len(ps) > 1 else pd.Series(np.nan, index=HEADLINE)
    return pd.DataFrame({"mean": ps[list(HEADLINE)].mean(), "std": std,
                         "n_seeds": len(ps)}).rename_axis("metric")


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact (binomial) McNemar test of two classifiers on the same clips.

    Args:
        correct_a, correct_b: booleans, whether each classifier got each clip right, aligned
            (use :func:`paired_correct` to align two prediction tables by ``sample_id``).

    Returns:
        ``{"b": A right & B wrong, "c": A wrong & B right, "n": clips, "p_value": two-sided
        exact binomial p-value of b out of b + c under p = 0.5}`` (p = 1 when b + c = 0).
    """
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"correct_a has shape {a.shape} but correct_b has {b_.shape}")
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "n": int(a.size), "p_value": min(p, 1.0)}


def paired_correct(pred_a: pd.DataFrame, pred_b: pd.DataFrame, seed: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Align two prediction tables by ``sample_id`` for one seed; return correctness arrays.

    McNemar needs one prediction per clip and classifier, so several seeds are not pooled (the
    same clip twice is not an independent pair): the test uses ``seed`` (default: the smallest
    seed both tables have).

    Returns:
        ``(correct_a, correct_b, seed)``, sorted by ``sample_id``.

    Raises:
        ValueError: no common seed, or the two tables do not cover the same clips.
    """
    common = sorted(set(pred_a["seed"]) & set(pred_b["seed"]))
    if seed is None:
        if not common:
            raise ValueError(f"no common seed: {sorted(set(pred_a['seed']))} vs "
                             f"{sorted(set(pred_b['seed']))}")
        seed = common[0]
    elif seed not in common:
        raise ValueError(f"seed {seed} is not in both prediction tables (common: {common})")
    a = pred_a[pred_a["seed"] == seed].set_index("sample_id").sort_index()
    b = pred_b[pred_b["seed"] == seed].set_index("sample_id").sort_index()
    if not a.index.equals(b.index):
        only_a = sorted(set(a.index) - set(b.index))[:3]
        only_b = sorted(set(b.index) - set(a.index))[:3]
        raise ValueError(f"the two experiments do not cover the same clips ({len(a)} vs "
                         f"{len(b)}; only in first e.g. {only_a}, only in second e.g. {only_b})")
    ca = (a["y_true"].astype(str) == a["y_pred"].astype(str)).to_numpy()
    cb = (b["y_true"].astype(str) == b["y_pred"].astype(str)).to_numpy()
    return ca, cb, int(seed)


# ----------------------------------------------------------------------------------------------
# Leakage check (INVALID protocol, shown only to measure its inflation)
# ----------------------------------------------------------------------------------------------
EPOCH_COLUMNS = ("seed", "fold", "epoch", "test_accuracy", "test_uf1", "test_uar")


def leakage_folds(epoch_log: pd.DataFrame, n_test: Mapping[str, int] | None = None,
                  select: str = "test_accuracy", fixed_epoch: int | None = None) -> pd.DataFrame:
    """Per (seed, fold): the fixed-budget epoch next to the epoch chosen on the test subject.

    Choosing each fold's epoch by its own test score is an INVALID protocol (the test subject
    selects the model); some published codebases do it. This table measures how much it
    inflates the scores.

    Args:
        epoch_log: ``epoch_log.csv`` (seed, fold, epoch, test_accuracy, test_uf1, test_uar;
            an ``n_test`` column, as ``mer_core.train`` writes, gives the fold sizes).
        n_test: test clips per fold (subject); default: the log's ``n_test`` column if any.
        select: the column maximised to pick the "best" epoch (ties: the earliest epoch).
        fixed_epoch: the valid protocol's epoch; default: each fold's last logged epoch.

    Returns:
        One row per (seed, fold): ``n_test``, ``fixed_epoch``, ``fixed_<m>``, ``best_epoch``,
        ``best_<m>`` for m in accuracy, uf1, uar.
    """
    missing = [c for c in EPOCH_COLUMNS if c not in epoch_log.columns]
    if missing:
        raise ValueError(f"epoch_log: missing column(s) {missing}; expected {list(EPOCH_COLUMNS)}")
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
            hit = g[g["epoch"] == fixed_epoch]
            if hit.empty:
                raise ValueError(f"epoch_log: seed {seed} fold {fold} has no epoch {fixed_epoch}")
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


def leakage_table(epoch_log: pd.DataFrame, n_test: Mapping[str, int] | None = None,
                  select: str = "test_accuracy", fixed_epoch: int | None = None,
                  epoch_predictions: pd.DataFrame | None = None,
                  labels: Sequence[str] | None = None) -> pd.DataFrame:
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
        See :func:`leakage_folds`; ``epoch_predictions`` and ``labels`` as above.

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
    for kind, label, valid in (("fixed", "fixed epoch budget (valid)", True),
                               ("best", f"best test epoch per fold by {select} (INVALID)", False)):
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


# ----------------------------------------------------------------------------------------------
# Per subject, confusion
# ----------------------------------------------------------------------------------------------
def per_subject_accuracy(pred_df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per test subject (over all seeds' rows), with the clip count and class mix.

    Returns:
        DataFrame (subject, n_clips, accuracy, classes) sorted by subject.
    """
    df = pred_df.assign(correct=(pred_df["y_true"].astype(str) == pred_df["y_pred"].astype(str)))
    out = df.groupby("subject", sort=True).agg(
        n_clips=("sample_id", "nunique"), accuracy=("correct", "mean"),
        classes=("y_true", lambda s: ",".join(sorted(set(map(str, s))))))
    return out.reset_index()


def confusion_frame(y_true, y_pred, labels: Sequence[str], normalize: bool = False
                    ) -> pd.DataFrame:
    """Confusion matrix as a labelled DataFrame (rows = actual, columns = predicted).

    Args:
        normalize: divide each row by its count (row-normalised = per-class recall on the
            diagonal); a class with no true clips gets a row of zeros.
    """
    labels = list(labels)
    cm = confusion_counts(encode(y_true, labels, "y_true"), encode(y_pred, labels, "y_pred"),
                          len(labels)).astype(float if normalize else int)
    if normalize:
        s = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, s, out=np.zeros_like(cm), where=s > 0)
    return pd.DataFrame(cm, index=pd.Index(labels, name="actual"),
                        columns=pd.Index(labels, name="predicted"))


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def labels_from_predictions(pred_df: pd.DataFrame) -> list[str]:
    """Class names from the ``p_<class>`` columns, in their order."""
    labels = [c[2:] for c in pred_df.columns if c.startswith("p_")]
    if not labels:
        raise ValueError("predictions: no p_<class> columns to read the class list from")
    return labels


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
    handover.check_predictions(pred_df)
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
                         reference: str | None = None, progress: bool = True) -> dict:
    """Score every experiment and write the DVC metrics and plots files.

    Writes (atomically):

    * ``<reports_dir>/metrics.json``: ``{experiment: evaluate_predictions(...) + frames,
      backbone, loss + the subject-bootstrap intervals m_ci_low/high and, against
      ``reference``, the paired differences m_diff, m_diff_ci_low/high (see
      :func:`subject_bootstrap`) + n_bootstrap, ci_level, ci_unit, diff_reference}`` (DVC
      metrics, so ``dvc metrics diff`` compares runs);
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
    out, preds = {}, {}
    for name in tqdm(names, desc="evaluate", disable=not progress):
        pred = handover.read_predictions(results_dir / name / handover.PREDICTIONS_CSV)
        preds[name] = pred
        m = evaluate_predictions(pred, labels, n_boot=n_boot, ci=ci, seed=seed)
        if isinstance(experiments, Mapping):
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
    for name in names:
        out[name].update(boot[name])
        out[name].update(n_bootstrap=int(n_boot), ci_level=float(ci), ci_unit="subject",
                         bootstrap_seed=int(seed), diff_reference=reference)
        out[name] = _json_safe(out[name])
    io.write_json(reports_dir / handover.METRICS_JSON, out)
    return out


def _json_safe(d: dict) -> dict:
    """NaN -> None (``io.write_json`` refuses NaN, and JSON has none)."""
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in d.items()}


__all__ = [
    "compute", "fold_average", "bootstrap_ci", "subject_bootstrap", "holm", "majority_class", "majority_baseline",
    "per_seed", "seed_summary", "mcnemar_exact", "paired_correct", "leakage_folds",
    "leakage_table", "per_subject_accuracy", "confusion_frame", "confusion_counts", "encode",
    "labels_from_predictions", "evaluate_predictions",
    "evaluate_experiments", "HEADLINE",
]
