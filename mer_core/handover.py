"""The tables and records the stages hand each other: one home for their names, formats,
readers and writers.

Stages hand over CSV, JSON and arrays only (never executed notebooks). Every stage and notebook
reads and writes these through this module (the apex stage's arrays through
:mod:`mer_core.frame_cache`), so a format lives in one place:

    data       <data>/index.csv          one row per clip (:data:`INDEX_COLUMNS` + ``label``)
               <data>/excluded.csv       sample_id, reason: every clip left out, and why
               <data>/dataset.json       dataset description, protocol, labels, fps, counts
    apex       <data>/apex.csv           sample_id, method, apex_pred, apex_annotated
               <reports>/apex_metrics.json   spotters' errors, per-fold spotter counts
               <data>/apex_report.json   what the apex stage did (skips, crops, timings)
    train      <results>/<exp>/predictions.csv   :data:`PRED_COLUMNS` + p_<class>..., experiment
               <results>/<exp>/epoch_log.csv     :data:`EPOCH_COLUMNS`: loss and test metrics
               <results>/<exp>/epoch_predictions.csv   every test clip's prediction per epoch
               <results>/<exp>/run.json          config, fingerprint, wall time, device, precision
               <results>/<exp>/selection.csv     only with train.select: the inner-CV grid per fold
               <results>/<exp>/cams/<subject>__seed<k>.npz   Grad-CAM maps of the test clips
    baselines  <results>/baselines/<name>/predictions.csv, run.json (as train), choices.csv
               (C per fold), grid_predictions.csv (every C's test predictions: leakage check)
    evaluate   <reports>/metrics.json    per experiment: scores, intervals, differences
               <reports>/leakage.csv     the leakage check (per-epoch selection on the test)
    benchmarks <reports>/calibration.json   the recipe chosen on the calibration population

The train stage's per-fold files (``folds/``, ``shards/``) are its own resume state, owned by
:mod:`mer_core.loso`. Writes are atomic (:mod:`mer_core.io`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mer_core import io

#: Columns of every index (:func:`mer_core.datasets.load_index`); ``data/index.csv`` adds
#: ``label`` (and ``objective_class`` when the sheet has it).
INDEX_COLUMNS = ["sample_id", "dataset", "subject", "clip", "frames_dir", "onset", "apex",
                 "offset", "emotion", "aus", "apex_note"]
INDEX_CSV, EXCLUDED_CSV, DATASET_JSON = "index.csv", "excluded.csv", "dataset.json"
REPORT_JSON = "data/apex_report.json"
PREDICTIONS_CSV, EPOCH_LOG_CSV = "predictions.csv", "epoch_log.csv"
EPOCH_PREDICTIONS_CSV, RUN_JSON, CAMS_DIR = "epoch_predictions.csv", "run.json", "cams"
CHOICES_CSV, SELECTION_CSV = "choices.csv", "selection.csv"
METRICS_JSON, LEAKAGE_CSV = "metrics.json", "leakage.csv"
#: The merged files of a finished experiment (removed when its folds are redone).
MERGED = (PREDICTIONS_CSV, EPOCH_LOG_CSV, EPOCH_PREDICTIONS_CSV, RUN_JSON, SELECTION_CSV)
PRED_COLUMNS = ("sample_id", "subject", "y_true", "y_pred", "seed")
#: Columns of an epoch log: one row per (seed, fold, epoch).
EPOCH_COLUMNS = ("seed", "fold", "epoch", "train_loss", "test_accuracy", "test_uf1", "test_uar",
                 "n_test", "n_correct", "lr")
#: run.json keys of an experiment's wall time, preferred first.
WALL_KEYS = ("wall_s_folds", "wall_s_this_call")


def read_record(path: str | Path, made_by: str, keys: Sequence[str] = ()) -> dict:
    """A hand-over JSON record, checked for ``keys``.

    Args:
        path: the file.
        made_by: what writes it, for the error ("the data stage").
        keys: keys the reader needs.

    Raises:
        FileNotFoundError: no such file (names it and what makes it).
        ValueError: a needed key is missing (names it and the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (made by {made_by}; run it first)")
    record = io.read_json(path)
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)} (made by {made_by})")
    return record


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


def read_dataset_info(path: str | Path = "data/dataset.json") -> dict:
    """``data/dataset.json``: the dataset's description, protocol, labels, fps and counts."""
    return read_record(path, "the data stage", ("dataset", "protocol", "labels"))


# ----------------------------------------------------------------------------- apex stage

def write_apex_outputs(apex_csv: str | Path, table: pd.DataFrame, metrics_json: str | Path,
                       metrics: dict) -> None:
    """Write ``data/apex.csv`` (every spotter's apex per clip) and ``apex_metrics.json``."""
    io.write_csv(apex_csv, table)
    io.write_json(metrics_json, metrics)


def read_apex_table(path: str | Path = "data/apex.csv") -> pd.DataFrame:
    """``data/apex.csv``: ``sample_id``, ``method``, ``apex_pred``, ``apex_annotated`` (Int64)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (made by the apex stage; run it first)")
    return pd.read_csv(path, dtype={"sample_id": str, "method": str,
                                    "apex_annotated": "Int64"})


def read_apex_metrics(path: str | Path = "reports/apex_metrics.json") -> dict:
    """``reports/apex_metrics.json``: every spotter's errors and ``per_fold`` choice counts."""
    return read_record(path, "the apex stage", ("per_fold",))


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


def write_predictions(out_dir: str | Path, predictions: pd.DataFrame) -> None:
    """Check and write ``<out_dir>/predictions.csv``."""
    io.write_csv(Path(out_dir) / PREDICTIONS_CSV, check_predictions(predictions, str(out_dir)))


def load_predictions(results_dir: str | Path, names: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``results/<name>/predictions.csv`` of every name (raises if one is missing)."""
    return {n: read_predictions(Path(results_dir) / n / PREDICTIONS_CSV)
            for n in names}


def read_epoch_log(out_dir: str | Path) -> pd.DataFrame:
    """Per-epoch rows of every finished fold in ``results/<exp>/folds`` (also before merging)."""
    files = sorted((Path(out_dir) / "folds").glob("*.epochs.csv"))
    if not files:
        return pd.DataFrame(columns=list(EPOCH_COLUMNS))
    return pd.concat([read_table(f) for f in files], ignore_index=True) \
        .sort_values(["seed", "fold", "epoch"], kind="stable").reset_index(drop=True)


def read_merged_epochs(out_dir: str | Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """A finished experiment's ``epoch_log.csv`` and ``epoch_predictions.csv`` (None for a
    missing file; ``fold`` and ``sample_id`` stay text)."""
    out = Path(out_dir)
    log, ep = out / EPOCH_LOG_CSV, out / EPOCH_PREDICTIONS_CSV
    return (pd.read_csv(log, dtype={"fold": str}) if log.is_file() else None,
            pd.read_csv(ep, dtype={"fold": str, "sample_id": str}) if ep.is_file() else None)


def read_selection(out_dir: str | Path) -> pd.DataFrame | None:
    """A finished experiment's ``selection.csv`` (seed, fold, lr, epoch, inner_uf1,
    inner_accuracy, n_val, diverged, chosen), or None when its lr and epochs were fixed."""
    path = Path(out_dir) / SELECTION_CSV
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype={"fold": str, "diverged": str})
    if "diverged" in table:  # "" (not NaN) where the lr trained
        table["diverged"] = table["diverged"].fillna("")
    return table


def write_run(out_dir: str | Path, record: dict) -> None:
    """Write ``<out_dir>/run.json``, the run record of an experiment or a baseline."""
    io.write_json(Path(out_dir) / RUN_JSON, record)


def read_run(out_dir: str | Path) -> dict | None:
    """``<out_dir>/run.json``, or None when the run has not been merged yet."""
    path = Path(out_dir) / RUN_JSON
    return io.read_json(path) if path.is_file() else None


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
        info = read_run(Path(results_dir) / n) or {}
        wall = next((info[k] for k in WALL_KEYS if isinstance(info.get(k), (int, float))), None)
        rows.append({"experiment": n, "wall_s": wall, "elapsed_s": info.get("wall_s_this_call"),
                     **{k: info.get(k) for k in ("mean_fold_s", "train_images_per_s", "device",
                                                 "device_name", "precision", "threads",
                                                 "workers", "n_folds", "code_version")}})
    return pd.DataFrame(rows)


def write_cams(out_dir: str | Path, stem: str, **arrays) -> None:
    """Write one fold's Grad-CAM maps: ``<out_dir>/cams/<stem>.npz`` (``sample_id``, ``cam``,
    ``y_true``, ``y_pred`` and whatever else is given)."""
    with io.atomic_path(Path(out_dir) / CAMS_DIR / f"{stem}.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


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


# ----------------------------------------------------------------------------- evaluate stage

def write_metrics(reports_dir: str | Path, metrics: dict) -> None:
    """Write ``<reports>/metrics.json`` (the evaluate stage's scores, intervals, differences)."""
    io.write_json(Path(reports_dir) / METRICS_JSON, metrics)


def read_metrics(path: str | Path = "reports/metrics.json") -> dict:
    """``reports/metrics.json``: experiment -> scores, intervals and differences."""
    return read_record(path, "the evaluate stage")


def write_leakage(reports_dir: str | Path, leakage: pd.DataFrame) -> None:
    """Write ``<reports>/leakage.csv`` (:func:`mer_core.leakage.leakage_check`'s table)."""
    io.write_csv(Path(reports_dir) / LEAKAGE_CSV, leakage)


def read_leakage(path: str | Path = "reports/leakage.csv") -> pd.DataFrame | None:
    """``reports/leakage.csv``, or None when the evaluate stage wrote none."""
    path = Path(path)
    return pd.read_csv(path) if path.is_file() else None


def read_calibration(path: str | Path = "reports/calibration.json") -> dict | None:
    """``reports/calibration.json`` (``benchmarks/calibrate.py``), or None when absent."""
    path = Path(path)
    return io.read_json(path) if path.is_file() else None


__all__ = ["INDEX_COLUMNS", "INDEX_CSV", "EXCLUDED_CSV", "DATASET_JSON", "REPORT_JSON",
           "PREDICTIONS_CSV", "EPOCH_LOG_CSV", "EPOCH_PREDICTIONS_CSV", "RUN_JSON", "CAMS_DIR",
           "CHOICES_CSV", "SELECTION_CSV", "METRICS_JSON", "LEAKAGE_CSV", "MERGED",
           "PRED_COLUMNS", "EPOCH_COLUMNS", "WALL_KEYS", "read_record", "read_table",
           "write_index", "read_index",
           "read_dataset_info", "write_apex_outputs", "read_apex_table", "read_apex_metrics",
           "check_predictions", "read_predictions", "write_predictions", "load_predictions",
           "read_epoch_log", "read_merged_epochs", "read_selection", "write_run", "read_run",
           "run_info",
           "write_cams", "load_cams", "write_metrics", "read_metrics", "write_leakage",
           "read_leakage", "read_calibration"]
