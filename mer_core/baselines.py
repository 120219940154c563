"""Classical baselines on the same leave-one-subject-out folds as the deep rows.

Three rows (:data:`mer_core.vocab.BASELINES`, features in :data:`FEATURES`): LBP-TOP of the
onset..offset clip with a linear SVM (Zhao & Pietikainen 2007, as in the CASME II paper), and two
linear probes (logistic regression) on grey pixels: the apex frame, and apex minus onset.

Every option is fixed in advance (``params.yaml`` section ``baselines``) except the
regularisation C, which each fold chooses by group k-fold cross-validation over its own training
subjects (inner predictions pooled and scored by UF1); the test subject never takes part in a
choice. Then the model is refitted on all training clips with the chosen C.

The test predictions of every C of the grid are kept too (``grid_predictions.csv``): the leakage
check (:mod:`mer_core.leakage`) shows what choosing C on the test subject would have given, as
it does for the deep rows' epochs. Outputs per baseline, in ``results/baselines/<name>/``:
``predictions.csv`` and ``run.json`` (formats of :mod:`mer_core.handover`, as a train stage
writes them), and the two files this module owns: ``choices.csv`` (per fold: the C chosen, its
inner UF1, sizes, seconds) and ``grid_predictions.csv`` (the test predictions of every C).

A prepared apex-image set (one image per clip) has no clip and no onset frame: only the probe on
the apex pixels runs there, and :func:`applicable` names the skipped baselines with the reason
(the baselines, evaluate and table4 notebooks all call it, so they agree on the rows).
"""
from __future__ import annotations

import hashlib
import time
from importlib import import_module
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
from skimage.feature import local_binary_pattern
from threadpoolctl import threadpool_limits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mer_core import frame_cache, handover, io, metrics, vocab
from mer_core.composite import require_annotated_parts
from mer_core.config import BaselinesConfig
from mer_core.frame_cache import FoldFrames

#: Test predictions of every C of the grid, per fold (for the leakage check).
GRID_CSV = "grid_predictions.csv"


@dataclass(frozen=True)
class BaselineSpec:
    """How one baseline is fitted.

    Attributes:
        kind: ``svm`` (linear SVM) or ``logreg`` (logistic regression).
        needs: ``clips`` (LBP-TOP of the clip), ``apex`` (apex pixels) or ``apex-onset``
            (apex minus onset pixels).
    """
    kind: str
    needs: str


#: Baseline name -> spec, in the order of :data:`mer_core.vocab.BASELINES`.
FEATURES = dict(zip(vocab.BASELINES, (BaselineSpec("svm", "clips"),
                                      BaselineSpec("logreg", "apex"),
                                      BaselineSpec("logreg", "apex-onset")), strict=True))
#: The inputs that need a frame sequence, with what they need of it (a prepared apex-image set,
#: one image per clip, has none: :func:`applicable`).
SEQUENCE_NEEDS = {"clips": "the clip onset..offset (clips.npy)",
                  "apex-onset": "the onset frame"}


def applicable(cfg: BaselinesConfig, dataset_info: dict | None
               ) -> tuple[BaselinesConfig, dict[str, str]]:
    """The baselines of ``cfg`` this input allows, and why the others are skipped.

    A prepared apex-image set (``dataset.json``: ``single_frame``) has one image per clip: only
    a baseline on the apex frame with ``apex: annotated`` (``probe_apex``) can run there; every
    other input is always available.

    Args:
        cfg: the ``baselines`` section.
        dataset_info: ``data/dataset.json``.

    Returns:
        (``cfg`` with ``names`` cut to the baselines that can run, {skipped name: reason}).
        Without skips ``cfg`` itself is returned.
    """
    if any(FEATURES[n].needs != "clips" for n in cfg.name_list):  # the probes' apex
        require_annotated_parts(cfg.apex, dataset_info, "baselines.apex")
    if not (dataset_info or {}).get("single_frame"):
        return cfg, {}
    skipped = {}
    for name in cfg.name_list:
        needs = FEATURES[name].needs
        if needs in SEQUENCE_NEEDS:
            skipped[name] = (f"needs {SEQUENCE_NEEDS[needs]}, but the input has one image per "
                             "clip (no frame sequence)")
        elif cfg.apex != "annotated":
            skipped[name] = (f"needs frames {cfg.apex!r} (baselines.apex), but the input has one "
                             "image per clip: only 'annotated' exists")
    if not skipped:
        return cfg, {}
    kept = [n for n in cfg.name_list if n not in skipped]
    return replace(cfg, names=",".join(kept)), skipped


# ----------------------------------------------------------------------------- features

def n_codes(points: int) -> int:
    """Number of non-rotation-invariant uniform LBP codes: ``P (P - 1) + 3`` (59 for P = 8)."""
    return points * (points - 1) + 3


def _plane_codes(stacked: np.ndarray, n_slices: int, points: int, radius: int) -> np.ndarray:
    """LBP codes of ``n_slices`` 2-D slices stacked along axis 0 (one image, one call), with
    ``n_codes(points)`` at every pixel within ``radius`` of its slice's border. A kept pixel's
    neighbourhood lies inside its own slice, so the stacking changes none of its codes."""
    codes = local_binary_pattern(stacked, P=points, R=radius, method="nri_uniform")
    codes = codes.astype(np.int64).reshape(n_slices, -1, stacked.shape[1])
    codes[:, :radius] = codes[:, codes.shape[1] - radius:] = n_codes(points)
    codes[:, :, :radius] = codes[:, :, codes.shape[2] - radius:] = n_codes(points)
    return codes


def lbp_top(clip: np.ndarray, grid: int = 5, points: int = 8, radius: int = 1) -> np.ndarray:
    """LBP-TOP histograms of one grey clip (Zhao & Pietikainen 2007).

    Codes are scikit-image's ``nri_uniform`` LBP on every slice of the three orthogonal planes:
    XY (each frame), XT (each row), YT (each column); codes within ``radius`` of a slice's border
    are left out. LBP compares each neighbour with the centre, so a global brightness offset
    changes nothing (up to float rounding where an interpolated diagonal neighbour ties the
    centre exactly).

    Args:
        clip: uint8 array T x H x W.
        grid: the face is cut into grid x grid blocks (``np.array_split`` of rows and columns).
        points: neighbours per plane (P).
        radius: neighbourhood radius in x, y and t (R).

    Returns:
        float32 vector of length ``grid * grid * 3 * n_codes(points)``: block by block (row-major),
        the XY, XT and YT histograms of the block's pixels pooled over all slices, each summing
        to 1 (all zeros if the block has no kept pixel in that plane).

    Raises:
        ValueError: not a uint8 3-D array, T < 2 radius + 1, or H, W smaller than the grid or
            than 2 radius + 1 (the message names the shape).
    """
    clip = np.asarray(clip)
    side = 2 * radius + 1
    if clip.ndim != 3 or clip.dtype != np.uint8:
        raise ValueError(f"lbp_top: expected a uint8 T x H x W clip, got {clip.dtype} {clip.shape}")
    t, h, w = clip.shape
    if t < side or min(h, w) < max(grid, side):
        raise ValueError(f"lbp_top: clip of shape {clip.shape} too small: need T >= {side} "
                         f"(radius {radius}) and H, W >= {max(grid, side)} (grid {grid})")
    k = n_codes(points)
    # Each plane's codes on the clip's own T x H x W grid.
    xy = _plane_codes(clip.reshape(t * h, w), t, points, radius)
    xt = _plane_codes(clip.transpose(1, 0, 2).reshape(h * t, w), h, points, radius)
    yt = _plane_codes(clip.transpose(2, 0, 1).reshape(w * t, h), w, points, radius)
    planes = [xy, xt.transpose(1, 0, 2), yt.transpose(1, 2, 0)]
    rows = np.repeat(np.arange(grid), [len(a) for a in np.array_split(np.arange(h), grid)])
    cols = np.repeat(np.arange(grid), [len(a) for a in np.array_split(np.arange(w), grid)])
    block = (rows[:, None] * grid + cols[None, :])[None]  # 1 x H x W block number
    hists = np.stack([np.bincount((block * (k + 1) + p).ravel(), minlength=grid * grid * (k + 1))
                      .reshape(grid * grid, k + 1)[:, :k] for p in planes], axis=1)
    total = hists.sum(axis=2, keepdims=True)
    return (hists / np.maximum(total, 1)).astype(np.float32).ravel()


def lbp_top_features(clips: np.ndarray, grid: int, points: int, radius: int) -> np.ndarray:
    """:func:`lbp_top` of every clip of an N x T x H x W uint8 array: N x D float32."""
    feats = [lbp_top(c, grid, points, radius) for c in clips]
    dim = grid * grid * 3 * n_codes(points)
    return np.stack(feats) if feats else np.zeros((0, dim), np.float32)


def pixel_features(images: np.ndarray, size: int) -> np.ndarray:
    """Grey pixels of N x S x S x 3 uint8 RGB images, resized to size x size (area) and scaled
    to [0, 1]: float32 N x size*size. Raises ValueError naming the shape of other arrays."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"pixel_features: expected uint8 N x S x S x 3 images, got "
                         f"{images.dtype} {images.shape}")
    grey = [cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (size, size),
                       interpolation=cv2.INTER_AREA) for im in images]
    return (np.asarray(grey, np.float32).reshape(len(images), size * size) / 255).astype(np.float32)


def difference_features(apex: np.ndarray, onset: np.ndarray, size: int) -> np.ndarray:
    """Apex minus onset :func:`pixel_features` (the motion a probe sees)."""
    return pixel_features(apex, size) - pixel_features(onset, size)


# ----------------------------------------------------------------------------- one fold

class LinearKernelSVM:
    """A linear SVM (LIBSVM through scikit-learn's ``SVC``: one-vs-one, as LIBSVM is used in the
    CASME II paper) on standardised features, trained on their Gram matrix: with a few hundred
    clips and thousands of LBP-TOP features this is ~20x faster than fitting on the features,
    and the same model. The scaler is fitted on the training clips only.
    """

    def __init__(self, C: float, seed: int = 0):
        self.scaler = StandardScaler()
        self.svm = SVC(kernel="precomputed", C=C, class_weight="balanced", random_state=seed)

    def fit(self, X, y) -> "LinearKernelSVM":
        self.train_ = self.scaler.fit_transform(X)
        self.svm.fit(self.train_ @ self.train_.T, y)
        return self

    def decision_function(self, X) -> np.ndarray:
        return self.svm.decision_function(self.scaler.transform(X) @ self.train_.T)


def _model(kind: str, C: float, seed: int):
    if kind == "svm":
        return LinearKernelSVM(C, seed)
    if kind == "logreg":
        return make_pipeline(StandardScaler(),
                             LogisticRegression(C=C, class_weight="balanced", max_iter=5000))
    raise ValueError(f"unknown model kind {kind!r}; expected 'svm' or 'logreg'")


def _fit_scores(X, y, X_new, kind, C, seed, labels) -> tuple[np.ndarray, int]:
    """Fit on (X, y), score X_new: n_new x K in ``labels`` order (absent classes 0), and the
    number of ConvergenceWarnings (recorded, not shown; other warnings pass through)."""
    out = np.zeros((len(X_new), len(labels)))
    present = np.unique(y)
    cols = [list(labels).index(c) for c in present]
    if len(present) == 1:  # nothing to separate: that class for every clip
        out[:, cols[0]] = 1.0
        return out, 0
    model = _model(kind, C, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if kind == "logreg":
        out[:, cols] = model.predict_proba(X_new)
    else:  # softmax of the SVM's decision values: a score, not a calibrated probability
        d = model.decision_function(X_new)
        d = np.column_stack([np.zeros_like(d), d]) if d.ndim == 1 else d
        e = np.exp(d - d.max(axis=1, keepdims=True))
        out[:, cols] = e / e.sum(axis=1, keepdims=True)
    return out, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def fit_predict(X_train, y_train, groups_train, X_test, kind: str, c_grid: Sequence[float],
                inner_folds: int, labels: Sequence[str], seed: int = 0) -> dict:
    """Choose C inside the training subjects, refit on all of them, predict the test clips.

    Args:
        X_train, y_train, groups_train: training features, class names and subjects.
        X_test: test features.
        kind: ``svm`` or ``logreg`` (:class:`BaselineSpec`).
        c_grid: candidate values of C.
        inner_folds: group k-fold splits over the training subjects (fewer if fewer subjects).
        labels: the protocol's classes, in their fixed order.
        seed: the SVM's random state.

    Returns:
        ``pred`` (class names of X_test), ``proba`` (n_test x K, ``labels`` order; for the SVM a
        softmax of the decision values), ``C`` (chosen: best pooled inner UF1, ties to the
        smaller C), ``inner_uf1`` (C -> inner UF1), ``grid`` (C -> class names of X_test with
        that C fitted on all training clips: for the leakage check only), ``not_converged``
        (ConvergenceWarnings).

    Raises:
        ValueError: fewer than two training subjects (no inner split possible).
    """
    X_train, X_test = np.asarray(X_train), np.asarray(X_test)
    y_train = np.asarray(y_train).astype(str)
    groups_train = np.asarray(groups_train).astype(str)
    n_groups = len(np.unique(groups_train))
    if n_groups < 2:
        raise ValueError(f"fit_predict: {n_groups} training subject(s); choosing C by inner "
                         "cross-validation needs at least 2")
    splits = list(GroupKFold(n_splits=min(inner_folds, n_groups)).split(X_train, y_train,
                                                                          groups_train))
    inner_uf1, warned = {}, 0
    for C in sorted(c_grid):
        pred = np.empty(len(y_train), dtype=object)
        for fit_rows, val_rows in splits:
            scores, n = _fit_scores(X_train[fit_rows], y_train[fit_rows], X_train[val_rows],
                                    kind, C, seed, labels)
            pred[val_rows], warned = np.asarray(labels)[scores.argmax(axis=1)], warned + n
        inner_uf1[C] = metrics.compute(y_train, pred, labels)["uf1"]
    best = max(inner_uf1.values())
    chosen = min(C for C, s in inner_uf1.items() if s >= best - 1e-12)
    probas = {}
    for C in sorted(c_grid):
        probas[C], n = _fit_scores(X_train, y_train, X_test, kind, C, seed, labels)
        warned += n
    grid = {C: np.asarray(labels)[p.argmax(axis=1)] for C, p in probas.items()}
    return {"pred": grid[chosen], "proba": probas[chosen], "C": chosen, "inner_uf1": inner_uf1,
            "grid": grid, "not_converged": warned}


# ----------------------------------------------------------------------------- LOSO

def run_loso(features, index: pd.DataFrame, labels: Sequence[str], kind: str,
             c_grid: Sequence[float], inner_folds: int, seed: int = 0
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One fold per test subject (sorted): fit on every other subject, predict this one.

    Args:
        features: N x D array aligned with ``index``, or ``features(test_subject)`` returning
            one (for frames chosen per fold).
        index: ``sample_id``, ``subject``, ``label`` per clip.
        labels, kind, c_grid, inner_folds, seed: as :func:`fit_predict`.

    Returns:
        ``predictions`` (:data:`mer_core.handover.PRED_COLUMNS` with ``p_<class>`` per class of
        ``labels`` before ``seed``; index order), ``choices`` (per fold: subject, C,
        inner_uf1, n_train, n_test, seconds, not_converged) and ``grid`` (per fold, C of the
        grid and test clip: seed, fold, C, sample_id, y_true, y_pred).

    Raises:
        ValueError: a label outside ``labels``, or features with another row count.
    """
    labels = [str(c) for c in labels]
    y = index["label"].astype(str).to_numpy()
    metrics.encode(y, labels, "index label")
    subjects = index["subject"].astype(str).to_numpy()
    get = features if callable(features) else (lambda _subject: features)
    proba = np.zeros((len(index), len(labels)))
    pred = np.empty(len(index), dtype=object)
    choices, grid = [], []
    ids = index["sample_id"].astype(str).to_numpy()
    for s in sorted(set(subjects)):
        start = time.perf_counter()
        X = np.asarray(get(s))
        if len(X) != len(index):
            raise ValueError(f"features of fold {s!r}: {len(X)} rows, the index {len(index)}")
        test = subjects == s
        r = fit_predict(X[~test], y[~test], subjects[~test], X[test], kind, c_grid,
                        inner_folds, labels, seed)
        pred[test], proba[test] = r["pred"], r["proba"]
        grid += [pd.DataFrame({"seed": int(seed), "fold": s, "C": C, "sample_id": ids[test],
                               "y_true": y[test], "y_pred": p}) for C, p in r["grid"].items()]
        choices.append({"subject": s, "C": r["C"], "inner_uf1": r["inner_uf1"][r["C"]],
                        "n_train": int((~test).sum()), "n_test": int(test.sum()),
                        "seconds": round(time.perf_counter() - start, 3),
                        "not_converged": r["not_converged"]})
    predictions = pd.DataFrame({"sample_id": index["sample_id"].astype(str).to_numpy(),
                                "subject": subjects, "y_true": y, "y_pred": pred.astype(str),
                                **{f"p_{c}": proba[:, i] for i, c in enumerate(labels)},
                                "seed": int(seed)})
    return (handover.check_predictions(predictions, "baseline predictions"),
            pd.DataFrame(choices), pd.concat(grid, ignore_index=True))


def _per_fold(frames, transform: Callable) -> Callable:
    """``subject -> transform(that fold's frames)`` for an array or a FoldFrames, transforming
    each distinct array once."""
    if isinstance(frames, FoldFrames):
        done = {key: transform(arr) for key, arr in frames.variants.items()}
        return lambda subject: done[frames.key(subject)]
    if frames is None:
        raise ValueError("this baseline needs frames that were not given")
    arr = transform(np.asarray(frames))
    return lambda _subject: arr


def run_baseline(name: str, cfg: BaselinesConfig, index: pd.DataFrame, labels: Sequence[str],
                 clips=None, apex=None, onset=None, seed: int = 0
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build one baseline's features and run it over the LOSO folds (:func:`run_loso`).

    Args:
        name: a baseline of :data:`FEATURES`.
        cfg: the ``baselines`` section (LBP-TOP options, probe size, C grid, inner folds).
        index: the clips (``sample_id``, ``subject``, ``label``).
        labels: the protocol's classes.
        clips: uint8 N x T x H x W grey clips (LBP-TOP).
        apex: apex frames, N x S x S x 3 uint8: an array or a FoldFrames (probes).
        onset: onset frames, same forms (the difference probe).
        seed: the SVM's random state, written in the predictions.

    Returns:
        ``(predictions, choices, grid)`` as :func:`run_loso`.

    Raises:
        ValueError: unknown name, or an input the baseline needs is missing.
    """
    if name not in FEATURES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(FEATURES)}")
    spec = FEATURES[name]
    if spec.needs == "clips":
        if clips is None:
            raise ValueError(f"{name}: needs the clips (uint8 N x T x H x W)")
        features = lbp_top_features(clips, cfg.lbp_grid, cfg.lbp_points, cfg.lbp_radius)
    else:
        apex_px = _per_fold(apex, lambda a: pixel_features(a, cfg.probe_size))
        onset_px = _per_fold(onset, lambda a: pixel_features(a, cfg.probe_size)) \
            if spec.needs == "apex-onset" else None

        def features(subject: str) -> np.ndarray:
            return apex_px(subject) if onset_px is None else apex_px(subject) - onset_px(subject)
    return run_loso(features, index, labels, spec.kind, cfg.c_list, cfg.inner_folds, seed)


def write_baseline(out_dir: str | Path, predictions: pd.DataFrame, choices: pd.DataFrame,
                   grid: pd.DataFrame, info: dict) -> None:
    """Write one baseline's ``predictions.csv``, ``choices.csv``, ``grid_predictions.csv`` and
    ``run.json`` (``info`` plus the summed fold wall time ``wall_s_folds`` and ``n_folds``)
    into ``out_dir``, atomically (:mod:`mer_core.handover`); ``run.json`` last."""
    handover.write_predictions(out_dir, predictions)
    io.write_csv(Path(out_dir) / handover.CHOICES_CSV, choices)
    io.write_csv(Path(out_dir) / GRID_CSV, grid)
    handover.write_run(out_dir, {**info, "wall_s_folds": round(float(choices["seconds"].sum()), 1),
                                 "n_folds": len(choices)})


#: Libraries whose version is part of a baseline's settings (a new version refits).
_LIBRARIES = ("sklearn", "skimage", "cv2", "numpy")


def _sha(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part + b"\0")
    return h.hexdigest()[:16]


def read_choices(out_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A baseline's ``choices.csv`` and ``grid_predictions.csv`` (subjects stay text).

    Raises:
        FileNotFoundError: the baselines stage has not written them (names the file).
    """
    out = Path(out_dir)
    for f in (handover.CHOICES_CSV, GRID_CSV):
        if not (out / f).is_file():
            raise FileNotFoundError(f"{out / f}: not found (made by the baselines stage)")
    return (pd.read_csv(out / handover.CHOICES_CSV, dtype={"subject": str}),
            pd.read_csv(out / GRID_CSV, dtype={"fold": str, "sample_id": str, "y_true": str,
                                               "y_pred": str}))


def run_baselines(index: pd.DataFrame, labels: Sequence[str], frames_dir: str | Path,
                  cfg: BaselinesConfig, out_dir: str | Path, seed: int = 0,
                  progress: bool = True) -> dict[str, pd.DataFrame]:
    """The baselines stage: every baseline of ``cfg.names`` over the LOSO folds, written to
    ``<out_dir>/<name>/``. A baseline already written with the same settings, inputs and code
    is read back, not refitted (an interrupted stage resumes).

    Args:
        index: the clips the apex stage cached (:func:`mer_core.frame_cache.cached_index`).
        labels: the protocol's classes.
        frames_dir: the apex stage's caches (clips, onset and ``cfg.apex`` frames).
        cfg: the ``baselines`` section.
        out_dir: ``results/baselines``.
        seed: the SVM's random state.
        progress: print one line per baseline.

    Returns:
        name -> predictions.
    """
    need = {FEATURES[n].needs for n in cfg.name_list}
    inputs = {
        "clips": frame_cache.load_clips(frames_dir, index) if "clips" in need else None,
        "apex": frame_cache.load_frames(frames_dir, cfg.apex, index) if need - {"clips"} else None,
        "onset": frame_cache.load_cache(frames_dir, "onset", index)
        if "apex-onset" in need else None,
    }
    parts = [str(v).encode() for v in (*index["sample_id"], *index["subject"], *index["label"])]
    for k in sorted(k for k, v in inputs.items() if v is not None):
        v = inputs[k]
        if isinstance(v, FoldFrames):  # which variant each fold sees, too
            parts += [repr((sorted(v.choice.items()), v.default)).encode()]
            parts += [a.tobytes() for a in v.variants.values()]
        else:
            parts.append(v.tobytes())
    data = _sha(parts)
    code = _sha([Path(m.__file__).read_bytes() for m in (metrics, frame_cache)]
                + [Path(__file__).read_bytes()]
                + [f"{m}=={import_module(m).__version__}".encode() for m in _LIBRARIES])
    out = {}
    for name in cfg.name_list:
        with threadpool_limits(1):  # small fits: a BLAS thread pool costs more than it gives
            out[name] = _run_one(name, cfg, index, labels, inputs, Path(out_dir) / name, seed,
                                 data, code, progress)
    return out


def _run_one(name: str, cfg: BaselinesConfig, index: pd.DataFrame, labels: Sequence[str],
             inputs: dict, where: Path, seed: int, data: str, code: str,
             progress: bool) -> pd.DataFrame:
    """One baseline of :func:`run_baselines`, read back when ``where`` holds it with the same
    settings (config, seed, labels, input hash ``data``, module hash ``code``)."""
    settings = {"baseline": name, "config": {k: getattr(cfg, k) for k in (
        "apex", "lbp_grid", "lbp_points", "lbp_radius", "probe_size", "c_grid",
        "inner_folds")}, "seed": int(seed), "labels": list(labels), "data": data,
        "code": code}
    prev = handover.read_run(where)
    if prev is not None and prev.get("settings") == settings:
        progress and print(f"{name}: reused ({where} has the same settings)")
        return handover.read_predictions(where / handover.PREDICTIONS_CSV)
    start = time.perf_counter()
    pred, choices, grid = run_baseline(name, cfg, index, labels, seed=seed, **inputs)
    pred["experiment"] = name
    wall = time.perf_counter() - start
    write_baseline(where, pred, choices, grid, {
        "experiment": name, "display": vocab.BASELINES[name], "settings": settings,
        "wall_s_this_call": round(wall, 1), "n_clips": len(index),
        "n_subjects": int(index["subject"].nunique()), "device": "cpu", "workers": 1,
        "threads": 1})
    progress and print(f"{name}: {len(choices)} folds in {wall:.1f} s; C chosen per fold: "
                       + ", ".join(f"{c:g} x{n}" for c, n in
                                   choices["C"].value_counts().sort_index().items()))
    return pred


__all__ = ["BaselineSpec", "FEATURES", "SEQUENCE_NEEDS", "applicable", "GRID_CSV", "read_choices",
           "n_codes", "lbp_top", "lbp_top_features", "pixel_features", "difference_features", "fit_predict", "run_loso", "run_baseline",
           "write_baseline", "run_baselines"]
