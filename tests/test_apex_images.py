"""Prepared apex-image sets (mer_core.apex_images via load_index): tiny folders built here."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mer_core import apex_images as AI, apex_stage, datasets as ds, images, vocab
from mer_core.handover import INDEX_COLUMNS

# The MEGC composite list as published: headerless, CRLF, SAMM subjects unpadded.
COMPOSITE = ("casme2,01,EP02_01f,positive\r\n"
             "samm,6,006_1_2,Negative\r\n"
             "smic,s01,s01_ne_01,negative\r\n"
             "casme2,02,EP02_01f,surprise\r\n")


def _colour(path, value=40):
    img = np.zeros((12, 10, 3), np.uint8)
    img[..., 0], img[..., 2] = value, 255 - value
    assert cv2.imwrite(str(path), img)


def _grey(path, value=90):
    assert cv2.imwrite(str(path), np.full((12, 10), value, np.uint8))


@pytest.fixture
def composite(tmp_path):
    """The composite list and one image per clip under the names found in circulation."""
    root = tmp_path / "apex"
    root.mkdir()
    _colour(root / "sub01_EP02_01f.jpg")          # the subject as the reader writes it
    _grey(root / "006_1_2.jpg")                   # SAMM: the clip alone, subject 006 not 6
    _colour(root / "s01_s1_ne_01.png")            # padded subject, unpadded SMIC clip
    _grey(root / "02_EP02_01f.PNG")               # the list's subject, upper-case suffix
    (root / "labels.csv").write_bytes(COMPOSITE.encode())
    return root


def test_composite_list_reads_into_the_index(composite):
    df = ds.load_index("apex_images", composite, labels="labels.csv")
    assert list(df.columns[:len(INDEX_COLUMNS)]) == list(INDEX_COLUMNS)
    assert {"image", "source_dataset"} <= set(df.columns)
    assert df["sample_id"].tolist() == ["apex_images/sub01/EP02_01f",
                                        "apex_images/samm006/006_1_2",
                                        "apex_images/s01/s01_ne_01",
                                        "apex_images/sub02/EP02_01f"]
    assert df["subject"].tolist() == ["sub01", "samm006", "s01", "sub02"]
    assert df["source_dataset"].tolist() == ["casme2", "samm", "smic", "casme2"]
    assert df["emotion"].tolist() == ["positive", "negative", "negative", "surprise"]
    assert set(df["dataset"]) == {"apex_images"} and set(df["aus"]) == {""}
    assert (df[["onset", "offset"]] == 0).all().all() and df["apex"].tolist() == [0] * 4
    assert set(df["apex_note"]) == {AI.APEX_NOTE}
    names = [p.rsplit("/", 1)[-1] for p in df["image"]]
    assert names == ["sub01_EP02_01f.jpg", "006_1_2.jpg", "s01_s1_ne_01.png", "02_EP02_01f.PNG"]
    assert all(p.startswith("/") for p in df["image"])
    assert set(df["frames_dir"]) == {str(composite)}
    a = df.attrs
    assert a["dataset"] == "apex_images" and a["single_frame"] is True
    assert a["apex_annotated"] is True and a["excluded"] == [] and a["unmatched_images"] == []
    assert a["labels_file"].endswith("labels.csv") and a["root"] == str(composite)
    # colour and grey images both decode into the RGB the apex stage reads
    frames = images.read_frames([df["image"][0]]), images.read_frames([df["image"][1]])
    assert frames[0].shape == frames[1].shape == (1, 12, 10, 3)


def test_three_column_list_with_header(tmp_path):
    _colour(tmp_path / "a1_clip1.jpg")
    _grey(tmp_path / "a2_clip1.png")
    (tmp_path / "list.csv").write_text("Subject,Clip,Label\na1,clip1,Positive\n\n"
                                       "a2 , clip1, surprise,\n")
    df = ds.load_index("apex_images", tmp_path, labels=tmp_path / "list.csv")
    assert df["subject"].tolist() == ["a1", "a2"] and df["clip"].tolist() == ["clip1"] * 2
    assert df["emotion"].tolist() == ["positive", "surprise"]
    assert df["source_dataset"].tolist() == ["", ""]
    out = ds.apply_protocol(df, "megc2019-3class")
    assert out["label"].tolist() == ["positive", "surprise"]
    with pytest.raises(ValueError, match="protocols that apply: apex_images has megc2019-3class"):
        ds.apply_protocol(df, "casme2-5class")


def test_three_column_list_without_header_and_sheet_synonym(tmp_path):
    _colour(tmp_path / "7_x.jpg")
    (tmp_path / "l.csv").write_text("7,x,surprise\n")
    df = ds.load_index("apex_images", tmp_path, sheet="l.csv")
    assert df["sample_id"].tolist() == ["apex_images/7/x"]


def test_listed_clip_without_image_strict_and_lenient(composite):
    (composite / "006_1_2.jpg").unlink()
    with pytest.raises(FileNotFoundError) as e:
        ds.load_index("apex_images", composite, labels="labels.csv")
    assert "apex_images/samm006/006_1_2" in str(e.value) and "line 2" in str(e.value)
    assert "labels.csv" in str(e.value)
    df = ds.load_index("apex_images", composite, labels="labels.csv", strict=False)
    assert len(df) == 3
    ex = ds.excluded(df)
    assert ex["sample_id"].tolist() == ["apex_images/samm006/006_1_2"]
    assert ex["reason"][0].startswith("no image: labels.csv line 2")


def test_image_without_row_is_reported(composite):
    _colour(composite / "sub09_EP01_01.jpg")
    (composite / "notes.txt").write_text("not an image")
    df = ds.load_index("apex_images", composite, labels="labels.csv")
    assert len(df) == 4
    assert [p.rsplit("/", 1)[-1] for p in df.attrs["unmatched_images"]] == ["sub09_EP01_01.jpg"]


def test_a_name_two_lines_share_matches_neither(composite):
    _colour(composite / "EP02_01f.jpg")   # sub01 or sub02?
    df = ds.load_index("apex_images", composite, labels="labels.csv")
    assert df["image"][0].endswith("sub01_EP02_01f.jpg")
    assert [p.rsplit("/", 1)[-1] for p in df.attrs["unmatched_images"]] == ["EP02_01f.jpg"]


def test_two_images_for_one_clip_is_an_error(composite):
    _colour(composite / "s01_ne_01.jpg")
    with pytest.raises(AI.ListError, match=r"line 3.*s01_ne_01\.jpg.*s01_s1_ne_01\.png"):
        ds.load_index("apex_images", composite, labels="labels.csv")


def test_validate_frames_catches_a_corrupt_image(composite):
    bad = composite / "sub01_EP02_01f.jpg"
    bad.write_bytes(bad.read_bytes()[:40])   # truncated: no end-of-image marker
    with pytest.raises(OSError, match=r"sub01_EP02_01f\.jpg: truncated JPEG"):
        ds.load_index("apex_images", composite, labels="labels.csv")
    df = ds.load_index("apex_images", composite, labels="labels.csv", strict=False)
    assert ds.excluded(df)["reason"][0].startswith("unreadable image:")
    assert len(df) == 3
    # without validation the names alone are read
    assert len(ds.load_index("apex_images", composite, labels="labels.csv",
                             validate_frames=False)) == 4


def test_protocol_megc2019_3class(composite):
    df = ds.load_index("apex_images", composite, labels="labels.csv")
    out = ds.apply_protocol(df, "megc2019-3class")
    assert out["label"].tolist() == ["positive", "negative", "negative", "surprise"]
    assert out.attrs["single_frame"] is True
    assert "apex_images" in vocab.DATASETS and "apex_images" in vocab.FPS
    folds = ds.loso_folds(out)
    assert [s for s, _, _ in folds] == ["s01", "samm006", "sub01", "sub02"]


def test_labels_outside_the_protocol_are_named(tmp_path):
    _colour(tmp_path / "1_c.jpg")
    (tmp_path / "l.csv").write_text("1,c,contempt\n")
    df = ds.load_index("apex_images", tmp_path, labels="l.csv")
    with pytest.raises(ValueError, match="contempt"):
        ds.apply_protocol(df, "megc2019-3class")


@pytest.mark.parametrize("text, match", [
    ("a,b\n", r"l\.csv, line 1: 2 column\(s\).*expected 4"),
    ("1,c,x\n1,d\n", r"l\.csv, line 2: 2 column\(s\).*expected 3 \(subject,clip,label\)"),
    ("1,c,x\n2,,x\n", r"l\.csv, line 2: empty clip"),
    ("samm,6,a,x\r\nsamm,006,a,y\r\n", r"line 2: clip 'a' of subject samm006 is listed again "
                                       r"\(first on line 1\)"),
    ("samm,abc,a,x\n", r"line 1: subject 'abc' of samm has no number"),
    ("\n\n", r"empty label list"),
])
def test_bad_lists_name_file_and_line(tmp_path, text, match):
    _colour(tmp_path / "1_c.jpg")
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(AI.ListError, match=match):
        ds.load_index("apex_images", tmp_path, labels="l.csv")


def test_options(composite):
    with pytest.raises(ValueError, match="labels="):
        ds.load_index("apex_images", composite)
    with pytest.raises(ValueError, match="layout"):
        ds.load_index("apex_images", composite, labels="labels.csv", layout="raw")
    with pytest.raises(ValueError, match="'labels' is for apex_images"):
        ds.load_index("casme2", composite, labels="labels.csv")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        ds.load_index("apex_images", composite, labels="nope.csv")
    with pytest.raises(FileNotFoundError, match="image folder"):
        ds.load_index("apex_images", composite / "missing", labels="labels.csv")


def test_candidate_names():
    row = {"subject_raw": "6", "subject": "samm006", "clip": "006_1_2"}
    names = AI.candidate_names(row)
    assert {"006_1_2", "6_006_1_2", "samm006_006_1_2", "006_006_1_2"} <= names
    smic = AI.candidate_names({"subject_raw": "s01", "subject": "s01", "clip": "s01_ne_01"})
    assert {"s01_s1_ne_01", "s1_s1_ne_01", "s01_ne_01", "s01_s01_ne_01"} <= smic
    assert AI.subject_id("casme3", "spNO.1") == "spNO001"
    assert AI.subject_id("mmew", "S01") == "mmew_S01" and AI.subject_id("", "S01") == "S01"


def test_stages_needing_sequences_say_this_input_has_none(composite):
    df = ds.load_index("apex_images", composite, labels="labels.csv")
    assert AI.is_single_frame(df)
    plain = pd.DataFrame(df).copy()
    plain.attrs = {}
    assert AI.is_single_frame(plain)   # after a CSV round trip: the dataset column says so
    with pytest.raises(AI.SingleFrameError, match="no sequence"):
        AI.require_sequences(df, None, "the LBP-TOP clip")
    with pytest.raises(AI.SingleFrameError, match="frame sequences"):
        apex_stage.clip_curves(df.iloc[0], {"dataset": "apex_images"}, ["frame_diff"])


# ---------------------------------------------------------------------------- the pipeline
# A prepared set as the pipeline takes it: 3 subjects x 4 face images (colour and grey, not
# square, PNG so the pixel values survive) and a three-column list with a header, the only CSV
# in the folder (data.labels: "" finds it).

CLASSES = ("negative", "positive", "surprise")


def _label(s, c):
    return CLASSES[(s + c) % 3]


def _value(s, c):
    """The grey level (colour: blue level) of image (s, c): its class and subject show in it."""
    return 40 + 60 * CLASSES.index(_label(s, c)) + 3 * s


@pytest.fixture
def prepared(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    lines = ["subject,clip,label"]
    for s in range(1, 4):
        for c in range(4):
            (_colour if c % 2 == 0 else _grey)(root / f"s{s}_c{c}.png", _value(s, c))
            lines.append(f"s{s},c{c},{_label(s, c)}")
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    return root


def _data_cfg(root, **kw):
    from mer_core.config import DataConfig

    return DataConfig(dataset="apex_images", root=str(root), protocol="megc2019-3class", **kw)


@pytest.fixture
def staged(prepared, tmp_path):
    """The data and apex stages run on ``prepared`` as dvc.yaml runs them (files in between)."""
    from mer_core import handover
    from mer_core.config import ApexConfig

    data = tmp_path / "data"
    ds.build_index(_data_cfg(prepared), out_dir=data, progress=False)
    index = handover.read_index(data / "index.csv")
    info = handover.read_dataset_info(data / "dataset.json")
    out = tmp_path / "apex"
    result = apex_stage.build_apex_stage(
        index, info, ApexConfig(image_size=32), frames_dir=out / "frames",
        apex_csv=out / "apex.csv", metrics_json=out / "apex_metrics.json",
        report_json=out / "apex_report.json", progress=False)
    return index, info, out, result


def test_data_stage_finds_the_list_and_records_single_frame(prepared, tmp_path):
    import json

    from mer_core import card

    index, info = ds.build_index(_data_cfg(prepared), out_dir=tmp_path / "data", progress=False)
    disk = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert info["single_frame"] is True and disk["single_frame"] is True
    assert disk["dataset"] == "apex_images" and disk["sheet"].endswith("list.csv")
    assert disk["unmatched_images"] == 0 and disk["n_clips"] == 12 and disk["n_subjects"] == 3
    assert index["label"].tolist() == [_label(s, c) for s in range(1, 4) for c in range(4)]
    # the views that need a sequence say there is none instead of drawing
    assert card.clip_length_figure(index, fps=info["fps"]) is None
    assert card.class_strip_figure(index) is None
    assert card.clip_length_stats(index, fps=info["fps"]) is None
    assert "no frame sequences" in card.NO_SEQUENCES
    summary = card.card_summary(index, info)
    assert summary["single_frame"] is True and summary["clip_length_frames"] is None
    assert summary["per_class"] == {"negative": 4, "positive": 4, "surprise": 4}
    # a sequence dataset's dataset.json carries no such key
    assert AI.info_fields(pd.DataFrame({"dataset": ["casme2"]})) == {}


def test_the_default_list_is_the_one_csv_under_root(prepared, tmp_path):
    assert AI.load_options(_data_cfg(prepared)) == {"labels": str(prepared / "list.csv")}
    assert AI.load_options(_data_cfg(prepared, labels=" other.csv ")) == {"labels": "other.csv"}
    assert AI.load_options(_data_cfg(prepared, sheet="list.csv")) == {}
    (prepared / "more.CSV").write_text("s1,c0,negative\n")
    with pytest.raises(ValueError, match=r"2 CSV files \(list\.csv, more\.CSV\).*data\.labels"):
        ds.build_index(_data_cfg(prepared), out_dir=tmp_path / "data", progress=False)
    index, _ = ds.build_index(_data_cfg(prepared, labels="more.CSV"), out_dir=tmp_path / "data",
                              progress=False)
    assert index["sample_id"].tolist() == ["apex_images/s1/c0"]
    for f in prepared.glob("*.*[vV]"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="no label list"):
        AI.default_labels(prepared)


def test_apex_stage_caches_only_the_annotated_images(staged):
    from mer_core import apex_figures, apex_single, frame_cache, handover

    index, info, out, result = staged
    frames = out / "frames"
    assert sorted(p.name for p in frames.iterdir()) == ["annotated.csv", "annotated.npy"]
    arr = frame_cache.load_cache(frames, "annotated", index)
    assert arr.shape == (12, 32, 32, 3) and arr.dtype == np.uint8
    for i, (s, c) in enumerate((s, c) for s in range(1, 4) for c in range(4)):
        v = _value(s, c)
        want = (255 - v, 0, v) if c % 2 == 0 else (v, v, v)   # colour: RGB of the BGR written
        assert (arr[i].reshape(-1, 3) == want).all(), (s, c)
    ids = frame_cache.cached_ids(frames, "annotated")
    assert ids["sample_id"].tolist() == index["sample_id"].tolist()
    assert set(ids["source"]) == {"annotated"} and set(ids["frame"]) == {0}
    # no spotter choice needed: every clip is annotated
    folds = frame_cache.load_frames(frames, "annotated", index)
    assert np.array_equal(folds.for_fold("s2"), arr)
    # what the later stages and the notebook read
    metrics = handover.read_apex_metrics(out / "apex_metrics.json")
    assert metrics["single_frame"] is True and metrics["per_fold"] == {}
    assert metrics["best"] is None
    assert handover.read_apex_table(out / "apex.csv").empty
    report = handover.read_record(out / "apex_report.json", "the apex stage")
    assert report["single_frame"] is True and report["n_cached"] == 12 and report["methods"] == []
    assert report["skipped"] == [] and report["flow"] is None and report["clips"] is None
    assert "clips.npy (LBP-TOP)" in report["not_made"]
    assert result["metrics"] == metrics
    assert set(apex_figures.stage_report(result)) == set(apex_figures.REPORT_KEYS)
    assert "12 single images" in apex_single.summary_line(result)
    assert "one prepared face image per clip" in apex_figures.dataset_line(info, len(index))
    fig = apex_single.image_grid_figure(frames, index, info["labels"], per_class=5)
    assert len(fig.axes) == 3 * 5
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_an_unreadable_image_stops_or_is_skipped(staged):
    from mer_core import apex_single, frame_cache
    from mer_core.config import ApexConfig

    index, info, out, _ = staged
    bad = Path(index["image"][5])
    bad.write_bytes(b"not a png")
    frames = out / "again"
    with pytest.raises(OSError, match=r"apex_images/s2/c1: .*s2_c1\.png"):
        apex_single.build_single_image_stage(index, info, ApexConfig(image_size=32),
                                             frames_dir=frames, apex_csv=out / "a.csv",
                                             metrics_json=out / "m.json",
                                             report_json=out / "r.json", progress=False)
    result = apex_stage.build_apex_stage(index, info, ApexConfig(image_size=32),
                                         frames_dir=frames, apex_csv=out / "a.csv",
                                         metrics_json=out / "m.json", report_json=out / "r.json",
                                         strict=False, progress=False)
    assert [s["sample_id"] for s in result["skipped"]] == ["apex_images/s2/c1"]
    with pytest.warns(UserWarning, match="1 clip.*apex_images/s2/c1"):
        kept = AI.cached_index(index, frames, info)
    assert len(kept) == 11 and len(frame_cache.load_cache(frames, "annotated", kept)) == 11


def test_what_needs_sequences_names_itself(staged):
    from mer_core import baselines, report
    from mer_core.config import BaselinesConfig, TrainConfig

    _, info, _, _ = staged
    AI.require_frames("annotated", info, "experiment 'apex_annotated'")
    for frames in ("onset", "middle", "spotted:best", "flow:annotated", "diff:spotted:lbp"):
        with pytest.raises(AI.SingleFrameError,
                           match=rf"experiment 'x': frames '{frames}' need frame sequences.*"
                                 "one image per clip"):
            AI.require_frames(frames, info, "experiment 'x'")
    AI.require_frames("onset", {"dataset": "casme2"}, "experiment 'onset'")   # sequences: fine
    cfg, skipped = baselines.applicable(BaselinesConfig(), info)
    assert cfg.name_list == ["probe_apex"] and list(skipped) == ["lbptop_svm", "probe_diff"]
    assert "the clip onset..offset" in skipped["lbptop_svm"]
    assert "the onset frame" in skipped["probe_diff"]
    cfg, skipped = baselines.applicable(BaselinesConfig(apex="spotted:best"), info)
    assert cfg.name_list == [] and "'spotted:best'" in skipped["probe_apex"]
    full = BaselinesConfig()
    assert baselines.applicable(full, {"dataset": "casme2"}) == (full, {})
    lines = report.header_lines({**info, "description": "d"}, TrainConfig(), 10, 0.95,
                                baselines=BaselinesConfig(names="probe_apex"),
                                skipped_baselines={"lbptop_svm": "needs a clip"})
    text = "\n".join(lines)
    assert "one prepared face image per clip" in text
    assert "**Baselines not run:** `lbptop_svm`: needs a clip." in text
    assert "`probe_apex`" in text and "Spotted apex" not in text


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_an_apex_image_folder_with_a_label_list_trains_and_evaluates(staged, tmp_path):
    """Data and apex stages (fixture), then LOSO training on a tiny network, the baseline that
    single images allow, and the evaluate stage's metrics, as the notebooks chain them."""
    from mer_core import baselines, evaluate, frame_cache, handover, loso
    from mer_core.config import BaselinesConfig, ExperimentConfig, TrainConfig
    from mer_core.models import create_model

    index, info, out, _ = staged
    frames = out / "frames"
    index = AI.cached_index(index, frames, info)
    labels = info["labels"]
    exp = ExperimentConfig(frames="annotated", backbone="test_resnet", loss="focal")
    results = tmp_path / "results"
    preds = loso.run_experiment(
        "apex_annotated", exp, TrainConfig(image_size=32, epochs=1, batch_size=4,
                                           precision="fp32"),
        index, frame_cache.load_frames(frames, "annotated", index), labels,
        results / "apex_annotated", progress=False, threads=1,
        model_factory=lambda name, n: create_model(name, n, allow_any=True))
    assert sorted(preds["subject"].unique()) == ["s1", "s2", "s3"] and len(preds) == 12
    cfg, skipped = baselines.applicable(BaselinesConfig(c_grid="0.1,1", inner_folds=2), info)
    base = baselines.run_baselines(index, labels, frames, cfg, results / "baselines",
                                   progress=False)
    assert list(base) == ["probe_apex"] and set(skipped) == {"lbptop_svm", "probe_diff"}
    metric_map = evaluate.evaluate_experiments(
        results, {"apex_annotated": exp}, labels, tmp_path / "reports", n_boot=20,
        reference="apex_annotated", progress=False, baselines=cfg.name_list)
    assert set(metric_map) == {"apex_annotated", "probe_apex"}
    m = metric_map["apex_annotated"]
    assert m["n"] == 12 and m["n_subjects"] == 3 and 0 <= m["uf1"] <= 1
    assert metric_map["probe_apex"]["kind"] == "baseline"
    assert set(handover.read_metrics(tmp_path / "reports" / "metrics.json")) == set(metric_map)
