"""The apex stage's arrays: the frame caches (one per strategy), the clip cache, the per-fold
spotter choice, and how a LOSO fold sees them.

    <frames>/<stem>.npy           uint8 N x S x S x 3 RGB, one frame per clip of the index
    <frames>/<stem>.csv           sample_id, frame, source (same rows)
    <frames>/clips.npy            uint8 N x T x S x S grey: T frames sampled evenly from
                                  onset..offset (``apex.clip_frames``), for LBP-TOP
    <frames>/clips.csv            sample_id, frames (the T frame numbers, space-separated)
    <frames>/spotter_choice.csv   subject, method, mae_train_frames, n_train_clips

``<stem>`` is the strategy's file stem (:func:`mer_core.vocab.strategy_stem`). Every array is
aligned with ``data/index.csv`` (row i = clip i); the readers check the ids, length and order,
and name the first clip that differs. The tables and records the stages hand each other live in
:mod:`mer_core.handover`. Writes are atomic (:mod:`mer_core.io`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mer_core import io, vocab
from mer_core.config import check_strategy
from mer_core.handover import REPORT_JSON

CHOICE_CSV = "spotter_choice.csv"
#: Stem of the clip cache (not a frame strategy: a short clip per index row).
CLIPS = "clips"


class CacheMismatchError(ValueError):
    """A frame cache does not hold the index's clips in the index's order."""




def cache_files(frames_dir: str | Path, strategy: str) -> tuple[Path, Path]:
    """The array and id-table paths of one strategy's cache."""
    stem = vocab.strategy_stem(strategy)
    return Path(frames_dir) / f"{stem}.npy", Path(frames_dir) / f"{stem}.csv"


def write_cache(frames_dir: str | Path, strategy: str, images: np.ndarray,
                ids: pd.DataFrame) -> None:
    """Write one strategy's cache: ``images`` (uint8 N x S x S x 3) and its id table."""
    npy, csv = cache_files(frames_dir, strategy)
    io.write_npy(npy, images.astype(np.uint8))
    io.write_csv(csv, ids)


def cached_ids(frames_dir: str | Path, strategy: str) -> pd.DataFrame:
    """The id table (``sample_id``, ``frame``, ``source``) of one strategy's cache.

    Raises:
        FileNotFoundError: the cache was not built (names the file).
    """
    path = cache_files(frames_dir, strategy)[1]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: frame cache of strategy {strategy!r} not found "
                                "(run the apex stage first)")
    return pd.read_csv(path, dtype={"sample_id": "str", "source": "str"}, keep_default_na=False)


def load_cache(frames_dir: str | Path, strategy: str, index) -> np.ndarray:
    """The cached frames of ``strategy``, checked against the index (ids, length and order).

    Args:
        frames_dir: the caches' folder (``data/frames``).
        strategy: a frame strategy (``spotted:best``, ``annotated``, ...).
        index: the index DataFrame (its ``sample_id`` column) or a sequence of sample ids.

    Returns:
        uint8 array N x S x S x 3, row i = clip i of the index.

    Raises:
        FileNotFoundError: the cache files are missing.
        CacheMismatchError: the cache does not hold exactly the index's clips in its order
            (the message names the first missing, extra or misplaced ids).
    """
    frames_dir = Path(frames_dir)
    if strategy == vocab.PER_FOLD:
        raise ValueError(f"{strategy}: chosen per LOSO fold, so it has no single cache; use "
                         f"load_fold_frames({str(frames_dir)!r}, {strategy!r}, index)")
    ids = cached_ids(frames_dir, strategy)["sample_id"].tolist()
    npy = cache_files(frames_dir, strategy)[0]
    if not npy.is_file():
        raise FileNotFoundError(f"{npy}: frame cache of strategy {strategy!r} not found "
                                "(run the apex stage first)")
    _match_ids(npy, ids, index)
    arr = np.load(npy, mmap_mode=None)
    if arr.ndim != 4 or arr.shape[0] != len(ids) or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise CacheMismatchError(f"{npy}: expected uint8 {len(ids)} x S x S x 3 (its id table "
                                 f"has {len(ids)} rows), got {arr.dtype} {arr.shape}")
    return arr


def _match_ids(npy: Path, ids: list[str], index) -> None:
    """Raise :class:`CacheMismatchError` unless ``ids`` are the index's sample ids in order."""
    want = [str(s) for s in (index["sample_id"] if isinstance(index, pd.DataFrame) else index)]
    if ids != want:
        have = set(ids)
        missing = [s for s in want if s not in have]
        extra = [s for s in ids if s not in set(want)]
        hint = f" (see {REPORT_JSON}: skipped clips or max_clips; rebuild with the apex stage)"
        if missing or extra or len(ids) != len(want):
            raise CacheMismatchError(
                f"{npy}: holds {len(ids)} clips, the index {len(want)}; "
                f"missing from the cache: {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                f"not in the index: {extra[:5]}{' ...' if len(extra) > 5 else ''}" + hint)
        i = next(k for k, (a, b) in enumerate(zip(ids, want)) if a != b)
        raise CacheMismatchError(f"{npy}: same clips as the index but in another order; first "
                                 f"difference at row {i}: cache {ids[i]!r}, index {want[i]!r}"
                                 + hint)


def check_cache(images: np.ndarray, index: pd.DataFrame, ids=None, source: str = "frame cache"
                ) -> None:
    """Check that an image cache lines up with the index.

    Args:
        images: N x S x S x 3 uint8 array, one row per index row.
        index: the index (``sample_id`` column).
        ids: the sample ids stored with the cache (same order), or None to check the length only.
        source: a name for error messages (e.g. the .npy path).

    Raises:
        CacheMismatchError: wrong dtype/shape, a different number of rows, or ids that differ
            (the message names the first differing row).
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        what = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images)
        raise CacheMismatchError(f"{source}: expected a uint8 N x S x S x 3 array, got {what}")
    if len(images) != len(index):
        raise CacheMismatchError(f"{source}: {len(images)} images but the index has {len(index)} "
                                 f"rows; rebuild the frame cache (apex stage) for this index")
    if ids is not None:
        ids = [str(i) for i in ids]
        want = [str(i) for i in index["sample_id"]]
        if len(ids) != len(want):
            raise CacheMismatchError(f"{source}: {len(ids)} sample ids but the index has "
                                     f"{len(want)} rows")
        for row, (a, b) in enumerate(zip(ids, want)):
            if a != b:
                raise CacheMismatchError(f"{source}: row {row} is {a!r} but index row {row} is "
                                         f"{b!r}; the cache is not aligned with the index")


def cached_index(index: pd.DataFrame, frames_dir: str | Path,
                 strategy: str = "onset") -> pd.DataFrame:
    """The rows of the index that the apex stage cached (in its ``strategy`` cache: ``onset``
    for clips, ``annotated`` for single apex images), in index order.

    With ``strict: false`` the data stage already drops (and lists in ``data/excluded.csv``)
    every clip with a missing, truncated or undecodable frame; a clip the apex stage still
    could not read is skipped there and listed in its report. Training then uses the remaining
    clips: this names the ones left out (a warning), so nothing disappears silently.
    """
    ids = set(cached_ids(frames_dir, strategy)["sample_id"])
    keep = index["sample_id"].astype(str).isin(ids).to_numpy()
    if not keep.all():
        gone = index.loc[~keep, "sample_id"].astype(str).tolist()
        warnings.warn(f"{len(gone)} clip(s) of the index are not in the frame cache "
                      f"{frames_dir} (skipped by the apex stage, see its report): "
                      f"{', '.join(gone[:10])}{' ...' if len(gone) > 10 else ''}", stacklevel=2)
    return index[keep].reset_index(drop=True)


class FoldFrames:
    """The frames of one strategy for every LOSO fold, aligned with the index.

    Most strategies give every fold the same array. ``spotted:best`` (and ``annotated`` when a
    clip has no annotated apex) depend on the spotter chosen for the fold, so each fold gets
    the variant of its spotter: ``for_fold(subject)``.

    Attributes:
        variants: name -> uint8 N x S x S x 3 array (one row per index row).
        choice: test subject -> variant name (a subject not listed gets ``default``).
        default: the variant of subjects missing from ``choice`` (None: every subject listed).
    """

    def __init__(self, variants: dict, choice: dict | None = None, default: str | None = None):
        if not variants:
            raise ValueError("FoldFrames: no arrays")
        shapes = {v.shape for v in variants.values()}
        if len(shapes) != 1:
            raise CacheMismatchError(f"FoldFrames: variants of different shapes {shapes}")
        self.variants = dict(variants)
        self.choice = dict(choice or {})
        self.default = default if default is not None or self.choice else next(iter(variants))

    def key(self, subject: str) -> str:
        """The variant that the fold testing ``subject`` uses."""
        if subject in self.choice:
            return self.choice[subject]
        if self.default is None:
            raise KeyError(f"no spotter was chosen for the fold of subject {subject!r} "
                           f"(spotter_choice.csv lists {sorted(self.choice)})")
        return self.default

    def for_fold(self, subject: str) -> np.ndarray:
        return self.variants[self.key(subject)]

    @property
    def shape(self) -> tuple:
        return next(iter(self.variants.values())).shape

    def __len__(self) -> int:
        return self.shape[0]


class NoAnnotationError(ValueError):
    """A frame strategy needs an annotated apex that the dataset does not have (SMIC-E)."""


def write_spotter_choice(frames_dir: str | Path, choice: pd.DataFrame) -> None:
    """Write ``spotter_choice.csv`` (:func:`mer_core.apex_scores.choose_per_fold`'s table)."""
    io.write_csv(Path(frames_dir) / CHOICE_CSV, choice)


def spotter_choice(frames_dir: str | Path) -> dict[str, str]:
    """test subject -> spotter chosen on that fold's training subjects (``spotter_choice.csv``).

    Raises:
        FileNotFoundError: the apex stage has not written the file (names it).
        NoAnnotationError: a fold has no spotter: its training subjects have no annotated apex.
    """
    path = Path(frames_dir) / CHOICE_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the per-fold spotter choice is missing (run the apex "
                                "stage first)")
    df = pd.read_csv(path, dtype={"subject": str, "method": str}, keep_default_na=False)
    unchosen = df.loc[df["method"].str.strip() == "", "subject"].tolist()
    if unchosen:
        raise NoAnnotationError(
            f"{path}: no spotter could be chosen for the fold(s) of {', '.join(unchosen[:5])}"
            f"{' ...' if len(unchosen) > 5 else ''}: their training subjects have no annotated "
            "apex (SMIC-E has none). The frame strategies 'annotated' and 'spotted:best' (and "
            "the motion inputs built on them) need one; use 'spotted:<method>' (a fixed "
            "spotter), 'onset' or 'middle'.")
    return dict(zip(df["subject"], df["method"]))


def load_fold_frames(frames_dir: str | Path, strategy: str, index) -> FoldFrames:
    """The frames of ``strategy`` for every fold, checked against the index.

    ``spotted:best``: the ``spotted:<method>`` cache of each fold's chosen spotter.
    ``annotated``: the annotated cache, whose clips without an annotated apex take the apex of
    the fold's chosen spotter. A motion input (``flow:spotted:best``, ``diff:annotated``, ...)
    is assembled in the same way from the motion caches of its apex. Every other strategy: one
    array for all folds.

    Raises:
        FileNotFoundError, CacheMismatchError: as :func:`load_cache`.
    """
    kind, apex = vocab.motion_of(strategy)
    prefix = f"{kind}:" if kind else ""
    if apex != vocab.PER_FOLD and apex != "annotated":
        return FoldFrames({strategy: load_cache(frames_dir, strategy, index)})
    if apex == "annotated" and cache_files(frames_dir, strategy)[0].is_file():
        base = load_cache(frames_dir, strategy, index)
        # the apex stage's source of an annotated apex: "annotated" ("onset -> annotated flow")
        own = f"onset -> annotated {kind}" if kind else "annotated"
        na = ~cached_ids(frames_dir, strategy)["source"].eq(own).to_numpy()
        if not na.any():  # every clip annotated (a prepared apex-image set): no spotter needed
            return FoldFrames({strategy: base})
    choice = spotter_choice(frames_dir)  # no annotated cache: says why (no annotation at all)
    methods = sorted(set(choice.values()))
    spotted = {m: load_cache(frames_dir, prefix + vocab.spotted(m), index) for m in methods}
    if apex == vocab.PER_FOLD:
        return FoldFrames({prefix + vocab.spotted(m): a for m, a in spotted.items()},
                          {s: prefix + vocab.spotted(m) for s, m in choice.items()})
    base = load_cache(frames_dir, strategy, index)
    variants = {}
    for m, arr in spotted.items():
        v = base.copy()
        v[na] = arr[na]
        variants[f"{strategy}|spotted:{m}"] = v
    return FoldFrames(variants, {s: f"{strategy}|spotted:{m}" for s, m in choice.items()})


def load_frames(frames_dir: str | Path, strategy: str, index: pd.DataFrame) -> FoldFrames:
    """The cached frames of one strategy for every fold, checked against the index.

    Raises:
        ConfigError: unknown frame strategy (lists the valid ones).
        FileNotFoundError: the cache files are missing.
        CacheMismatchError: length or ids differ from the index.
    """
    check_strategy(strategy)
    frames = load_fold_frames(frames_dir, strategy, index)
    for key, arr in frames.variants.items():
        check_cache(arr, index, source=f"{frames_dir}/{key}")
    return frames


def tested_frames(frames_dir: str | Path, strategy: str, index_ids: Sequence[str]) -> np.ndarray:
    """The frame each clip was tested on under ``strategy``, in the index's ``sample_id`` order.

    For ``spotted:best`` and the motion inputs built on it (chosen per fold) a clip's frame is its own fold's variant: the
    subject is the second part of the sample id (``casme2/sub01/EP02_01f``).

    Raises:
        FileNotFoundError: the cache is missing.
        ValueError: the cache's rows are not the index's clips in the index's order.
    """
    ids = [str(s) for s in index_ids]
    if vocab.motion_of(strategy)[1] != vocab.PER_FOLD:
        return load_cache(frames_dir, strategy, ids)
    per_fold = load_fold_frames(frames_dir, strategy, ids)
    out = np.empty(per_fold.shape, dtype=np.uint8)
    for i, sid in enumerate(ids):
        out[i] = per_fold.for_fold(sid.split("/")[1])[i]
    return out


# ----------------------------------------------------------------------------- the clip cache

def write_clips(frames_dir: str | Path, clips: np.ndarray, ids: pd.DataFrame) -> None:
    """Write the clip cache: ``clips`` (uint8 N x T x S x S grey) and its id table
    (``sample_id``, ``frames``)."""
    if clips.ndim != 4 or clips.dtype != np.uint8 or len(clips) != len(ids):
        raise ValueError(f"clip cache: expected uint8 N x T x S x S with one row per id "
                         f"({len(ids)}), got {clips.dtype} {clips.shape}")
    io.write_npy(Path(frames_dir) / f"{CLIPS}.npy", clips)
    io.write_csv(Path(frames_dir) / f"{CLIPS}.csv", ids)


def load_clips(frames_dir: str | Path, index) -> np.ndarray:
    """The clip cache (uint8 N x T x S x S grey), checked against the index like
    :func:`load_cache`.

    Raises:
        FileNotFoundError: the apex stage has not written it (names the file).
        CacheMismatchError: the cache does not hold the index's clips in its order.
    """
    npy, csv = Path(frames_dir) / f"{CLIPS}.npy", Path(frames_dir) / f"{CLIPS}.csv"
    for f in (npy, csv):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: clip cache not found (run the apex stage first)")
    ids = pd.read_csv(csv, dtype={"sample_id": "str"}, keep_default_na=False)["sample_id"].tolist()
    _match_ids(npy, ids, index)
    arr = np.load(npy)
    if arr.ndim != 4 or arr.shape[0] != len(ids) or arr.dtype != np.uint8:
        raise CacheMismatchError(f"{npy}: expected uint8 {len(ids)} x T x S x S, got "
                                 f"{arr.dtype} {arr.shape}")
    return arr


__all__ = ["CHOICE_CSV", "CLIPS", "CacheMismatchError", "NoAnnotationError", "cache_files", "write_cache",
           "cached_ids", "load_cache", "check_cache", "cached_index", "FoldFrames",
           "write_spotter_choice", "spotter_choice", "load_fold_frames", "load_frames",
           "tested_frames", "write_clips", "load_clips"]
