"""The ``apex`` stage: read every clip once, spot its apex, cut the frames every experiment needs.

For each clip of the index the frames onset..offset are decoded once; every spotter of
:mod:`mer_core.apex` scores them; one frame per *frame strategy* is face-cropped, resized and
stored in one array per strategy, aligned to the index, so training never decodes a JPEG.

Frame strategies (Table 4 rows; :func:`mer_core.vocab.cached_strategies`):

- ``onset``: the onset frame (no expression yet: the floor every strategy should beat);
- ``middle``: frame ``onset + (offset - onset) // 2``;
- ``random``: a frame drawn uniformly from onset..offset, seeded by ``random_seed`` and the
  sample id (reproducible per clip, independent of the clip's position in the index);
- ``annotated``: the annotated apex; a clip with no valid annotation (NA apex) takes the apex
  of the spotter chosen for the fold (below) and its ``source`` says so (counted in the report);
- ``spotted:<method>``: the apex found by that spotter;
- ``spotted:best``: per LOSO fold, the spotter (not ``middle``) with the lowest MAE against the
  annotations of that fold's TRAINING subjects (:func:`mer_core.apex.choose_per_fold`), so the
  frames a fold sees never depend on its test subject's annotations. It has no cache file of
  its own: :func:`load_fold_frames` assembles it per fold from the ``spotted:<method>`` caches
  and ``spotter_choice.csv``.

Face crop: aligned data (synthetic, CASME II ``Cropped``) is only resized to ``image_size``;
raw frames get OpenCV's bundled Haar cascade on the onset frame and ONE fixed square box per clip
(per-frame boxes would jitter more than a micro-expression moves), widened by ``face_margin``.
No face found: a warning, a centre crop, and the clip listed in the report.

Outputs (all written atomically):

- ``data/frames/<stem>.npy`` uint8 N x S x S x 3 (RGB) and ``data/frames/<stem>.csv``
  (``sample_id``, ``frame``, ``source``), ``stem = strategy.replace(":", "-")``;
- ``data/frames/spotter_choice.csv``: ``subject`` (the fold's test subject), ``method``,
  ``mae_train_frames``, ``n_train_clips``;
- ``data/apex.csv``: ``sample_id``, ``method``, ``apex_pred``, ``apex_annotated`` (frame numbers);
- ``reports/apex_metrics.json``: :func:`mer_core.apex.score` of every method over all clips
  (``best`` there is descriptive only: it chooses nothing) and ``per_fold`` (how many folds
  chose each spotter);
- ``data/apex_report.json``: what happened (skipped clips, centre-cropped clips, annotated
  fallbacks, timings).

Unreadable or missing frames: with ``strict=True`` the stage stops with an error naming the clip
and the file. With ``strict=False`` the clip is *removed from every cache* (all strategies stay
aligned with each other) and listed under ``skipped`` in the report; :func:`load_cache` against
the full index then fails loudly, naming the missing ids, rather than returning misaligned rows.
Use :func:`cached_ids` to select the rows of the index the caches hold.

Clips run in a ``spawn`` process pool (``workers``): a script that calls
:func:`build_apex_stage` needs the usual ``if __name__ == "__main__":`` guard (notebooks and
pytest need nothing).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer_core import apex as apex_mod
from mer_core import io, vocab
from mer_core.images import frame_paths, read_frames

logger = logging.getLogger(__name__)

CHOICE_CSV = "spotter_choice.csv"
REPORT_JSON = "data/apex_report.json"


class FaceNotFoundWarning(UserWarning):
    """The Haar cascade found no face on a clip's onset frame; a centre crop is used."""


class ClipReadError(RuntimeError):
    """A clip's frames are missing or cannot be decoded (the message names clip and file)."""


class CacheMismatchError(ValueError):
    """A frame cache does not hold the index's clips in the index's order."""


# ---------------------------------------------------------------------------- strategies

def random_index(sample_id: str, n_frames: int, seed: int = 0) -> int:
    """The ``random`` strategy's frame index (0-based): seeded by ``seed`` and the sample id."""
    rng = np.random.default_rng([int(seed), zlib.crc32(str(sample_id).encode())])
    return int(rng.integers(0, n_frames))


# ---------------------------------------------------------------------------- face crop

class FaceDetectorUnavailable(RuntimeError):
    """This OpenCV build has no Haar cascade (OpenCV 5 moved it out of the main package)."""


HAAR_FILE = "haarcascade_frontalface_default.xml"


def haar_available() -> bool:
    """True if this OpenCV has ``CascadeClassifier`` and its bundled frontal-face cascade."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    return hasattr(cv2, "CascadeClassifier") and os.path.isfile(os.path.join(folder, HAAR_FILE))


@lru_cache(maxsize=1)
def _cascade():
    if not haar_available():
        raise FaceDetectorUnavailable(
            f"OpenCV {cv2.__version__} has no bundled Haar cascade ({HAAR_FILE}; OpenCV 5 "
            "removed CascadeClassifier from the main package): raw (unaligned) frames cannot be "
            "face-cropped. Install opencv-python-headless 4.x, or use aligned frames "
            "(CASME II Cropped).")
    path = os.path.join(cv2.data.haarcascades, HAAR_FILE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceDetectorUnavailable(f"{path}: cannot load OpenCV's bundled Haar cascade")
    return cascade


def detect_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest frontal face ``(x, y, w, h)`` found by the Haar cascade, or None.

    Args:
        image: H x W gray or H x W x 3 RGB uint8.

    Raises:
        FaceDetectorUnavailable: this OpenCV has no Haar cascade (see :func:`haar_available`).
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    gray = cv2.equalizeHist(gray)
    min_side = max(24, min(gray.shape) // 5)
    faces = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)


def square_box(face: tuple[int, int, int, int], margin: float,
               width: int, height: int) -> tuple[int, int, int, int]:
    """Square crop box ``(x0, y0, x1, y1)`` around a face box, widened by ``margin`` per side.

    The side is ``max(w, h) * (1 + 2 * margin)``, centred on the face, shifted (not shrunk) to
    stay inside the image, and shrunk only when it is larger than the image.
    """
    x, y, w, h = face
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, width, height))
    cx, cy = x + w / 2, y + h / 2
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    x0 = min(max(x0, 0), width - side)
    y0 = min(max(y0, 0), height - side)
    return x0, y0, x0 + side, y0 + side


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square ``(x0, y0, x1, y1)`` of a ``width`` x ``height`` image."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def face_box(onset_frame: np.ndarray, aligned: bool, margin: float = 0.2,
             where: str = "clip") -> tuple[tuple[int, int, int, int], str]:
    """The one crop box of a clip, decided on its onset frame.

    Args:
        onset_frame: H x W (x 3) uint8.
        aligned: True for face-aligned data: the whole frame is the face (no detection).
        margin: fraction of the face box added on every side (raw frames).
        where: the clip's name for the warning.

    Returns:
        ``(box, how)``: box ``(x0, y0, x1, y1)``; how is ``"aligned"``, ``"haar"`` or
        ``"centre"`` (no face found: a :class:`FaceNotFoundWarning` is issued).

    Raises:
        FaceDetectorUnavailable: raw frames, and this OpenCV has no Haar cascade.
    """
    h, w = onset_frame.shape[:2]
    if aligned:
        return (0, 0, w, h), "aligned"
    face = detect_face(onset_frame)
    if face is None:
        warnings.warn(f"{where}: no face found on the onset frame; using a centre crop",
                      FaceNotFoundWarning, stacklevel=2)
        return centre_box(w, h), "centre"
    return square_box(face, margin, w, h), "haar"


def crop(frame: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut ``box`` out of ``frame`` and resize it to ``size`` x ``size`` (area interpolation)."""
    x0, y0, x1, y1 = box
    part = frame[y0:y1, x0:x1]
    if part.shape[0] == size and part.shape[1] == size:
        return np.ascontiguousarray(part)
    interp = cv2.INTER_AREA if min(part.shape[:2]) >= size else cv2.INTER_LINEAR
    return cv2.resize(part, (size, size), interpolation=interp)


# ---------------------------------------------------------------------------- one clip

def read_clip(frames_dir, onset: int, offset: int, sample_id: str = "") -> np.ndarray:
    """Frames onset..offset of one clip (T x H x W x 3 RGB uint8).

    Raises:
        ClipReadError: a frame is missing or cannot be decoded; the message names the clip
            and the folder or file.
    """
    try:
        return read_frames(frame_paths(frames_dir, int(onset), int(offset)))
    except (OSError, ValueError) as e:   # FileNotFoundError is an OSError
        raise ClipReadError(f"{sample_id or frames_dir}: {e}") from None


def process_clip(task: dict) -> dict:
    """Read, face-crop and spot one clip; cut the frames of every strategy.

    Args:
        task: ``sample_id``, ``frames_dir``, ``onset``, ``offset``, ``apex`` (annotated frame
            number or None; used only by the ``annotated`` strategy, never by a spotter),
            ``aligned``, ``methods``, ``options`` (spotter options), ``image_size``,
            ``face_margin``, ``random_seed``, ``strict``, ``keep_curves``.

    Returns:
        ``sample_id``, ``error`` (None, or the reason when ``strict`` is False), ``n_frames``,
        ``face`` (aligned | haar | centre), ``box``, ``picks`` {key: 0-based index} for
        onset / middle / random / annotated (absent if NA) / ``spotted:<m>``, ``crops``
        {0-based index: S x S x 3 uint8}, ``curves`` {method: array} if ``keep_curves``.
    """
    sid = task["sample_id"]
    out = {"sample_id": sid, "error": None}
    try:
        frames = read_clip(task["frames_dir"], task["onset"], task["offset"], sid)
    except ClipReadError as e:
        if task.get("strict", True):
            raise
        out["error"] = str(e)
        return out
    n = len(frames)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FaceNotFoundWarning)
        box, how = face_box(frames[0], task["aligned"], task["face_margin"], where=sid)
    out["warnings"] = [str(w.message) for w in caught]
    x0, y0, x1, y1 = box
    gray = np.stack([cv2.cvtColor(f[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY) for f in frames])
    picks = {"onset": 0, "middle": (n - 1) // 2,
             "random": random_index(sid, n, task["random_seed"])}
    apex = task.get("apex")
    if apex is not None:
        picks["annotated"] = int(apex) - int(task["onset"])
    curves = {}
    for m in task["methods"]:
        c = apex_mod.curve(gray, m, **task["options"])
        curves[m] = c.astype(np.float32)
        picks[vocab.spotted(m)] = apex_mod.locate(c, m, **task["options"])
    size = int(task["image_size"])
    crops = {i: crop(frames[i], box, size) for i in sorted(set(picks.values()))}
    out.update(n_frames=n, face=how, box=box, picks=picks, crops=crops)
    if task.get("keep_curves"):
        out["curves"] = curves
    return out


def _worker_init() -> None:
    cv2.setNumThreads(1)


# ---------------------------------------------------------------------------- the stage

def _tasks(index: pd.DataFrame, aligned: bool, apex_cfg, methods, options, strict) -> list[dict]:
    tasks = []
    for row in index.itertuples(index=False):
        a = row.apex
        tasks.append({
            "sample_id": str(row.sample_id), "frames_dir": str(row.frames_dir),
            "onset": int(row.onset), "offset": int(row.offset),
            "apex": None if pd.isna(a) else int(a), "aligned": aligned, "methods": methods,
            "options": options, "image_size": int(apex_cfg.image_size),
            "face_margin": float(apex_cfg.face_margin), "random_seed": int(apex_cfg.random_seed),
            "strict": strict,
        })
    return tasks


def _run(tasks: list[dict], workers: int, progress: bool) -> list[dict]:
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(tasks), desc="apex: clips", unit="clip")
    results = []
    try:
        if workers > 1 and len(tasks) > 1:
            # spawn, not fork: a forked child of a process that already ran OpenCV's thread
            # pool (a notebook, a test) can deadlock inside OpenCV.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as ex:
                for r in ex.map(process_clip, tasks, chunksize=4):
                    results.append(r)
                    bar is not None and bar.update()
        else:
            for t in tasks:
                results.append(process_clip(t))
                bar is not None and bar.update()
    finally:
        if bar is not None:
            bar.close()
    return results


def build_apex_stage(index: pd.DataFrame, dataset_info: dict, apex_cfg,
                     frames_dir: str | Path = "data/frames", apex_csv: str | Path = "data/apex.csv",
                     metrics_json: str | Path = "reports/apex_metrics.json",
                     report_json: str | Path = REPORT_JSON, strict: bool = True,
                     max_clips: int = 0, progress: bool = True, options: dict | None = None) -> dict:
    """Run the apex stage: spot, score and cache the frames of every strategy.

    Args:
        index: ``data/index.csv`` as a DataFrame (``sample_id``, ``frames_dir``, ``onset``,
            ``apex`` (nullable), ``offset``); row order is the cache order.
        dataset_info: ``data/dataset.json`` (``aligned``, ``fps`` and ``description`` are used).
        apex_cfg: a :class:`mer_core.config.ApexConfig` (methods, smooth, fps, image_size,
            face_margin, random_seed, workers).
        frames_dir: folder of the caches.
        apex_csv, metrics_json, report_json: output files (see the module docstring).
        strict: True: a clip with missing/unreadable frames stops the stage (error names the
            file); False: the clip is dropped from every cache and listed in the report.
        max_clips: > 0: only the first ``max_clips`` clips (smoke runs: the caches then do not
            match the full index, and :func:`load_cache` says so).
        progress: tqdm bar over clips.
        options: extra spotter options (see :data:`mer_core.apex.DEFAULTS`); ``smooth`` comes
            from ``apex_cfg``.

    Returns:
        The report dict (also written to ``report_json``), with ``metrics`` added.

    Raises:
        ClipReadError: strict mode, a clip's frames are missing or unreadable.
        ValueError: an empty index, or no clip left.
    """
    t0 = time.perf_counter()
    methods = list(apex_cfg.method_list)
    if not methods:
        raise ValueError("apex.methods is empty: at least one spotting method is needed")
    for m in methods:
        if m not in vocab.SPOTTERS:
            raise ValueError(f"unknown apex method {m!r}; expected one of "
                             f"{', '.join(vocab.SPOTTERS)}")
    if index.empty:
        raise ValueError("the index is empty: nothing to spot")
    if max_clips and max_clips > 0:
        index = index.iloc[: int(max_clips)]
    aligned = bool(dataset_info.get("aligned", False))
    fps = float(dataset_info.get("fps") or apex_cfg.fps)
    if "fps" in dataset_info and float(dataset_info["fps"]) != float(apex_cfg.fps):
        logger.warning("dataset.json says %s fps, params say %s: using the dataset's",
                       dataset_info["fps"], apex_cfg.fps)
    opts = {"smooth": int(apex_cfg.smooth), **(options or {})}
    tasks = _tasks(index, aligned, apex_cfg, methods, opts, strict)
    t_read = time.perf_counter()
    results = _run(tasks, max(1, int(apex_cfg.workers)), progress)
    t_spot = time.perf_counter() - t_read

    skipped = [{"sample_id": r["sample_id"], "reason": r["error"]} for r in results if r["error"]]
    kept = [r for r in results if not r["error"]]
    for s in skipped:
        logger.warning("apex: skipped %s: %s", s["sample_id"], s["reason"])
    if not kept:
        raise ValueError(f"apex: every clip was skipped ({len(skipped)}); first: "
                         f"{skipped[0]['reason'] if skipped else '-'}")
    onsets = dict(zip(index["sample_id"].astype(str), index["onset"].astype(int)))
    annotated = {t["sample_id"]: t["apex"] for t in tasks}

    # Predictions and scores.
    rows = []
    for r in kept:
        on = onsets[r["sample_id"]]
        for m in methods:
            rows.append({"sample_id": r["sample_id"], "method": m,
                         "apex_pred": on + r["picks"][vocab.spotted(m)],
                         "apex_annotated": annotated[r["sample_id"]]})
    table = pd.DataFrame(rows)
    table["apex_annotated"] = table["apex_annotated"].astype("Int64")
    metrics = apex_mod.score(table, fps=fps, methods=methods)
    best = metrics["best"]  # over every clip: described in the report, chooses nothing
    subject_of = dict(zip(index["sample_id"].astype(str), index["subject"].astype(str)))
    kept_subject = {r["sample_id"]: subject_of[r["sample_id"]] for r in kept}
    choice = apex_mod.choose_per_fold(table, kept_subject, methods)
    fold_method = dict(zip(choice["subject"], choice["method"]))
    metrics["per_fold"] = {m: int(n) for m, n in choice["method"].value_counts().items()}
    io.write_csv(apex_csv, table)
    io.write_json(metrics_json, metrics)

    # Caches: one array + one id table per strategy, all with the same rows.
    frames_dir = Path(frames_dir)
    fallback, no_face = [], []
    for strategy in vocab.cached_strategies(methods):
        arrays, ids = [], []
        for r in kept:
            key, source = strategy, strategy
            if strategy == "annotated" and "annotated" not in r["picks"]:
                # the spotter of the clip's own fold (chosen without its subject); when the clip
                # trains another fold, load_fold_frames swaps in that fold's spotter
                m = fold_method[kept_subject[r["sample_id"]]]
                key = vocab.spotted(m)
                source = f"spotted:{m} (annotated apex NA; spotter of the clip's fold)"
            elif strategy == "random":
                source = f"random (seed {apex_cfg.random_seed})"
            i = r["picks"][key]
            arrays.append(r["crops"][i])
            ids.append({"sample_id": r["sample_id"], "frame": onsets[r["sample_id"]] + i,
                        "source": source})
        stem = vocab.strategy_stem(strategy)
        io.write_npy(frames_dir / f"{stem}.npy", np.stack(arrays).astype(np.uint8))
        io.write_csv(frames_dir / f"{stem}.csv", pd.DataFrame(ids))
    io.write_csv(frames_dir / CHOICE_CSV, choice)
    for r in kept:
        if "annotated" not in r["picks"]:
            fallback.append(r["sample_id"])
        if r["face"] == "centre":
            no_face.append(r["sample_id"])
            for w in r.get("warnings", []):
                warnings.warn(w, FaceNotFoundWarning, stacklevel=2)

    report = {
        "dataset": dataset_info.get("description", dataset_info.get("dataset", "")),
        "aligned": aligned, "fps": fps, "methods": methods, "best_all_clips": best,
        "options": {m: {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in apex_mod._options(opts, m).items()}
                    for m in methods if m != "middle"},
        "image_size": int(apex_cfg.image_size), "face_margin": float(apex_cfg.face_margin),
        "random_seed": int(apex_cfg.random_seed), "workers": int(apex_cfg.workers),
        "strict": bool(strict), "max_clips": int(max_clips or 0),
        "n_index": int(len(index)), "n_cached": len(kept), "n_frames": int(sum(r["n_frames"] for r in kept)),
        "skipped": skipped, "no_face_centre_crop": no_face,
        "annotated_fallback": {"strategy": "spotted:best (the spotter of each fold)",
                               "clips": fallback},
        "spotter_choice": {"file": CHOICE_CSV, "per_fold": metrics["per_fold"],
                           "rule": "per fold: lowest MAE on the training subjects' clips"},
        "strategies": {s: f"{vocab.strategy_stem(s)}.npy" for s in vocab.cached_strategies(methods)},
        "frames_dir": str(frames_dir),
        "seconds": {"spot_and_crop": round(t_spot, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
    io.write_json(report_json, report)
    return {**report, "metrics": metrics}


# ---------------------------------------------------------------------------- reading back

def cached_ids(frames_dir: str | Path, strategy: str) -> pd.DataFrame:
    """The id table (``sample_id``, ``frame``, ``source``) of one strategy's cache.

    Raises:
        FileNotFoundError: the cache was not built (names the file).
    """
    path = Path(frames_dir) / f"{vocab.strategy_stem(strategy)}.csv"
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
    npy = frames_dir / f"{vocab.strategy_stem(strategy)}.npy"
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


def clip_curves(row, dataset_info: dict, methods, apex_cfg=None, **options) -> dict:
    """Curves of one index row (for plots): ``{"frames": numbers, method: curve, ...}``."""
    opts = dict(options)
    if apex_cfg is not None:
        opts.setdefault("smooth", int(apex_cfg.smooth))
    task = {"sample_id": str(row["sample_id"]), "frames_dir": str(row["frames_dir"]),
            "onset": int(row["onset"]), "offset": int(row["offset"]), "apex": None,
            "aligned": bool(dataset_info.get("aligned", False)), "methods": list(methods),
            "options": opts, "image_size": 8,
            "face_margin": float(apex_cfg.face_margin) if apex_cfg else 0.2,
            "random_seed": 0, "strict": True, "keep_curves": True}
    r = process_clip(task)
    return {"frames": np.arange(int(row["onset"]), int(row["offset"]) + 1), **r["curves"]}


__all__ = ["FaceNotFoundWarning", "FaceDetectorUnavailable", "haar_available", "ClipReadError", "CacheMismatchError",
           "random_index", "detect_face", "square_box",
           "centre_box", "face_box", "crop", "read_clip", "process_clip", "build_apex_stage",
           "cached_ids", "load_cache", "clip_curves", "FoldFrames", "spotter_choice",
           "load_fold_frames", "cached_index"]
