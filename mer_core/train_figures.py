"""Figures and display helpers of the train stage (``notebooks/02_train_loso.ipynb``).

Training is :func:`mer_core.loso.run_experiment`; this module only shows what one run wrote:
the training loss of every LOSO fold (``results/<exp>/folds/*.epochs.csv``) and the accuracy of
every test subject. Scores come from :mod:`mer_core.metrics`. Figures are returned (not shown or
saved) so the notebook displays them and writes them where ``dvc.yaml`` expects them.

Nothing here defines what a fold computes, so this module is not part of the training code
version (:data:`mer_core.fingerprints.CODE_MODULES`): redrawing a figure never makes a finished fold
stale.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from mer_core import handover, metrics


def run_summary(preds: pd.DataFrame, index: pd.DataFrame, out_dir: str | Path,
                folds: str = "all", max_folds: int = 0) -> str:
    """One line on how the run went: device, workers and speed once every fold exists (from
    ``run.json``), else which part of the folds this call covered.

    Args:
        preds: :func:`mer_core.loso.run_experiment`'s predictions.
        index: the index the run was given (its subjects are the folds).
        out_dir: ``results/<experiment>``.
        folds: the ``folds`` shard of the run (``all`` or ``i/n``).
        max_folds: the run's ``max_folds``.

    Returns:
        The line.
    """
    run = handover.read_run(out_dir)
    if run is not None and len(preds["subject"].unique()) == index["subject"].nunique():
        return (f"device {run['device']}, precision {run['precision']}, {run['workers']} "
                f"worker(s) x {run['threads']} thread(s): {run['mean_fold_s']:.1f} s per fold, "
                f"{run['train_images_per_s']:.0f} training images/s per worker, "
                + (f"{run['wall_s_this_call'] / 60:.1f} min elapsed in the call that trained them"
                   if run.get("wall_s_this_call") is not None else
                   f"{run['wall_s_folds'] / 60:.1f} min of fold time (merged from earlier calls)"))
    return (f"partial run (folds={folds!r}, max_folds={max_folds}): {preds['subject'].nunique()} "
            "fold(s) here; predictions.csv is written once every fold exists (loso.merge_shards)")


def loss_figure(epoch_log: pd.DataFrame, experiment: str, loss: str,
                folds: Iterable[str] | None = None):
    """Training loss per epoch: one thin line per (seed, fold), their mean in black.

    Args:
        epoch_log: :func:`mer_core.handover.read_epoch_log` (``seed``, ``fold``, ``epoch``,
            ``train_loss``).
        experiment: the experiment's name (title).
        loss: the loss's name (y label).
        folds: only these test subjects (e.g. the folds of this run's predictions); default all.

    Returns:
        A matplotlib Figure with one axes: a line per (seed, fold) plus the mean line.
    """
    import matplotlib.pyplot as plt

    log = epoch_log if folds is None else epoch_log[epoch_log["fold"].isin(list(folds))]
    fig, ax = plt.subplots(figsize=(7, 4))
    for _, g in log.groupby(["seed", "fold"]):
        ax.plot(g["epoch"], g["train_loss"], alpha=0.5, lw=1)
    mean = log.groupby("epoch")["train_loss"].mean()
    ax.plot(mean.index, mean.values, color="black", lw=2.5, label="mean over folds")
    ax.set(xlabel="epoch", ylabel=f"training loss ({loss})",
           title=f"{experiment}: training loss per LOSO fold ({log['fold'].nunique()} folds)")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend()
    fig.tight_layout()
    return fig


def fold_accuracy_figure(preds: pd.DataFrame, labels: Sequence[str], experiment: str):
    """Accuracy per test subject (bars labelled with the test clips), with the pooled accuracy
    and the majority-class rate as reference lines.

    Args:
        preds: predictions (``sample_id``, ``subject``, ``y_true``, ``y_pred``; every seed's
            rows pooled).
        labels: the protocol's classes.
        experiment: the experiment's name (title).

    Returns:
        A matplotlib Figure with one axes: one bar per subject
        (:func:`mer_core.metrics.per_subject_accuracy`) and two horizontal lines (pooled
        :func:`mer_core.metrics.compute` accuracy, :func:`mer_core.metrics.majority_baseline`).
    """
    import matplotlib.pyplot as plt

    per_fold = metrics.per_subject_accuracy(preds)
    pooled = metrics.compute(preds["y_true"], preds["y_pred"], labels)["accuracy"]
    majority = metrics.majority_baseline(preds["y_true"], labels)["accuracy"]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(per_fold)), 4))
    bars = ax.bar(per_fold["subject"], per_fold["accuracy"], color="tab:blue")
    ax.bar_label(bars, labels=[f"n={k}" for k in per_fold["n_clips"]], fontsize=7)
    ax.axhline(pooled, color="black", ls="--", label=f"pooled accuracy {pooled:.2f}")
    ax.axhline(majority, color="grey", ls=":", label="majority-class rate")
    ax.set(ylim=(0, 1.05), xlabel="test subject", ylabel="accuracy",
           title=f"{experiment}: accuracy per LOSO fold")
    ax.tick_params(axis="x", rotation=90)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["run_summary", "loss_figure", "fold_accuracy_figure"]
