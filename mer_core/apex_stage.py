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
  annotations of that fold's TRAINING subjects (:func:`mer_core.apex_scores.choose_per_fold`), so the
  frames a fold sees never depend on its test subject's annotations. It has no cache file of
  its own: :func:`mer_core.frame_cache.load_fold_frames` assembles it per fold from the ``spotted:<method>`` caches
  and ``spotter_choice.csv``.

Face crop (:mod:`mer_core.faces`): aligned data is only resized to ``image_size``; raw frames get
one transform per clip, decided on its onset frame and applied to every frame (the motion
between frames is kept): the eye-aligned similarity warp (eye line level, fixed inter-ocular
distance and eye position, framed like the Haar box widened by ``face_margin``); no eye pair:
the Haar box crop, unrotated, and the clip listed in the report (``no eyes: box crop``); no
face: a warning, a centre crop, and the clip listed in the report.

Outputs (all written atomically; formats in :mod:`mer_core.frame_cache` for the arrays and
:mod:`mer_core.handover` for the tables):

- ``data/frames/<stem>.npy`` uint8 N x S x S x 3 (RGB) and ``data/frames/<stem>.csv``
  (``sample_id``, ``frame``, ``source``), ``stem`` = :func:`mer_core.vocab.strategy_stem`;
- ``data/frames/clips.npy`` uint8 N x T x S x S (grey) and ``clips.csv`` (``sample_id``,
  ``frames``): ``clip_frames`` frames evenly spaced over onset..offset, cropped like the frames
  (the input of the LBP-TOP baseline, :mod:`mer_core.baselines`);
- ``data/frames/flow-<stem>.npy|csv`` for ``annotated`` and every ``spotted:<method>``: the
  onset -> apex optical flow of the same face crops as a uint8 image (dx, dy, magnitude;
  :mod:`mer_core.motion`: TV-L1, or Farneback where OpenCV lacks it), the input of the
  motion rows; the ``annotated`` one falls back to the fold's spotter like the frames;
- ``data/frames/diff-<stem>.npy|csv``, the same strategies: the apex - onset difference of the
  crops as a uint8 image on a fixed gain (:func:`mer_core.motion.difference`);
- ``data/frames/spotter_choice.csv``: ``subject`` (the fold's test subject), ``method``,
  ``mae_train_frames``, ``n_train_clips``;
- ``data/apex.csv``: ``sample_id``, ``method``, ``apex_pred``, ``apex_annotated`` (frame numbers);
- ``reports/apex_metrics.json``: :func:`mer_core.apex_scores.score` of every method over all clips
  (``best`` there is descriptive only: it chooses nothing) and ``per_fold`` (how many folds
  chose each spotter);
- ``data/apex_report.json``: what happened (skipped clips, centre-cropped clips, annotated
  fallbacks, timings) and ``face_alignment`` (clips aligned by their eyes, box-crop fallbacks,
  raw data: every clip's 2 x 3 transform from frame px to the cached crop).

Unreadable or missing frames: with ``strict=True`` the stage stops with an error naming the clip
and the file. With ``strict=False`` the clip is *removed from every cache* (all strategies stay
aligned with each other) and listed under ``skipped`` in the report; :func:`mer_core.frame_cache.load_cache` against
the full index then fails loudly, naming the missing ids, rather than returning misaligned rows.
Use :func:`mer_core.frame_cache.cached_ids` to select the rows of the index the caches hold.

Clips run in a ``spawn`` process pool (``workers``): a script that calls
:func:`build_apex_stage` needs the usual ``if __name__ == "__main__":`` guard (notebooks and
pytest need nothing).

A prepared apex-image set (``data.dataset: apex_images``, one face image per clip) has none of
the above but the ``annotated`` cache: :func:`mer_core.apex_single.build_single_image_stage`
(:mod:`mer_core.apex_single`) writes it and a report saying there was nothing to spot.
"""
from __future__ import annotations

import logging
import multiprocessing
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer_core import apex as apex_mod
from mer_core import apex_images, apex_scores, apex_single, frame_cache, handover, io, motion, vocab
from mer_core.faces import FaceNotFoundWarning, align_clip, eye_geometry
from mer_core.images import frame_paths, read_frames

logger = logging.getLogger(__name__)
#: Prefixes of the motion caches: ``flow:annotated`` -> ``data/frames/flow-annotated.npy``,
#: ``diff:annotated`` -> ``data/frames/diff-annotated.npy``.
DIFF, FLOW = "diff", "flow"
assert {DIFF, FLOW} == set(vocab.MOTION), "apex_stage: a motion input without its cache"



class ClipReadError(RuntimeError):
    """A clip's frames are missing or cannot be decoded (the message names clip and file)."""


# ---------------------------------------------------------------------------- strategies

def random_index(sample_id: str, n_frames: int, seed: int = 0) -> int:
    """The ``random`` strategy's frame index (0-based): seeded by ``seed`` and the sample id."""
    rng = np.random.default_rng([int(seed), zlib.crc32(str(sample_id).encode())])
    return int(rng.integers(0, n_frames))


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
            ``face_margin``, ``random_seed``, ``clip_frames``, ``strict``, ``keep_curves``.

    Returns:
        ``sample_id``, ``error`` (None, or the reason when ``strict`` is False), ``n_frames``,
        ``face`` (aligned | eyes | haar | centre: :class:`mer_core.faces.ClipCrop`), ``box``,
        ``alignment`` (:meth:`mer_core.faces.ClipCrop.record` at ``image_size``), ``picks``
        {key: 0-based index} for onset / middle / random / annotated (absent if NA) /
        ``spotted:<m>``, ``crops``
        {0-based index: S x S x 3 uint8}, ``clip`` (T x S x S grey uint8: ``clip_frames`` frames
        evenly spaced over the clip, 0-based indices in ``clip_frames``), ``flows`` {key: the
        onset -> apex flow image (:func:`mer_core.motion.flow_image`)} for ``annotated`` and
        each ``spotted:<m>``, ``diffs`` {key: the apex - onset difference image
        (:func:`mer_core.motion.difference`)} (both empty when ``task["motion"]`` is False),
        ``curves``
        {method: array} if ``keep_curves``.
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
        cut = align_clip(frames[0], task["aligned"], task["face_margin"], where=sid)
    out["warnings"] = [str(w.message) for w in caught]
    # one cut for every frame (eye-aligned warp or box), so spotting sees the clip's own motion
    gray = np.stack([cv2.cvtColor(cut.native(f), cv2.COLOR_RGB2GRAY) for f in frames])
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
    crops = {i: cut.crop(frames[i], size) for i in sorted(set(picks.values()))}
    # the clip LBP-TOP reads: T frames evenly spaced over onset..offset (repeats if n < T)
    steps = np.linspace(0, n - 1, int(task.get("clip_frames", 16))).round().astype(int)
    clip = np.stack([cv2.cvtColor(cut.crop(frames[i], size), cv2.COLOR_RGB2GRAY)
                     for i in steps])
    # onset -> apex optical flow of every apex strategy, on the same crops
    apexes = {k: i for k, i in picks.items() if k == "annotated" or vocab.spotter_of(k)}
    if not task.get("motion", True):  # clip_curves (figures) needs no motion image
        apexes = {}
    flows = {k: motion.flow_image(crops[0], crops[i]) for k, i in apexes.items()}
    diffs = {k: motion.difference(crops[0], crops[i]) for k, i in apexes.items()}
    out.update(n_frames=n, face=cut.how, box=cut.box, alignment=cut.record(size), picks=picks,
               crops=crops, clip=clip,
               clip_frames=steps.tolist(), flows=flows, diffs=diffs)
    if task.get("keep_curves"):
        out["curves"] = curves
    return out


def _worker_init() -> None:
    cv2.setNumThreads(1)


# ---------------------------------------------------------------------------- the stage

def _tasks(index: pd.DataFrame, aligned, apex_cfg, methods, options, strict) -> list[dict]:
    """One task per clip; ``aligned``: one bool, or one per row (a composite)."""
    tasks = []
    each = aligned if isinstance(aligned, list) else [aligned] * len(index)
    for row, row_aligned in zip(index.itertuples(index=False), each):
        a = row.apex
        tasks.append({
            "sample_id": str(row.sample_id), "frames_dir": str(row.frames_dir),
            "onset": int(row.onset), "offset": int(row.offset),
            "apex": None if pd.isna(a) else int(a), "aligned": bool(row_aligned),
            "methods": methods,
            "options": options, "image_size": int(apex_cfg.image_size),
            "face_margin": float(apex_cfg.face_margin), "random_seed": int(apex_cfg.random_seed),
            "clip_frames": int(apex_cfg.clip_frames), "strict": strict,
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
                     report_json: str | Path = handover.REPORT_JSON, strict: bool = True,
                     max_clips: int = 0, progress: bool = True, options: dict | None = None) -> dict:
    """Run the apex stage: spot, score and cache the frames of every strategy.

    Args:
        index: ``data/index.csv`` as a DataFrame (``sample_id``, ``frames_dir``, ``onset``,
            ``apex`` (nullable), ``offset``); row order is the cache order.
        dataset_info: ``data/dataset.json`` (``aligned``, ``fps`` and ``description`` are used).
        apex_cfg: a :class:`mer_core.config.ApexConfig` (methods, smooth, fps, image_size,
            face_margin, random_seed, clip_frames, workers).
        frames_dir: folder of the caches.
        apex_csv, metrics_json, report_json: output files (see the module docstring).
        strict: True: a clip with missing/unreadable frames stops the stage (error names the
            file); False: the clip is dropped from every cache and listed in the report.
        max_clips: > 0: only the first ``max_clips`` clips (smoke runs: the caches then do not
            match the full index, and :func:`mer_core.frame_cache.load_cache` says so).
        progress: tqdm bar over clips.
        options: extra spotter options (see :data:`mer_core.apex.DEFAULTS`); ``smooth`` comes
            from ``apex_cfg``.

    Returns:
        The report dict (also written to ``report_json``), with ``metrics`` added.

    A prepared apex-image set (one image per clip, :mod:`mer_core.apex_images`) has no sequence
    to spot in or to cut frames from: :func:`mer_core.apex_single.build_single_image_stage` caches its images as the
    ``annotated`` frames, nothing else, and says so in the report.

    Raises:
        ClipReadError: strict mode, a clip's frames are missing or unreadable.
        OSError: strict mode, a single-image set's image is unreadable (names it).
        ValueError: an empty index, or no clip left.
    """
    if apex_images.is_single_frame(index, dataset_info):
        return apex_single.build_single_image_stage(
            index, dataset_info, apex_cfg, frames_dir, apex_csv, metrics_json, report_json,
            strict, max_clips, progress)
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
    if dataset_info.get("fps") and float(dataset_info["fps"]) != float(apex_cfg.fps):
        logger.warning("dataset.json says %s fps, params say %s: using the dataset's",
                       dataset_info["fps"], apex_cfg.fps)
    parts = dataset_info.get("parts") or {}
    part_of = index["dataset"].astype(str) if "dataset" in index.columns else None
    if len(parts) > 1 and part_of is not None:  # a composite: each clip as its dataset says
        aligned = part_of.map(lambda d: bool(parts[d]["aligned"])).tolist()
        fps = dict(zip(index["sample_id"].astype(str),
                       part_of.map(lambda d: float(parts[d]["fps"]))))
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
    metrics = apex_scores.score(table, fps=fps, methods=methods)
    best = metrics["best"]  # over every clip: described in the report, chooses nothing
    subject_of = dict(zip(index["sample_id"].astype(str), index["subject"].astype(str)))
    kept_subject = {r["sample_id"]: subject_of[r["sample_id"]] for r in kept}
    choice = apex_scores.choose_per_fold(table, kept_subject, methods)
    fold_method = dict(zip(choice["subject"], choice["method"]))
    metrics["per_fold"] = {m: int(n) for m, n in choice["method"].value_counts().items()}
    # a clip without an annotated apex takes its fold's spotter; a fold without one (no
    # annotated training clip: SMIC-E alone) leaves the annotated strategies uncached
    unresolved = [r["sample_id"] for r in kept if "annotated" not in r["picks"]
                  and not isinstance(fold_method[subject_of[r["sample_id"]]], str)]
    handover.write_apex_outputs(apex_csv, table, metrics_json, metrics)

    # Caches: one array + one id table per strategy, all with the same rows.
    frames_dir = Path(frames_dir)
    fallback, no_face = [], []
    flow_strategies = ["annotated"] * (not unresolved) + [vocab.spotted(m) for m in methods]
    for strategy, motion_kind in [(s, None) for s in vocab.cached_strategies(methods)
                                  if s != "annotated" or not unresolved] + \
            [(s, kind) for kind in (FLOW, DIFF) for s in flow_strategies]:
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
            arrays.append(r["crops"][i] if motion_kind is None
                          else r["flows" if motion_kind == FLOW else "diffs"][key])
            ids.append({"sample_id": r["sample_id"], "frame": onsets[r["sample_id"]] + i,
                        "source": source if motion_kind is None
                        else f"onset -> {source} {motion_kind}"})
        frame_cache.write_cache(frames_dir, f"{motion_kind}:{strategy}" if motion_kind
                                else strategy, np.stack(arrays), pd.DataFrame(ids))
    if unresolved:  # annotated caches of an earlier run must not be read as this run's
        for stale in ("annotated", f"{FLOW}:annotated", f"{DIFF}:annotated"):
            for f in frame_cache.cache_files(frames_dir, stale):
                f.unlink(missing_ok=True)
    frame_cache.write_spotter_choice(frames_dir, choice)
    frame_cache.write_clips(frames_dir, np.stack([r["clip"] for r in kept]), pd.DataFrame(
        [{"sample_id": r["sample_id"],
          "frames": " ".join(str(onsets[r["sample_id"]] + i) for i in r["clip_frames"])}
         for r in kept]))
    for r in kept:
        if "annotated" not in r["picks"]:
            fallback.append(r["sample_id"])
        if r["face"] == "centre":
            no_face.append(r["sample_id"])
            for w in r.get("warnings", []):
                warnings.warn(w, FaceNotFoundWarning, stacklevel=2)
    by_eyes = [r["sample_id"] for r in kept if r["face"] == "eyes"]
    box_crop = [r["sample_id"] for r in kept if r["face"] == "haar"]
    if box_crop:
        logger.warning("apex: %d clips: face found but no eye pair, box crop without rotation: "
                       "%s", len(box_crop), ", ".join(box_crop))

    report = {
        "dataset": dataset_info.get("description", dataset_info.get("dataset", "")),
        "aligned": aligned if isinstance(aligned, bool) else all(aligned),
        "fps": fps if not isinstance(fps, dict) else sorted(set(fps.values())),
        "methods": methods, "best_all_clips": best,
        "options": {m: {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in apex_mod._options(opts, m).items()}
                    for m in methods if m != "middle"},
        "image_size": int(apex_cfg.image_size), "face_margin": float(apex_cfg.face_margin),
        "random_seed": int(apex_cfg.random_seed), "workers": int(apex_cfg.workers),
        "strict": bool(strict), "max_clips": int(max_clips or 0),
        "n_index": int(len(index)), "n_cached": len(kept), "n_frames": int(sum(r["n_frames"] for r in kept)),
        "skipped": skipped, "no_face_centre_crop": no_face,
        "face_alignment": _alignment_report(kept, aligned, by_eyes, box_crop, no_face,
                                            float(apex_cfg.face_margin)),
        "annotated_fallback": {"strategy": "spotted:best (the spotter of each fold)",
                               "clips": fallback},
        "no_annotated_apex": {"clips": unresolved, "effect": (
            "no annotated apex in these clips' training folds: the annotated strategies "
            "(annotated, flow:annotated, diff:annotated) and spotted:best are not available"
            ) if unresolved else ""},
        "spotter_choice": {"file": frame_cache.CHOICE_CSV, "per_fold": metrics["per_fold"],
                           "rule": "per fold: lowest MAE on the training subjects' clips"},
        "strategies": {s: f"{vocab.strategy_stem(s)}.npy" for s in vocab.cached_strategies(methods)
                       if s != "annotated" or not unresolved},
        "clips": {"file": f"{frame_cache.CLIPS}.npy", "frames": int(apex_cfg.clip_frames),
                  "rule": "evenly spaced over onset..offset, grey, face-cropped"},
        "flow": {"method": motion.flow_method(), "scale_px": motion.FLOW_SCALE,
                 "files": {s: f"{vocab.strategy_stem(f'{FLOW}:{s}')}.npy"
                           for s in flow_strategies},
                 "rule": "onset -> apex of each strategy, on the cached face crops"},
        "diff": {"gain": motion.DIFF_GAIN,
                 "files": {s: f"{vocab.strategy_stem(f'{DIFF}:{s}')}.npy"
                           for s in flow_strategies},
                 "rule": "128 + gain x (apex - onset) per RGB channel, on the cached crops"},
        "frames_dir": str(frames_dir),
        "seconds": {"spot_and_crop": round(t_spot, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
    io.write_json(report_json, report)
    return {**report, "metrics": metrics}


def _alignment_report(kept, aligned, by_eyes, box_crop, no_face, margin) -> dict:
    span, row = eye_geometry(margin)
    aligned = all(aligned) if isinstance(aligned, list) else aligned  # a composite: per clip
    rule = ("aligned data: whole frame resized" if aligned else
            f"one similarity transform per clip from its onset frame's eyes (Haar), applied to "
            f"every frame: eye line level, inter-ocular distance {span:.3f} of the side, eye "
            f"midpoint at (0.5, {row:.3f}); no eye pair: face box crop (no rotation); no "
            f"face: centre crop")
    return {"rule": rule, "aligned_by_eyes": len(by_eyes), "no_eyes_box_crop": box_crop,
            "no_face_centre_crop": len(no_face),
            # raw data: frame px -> cached crop px, per clip (aligned data: a plain resize)
            "transforms": {} if aligned else
            {r["sample_id"]: r["alignment"]["transform"] for r in kept if r["face"] != "aligned"}}


def clip_curves(row, dataset_info: dict, methods, apex_cfg=None, **options) -> dict:
    """Curves of one index row (for plots): ``{"frames": numbers, method: curve, ...}``.

    Raises:
        mer_core.apex_images.SingleFrameError: a prepared apex image (no sequence).
    """
    apex_images.require_sequences(pd.DataFrame([dict(row)]), dataset_info, "clip_curves")
    opts = dict(options)
    if apex_cfg is not None:
        opts.setdefault("smooth", int(apex_cfg.smooth))
    part = (dataset_info.get("parts") or {}).get(str(row.get("dataset", "")), dataset_info)
    task = {"sample_id": str(row["sample_id"]), "frames_dir": str(row["frames_dir"]),
            "onset": int(row["onset"]), "offset": int(row["offset"]), "apex": None,
            "aligned": bool(part.get("aligned", False)), "methods": list(methods),
            "options": opts, "image_size": 8,
            "face_margin": float(apex_cfg.face_margin) if apex_cfg else 0.2,
            "random_seed": 0, "strict": True, "keep_curves": True, "motion": False}
    r = process_clip(task)
    return {"frames": np.arange(int(row["onset"]), int(row["offset"]) + 1), **r["curves"]}


__all__ = ["ClipReadError", "random_index", "read_clip", "process_clip", "build_apex_stage",
           "clip_curves"]
