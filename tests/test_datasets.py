"""CASME II / SAMM readers, protocols, LOSO folds and the data stage on tiny trees built here."""
from __future__ import annotations

import json

import cv2
import numpy as np
import openpyxl
import pandas as pd
import pytest

from mer_core import datasets as ds, handover, images, sheets, vocab
from mer_core.config import DataConfig

CASME_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                "Action Units", "Estimated Emotion", "Objective Classes"]
# Every quirk of the official sheet: text and int subjects, '/' apex, apex == onset / offset,
# apex outside the clip, frames crossing 99 -> 100, the same Filename under two subjects,
# int and text AUs, capitalised emotion, the 2019 'Objective Classes' column.
CASME_ROWS = [
    ["01", "EP02_01f", None, 98, 100, 102, None, 12, "happiness", 1],
    [1, "EP03_02", None, 5, 5, 8, None, "4+L10", "disgust", 2],
    ["02", "EP02_01f", None, 10, "/", 13, None, "R2+15", "repression", 2],
    ["02", "EP01_2", None, 20, 30, 23, None, "?", "surprise", 3],
    ["03", "EP06_02_01", None, 4, 7, 7, None, 14.0, "Others", 7],
    ["03", "EP09f", None, 4, 5, 6, None, "1+2", "fear", 4],
    ["04", "EP12_01f", None, 4, 5, 6, None, 4, "disgust", 2],
    ["05", "EP09_05f", None, 4, 5, 6, None, 17, "repression", 2],
    ["05", "EP01_01", None, 4, 5, 6, None, 15, "sadness", 5],
]


def _image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def _sheet(path, rows, header=CASME_HEADER, title="Sheet1", preamble=()):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    for line in preamble:
        ws.append(line)
    ws.append(header)
    for r in rows:
        ws.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def make_casme(root, rows=CASME_ROWS, folder="Cropped", prefix="reg_img", header=CASME_HEADER):
    """A CASME II tree: ``root/<folder>/subNN/<Filename>/<prefix><N>.jpg`` plus the sheet."""
    for r in rows:
        subject = f"sub{int(r[0]):02d}"
        for n in range(int(r[3]) - 1, int(r[5]) + 2):  # a frame either side, like the release
            _image(root / folder / subject / r[1] / f"{prefix}{n}.jpg", n % 256)
    return _sheet(root / "CASME2-coding-20190701.xlsx", rows, header)


SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
SAMM_ROWS = [
    ["006", "006_1_2", 1, 5562, 5564, 5566, 5, "Micro - 1/2", "R12+R15", "Contempt", 7, None],
    ["006", "006_1_3", 1, 9998, 9999, 10001, 4, "Micro - 1/2", 12, "Happiness", 1, None],
    ["007", "007_3_1", 3, 100, 101, 103, 4, "Micro - 1/2", "4", "Other", 7, "?"],
    ["007", "007_5_2", 5, 200, 150, 204, 5, "Micro - 1/2", "R4", "Anger", 2, None],
    [11, "011_2_3", 2, 300, 302, 303, 4, "Micro - 1/2", "1+2", "Surprise", 6, None],
]
SAMM_PREAMBLE = [["SAMM micro-movements: FACS codes"]] + [[None]] * 5 + [
    [f"note {i}", None, "text"] for i in range(7)]  # 13 rows, header on row 14


def make_samm(root, rows=SAMM_ROWS):
    for r in rows:
        code = f"{int(r[0]):03d}"
        for n in range(r[3], r[5] + 1):
            _image(root / code / r[1] / f"{code}_{n:05d}.jpg", n % 256)
    path = root / sheets.SAMM_SHEET_NAME
    wb = openpyxl.Workbook()
    wb.active.title = "FACS_Movement_Only"
    wb.active.append(["Subject", "Filename"])
    ws = wb.create_sheet(sheets.SAMM_WORKSHEET)
    for line in SAMM_PREAMBLE:
        ws.append(line)
    ws.append(SAMM_HEADER)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


@pytest.fixture
def casme(tmp_path):
    root = tmp_path / "casme2"
    make_casme(root)
    return root


@pytest.fixture
def samm(tmp_path):
    root = tmp_path / "samm"
    make_samm(root)
    return root


# ------------------------------------------------------------------ frames

def test_frame_numbers_sort_numerically(casme):
    d = casme / "Cropped" / "sub01" / "EP02_01f"
    assert list(images.frame_numbers(d)) == list(range(97, 104))
    names = [p.name for p in images.frame_paths(d, 98, 102)]
    assert names == ["reg_img98.jpg", "reg_img99.jpg", "reg_img100.jpg", "reg_img101.jpg",
                     "reg_img102.jpg"]
    assert images.read_frames(images.frame_paths(d, 98, 99)).shape == (2, 8, 8, 3)


# ------------------------------------------------------------------ CASME II reader

def test_casme2_index(casme):
    df = ds.load_index("casme2", casme)
    assert list(df.columns) == handover.INDEX_COLUMNS + ["objective_class"]
    assert len(df) == 9 and list(df.index) == list(range(9))
    assert df["sample_id"].iloc[0] == "casme2/sub01/EP02_01f"
    assert list(df["subject"]) == ["sub01", "sub01", "sub02", "sub02", "sub03", "sub03",
                                   "sub04", "sub05", "sub05"]
    # The same Filename under two subjects is two clips.
    assert set(df.loc[df["clip"] == "EP02_01f", "sample_id"]) == {
        "casme2/sub01/EP02_01f", "casme2/sub02/EP02_01f"}
    assert str(df["apex"].dtype) == "Int64"
    apex = dict(zip(df["clip"] + "@" + df["subject"], df["apex"]))
    assert apex["EP03_02@sub01"] == 5                        # apex == onset is valid
    assert apex["EP06_02_01@sub03"] == 7                     # apex == offset is valid
    assert pd.isna(apex["EP02_01f@sub02"])                   # '/'
    assert pd.isna(apex["EP01_2@sub02"])                     # 30 outside 20..23
    notes = dict(zip(df["sample_id"], df["apex_note"]))
    assert "'/'" in notes["casme2/sub02/EP02_01f"]
    assert "outside onset..offset 20..23" in notes["casme2/sub02/EP01_2"]
    assert notes["casme2/sub01/EP02_01f"] == ""
    assert list(df["aus"][:5]) == ["12", "4+L10", "R2+15", "?", "14"]
    assert df["emotion"].iloc[4] == "others"
    assert df["objective_class"].iloc[0] == "1"
    assert df["onset"].dtype == np.int64 and df["offset"].dtype == np.int64
    first = df["frames_dir"].iloc[0]
    assert first == str((casme / "Cropped" / "sub01" / "EP02_01f").resolve())
    assert df.attrs["aligned"] is True and df.attrs["layout"] == "cropped"
    assert ds.excluded(df).empty


def test_casme2_raw_layout_and_preference(tmp_path):
    root = tmp_path / "c"
    make_casme(root, folder="CASME2_RAW_selected", prefix="img")
    df = ds.load_index("casme2", root)
    assert df.attrs["aligned"] is False and df.attrs["layout"] == "raw"
    assert "CASME2_RAW_selected" in df["frames_dir"].iloc[0]
    make_casme(root)  # both releases present: the aligned one is preferred, raw on request
    assert ds.load_index("casme2", root).attrs["layout"] == "cropped"
    assert ds.load_index("casme2", root, layout="raw").attrs["aligned"] is False


def test_casme2_without_objective_classes(tmp_path):
    rows = [r[:-1] for r in CASME_ROWS]
    make_casme(tmp_path, rows=rows, header=CASME_HEADER[:-1])
    df = ds.load_index("casme2", tmp_path, validate_frames=False)
    assert list(df.columns) == handover.INDEX_COLUMNS


def test_synthetic_name_uses_casme_reader(casme):
    df = ds.load_index("synthetic", casme)
    assert df["sample_id"].iloc[0] == "synthetic/sub01/EP02_01f"
    assert set(df["dataset"]) == {"synthetic"} and df.attrs["aligned"] is True


# ------------------------------------------------------------------ SAMM reader

def test_samm_index(samm):
    df = ds.load_index("samm", samm)
    assert list(df["subject"]) == ["samm006", "samm006", "samm007", "samm007", "samm011"]
    assert df["sample_id"].iloc[0] == "samm/samm006/006_1_2"
    assert list(df["emotion"]) == ["contempt", "happiness", "other", "anger", "surprise"]
    assert df["onset"].iloc[1] == 9998 and df["apex"].iloc[1] == 9999
    assert pd.isna(df["apex"].iloc[3])
    assert "150" in df["apex_note"].iloc[3] and "200..204" in df["apex_note"].iloc[3]
    assert df["frames_dir"].iloc[4].endswith("011/011_2_3")
    assert df.attrs["aligned"] is False and df.attrs["worksheet"] == "MICRO_ONLY"


def test_samm_image_pattern(samm):
    with pytest.raises(FileNotFoundError, match="image_pattern"):
        ds.load_index("samm", samm, image_pattern="{subject}_{frame:06d}.jpg")
    with pytest.raises(ValueError, match="last digits"):
        ds.load_index("samm", samm, image_pattern="{frame}_{subject}.jpg")


# ------------------------------------------------------------------ protocols

def test_protocol_5class(casme):
    out = ds.apply_protocol(ds.load_index("casme2", casme), "casme2-5class")
    assert len(out) == 7 and list(out.index) == list(range(7))
    assert set(out["label"]) == {"happiness", "disgust", "repression", "surprise", "others"}
    ex = ds.excluded(out)
    assert set(ex["sample_id"]) == {"casme2/sub03/EP09f", "casme2/sub05/EP01_01"}
    assert ex["reason"].str.contains("is not a class of casme2-5class").all()
    assert vocab.protocol_labels("casme2-5class") == ["happiness", "disgust", "repression",
                                                   "surprise", "others"]


def test_protocol_7class(casme):
    out = ds.apply_protocol(ds.load_index("casme2", casme), "casme2-7class")
    assert len(out) == 9 and ds.excluded(out).empty
    assert list(out["label"]) == list(out["emotion"])
    assert len(vocab.protocol_labels("casme2-7class")) == 7


def test_protocol_megc_casme(casme):
    out = ds.apply_protocol(ds.load_index("casme2", casme), "megc2019-3class")
    assert dict(zip(out["sample_id"], out["label"])) == {
        "casme2/sub01/EP02_01f": "positive", "casme2/sub01/EP03_02": "negative",
        "casme2/sub02/EP02_01f": "negative", "casme2/sub02/EP01_2": "surprise"}
    reasons = dict(zip(*ds.excluded(out).to_dict("list").values()))
    assert len(reasons) == 5
    assert "MEGC 2019 exclusion list" in reasons["casme2/sub04/EP12_01f"]
    assert "MEGC 2019 exclusion list" in reasons["casme2/sub05/EP09_05f"]
    assert "others" in reasons["casme2/sub03/EP06_02_01"]
    summary = ds.exclusion_summary(out)
    assert summary["clips"].sum() == 5


def test_protocol_megc_samm(samm):
    out = ds.apply_protocol(ds.load_index("samm", samm), "megc2019-3class")
    assert list(out["label"]) == ["negative", "positive", "negative", "surprise"]
    assert list(ds.excluded(out)["sample_id"]) == ["samm/samm007/007_3_1"]
    assert pd.isna(out["apex"].iloc[2])  # bad apex: kept, flagged, not guessed


def test_protocol_errors(samm, casme):
    samm_df = ds.load_index("samm", samm)
    with pytest.raises(ValueError, match="does not apply to dataset.*samm"):
        ds.apply_protocol(samm_df, "casme2-5class")
    with pytest.raises(ValueError, match="unknown protocol"):
        ds.apply_protocol(samm_df, "casme9-4class")
    df = ds.load_index("casme2", casme)
    df.loc[0, "emotion"] = "hapiness"
    with pytest.raises(ValueError, match="casme2/sub01/EP02_01f.*hapiness"):
        ds.apply_protocol(df, "casme2-5class")


def test_validation_exclusions_carry_through_protocol(casme):
    (casme / "Cropped" / "sub02" / "EP01_2" / "reg_img21.jpg").unlink()
    df = ds.load_index("casme2", casme, strict=False)
    out = ds.apply_protocol(df, "casme2-5class")
    ex = ds.excluded(out)
    assert ex["sample_id"].iloc[0] == "casme2/sub02/EP01_2"
    assert ex["reason"].iloc[0].startswith("missing frames") and "21" in ex["reason"].iloc[0]
    assert len(out) + len(ex) == 9


# ------------------------------------------------------------------ folds

def test_loso_folds(casme):
    out = ds.apply_protocol(ds.load_index("casme2", casme), "casme2-7class")
    folds = ds.loso_folds(out)
    assert [f[0] for f in folds] == ["sub01", "sub02", "sub03", "sub04", "sub05"]
    for subject, train, test in folds:
        assert set(out["subject"].iloc[test]) == {subject}
        assert subject not in set(out["subject"].iloc[train])
        assert sorted(np.concatenate([train, test])) == list(range(len(out)))
    with pytest.raises(ValueError, match="two subjects"):
        ds.loso_folds(out[out["subject"] == "sub01"])


# ------------------------------------------------------------------ errors

def test_missing_root_and_sheet(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        ds.load_index("casme2", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="CASME2-coding-"):
        ds.load_index("casme2", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="SAMM_Micro_FACS_Codes_v2"):
        ds.load_index("samm", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="other.xlsx"):
        ds.load_index("casme2", tmp_path / "empty", sheet="other.xlsx")
    with pytest.raises(ValueError, match="unknown dataset"):
        ds.load_index("casme9", tmp_path)
    with pytest.raises(ValueError, match="unknown option"):
        ds.load_index("casme2", tmp_path, stritc=False)


def test_explicit_sheet_and_several_sheets(casme):
    other = casme / "CASME2-coding-20140508.xlsx"
    _sheet(other, CASME_ROWS[:2])
    with pytest.raises(ValueError, match="several coding sheets"):
        ds.load_index("casme2", casme)
    assert len(ds.load_index("casme2", casme, sheet=other.name)) == 2


def test_missing_column(tmp_path):
    header = [h if h != "ApexFrame" else "Apex" + "X" for h in CASME_HEADER]
    make_casme(tmp_path, header=header)
    with pytest.raises(sheets.SheetError, match="missing column.*'ApexFrame'"):
        ds.load_index("casme2", tmp_path)


def test_missing_samm_worksheet(samm):
    with pytest.raises(sheets.SheetError, match="'MICRO_ONLY2' not found"):
        ds.load_index("samm", samm, worksheet="MICRO_ONLY2")


def test_non_numeric_frame_cell(tmp_path):
    rows = [list(r) for r in CASME_ROWS]
    make_casme(tmp_path, rows=rows)
    rows[2][5] = "13a"  # OffsetFrame of sheet row 4
    _sheet(tmp_path / "CASME2-coding-20190701.xlsx", rows)
    with pytest.raises(sheets.SheetError, match=r"row 4 .*OffsetFrame is '13a'"):
        ds.load_index("casme2", tmp_path)


def test_onset_after_offset(tmp_path):
    rows = [list(r) for r in CASME_ROWS]
    make_casme(tmp_path, rows=rows)
    rows[1][3] = 9  # onset 9 > offset 8 on sheet row 3
    _sheet(tmp_path / "CASME2-coding-20190701.xlsx", rows)
    with pytest.raises(sheets.SheetError, match=r"row 3 .*OnsetFrame 9 is after OffsetFrame 8"):
        ds.load_index("casme2", tmp_path)


def test_duplicate_key(tmp_path):
    rows = [list(r) for r in CASME_ROWS] + [[1, "EP02_01f", None, 98, 99, 100, None, 1,
                                             "others", 7]]
    make_casme(tmp_path, rows=rows)
    with pytest.raises(sheets.SheetError, match=r"rows 2 and 11 .*'EP02_01f'"):
        ds.load_index("casme2", tmp_path)


def test_missing_frames_strict_and_lenient(casme):
    (casme / "Cropped" / "sub01" / "EP02_01f" / "reg_img100.jpg").unlink()
    import shutil
    shutil.rmtree(casme / "Cropped" / "sub03" / "EP09f")
    with pytest.raises(FileNotFoundError, match=r"2 of 9 clips(.|\n)*frames 100 of 98\.\.102"
                                                r"(.|\n)*EP09f: frame folder not found"):
        ds.load_index("casme2", casme)
    df = ds.load_index("casme2", casme, strict=False)
    assert len(df) == 7
    assert list(ds.excluded(df)["sample_id"]) == ["casme2/sub01/EP02_01f", "casme2/sub03/EP09f"]
    assert len(ds.load_index("casme2", casme, validate_frames=False)) == 9


def _truncate(path):
    """Cut a JPEG in half, as an interrupted copy does (OpenCV still decodes it, grey below)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_image_problem_spots_truncated_and_empty_files(tmp_path):
    good = tmp_path / "img1.jpg"
    assert cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    assert images.image_problem(good) is None
    padded = tmp_path / "img2.jpg"
    padded.write_bytes(good.read_bytes() + b"\x00\x00")
    assert images.image_problem(padded) is None                     # padding after FF D9 is fine
    cut = tmp_path / "img3.jpg"
    cut.write_bytes(good.read_bytes())
    _truncate(cut)
    assert cv2.imread(str(cut)) is not None                      # what the check is for
    assert "truncated JPEG" in images.image_problem(cut)
    empty = tmp_path / "img4.jpg"
    empty.write_bytes(b"")
    assert images.image_problem(empty) == "empty file (0 bytes)"
    png = tmp_path / "img5.png"
    assert cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    assert images.image_problem(png) is None
    png.write_bytes(png.read_bytes()[:-12])
    assert "truncated PNG" in images.image_problem(png)
    with pytest.raises(OSError, match=r"img3\.jpg: truncated JPEG"):
        images.read_frames([good, cut])
    with pytest.raises(OSError, match=r"img4\.jpg: empty file"):
        images.read_frames([empty])


def test_corrupt_frames_strict_and_lenient(casme):
    _truncate(casme / "Cropped" / "sub01" / "EP02_01f" / "reg_img99.jpg")
    (casme / "Cropped" / "sub01" / "EP03_02" / "reg_img6.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"2 of 9 clips(.|\n)*reg_img99\.jpg: truncated "
                                                r"JPEG(.|\n)*reg_img6\.jpg: empty file"):
        ds.load_index("casme2", casme)
    df = ds.load_index("casme2", casme, strict=False)
    ex = ds.excluded(df)
    assert list(ex["sample_id"]) == ["casme2/sub01/EP02_01f", "casme2/sub01/EP03_02"]
    assert ex["reason"].str.startswith("unreadable frames: ").all()
    assert "reg_img99.jpg: truncated JPEG" in ex["reason"].iloc[0]


# ------------------------------------------------------------------ the data stage

def test_build_index_writes_files(casme, tmp_path):
    cfg = DataConfig(dataset="casme2", root=str(casme), protocol="megc2019-3class")
    out, info = ds.build_index(cfg, out_dir=tmp_path / "data")
    assert info["n_clips"] == 4 and info["n_excluded"] == 5 and info["synthetic"] is False
    assert info["labels"] == ["negative", "positive", "surprise"] and info["fps"] == 200
    assert info["aligned"] is True
    saved = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert saved == info
    back = handover.read_index(tmp_path / "data" / "index.csv")
    assert list(back.columns) == list(out.columns)
    assert back["apex"].dtype == "Int64" and pd.isna(back["apex"].iloc[2])
    assert back["aus"].iloc[0] == "12" and back["apex_note"].iloc[0] == ""
    pd.testing.assert_frame_equal(back, out, check_dtype=False)
    ex = pd.read_csv(tmp_path / "data" / "excluded.csv")
    assert list(ex.columns) == ["sample_id", "reason"] and len(ex) == 5
    assert not list((tmp_path / "data").glob(".*tmp"))


def test_build_index_synthetic(tmp_path):
    pytest.importorskip("mer_core.synthetic")
    cfg = DataConfig(root=str(tmp_path / "syn"), synthetic_size=32)
    out, info = ds.build_index(cfg, out_dir=tmp_path / "data", subjects=["sub01"],
                               progress=False)
    assert info["synthetic"] is True and "NOT real CASME II" in info["description"]
    assert set(out["subject"]) == {"sub01"} and out["sample_id"].str.startswith("synthetic/").all()
    # sub01 has disgust 2, happiness 1, others 6 (CASME II's shape), all in casme2-5class.
    assert out["label"].value_counts().to_dict() == {"others": 6, "disgust": 2, "happiness": 1}


# ------------------------------------------------------------------ the dataset card

def test_card(casme, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from mer_core import card, charts

    out = ds.apply_protocol(ds.load_index("casme2", casme), "casme2-5class")
    table = card.class_subject_table(out)
    assert list(table.columns) == vocab.protocol_labels("casme2-5class") + ["total"]
    assert table.loc["total", "total"] == 7 and table.loc["sub01", "disgust"] == 1
    assert card.clip_lengths(out).iloc[0] == 5
    stats = card.clip_length_stats(out, fps=200)
    assert stats["min"] == 3 and stats["max"] == 5 and stats["apex_na"] == 2
    ex = card.pick_examples(out)
    # surprise has no clip with an annotated apex: left out of the strips
    assert list(ex["label"]) == ["happiness", "disgust", "repression", "others"]
    diff, gain = card.difference_image(np.zeros((4, 4, 3), np.uint8),
                                       np.full((4, 4, 3), 2, np.uint8))
    assert diff.max() == 255 and gain == pytest.approx(127.5)
    charts.save_figure(card.class_subject_figure(table), tmp_path / "f" / "table.png", tight=True)
    png = charts.save_figure(card.class_strip_figure(out), tmp_path / "f" / "strip.png", tight=True)
    charts.save_figure(card.clip_length_figure(out, fps=200), tmp_path / "f" / "len.png",
                       tight=True)
    assert png.stat().st_size > 1000
    summary = card.card_summary(out, {"labels": vocab.protocol_labels("casme2-5class"), "fps": 200})
    assert summary["per_class"]["others"] == 1 and summary["n_clips"] == 7
    json.dumps(summary)
