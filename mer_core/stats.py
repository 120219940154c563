"""Uncertainty of LOSO scores: bootstrap intervals, paired differences, McNemar, Holm.

* **Intervals resample subjects.** Clips of one subject share a face, a recording session and
  a fold's model, so they are not independent: :func:`subject_bootstrap` draws subjects with
  replacement and takes all their clips (a cluster bootstrap), scoring every row of a table on
  the SAME resamples, so the interval of a difference between two rows (paired by clip) comes
  from the same draws. :func:`bootstrap_ci` (clips as the unit) is kept to show how much
  narrower, and wrong, the clip-level interval is.
* **Several comparisons.** McNemar p-values of a table are Holm-adjusted (:func:`holm`).
* **Several seeds.** A resample scores the mean over seeds, as the headline number does.
* **Several datasets** (the MEGC 2019 composite). The headline pools every clip (the composite
  score); :func:`per_dataset` scores each dataset's clips alone, its intervals resampling that
  dataset's subjects only.

Scores follow the conventions of :mod:`mer_core.metrics`.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mer_core.composite import dataset_of
from mer_core.handover import check_predictions
from mer_core.metrics import encode, score_counts, seed_summary


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
        s = score_counts(cm)
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
        df = check_predictions(predictions[name], name)
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
        sc = score_counts(cm)
        full = score_counts(per.sum(axis=1).reshape(s_count, k, k))
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


# ----------------------------------------------------------------------------------------------
# Per dataset (MEGC 2019 composite)
# ----------------------------------------------------------------------------------------------
def datasets_of(sample_ids) -> list[str]:
    """The datasets of ``sample_ids`` (``dataset/subject/clip``), in order of first appearance.

    Args:
        sample_ids: sample ids of one predictions table.

    Returns:
        The dataset names; ``[]`` when no id has the ``dataset/subject/clip`` form (a table
        that cannot be split by dataset).

    Raises:
        ValueError: some ids name a dataset and others do not (names one of each).
    """
    found, bad = {}, None
    for sid in sample_ids:
        try:
            found.setdefault(dataset_of(sid), sid)
        except ValueError:
            bad = bad if bad is not None else sid
    if found and bad is not None:
        raise ValueError(f"sample_id {bad!r}: expected dataset/subject/clip like "
                         f"{next(iter(found.values()))!r} to score it per dataset")
    return list(found)


def per_dataset(predictions: Mapping[str, pd.DataFrame], labels: Sequence[str],
                n: int = 1000, ci: float = 0.95, seed: int = 0, reference: str | None = None,
                metrics: Iterable[str] = ("accuracy", "uf1", "uar")) -> dict:
    """Every row of a table scored on each dataset's clips alone (MEGC 2019 per-dataset scores).

    The dataset of a clip is the first part of its ``sample_id``
    (:func:`mer_core.composite.dataset_of`). For each dataset, the point is the mean over seeds
    of the pooled metric of that dataset's clips (:func:`mer_core.metrics.seed_summary`), and the
    interval is :func:`subject_bootstrap` of those clips: only that dataset's subjects are
    resampled, every row on the same resamples (so, with ``reference``, the paired difference
    per dataset too). The composite score is the headline over all clips, not computed here.

    Args:
        predictions: name -> predictions table; every table covers the same clips.
        labels: the protocol's classes.
        n, ci, seed: bootstrap settings (as :func:`subject_bootstrap`).
        reference: the row the per-dataset differences are taken against (None: none).
        metrics: which of accuracy, uf1, uar, weighted_f1.

    Returns:
        ``{name: {dataset: {m, m_std (None for one seed), m_ci_low, m_ci_high, and unless name
        is the reference: m_diff, m_diff_ci_low, m_diff_ci_high; n (clips), n_subjects}}}``,
        datasets in order of first appearance; ``{}`` when the clips come from one dataset.

    Raises:
        ValueError: tables that cover different clips, an unknown reference, ids of which only
            some name a dataset.
    """
    metrics = list(metrics)
    if not predictions:
        return {}
    first = next(iter(predictions.values()))
    names = datasets_of(first["sample_id"].astype(str).unique())
    if len(names) < 2:
        return {}
    out: dict = {name: {} for name in predictions}
    for d in names:
        parts = {name: _of_dataset(p, d) for name, p in predictions.items()}
        boot = subject_bootstrap(parts, labels, n=n, ci=ci, seed=seed, reference=reference,
                                 metrics=metrics)
        for name, part in parts.items():
            summary = seed_summary(part, labels)
            one = part[part["seed"] == part["seed"].min()]
            row = {}
            for m in metrics:
                sd = summary.loc[m, "std"]
                row[m] = float(summary.loc[m, "mean"])
                row[f"{m}_std"] = None if pd.isna(sd) else float(sd)
            row.update(boot[name])
            row.update(n=int(len(one)), n_subjects=int(one["subject"].nunique()))
            out[name][d] = row
    return out


def _of_dataset(pred: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The rows of a predictions table whose clips belong to ``dataset``."""
    keep = pred["sample_id"].astype(str).map(dataset_of) == dataset
    return pred[keep.to_numpy()]


# ----------------------------------------------------------------------------------------------
# Significance
# ----------------------------------------------------------------------------------------------
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


__all__ = ["bootstrap_ci", "subject_bootstrap", "datasets_of", "per_dataset", "holm",
           "mcnemar_exact", "paired_correct"]
