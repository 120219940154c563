"""Prepared apex-image sets (mer_core.apex_images via load_index): tiny folders built here."""
from __future__ import annotations

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
        apex_stage.build_apex_stage(df, {"dataset": "apex_images", "fps": 200}, object())
    with pytest.raises(AI.SingleFrameError, match="frame sequences"):
        apex_stage.clip_curves(df.iloc[0], {"dataset": "apex_images"}, ["frame_diff"])
