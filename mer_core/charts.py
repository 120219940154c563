"""Charts shared by the stages: saving a figure atomically (every stage's figures), and the
grouped bars of the evaluate and table4 stages.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mer_core import io


def save_figure(fig, path: str | Path, dpi: int = 80, tight: bool = False) -> Path:
    """Save a Matplotlib figure atomically, in the format of the file's suffix (default PNG).

    Args:
        fig: the figure.
        path: the output file; parent folders are created.
        dpi: resolution.
        tight: crop the canvas to what is drawn (``bbox_inches="tight"``).

    Returns:
        ``path``.
    """
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png",
                    **({"bbox_inches": "tight"} if tight else {}))
    return Path(path)


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
        save_figure(fig, path, dpi)
    return fig


__all__ = ["save_figure", "plot_grouped"]
