"""Synthetic SAMM- and SMIC-E-shaped stand-ins: counts, formats read back by the real readers,
determinism, and the CASME-II-shaped generator's output left unchanged."""
from __future__ import annotations

import hashlib
import re

import cv2
import openpyxl
import pandas as pd
import pytest

from mer_core import datasets as ds
from mer_core import synthetic as syn
from mer_core import synthetic_faces as faces
from mer_core import synthetic_standins as st
from mer_core import vocab

# The tables (negative/positive/surprise), typed again here so that a typo in the
# module's copy cannot pass.
SAMM_TABLE = """006 9/0/2, 007 1/5/2, 009 3/0/1, 010 4/0/0, 011 13/7/0, 012 2/0/1, 013 6/0/0,
014 2/7/1, 015 2/0/1, 016 2/1/2, 017 3/0/1, 018 2/0/1, 019 0/1/0, 020 2/2/0, 021 2/0/0,
022 3/2/0, 023 1/0/0, 024 1/0/0, 026 9/0/0, 028 1/0/2, 030 3/0/0, 031 1/0/0, 032 4/0/0,
033 4/1/0, 034 3/0/0, 035 7/0/1, 036 1/0/0, 037 1/0/0"""
SMIC_TABLE = """s01 3/2/1, s02 0/1/5, s03 22/11/6, s04 10/4/5, s05 1/0/1, s06 2/0/2, s08 9/4/0,
s09 0/1/3, s11 3/3/1, s12 0/8/1, s13 0/10/0, s14 3/2/5, s15 1/1/2, s18 2/0/5, s19 0/1/1,
s20 14/3/5"""
LABELS = ["negative", "positive", "surprise"]
SAMM_SUBSET = ["012", "019"]
SMIC_SUBSET = ["s05", "s19"]  # they hold the valid second segments and the garbage third one


def table(text: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for item in text.replace("\n", " ").split(","):
        subject, counts = item.split()
        out[subject] = tuple(int(c) for c in counts.split("/"))
    return out


def per_subject(index: pd.DataFrame, name) -> dict[str, tuple[int, ...]]:
    counts = pd.crosstab(index["subject"], index["label"]).reindex(columns=LABELS, fill_value=0)
    return {name(s): tuple(int(v) for v in row) for s, row in counts.iterrows()}


def hashes(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def samm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins") / "samm"
    return st.generate_samm(root, size=32, subjects=SAMM_SUBSET, progress=False, workers=1)


@pytest.fixture(scope="module")
def smic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins") / "smic"
    return st.generate_smic(root, size=32, subjects=SMIC_SUBSET, progress=False, workers=1)


# ------------------------------------------------------------------------------ count tables

def test_count_tables_are_the_composite_list():
    samm, smic = table(SAMM_TABLE), table(SMIC_TABLE)
    assert {f"{k}": v for k, v in st.SAMM_COUNTS.items()} == samm
    assert {f"s{k:02d}": v for k, v in st.SMIC_COUNTS.items()} == smic
    assert len(samm) == 28 and len(smic) == 16
    assert tuple(map(sum, zip(*samm.values()))) == (92, 26, 15)
    assert tuple(map(sum, zip(*smic.values()))) == (70, 51, 43)
    assert sum(st.SAMM_NEGATIVE.values()) == 92


def test_samm_plan_counts_words_and_timing():
    plan = st.plan_samm(0)
    words = vocab.PROTOCOLS["megc2019-3class"]["maps"]["samm"]
    plan["label"] = plan["emotion"].map(words)  # the protocol's map, not the plan's own label
    assert per_subject(plan, lambda s: s[-3:]) == table(SAMM_TABLE)
    assert plan["emotion"].value_counts().to_dict() == {
        "anger": 57, "happiness": 26, "surprise": 15, "contempt": 12, "disgust": 9,
        "fear": 8, "sadness": 6}
    assert plan["filename"].str.fullmatch(r"\d{3}_[1-7]_\d+").all()
    assert (plan["filename"].str[:3] == plan["subject_code"]).all()
    assert not plan.duplicated(["subject", "filename"]).any()
    n = plan["offset"] - plan["onset"] + 1
    assert n.between(20, 100).all() and plan["onset"].max() > 5000
    assert ((plan["apex_true"] > plan["onset"]) & (plan["apex_true"] < plan["offset"])).all()
    assert plan.equals(st.plan_samm(0)) and not plan["onset"].equals(st.plan_samm(1)["onset"])


def test_smic_plan_counts_names_segments_and_timing():
    plan = st.plan_smic(0)
    assert per_subject(plan.assign(label=plan["emotion"]), str) == table(SMIC_TABLE)
    token = {"negative": "ne", "positive": "po", "surprise": "sur"}
    expect = "s" + plan["subject_code"].astype(str) + "_" + plan["emotion"].map(token) + "_"
    assert (plan["filename"].str[:-2] == expect).all()
    n = plan["offset"] - plan["onset"] + 1
    assert n.min() == 16 and n.max() == 58 and plan["onset"].min() > 10**7
    assert (plan["first_frame"] < plan["onset"]).all()
    assert (plan["last_frame"] > plan["offset"]).all()
    two, three = plan[plan["onset2"].notna()], plan[plan["onset3"].notna()]
    assert len(two) == 3 and len(three) == 1
    assert ((two["onset2"] > two["offset"]) & (two["offset2"] > two["onset2"])
            & (two["last_frame"] > two["offset2"])).all()
    assert (three["onset3"] < three["onset"]).all() and (three["offset3"] < three["onset3"]).all()
    assert set(two["subject"]) | set(three["subject"]) >= set(SMIC_SUBSET)


def test_action_units_tell_the_classes_apart():
    """Positive clips raise the lip corners (AU 12), surprise the brows (AU 1/2 only), negative
    clips never smile: the three classes are learnable from the rendered motion."""
    for plan in (st.plan_samm(0), st.plan_smic(0)):
        aus = plan["aus"].astype(str).map(lambda t: {a for a, _ in faces.parse_aus(t)})
        label = plan["label"]
        assert aus[label == "positive"].map(lambda s: 12 in s).all()
        assert aus[label == "surprise"].map(lambda s: s <= {1, 2}).all()
        assert not aus[label == "negative"].map(lambda s: s <= {1, 2} or 12 in s).any()


# --------------------------------------------------------------------------------- SAMM files

def test_samm_stand_in_reads_back_with_the_samm_reader(samm_root):
    index = ds.load_index("samm", samm_root, validate_frames=True)
    assert index["subject"].unique().tolist() == ["samm012", "samm019"]
    out = ds.apply_protocol(index, "megc2019-3class")
    samm = table(SAMM_TABLE)
    assert per_subject(out, lambda s: s[-3:]) == {k: samm[k] for k in SAMM_SUBSET}
    truth = pd.read_csv(samm_root / "ground_truth.csv", dtype={"filename": str})
    assert index["apex"].astype(int).tolist() == truth["apex_true"].tolist()
    r = index.iloc[0]
    code = r["subject"][-3:]
    frame = samm_root / code / r["clip"] / f"{code}_{r['onset']:05d}.jpg"
    img = cv2.imread(str(frame), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (32, 32)  # grey, one channel


def test_samm_sheet_has_the_preamble_and_official_columns(samm_root):
    wb = openpyxl.load_workbook(samm_root / "SAMM_Micro_FACS_Codes_v2.xlsx")
    assert wb.sheetnames == ["MICRO_ONLY"]
    rows = list(wb["MICRO_ONLY"].iter_rows(values_only=True))
    assert "NOT REAL SAMM" in rows[0][0]
    assert rows[13][:6] == ("Subject", "Filename", "Inducement Code", "Onset Frame",
                            "Apex Frame", "Offset Frame")
    assert all(isinstance(r[0], str) and re.fullmatch(r"\d{3}", r[0]) for r in rows[14:])
    assert {r[10] for r in rows[14:]} <= {"Anger", "Contempt", "Disgust", "Fear", "Sadness",
                                         "Happiness", "Surprise"}
    text = (samm_root / "SYNTHETIC.txt").read_text()
    assert text.startswith("SYNTHETIC DATA - NOT REAL SAMM")
    assert st.standin_note(samm_root) == "SYNTHETIC DATA - NOT REAL SAMM."


# --------------------------------------------------------------------------------- SMIC files

def test_smic_stand_in_reads_back_with_the_smic_reader(smic_root):
    index = ds.load_index("smic", smic_root, validate_frames=True,
                          image_pattern="image{frame}.jpg")
    assert index.attrs["apex_annotated"] is False and index["apex"].isna().all()
    out = ds.apply_protocol(index, "megc2019-3class")
    smic = table(SMIC_TABLE)
    assert per_subject(out, str) == {k: smic[k] for k in SMIC_SUBSET}
    assert [s["segment"] for s in index.attrs["segments"]] == [2, 2]
    assert len(index.attrs["flags"]) == 1 and "segment 3" in index.attrs["flags"][0]["what"]
    assert (index["clip_on_disk"].str.fullmatch(r"s(5|19)_(ne|po|sur)_\d\d")).all()
    assert index["frames_dir"].str.contains("/HS/s(?:05|19)/s(?:5|19)_").all()
    truth = pd.read_csv(smic_root / "ground_truth.csv")
    assert truth["apex_true"].between(truth["onset"] + 1, truth["offset"] - 1).all()
    assert st.standin_note(smic_root) == "SYNTHETIC DATA - NOT REAL SMIC-E."


def test_smic_sheet_has_the_official_header(smic_root):
    wb = openpyxl.load_workbook(smic_root / "SMIC-HS-E_annotation.xlsx")
    assert wb.sheetnames == ["HS"]
    rows = list(wb["HS"].iter_rows(values_only=True))
    assert list(rows[0]) == ["Subject", "Filename", None, "OnsetF", "OffsetF", "Onset2F",
                             "Offset2F", "Onset3F", "Offset3F", None, "FirstF", "LastF",
                             "TotalMF1", "TotalMF2", "TotalMF3", "TotalVL", "Emotion"]
    assert all(isinstance(r[0], int) for r in rows[1:])
    assert {r[16] for r in rows[1:]} <= set(LABELS)


# ------------------------------------------------------------------------------ determinism

def test_same_seed_gives_byte_identical_stand_ins(tmp_path, samm_root, smic_root):
    again = st.generate_samm(tmp_path / "samm", size=32, subjects=["samm019", 12],
                             progress=False, workers=1)
    assert hashes(again) == hashes(samm_root)
    again = st.generate_smic(tmp_path / "smic", size=32, subjects=[19, 5], progress=False,
                             workers=1)
    assert hashes(again) == hashes(smic_root)
    other = st.generate_samm(tmp_path / "other", seed=1, size=32, subjects=SAMM_SUBSET,
                             progress=False, workers=1)
    assert hashes(other) != hashes(samm_root)
    assert st.stream_seed(0, "samm") not in (0, st.stream_seed(0, "smic"))


def test_subset_holds_the_same_clips_and_a_complete_set_is_skipped(tmp_path, samm_root):
    one = st.generate_samm(tmp_path / "one", size=32, subjects=["019"], progress=False,
                           workers=1)
    h1, h0 = hashes(one / "019"), hashes(samm_root / "019")
    assert h1 and h1 == h0
    stamp = one / st.STAMP_NAME
    mtime = stamp.stat().st_mtime_ns
    st.generate_samm(one, size=32, subjects=["019"], progress=False, workers=1)
    assert stamp.stat().st_mtime_ns == mtime  # complete, same parameters: untouched
    st.generate_samm(one, size=16, subjects=["019"], progress=False, workers=1)
    assert '"size": 16' in stamp.read_text()


def test_refuses_foreign_folders_and_unknown_subjects(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        st.generate_smic(foreign, size=16, subjects=["s19"], progress=False)
    with pytest.raises(ValueError, match="unknown subject"):
        st.generate_samm(tmp_path / "x", subjects=["008"], progress=False)


# The CASME-II-shaped set's bytes for seed 0 at the default size and amplitude, subject sub21:
# every file but SYNTHETIC.txt and .generated.json (they carry the generator's source hash).
# Computed once with the unmodified generator of commit 22aff04 (this venv's OpenCV/libjpeg);
# the stand-ins must never change it.
CASME_SUB21_DIGEST = "b1fcb64ae5dea851d7c0ec2ab1387470973c6427c6d239c84c8411d8244be9b3"


def test_casme_shaped_default_output_is_unchanged(tmp_path):
    root = syn.generate(tmp_path / "synthetic", seed=0, subjects=["sub21"], progress=False,
                        workers=1)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()
                       and p.name not in ("SYNTHETIC.txt", ".generated.json")):
        h.update(str(path.relative_to(root)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    assert h.hexdigest() == CASME_SUB21_DIGEST
