"""SMIC-E reader (``load_index("smic", ...)``, :mod:`mer_core.smic`) on a tiny tree whose sheet
is written in the official format, formulas with their cached values included."""
from __future__ import annotations

import re
import shutil
import zipfile

import cv2
import numpy as np
import openpyxl
import pytest

from mer_core import datasets as ds, handover, sheets, smic

from test_datasets import make_casme

# The official header, its two blank columns included.
HEADER = ["Subject", "Filename", None, "OnsetF", "OffsetF", "Onset2F", "Offset2F", "Onset3F",
          "Offset3F", None, "FirstF", "LastF", "TotalMF1", "TotalMF2", "TotalMF3", "TotalVL",
          "Emotion"]


def _row(subject, name, onset, offset, emotion, seg2=(None, None), seg3=(None, None),
         first=None, last=None):
    total = None if isinstance(offset, str) or isinstance(onset, str) else offset - onset + 1
    return [subject, name, None, onset, offset, *seg2, *seg3, None, first, last, total, None,
            None, None, emotion]


# Every trait: int subjects 1, 3, 20 (not contiguous); unpadded names; absolute frame numbers
# in the tens of millions; a valid second segment (row 2); a garbage third segment, before the
# onset with a negative length, the cached result of a formula (row 3); OffsetF of row 4 a
# formula with its cached value; a file name saying 'po' where Emotion says negative (row 5).
HS_ROWS = [
    _row(1, "s1_ne_01", 12345678, 12345680, "negative", seg2=(12345690, 12345692),
         first=12345600, last=12345700),
    _row(1, "s1_po_02", 20000010, 20000012, "positive", seg3=(19999000, "=H3-10")),
    _row(3, "s3_sur_01", 5000, "=D4+3", "surprise"),
    _row(20, "s20_po_01", 700, 702, "negative"),
]
# Formula cells -> the value Excel cached for them (openpyxl writes formulas without one).
HS_CACHED = {"I3": 19998990, "E4": 5003}
VIS_ROWS = [
    _row(1, "s1_ne_01", 300, 303, "negative"),
    _row(2, "s2_sur_01", 10, 12, "surprise"),
]
# Where each HS clip's frames lie: the four layouts the reader looks in.
HS_FOLDERS = {"s1_ne_01": "HS/s01/s1_ne_01", "s1_po_02": "HS/s01/s01_po_02",
              "s3_sur_01": "s03/s3_sur_01", "s20_po_01": "HS/s20/s20_po_01"}
HS_FRAMES = {"s1_ne_01": (12345678, 12345680), "s1_po_02": (20000010, 20000012),
             "s3_sur_01": (5000, 5003), "s20_po_01": (700, 702)}


def write_sheet(path, hs_rows=HS_ROWS, cached=HS_CACHED, vis_rows=VIS_ROWS):
    """The SMIC-E sheet (worksheets HS, VIS), then the cached values of its formula cells
    written into the HS worksheet's XML, as Excel leaves them."""
    wb = openpyxl.Workbook()
    for i, (title, rows) in enumerate((("HS", hs_rows), ("VIS", vis_rows))):
        ws = wb.active if i == 0 else wb.create_sheet()
        ws.title = title
        ws.append(HEADER)
        for r in rows:
            ws.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    if cached:
        _cache_formulas(path, "xl/worksheets/sheet1.xml", cached)
    return path


def _cache_formulas(path, member, cached):
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    xml = files[member].decode()
    for ref, value in cached.items():
        xml, n = re.subn(rf'(<c r="{ref}"[^>]*><f>[^<]*</f>)<v\s*/>', rf"\g<1><v>{value}</v>", xml)
        assert n == 1, f"no formula cell {ref}"
    files[member] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)


def write_frames(root, folders=HS_FOLDERS, frames=HS_FRAMES):
    for name, folder in folders.items():
        onset, offset = frames[name]
        for n in range(onset - 1, offset + 2):
            path = root / folder / f"image{n:07d}.bmp"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), np.full((8, 8, 3), n % 256, np.uint8))


@pytest.fixture
def smic_root(tmp_path):
    root = tmp_path / "smic"
    write_sheet(root / smic.SMIC_SHEET_NAME)
    write_frames(root)
    return root


def _by_id(records):
    return {r["sample_id"]: r for r in records}


# ------------------------------------------------------------------ the sheet alone

def test_hs_index_from_the_sheet(smic_root):
    df = ds.load_index("smic", smic_root, validate_frames=False)
    assert list(df.columns) == handover.INDEX_COLUMNS + ["clip_on_disk"]
    assert list(df["sample_id"]) == ["smic/s01/s01_ne_01", "smic/s01/s01_po_02",
                                     "smic/s03/s03_sur_01", "smic/s20/s20_po_01"]
    assert list(df["subject"]) == ["s01", "s01", "s03", "s20"]
    assert list(df["clip_on_disk"]) == ["s1_ne_01", "s1_po_02", "s3_sur_01", "s20_po_01"]
    assert df["onset"].dtype == np.int64 and df["onset"].iloc[0] == 12345678
    assert df["offset"].iloc[1] == 20000012
    assert df["offset"].iloc[2] == 5003                        # a formula's cached value
    assert df["apex"].isna().all() and (df["apex_note"] == "not annotated").all()
    assert list(df["emotion"]) == ["negative", "positive", "surprise", "negative"]
    assert (df["aus"] == "").all()
    a = df.attrs
    assert a["apex_annotated"] is False and a["band"] == "HS" and a["fps"] == 100
    assert a["worksheet"] == "HS" and a["aligned"] is False and a["excluded"] == []
    # the second segment of row 2 is listed, not a clip
    assert a["segments"] == [{"sample_id": "smic/s01/s01_ne_01", "segment": 2,
                              "onset": 12345690, "offset": 12345692}]
    flags = _by_id(a["flags"])
    assert set(flags) == {"smic/s01/s01_po_02", "smic/s20/s20_po_01"}
    garbage = flags["smic/s01/s01_po_02"]["what"]
    assert "segment 3" in garbage and "before the clip's onset 20000010" in garbage
    assert "not a clip" in garbage and "row 3" in garbage
    token = flags["smic/s20/s20_po_01"]["what"]
    assert "'po'" in token and "positive" in token and "'negative'" in token
    assert "Emotion cell is used" in token


def test_garbage_segment_with_negative_length_only(tmp_path):
    rows = [_row(1, "s1_ne_01", 100, 110, "negative", seg2=(120, 118), seg3=(130, 140)),
            [None] * 12 + ["=SUM(M2:M2)"]]  # a totals row: blank in every column read
    write_sheet(tmp_path / smic.SMIC_SHEET_NAME, hs_rows=rows, cached={})
    df = ds.load_index("smic", tmp_path, validate_frames=False)
    assert len(df) == 1 and df.attrs["excluded"] == []
    assert "segment 2" in df.attrs["flags"][0]["what"]
    assert "negative length (-2 frames)" in df.attrs["flags"][0]["what"]
    assert [s["segment"] for s in df.attrs["segments"]] == [3]


def test_vis_band(smic_root):
    df = ds.load_index("smic", smic_root, band="VIS", validate_frames=False)
    assert list(df["sample_id"]) == ["smic/s01/s01_ne_01", "smic/s02/s02_sur_01"]
    assert df.attrs["band"] == "VIS" and df.attrs["fps"] == 25
    assert df.attrs["worksheet"] == "VIS" and df.attrs["flags"] == []
    # no folder exists: the first default pattern is where the missing frames are reported
    assert df["frames_dir"].iloc[0] == str(smic_root / "VIS" / "s01" / "s1_ne_01")
    with pytest.raises(ValueError, match="band 'IR' is not one of HS, VIS"):
        ds.load_index("smic", smic_root, band="IR")


# ------------------------------------------------------------------ bad cells

def _missing_variant(root):
    """The edited sheet that circulates: an extra row with a text note in a frame column."""
    rows = HS_ROWS + [_row(20, "s20_ne_03", "MISSING <-426679", 800, "negative")]
    return write_sheet(root / smic.SMIC_SHEET_NAME, hs_rows=rows)


def test_text_in_a_frame_column_strict_and_lenient(smic_root):
    _missing_variant(smic_root)
    with pytest.raises(sheets.SheetError, match=r"SMIC-HS-E_annotation\.xlsx \(HS\): row 6 "
                                                r"\(s20_ne_03\), column OnsetF: 'MISSING "
                                                r"<-426679'; expected a whole"):
        ds.load_index("smic", smic_root, validate_frames=False)
    df = ds.load_index("smic", smic_root, strict=False)
    assert len(df) == 4
    ex = ds.excluded(df)
    assert list(ex["sample_id"]) == ["smic/s20/s20_ne_03"]
    assert ex["reason"].iloc[0].startswith("bad sheet row: ")
    assert "row 6" in ex["reason"].iloc[0] and "MISSING <-426679" in ex["reason"].iloc[0]


def test_formula_without_cached_value_names_the_row(tmp_path):
    # openpyxl cannot compute formulas: without the cached value the cell reads as empty.
    write_sheet(tmp_path / smic.SMIC_SHEET_NAME, cached={"I3": 19998990})
    with pytest.raises(sheets.SheetError, match=r"row 4 \(s3_sur_01\), column OffsetF: the "
                                                r"formula '=D4\+3' has no cached value"):
        ds.load_index("smic", tmp_path, validate_frames=False)


def test_same_clip_padded_and_unpadded(smic_root):
    rows = HS_ROWS + [_row(1, "s01_ne_01", 1, 2, "negative")]
    write_sheet(smic_root / smic.SMIC_SHEET_NAME, hs_rows=rows)
    with pytest.raises(sheets.SheetError, match=r"rows 2 and 6 are the same clip 's01_ne_01'"):
        ds.load_index("smic", smic_root, validate_frames=False)
    df = ds.load_index("smic", smic_root, validate_frames=False, strict=False)
    assert len(df) == 4 and ds.excluded(df)["sample_id"].tolist() == ["smic/s01/s01_ne_01"]


def test_missing_column_and_worksheet(tmp_path):
    header = [h if h != "OnsetF" else "Onset" for h in HEADER]
    wb = openpyxl.Workbook()
    wb.active.title = "HS"
    wb.active.append(header)
    wb.active.append(HS_ROWS[0])
    wb.save(tmp_path / smic.SMIC_SHEET_NAME)
    with pytest.raises(sheets.SheetError, match=r"header on row 1: missing column\(s\) 'OnsetF'"):
        ds.load_index("smic", tmp_path, validate_frames=False)
    with pytest.raises(sheets.SheetError, match=r"worksheet 'VIS' not found"):
        ds.load_index("smic", tmp_path, band="VIS", validate_frames=False)


# ------------------------------------------------------------------ frames

def test_frames_found_under_either_name(smic_root):
    df = ds.load_index("smic", smic_root)
    assert len(df) == 4
    assert list(df["frames_dir"]) == [str(smic_root / f) for f in HS_FOLDERS.values()]
    assert df.attrs["excluded"] == []


def test_missing_frames_strict_and_lenient(smic_root):
    (smic_root / "HS" / "s01" / "s01_po_02" / "image20000011.bmp").unlink()
    shutil.rmtree(smic_root / "s03")
    with pytest.raises(FileNotFoundError, match=r"2 of 4 clips(.|\n)*frames 20000011 of "
                                                r"20000010\.\.20000012(.|\n)*frame folder"):
        ds.load_index("smic", smic_root)
    df = ds.load_index("smic", smic_root, strict=False)
    assert list(df["sample_id"]) == ["smic/s01/s01_ne_01", "smic/s20/s20_po_01"]
    assert ds.excluded(df)["sample_id"].tolist() == ["smic/s01/s01_po_02", "smic/s03/s03_sur_01"]


def test_folder_and_image_patterns(smic_root):
    df = ds.load_index("smic", smic_root, image_pattern="image{frame:07d}.bmp")
    assert len(df) == 4
    with pytest.raises(FileNotFoundError, match="image_pattern"):
        ds.load_index("smic", smic_root, image_pattern="image{frame:09d}.bmp")
    shutil.move(smic_root / "HS", smic_root / "frames")
    df = ds.load_index("smic", smic_root, folder_pattern="frames/{subject}/{filename}",
                       validate_frames=False)
    assert df["frames_dir"].iloc[0] == str(smic_root / "frames" / "s01" / "s1_ne_01")
    with pytest.raises(ValueError, match="folder_pattern '{band}/{person}'"):
        ds.load_index("smic", smic_root, folder_pattern="{band}/{person}")


# ------------------------------------------------------------------ options and protocols

def test_smic_options_only_for_smic(smic_root, tmp_path):
    make_casme(tmp_path / "c")
    with pytest.raises(ValueError, match="'band' and 'folder_pattern' are for SMIC-E only"):
        ds.load_index("casme2", tmp_path / "c", band="HS")
    with pytest.raises(ValueError, match="'layout' is for CASME II"):
        ds.load_index("smic", smic_root, layout="raw")
    # the other readers have an annotated apex
    assert ds.load_index("casme2", tmp_path / "c", validate_frames=False) \
        .attrs["apex_annotated"] is True


def test_protocols(smic_root):
    df = ds.load_index("smic", smic_root)
    out = ds.apply_protocol(df, "megc2019-3class")
    assert list(out["label"]) == ["negative", "positive", "surprise", "negative"]
    assert out.attrs["apex_annotated"] is False and out.attrs["flags"] == df.attrs["flags"]
    assert ds.excluded(out).empty
    for protocol in ("casme2-5class", "casme2-7class"):
        with pytest.raises(ValueError, match=rf"protocol '{protocol}' does not apply to "
                                             r"dataset\(s\) smic(.|\n)*protocols that apply: "
                                             r"smic has megc2019-3class"):
            ds.apply_protocol(df, protocol)


def test_data_stage_records_that_smic_has_no_annotated_apex(smic_root, tmp_path):
    """The data stage reads SMIC-E (its official sheet) and says in dataset.json that it has no
    annotated apex, with its band's frame rate; the apex stage and the strategies needing an
    annotation take it from there (tests/test_composite.py runs them)."""
    import dataclasses

    from mer_core.config import DataConfig, section

    cfg = section(DataConfig, **{**dataclasses.asdict(DataConfig()), "dataset": "smic",
                                 "root": str(smic_root), "protocol": "megc2019-3class"})
    index, info = ds.build_index(cfg, out_dir=tmp_path / "data")
    assert info["apex_annotated"] is False and info["fps"] == 100
    assert info["parts"]["smic"]["label"] == "SMIC-E HS" and not info["synthetic"]
    assert index["apex"].isna().all() and (tmp_path / "data" / "index.csv").is_file()