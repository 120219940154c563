"""Nested cross-validation: the learning rate and the stopping epoch chosen inside one LOSO fold.

With ``train.select`` set, each outer fold splits its TRAINING subjects into ``train.inner_folds``
subject-grouped inner folds (:func:`inner_splits`). For every learning rate tried and every inner
fold a fresh model trains on the other inner subjects for the full ``train.epochs`` schedule and
predicts the inner validation subjects after every epoch. The validation predictions are pooled
over the inner folds per (lr, epoch) and scored by UF1 (macro F1 over the protocol's classes,
:func:`mer_core.metrics.compute`); the best (lr, epoch) is the fold's recipe
(:func:`select_recipe`). The outer test subject is never among the subjects seen here, so it
never chooses anything. Training itself is the caller's (:mod:`mer_core.fold`): this module
splits, pools, scores and chooses.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mer_core.config import TrainConfig
from mer_core.metrics import compute

#: ``(train_rows, val_rows, lr, seed) -> per-epoch predicted classes of val_rows`` (one int
#: array per epoch, ``cfg.epochs`` of them).
InnerFit = Callable[[np.ndarray, np.ndarray, float, int], list]

#: Columns of a selection grid: one row per (lr, epoch).
GRID_COLUMNS = ("lr", "epoch", "inner_uf1", "inner_accuracy", "n_val", "diverged")


def inner_splits(subjects: Sequence[str], k: int) -> list[list[str]]:
    """Subject-grouped inner folds: the validation subjects of each.

    Args:
        subjects: the outer fold's training subjects (repeats are fine: one per clip).
        k: ``train.inner_folds`` (>= 2); k >= the number of subjects gives one subject per fold
            (leave-one-subject-out inside the training subjects).

    Returns:
        ``min(k, n_subjects)`` lists of validation subjects: the sorted subjects dealt
        round-robin, so every subject is in exactly one of them.

    Raises:
        ValueError: k < 2 or fewer than 2 distinct subjects.
    """
    unique = sorted(set(map(str, subjects)))
    if k < 2:
        raise ValueError(f"inner_folds: expected an integer >= 2, got {k!r}")
    if len(unique) < 2:
        raise ValueError(f"nested selection needs >= 2 training subjects, got {unique}")
    n = min(k, len(unique))
    return [unique[i::n] for i in range(n)]


def inner_seed(fold_seed: int, lr: float, inner_fold: int) -> int:
    """The seed of one inner fit: a hash of (outer fold seed, lr, inner fold index)."""
    key = f"{fold_seed}:{float(lr)!r}:{inner_fold}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def score_grid(pooled: dict, labels: Sequence[str]) -> pd.DataFrame:
    """Score pooled inner validation predictions.

    Args:
        pooled: ``(lr, epoch) -> (y_true, y_pred)`` int class arrays pooled over the inner folds.
        labels: the protocol's classes (index = class number).

    Returns:
        One row per (lr, epoch), columns :data:`GRID_COLUMNS`, sorted by lr then epoch.
    """
    names = np.asarray(labels, dtype=object)
    rows = []
    for (lr, epoch), (y_true, y_pred) in sorted(pooled.items()):
        m = compute(names[y_true], names[y_pred], labels)
        rows.append({"lr": float(lr), "epoch": int(epoch), "inner_uf1": m["uf1"],
                     "inner_accuracy": m["accuracy"], "n_val": int(len(y_true)),
                     "diverged": ""})
    return pd.DataFrame(rows, columns=list(GRID_COLUMNS))


def choose(grid: pd.DataFrame, epochs: int | None = None) -> dict:
    """The best row of a selection grid: highest ``inner_uf1``; ties -> fewer epochs, then the
    smaller lr.

    Args:
        grid: from :func:`score_grid`.
        epochs: only this epoch may be chosen (None: any epoch).

    Returns:
        ``{"lr", "epoch", "inner_uf1"}``.
    """
    cand = grid if epochs is None else grid[grid["epoch"] == epochs]
    if cand.empty:
        raise ValueError(f"selection grid: no row at epoch {epochs}")
    best = cand.sort_values(["inner_uf1", "epoch", "lr"], ascending=[False, True, True],
                            kind="stable").iloc[0]
    return {"lr": float(best["lr"]), "epoch": int(best["epoch"]),
            "inner_uf1": float(best["inner_uf1"])}


def select_recipe(cfg: TrainConfig, rows: np.ndarray, subjects: np.ndarray, y: np.ndarray,
                  labels: Sequence[str], fit: InnerFit, fold_seed: int
                  ) -> tuple[dict, pd.DataFrame]:
    """Choose the outer fold's lr and stopping epoch by cross-validation on its training subjects.

    Args:
        cfg: the train section (``select``, ``lr_grid``, ``inner_folds``, ``epochs``, ``lr``).
        rows: index rows of the outer fold's training clips (never the test subject's).
        subjects, y: subject and int class of each of ``rows``.
        labels: the protocol's classes.
        fit: trains a fresh model on ``train_rows`` with ``lr`` and ``seed`` for ``cfg.epochs``
            epochs and returns the per-epoch predicted classes of ``val_rows`` (:data:`InnerFit`).
        fold_seed: the outer fold's seed (each inner fit is seeded by :func:`inner_seed`).

    Returns:
        ``(choice, grid)``: ``{"lr", "epoch", "inner_uf1"}`` (the epoch is ``cfg.epochs`` unless
        ``select`` has epochs; the lr is ``cfg.lr`` unless it has lr) and the scored grid. A
        learning rate whose inner fit diverges (``fit`` raises ``FloatingPointError``) stops
        there and stays in the grid with ``inner_uf1`` -inf, ``n_val`` 0 and its error in
        ``diverged`` (empty elsewhere): never chosen.

    Raises:
        FloatingPointError: every learning rate diverged (or the only one did).
    """
    rows, subjects, y = np.asarray(rows), np.asarray(subjects).astype(str), np.asarray(y)
    splits = inner_splits(subjects, cfg.inner_folds)
    pooled: dict = {}
    diverged: dict = {}
    for lr in cfg.lr_list:
        for k, val_subjects in enumerate(splits):
            is_val = np.isin(subjects, val_subjects)
            try:
                preds = fit(rows[~is_val], rows[is_val], lr, inner_seed(fold_seed, lr, k))
            except FloatingPointError as e:  # this lr diverged: it cannot be chosen
                if len(cfg.lr_list) == 1:
                    raise
                diverged[lr] = str(e)
                break
            if len(preds) != cfg.epochs:
                raise ValueError(f"inner fit returned {len(preds)} epochs of predictions; "
                                 f"expected train.epochs = {cfg.epochs}")
            for epoch, pred in enumerate(preds, start=1):
                t, p = pooled.get((lr, epoch), ((), ()))
                pooled[(lr, epoch)] = (np.concatenate([t, y[is_val]]).astype(np.int64),
                                       np.concatenate([p, pred]).astype(np.int64))
    if len(diverged) == len(cfg.lr_list):
        raise FloatingPointError("every learning rate of train.lr_grid diverged in the inner "
                                 f"folds: {'; '.join(diverged.values())}")
    pooled = {key: v for key, v in pooled.items() if key[0] not in diverged}
    grid = score_grid(pooled, labels)
    if diverged:  # listed in the grid, never chosen
        grid = pd.concat([grid, pd.DataFrame(
            [{"lr": float(lr), "epoch": e, "inner_uf1": -np.inf, "inner_accuracy": np.nan,
              "n_val": 0, "diverged": diverged[lr]}
             for lr in diverged for e in range(1, cfg.epochs + 1)])],
            ignore_index=True).sort_values(["lr", "epoch"], kind="stable", ignore_index=True)
    chosen = choose(grid, None if "epochs" in cfg.select_list else cfg.epochs)
    return chosen, grid


__all__ = ["inner_splits", "inner_seed", "score_grid", "choose", "select_recipe",
           "GRID_COLUMNS", "InnerFit"]
