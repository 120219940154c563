"""The files the stages hand each other: one home for their names, formats, readers and writers.

Stages hand over CSV, JSON and arrays only (never executed notebooks). Every stage and notebook
reads and writes them through this module, so a format lives in one place:

    data      <data>/index.csv        one row per clip (:data:`INDEX_COLUMNS` + ``label``)
              <data>/excluded.csv     sample_id, reason: every clip left out, and why
              <data>/dataset.json     dataset description, protocol, labels, fps, counts
    apex      <frames>/<stem>.npy     uint8 N x S x S x 3, one frame per clip of the index
              <frames>/<stem>.csv     sample_id, frame, source (same rows)
              <frames>/spotter_choice.csv   subject, method, mae_train_frames, n_train_clips
    train     <results>/<exp>/predictions.csv   :data:`PRED_COLUMNS` + p_<class>..., experiment
              <results>/<exp>/epoch_log.csv     per fold and epoch: loss and test metrics
              <results>/<exp>/run.json          config, fingerprint, wall time, device, precision
              <results>/<exp>/cams/<fold>.npz   Grad-CAM maps of the test clips
    evaluate  <reports>/metrics.json            per experiment: scores, intervals, differences

``<stem>`` is the strategy's file stem (:func:`mer_core.vocab.strategy_stem`). The train stage's
per-fold files (``folds/``, ``shards/``) are its own resume state, owned by :mod:`mer_core.loso`.
Writes are atomic (:mod:`mer_core.io`).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mer_core import io, vocab
from mer_core.config import check_strategy

#: Columns of every index (:func:`mer_core.datasets.load_index`); ``data/index.csv`` adds
#: ``label`` (and ``objective_class`` when the sheet has it).
INDEX_COLUMNS = ["sample_id", "dataset", "subject", "clip", "frames_dir", "onset", "apex",
                 "offset", "emotion", "aus", "apex_note"]
INDEX_CSV, EXCLUDED_CSV, DATASET_JSON = "index.csv", "excluded.csv", "dataset.json"
CHOICE_CSV = "spotter_choice.csv"
REPORT_JSON = "data/apex_report.json"
PREDICTIONS_CSV, EPOCH_LOG_CSV = "predictions.csv", "epoch_log.csv"
EPOCH_PREDICTIONS_CSV, RUN_JSON, CAMS_DIR = "epoch_predictions.csv", "run.json", "cams"
METRICS_JSON = "metrics.json"
#: The merged files of a finished experiment (removed when its folds are redone).
MERGED = (PREDICTIONS_CSV, EPOCH_LOG_CSV, EPOCH_PREDICTIONS_CSV, RUN_JSON)
PRED_COLUMNS = ("sample_id", "subject", "y_true", "y_pred", "seed")
#: run.json keys of an experiment's wall time, preferred first.
WALL_KEYS = ("wall_s_folds", "wall_s_this_call")


class CacheMismatchError(ValueError):
    """A frame cache does not hold the index's clips in the index's order."""


def read_table(path: str | Path) -> pd.DataFrame:
    """A hand-over CSV with every cell as written (no "NA" strings turned into NaN)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[])


# ----------------------------------------------------------------------------- data stage

def write_index(out_dir: str | Path, index: pd.DataFrame, excluded: pd.DataFrame,
                info: dict) -> None:
    """Write the data stage's ``index.csv``, ``excluded.csv`` and ``dataset.json``."""
    out_dir = Path(out_dir)
    io.write_csv(out_dir / INDEX_CSV, index)
    io.write_csv(out_dir / EXCLUDED_CSV, excluded)
    io.write_json(out_dir / DATASET_JSON, info)


def read_index(path: str | Path = "data/index.csv") -> pd.DataFrame:
    """Read ``data/index.csv`` back with the index dtypes (apex Int64, text stays text).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a column of :data:`INDEX_COLUMNS` is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: index not found (run the data stage first)")
    text_cols = ["sample_id", "dataset", "subject", "clip", "frames_dir", "emotion", "aus",
                 "apex_note", "label", "objective_class"]
    df = pd.read_csv(path, dtype={c: "str" for c in text_cols} | {"apex": "Int64"},
                     keep_default_na=False, na_values={"apex": [""]})
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


# ----------------------------------------------------------------------------- apex stage: frame caches

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
    arr = np.load(npy, mmap_mode=None)
    if arr.ndim != 4 or arr.shape[0] != len(ids) or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise CacheMismatchError(f"{npy}: expected uint8 {len(ids)} x S x S x 3 (its id table "
                                 f"has {len(ids)} rows), got {arr.dtype} {arr.shape}")
    return arr


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


def cached_index(index: pd.DataFrame, frames_dir: str | Path) -> pd.DataFrame:
    """The rows of the index that the apex stage cached, in index order.

    With ``strict: false`` the data stage already drops (and lists in ``data/excluded.csv``)
    every clip with a missing, truncated or undecodable frame; a clip the apex stage still
    could not read is skipped there and listed in its report. Training then uses the remaining
    clips: this names the ones left out (a warning), so nothing disappears silently.
    """
    ids = set(cached_ids(frames_dir, "onset")["sample_id"])
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


def spotter_choice(frames_dir: str | Path) -> dict[str, str]:
    """test subject -> spotter chosen on that fold's training subjects (``spotter_choice.csv``).

    Raises:
        FileNotFoundError: the apex stage has not written the file (names it).
    """
    path = Path(frames_dir) / CHOICE_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the per-fold spotter choice is missing (run the apex "
                                "stage first)")
    df = pd.read_csv(path, dtype={"subject": str, "method": str}, keep_default_na=False)
    return dict(zip(df["subject"], df["method"]))


def load_fold_frames(frames_dir: str | Path, strategy: str, index) -> FoldFrames:
    """The frames of ``strategy`` for every fold, checked against the index.

    ``spotted:best``: the ``spotted:<method>`` cache of each fold's chosen spotter.
    ``annotated``: the annotated cache, whose clips without an annotated apex take the apex of
    the fold's chosen spotter. Every other strategy: one array for all folds.

    Raises:
        FileNotFoundError, CacheMismatchError: as :func:`load_cache`.
    """
    if strategy != vocab.PER_FOLD and strategy != "annotated":
        return FoldFrames({strategy: load_cache(frames_dir, strategy, index)})
    choice = spotter_choice(frames_dir)
    methods = sorted(set(choice.values()))
    spotted = {m: load_cache(frames_dir, vocab.spotted(m), index) for m in methods}
    if strategy == vocab.PER_FOLD:
        return FoldFrames({vocab.spotted(m): a for m, a in spotted.items()},
                          {s: vocab.spotted(m) for s, m in choice.items()})
    base = load_cache(frames_dir, "annotated", index)
    na = ~cached_ids(frames_dir, "annotated")["source"].eq("annotated").to_numpy()
    if not na.any():
        return FoldFrames({"annotated": base})
    variants = {}
    for m, arr in spotted.items():
        v = base.copy()
        v[na] = arr[na]
        variants[f"annotated|spotted:{m}"] = v
    return FoldFrames(variants, {s: f"annotated|spotted:{m}" for s, m in choice.items()})


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


def frame_cache(frames_dir: str | Path, strategy: str, index_ids: Sequence[str]) -> np.ndarray:
    """The frame each clip was tested on under ``strategy``, in the index's ``sample_id`` order.

    For ``spotted:best`` (chosen per fold) a clip's frame is its own fold's variant: the
    subject is the second part of the sample id (``casme2/sub01/EP02_01f``).

    Raises:
        FileNotFoundError: the cache is missing.
        ValueError: the cache's rows are not the index's clips in the index's order.
    """
    ids = [str(s) for s in index_ids]
    if strategy != vocab.PER_FOLD:
        return load_cache(frames_dir, strategy, ids)
    per_fold = load_fold_frames(frames_dir, strategy, ids)
    out = np.empty(per_fold.shape, dtype=np.uint8)
    for i, sid in enumerate(ids):
        out[i] = per_fold.for_fold(sid.split("/")[1])[i]
    return out


# ----------------------------------------------------------------------------- train stage: predictions, epoch log, run record, Grad-CAM

def check_predictions(df: pd.DataFrame, where: str = "predictions") -> pd.DataFrame:
    """Validate a predictions table: required columns, one row per (sample_id, seed), and the
    same clips for every seed.

    Raises:
        ValueError: naming the missing columns, the duplicated row or the mismatching seed.
    """
    missing = [c for c in PRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected {list(PRED_COLUMNS)}")
    dup = df.duplicated(["sample_id", "seed"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"{where}: sample_id {row['sample_id']!r} appears twice for seed "
                         f"{row['seed']}")
    seeds = sorted(df["seed"].unique())
    ref = set(df.loc[df["seed"] == seeds[0], "sample_id"])
    for s in seeds[1:]:
        ids = set(df.loc[df["seed"] == s, "sample_id"])
        if ids != ref:
            raise ValueError(f"{where}: seed {s} has {len(ids)} clips but seed {seeds[0]} has "
                             f"{len(ref)} (or different ids); every seed must cover the same clips")
    return df


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read and validate ``results/<experiment>/predictions.csv``.

    Raises:
        FileNotFoundError: the file does not exist (has the experiment been trained?).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions not found (train the experiment first)")
    df = pd.read_csv(path, dtype={"sample_id": str, "subject": str, "y_true": str,
                                  "y_pred": str})
    return check_predictions(df, str(path))


def load_predictions(results_dir: str | Path, names: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``results/<name>/predictions.csv`` of every name (raises if one is missing)."""
    return {n: read_predictions(Path(results_dir) / n / PREDICTIONS_CSV)
            for n in names}


def read_epoch_log(out_dir: str | Path) -> pd.DataFrame:
    """Per-epoch rows of every finished fold in ``results/<exp>/folds`` (also before merging)."""
    files = sorted((Path(out_dir) / "folds").glob("*.epochs.csv"))
    if not files:
        return pd.DataFrame(columns=["seed", "fold", "epoch", "train_loss", "test_accuracy",
                                     "test_uf1", "test_uar", "n_test", "n_correct", "lr"])
    return pd.concat([read_table(f) for f in files], ignore_index=True) \
        .sort_values(["seed", "fold", "epoch"], kind="stable").reset_index(drop=True)


def run_info(results_dir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    """Measured facts of each experiment from ``results/<name>/run.json`` (as
    ``mer_core.loso`` writes it): ``wall_s`` (``wall_s_folds``, the summed fold wall time, or
    else ``wall_s_this_call``), ``mean_fold_s``, ``train_images_per_s``, ``device``,
    ``device_name``, ``precision``, ``threads``, ``workers``, ``n_folds``,
    ``code_version``, ``elapsed_s`` (``wall_s_this_call``: the elapsed time of the call that
    finished the run, shorter than ``wall_s`` when folds trained in parallel); None where run.json
    lacks a key or is missing."""
    rows = []
    for n in names:
        p = Path(results_dir) / n / RUN_JSON
        info = io.read_json(p) if p.is_file() else {}
        wall = next((info[k] for k in WALL_KEYS if isinstance(info.get(k), (int, float))), None)
        rows.append({"experiment": n, "wall_s": wall, "elapsed_s": info.get("wall_s_this_call"),
                     **{k: info.get(k) for k in ("mean_fold_s", "train_images_per_s", "device",
                                                 "device_name", "precision", "threads",
                                                 "workers", "n_folds", "code_version")}})
    return pd.DataFrame(rows)


def load_cams(cams_dir: str | Path, seed: int | None = None) -> pd.DataFrame:
    """Read ``cams/<subject>__seed<k>.npz`` (or ``<subject>.npz``) files of one seed.

    Returns:
        DataFrame (sample_id, y_true, y_pred, cam) with ``cam`` an h x w float32 array; the
        smallest seed available when ``seed`` is None.

    Raises:
        FileNotFoundError: no npz file in ``cams_dir``.
    """
    files = sorted(Path(cams_dir).glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"{cams_dir}: no class-activation maps (*.npz)")
    def seed_of(p):
        m = re.search(r"__seed(\d+)$", p.stem)
        return int(m.group(1)) if m else None
    seeds = sorted({s for s in map(seed_of, files) if s is not None})
    want = seed if seed is not None else (seeds[0] if seeds else None)
    rows = []
    for p in files:
        if seed_of(p) != want:
            continue
        with np.load(p, allow_pickle=False) as z:
            for k in ("sample_id", "cam", "y_true", "y_pred"):
                if k not in z:
                    raise ValueError(f"{p}: missing key {k!r}")
            for sid, cam, t, pr in zip(z["sample_id"], z["cam"], z["y_true"], z["y_pred"]):
                rows.append({"sample_id": str(sid), "y_true": str(t), "y_pred": str(pr),
                             "cam": np.asarray(cam, dtype=np.float32)})
    return pd.DataFrame(rows)


__all__ = ["INDEX_COLUMNS", "INDEX_CSV", "EXCLUDED_CSV", "DATASET_JSON", "CHOICE_CSV", "REPORT_JSON",
           "PREDICTIONS_CSV", "EPOCH_LOG_CSV", "EPOCH_PREDICTIONS_CSV", "RUN_JSON", "CAMS_DIR",
           "METRICS_JSON", "MERGED", "PRED_COLUMNS", "WALL_KEYS", "CacheMismatchError",
           "read_table", "write_index", "read_index", "cache_files", "write_cache", "cached_ids",
           "load_cache", "check_cache", "cached_index", "FoldFrames", "spotter_choice",
           "load_fold_frames", "load_frames", "frame_cache", "check_predictions",
           "read_predictions", "load_predictions", "read_epoch_log", "run_info", "load_cams"]
