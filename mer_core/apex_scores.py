"""How well each spotter finds the annotated apex, and the spotter each LOSO fold uses.

:func:`score` compares spotted and annotated apexes over a set of clips (MAE in frames and ms,
hit rates); :func:`choose_per_fold` picks, for each test subject, the spotter with the lowest
MAE on the OTHER subjects' clips, so no fold's frames depend on its test subject's annotations.
The spotters themselves are :mod:`mer_core.apex`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def score(table: pd.DataFrame, fps: float | dict = 200.0, methods=None) -> dict:
    """Accuracy of every method against the annotated apex.

    Args:
        table: long table with columns ``sample_id``, ``method``, ``apex_pred`` and
            ``apex_annotated`` (frame numbers; NA annotation -> excluded and counted).
        fps: frame rate for the millisecond errors: one number, or ``{sample_id: fps}``
            (a composite of datasets filmed at different rates).
        methods: order of the methods in the result (default: order of appearance).

    Returns:
        ``{method: {mae_frames, mae_ms, median_frames, hit5, hit10, n_scored, n_excluded_na},
        ..., "best": name}``: ``best`` is the non-``middle`` method with the lowest MAE (see
        :func:`best_method`). Values are ``None`` where nothing could be scored.
    """
    for col in ("sample_id", "method", "apex_pred", "apex_annotated"):
        if col not in table.columns:
            raise ValueError(f"apex table: missing column {col!r}")
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    out: dict = {}
    for m in methods:
        rows = table[table["method"] == m]
        ann = pd.to_numeric(rows["apex_annotated"], errors="coerce").astype("Float64")
        ok = ann.notna().to_numpy()
        err = np.abs(rows["apex_pred"].to_numpy(np.float64)[ok] - ann.to_numpy(np.float64, na_value=np.nan)[ok])
        n = int(ok.sum())
        rate = (rows["sample_id"].map(fps).to_numpy(np.float64)[ok] if isinstance(fps, dict)
                else float(fps))
        out[m] = {
            "mae_frames": _r(err.mean()) if n else None,
            "mae_ms": _r((err * 1000.0 / rate).mean()) if n else None,
            "median_frames": _r(np.median(err)) if n else None,
            "hit5": _r((err <= 5).mean()) if n else None,
            "hit10": _r((err <= 10).mean()) if n else None,
            "n_scored": n,
            "n_excluded_na": int((~ok).sum()),
        }
    out["best"] = best_method(out, methods)
    return out


def best_method(metrics: dict, methods) -> str | None:
    """The non-``middle`` method with the lowest MAE (ties: first listed).

    Without any scored non-``middle`` method (no annotations at all), None: there is nothing
    to choose by; ``middle`` if it is the only method.
    """
    candidates = [m for m in methods if m != "middle"]
    if not candidates:
        return "middle"
    scored = [m for m in candidates if metrics.get(m, {}).get("mae_frames") is not None]
    if not scored:
        return None
    return min(scored, key=lambda m: metrics[m]["mae_frames"])


def choose_per_fold(table: pd.DataFrame, subject_of: dict, methods=None) -> pd.DataFrame:
    """The spotter of every LOSO fold, chosen on that fold's training subjects only.

    For each test subject, the non-``middle`` method with the lowest MAE against the annotated
    apexes of the OTHER subjects' clips (:func:`best_method` on :func:`score` of those rows), so
    no fold's frames depend on its test subject's annotations.

    Args:
        table: the long apex table of :func:`score` (``sample_id``, ``method``, ``apex_pred``,
            ``apex_annotated``).
        subject_of: sample_id -> subject of every clip in ``table``.
        methods: the methods in their listed order (ties: the first).

    Returns:
        DataFrame ``subject`` (every subject, sorted), ``method`` (None when the training
        subjects have no annotated apex: nothing to choose by), ``mae_train_frames`` (the
        chosen method's MAE on the training subjects), ``n_train_clips`` (scored clips of the
        training subjects).
    """
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    missing = sorted(set(table["sample_id"]) - set(subject_of))
    if missing:
        raise ValueError(f"apex table: no subject for sample_id(s) {missing[:3]}")
    subj = table["sample_id"].map(subject_of)
    rows = []
    for s in sorted(set(subject_of.values())):
        m = score(table[subj != s], methods=methods)
        evidence = any(m[k]["n_scored"] for k in methods if k in m)
        best = m["best"] if evidence else None  # nothing scored: nothing to choose by
        rows.append({"subject": s, "method": best,
                     "mae_train_frames": m.get(best, {}).get("mae_frames"),
                     "n_train_clips": m.get(best, {}).get("n_scored", 0)})
    return pd.DataFrame(rows)


def _r(x) -> float:
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


__all__ = ["score", "best_method", "choose_per_fold"]
