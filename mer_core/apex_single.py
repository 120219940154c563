"""The apex stage of a prepared apex-image set: one face image per clip, no sequence.

A set read by :mod:`mer_core.apex_images` (``data.dataset: apex_images``) has no onset, offset or
frames in between, so nothing is spotted and only one frame strategy exists: ``annotated``, the
image itself (the label list's word that it is the apex). :func:`build_single_image_stage` (called
by :func:`mer_core.apex_stage.build_apex_stage` for such an index) reads each image (colour or
grey, decoded to 3-channel RGB uint8), resizes the whole image to ``apex.image_size`` square like
the sequence path resizes aligned frames (:func:`mer_core.faces.crop` of the full frame: the
images are prepared face crops, so no face is detected), and writes

- ``data/frames/annotated.npy|csv`` (``source`` ``annotated``, ``frame`` 0): the only cache;
- ``data/apex.csv`` with its header and no row (no spotter ran), ``reports/apex_metrics.json``
  ``{"single_frame": true, "per_fold": {}, "best": null, "note": ...}`` and
  ``data/apex_report.json`` with ``single_frame: true``, every key the later stages and the
  notebook read, and ``not_made`` (what the sequence path would add and why it cannot).

No ``onset`` / ``middle`` / ``random`` / ``spotted:*`` cache, no ``clips.npy``, no motion cache
and no ``spotter_choice.csv``: the training and baselines stages stop (or skip) what needs them
with a message saying why (:func:`mer_core.apex_images.require_frames`,
:func:`mer_core.baselines.applicable`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mer_core import apex_images, frame_cache, handover, io
from mer_core.faces import crop
from mer_core.images import read_frames

logger = logging.getLogger(__name__)

#: The cache a single-image set has.
STRATEGY = apex_images.ANNOTATED
#: The spotting-free apex metrics (``reports/apex_metrics.json``).
NOTE = ("single prepared images: no frame sequence, no spotting; the image is the annotated "
        "apex")
#: What the sequence path writes and this one cannot, with the reason (the report's ``not_made``).
NOT_MADE = {
    "onset, middle, random frames": "no sequence: the image is the only frame",
    "spotted:<method> frames and scores, spotter_choice.csv": "no sequence to spot in",
    "clips.npy (LBP-TOP)": "no sequence onset..offset",
    "flow-* and diff-* motion images": "no onset frame",
}


def read_image(path, size: int, sample_id: str = "") -> np.ndarray:
    """One prepared face image as the ``annotated`` cache holds it.

    Args:
        path: the image (colour or grey; any suffix of :data:`mer_core.images.IMAGE_SUFFIXES`).
        size: side of the square output (``apex.image_size``).
        sample_id: the clip, for the error message.

    Returns:
        ``size x size x 3`` RGB uint8: the whole image resized (grey images get three equal
        channels).

    Raises:
        OSError: the image is missing, empty, truncated or cannot be decoded (names the clip
            and the file).
    """
    try:
        image = read_frames([Path(path)])[0]
    except (OSError, ValueError) as e:
        raise OSError(f"{sample_id or path}: {e}") from None
    h, w = image.shape[:2]
    return crop(image, (0, 0, w, h), int(size))


def _image_paths(index: pd.DataFrame) -> list[str]:
    """The ``image`` column, checked: every row of a single-image index names its image."""
    if "image" not in index.columns:
        raise ValueError(f"the index has no 'image' column: a {apex_images.NAME} index (from "
                         "mer_core.datasets.load_index) names each clip's image there")
    paths = index["image"].fillna("").astype(str).str.strip()
    empty = index.loc[paths == "", "sample_id"].astype(str).tolist()
    if empty:
        raise ValueError(f"{len(empty)} row(s) of the index have no image (a mix of single "
                         f"images and sequences cannot be cached as single images): "
                         f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    return paths.tolist()


def build_single_image_stage(index: pd.DataFrame, dataset_info: dict, apex_cfg,
                             frames_dir: str | Path = "data/frames",
                             apex_csv: str | Path = "data/apex.csv",
                             metrics_json: str | Path = "reports/apex_metrics.json",
                             report_json: str | Path = handover.REPORT_JSON,
                             strict: bool = True, max_clips: int = 0,
                             progress: bool = True) -> dict:
    """The apex stage of a single-image set: cache every image as the ``annotated`` frame.

    Args:
        index: ``data/index.csv`` of an ``apex_images`` set (``sample_id``, ``image``); row
            order is the cache order.
        dataset_info: ``data/dataset.json`` (``description`` is reported).
        apex_cfg: a :class:`mer_core.config.ApexConfig` (only ``image_size`` applies).
        frames_dir: folder of the cache.
        apex_csv, metrics_json, report_json: the stage's other outputs (module docstring).
        strict: True: an unreadable image stops the stage (the error names clip and file);
            False: its clip is left out of the cache and listed under ``skipped``.
        max_clips: > 0: only the first ``max_clips`` clips (smoke runs).
        progress: tqdm bar over the images.

    Returns:
        The report (also written to ``report_json``) with ``metrics`` added.

    Raises:
        OSError: strict, an image cannot be read.
        ValueError: an empty index, a row without an image, or no image left.
    """
    t0 = time.perf_counter()
    if index.empty:
        raise ValueError("the index is empty: no image to cache")
    if max_clips and max_clips > 0:
        index = index.iloc[: int(max_clips)]
    paths = _image_paths(index)
    size = int(apex_cfg.image_size)
    rows = list(zip(index["sample_id"].astype(str), paths,
                    pd.to_numeric(index["apex"], errors="coerce").fillna(0).astype(int)))
    if progress:
        from tqdm.auto import tqdm
        rows = tqdm(rows, desc="apex: images", unit="image")
    images, ids, skipped = [], [], []
    for sid, path, frame in rows:
        try:
            images.append(read_image(path, size, sid))
        except OSError as e:
            if strict:
                raise
            logger.warning("apex: skipped %s: %s", sid, e)
            skipped.append({"sample_id": sid, "reason": str(e)})
            continue
        ids.append({"sample_id": sid, "frame": int(frame), "source": STRATEGY})
    if not images:
        raise ValueError(f"apex: every image was skipped ({len(skipped)}); first: "
                         f"{skipped[0]['reason'] if skipped else '-'}")
    t_read = time.perf_counter() - t0
    frames_dir = Path(frames_dir)
    frame_cache.write_cache(frames_dir, STRATEGY, np.stack(images), pd.DataFrame(ids))
    metrics = {"single_frame": True, "per_fold": {}, "best": None, "note": NOTE}
    table = pd.DataFrame({"sample_id": pd.Series(dtype=str), "method": pd.Series(dtype=str),
                          "apex_pred": pd.Series(dtype="Int64"),
                          "apex_annotated": pd.Series(dtype="Int64")})
    handover.write_apex_outputs(apex_csv, table, metrics_json, metrics)
    report = {
        "single_frame": True,
        "dataset": dataset_info.get("description", dataset_info.get("dataset", "")),
        "input": f"one prepared face image per clip ({apex_images.NAME}): no frame sequence, "
                 "no spotting",
        "face": "prepared face crops: each whole image resized to image_size square, no face "
                "detection",
        "methods": [], "best_all_clips": None,
        "image_size": size, "strict": bool(strict), "max_clips": int(max_clips or 0),
        "n_index": int(len(index)), "n_cached": len(ids), "n_frames": len(ids),
        "skipped": skipped, "no_face_centre_crop": [],
        "face_alignment": {"rule": "prepared face images: each whole image resized",
                           "aligned_by_eyes": 0, "no_eyes_box_crop": [],
                           "no_face_centre_crop": 0, "transforms": {}},
        "annotated_fallback": {"strategy": None, "clips": []},
        "spotter_choice": None,
        "strategies": {STRATEGY: frame_cache.cache_files(frames_dir, STRATEGY)[0].name},
        "clips": None, "flow": None, "diff": None,
        "not_made": NOT_MADE,
        "frames_dir": str(frames_dir),
        "seconds": {"read_and_resize": round(t_read, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
    io.write_json(report_json, report)
    return {**report, "metrics": metrics}




def summary_line(result: dict) -> str:
    """What the stage did, in one line (the notebook prints it)."""
    skipped = f", {len(result['skipped'])} skipped" if result["skipped"] else ""
    return (f"{result['n_cached']} single images cached as '{STRATEGY}' at "
            f"{result['image_size']} px{skipped} in {result['seconds']['total']} s; no spotting "
            "(no frame sequence)")


def image_grid_figure(frames_dir, index: pd.DataFrame, labels, per_class: int = 6):
    """The cached images, a row per class: the first ``per_class`` clips of each.

    Args:
        frames_dir: the stage's cache folder.
        index: the index (``sample_id``, ``label``, ``subject``); rows not cached are left out.
        labels: the classes, one row each (in this order).
        per_class: images shown per class.

    Returns:
        A matplotlib Figure, ``len(labels)`` x ``per_class`` axes (a class's row says how many
        clips it has; empty cells stay blank).
    """
    import matplotlib.pyplot as plt

    index = apex_images.cached_index(index, frames_dir, {"single_frame": True})
    arr = frame_cache.load_cache(frames_dir, STRATEGY, index)
    labels = list(labels)
    fig, axes = plt.subplots(len(labels), per_class, squeeze=False,
                             figsize=(1.3 * per_class, 1.5 * len(labels)))
    for i, label in enumerate(labels):
        rows = np.flatnonzero((index["label"].astype(str) == label).to_numpy())
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(rows):
                ax.imshow(arr[rows[j]])
                ax.set_xlabel(str(index["subject"].iloc[rows[j]]), fontsize=7)
            else:  # blank, but the row keeps its class label
                for spine in ax.spines.values():
                    spine.set_visible(False)
        axes[i, 0].set_ylabel(f"{label}\n({len(rows)} clips)", fontsize=8)
    fig.suptitle("Cached images (one per clip, the annotated apex), per class", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["STRATEGY", "NOTE", "NOT_MADE", "read_image", "build_single_image_stage",
           "summary_line", "image_grid_figure"]
