"""mer_core.baselines: LBP-TOP against a slice-by-slice computation, the probes' pixels, C chosen
inside the training subjects only, the LOSO driver's folds and files."""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.feature import local_binary_pattern

from mer_core import baselines, handover, io, vocab
from mer_core.config import BaselinesConfig
from mer_core.frame_cache import FoldFrames

LABELS = ["a", "b", "c"]


def _naive_lbp_top(clip, grid, points=8, radius=1):
    """LBP-TOP written out: one LBP per slice, a histogram per block and plane, pixel by pixel."""
    t, h, w = clip.shape
    k = points * (points - 1) + 3

    def lbp(img):
        return local_binary_pattern(img, P=points, R=radius, method="nri_uniform")

    xy = np.stack([lbp(clip[i]) for i in range(t)])
    xt = np.stack([lbp(clip[:, y, :]) for y in range(h)], axis=1)
    yt = np.stack([lbp(clip[:, :, x]) for x in range(w)], axis=2)
    inner = lambda v, n: radius <= v < n - radius  # noqa: E731
    keep = [lambda i, y, x: inner(y, h) and inner(x, w),
            lambda i, y, x: inner(i, t) and inner(x, w),
            lambda i, y, x: inner(i, t) and inner(y, h)]
    out = []
    for rows in np.array_split(np.arange(h), grid):
        for cols in np.array_split(np.arange(w), grid):
            for codes, ok in zip((xy, xt, yt), keep):
                hist = np.zeros(k)
                for i in range(t):
                    for y in rows:
                        for x in cols:
                            if ok(i, y, x):
                                hist[int(codes[i, y, x])] += 1
                out.append(hist / max(hist.sum(), 1))
    return np.concatenate(out)


def _hists(features, grid, k=59):
    return features.reshape(grid * grid, 3, k)


# ----------------------------------------------------------------------------- LBP-TOP

def test_lbp_top_equals_the_slice_by_slice_computation():
    clip = np.random.default_rng(0).integers(0, 256, (6, 11, 13), dtype=np.uint8)
    for grid, radius in ((3, 1), (2, 2)):
        got = baselines.lbp_top(clip, grid=grid, radius=radius)
        assert got.dtype == np.float32 and got.shape == (grid * grid * 3 * 59,)
        np.testing.assert_allclose(got, _naive_lbp_top(clip, grid, radius=radius), atol=1e-6)


def test_lbp_top_histograms_sum_to_one_and_a_constant_clip_has_one_code():
    clip = np.random.default_rng(1).integers(0, 256, (5, 20, 20), dtype=np.uint8)
    h = _hists(baselines.lbp_top(clip, grid=5), 5)
    np.testing.assert_allclose(h.sum(axis=2), 1, atol=1e-5)
    flat = _hists(baselines.lbp_top(np.full((5, 20, 20), 77, np.uint8), grid=5), 5)
    assert (flat.max(axis=2) == 1).all()
    assert len(np.unique(flat.argmax(axis=2))) == 1  # the same code in every block and plane


def test_lbp_top_ignores_a_global_brightness_offset():
    clip = np.random.default_rng(2).integers(0, 150, (5, 16, 16), dtype=np.uint8)
    np.testing.assert_array_equal(baselines.lbp_top(clip, grid=4),
                                  baselines.lbp_top(clip + 60, grid=4))


def test_lbp_top_sees_motion_in_the_time_planes_only():
    frames = np.full((7, 16, 16), 40, np.uint8)
    for i in range(7):  # a bright square drifting right, one pixel per frame
        frames[i, 5:11, 2 + i:8 + i] = 200
    static = np.repeat(frames[:1], 7, axis=0)
    moving, still = _hists(baselines.lbp_top(frames, grid=2), 2), \
        _hists(baselines.lbp_top(static, grid=2), 2)
    assert not np.allclose(moving[:, 1], still[:, 1]) and not np.allclose(moving[:, 2], still[:, 2])
    # a static clip's XY histograms are those of its first frame
    codes = local_binary_pattern(frames[0], P=8, R=1, method="nri_uniform")[1:-1, 1:-1]
    block = codes[:7, :7].astype(int)  # block (0, 0): rows and columns 0..7, border left out
    np.testing.assert_allclose(still[0, 0], np.bincount(block.ravel(), minlength=59) / block.size,
                               atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8), (2, 8, 8), (5, 3, 8), (1, 5, 8, 8)])
def test_lbp_top_errors_name_the_shape(shape):
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        baselines.lbp_top(np.zeros(shape, np.uint8), grid=4)


def test_lbp_top_features_stacks_clips():
    clips = np.random.default_rng(3).integers(0, 256, (3, 5, 10, 10), dtype=np.uint8)
    feats = baselines.lbp_top_features(clips, 2, 8, 1)
    assert feats.shape == (3, 2 * 2 * 3 * 59) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[1], baselines.lbp_top(clips[1], grid=2))


def test_pixel_features_are_grey_in_rgb_order_and_resized():
    red = np.zeros((2, 16, 16, 3), np.uint8)
    red[..., 0] = 255
    feats = baselines.pixel_features(red, 4)
    assert feats.shape == (2, 16) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, 0.299, atol=0.01)  # the red weight of RGB -> grey
    onset = np.zeros_like(red)
    np.testing.assert_allclose(baselines.difference_features(red, onset, 4), feats)
    with pytest.raises(ValueError, match=r"\(16, 16, 3\)"):
        baselines.pixel_features(red[0], 4)


# ----------------------------------------------------------------------------- registry

def test_features_cover_the_baselines_in_registry_order():
    assert list(baselines.FEATURES) == list(vocab.BASELINES)
    for name, spec in baselines.FEATURES.items():
        display = vocab.BASELINES[name]
        assert (spec.needs == "clips") == ("LBP-TOP" in display)
        assert (spec.needs == "apex-onset") == ("apex - onset" in display)
        assert spec.kind == ("svm" if "SVM" in display else "logreg")
    source = ast.parse(Path(baselines.__file__).read_text())
    literals = {n.value for n in ast.walk(source) if isinstance(n, ast.Constant)}
    assert not literals & set(vocab.BASELINES), "spell baseline names via vocab.BASELINES"


# ----------------------------------------------------------------------------- fit_predict

def _toy(n_subjects=6, per_class=2, noise=0.3, seed=0):
    """Separable 3-class data: class c sits at 3 e_c; column 3 is the subject number."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.repeat(LABELS, per_class), n_subjects)
    subj = np.repeat(np.arange(n_subjects), per_class * len(LABELS))
    X = 3 * np.eye(4)[[LABELS.index(c) for c in y]] + rng.normal(0, noise, (len(y), 4))
    X[:, 3] = subj
    return X, y, np.array([f"s{i}" for i in subj])


@pytest.mark.parametrize("kind", ["svm", "logreg"])
def test_fit_predict_separates_toy_data_and_takes_the_smallest_tied_c(kind):
    X, y, g = _toy()
    test = g == "s0"
    r = baselines.fit_predict(X[~test], y[~test], g[~test], X[test], kind, [10, 0.1, 1], 5, LABELS)
    assert list(r["pred"]) == list(y[test])
    assert r["proba"].shape == (test.sum(), 3)
    np.testing.assert_allclose(r["proba"].sum(axis=1), 1)
    assert (r["proba"].argmax(axis=1) == [LABELS.index(c) for c in y[test]]).all()
    assert set(r["inner_uf1"]) == {10, 0.1, 1} and r["inner_uf1"][0.1] == 1.0
    assert r["C"] == 0.1 and r["not_converged"] == 0


def test_c_is_chosen_on_the_training_subjects_only(monkeypatch):
    X, y, g = _toy()
    test = g == "s5"
    calls, scored = [], []
    fit_scores, compute = baselines._fit_scores, baselines.metrics.compute

    def spy_fit(X_fit, y_fit, X_new, *args):
        calls.append((set(X_fit[:, 3]), set(X_new[:, 3])))
        return fit_scores(X_fit, y_fit, X_new, *args)

    def spy_compute(y_true, y_pred, labels):
        scored.append(len(y_true))
        return compute(y_true, y_pred, labels)

    monkeypatch.setattr(baselines, "_fit_scores", spy_fit)
    monkeypatch.setattr(baselines.metrics, "compute", spy_compute)
    baselines.fit_predict(X[~test], y[~test], g[~test], X[test], "logreg", [0.1, 1], 3, LABELS)
    inner, final = calls[:2 * 3], calls[2 * 3:]  # then one fit per C on all training subjects
    assert final == [(set(range(5)), {5})] * 2
    for fit_subjects, val_subjects in inner:  # whole subjects, never the test subject
        assert not fit_subjects & val_subjects and 5 not in fit_subjects | val_subjects
    assert scored == [(~test).sum()] * 2


@pytest.mark.parametrize("kind", ["svm", "logreg"])
def test_a_pattern_only_the_test_subject_carries_is_not_learned(kind):
    # Training subjects: features are noise. The test subject alone carries its labels in
    # plain sight (3 e_c). Fitted without it, the model predicts near chance; the same call
    # with the test subject among the training subjects learns the pattern (the check can fail).
    rng = np.random.default_rng(1)
    X, y, g = _toy(n_subjects=7, per_class=4)
    test = g == "s6"
    X[~test, :3] = rng.normal(0, 1, ((~test).sum(), 3))
    X = X[:, :3]
    clean = baselines.fit_predict(X[~test], y[~test], g[~test], X[test], kind, [0.1, 10], 3,
                                  LABELS)["pred"]
    leaked = baselines.fit_predict(X, y, g, X[test], kind, [0.1, 10], 3, LABELS)["pred"]
    assert np.mean(np.asarray(leaked) == y[test]) == 1.0
    assert np.mean(np.asarray(clean) == y[test]) < 0.7


def test_c_choice_follows_the_inner_score(monkeypatch):
    """The grid point with the best inner UF1 wins, whatever the test rows would say."""
    X, y, g = _toy()
    test = g == "s0"
    fake = iter([0.5, 0.9, 0.9, 0.2])  # inner UF1 of C = 0.01, 0.1, 1, 10 (sorted)
    monkeypatch.setattr(baselines.metrics, "compute", lambda *a: {"uf1": next(fake)})
    r = baselines.fit_predict(X[~test], y[~test], g[~test], X[test], "svm", [1, 10, 0.1, 0.01],
                              5, LABELS)
    assert r["C"] == 0.1 and r["inner_uf1"] == {0.01: 0.5, 0.1: 0.9, 1: 0.9, 10: 0.2}


def test_two_training_classes_give_zero_for_the_absent_one():
    X, y, g = _toy()
    train = y != "c"
    r = baselines.fit_predict(X[train], y[train], g[train], X[:4], "svm", [1], 2, LABELS)
    assert r["proba"].shape == (4, 3) and (r["proba"][:, 2] == 0).all()
    np.testing.assert_allclose(r["proba"].sum(axis=1), 1)
    assert list(r["pred"]) == list(y[:4])  # a, a, b, b: the binary scores face the right way


def test_convergence_warnings_are_counted_not_shown(monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    monkeypatch.setattr(baselines, "_model",
                        lambda kind, C, seed: make_pipeline(LogisticRegression(C=C, max_iter=1)))
    X, y, g = _toy(noise=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = baselines.fit_predict(X[g != "s0"], y[g != "s0"], g[g != "s0"], X[:3], "logreg",
                                  [1.0], 2, LABELS)
    assert r["not_converged"] == 3  # two inner fits and the refit


def test_fit_predict_needs_two_training_subjects():
    X, y, g = _toy(n_subjects=1)
    with pytest.raises(ValueError, match="1 training subject"):
        baselines.fit_predict(X, y, g, X, "svm", [1.0], 5, LABELS)


# ----------------------------------------------------------------------------- LOSO

def _index(g, y, shuffle=False):
    index = pd.DataFrame({"sample_id": [f"ds/{s}/clip{i}" for i, s in enumerate(g)],
                          "subject": g, "label": y})
    return index.sample(frac=1, random_state=0) if shuffle else index


def test_run_loso_predicts_every_clip_once_in_index_order(monkeypatch):
    X, y, g = _toy(n_subjects=4)
    index = _index(g, y, shuffle=True)  # rows not grouped by subject
    X = X[index.index]
    index = index.reset_index(drop=True)
    seen, fit_predict = [], baselines.fit_predict

    def spy(X_train, y_train, groups_train, X_test, *args):
        seen.append((set(groups_train), len(X_test)))
        return fit_predict(X_train, y_train, groups_train, X_test, *args)

    monkeypatch.setattr(baselines, "fit_predict", spy)
    asked = []

    def features(subject):
        asked.append(subject)
        return X

    pred, choices, grid = baselines.run_loso(features, index, LABELS, "logreg", [0.1, 1], 3,
                                             seed=7)
    subjects = ["s0", "s1", "s2", "s3"]
    assert asked == subjects and list(choices["subject"]) == subjects
    for s, (train_subjects, n_test) in zip(subjects, seen):
        assert s not in train_subjects and train_subjects == set(subjects) - {s}
        assert n_test == (index["subject"] == s).sum()
    assert list(pred.columns) == ["sample_id", "subject", "y_true", "y_pred", "p_a", "p_b",
                                  "p_c", "seed"]
    assert list(pred["sample_id"]) == list(index["sample_id"]) and (pred["seed"] == 7).all()
    handover.check_predictions(pred)
    np.testing.assert_allclose(pred[["p_a", "p_b", "p_c"]].sum(axis=1), 1)
    assert (pred["y_pred"] == pred["y_true"]).all()
    assert list(choices.columns) == ["subject", "C", "inner_uf1", "n_train", "n_test", "seconds",
                                     "not_converged"]
    assert set(choices["C"]) <= {0.1, 1}
    assert (choices["n_train"] + choices["n_test"] == len(index)).all()
    # every C's test predictions, for the leakage check; the chosen C's are the predictions
    assert len(grid) == 2 * len(index) and set(grid["C"]) == {0.1, 1}
    chosen = grid.merge(choices[["subject", "C"]], left_on=["fold", "C"],
                        right_on=["subject", "C"]).set_index("sample_id")
    assert chosen.loc[pred["sample_id"], "y_pred"].tolist() == pred["y_pred"].tolist()


def test_run_loso_rejects_unknown_labels_and_misaligned_features():
    X, y, g = _toy(n_subjects=3)
    index = _index(g, y)
    with pytest.raises(ValueError, match="not in the class list"):
        baselines.run_loso(X, index, ["a", "b"], "svm", [1.0], 2)
    with pytest.raises(ValueError, match="rows"):
        baselines.run_loso(X[:-1], index, LABELS, "svm", [1.0], 2)


# ----------------------------------------------------------------------------- run_baseline, files

def _clips_and_frames(n_subjects=4):
    """Per subject one clip of each class; a class is a bright square at its own place."""
    rng = np.random.default_rng(5)
    y = np.tile(LABELS, n_subjects)
    g = np.repeat([f"s{i}" for i in range(n_subjects)], len(LABELS))
    clips = rng.integers(0, 30, (len(y), 5, 12, 12), dtype=np.uint8)
    frames = rng.integers(0, 30, (len(y), 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        k = LABELS.index(c) * 4
        clips[i, 2:, k:k + 4, k:k + 4] += 150
        frames[i, k:k + 4, k:k + 4] += 150
    return _index(g, y), clips, frames


CFG = BaselinesConfig(lbp_grid=3, probe_size=6, c_grid="0.1,1", inner_folds=2)
#: needs -> baseline name
BY_NEED = {spec.needs: name for name, spec in baselines.FEATURES.items()}


def test_run_baseline_builds_each_feature_once(monkeypatch):
    index, clips, frames = _clips_and_frames()
    name_lbp, name_apex, name_diff = BY_NEED["clips"], BY_NEED["apex"], BY_NEED["apex-onset"]
    pred, choices, _ = baselines.run_baseline(name_lbp, CFG, index, LABELS, clips=clips)
    assert len(pred) == len(index) and len(choices) == 4
    assert (pred["y_pred"] == pred["y_true"]).mean() > 0.5

    calls = []
    pixels = baselines.pixel_features
    monkeypatch.setattr(baselines, "pixel_features",
                        lambda a, size: calls.append(id(a)) or pixels(a, size))
    shifted = np.roll(frames, 1, axis=2)
    per_fold = FoldFrames({"x": frames, "y": shifted}, {"s0": "y"}, default="x")
    pred, _, _ = baselines.run_baseline(name_apex, CFG, index, LABELS, apex=per_fold)
    assert sorted(calls) == sorted([id(frames), id(shifted)])  # once per variant, not per fold
    assert (pred["y_pred"] == pred["y_true"]).all()

    got = {}
    monkeypatch.setattr(baselines, "run_loso",
                        lambda features, *a: got.setdefault("s1", features("s1")))
    onset = np.zeros_like(frames)
    baselines.run_baseline(name_diff, CFG, index, LABELS, apex=frames, onset=onset + 20)
    np.testing.assert_allclose(got["s1"], pixels(frames, 6) - pixels(onset + 20, 6), atol=1e-6)


def test_run_baseline_names_what_is_missing():
    index, _, frames = _clips_and_frames()
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.run_baseline("nope", CFG, index, LABELS)
    with pytest.raises(ValueError, match="clips"):
        baselines.run_baseline(BY_NEED["clips"], CFG, index, LABELS, apex=frames)
    with pytest.raises(ValueError, match="not given"):
        baselines.run_baseline(BY_NEED["apex-onset"], CFG, index, LABELS, apex=frames)


def test_write_baseline_files_read_back(tmp_path):
    X, y, g = _toy(n_subjects=3)
    pred, choices, grid = baselines.run_loso(X, _index(g, y), LABELS, "svm", [1.0], 2)
    baselines.write_baseline(tmp_path / "b", pred, choices, grid, {"name": "x", "C_grid": [1.0]})
    back = handover.read_predictions(tmp_path / "b" / handover.PREDICTIONS_CSV)
    pd.testing.assert_frame_equal(back, pred, check_dtype=False)
    back_choices, back_grid = baselines.read_choices(tmp_path / "b")
    assert len(back_choices) == 3 and len(back_grid) == len(pred)
    run = io.read_json(tmp_path / "b" / handover.RUN_JSON)
    assert run["name"] == "x" and run["n_folds"] == 3 and run["wall_s_folds"] >= 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == \
        ["choices.csv", "grid_predictions.csv", "predictions.csv", "run.json"]


def test_run_baselines_writes_each_and_resumes(tmp_path, capsys):
    """The stage reads the apex stage's caches, writes every baseline, and reads a finished
    one back on a rerun with the same settings (refits when a setting changes)."""
    from mer_core import frame_cache

    index, clips, frames = _clips_and_frames()
    frames_dir = tmp_path / "frames"
    ids = pd.DataFrame({"sample_id": index["sample_id"], "frame": 1, "source": "x"})
    for strategy in ("onset", "annotated", "spotted:frame_diff"):
        frame_cache.write_cache(frames_dir, strategy, frames if strategy != "onset"
                                else np.zeros_like(frames), ids)
    frame_cache.write_clips(frames_dir, clips, index[["sample_id"]].assign(frames="1 2"))
    frame_cache.write_spotter_choice(frames_dir, pd.DataFrame(
        {"subject": sorted(index["subject"].unique()), "method": "frame_diff"}))
    out = tmp_path / "baselines"
    first = baselines.run_baselines(index, LABELS, frames_dir, CFG, out)
    assert list(first) == list(vocab.BASELINES)
    for name in vocab.BASELINES:
        assert handover.read_run(out / name)["settings"]["baseline"] == name
    stamp = (out / BY_NEED["clips"] / handover.PREDICTIONS_CSV).stat().st_mtime_ns
    capsys.readouterr()
    again = baselines.run_baselines(index, LABELS, frames_dir, CFG, out)
    assert capsys.readouterr().out.count("reused") == len(vocab.BASELINES)
    pd.testing.assert_frame_equal(again[BY_NEED["clips"]], first[BY_NEED["clips"]],
                                  check_dtype=False)
    assert (out / BY_NEED["clips"] / handover.PREDICTIONS_CSV).stat().st_mtime_ns == stamp
    other = BaselinesConfig(names=BY_NEED["clips"], lbp_grid=2, probe_size=6, c_grid="0.1,1",
                            inner_folds=2)
    baselines.run_baselines(index, LABELS, frames_dir, other, out)
    assert "reused" not in capsys.readouterr().out
    assert handover.read_run(out / BY_NEED["clips"])["settings"]["config"]["lbp_grid"] == 2
    # another spotter for one fold (the annotated apex falls back to it): the probe refits
    frame_cache.write_cache(frames_dir, "spotted:lbp", np.roll(frames, 2, axis=1), ids)
    frame_cache.write_spotter_choice(frames_dir, pd.DataFrame(
        {"subject": sorted(index["subject"].unique()), "method": ["lbp"] + ["frame_diff"] * 3}))
    capsys.readouterr()
    baselines.run_baselines(index, LABELS, frames_dir, CFG, out)
    said = capsys.readouterr().out
    assert f"{BY_NEED['apex']}: reused" not in said


def test_the_gram_matrix_svm_is_the_linear_svm_on_standardised_features():
    """Training on the Gram matrix is a speed-up, not another model."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y, _ = _toy(per_class=4, noise=1.5)         # 72 clips
    fast = baselines.LinearKernelSVM(C=0.3).fit(X[:50], y[:50])
    scaler = StandardScaler().fit(X[:50])
    slow = SVC(kernel="linear", C=0.3, class_weight="balanced").fit(scaler.transform(X[:50]),
                                                                   y[:50])
    np.testing.assert_allclose(fast.decision_function(X[50:]),
                               slow.decision_function(scaler.transform(X[50:])), atol=1e-6)
