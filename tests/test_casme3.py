"""CAS(ME)^3 Part A reader (mer_core.casme3 through load_index) and its protocols, on a tiny
tree around a sheet written in the official format (worksheet ``label``, every cell text)."""
from __future__ import annotations

import json

import openpyxl
import pandas as pd
import pytest

from mer_core import casme3, datasets as ds, handover, sheets, vocab
from mer_core.config import DataConfig

from test_datasets import _image

SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
# Every trait of the official sheet, all as text: spNO.<n> subjects (1, 2, 10: sorted ids), two
# MEs in one video (spNO.1 a), an upper-case task letter ('A'), 'Others' / 'others', Roman
# objective classes, apex outside onset..offset (row 4), offset 0 (row 7), onset after offset
# (row 8).
ROWS = [
    ["spNO.1", "a", "10", "12", "14", "L12", "I", "happy"],          # row 2
    ["spNO.1", "a", "30", "31", "33", "4+7", "II", "disgust"],       # row 3
    ["spNO.1", "b", "5", "9", "7", "1+2", "VI", "surprise"],         # row 4: apex outside
    ["spNO.2", "A", "3", "4", "5", "12", "III", "Others"],           # row 5: upper-case task
    ["spNO.2", "c", "7", "8", "9", "4", "VII", "others"],            # row 6
    ["spNO.2", "d", "20", "21", "0", "4", "II", "fear"],             # row 7: offset 0
    ["spNO.10", "e", "40", "41", "35", "9", "II", "anger"],          # row 8: onset > offset
    ["spNO.10", "f", "1", "2", "3", "15", "IV", "sad"],              # row 9
]
GOOD = ROWS[:5] + ROWS[7:]  # the rows with a clip
KEPT = ["casme3/spNO001/a_onset10", "casme3/spNO001/a_onset30", "casme3/spNO001/b_onset5",
        "casme3/spNO002/a_onset3", "casme3/spNO002/c_onset7", "casme3/spNO010/f_onset1"]


def write_sheet(path, rows=ROWS, header=HEADER, title="label"):
    """The sheet as the release stores it: every cell a text cell."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    for line in [header] + rows:
        ws.append(line)
        for cell in ws[ws.max_row]:
            cell.number_format = "@"  # Excel's Text format, as in the official file
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def make_casme3(root, rows=ROWS, pattern="{subject}/{task}/color/{frame}.jpg"):
    """The tree: frames onset-1..offset+1 of every clip that has one, plus the sheet."""
    for r in rows:
        onset, offset = int(r[2]), int(r[4])
        if offset == 0 or onset > offset:
            continue
        for n in range(max(onset - 1, 0), offset + 2):
            _image(root / pattern.format(subject=r[0], task=r[1].lower(), frame=n), n % 256)
    return write_sheet(root / SHEET, rows)


@pytest.fixture
def cas3(tmp_path):
    root = tmp_path / "casme3"
    make_casme3(root)
    return root


def test_fixture_sheet_is_all_text(cas3):
    wb = openpyxl.load_workbook(cas3 / SHEET, read_only=True)
    values = [v for row in wb["label"].iter_rows(values_only=True) for v in row]
    wb.close()
    assert values and all(isinstance(v, str) for v in values)


def test_casme3_index(cas3):
    df = ds.load_index("casme3", cas3, strict=False)
    assert list(df.columns) == handover.INDEX_COLUMNS + ["objective_class"]
    assert list(df["sample_id"]) == KEPT and list(df.index) == list(range(6))
    assert list(df["subject"]) == ["spNO001"] * 3 + ["spNO002"] * 2 + ["spNO010"]
    assert sorted(set(df["subject"])) == ["spNO001", "spNO002", "spNO010"]  # sorts numerically
    assert df.attrs["subject_codes"] == {"spNO001": "spNO.1", "spNO002": "spNO.2",
                                         "spNO010": "spNO.10"}
    # Two MEs of one video are two clips; the upper-case 'A' is task a.
    assert list(df["clip"][:2]) == ["a_onset10", "a_onset30"] and df["clip"][3] == "a_onset3"
    assert df["onset"].dtype == "int64" and list(df["onset"]) == [10, 30, 5, 3, 7, 1]
    assert list(df["offset"]) == [14, 33, 7, 5, 9, 3]
    assert str(df["apex"].dtype) == "Int64" and df["apex"][0] == 12
    assert pd.isna(df["apex"][2])
    assert df["apex_note"][2] == "apex 9 in sheet is outside onset..offset 5..7"
    assert df["apex_note"][0] == ""
    assert list(df["emotion"]) == ["happy", "disgust", "surprise", "others", "others", "sad"]
    assert list(df["objective_class"]) == ["1", "2", "6", "3", "7", "4"]
    assert list(df["aus"][:2]) == ["L12", "4+7"]
    assert df["frames_dir"][3] == str(cas3 / "spNO.2" / "a" / "color")
    assert set(df["dataset"]) == {"casme3"} and df.attrs["aligned"] is False
    assert df.attrs["worksheet"] == "label" and df.attrs["layout"] == "casme3"
    assert vocab.FPS["casme3"] == 30


def test_rows_without_a_clip_are_excluded_with_their_reason(cas3):
    ex = ds.excluded(ds.load_index("casme3", cas3, strict=False))
    assert list(ex["sample_id"]) == ["casme3/spNO002/d_onset20", "casme3/spNO010/e_onset40"]
    assert ex["reason"][0] == "offset not annotated: sheet row 7 has Offset 0 (Onset 20)"
    assert ex["reason"][1] == "onset after offset: sheet row 8 has Onset 40 after Offset 35"
    assert list(ds.exclusion_summary(ds.load_index("casme3", cas3, strict=False))["reason"]) \
        == ["offset not annotated", "onset after offset"]


def test_rows_without_a_clip_are_excluded_also_when_strict(cas3):
    # The official sheet has such rows: strict (about frames on disk) never turns them into an
    # error that would stop every user of the sheet; they are listed either way.
    for validate in (True, False):
        df = ds.load_index("casme3", cas3, validate_frames=validate)
        assert list(ds.excluded(df)["sample_id"]) == ["casme3/spNO002/d_onset20",
                                                      "casme3/spNO010/e_onset40"]
        assert "casme3/spNO002/d_onset20" not in set(df["sample_id"])


def test_sheet_alone_without_frames(tmp_path):
    write_sheet(tmp_path / SHEET)
    df = ds.load_index("casme3", tmp_path, strict=False, validate_frames=False)
    assert list(df["sample_id"]) == KEPT
    df = ds.load_index("casme3", tmp_path, strict=False)  # with validation: no frames, no clip
    assert df.empty and list(df.columns) == handover.INDEX_COLUMNS
    reasons = ds.excluded(df)["reason"]
    assert len(reasons) == 8 and reasons[2:].str.contains("spNO.1/a/color: frame folder").sum() == 2


def test_missing_frames_join_the_sheet_exclusions(cas3):
    (cas3 / "spNO.1" / "b" / "color" / "6.jpg").unlink()
    df = ds.load_index("casme3", cas3, strict=False)
    ex = ds.excluded(df)
    assert list(ex["sample_id"]) == ["casme3/spNO002/d_onset20", "casme3/spNO010/e_onset40",
                                     "casme3/spNO001/b_onset5"]
    assert ex["reason"][2].startswith("missing frames") and "6 of 5..7" in ex["reason"][2]
    assert len(df) == 5


def test_image_pattern(tmp_path):
    pattern = "{subject}/{task}/rgb/img{frame:04d}.jpg"
    make_casme3(tmp_path, rows=GOOD, pattern=pattern)
    df = ds.load_index("casme3", tmp_path, image_pattern=pattern)
    assert df["frames_dir"][0] == str(tmp_path / "spNO.1" / "a" / "rgb") and len(df) == 6
    with pytest.raises(FileNotFoundError, match="6 of 6 clips(.|\n)*color: frame folder not"):
        ds.load_index("casme3", tmp_path)
    # right folder, wrong file names: the files are named against the pattern
    with pytest.raises(FileNotFoundError, match=r"do not follow image_pattern .*'img0010\.jpg'"):
        ds.load_index("casme3", tmp_path, image_pattern="{subject}/{task}/rgb/{frame}.jpg")
    with pytest.raises(ValueError, match="only the file name"):
        ds.load_index("casme3", tmp_path, image_pattern="{subject}/{frame}/x{frame}.jpg")
    with pytest.raises(ValueError, match="fields are subject, task, filename, frame"):
        ds.load_index("casme3", tmp_path, image_pattern="{subj}/{frame}.jpg")
    with pytest.raises(ValueError, match="last digits"):
        ds.load_index("casme3", tmp_path, image_pattern="{subject}/{frame}_{task}.jpg")
    with pytest.raises(ValueError, match="'layout' is for CASME II; casme3"):
        ds.load_index("casme3", tmp_path, layout="raw")


def test_duplicate_key_names_both_rows(tmp_path):
    rows = ROWS + [["spNO.1", "A", "30", "30", "31", "4", "II", "disgust"]]
    write_sheet(tmp_path / SHEET, rows)
    with pytest.raises(sheets.SheetError, match=r"rows 3 and 10 have the same key \(Subject "
                                                r"spNO\.1, Filename 'A', Onset 30\)"):
        ds.load_index("casme3", tmp_path, strict=False, validate_frames=False)


@pytest.mark.parametrize("column, value, message", [
    (0, "sub01", r"row 3: Subject 'sub01' is not a CAS\(ME\)\^3 subject code"),
    (1, "a.1", r"row 3: Filename 'a.1' is not a task code"),
    (2, "3O", r"row 3: Onset is '3O'; expected a whole frame number"),
    (6, "IIX", r"row 3: Objective class 'IIX' is not a Roman numeral"),
    (7, " ", r"row 3 \(spNO001/a_onset30\): emotion is empty"),
])
def test_bad_cells_name_the_row_and_what_was_expected(tmp_path, column, value, message):
    rows = [list(r) for r in ROWS]
    rows[1][column] = value
    write_sheet(tmp_path / SHEET, rows)
    with pytest.raises(sheets.SheetError, match=message):
        ds.load_index("casme3", tmp_path, strict=False, validate_frames=False)


def test_sheet_format_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    write_sheet(tmp_path / SHEET, title="Sheet1")
    with pytest.raises(sheets.SheetError, match="worksheet 'label' not found"):
        ds.load_index("casme3", tmp_path, validate_frames=False)
    assert len(ds.load_index("casme3", tmp_path, worksheet="Sheet1", strict=False,
                             validate_frames=False)) == 6
    write_sheet(tmp_path / SHEET, header=[h if h != "AU" else "AUs?" for h in HEADER])
    with pytest.raises(sheets.SheetError, match="header on row 1: missing column.*'AU'"):
        ds.load_index("casme3", tmp_path, validate_frames=False)
    with pytest.raises(FileNotFoundError, match=r"cas\(me\)3_part_A_ME_label_JpgIndex"):
        ds.load_index("casme3", (tmp_path / "empty").resolve(), validate_frames=False)


def test_objective_class_numerals():
    assert [casme3._objective_class(v, "x") for v in ("I", "iv", "IX", "XII", "3", "")] == \
        ["1", "4", "9", "12", "3", ""]


# ------------------------------------------------------------------ protocols

def test_protocol_megc(cas3):
    out = ds.apply_protocol(ds.load_index("casme3", cas3, strict=False), "megc2019-3class")
    assert dict(zip(out["sample_id"], out["label"])) == {
        KEPT[0]: "positive", KEPT[1]: "negative", KEPT[2]: "surprise", KEPT[5]: "negative"}
    ex = ds.excluded(out)
    assert len(ex) == 4  # the two sheet exclusions carried forward, then the two 'others'
    assert ex["reason"][2:].str.contains("emotion others is not a class of megc2019").all()


def test_protocol_7class(cas3):
    out = ds.apply_protocol(ds.load_index("casme3", cas3, strict=False), "casme3-7class")
    assert list(out["label"]) == list(out["emotion"]) and len(out) == 6
    assert vocab.protocol_labels("casme3-7class") == ["happy", "disgust", "fear", "anger",
                                                      "sad", "surprise", "others"]


def test_protocol_4class(cas3):
    out = ds.apply_protocol(ds.load_index("casme3", cas3, strict=False), "casme3-4class")
    assert list(out["label"]) == ["positive", "negative", "surprise", "others", "others",
                                  "negative"]
    assert vocab.protocol_labels("casme3-4class") == ["negative", "positive", "surprise",
                                                      "others"]
    maps = vocab.PROTOCOLS["casme3-4class"]["maps"]["casme3"]
    assert {e for e, c in maps.items() if c == "negative"} == {"disgust", "fear", "anger", "sad"}


def test_casme2_protocol_is_a_clear_error(cas3):
    df = ds.load_index("casme3", cas3, strict=False)
    with pytest.raises(ValueError, match=r"'casme2-5class' does not apply to dataset\(s\) "
                       r"casme3; it covers casme2, synthetic; the protocols that apply: "
                       r"casme3 has megc2019-3class, casme3-7class, casme3-4class"):
        ds.apply_protocol(df, "casme2-5class")


def test_build_index(cas3, tmp_path):
    cfg = DataConfig(dataset="casme3", root=str(cas3), protocol="casme3-4class", strict=False)
    out, info = ds.build_index(cfg, out_dir=tmp_path / "data", progress=False)
    assert info["fps"] == 30 and info["n_clips"] == 6 and info["n_excluded"] == 2
    assert info["description"].startswith("CAS(ME)^3 Part A") and info["n_subjects"] == 3
    assert json.loads((tmp_path / "data" / "dataset.json").read_text()) == info
    back = handover.read_index(tmp_path / "data" / "index.csv")
    assert list(back["subject"]) == list(out["subject"]) and pd.isna(back["apex"][2])
