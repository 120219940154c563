"""The stages' display modules (card, apex_figures, train_figures) on tiny fake inputs."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from mer_core import apex_figures, card, deps, train_figures, vocab
from mer_core.config import ApexConfig


@pytest.fixture(autouse=True)
def agg():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    yield
    plt.close("all")


def test_figure_modules_import_no_later_stage():
    """01 must not pull in the train or report code, 02 not the report code."""
    later = {"loso", "fold", "train_figures", "metrics", "report", "table4"}
    assert not later & set(deps.closure(["apex_figures"]))
    assert "report" not in deps.closure(["train_figures"])


# ---------------------------------------------------------------------------- data stage

def test_fold_table():
    index = pd.DataFrame({"subject": ["s2", "s1", "s2", "s3", "s2"]})
    table = card.fold_table(index)
    assert list(table.columns) == ["s1", "s2", "s3"]
    assert table.loc["test clips"].tolist() == [1, 3, 1]
    assert table.loc["train clips"].tolist() == [4, 2, 4]


# ---------------------------------------------------------------------------- apex stage

def _apex_table():
    rows = []
    for i, (ann, a, b) in enumerate([(10, 10, 12), (20, 25, 20), (30, 30, 31), (None, 5, 6)]):
        for m, p in (("middle", 15), ("lbp", a), ("frame_diff", b)):
            rows.append({"sample_id": f"x/s{i % 2}/c{i}", "method": m, "apex_pred": p,
                         "apex_annotated": ann})
    return pd.DataFrame(rows)


def test_apex_errors_and_examples():
    errors = apex_figures.apex_errors(_apex_table())
    assert len(errors) == 9 and "x/s1/c3" not in set(errors["sample_id"])
    lbp = errors[errors.method == "lbp"].set_index("sample_id")["error"]
    assert lbp.to_dict() == {"x/s0/c0": 0, "x/s1/c1": 5, "x/s0/c2": 0}
    # worst lbp clip first, then the typical ones from the middle of the ranking
    assert apex_figures.example_clips(errors, "lbp", n_worst=1, n_typical=1)[0] == "x/s1/c1"
    assert len(apex_figures.example_clips(errors, "lbp")) == 4


def test_error_figure():
    errors = apex_figures.apex_errors(_apex_table())
    fig = apex_figures.error_figure(errors, ["middle", "lbp", "frame_diff"], title="fake")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    # one cumulative line per method plus the two dotted marks at 5 and 10 frames
    assert len(fig.axes[1].lines) == 3 + 2
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == \
        ["middle", "lbp", "frame_diff"]


def test_spotting_curves_figure():
    errors = apex_figures.apex_errors(_apex_table())
    index = pd.DataFrame({"sample_id": ["x/s0/c0", "x/s1/c1"], "apex": [10, 20],
                          "emotion": ["happiness", "others"], "aus": ["12", "4"]})
    n = np.arange(5, 31)
    curves = {sid: {"frames": n, "lbp": np.hanning(len(n)), "frame_diff": np.ones(len(n))}
              for sid in index["sample_id"]}
    fig = apex_figures.spotting_curves_figure(index, errors, curves, "lbp")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    # per clip: two curves, their two predicted apexes, the annotated apex
    assert [len(ax.lines) for ax in fig.axes] == [5, 5]
    assert "|error| of lbp: 5" in fig.axes[1].get_title()


def test_example_curves_skip_middle(monkeypatch):
    seen = []
    monkeypatch.setattr(apex_figures.apex_stage, "clip_curves",
                        lambda row, info, methods, cfg: seen.append((row["sample_id"], methods))
                        or {"frames": np.arange(3)})
    index = pd.DataFrame({"sample_id": ["a/s/1", "a/s/2"], "onset": [0, 0], "offset": [2, 2]})
    cfg = ApexConfig(methods="middle,lbp")
    out = apex_figures.example_curves(index, {}, ["a/s/2", "a/s/2"], cfg)
    assert list(out) == ["a/s/2"] and seen == [("a/s/2", ["lbp"])]


def test_example_crops_and_crops_figure(tmp_path):
    ids = ["x/s0/c0", "x/s0/c1", "x/s1/c2"]
    strategies = vocab.cached_strategies(["middle"])
    for k, s in enumerate(strategies):
        pd.DataFrame({"sample_id": ids, "frame": [k, k + 1, k + 2], "source": s}) \
            .to_csv(tmp_path / f"{vocab.strategy_stem(s)}.csv", index=False)
        np.save(tmp_path / f"{vocab.strategy_stem(s)}.npy", np.full((3, 4, 4, 3), k, np.uint8))
    index = pd.DataFrame({"sample_id": ids[::-1], "subject": ["s1", "s0", "s0"]})
    shown, crops = apex_figures.example_crops(tmp_path, index, ["middle"], n=2)
    assert shown == ids[:2] and list(crops) == strategies
    images, numbers = crops["random"]
    assert images.shape == (2, 4, 4, 3) and numbers == [2, 3]
    fig = apex_figures.crops_figure(shown, crops)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2 * len(strategies)
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "s0/c0"


def test_apex_tables_and_lines():
    metrics = {"middle": {"mae_frames": 9.0, "mae_ms": 45.0}, "lbp": {"mae_frames": 2.0,
               "mae_ms": 10.0}, "best": "lbp", "per_fold": {"lbp": 3}}
    table = apex_figures.metrics_table(metrics)
    assert list(table.index) == ["middle", "lbp", "per_fold"] and table.index.name == "method"
    assert apex_figures.best_note(metrics) == \
        "**Best spotter: `lbp`** (MAE 2.0 frames = 10.0 ms; `middle`: 9.0 frames)"
    assert apex_figures.dataset_line({"description": "D", "aligned": True}, 7) == \
        "**Dataset: D** · 7 clips · aligned faces (resize only)"
    result = {k: 1 for k in apex_figures.REPORT_KEYS} | {"metrics": {}}
    assert json.dumps(apex_figures.stage_report(result)) and \
        set(apex_figures.stage_report(result)) == set(apex_figures.REPORT_KEYS)


def test_alignment_note_examples_and_figure(monkeypatch):
    from mer_core import faces

    ids = ["x/s0/c0", "x/s0/c1", "x/s0/c2", "x/s1/c3"]
    result = {"image_size": 32, "no_face_centre_crop": ["x/s1/c3"],
              "face_alignment": {"aligned_by_eyes": 2, "no_eyes_box_crop": ["x/s0/c2"],
                                 "transforms": {sid: [] for sid in ids}}}
    aligned = {"aligned": True}
    assert apex_figures.alignment_note(aligned, result).startswith(
        "**Frames are face crops already**")
    assert apex_figures.alignment_examples(pd.DataFrame(), aligned, result, ApexConfig()) == []
    assert apex_figures.alignment_figure([], 32) is None          # aligned data: nothing drawn
    raw = {"aligned": False}
    assert apex_figures.alignment_note(raw, result) == (
        "**Face alignment:** 2 clips aligned by their eyes, 1 box crops (no eyes), 1 centre "
        "crops (no face). No eyes: `x/s0/c2`.")
    index = pd.DataFrame({"sample_id": ids, "frames_dir": "nowhere", "onset": 5})
    frame = np.full((90, 120, 3), 100, np.uint8)
    monkeypatch.setattr(apex_figures.apex_stage, "read_clip", lambda d, on, off, sid: frame[None])
    found = {"x/s0/c0": ((50.0, 40.0), (70.0, 44.0)), "x/s0/c1": ((48.0, 40.0), (72.0, 40.0))}
    monkeypatch.setattr(faces, "align_clip", lambda f, aligned, margin, where: (
        faces.ClipCrop("eyes", (30, 15, 90, 75), face=(40, 25, 40, 40), eyes=found[where],
                       matrix=faces.similarity_from_eyes(*found[where], 70), side=70)
        if where in found else
        faces.ClipCrop("haar", (30, 15, 90, 75), note=faces.NO_EYES, face=(40, 25, 40, 40))
        if where == "x/s0/c2" else
        faces.ClipCrop("centre", (15, 0, 105, 90), note=faces.NO_FACE)))
    examples = apex_figures.alignment_examples(index, raw, result, ApexConfig(), n=4)
    assert [e["sample_id"] for e in examples] == ids
    fig = apex_figures.alignment_figure(examples, 32)
    assert len(fig.axes) == 12 and all(len(ax.images) == 1 for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes[:3]] == [
        "raw onset (eyes)", "aligned (70 x 70 px)", "cached crop (32 px)"]
    assert fig.axes[6].get_title() == "raw onset (haar: no eyes: box crop)"
    assert fig.axes[5].images[0].get_array().shape == (32, 32, 3)


# ---------------------------------------------------------------------------- train stage

def _preds():
    return pd.DataFrame({
        "sample_id": ["a", "b", "c", "d", "e", "f"], "subject": ["s1", "s1", "s2", "s2", "s2", "s3"],
        "y_true": ["x", "y", "x", "x", "y", "x"], "y_pred": ["x", "x", "x", "y", "y", "y"],
        "seed": 0})


def test_loss_figure():
    log = pd.DataFrame([{"seed": 0, "fold": f, "epoch": e, "train_loss": 1.0 / (e + i)}
                        for i, f in enumerate(["s1", "s2", "s3"], 1) for e in range(3)])
    fig = train_figures.loss_figure(log, "exp", "focal", folds=["s1", "s3"])
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 1
    assert len(fig.axes[0].lines) == 2 + 1  # one per fold, and their mean
    assert "(2 folds)" in fig.axes[0].get_title()
    assert len(train_figures.loss_figure(log, "exp", "ce").axes[0].lines) == 3 + 1


def test_fold_accuracy_figure():
    fig = train_figures.fold_accuracy_figure(_preds(), ["x", "y"], "exp")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.5, 2 / 3, 0.0])
    assert [t.get_text() for t in ax.texts] == ["n=2", "n=3", "n=1"]
    # pooled accuracy 3/6 and the majority-class rate 4/6
    assert [ln.get_ydata()[0] for ln in ax.lines] == pytest.approx([0.5, 4 / 6])


def test_run_summary(tmp_path):
    preds, index = _preds(), _preds()
    partial = train_figures.run_summary(preds[preds.subject == "s1"], index, tmp_path,
                                        folds="1/3", max_folds=0)
    assert partial.startswith("partial run (folds='1/3', max_folds=0): 1 fold(s)")
    (tmp_path / "run.json").write_text(json.dumps({
        "device": "cpu", "precision": "fp32", "workers": 2, "threads": 1, "mean_fold_s": 3.21,
        "train_images_per_s": 40.4, "wall_s_this_call": 90.0}))
    assert train_figures.run_summary(preds, index, tmp_path) == (
        "device cpu, precision fp32, 2 worker(s) x 1 thread(s): 3.2 s per fold, "
        "40 training images/s per worker, 1.5 min elapsed in the call that trained them")
    (tmp_path / "run.json").write_text(json.dumps({
        "device": "cpu", "precision": "fp32", "workers": None, "threads": 1, "mean_fold_s": 3.21,
        "train_images_per_s": 40.4, "wall_s_this_call": None, "wall_s_folds": 120.0}))
    assert train_figures.run_summary(preds, index, tmp_path).endswith(
        "2.0 min of fold time (merged from earlier calls)")
