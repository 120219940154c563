"""Scores of LOSO predictions: pooled metrics, fold averages, majority baseline, seeds, per
subject and confusion matrices of a ``predictions.csv`` table (read and checked by
:mod:`mer_core.handover`).

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

Several seeds: ``predictions.csv`` holds one block of rows per seed. Headline numbers are the
mean over seeds of the per-seed pooled metrics; :func:`seed_summary` gives mean +- std.

Intervals and significance tests are in :mod:`mer_core.stats`; the evaluate stage that writes
``reports/metrics.json`` is :mod:`mer_core.evaluate`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mer_core import handover

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


def score_counts(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from confusion counts; ``cm`` is K x K or B x K x K (vectorised over B).

    Args:
        cm: confusion counts, rows = actual, columns = predicted (leading axes: batch).

    Returns:
        ``accuracy``, ``uf1``, ``uar``, ``weighted_f1`` and ``n`` (one value per batch entry),
        ``f1`` and ``recall`` (one per class).
    """
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
    s = score_counts(confusion_counts(t, p, len(labels)))
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
        s = score_counts(cm)
        used = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
        acc.append(float(s["accuracy"]))
        f1s.append(float(s["f1"][used].mean()))
        uars.append(float(s["uar"]))
    return {"fold_avg_accuracy": float(np.mean(acc)), "fold_avg_uf1": float(np.mean(f1s)),
            "fold_avg_uar": float(np.mean(uars)), "n_folds": len(acc)}


# ----------------------------------------------------------------------------------------------
# Baseline, seeds
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


__all__ = [
    "compute", "fold_average", "score_counts", "majority_class", "majority_baseline", "per_seed",
    "seed_summary", "per_subject_accuracy", "confusion_frame", "confusion_counts", "encode",
    "labels_from_predictions", "HEADLINE",
]
