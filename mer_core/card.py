"""The dataset card: what the index holds, as tables, figures and a JSON summary.

Every function takes the index after the protocol (``data/index.csv``, with ``label``); figures
are returned (not shown or saved) so the notebook can display them and
:func:`mer_core.charts.save_figure` writes them atomically. A prepared apex-image set (one image
per clip, :mod:`mer_core.apex_images`) has no frame sequence: the clip-length and
onset -> apex -> offset views return None there, and the notebook prints :data:`NO_SEQUENCES`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mer_core.apex_images import NO_SEQUENCES, is_single_frame
from mer_core.datasets import loso_folds
from mer_core.images import frame_numbers, read_frames


def class_subject_table(index: pd.DataFrame, column: str = "label",
                        labels: list[str] | None = None) -> pd.DataFrame:
    """Clips per subject (rows) and class (columns), with ``total`` row and column.

    Args:
        index: the sample index.
        column: ``label`` (protocol classes) or ``emotion`` (raw sheet labels).
        labels: column order (e.g. :func:`mer_core.vocab.protocol_labels`); default: the
            index's ``attrs["labels"]`` for ``label``, else sorted names.
    """
    if labels is None:
        labels = index.attrs.get("labels") if column == "label" else None
        labels = labels or sorted(index[column].unique())
    table = pd.crosstab(index["subject"], index[column]).reindex(columns=labels, fill_value=0)
    table = table.sort_index()
    table.columns.name = None
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table.astype(int)


def class_subject_figure(table: pd.DataFrame):
    """Heatmap of a :func:`class_subject_table` (subjects down, classes across, totals left out
    of the colour scale but written in the cells)."""
    import matplotlib.pyplot as plt

    body = table.drop(index="total", columns="total")
    height = max(2.0, 0.9 + 0.22 * body.shape[0])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * body.shape[1], height))
    ax.imshow(body.to_numpy(), cmap="Blues", aspect="auto")
    for (i, j), v in np.ndenumerate(body.to_numpy()):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > body.to_numpy().max() / 2 else "black")
    totals = table.loc["total"].drop("total")
    ax.set_xticks(range(body.shape[1]),
                  [f"{c}\n({totals[c]})" for c in body.columns], fontsize=8)
    ax.set_yticks(range(body.shape[0]), body.index, fontsize=7)
    ax.set_title(f"clips per subject and class ({int(table.loc['total', 'total'])} in all)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def clip_lengths(index: pd.DataFrame) -> pd.Series:
    """Frames per clip, onset..offset inclusive."""
    return (index["offset"] - index["onset"] + 1).rename("frames")


def clip_fps(index: pd.DataFrame, info: dict) -> float | pd.Series:
    """The frame rate of the clips: ``dataset.json``'s ``fps``, or for a composite of datasets
    filmed at different rates one value per clip (from ``parts``, by the ``dataset`` column)."""
    if info.get("fps"):
        return float(info["fps"])
    parts = info.get("parts") or {}
    return index["dataset"].map(lambda d: float(parts[d]["fps"])).rename("fps")


def clip_length_stats(index: pd.DataFrame, fps: float | pd.Series) -> dict | None:
    """Min, quartiles, max of the clip length (frames) and the median in milliseconds (``fps``:
    one rate, or one per clip: :func:`clip_fps`), plus the relative apex position
    (apex - onset) / (offset - onset) over clips with an apex; None for single images (no
    sequence, :data:`NO_SEQUENCES`)."""
    if is_single_frame(index):
        return None
    n = clip_lengths(index)
    q = n.quantile([0.25, 0.5, 0.75])
    median_ms = (float(q[0.5] / fps * 1000) if not isinstance(fps, pd.Series)
                 else float((n / fps * 1000).median()))
    valid = index["apex"].notna() & (index["offset"] > index["onset"])
    v = index[valid]
    rel = ((v["apex"].astype(float) - v["onset"]) / (v["offset"] - v["onset"]))
    return {
        "min": int(n.min()), "q1": float(q[0.25]), "median": float(q[0.5]),
        "q3": float(q[0.75]), "max": int(n.max()), "median_ms": median_ms,
        "apex_relative_median": float(rel.median()) if len(rel) else None,
        "apex_na": int(index["apex"].isna().sum()),
    }


def clip_length_figure(index: pd.DataFrame, fps: float | pd.Series, bins: int = 20):
    """Histogram of clip lengths (frames; milliseconds on the top axis). With one rate per
    clip (a composite, :func:`clip_fps`) the datasets are stacked and no ms axis is drawn. None for single
    images (no sequence, :data:`NO_SEQUENCES`)."""
    import matplotlib.pyplot as plt

    if is_single_frame(index):
        return None
    n = clip_lengths(index)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if isinstance(fps, pd.Series):
        names = list(dict.fromkeys(index["dataset"]))
        ax.hist([n[index["dataset"] == d] for d in names], bins=bins, stacked=True,
                label=[f"{d} ({fps[index['dataset'] == d].iloc[0]:g} fps)" for d in names])
    else:
        ax.hist(n, bins=bins, color="#4C72B0", edgecolor="white")
    ax.axvline(n.median(), color="k", ls="--", lw=1,
               label=f"{len(n)} clips, median {n.median():.0f} frames")
    ax.set_xlabel("clip length onset..offset (frames)")
    ax.set_ylabel("clips")
    if not isinstance(fps, pd.Series):
        top = ax.secondary_xaxis("top", functions=(lambda f: f / fps * 1000,
                                                   lambda ms: ms * fps / 1000))
        top.set_xlabel(f"ms at {fps:g} fps")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def pick_examples(index: pd.DataFrame, column: str = "label",
                  labels: list[str] | None = None) -> pd.DataFrame:
    """One clip per class for the strips: an annotated apex, length nearest the class median.

    Deterministic (ties broken by index order). Classes without an annotated apex are left out.
    """
    labels = labels or index.attrs.get("labels") or sorted(index[column].unique())
    rows = []
    for c in labels:
        sub = index[(index[column] == c) & index["apex"].notna()]
        if sub.empty:
            continue
        n = clip_lengths(sub)
        rows.append(sub.loc[(n - n.median()).abs().idxmin()])
    return pd.DataFrame(rows)


def difference_image(onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, float]:
    """Magnified |apex - onset| (gray, uint8) and the gain used.

    The absolute difference (mean over colour channels, lightly blurred) is scaled so its 99.5th
    percentile becomes white: micro-expressions move a few pixels, invisible without magnification.
    """
    import cv2

    d = np.abs(apex.astype(np.float32) - onset.astype(np.float32))
    if d.ndim == 3:
        d = d.mean(axis=2)
    # A light blur lifts the coherent motion above pixel noise (sensor noise, JPEG).
    d = cv2.GaussianBlur(d, (0, 0), sigmaX=max(0.6, d.shape[1] / 80))
    top = float(np.percentile(d, 99.5))
    gain = 255.0 / top if top > 0 else 1.0
    return np.clip(d * gain, 0, 255).astype(np.uint8), gain


def class_strip_figure(index: pd.DataFrame, column: str = "label",
                       labels: list[str] | None = None):
    """One row per class: onset, apex, offset frame and the magnified |apex - onset|.

    Returns:
        A matplotlib Figure (rows = classes with an annotated apex); None for single images
        (no onset or offset frame, :data:`NO_SEQUENCES`).
    """
    import matplotlib.pyplot as plt

    if is_single_frame(index):
        return None
    ex = pick_examples(index, column, labels)
    if ex.empty:
        raise ValueError("no clip with an annotated apex to show")
    fig, axes = plt.subplots(len(ex), 4, figsize=(7.2, 1.9 * len(ex)), squeeze=False)
    for ax_row, (_, r) in zip(axes, ex.iterrows()):
        numbers = frame_numbers(r["frames_dir"])
        on, ap, off = read_frames([numbers[int(r[k])] for k in ("onset", "apex", "offset")])
        diff, gain = difference_image(on, ap)
        panels = [(on, f"onset {r['onset']}"), (ap, f"apex {r['apex']}"),
                  (off, f"offset {r['offset']}"), (diff, f"|apex-onset| x{gain:.0f}")]
        for ax, (img, title) in zip(ax_row, panels):
            ax.imshow(img, cmap="magma" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(f"{r[column]}\n{r['subject']}/{r['clip']}", fontsize=8)
    fig.tight_layout()
    return fig


def fold_table(index: pd.DataFrame) -> pd.DataFrame:
    """The leave-one-subject-out folds (:func:`mer_core.datasets.loso_folds`) as a table.

    Args:
        index: the sample index (``subject``).

    Returns:
        DataFrame with one column per test subject (sorted) and the rows ``train clips`` and
        ``test clips``.
    """
    rows = [(s, len(tr), len(te)) for s, tr, te in loso_folds(index)]
    return pd.DataFrame(rows, columns=["test subject", "train clips", "test clips"]) \
        .set_index("test subject").T


def card_summary(index: pd.DataFrame, info: dict) -> dict:
    """The counts of the card as a JSON-ready dict (``reports/dataset_card.json``)."""
    table = class_subject_table(index, labels=info.get("labels"))
    per_class = table.loc["total"].drop("total")
    return {
        "dataset": info.get("dataset"),
        "description": info.get("description"),
        "synthetic": info.get("synthetic"),
        "protocol": info.get("protocol"),
        "labels": info.get("labels"),
        "n_clips": int(len(index)),
        "n_subjects": int(index["subject"].nunique()),
        "n_excluded": info.get("n_excluded"),
        "per_class": {k: int(v) for k, v in per_class.items()},
        "per_subject": {k: int(v) for k, v in table["total"].drop("total").items()},
        "per_emotion": {k: int(v) for k, v in index["emotion"].value_counts().sort_index().items()},
        "clip_length_frames": clip_length_stats(index, clip_fps(index, info)),
        **({"per_dataset": {d: int(k) for d, k in index["dataset"].value_counts().items()}}
           if index["dataset"].nunique() > 1 else {}),
        **({"single_frame": True} if info.get("single_frame") else {}),
    }
