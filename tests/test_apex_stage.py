"""The apex stage: frame strategies, face crop, the caches it writes and reading them back aligned."""
from __future__ import annotations

import json
import math
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest

from mer_core import apex_stage, faces, frame_cache, handover, vocab
from mer_core.config import ApexConfig

from test_apex import make_clip

METHODS = "middle,frame_diff,lbp,optical_flow"


# ---------------------------------------------------------------------------- strategies

def test_strategy_names():
    assert vocab.strategy_stem("spotted:best") == "spotted-best"
    assert vocab.strategy_stem("onset") == "onset"
    assert vocab.cached_strategies(["middle", "lbp"]) == [
        "onset", "middle", "random", "annotated", "spotted:middle", "spotted:lbp"]


def test_random_index_is_seeded_per_clip():
    a = [apex_stage.random_index(f"x/sub01/c{i}", 50, seed=0) for i in range(40)]
    assert a == [apex_stage.random_index(f"x/sub01/c{i}", 50, seed=0) for i in range(40)]
    assert all(0 <= i < 50 for i in a) and len(set(a)) > 10
    assert a != [apex_stage.random_index(f"x/sub01/c{i}", 50, seed=1) for i in range(40)]
    assert apex_stage.random_index("only", 1) == 0


# ---------------------------------------------------------------------------- face crop

def test_square_box_math():
    # 40 x 60 face at (100, 50) in a 400 x 300 image, 20 % margin -> side 60 * 1.4 = 84
    assert faces.square_box((100, 50, 40, 60), 0.2, 400, 300) == (78, 38, 162, 122)
    x0, y0, x1, y1 = faces.square_box((0, 0, 50, 50), 0.2, 400, 300)      # shifted inside
    assert (x0, y0) == (0, 0) and x1 - x0 == y1 - y0 == 70
    x0, y0, x1, y1 = faces.square_box((380, 280, 20, 20), 0.5, 400, 300)
    assert x1 == 400 and y1 == 300 and x1 - x0 == 40
    assert faces.square_box((10, 10, 280, 280), 0.5, 400, 300) == (0, 0, 300, 300)  # shrunk
    assert faces.centre_box(400, 300) == (50, 0, 350, 300)
    assert faces.centre_box(100, 160) == (0, 30, 100, 130)


def test_face_box_aligned_and_no_face_fallback(monkeypatch):
    img = np.full((120, 160, 3), 128, np.uint8)
    assert faces.face_box(img, aligned=True) == ((0, 0, 160, 120), "aligned")
    monkeypatch.setattr(faces, "detect_face", lambda image: None)
    with pytest.warns(faces.FaceNotFoundWarning, match="clipX: no face found"):
        box, how = faces.face_box(img, aligned=False, where="clipX")
    assert how == "centre" and box == (20, 0, 140, 120)


@pytest.mark.skipif(not faces.haar_available(), reason="this OpenCV has no Haar cascade")
def test_haar_finds_no_face_in_noise():
    noise = np.random.default_rng(0).integers(0, 255, (100, 100)).astype(np.uint8)
    assert faces.detect_face(noise) is None


@pytest.mark.skipif(faces.haar_available(), reason="this OpenCV has the Haar cascade")
def test_missing_haar_cascade_is_a_clear_error():
    with pytest.raises(faces.FaceDetectorUnavailable, match="no bundled Haar cascade"):
        faces.face_box(np.zeros((50, 50, 3), np.uint8), aligned=False)


def test_face_box_uses_the_detection(monkeypatch):
    monkeypatch.setattr(faces, "detect_face", lambda image: (100, 50, 40, 60))
    box, how = faces.face_box(np.zeros((300, 400, 3), np.uint8), aligned=False, margin=0.2)
    assert how == "haar" and box == (78, 38, 162, 122)


def test_crop_resizes():
    img = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    out = faces.crop(img, (10, 20, 74, 84), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    same = faces.crop(img, (0, 0, 32, 32), 32)
    assert np.array_equal(same, img[:32, :32])


# ---------------------------------------------------------------------------- the stage

CLIPS = [  # (clip, onset, n frames, apex index, annotated?)
    ("EP01_1", 10, 40, 25, True),
    ("EP02_2", 4, 36, 12, True),
    ("EP03_3", 100, 44, 30, False),      # NA apex: annotated falls back to the fold's spotter
    ("EP04_4", 7, 38, 20, True),
]
SUBJECT = {"EP01_1": "sub01", "EP02_2": "sub01", "EP03_3": "sub02", "EP04_4": "sub02"}


def sid(clip):
    return f"synthetic/{SUBJECT[clip]}/{clip}"


def write_dataset(root, size=64, clips=CLIPS):
    """CASME II Cropped-like tree of hand-made clips, and its index."""
    rows = []
    for k, (clip, onset, n, a, annotated) in enumerate(clips):
        folder = root / "Cropped" / SUBJECT[clip] / clip
        folder.mkdir(parents=True)
        video = make_clip(n, a, size=size, blink=(3, 4) if a > 15 else None, seed=k, rgb=True)
        for i, f in enumerate(video):
            cv2.imwrite(str(folder / f"reg_img{onset + i}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        rows.append({"sample_id": sid(clip), "dataset": "synthetic",
                     "subject": SUBJECT[clip], "clip": clip, "frames_dir": str(folder), "onset": onset,
                     "apex": onset + a if annotated else None, "offset": onset + n - 1,
                     "emotion": "happiness", "aus": "12", "apex_note": "" if annotated else "'/'",
                     "label": "happiness"})
    index = pd.DataFrame(rows)
    index["apex"] = index["apex"].astype("Int64")
    return index


def run_stage(tmp_path, index, aligned=True, strict=True, workers=1, **kw):
    out = tmp_path / "out"
    cfg = ApexConfig(methods=METHODS, image_size=32, workers=workers)
    rep = apex_stage.build_apex_stage(
        index, {"dataset": "synthetic", "aligned": aligned, "fps": 200, "description": "test"},
        cfg, frames_dir=out / "frames", apex_csv=out / "apex.csv",
        metrics_json=out / "apex_metrics.json", report_json=out / "apex_report.json",
        strict=strict, progress=False, **kw)
    return out, rep


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage")
    index = write_dataset(tmp / "data")
    out, rep = run_stage(tmp, index, workers=2)
    return index, out, rep


def test_stage_writes_every_strategy_aligned_to_the_index(built):
    index, out, rep = built
    for s in vocab.cached_strategies(METHODS.split(",")):
        arr = frame_cache.load_cache(out / "frames", s, index)
        assert arr.shape == (4, 32, 32, 3) and arr.dtype == np.uint8
        ids = frame_cache.cached_ids(out / "frames", s)
        assert ids.columns.tolist() == ["sample_id", "frame", "source"]
        assert ids["sample_id"].tolist() == index["sample_id"].tolist()
    onset = frame_cache.cached_ids(out / "frames", "onset")
    assert onset["frame"].tolist() == index["onset"].tolist()
    middle = frame_cache.cached_ids(out / "frames", "middle")
    assert middle["frame"].tolist() == (index["onset"] + (index["offset"] - index["onset"]) // 2).tolist()
    rnd = frame_cache.cached_ids(out / "frames", "random")["frame"]
    assert ((rnd >= index["onset"]) & (rnd <= index["offset"])).all()


def test_stage_caches_evenly_spaced_grey_clips(built):
    index, out, rep = built
    clips = frame_cache.load_clips(out / "frames", index)
    assert clips.shape == (4, ApexConfig().clip_frames, 32, 32) and clips.dtype == np.uint8
    ids = pd.read_csv(out / "frames" / "clips.csv")
    for row, frames in zip(index.itertuples(), ids["frames"]):
        got = [int(f) for f in frames.split()]
        assert got[0] == row.onset and got[-1] == row.offset and got == sorted(got)
    onset = frame_cache.load_cache(out / "frames", "onset", index)
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in onset])
    assert np.array_equal(clips[:, 0], grey)  # first clip frame = the cached onset, in grey
    with pytest.raises(frame_cache.CacheMismatchError, match="in another order"):
        frame_cache.load_clips(out / "frames", index.iloc[::-1])
    with pytest.raises(FileNotFoundError, match="clip cache not found"):
        frame_cache.load_clips(out / "nowhere", index)


def test_stage_caches_the_onset_to_apex_flow_of_every_apex_strategy(built):
    from mer_core import motion

    index, out, rep = built
    assert rep["flow"]["method"] == motion.flow_method()
    for s in ["annotated"] + [vocab.spotted(m) for m in METHODS.split(",")]:
        flow = frame_cache.load_cache(out / "frames", f"flow:{s}", index)
        assert flow.shape == (4, 32, 32, 3) and flow.dtype == np.uint8
        ids = frame_cache.cached_ids(out / "frames", f"flow:{s}")
        assert ids["source"].str.startswith("onset -> ").all()
        assert ids["frame"].tolist() == frame_cache.cached_ids(out / "frames", s)["frame"].tolist()
    # the flow is the one of the cached onset and apex crops
    onset = frame_cache.load_cache(out / "frames", "onset", index)
    apex = frame_cache.load_cache(out / "frames", "annotated", index)
    flow = frame_cache.load_cache(out / "frames", "flow:annotated", index)
    assert np.array_equal(flow[0], motion.flow_image(onset[0], apex[0]))
    diff = frame_cache.load_cache(out / "frames", "diff:annotated", index)
    assert np.array_equal(diff, np.stack([motion.difference(o, a) for o, a in zip(onset, apex)]))
    assert rep["diff"]["gain"] == motion.DIFF_GAIN


def test_stage_spots_and_scores(built):
    index, out, rep = built
    table = pd.read_csv(out / "apex.csv")
    assert table.columns.tolist() == ["sample_id", "method", "apex_pred", "apex_annotated"]
    assert len(table) == 4 * 4
    metrics = json.loads((out / "apex_metrics.json").read_text())
    assert metrics["best"] in ("frame_diff", "lbp", "optical_flow")
    for m in ("frame_diff", "lbp", "optical_flow"):
        assert metrics[m]["n_scored"] == 3 and metrics[m]["n_excluded_na"] == 1
        assert metrics[m]["mae_frames"] <= 3, (m, metrics[m])
    truth = {sid(c): on + a for c, on, _, a, _ in CLIPS}
    spotted = frame_cache.cached_ids(out / "frames", f"spotted:{metrics['best']}")
    assert all(abs(f - truth[s]) <= 3 for s, f in zip(spotted["sample_id"], spotted["frame"]))
    with pytest.raises(ValueError, match="per LOSO fold"):
        frame_cache.load_cache(out / "frames", "spotted:best", index)


def test_spotter_is_chosen_per_fold_on_the_training_subjects_only(built):
    index, out, rep = built
    table = pd.read_csv(out / "apex.csv").dropna(subset=["apex_annotated"])
    table["err"] = (table["apex_pred"] - table["apex_annotated"]).abs()
    table["subject"] = table["sample_id"].str.split("/").str[1]
    choice = frame_cache.spotter_choice(out / "frames")
    assert set(choice) == {"sub01", "sub02"}
    for test_subject, method in choice.items():
        train = table[(table["subject"] != test_subject) & (table["method"] != "middle")]
        mae = train.groupby("method", sort=False)["err"].mean()
        assert method == mae.idxmin(), (test_subject, mae)
    assert sum(json.loads((out / "apex_metrics.json").read_text())["per_fold"].values()) == 2


def test_fold_frames_follow_the_fold_spotter(built):
    index, out, rep = built
    choice = frame_cache.spotter_choice(out / "frames")
    best = frame_cache.load_fold_frames(out / "frames", "spotted:best", index)
    ann = frame_cache.load_fold_frames(out / "frames", "annotated", index)
    plain = frame_cache.load_cache(out / "frames", "annotated", index)
    na = index["apex"].isna().to_numpy()
    for subject, method in choice.items():
        spotted = frame_cache.load_cache(out / "frames", f"spotted:{method}", index)
        assert np.array_equal(best.for_fold(subject), spotted)
        assert np.array_equal(ann.for_fold(subject)[na], spotted[na])
        assert np.array_equal(ann.for_fold(subject)[~na], plain[~na])
    onset = frame_cache.load_fold_frames(out / "frames", "onset", index)
    assert list(onset.variants) == ["onset"] and onset.key("sub99") == "onset"


@pytest.mark.parametrize("kind", list(vocab.MOTION))
def test_motion_inputs_follow_the_fold_spotter_like_their_apex(built, kind):
    index, out, rep = built
    choice = frame_cache.spotter_choice(out / "frames")
    best = frame_cache.load_frames(out / "frames", f"{kind}:spotted:best", index)
    ann = frame_cache.load_frames(out / "frames", f"{kind}:annotated", index)
    plain = frame_cache.load_cache(out / "frames", f"{kind}:annotated", index)
    na = index["apex"].isna().to_numpy()
    assert na.any() and not na.all()
    for subject, method in choice.items():
        spotted = frame_cache.load_cache(out / "frames", f"{kind}:spotted:{method}", index)
        assert np.array_equal(best.for_fold(subject), spotted)
        assert np.array_equal(ann.for_fold(subject)[na], spotted[na])     # NA apex: fold spotter
        assert np.array_equal(ann.for_fold(subject)[~na], plain[~na])
    ids = index["sample_id"].tolist()
    shown = frame_cache.tested_frames(out / "frames", f"{kind}:spotted:best", ids)
    for i, sid in enumerate(ids):
        assert np.array_equal(shown[i], best.for_fold(sid.split("/")[1])[i])


def test_annotated_uses_the_annotation_and_says_when_it_cannot(built):
    index, out, rep = built
    ann = frame_cache.cached_ids(out / "frames", "annotated")
    own = frame_cache.spotter_choice(out / "frames")["sub02"]   # EP03_3's own fold
    assert ann["frame"].tolist()[:2] == [35, 16] and ann["frame"].tolist()[3] == 27
    assert ann["source"].tolist()[0] == "annotated"
    assert ann["source"].tolist()[2] == f"spotted:{own} (annotated apex NA; spotter of the clip's fold)"
    assert ann["frame"].tolist()[2] == frame_cache.cached_ids(out / "frames", f"spotted:{own}")["frame"][2]
    report = json.loads((out / "apex_report.json").read_text())
    assert report["annotated_fallback"]["clips"] == [sid("EP03_3")]
    assert report["n_cached"] == 4 and report["skipped"] == []


def test_same_result_with_one_worker(built, tmp_path):
    index, out, rep = built
    out1, _ = run_stage(tmp_path, index, workers=1)
    for s in ("random", "annotated", "spotted:frame_diff"):
        assert np.array_equal(frame_cache.load_cache(out1 / "frames", s, index),
                              frame_cache.load_cache(out / "frames", s, index))
    assert frame_cache.spotter_choice(out1 / "frames") == frame_cache.spotter_choice(out / "frames")


def test_load_cache_refuses_a_mismatched_index(built):
    index, out, _ = built
    with pytest.raises(frame_cache.CacheMismatchError, match="another order; first difference at row 0"):
        frame_cache.load_cache(out / "frames", "onset", index.iloc[::-1])
    with pytest.raises(frame_cache.CacheMismatchError, match=r"holds 4 clips, the index 3"):
        frame_cache.load_cache(out / "frames", "onset", index.iloc[:3])
    bigger = pd.concat([index, index.iloc[:1].assign(sample_id="synthetic/sub02/new")])
    with pytest.raises(frame_cache.CacheMismatchError, match="synthetic/sub02/new"):
        frame_cache.load_cache(out / "frames", "onset", bigger)
    with pytest.raises(FileNotFoundError, match="spotted-frequency.csv"):
        frame_cache.load_cache(out / "frames", "spotted:frequency", index)
    # a list of ids works as the index too
    assert len(frame_cache.load_cache(out / "frames", "onset", index["sample_id"].tolist())) == 4


def test_load_cache_checks_the_array(built, tmp_path):
    index, out, _ = built
    d = tmp_path / "frames"
    d.mkdir()
    (d / "onset.csv").write_text((out / "frames" / "onset.csv").read_text())
    np.save(d / "onset.npy", np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(frame_cache.CacheMismatchError, match=r"expected uint8 4 x S x S x 3"):
        frame_cache.load_cache(d, "onset", index)


SMALL = CLIPS[:3]


def test_missing_frame_is_an_error_naming_it(tmp_path):
    index = write_dataset(tmp_path / "data", size=32, clips=SMALL)
    (tmp_path / "data/Cropped/sub01/EP02_2/reg_img20.jpg").unlink()
    with pytest.raises(apex_stage.ClipReadError, match=r"synthetic/sub01/EP02_2: .*EP02_2: frames 20 of 4..39"):
        run_stage(tmp_path, index)


def test_unreadable_frame_is_an_error_naming_the_file(tmp_path):
    index = write_dataset(tmp_path / "data", size=32, clips=SMALL)
    (tmp_path / "data/Cropped/sub01/EP01_1/reg_img12.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(apex_stage.ClipReadError, match=r"reg_img12.jpg: not a JPEG"):
        run_stage(tmp_path, index, workers=2)


def test_non_strict_skips_and_reports_consistently(tmp_path):
    index = write_dataset(tmp_path / "data", size=32, clips=SMALL)
    (tmp_path / "data/Cropped/sub01/EP01_1/reg_img12.jpg").write_bytes(b"not a jpeg")
    out, rep = run_stage(tmp_path, index, strict=False)
    report = json.loads((out / "apex_report.json").read_text())
    assert [s["sample_id"] for s in report["skipped"]] == ["synthetic/sub01/EP01_1"]
    assert "reg_img12.jpg" in report["skipped"][0]["reason"]
    assert report["n_cached"] == 2 and report["n_index"] == 3
    kept = index[index["sample_id"] != "synthetic/sub01/EP01_1"]
    for s in vocab.cached_strategies(METHODS.split(",")):
        assert len(frame_cache.load_cache(out / "frames", s, kept)) == 2
    with pytest.raises(frame_cache.CacheMismatchError, match="EP01_1"):
        frame_cache.load_cache(out / "frames", "onset", index)
    assert "EP01_1" not in set(pd.read_csv(out / "apex.csv")["sample_id"])


def test_unaligned_clip_without_a_face_is_centre_cropped_and_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(faces, "detect_face", lambda image: None)   # any OpenCV build
    index = write_dataset(tmp_path / "data", size=48, clips=SMALL[:2])
    with pytest.warns(faces.FaceNotFoundWarning, match="no face found on the onset frame"):
        out, rep = run_stage(tmp_path, index, aligned=False)
    report = json.loads((out / "apex_report.json").read_text())
    assert report["no_face_centre_crop"] == index["sample_id"].tolist()
    assert report["aligned"] is False


def test_raw_clips_are_eye_aligned_or_box_cropped_and_counted(tmp_path, monkeypatch, caplog):
    """Raw frames: the first clip's eyes are found (injected), the second's are not. The report
    counts both, lists the box crop, gives every clip's transform, and every cached frame of a
    clip is cut by that clip's one transform."""
    from mer_core.images import frame_paths, read_frames

    index = write_dataset(tmp_path / "data", size=64, clips=SMALL[:2])
    calls = []

    def fake_eyes(image, face):     # the first clip: eyes centred at (18, 22) and (44, 26)
        calls.append(face)
        return [(14, 18, 8, 8), (40, 22, 8, 8)] if len(calls) == 1 else []

    monkeypatch.setattr(faces, "detect_face", lambda image: (8, 8, 48, 48))
    monkeypatch.setattr(faces, "detect_eyes", fake_eyes)
    with caplog.at_level("WARNING", logger="mer_core.apex_stage"):
        out, rep = run_stage(tmp_path, index, aligned=False)
    ids = index["sample_id"].tolist()
    report = json.loads((out / "apex_report.json").read_text())
    fa = report["face_alignment"]
    assert fa["aligned_by_eyes"] == 1 and fa["no_eyes_box_crop"] == [ids[1]]
    assert fa["no_face_centre_crop"] == 0 and report["no_face_centre_crop"] == []
    assert "inter-ocular distance 0.286 of the side" in fa["rule"]
    assert any("no eye pair, box crop" in r.getMessage() and ids[1] in r.getMessage()
               for r in caplog.records)
    assert set(fa["transforms"]) == set(ids)
    tilted = np.array(fa["transforms"][ids[0]])
    assert math.degrees(math.atan2(-tilted[1, 0], tilted[0, 0])) == \
        pytest.approx(math.degrees(math.atan2(4, 26)), abs=1e-3)    # eye line turned level
    np.testing.assert_allclose(fa["transforms"][ids[1]],
                               faces.box_transform(faces.square_box((8, 8, 48, 48), 0.2, 64, 64),
                                                   32), atol=1e-5)
    # the cached onset and annotated frames: one cut per clip, decided on the onset
    onset = frame_cache.load_cache(out / "frames", "onset", index)
    annotated = frame_cache.load_cache(out / "frames", "annotated", index)
    for k, row in enumerate(index.itertuples()):
        calls[:] = [] if k == 0 else [None]
        frames = read_frames(frame_paths(row.frames_dir, row.onset, row.offset))
        cut = faces.align_clip(frames[0], aligned=False)
        assert cut.how == ("eyes", "haar")[k]
        assert cut.record(32)["note"] == ("", "no eyes: box crop")[k]
        assert np.array_equal(onset[k], cut.crop(frames[0], 32))
        assert np.array_equal(annotated[k], cut.crop(frames[row.apex - row.onset], 32))


def test_aligned_data_reports_no_alignment(built):
    index, out, rep = built
    fa = json.loads((out / "apex_report.json").read_text())["face_alignment"]
    assert fa == {"rule": "aligned data: whole frame resized", "aligned_by_eyes": 0,
                  "no_eyes_box_crop": [], "no_face_centre_crop": 0, "transforms": {}}


def test_max_clips_and_bad_config(tmp_path):
    index = write_dataset(tmp_path / "data", size=32, clips=SMALL)
    out, rep = run_stage(tmp_path, index, max_clips=2)
    assert rep["n_cached"] == 2
    with pytest.raises(frame_cache.CacheMismatchError):
        frame_cache.load_cache(out / "frames", "onset", index)
    with pytest.raises(ValueError, match="empty"):
        run_stage(tmp_path, index.iloc[:0])


def test_report_shows_each_clip_with_its_own_fold_frame(built):
    from mer_core import report

    index, out, rep = built
    ids = index["sample_id"].tolist()
    choice = frame_cache.spotter_choice(out / "frames")
    shown = frame_cache.tested_frames(out / "frames", "spotted:best", ids)
    for i, sid in enumerate(ids):
        own = frame_cache.load_cache(out / "frames", f"spotted:{choice[sid.split('/')[1]]}", index)
        assert np.array_equal(shown[i], own[i])
    assert np.array_equal(frame_cache.tested_frames(out / "frames", "onset", ids),
                          frame_cache.load_cache(out / "frames", "onset", index))
    with pytest.raises(frame_cache.CacheMismatchError):
        frame_cache.tested_frames(out / "frames", "onset", ids[::-1])


def test_flow_figure_has_a_panel_per_class(built):
    import matplotlib
    matplotlib.use("Agg")
    from mer_core import apex_figures

    index, out, _ = built
    fig = apex_figures.flow_figure(out / "frames", index, ["happiness", "surprise"])
    assert [ax.get_title() for ax in fig.axes] == ["happiness (4)", "surprise (0)"]


def test_fold_frames_without_annotation_say_why(tmp_path):
    """A fold whose training subjects have no annotated apex gets no spotter (SMIC-E): the
    strategies that need one stop with the reason; every clip annotated (a prepared apex-image
    set) needs no spotter choice at all."""
    ids = pd.DataFrame({"sample_id": ["smic/s01/a", "smic/s02/b"], "frame": [5, 7],
                        "source": ["annotated", "annotated"]})
    arr = np.zeros((2, 4, 4, 3), np.uint8)
    frame_cache.write_cache(tmp_path, "annotated", arr, ids)
    frames = frame_cache.load_fold_frames(tmp_path, "annotated", ids["sample_id"].tolist())
    assert list(frames.variants) == ["annotated"]          # no spotter_choice.csv was needed
    frame_cache.write_spotter_choice(tmp_path, pd.DataFrame(
        {"subject": ["s01", "s02"], "method": [None, "lbp"], "mae_train_frames": [None, 1.0],
         "n_train_clips": [0, 3]}))
    for strategy in ("spotted:best", "flow:spotted:best"):
        with pytest.raises(frame_cache.NoAnnotationError, match="s01.*no annotated apex"):
            frame_cache.load_fold_frames(tmp_path, strategy, ids["sample_id"].tolist())
