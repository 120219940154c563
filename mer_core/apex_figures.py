"""Figures and display helpers of the apex stage (``notebooks/01_apex_extraction.ipynb``).

The stage itself is :func:`mer_core.apex_stage.build_apex_stage`; this module only shows what it
wrote: the spotters' errors against the annotated apex, the per-frame curves of a few clips, the
face alignment of raw frames and the cached crops of every frame strategy. Figures are returned
(not shown or saved) so the notebook displays them and writes them where ``dvc.yaml`` expects them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import cv2
import numpy as np
import pandas as pd

from mer_core import apex_stage, faces, frame_cache, vocab

#: The keys of :func:`mer_core.apex_stage.build_apex_stage`'s result the notebook reports last.
REPORT_KEYS = ("n_index", "n_cached", "skipped", "no_face_centre_crop", "face_alignment",
               "annotated_fallback", "seconds")


def dataset_line(info: Mapping, n_clips: int) -> str:
    """One Markdown line naming the dataset, the clip count and how faces are cropped.

    Args:
        info: ``data/dataset.json`` (``description``, ``aligned``).
        n_clips: clips in the index.

    Returns:
        The line, e.g. ``**Dataset: ...** · 255 clips · aligned faces (resize only)``.
    """
    crop = "aligned faces (resize only)" if info["aligned"] else \
        "raw frames (eye-aligned Haar face crop)"
    if info.get("single_frame"):
        crop = "one prepared face image per clip (resize only, no sequence)"
    return f"**Dataset: {info['description']}** · {n_clips} clips · {crop}"


def metrics_table(metrics: Mapping) -> pd.DataFrame:
    """The spotters' scores (``reports/apex_metrics.json``) as one row per method.

    Args:
        metrics: the stage's metrics: :func:`mer_core.apex_scores.score`'s dict plus ``per_fold``
            (how often each spotter was chosen for a fold).

    Returns:
        DataFrame indexed by ``method`` with the score columns (``mae_frames``, ``hit5``, ...);
        its last row, ``per_fold``, holds the fold counts in the columns named by the chosen
        spotters (``best`` is left out).
    """
    table = pd.DataFrame({m: v for m, v in metrics.items() if m != "best"}).T
    table.index.name = "method"
    return table


def scored(metrics: Mapping) -> bool:
    """Whether any spotter could be scored: False without an annotated apex (SMIC-E)."""
    return any(isinstance(v, Mapping) and v.get("n_scored") for v in metrics.values())


def skip_line(what: str, single: bool) -> str:
    """The line a notebook prints instead of a section it cannot draw: one prepared image per
    clip (no sequence), or no annotated apex to score the spotters against."""
    if single:
        return f"{what}: skipped (one prepared image per clip: no frame sequence, nothing spotted)."
    return (f"{what}: skipped (no clip has an annotated apex: the spotters ran, but there is "
            "nothing to score them against).")


def best_note(metrics: Mapping) -> str:
    """Markdown line with the best spotter's MAE and, for comparison, that of ``middle``.

    Args:
        metrics: :func:`mer_core.apex_scores.score`'s dict.

    Returns:
        The line, e.g. ``**Best spotter: `lbp`** (MAE 3.1 frames = 15.5 ms; `middle`: 9 frames)``.
    """
    best = metrics["best"]
    middle = metrics["middle"]["mae_frames"] if "middle" in metrics else "n/a"
    return (f"**Best spotter: `{best}`** (MAE {metrics[best]['mae_frames']} frames = "
            f"{metrics[best]['mae_ms']} ms; `middle`: {middle} frames)")


def apex_errors(apex_table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``data/apex.csv`` with an annotated apex, with their signed error.

    Args:
        apex_table: long table ``sample_id``, ``method``, ``apex_pred``, ``apex_annotated``.

    Returns:
        Those rows (clips without an annotation dropped) plus ``error`` = predicted - annotated
        apex, in frames.
    """
    errors = apex_table.dropna(subset=["apex_annotated"]).copy()
    errors["error"] = errors["apex_pred"] - errors["apex_annotated"]
    return errors


def error_figure(errors: pd.DataFrame, methods: Sequence[str], title: str = "",
                 max_error: float = 40):
    """Signed error per method (box plot) and the cumulative share of clips by |error|.

    Args:
        errors: :func:`apex_errors`'s table.
        methods: the methods, in their order on the axes.
        title: the figure's title (e.g. the dataset's description).
        max_error: right end of the cumulative plot's x axis (frames).

    Returns:
        A matplotlib Figure with two axes: the box plot and the cumulative |error| curves (one
        line per method, dotted marks at ±5 and ±10 frames).
    """
    import matplotlib.pyplot as plt

    order = list(methods)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    axes[0].boxplot([errors.loc[errors.method == m, "error"] for m in order], showfliers=True)
    axes[0].set_xticks(range(1, len(order) + 1), order)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_ylabel("predicted − annotated (frames)")
    axes[0].set_title("signed error")
    for m in order:
        e = np.sort(errors.loc[errors.method == m, "error"].abs().to_numpy())
        axes[1].plot(e, np.arange(1, len(e) + 1) / len(e), label=m)
    axes[1].set_xlim(0, max_error)
    axes[1].axvline(5, color="grey", lw=0.8, ls=":")
    axes[1].axvline(10, color="grey", lw=0.8, ls=":")
    axes[1].set_xlabel("|error| (frames)")
    axes[1].set_ylabel("fraction of clips")
    axes[1].set_title("cumulative |error| (hit rate at ±k)")
    axes[1].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def example_clips(errors: pd.DataFrame, method: str, n_worst: int = 2,
                  n_typical: int = 2) -> list[str]:
    """Clips worth a look: where ``method`` errs most, then typical ones (median |error|).

    Args:
        errors: :func:`apex_errors`'s table.
        method: the spotter whose error ranks the clips (the notebook: the best one).
        n_worst: clips with the largest |error|, worst first.
        n_typical: clips from the middle of the |error| ranking.

    Returns:
        Sample ids (a clip can appear twice when there are very few clips).
    """
    err = errors[errors.method == method].set_index("sample_id")["error"].abs().sort_values()
    mid = len(err) // 2
    worst = list(err.index[-n_worst:][::-1]) if n_worst else []
    return worst + list(err.index[mid: mid + n_typical])


def example_curves(index: pd.DataFrame, dataset_info: Mapping, sample_ids: Sequence[str],
                   apex_cfg) -> dict[str, dict]:
    """Every spotter's per-frame curve of some clips (``middle`` has none and is left out).

    Args:
        index: the sample index.
        dataset_info: ``data/dataset.json``.
        sample_ids: the clips (e.g. :func:`example_clips`).
        apex_cfg: the stage's :class:`mer_core.config.ApexConfig` (methods, smoothing, margin).

    Returns:
        ``{sample_id: {"frames": frame numbers, method: curve, ...}}``
        (:func:`mer_core.apex_stage.clip_curves` of each clip).
    """
    rows = index.set_index("sample_id")
    methods = [m for m in apex_cfg.method_list if m != "middle"]
    return {sid: apex_stage.clip_curves({"sample_id": sid, **rows.loc[sid]}, dataset_info, methods,
                                    apex_cfg)
            for sid in dict.fromkeys(sample_ids)}


def spotting_curves_figure(index: pd.DataFrame, errors: pd.DataFrame,
                           curves: Mapping[str, Mapping], best: str,
                           sample_ids: Sequence[str] | None = None):
    """One panel per clip: each spotter's curve (scaled to its maximum) with its predicted apex
    (dotted, same colour) and the annotated apex (black).

    Args:
        index: the sample index (``apex``, ``emotion``, ``aus`` of the clips).
        errors: :func:`apex_errors`'s table (the predicted apexes).
        curves: :func:`example_curves`'s dict.
        best: the spotter whose |error| each panel's title gives.
        sample_ids: the clips, one panel each, in this order; default: the keys of ``curves``.

    Returns:
        A matplotlib Figure with one axes per clip, each with one line per spotter.
    """
    import matplotlib.pyplot as plt

    show = list(curves) if sample_ids is None else list(sample_ids)
    rows = index.set_index("sample_id")
    err = errors[errors.method == best].set_index("sample_id")["error"].abs()
    fig, axes = plt.subplots(len(show), 1, figsize=(10, 2.3 * len(show)), squeeze=False)
    methods: list[str] = []
    for ax, sid in zip(axes[:, 0], show):
        row, cur = rows.loc[sid], curves[sid]
        methods = [m for m in cur if m != "frames"]
        for m in methods:
            c = cur[m] / max(cur[m].max(), 1e-9)
            line, = ax.plot(cur["frames"], c, label=m)
            p = errors[(errors.sample_id == sid) & (errors.method == m)]["apex_pred"].iloc[0]
            ax.axvline(p, color=line.get_color(), ls=":", lw=1.5)
        ax.axvline(row["apex"], color="black", lw=1.5, label="annotated")
        ax.set_title(f"{sid} ({row['emotion']}, AUs {row['aus']}); |error| of {best}: "
                     f"{err[sid]:.0f}", fontsize=9)
        ax.set_ylabel("score")
    axes[0, 0].legend(fontsize=8, ncol=len(methods) + 1)
    axes[-1, 0].set_xlabel("frame number")
    fig.tight_layout()
    return fig


def example_crops(frames_dir, index: pd.DataFrame, methods: Sequence[str], n: int = 4
                  ) -> tuple[list[str], dict[str, tuple[np.ndarray, list[int]]]]:
    """The cached crops of the first ``n`` cached clips under every frame strategy.

    Args:
        frames_dir: the caches' folder (``data/frames``).
        index: the sample index.
        methods: the spotters run (their ``spotted:<m>`` caches are shown too).
        n: clips to show.

    Returns:
        ``(sample_ids, {strategy: (images n x S x S x 3, frame numbers)})``, strategies in
        :func:`mer_core.vocab.cached_strategies` order.
    """
    ids = frame_cache.cached_ids(frames_dir, "onset")["sample_id"].tolist()
    cached = index.set_index("sample_id").loc[ids].reset_index()
    k = min(n, len(cached))
    crops = {}
    for s in vocab.cached_strategies(methods):
        if not frame_cache.cache_files(frames_dir, s)[0].is_file():
            continue  # no annotated apex: no annotated cache
        arr = frame_cache.load_cache(frames_dir, s, cached)
        numbers = frame_cache.cached_ids(frames_dir, s)["frame"]
        crops[s] = (arr[:k], [numbers[i] for i in range(k)])
    return cached["sample_id"].tolist()[:k], crops


def crops_figure(sample_ids: Sequence[str], crops: Mapping[str, tuple[np.ndarray, Sequence[int]]]):
    """A grid of cached crops: one row per clip, one column per frame strategy.

    Args:
        sample_ids: the clips (rows), as :func:`example_crops` returns them.
        crops: ``{strategy: (images, frame numbers)}`` (:func:`example_crops`).

    Returns:
        A matplotlib Figure with ``len(sample_ids) x len(crops)`` axes, each showing one image
        with its frame number below it.
    """
    import matplotlib.pyplot as plt

    strategies = list(crops)
    fig, axes = plt.subplots(len(sample_ids), len(strategies),
                             figsize=(1.45 * len(strategies), 1.6 * len(sample_ids)),
                             squeeze=False)
    for j, s in enumerate(strategies):
        images, numbers = crops[s]
        for i, sid in enumerate(sample_ids):
            ax = axes[i, j]
            ax.imshow(images[i])
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_xlabel(f"frame {numbers[i]}", fontsize=7)
            if i == 0:
                ax.set_title(s, fontsize=8)
            if j == 0:
                ax.set_ylabel(str(sid).split("/", 1)[1], fontsize=7)
    fig.tight_layout()
    return fig


def flow_figure(frames_dir, index: pd.DataFrame, labels: Sequence[str],
                strategy: str = "annotated", step: int = 4):
    """Onset -> apex optical flow per class: the mean flow magnitude of the class's clips
    (image) with their mean displacement (arrows), from the ``flow:<strategy>`` cache.

    Args:
        frames_dir: the apex stage's caches.
        index: the index (``sample_id``, ``label``); clips the stage skipped are left out.
        labels: the classes, one panel each.
        strategy: whose apex the flow ends at (``annotated`` or ``spotted:<method>``).
        step: one arrow every ``step`` px.

    Returns:
        A matplotlib Figure with one panel per class (its clip count in the title).
    """
    import matplotlib.pyplot as plt

    from mer_core.motion import decode_flow

    index = frame_cache.cached_index(index, frames_dir)
    flow = decode_flow(frame_cache.load_cache(frames_dir, f"{apex_stage.FLOW}:{strategy}",
                                              index))
    fig, axes = plt.subplots(1, len(labels), figsize=(2.1 * len(labels), 2.5), squeeze=False)
    vmax = float(np.percentile(flow[..., 2], 99)) or 1.0
    for ax, label in zip(axes[0], labels):
        rows = (index["label"].astype(str) == label).to_numpy()
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{label} ({rows.sum()})", fontsize=8)
        if not rows.any():
            continue
        mean = flow[rows].mean(axis=0)
        ax.imshow(mean[..., 2], cmap="magma", vmin=0, vmax=vmax)
        y, x = np.mgrid[step // 2:mean.shape[0]:step, step // 2:mean.shape[1]:step]
        ax.quiver(x, y, mean[y, x, 0], -mean[y, x, 1], color="cyan", angles="xy", width=0.006)
    fig.suptitle(f"Onset -> {strategy} optical flow, mean per class (magnitude; arrows: mean "
                 "displacement)", fontsize=8)
    fig.tight_layout()
    return fig


def stage_report(result: Mapping) -> dict:
    """What the stage had to work around (skipped clips, centre crops, box crops without eyes,
    annotation fallbacks) and its timings: the :data:`REPORT_KEYS` of
    :func:`mer_core.apex_stage.build_apex_stage`'s result (the per-clip transforms of
    ``face_alignment`` left out).

    Args:
        result: the stage's result dict.

    Returns:
        The sub-dict, ready for ``json.dumps``.
    """
    out = {k: result[k] for k in REPORT_KEYS}
    if isinstance(out["face_alignment"], Mapping):
        out["face_alignment"] = {k: v for k, v in out["face_alignment"].items()
                                 if k != "transforms"}
    return out


# ---------------------------------------------------------------------------- face alignment

def alignment_note(info: Mapping, result: Mapping) -> str:
    """One Markdown line on how the clips' faces were cut.

    Args:
        info: ``data/dataset.json`` (``aligned``).
        result: the stage's result (``face_alignment``, ``no_face_centre_crop``,
            ``image_size``).

    Returns:
        Aligned data: that the frames are face crops already (resize only, nothing to show);
        raw frames: how many clips were aligned by their eyes, which fell back to the face box
        crop (no eyes) and which to the centre crop (no face).
    """
    if info["aligned"]:
        return (f"**Frames are face crops already** (`dataset.json`: aligned): no detection, "
                f"no alignment; every frame is resized to {result['image_size']} px. Nothing "
                "to show.")
    fa = result["face_alignment"]
    box, centre = fa["no_eyes_box_crop"], result["no_face_centre_crop"]
    line = (f"**Face alignment:** {fa['aligned_by_eyes']} clips aligned by their eyes, "
            f"{len(box)} box crops (no eyes), {len(centre)} centre crops (no face).")
    if box:
        line += " No eyes: " + ", ".join(f"`{s}`" for s in box) + "."
    return line


def alignment_examples(index: pd.DataFrame, info: Mapping, result: Mapping, apex_cfg,
                       n: int = 4) -> list[dict]:
    """The onset frames of a few raw clips with their cut (:func:`mer_core.faces.align_clip`).

    Clips aligned by their eyes first, then box crops (no eyes), then centre crops (no face),
    ``n`` in all, at most ``n - 1`` of the first kind while the others exist.

    Args:
        index: the sample index.
        info: ``data/dataset.json`` (``aligned``).
        result: the stage's result (``face_alignment``, ``no_face_centre_crop``).
        apex_cfg: the stage's :class:`mer_core.config.ApexConfig` (``face_margin``).
        n: clips to show.

    Returns:
        ``[{"sample_id", "frame" (onset, RGB), "cut" (:class:`mer_core.faces.ClipCrop`)}]``;
        empty for aligned data.
    """
    if info["aligned"]:
        return []
    fa = result["face_alignment"]
    box, centre = list(fa["no_eyes_box_crop"]), list(result["no_face_centre_crop"])
    bad = set(box) | set(centre)
    eyes = [s for s in fa.get("transforms", {}) if s not in bad]
    others = box[:max(1, n // 4)] + centre[:max(1, n // 4)]
    chosen = (eyes[:max(n - len(others), 1)] + others)[:n]
    rows = index.set_index("sample_id")
    out = []
    for sid in chosen:
        row = rows.loc[sid]
        frame = apex_stage.read_clip(row["frames_dir"], row["onset"], row["onset"], sid)[0]
        cut = faces.align_clip(frame, False, float(apex_cfg.face_margin), where=sid)
        out.append({"sample_id": sid, "frame": frame, "cut": cut})
    return out


def alignment_figure(examples: Sequence[Mapping], size: int):
    """Raw onset frame, aligned face and cached crop of each clip (one row per clip).

    The raw frame shows the Haar face box (yellow), the eye centres (red) and the outline of
    what is cut (cyan: the eye-aligned square, mapped back into the frame, or the box).

    Args:
        examples: :func:`alignment_examples`'s list.
        size: side of the cached crops (``image_size``).

    Returns:
        A matplotlib Figure with three axes per clip, or None when ``examples`` is empty
        (aligned data: nothing to show).
    """
    if not examples:
        return None
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 3, figsize=(7.5, 2.5 * len(examples)),
                             squeeze=False)
    for ax_row, ex in zip(axes, examples):
        frame, cut = ex["frame"], ex["cut"]
        native = cut.native(frame)
        ax = ax_row[0]
        ax.imshow(frame)
        if cut.face is not None:
            x, y, w, h = cut.face
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="yellow", lw=1))
        if cut.eyes is not None:
            ax.plot(*zip(*cut.eyes), "r+", ms=8)
        k = native.shape[0]
        inverse = cv2.invertAffineTransform(cut.transform(k))
        corners = np.array([[0, 0, 1], [k, 0, 1], [k, k, 1], [0, k, 1], [0, 0, 1]], float)
        outline = corners @ inverse.T
        ax.plot(outline[:, 0], outline[:, 1], color="cyan", lw=1)
        ax.set_ylabel(str(ex["sample_id"]).split("/", 1)[-1], fontsize=7)
        ax.set_title(f"raw onset ({cut.how}{': ' + cut.note if cut.note else ''})", fontsize=8)
        ax_row[1].imshow(native)
        ax_row[1].set_title(f"aligned ({native.shape[1]} x {native.shape[0]} px)", fontsize=8)
        ax_row[2].imshow(cut.crop(frame, size))
        ax_row[2].set_title(f"cached crop ({size} px)", fontsize=8)
        for a in ax_row:
            a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    return fig


__all__ = ["REPORT_KEYS", "dataset_line", "metrics_table", "scored", "skip_line", "best_note", "apex_errors",
           "error_figure", "example_clips", "example_curves", "spotting_curves_figure",
           "example_crops", "crops_figure", "flow_figure", "stage_report", "alignment_note",
           "alignment_examples", "alignment_figure"]
