"""The MEGC 2019 composite: combine, the official clip list, LOSO over the stack."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_core import composite, datasets as ds
from mer_core.handover import INDEX_COLUMNS


def _index(dataset, rows, extra=None, **attrs):
    """A tiny index as load_index makes it: rows are (subject, clip, emotion)."""
    df = pd.DataFrame({
        "sample_id": [f"{dataset}/{s}/{c}" for s, c, _ in rows], "dataset": dataset,
        "subject": [s for s, _, _ in rows], "clip": [c for _, c, _ in rows],
        "frames_dir": [f"/d/{s}/{c}" for s, c, _ in rows], "onset": 1,
        "apex": pd.array([2] * len(rows), dtype="Int64"), "offset": 3,
        "emotion": [e for _, _, e in rows], "aus": "", "apex_note": ""})
    df["onset"] = df["onset"].astype("int64")
    df["offset"] = df["offset"].astype("int64")
    for name, values in (extra or {}).items():
        df[name] = values
    df.attrs = {"dataset": dataset, "excluded": [], "aligned": dataset == "casme2",
                "apex_annotated": dataset != "smic", **attrs}
    return df


def casme():
    return _index("casme2", [("sub01", "EP02_01f", "happiness"), ("sub01", "EP03_02", "disgust"),
                             ("sub02", "EP01_2", "surprise"), ("sub03", "EP06_02_01", "others"),
                             ("sub04", "EP12_01f", "disgust")],
                  extra={"objective_class": ["1", "2", "3", "7", "2"]})


def samm():
    return _index("samm", [("samm006", "006_1_2", "anger"), ("samm006", "006_1_3", "happiness"),
                           ("samm007", "007_3_1", "other"), ("samm007", "007_5_1", "surprise")])


def smic():
    rows = [("s01", "s01_ne_01", "negative"), ("s01", "s01_po_01", "positive"),
            ("s03", "s03_sur_01", "surprise"), ("s03", "s03_po_02", "positive")]
    return _index("smic", rows, extra={"clip_on_disk": [c.replace("s0", "s", 1)
                                                        for _, c, _ in rows]},
                  excluded=[{"sample_id": "smic/s01/s01_ne_02",
                             "reason": "missing frames: /d/s1_ne_02 not found"}],
                  segments=[{"sample_id": "smic/s03/s03_po_02", "segment": 2, "onset": 500,
                             "offset": 540}])


#: The official list's traits: CRLF, case of dataset and label, unpadded subjects, SMIC s1_.
LIST_LINES = [
    "CASME2,sub01,EP02_01f,positive",
    "casme2,1,EP03_02,negative",
    "casme2,02,EP01_2,positive",         # 3: the sheet says surprise: the list wins, reported
    "casme2,4,EP12_01f,negative",        # 4: on the protocol's drop list, but listed
    "samm,6,006_1_2,Negative",
    "SAMM,6,006_1_3,positive",
    "samm,7,007_5_1,surprise",
    "SMIC,s1,s1_ne_01,negative",
    "smic,s01,s01_po_01,positive",
    "smic,s3,s3_sur_01,surprise",
    "smic,s3,s3_po_03,positive",         # 11: no sheet row (a second segment of s03_po_02)
    "smic,s1,s1_ne_02,negative",         # 12: its row was excluded (missing frames)
]                                        # smic/s03/s03_po_02 is not listed


def write_list(path, lines=LIST_LINES):
    path.write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())   # CRLF, trailing blank line
    return path


@pytest.fixture
def stack():
    return ds.combine([casme(), samm(), smic()])


# ------------------------------------------------------------------ combine

def test_combine_stacks_and_keeps_attrs(stack):
    assert len(stack) == 13 and list(stack.index) == list(range(13))
    assert list(stack.columns) == INDEX_COLUMNS + ["objective_class", "clip_on_disk"]
    assert list(stack["objective_class"].iloc[5:]) == [""] * 8
    assert list(stack["clip_on_disk"].iloc[:9]) == [""] * 9
    assert stack.loc[9, "clip_on_disk"] == "s1_ne_01"
    assert stack["apex"].dtype == "Int64" and stack["onset"].dtype == "int64"
    assert stack.attrs["dataset"] == "composite"
    assert stack.attrs["datasets"] == ["casme2", "samm", "smic"]
    assert set(stack.attrs["parts"]) == {"casme2", "samm", "smic"}
    assert stack.attrs["parts"]["smic"]["segments"][0]["segment"] == 2
    assert [e["sample_id"] for e in stack.attrs["excluded"]] == ["smic/s01/s01_ne_02"]
    assert stack.attrs["aligned"] is False and stack.attrs["apex_annotated"] is False
    assert stack.groupby("dataset")["subject"].nunique().to_dict() == \
        {"casme2": 4, "samm": 2, "smic": 2}


def test_combine_errors():
    clash = _index("samm", [("sub01", "006_1_2", "anger")])
    with pytest.raises(ValueError, match="subject 'sub01' appears in datasets 'casme2' and "
                                         "'samm'"):
        ds.combine([casme(), clash])
    with pytest.raises(ValueError, match="dataset 'casme2' is given twice"):
        ds.combine([casme(), casme()])
    with pytest.raises(ValueError, match="input 1 is not an index: missing column.*apex_note"):
        ds.combine([casme(), samm().drop(columns="apex_note")])
    with pytest.raises(ValueError, match="no index given"):
        ds.combine([])


def test_combine_of_a_combination():
    twice = ds.combine([ds.combine([casme(), samm()]), smic()])
    assert twice.attrs["datasets"] == ["casme2", "samm", "smic"] and len(twice) == 13


def test_dataset_of(stack):
    assert [ds.dataset_of(s) for s in stack["sample_id"]] == list(stack["dataset"])
    with pytest.raises(ValueError, match="expected dataset/subject/clip"):
        ds.dataset_of("sub01")


# ------------------------------------------------------------------ protocol without a list

def test_megc_protocol_on_the_stack_and_on_each_dataset(stack):
    out = ds.apply_protocol(stack, "megc2019-3class")
    assert out.groupby("dataset").size().to_dict() == {"casme2": 3, "samm": 3, "smic": 4}
    reasons = dict(zip(*ds.excluded(out).to_dict("list").values()))
    assert "MEGC 2019 exclusion list" in reasons["casme2/sub04/EP12_01f"]
    assert "not a class" in reasons["casme2/sub03/EP06_02_01"]
    assert "not a class" in reasons["samm/samm007/007_3_1"]
    assert reasons["smic/s01/s01_ne_02"].startswith("missing frames")
    for part in (casme(), samm(), smic()):
        alone = ds.apply_protocol(part, "megc2019-3class")
        assert list(alone["label"]) == list(out.loc[out["dataset"] == part.attrs["dataset"],
                                                    "label"])
    assert "list_report" not in out.attrs


# ------------------------------------------------------------------ the official list

def test_clip_list_is_the_clip_and_label_source(stack, tmp_path):
    path = write_list(tmp_path / "megc2019.csv")
    assert b"\r\n" in path.read_bytes()
    out = ds.apply_protocol(stack, "megc2019-3class", clips=path)
    assert dict(zip(out["sample_id"], out["label"])) == {
        "casme2/sub01/EP02_01f": "positive", "casme2/sub01/EP03_02": "negative",
        "casme2/sub02/EP01_2": "positive", "casme2/sub04/EP12_01f": "negative",
        "samm/samm006/006_1_2": "negative", "samm/samm006/006_1_3": "positive",
        "samm/samm007/007_5_1": "surprise",
        "smic/s01/s01_ne_01": "negative", "smic/s01/s01_po_01": "positive",
        "smic/s03/s03_sur_01": "surprise"}
    assert out.attrs["clip_list"] == str(path)

    report = composite.list_report(out)
    assert report["line"].dtype == "Int64"
    what = {(r.sample_id, None if pd.isna(r.line) else r.line): r.what
            for r in report.itertuples()}
    assert len(what) == 5
    assert "label positive in the list" in what[("casme2/sub02/EP01_2", 3)]
    assert "gives surprise; the list's label is used" in what[("casme2/sub02/EP01_2", 3)]
    assert "MEGC 2019 exclusion list" in what[("casme2/sub04/EP12_01f", 4)]
    no_row = what[("smic/s03/s03_po_03", 11)]
    assert no_row.startswith("listed, no sheet row of its own")
    assert "smic/s03/s03_po_02 segment 2 (frames 500..540)" in no_row
    assert "excluded before the protocol: missing frames" in what[("smic/s01/s01_ne_02", 12)]
    assert what[("smic/s03/s03_po_02", None)].startswith("not in the composite list")

    reasons = dict(zip(*ds.excluded(out).to_dict("list").values()))
    assert reasons == {
        "smic/s01/s01_ne_02": "missing frames: /d/s1_ne_02 not found",
        "casme2/sub03/EP06_02_01": "emotion others is not a class of megc2019-3class",
        "samm/samm007/007_3_1": "emotion other is not a class of megc2019-3class",
        "smic/s03/s03_po_02": "not in the composite list (megc2019.csv)"}
    # nothing silently dropped: every index row is kept or excluded
    assert len(out) + len(reasons) - 1 == len(stack)


def test_clip_list_on_one_dataset(tmp_path):
    path = write_list(tmp_path / "megc2019.csv")
    out = ds.apply_protocol(samm(), "megc2019-3class", clips=path)
    assert list(out["label"]) == ["negative", "positive", "surprise"]
    report = composite.list_report(out)
    assert list(report["what"]) == ["4 listed casme2 clip(s) unused: the index holds no "
                                    "casme2/synthetic dataset",
                                    "5 listed smic clip(s) unused: the index holds no smic "
                                    "dataset"]


@pytest.mark.parametrize("line, message", [
    ("casme2,sub01,EP02_01f", r"line 2: expected 4 fields \(dataset,subject,clip,label\), got 3"),
    ("casme3,spNO.1,a,negative", r"line 2: unknown dataset 'casme3'; expected one of casme2, "
                                 r"samm, smic"),
    ("samm,6,006_1_2,happy", r"line 2: unknown label 'happy'; expected one of negative, "
                             r"positive, surprise"),
    ("samm,x6,006_1_2,positive", r"line 2: subject 'x6' is not a samm subject; expected e.g. 6"),
    ("CASME2,1,EP02_01f,positive", r"line 2: clip casme2/sub01/EP02_01f is already listed on "
                                   r"line 1"),
])
def test_malformed_list_names_file_and_line(stack, tmp_path, line, message):
    path = write_list(tmp_path / "bad.csv", [LIST_LINES[0], line])
    with pytest.raises(ValueError, match=rf"bad\.csv, {message}"):
        ds.apply_protocol(stack, "megc2019-3class", clips=path)


def test_list_with_header_and_lf(stack, tmp_path):
    path = tmp_path / "lf.csv"
    path.write_text("dataset,subject,clip,label\n" + "\n".join(LIST_LINES) + "\n")
    out = ds.apply_protocol(stack, "megc2019-3class", clips=path)
    assert len(out) == 10
    assert ("smic/s03/s03_po_03", 12) in set(zip(composite.list_report(out)["sample_id"],
                                                 composite.list_report(out)["line"]))
    with pytest.raises(FileNotFoundError, match="composite clip list not found"):
        ds.apply_protocol(stack, "megc2019-3class", clips=tmp_path / "none.csv")


# ------------------------------------------------------------------ folds

def test_loso_folds_keep_datasets_apart(stack, tmp_path):
    out = ds.apply_protocol(stack, "megc2019-3class", clips=write_list(tmp_path / "l.csv"))
    folds = ds.loso_folds(out)
    assert [f[0] for f in folds] == sorted(set(out["subject"]))
    assert len(folds) == 7
    for subject, train, test in folds:
        assert out["dataset"].iloc[test].nunique() == 1
        assert subject not in set(out["subject"].iloc[train])
        assert sorted(np.concatenate([train, test])) == list(range(len(out)))
    # a stack made without combine() that gives two people one id is refused
    clash = pd.concat([casme(), _index("samm", [("sub01", "006_1_2", "anger")])])
    with pytest.raises(ValueError, match="subject 'sub01' appears in datasets 'casme2' and "
                                         "'samm'"):
        ds.loso_folds(clash)


# ------------------------------------------------------------------ with the readers

def test_readers_stack_and_smic_second_segment(tmp_path):
    """The real readers (sheets alone): a listed SMIC clip that is the second segment of a
    sheet row is reported with that row's segment."""
    from mer_core import smic as smic_mod
    from test_datasets import make_casme
    from test_smic import write_sheet

    make_casme(tmp_path / "casme2")
    write_sheet(tmp_path / "smic" / smic_mod.SMIC_SHEET_NAME)
    parts = [ds.load_index("casme2", tmp_path / "casme2", validate_frames=False),
             ds.load_index("smic", tmp_path / "smic", validate_frames=False)]
    stack = ds.combine(parts)
    assert stack.attrs["parts"]["smic"]["band"] == "HS"
    path = write_list(tmp_path / "l.csv", ["casme2,1,EP02_01f,positive",
                                           "smic,1,s1_ne_01,negative",
                                           "smic,s1,s1_ne_02,negative"])
    out = ds.apply_protocol(stack, "megc2019-3class", clips=path)
    assert list(out["sample_id"]) == ["casme2/sub01/EP02_01f", "smic/s01/s01_ne_01"]
    report = composite.list_report(out).set_index("line")
    assert report.loc[3, "sample_id"] == "smic/s01/s01_ne_02"
    assert "no sheet row of its own" in report.loc[3, "what"]
    assert "smic/s01/s01_ne_01 segment 2 (frames 12345690..12345692)" in report.loc[3, "what"]
    assert set(ds.excluded(out)["sample_id"]) == \
        set(stack["sample_id"]) - set(out["sample_id"])


def _data_cfg(root, **kw):
    import dataclasses

    from mer_core.config import DataConfig, section
    base = {**dataclasses.asdict(DataConfig()), "root": str(root), "synthetic_size": 32,
            "dataset": "composite", "protocol": "megc2019-3class",
            "parts": "synthetic=casme2,synthetic_samm=samm,synthetic_smic=smic"}
    return section(DataConfig, **{**base, **kw})


@pytest.fixture(scope="module")
def built_composite(tmp_path_factory):
    root = tmp_path_factory.mktemp("composite")
    cfg = _data_cfg(root / "sets")
    index, info = ds.build_index(cfg, out_dir=root / "data", progress=False,
                                 subjects=["sub01", "sub02", "samm006", "samm007", "s01", "s02"])
    return root, cfg, index, info


def test_data_stage_builds_the_composite_of_the_stand_ins(built_composite):
    root, cfg, index, info = built_composite
    assert set(index["dataset"]) == {"synthetic", "samm", "smic"}
    assert set(index["subject"]) == {"sub01", "sub02", "samm006", "samm007", "s01", "s02"}
    assert info["dataset"] == "composite" and info["synthetic"] and info["fps"] is None
    assert info["labels"] == ["negative", "positive", "surprise"]
    assert set(info["parts"]) == {"synthetic", "samm", "smic"}
    smic, samm = info["parts"]["smic"], info["parts"]["samm"]
    assert smic["fps"] == 100 and samm["fps"] == 200 and not smic["apex_annotated"]
    assert samm["aligned"] and smic["aligned"]             # generated frames are face crops
    assert [p["label"] for p in info["parts"].values()] == [
        "CASME II-shaped (synthetic)", "SAMM-shaped (synthetic)", "SMIC-E-shaped (synthetic)"]
    assert "NOT real SAMM" in samm["description"] and "NOT real SMIC" in info["description"]
    assert sum(p["n_clips"] for p in info["parts"].values()) == len(index)
    # SAMM 006: 9/0/2, 007: 1/5/2; SMIC s01: 3/2/1, s02: 0/1/5 (the composite's counts)
    assert len(index[index["dataset"] == "samm"]) == 19
    assert len(index[index["dataset"] == "smic"]) == 12
    assert index.loc[index["dataset"] == "smic", "apex"].isna().all()
    written = ds.handover.read_index(root / "data" / "index.csv")
    assert written["sample_id"].tolist() == index["sample_id"].tolist()


def test_composite_apex_stage_scores_each_clip_at_its_rate(built_composite):
    from mer_core import frame_cache
    from mer_core.apex_stage import build_apex_stage
    from mer_core.config import ApexConfig

    root, cfg, index, info = built_composite
    rep = build_apex_stage(index, info, ApexConfig(workers=1, image_size=16), root / "frames",
                           root / "apex.csv", root / "apex_metrics.json", root / "rep.json",
                           progress=False)
    assert rep["n_cached"] == len(index) and not rep["no_annotated_apex"]["clips"]
    # SMIC clips (no annotation) take their fold's spotter, chosen on annotated CASME/SAMM clips
    smic = index.loc[index["dataset"] == "smic", "sample_id"].tolist()
    assert set(smic) <= set(rep["annotated_fallback"]["clips"])
    assert rep["metrics"]["frame_diff"]["n_scored"] == int(index["apex"].notna().sum())
    choice = frame_cache.spotter_choice(root / "frames")
    assert set(choice) == set(index["subject"])


def test_a_dataset_without_any_annotated_apex_runs_the_strategies_that_need_none(tmp_path):
    """SMIC-E alone: no annotated apex. The data stage says so in dataset.json; the apex stage
    spots, scores nothing, caches no annotated strategy and chooses no spotter per fold; the
    strategies that need an annotation stop with the reason, the others load."""
    from mer_core import apex_scores, frame_cache
    from mer_core.apex_stage import build_apex_stage
    from mer_core.config import ApexConfig

    cfg = _data_cfg(tmp_path / "smic", dataset="synthetic_smic", parts="")
    index, info = ds.build_index(cfg, out_dir=tmp_path / "data", progress=False,
                                 subjects=["s01", "s02"])
    assert info["apex_annotated"] is False and info["fps"] == 100
    rep = build_apex_stage(index, info, ApexConfig(workers=1, image_size=16), tmp_path / "f",
                           tmp_path / "apex.csv", tmp_path / "m.json", tmp_path / "r.json",
                           progress=False)
    assert rep["metrics"]["best"] is None and rep["best_all_clips"] is None
    assert len(rep["no_annotated_apex"]["clips"]) == len(index)
    assert not frame_cache.cache_files(tmp_path / "f", "annotated")[0].is_file()
    ids = index["sample_id"].tolist()
    for strategy in ("annotated", "spotted:best", "diff:annotated"):
        with pytest.raises(frame_cache.NoAnnotationError, match="no annotated apex"):
            frame_cache.load_fold_frames(tmp_path / "f", strategy, ids)
    for strategy in ("onset", "spotted:lbp", "flow:spotted:lbp"):
        assert len(frame_cache.load_frames(tmp_path / "f", strategy, index).variants) == 1
    assert apex_scores.best_method(rep["metrics"], ["middle", "lbp"]) is None


def test_two_parts_read_as_one_dataset_are_refused(tmp_path):
    from mer_core.config import ConfigError
    with pytest.raises(ConfigError, match="stand-in counts as its dataset"):
        _data_cfg(tmp_path, parts="samm=SAMM,synthetic_samm=samm2")


def test_a_part_left_without_clips_stops_the_data_stage(tmp_path):
    """The official list names CASME II clips as casme2: a synthetic part's clips are not in it
    and would all be excluded; the composite must not lose the part silently."""
    lst = tmp_path / "list.csv"
    lst.write_text("samm,6,006_1_2,negative\r\n")
    cfg = _data_cfg(tmp_path / "sets", parts="synthetic_samm=samm,synthetic_smic=smic",
                    labels=str(lst))
    with pytest.raises(ValueError, match="part synthetic_smic .* has no clip left"):
        ds.build_index(cfg, out_dir=tmp_path / "data", progress=False,
                       subjects=["samm006", "s01"])


def test_subject_subsets_must_name_every_synthetic_part(tmp_path):
    cfg = _data_cfg(tmp_path / "sets", parts="synthetic_samm=samm,synthetic_smic=smic")
    with pytest.raises(ValueError, match="belong to no synthetic part"):
        ds.build_index(cfg, out_dir=tmp_path / "data", progress=False,
                       subjects=["samm006", "s01", "sub99x"])
    with pytest.raises(ValueError, match="none of part synthetic_smic"):
        ds.build_index(cfg, out_dir=tmp_path / "data", progress=False, subjects=["samm006"])


def test_annotated_strategies_stop_on_a_composite_with_an_unannotated_part(built_composite):
    from mer_core import apex_images, baselines
    from mer_core.composite import UnannotatedPartError
    from mer_core.config import BaselinesConfig

    info = built_composite[3]
    for strategy in ("annotated", "flow:annotated", "diff:annotated"):
        with pytest.raises(UnannotatedPartError, match="smic"):
            apex_images.require_frames(strategy, info, "experiment 'apex_annotated'")
    for strategy in ("spotted:best", "onset", "flow:spotted:best"):
        apex_images.require_frames(strategy, info, "x")
    with pytest.raises(UnannotatedPartError, match="baselines.apex"):
        baselines.applicable(BaselinesConfig(), info)
    assert baselines.applicable(BaselinesConfig(apex="spotted:best"), info)[1] == {}
    assert baselines.applicable(BaselinesConfig(names="lbptop_svm"), info)[1] == {}
