"""Synthetic CASME-II-shaped dataset: shape, sheet format, determinism, no label leak at onset."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mer_core import synthetic as syn
from mer_core import synthetic_faces as faces

# The table (disgust/fear/happiness/others/repression/sadness/surprise), typed again here
# so that a typo in the module's copy cannot pass.
TABLE = """01: 2/0/1/6/0/0/0, 02: 0/0/1/4/5/0/3, 03: 4/0/0/2/0/0/1, 04: 3/0/0/2/0/0/0,
05: 1/0/1/12/0/0/5, 06: 1/0/1/1/0/0/2, 07: 5/0/0/4/0/0/0, 08: 0/0/0/2/1/0/0, 09: 0/1/5/3/5/0/0,
10: 0/1/0/13/0/0/0, 11: 4/0/0/6/0/0/0, 12: 5/0/2/1/0/0/4, 13: 0/0/2/6/0/0/0, 14: 0/0/3/1/0/0/0,
15: 1/0/1/0/0/0/1, 16: 0/0/2/1/1/0/0, 17: 14/0/7/3/9/2/1, 18: 0/0/0/3/0/0/0, 19: 3/0/3/4/0/1/5,
20: 2/0/0/9/0/0/0, 21: 0/0/0/1/1/0/0, 22: 0/0/0/0/2/0/0, 23: 4/0/1/4/3/0/0, 24: 2/0/0/4/0/3/1,
25: 3/0/0/2/0/0/2, 26: 9/0/2/5/0/1/0"""
CLASSES = ["disgust", "fear", "happiness", "others", "repression", "sadness", "surprise"]
HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
          "Action Units", "Estimated Emotion"]


def expected_counts() -> pd.DataFrame:
    rows = {}
    for item in TABLE.replace("\n", " ").split(","):
        subj, counts = item.split(":")
        rows[f"sub{subj.strip()}"] = [int(c) for c in counts.strip().split("/")]
    return pd.DataFrame.from_dict(rows, orient="index", columns=CLASSES)


@pytest.fixture(scope="module")
def plan():
    return syn.plan_clips(0)


def quirk_subjects(plan) -> list[str]:
    slash = plan.loc[plan["apex_sheet"].map(lambda v: v == "/"), "subject"]
    same = plan.loc[plan["apex_sheet"].map(lambda v: v != "/") & (plan["apex_sheet"].map(
        lambda v: v if v != "/" else -1).astype(int) == plan["onset"]), "subject"]
    return sorted(set(slash) | set(same))


@pytest.fixture(scope="module")
def subset(tmp_path_factory, plan):
    """A generated subset holding the '/' apex and the apex == onset clip (size 32: fast)."""
    root = tmp_path_factory.mktemp("synth") / "synthetic"
    subjects = quirk_subjects(plan)
    syn.generate(root, seed=0, size=32, subjects=subjects, progress=False, workers=2)
    return root, subjects


# ------------------------------------------------------------------------------------ plan

def test_plan_counts_match_casme2_exactly(plan):
    got = pd.crosstab(plan["subject"], plan["emotion"]).reindex(columns=CLASSES, fill_value=0)
    exp = expected_counts()
    assert len(plan) == 255 and plan["subject"].nunique() == 26
    pd.testing.assert_frame_equal(got.rename_axis(None).rename_axis(None, axis=1), exp,
                                  check_dtype=False)
    assert plan["emotion"].value_counts().to_dict() == {
        "others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25,
        "sadness": 7, "fear": 2}


def test_plan_lengths_and_apex_positions_follow_casme2(plan):
    n = plan["offset"] - plan["onset"] + 1
    assert (n == plan["n_frames"]).all()
    assert n.min() == 24 and n.max() == 141
    q = np.percentile(n, [25, 50, 75])
    assert np.allclose(q, [51, 62, 86], atol=3), q
    rel = (plan["apex_true"] - plan["onset"]) / (plan["offset"] - plan["onset"])
    p10, p50, p90 = np.percentile(rel, [10, 50, 90])
    assert abs(p50 - 0.51) < 0.03 and abs(p10 - 0.30) < 0.04 and abs(p90 - 0.71) < 0.04
    assert ((plan["apex_true"] > plan["onset"]) & (plan["apex_true"] < plan["offset"])).all()
    assert plan["onset"].between(4, 396).all() and plan["onset"].nunique() > 100
    assert (plan["first_frame"] < plan["onset"]).all() and (plan["first_frame"] > 1).all()
    assert (plan["last_frame"] > plan["offset"]).all()


def test_plan_sheet_quirks_and_filenames(plan):
    apex = plan["apex_sheet"].tolist()
    assert apex.count("/") == 1
    numeric = [(a, o) for a, o in zip(apex, plan["onset"]) if a != "/"]
    assert all(isinstance(a, int) for a, _ in numeric)
    assert sum(a == o for a, o in numeric) == 1
    assert not plan.duplicated(["subject", "filename"]).any()
    assert plan["filename"].duplicated().any()  # the same Filename under several subjects
    for form in (r"EP\d\d_\d\df", r"EP\d\d_\d", r"EP\d\d_\d\d_\d\d", r"EP\d\df"):
        assert plan["filename"].str.fullmatch(form).any(), form
    assert plan["emotion"].str.islower().all()
    assert {"12", "4+L10", "R2+15"} <= set(plan["aus"]) and (plan["aus_sheet"] == "?").sum() == 1
    for text in plan["aus"]:
        faces.parse_aus(text)  # every AU code has a deformation


def test_plan_is_independent_of_apex_noise_except_the_sheet_apex(plan):
    noisy = syn.plan_clips(0, apex_noise=5.0)
    same = [c for c in plan.columns if c != "apex_sheet"]
    pd.testing.assert_frame_equal(plan[same], noisy[same])
    vals = [(a, o, f) for a, o, f in zip(noisy["apex_sheet"], noisy["onset"], noisy["offset"])
            if a != "/"]
    assert all(o <= a <= f for a, o, f in vals)
    assert sum(a != b for a, b in zip(noisy["apex_sheet"], plan["apex_sheet"])) > 100
    assert not syn.plan_clips(1)["filename"].equals(plan["filename"])


# ------------------------------------------------------------------------- expression dynamics

def test_intensity_profile_is_zero_at_onset_one_at_apex():
    f = np.arange(90, 171)
    level = faces.intensity_profile(f, 100, 130, 160)
    assert (level[f <= 100] == 0).all() and (level[f >= 160] == 0).all()
    assert level[f == 130][0] == 1.0 and level.max() == 1.0
    assert (np.diff(level[(f >= 100) & (f <= 130)]) > 0).all()
    assert (np.diff(level[(f >= 130) & (f <= 160)]) < 0).all()
    with pytest.raises(ValueError):
        faces.intensity_profile(f, 100, 100, 160)


def test_onset_frame_is_the_neutral_face_and_apex_moves_the_au_region(plan):
    row = plan[plan["aus"] == "6+12"].iloc[0]
    numbers, frames = faces.render_clip(row, 0, 64, 5.0, nuisances=False)
    onset = int(np.flatnonzero(numbers == row["onset"])[0])
    apex = int(np.flatnonzero(numbers == row["apex_true"])[0])
    # before and at the onset every frame is the neutral face, byte for byte
    assert all(np.array_equal(frames[i], frames[0]) for i in range(onset + 1))
    assert not np.array_equal(frames[onset + 1], frames[0])
    _, flat = faces.render_clip(row, 0, 64, 0.0, nuisances=False)
    assert all(np.array_equal(f, frames[0]) for f in flat)  # amplitude 0: no expression at all
    diff = np.abs(frames.astype(float) - frames[onset].astype(float)).mean(axis=(1, 2, 3))
    assert int(np.argmax(diff)) == apex
    # the change sits where the AUs act (lip corners, cheeks), not elsewhere
    lm = faces._subject_faces(0, int(row["subject"][-2:]), 64)[2]
    field, wrinkles = faces.au_maps(row["aus"], lm, 64)
    region = cv2.dilate(((np.hypot(*field.transpose(2, 0, 1)) > 0.05) | (wrinkles > 0.05))
                        .astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    d = np.abs(frames[apex].astype(float) - frames[onset].astype(float)).mean(-1)
    assert d[region].sum() > 0.95 * d.sum() and region.mean() < 0.5


def test_partial_render_matches_full_render(plan):
    row = plan.iloc[3]
    numbers, frames = faces.render_clip(row, 0, 32)
    pick = [int(row["onset"]), int(row["apex_true"]), int(row["last_frame"])]
    n2, f2 = faces.render_clip(row, 0, 32, only=pick)
    assert n2.tolist() == pick
    assert np.array_equal(f2, frames[np.isin(numbers, pick)])


def test_subject_faces_differ():
    a, _, _ = faces._subject_faces(0, 1, 32)
    b, _, _ = faces._subject_faces(0, 2, 32)
    assert np.abs(a - b).mean() > 5


# -------------------------------------------------------------------------------- files

def test_layout_frames_and_ground_truth(subset, plan):
    root, subjects = subset
    part = plan[plan["subject"].isin(subjects)]
    assert sorted(p.name for p in (root / "Cropped").iterdir()) == subjects
    truth = pd.read_csv(root / "ground_truth.csv", dtype={"apex_sheet": str})
    assert list(truth.columns[:7]) == ["subject", "filename", "onset", "apex_true", "offset",
                                       "emotion", "aus"]
    assert len(truth) == len(part)
    for r in part.itertuples():
        folder = root / "Cropped" / r.subject / r.filename
        numbers = sorted(int(re.fullmatch(r"reg_img(\d+)\.jpg", p.name).group(1))
                         for p in folder.iterdir())
        assert numbers == list(range(r.first_frame, r.last_frame + 1))
        assert numbers[0] > 1 and numbers[0] < r.onset and numbers[-1] > r.offset
    r = part.iloc[0]
    folder = root / "Cropped" / r["subject"] / r["filename"]
    img = cv2.imread(str(folder / f"reg_img{r['onset']}.jpg"))
    assert img is not None and img.shape == (32, 32, 3)
    text = (root / "SYNTHETIC.txt").read_text()
    assert "SYNTHETIC" in text and "NOT CASME II" in text and '"amplitude": 10.0' in text
    stamp = json.loads((root / syn.STAMP_NAME).read_text())
    assert stamp["params"]["subjects"] == subjects and stamp["n_clips"] == len(part)


def test_coding_sheet_has_the_official_format(subset, plan):
    from openpyxl import load_workbook

    root, subjects = subset
    wb = load_workbook(root / syn.SHEET_NAME)
    assert wb.sheetnames == ["Sheet1"]
    rows = list(wb["Sheet1"].iter_rows(values_only=True))
    assert list(rows[0]) == HEADER
    body = rows[1:]
    assert len(body) == plan["subject"].isin(subjects).sum()
    assert all(r[2] is None and r[6] is None for r in body)  # the two blank columns
    assert all(isinstance(r[0], str) and re.fullmatch(r"\d\d", r[0]) for r in body)
    assert all(isinstance(r[3], int) and isinstance(r[5], int) for r in body)
    apex = [r[4] for r in body]
    assert apex.count("/") == 1
    assert sum(a == r[3] for a, r in zip(apex, body)) == 1
    assert all(isinstance(a, int) for a in apex if a != "/")
    aus = [r[7] for r in body]
    assert any(isinstance(a, int) for a in aus) and any(isinstance(a, str) for a in aus)
    assert all(r[8] == r[8].lower() for r in body)
    # pandas reads it like the real sheet
    df = pd.read_excel(root / syn.SHEET_NAME, sheet_name="Sheet1", dtype={"Subject": str})
    assert df["Subject"].iloc[0] in {s[-2:] for s in subjects}


def _hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(tmp_path, subset):
    root, subjects = subset
    again = syn.generate(tmp_path / "again", seed=0, size=32, subjects=subjects,
                         progress=False, workers=1)
    assert _hashes(again) == _hashes(root)
    other = syn.generate(tmp_path / "other", seed=1, size=32, subjects=subjects[:1],
                         progress=False, workers=1)
    assert _hashes(other) != {k: v for k, v in _hashes(root).items() if k in _hashes(other)}


def test_subset_holds_the_same_clips_as_a_larger_set(tmp_path, subset):
    root, subjects = subset
    one = syn.generate(tmp_path / "one", seed=0, size=32, subjects=[subjects[0]],
                       progress=False, workers=1)
    h1, h0 = _hashes(one / "Cropped"), _hashes(root / "Cropped")
    assert h1 and all(h0[k] == v for k, v in h1.items())


def test_skips_a_complete_set_and_regenerates_on_change(tmp_path):
    root = tmp_path / "synthetic"
    syn.generate(root, size=16, subjects=["sub21"], progress=False, workers=1)
    stamp = root / syn.STAMP_NAME
    mtime = stamp.stat().st_mtime_ns
    syn.generate(root, size=16, subjects=["sub21"], progress=False, workers=1)
    assert stamp.stat().st_mtime_ns == mtime  # complete and same parameters: untouched
    (root / "Cropped" / "sub21" / "stale_clip").mkdir()
    syn.generate(root, size=16, amplitude=3.0, subjects=["sub21"], progress=False, workers=1)
    assert json.loads(stamp.read_text())["params"]["amplitude"] == 3.0
    assert not (root / "Cropped" / "sub21" / "stale_clip").exists()  # clean regeneration
    stamp.unlink()  # an interrupted set (no stamp) is regenerated, never trusted
    syn.generate(root, size=16, amplitude=3.0, subjects=["sub21"], progress=False, workers=1)
    assert stamp.exists()
    assert not list(tmp_path.glob(".synthetic.generating-*"))


def test_code_hash_covers_both_generator_modules(tmp_path, monkeypatch):
    """A change to the face drawing alone marks existing sets as stale."""
    before = syn._code_hash()
    edited = tmp_path / "synthetic_faces.py"
    edited.write_bytes(Path(faces.__file__).read_bytes() + b"# edited\n")
    monkeypatch.setattr(faces, "__file__", str(edited))
    assert syn._code_hash() != before


def test_refuses_to_replace_foreign_folders_and_bad_subjects(tmp_path):
    foreign = tmp_path / "mydata"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        syn.generate(foreign, size=16, subjects=["sub21"], progress=False)
    assert (foreign / "precious.txt").exists()
    with pytest.raises(ValueError, match="sub27"):
        syn.generate(tmp_path / "x", subjects=["sub27"], progress=False)


# --------------------------------------------------------------------------- calibration

@pytest.mark.slow
def test_calibration_apex_learnable_onset_at_chance(tmp_path):
    """LOSO logistic regression: apex - onset well above chance, onset frames at chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    subjects = ["sub02", "sub05", "sub09", "sub12", "sub17", "sub19", "sub23", "sub26"]
    root = syn.generate(tmp_path / "synthetic", size=64, subjects=subjects, progress=False)
    truth = pd.read_csv(root / "ground_truth.csv")
    truth = truth[truth["emotion"].isin(["happiness", "disgust", "repression", "surprise",
                                         "others"])].reset_index(drop=True)

    def gray(r, n):
        img = cv2.imread(str(root / "Cropped" / r.subject / r.filename / f"reg_img{n}.jpg"),
                         cv2.IMREAD_GRAYSCALE).astype(np.float32)
        return cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA).ravel()

    apex = np.array([gray(r, r.apex_true) for r in truth.itertuples()])
    onset = np.array([gray(r, r.onset) for r in truth.itertuples()])
    first = np.array([gray(r, r.first_frame) for r in truth.itertuples()])
    y, groups = truth["emotion"].to_numpy(), truth["subject"].to_numpy()

    def loso_uf1(x):
        pred = np.empty(len(y), dtype=object)
        for s in np.unique(groups):
            test = groups == s
            model = make_pipeline(StandardScaler(), LogisticRegression(
                C=0.01, class_weight="balanced", max_iter=1000))
            pred[test] = model.fit(x[~test], y[~test]).predict(x[test])
        return f1_score(y, pred, average="macro")

    uf1_apex, uf1_onset = loso_uf1(apex - onset), loso_uf1(onset - first)
    print(f"calibration UF1: apex-onset {uf1_apex:.3f}, onset-first {uf1_onset:.3f}")
    assert uf1_apex > 0.40
    assert uf1_onset < 0.30


def test_megc2019_protocol_gives_the_real_145_clips():
    """The two clips MEGC 2019 drops from CASME II exist under their real names."""
    from mer_core.datasets import apply_protocol

    plan = syn.plan_clips(0)
    for subject, name in (("sub04", "EP12_01f"), ("sub05", "EP09_05f")):
        row = plan[(plan.subject == subject) & (plan.filename == name)]
        assert row.emotion.tolist() == ["disgust"]
    index = pd.DataFrame({
        "sample_id": "synthetic/" + plan.subject + "/" + plan.filename, "dataset": "synthetic",
        "subject": plan.subject, "clip": plan.filename, "frames_dir": "x",
        "onset": plan.onset, "apex": pd.array(plan.apex_true, dtype="Int64"),
        "offset": plan.offset, "emotion": plan.emotion, "aus": plan.aus, "apex_note": ""})
    assert len(apply_protocol(index, "megc2019-3class")) == 145
    assert len(apply_protocol(index, "casme2-5class")) == 246
    assert len(apply_protocol(index, "casme2-7class")) == 255
