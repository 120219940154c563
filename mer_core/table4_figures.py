"""Figures of Table 4 (``notebooks/04_table4.ipynb``): grouped bars with intervals, and
Grad-CAM maps of the reference experiment over the frames it was tested on."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mer_core.charts import save_figure
from mer_core.frame_cache import tested_frames
from mer_core.handover import load_cams
from mer_core.table4 import METRIC_COLUMNS, TABLE_TITLES


def plot_table_bars(df: pd.DataFrame, path: str | Path | None = None, dpi: int = 80):
    """Grouped bars (accuracy, UF1, UAR) with subject-bootstrap intervals, one group per row,
    titled after the table (its ``table`` column)."""
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
    table = str(df["table"].iloc[0]) if "table" in df and len(df) else "table4"
    ax.set_title(f"{TABLE_TITLES.get(table, table)}\n(intervals: bootstrap over subjects)",
                 fontsize=10)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi)
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
        save_figure(fig, path, dpi)
    return fig


def gradcam_figure(cams_dir: str | Path, frames_dir: str | Path, strategy: str,
                   index_ids: Sequence[str], labels: Sequence[str], per_class: int = 3,
                   path: str | Path | None = None, dpi: int = 80):
    """:func:`plot_gradcam` of the class-activation maps in ``cams_dir`` (smallest seed) over
    the frames of ``strategy``, with :func:`select_cam_examples`.

    Args:
        cams_dir: ``results/<reference>/cams``.
        frames_dir: the frame caches (``data/frames``).
        strategy: the experiment's frame strategy (its ``frames`` in ``metrics.json``).
        index_ids: ``sample_id`` of ``data/index.csv``, in order.
        labels: the protocol's classes.
        per_class: clips shown per class.
        path: where to save the figure (None: not saved).
        dpi: resolution.

    Returns:
        The figure, or None when ``cams_dir`` holds no maps (nothing drawn).
    """
    cams_dir = Path(cams_dir)
    if not (cams_dir.is_dir() and any(cams_dir.glob("*.npz"))):
        return None
    examples = select_cam_examples(load_cams(cams_dir), labels, per_class=per_class)
    frames = tested_frames(frames_dir, strategy, index_ids)
    return plot_gradcam(examples, frames, index_ids, labels, path, dpi)


def readme_figures(reports_dir: str | Path, gradcam: bool) -> list[tuple[str, str]]:
    """(title, path) of the figures the README section shows: the bars, and the Grad-CAM maps
    when they were drawn."""
    folder = f"{Path(reports_dir).as_posix()}/figures/04_table4"
    figures = [("Table 4 bar chart", f"{folder}/table4_bars.png")]
    if gradcam:
        figures.append(("Grad-CAM", f"{folder}/table4_gradcam.png"))
    return figures


__all__ = ["plot_table_bars", "select_cam_examples", "plot_gradcam", "gradcam_figure",
           "readme_figures"]
