"""mer_core.table4, table4_format and table4_figures: Table 4 assembly, text and figures, on a
fake project."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mer_core import handover, vocab
from mer_core import metrics as M
from mer_core import stats as S
from mer_core import table4 as T
from mer_core import table4_figures as TF
from mer_core import table4_format as F

from fakes import COMPOSITE, EXPERIMENTS, LABELS, fake_tables, make_fake_project

def test_select_rows_orders_and_filters():
    specs = {n: {"frames": f, "backbone": b, "loss": l} for n, (f, b, l, _) in EXPERIMENTS.items()}
    rows = T.select_rows(specs, "table4", "lbp")
    assert [n for _, n in rows] == ["onset", "middle", "apex_spotted", "apex_annotated"]
    assert rows[2][0] == "Spotted apex (spotter per fold: lbp)"
    assert [n for _, n in T.select_rows(specs, "backbone")] == ["bb_resnet50", "apex_annotated"]
    assert [n for _, n in T.select_rows(specs, "loss")] == ["loss_ce", "apex_annotated"]


def test_inputs_table_puts_the_motion_inputs_next_to_the_apex_frame():
    paper = {"backbone": vocab.PAPER_BACKBONE, "loss": vocab.PAPER_LOSS}
    specs = {"flow_spotted": {"frames": "flow:spotted:best", **paper},
             "flow_annotated": {"frames": "flow:annotated", **paper},
             "apex_annotated": {"frames": "annotated", **paper},
             "onset": {"frames": "onset", **paper},
             "diff_annotated": {"frames": "diff:annotated", **paper},
             "flow_ce": {"frames": "flow:annotated", "backbone": vocab.PAPER_BACKBONE,
                         "loss": "ce"}}
    rows = T.select_rows(specs, "inputs", "lbp in 2 of 2 folds")
    assert [n for _, n in rows] == ["apex_annotated", "diff_annotated", "flow_annotated",
                                    "flow_spotted"]
    assert rows[3][0] == ("Optical flow onset -> apex (spotted apex, spotter per fold: lbp in "
                          "2 of 2 folds)")
    # motion rows stay out of Table 4 and the ablations
    assert [n for _, n in T.select_rows(specs, "table4")] == ["onset", "apex_annotated"]
    assert [n for _, n in T.select_rows(specs, "loss")] == ["apex_annotated"]


def test_inputs_table_is_built_and_written_when_a_motion_row_ran(tmp_path):
    exps = {**EXPERIMENTS, "flow_annotated": ("flow:annotated", vocab.PAPER_BACKBONE,
                                              vocab.PAPER_LOSS, 0.7)}
    _, tables = fake_tables(make_fake_project(tmp_path, exps))
    assert list(tables) == ["table4", "inputs", "backbone", "loss"]
    inputs = tables["inputs"]
    assert list(inputs["experiment"]) == ["apex_annotated", "flow_annotated", "majority_class"]
    assert inputs["is_reference"].tolist() == [True, False, False]
    assert not pd.isna(inputs["uf1_diff_ci_low"].iloc[1])
    assert "flow_annotated" not in set(tables["table4"]["experiment"])
    md = F.tables_markdown(tables)
    assert "### Inputs beyond one frame" in md and "Optical flow onset -> apex" in md


def test_build_tables_rows_baseline_and_mcnemar(project):
    metric_map, tables = fake_tables(project)
    assert set(tables) == {"table4", "backbone", "loss"}
    t4 = tables["table4"]
    assert list(t4["experiment"]) == ["onset", "middle", "apex_spotted", "apex_annotated",
                                      "majority_class"]
    base = t4.iloc[-1]
    assert base["is_baseline"] and "others" in base["row"]
    assert base["accuracy_ci_low"] <= base["accuracy"] <= base["accuracy_ci_high"]
    ref = t4[t4["experiment"] == "apex_annotated"].iloc[0]
    assert ref["is_reference"] and pd.isna(ref["mcnemar_p"])
    onset = t4[t4["experiment"] == "onset"].iloc[0]
    assert 0 <= onset["mcnemar_p"] < 0.05          # 25 % vs 80 % correct on 60 clips
    preds = handover.load_predictions(project / "results", ["onset", "apex_annotated"])
    ca, cb, _ = S.paired_correct(preds["onset"], preds["apex_annotated"])
    assert onset["mcnemar_p"] == pytest.approx(S.mcnemar_exact(ca, cb)["p_value"])
    assert not pd.isna(base["mcnemar_p"])
    assert onset["uf1"] == pytest.approx(metric_map["onset"]["uf1"])


def test_ablation_left_out_when_only_reference(tmp_path):
    exps = {k: v for k, v in EXPERIMENTS.items() if k in ("onset", "apex_annotated")}
    project = make_fake_project(tmp_path, exps)
    _, tables = fake_tables(project)
    assert list(tables) == ["table4"]


def test_markdown_bold_best_and_tex(project):
    _, tables = fake_tables(project)
    t4 = tables["table4"]
    md = F.to_markdown(t4)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(t4)
    best = t4.loc[~t4["is_baseline"], "uf1"].idxmax()
    uf1_col = 3
    cells = [ln.split(" | ")[uf1_col] for ln in lines[2:]]
    assert cells[best].startswith("**")
    assert sum(c.startswith("**") for c in cells) >= 1
    assert not cells[-1].startswith("**")           # the baseline row is never bold
    assert re.search(r"\[\d\.\d{3}, \d\.\d{3}\]", cells[0])
    tex = F.to_latex(t4, caption="Table 4 & co", label="tab:t4")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert tex.count("{") == tex.count("}")
    assert r"\textbf{" in tex and r"\&" in tex and r"apex\_annotated" in tex
    body = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    ncols = len(F.display_table(t4).columns)
    assert all(ln.count(" & ") == ncols - 1 for ln in body)


def test_write_tables(project):
    _, tables = fake_tables(project)
    paths = F.write_tables(tables, ["- header line", "- synthetic data"], project / "reports")
    md = paths["md"].read_text()
    assert "header line" in md and "Ablation: backbone" in md and "**" in md
    csv = pd.read_csv(paths["csv"])
    assert set(csv["table"]) == {"table4", "backbone", "loss"}
    assert pd.api.types.is_float_dtype(csv["uf1"]) and csv["uf1"].between(0, 1).all()
    tex = paths["tex"].read_text()
    assert tex.count(r"\begin{table}") == 3 and tex.count("{") == tex.count("}")
    assert tex.startswith("%")


def test_rows_carry_paired_differences_holm_and_a_generated_verdict(project):
    metric_map, tables = fake_tables(project)
    t4 = tables["table4"]
    assert T.reference_of(metric_map) == "apex_annotated"
    ref = t4[t4["is_reference"]].iloc[0]
    assert pd.isna(ref["uf1_diff"])
    for _, r in t4[~t4["is_reference"]].iterrows():
        assert r["uf1_diff"] == pytest.approx(r["uf1"] - ref["uf1"])
        assert r["uf1_diff_ci_low"] <= r["uf1_diff"] <= r["uf1_diff_ci_high"]
    raw = t4["mcnemar_p"].dropna()
    holm = t4["mcnemar_p_holm"].dropna()
    assert (holm.to_numpy() >= raw.to_numpy() - 1e-12).all()
    assert holm.min() == pytest.approx(min(1, raw.min() * len(raw)))
    text = F.verdict(t4)
    for _, r in t4[~t4["is_reference"]].iterrows():
        assert r["row"] in text
        group = "Distinguishable from zero:" if F.distinguishable(r) else "Not distinguishable"
        before = text.split(r["row"])[0]
        assert group in before
    assert "Holm" in text
    md = F.to_markdown(t4)
    assert "ΔUF1 vs apex_annotated" in md and "McNemar p (Holm)" in md
    assert r"$\Delta$UF1" in F.to_latex(t4)
    assert text in F.tables_markdown(tables)


def test_verdict_sorts_rows_by_their_interval():
    df = pd.DataFrame([
        {"row": "Onset", "is_reference": False, "uf1_diff": -0.3, "uf1_diff_ci_low": -0.4,
         "uf1_diff_ci_high": -0.2, "mcnemar_p_holm": 0.001},
        {"row": "Middle", "is_reference": False, "uf1_diff": 0.01, "uf1_diff_ci_low": -0.09,
         "uf1_diff_ci_high": 0.11, "mcnemar_p_holm": 0.6},
        {"row": "Annotated", "is_reference": True, "uf1_diff": None, "uf1_diff_ci_low": None,
         "uf1_diff_ci_high": None, "mcnemar_p_holm": None}])
    text = F.verdict(df)
    assert text.index("Distinguishable from zero: Onset (-0.300 [-0.400, -0.200])") < \
        text.index("Not distinguishable from zero") < text.index("Middle (+0.010 [-0.090, +0.110])")
    assert "p < 0.05 for Onset." in text


def test_figures(project, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    _, tables = fake_tables(project)
    TF.plot_table_bars(tables["table4"], tmp_path / "bars.png")
    cams = handover.load_cams(project / "results" / "apex_annotated" / "cams")
    assert len(cams) == 60
    ex = TF.select_cam_examples(cams, LABELS, per_class=2)
    assert ex.groupby("y_true").size().max() <= 2
    index = pd.read_csv(project / "data" / "index.csv")
    frames = np.load(project / "data" / "frames" / "annotated.npy")
    TF.plot_gradcam(ex, frames, index["sample_id"], LABELS, tmp_path / "cam.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000
    assert (tmp_path / "cam.png").stat().st_size > 1000


def test_notebook_helpers_and_gradcam_figure(project, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    metric_map, tables = fake_tables(project)
    assert T.bootstrap_settings(metric_map, "onset") == (200, 0.95, 0)
    assert T.mcnemar_seed(tables) == 0 and T.n_tests(tables) == len(tables["table4"]) - 1
    untested = {k: v.assign(mcnemar_seed=np.nan) for k, v in tables.items()}
    assert T.mcnemar_seed(untested) is None
    assert T.spotter_summary({"lbp": 1, "frame_diff": 25}) == \
        "frame_diff in 25, lbp in 1 of 26 folds"
    index = pd.read_csv(project / "data" / "index.csv")
    fig = TF.gradcam_figure(project / "results" / "apex_annotated" / "cams",
                            project / "data" / "frames", "annotated", index["sample_id"], LABELS,
                            2, tmp_path / "cam.png")
    assert fig is not None and (tmp_path / "cam.png").stat().st_size > 1000
    assert TF.gradcam_figure(tmp_path / "no_cams", project / "data" / "frames", "annotated",
                             index["sample_id"], LABELS) is None
    assert TF.readme_figures("reports", gradcam=False) == [
        ("Table 4 bar chart", "reports/figures/04_table4/table4_bars.png")]
    assert TF.readme_figures("reports", gradcam=True)[1] == (
        "Grad-CAM", "reports/figures/04_table4/table4_gradcam.png")


# ------------------------------------------------------------------ the Baselines block

@pytest.fixture
def with_baselines(tmp_path):
    from fakes import BASELINES
    return make_fake_project(tmp_path, baselines=BASELINES)


def test_table4_has_a_baselines_block_and_the_difference_to_the_best(with_baselines):
    from fakes import BASELINES
    metric_map, tables = fake_tables(with_baselines)
    t4 = tables["table4"]
    names = list(BASELINES)
    assert list(t4["experiment"]) == ["onset", "middle", "apex_spotted", "apex_annotated",
                                      *names, "majority_class"]
    block = t4[t4["is_baseline"]]
    assert list(block["experiment"]) == names + ["majority_class"]
    assert list(block["row"][:3]) == [vocab.BASELINES[n] for n in names]
    best = max(names, key=lambda n: metric_map[n]["uf1"])
    assert set(t4["best_baseline"].dropna()) == {best}
    for _, r in t4[~t4["is_baseline"]].iterrows():
        # the paired difference to the best baseline: same resamples, point = difference
        assert r["uf1_diff_baseline"] == pytest.approx(r["uf1"] - metric_map[best]["uf1"])
        assert r["uf1_diff_baseline_ci_low"] <= r["uf1_diff_baseline"] \
            <= r["uf1_diff_baseline_ci_high"]
    lbp = t4[t4["experiment"] == names[0]].iloc[0]
    assert not pd.isna(lbp["uf1_ci_low"]) and not pd.isna(lbp["uf1_diff"])
    # no McNemar for the classical baselines: Table 4's Holm family stays the frame rows'
    assert block["mcnemar_p"].iloc[:3].isna().all() and T.n_tests(tables) == 4
    assert "LBP-TOP" not in F.verdict(t4)
    # ablations keep only the majority row in their block
    assert tables["backbone"]["is_baseline"].sum() == 1


def test_markdown_shows_the_block_and_says_which_rows_beat_the_best_baseline(with_baselines):
    _, tables = fake_tables(with_baselines)
    t4 = tables["table4"]
    md = F.to_markdown(t4)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(t4) + 1 and lines[6].startswith("| *Baselines (same folds)*")
    best = t4["best_baseline"].dropna().iloc[0]
    assert f"ΔUF1 vs best baseline ({best})" in lines[0]
    assert "| best baseline |" in md
    text = F.baseline_verdict(t4)
    label = t4.loc[t4["experiment"] == best, "row"].iloc[0]
    assert text.startswith(f"Against the strongest classical baseline, **{label}**")
    sections = re.split(r"(Rows that beat it|Rows that do NOT beat it|Rows WORSE)", text)
    said = {g: body for g, body in zip(sections[1::2], sections[2::2])}
    for _, r in t4[~t4["is_baseline"]].iterrows():
        lo, hi = r["uf1_diff_baseline_ci_low"], r["uf1_diff_baseline_ci_high"]
        group = ("Rows that beat it" if lo > 0 else "Rows WORSE" if hi < 0
                 else "Rows that do NOT beat it")
        assert f"{r['row']} (" in said[group]
        assert all(f"{r['row']} (" not in body for g, body in said.items() if g != group)
    assert F.baseline_verdict(tables["loss"]) .startswith("Against the strongest")
    tex = F.to_latex(t4)
    assert tex.count(r"\midrule") == 2


def test_difference_to_the_best_baseline_is_paired(tmp_path):
    """A deep row that predicts exactly what the best baseline predicts differs from it by
    exactly 0 on every resample; the interval equals subject_bootstrap's against that baseline."""
    from fakes import BASELINES
    project = make_fake_project(tmp_path, baselines=BASELINES)
    metric_map, _ = fake_tables(project)
    best = metric_map["onset"]["best_baseline"]
    assert best == max(BASELINES, key=lambda n: metric_map[n]["uf1"])
    copy = pd.read_csv(project / "results" / "baselines" / best / "predictions.csv")
    copy.to_csv(project / "results" / "onset" / "predictions.csv", index=False)
    metric_map, _ = fake_tables(project)
    assert metric_map["onset"]["uf1_diff_baseline"] == 0
    assert metric_map["onset"]["uf1_diff_baseline_ci_low"] == 0 == \
        metric_map["onset"]["uf1_diff_baseline_ci_high"]
    preds = handover.load_predictions(project / "results", ["middle", "apex_annotated"])
    preds |= handover.load_predictions(project / "results" / "baselines", list(BASELINES))
    boot = S.subject_bootstrap(preds, LABELS, n=200, seed=0, reference=best)
    assert metric_map["middle"]["uf1_diff_baseline_ci_low"] == \
        pytest.approx(boot["middle"]["uf1_diff_ci_low"])


def test_baseline_verdict_states_the_result_either_way():
    base = {"table": "table4", "is_reference": False, "best_baseline": "b",
            "uf1_diff_baseline": 0.1}
    df = pd.DataFrame([
        {**base, "row": "Deep A", "experiment": "a", "is_baseline": False,
         "uf1_diff_baseline_ci_low": 0.02, "uf1_diff_baseline_ci_high": 0.2},
        {**base, "row": "Deep B", "experiment": "c", "is_baseline": False,
         "uf1_diff_baseline": -0.01, "uf1_diff_baseline_ci_low": -0.1,
         "uf1_diff_baseline_ci_high": 0.05},
        {**base, "row": "Deep C", "experiment": "d", "is_baseline": False,
         "uf1_diff_baseline": -0.2, "uf1_diff_baseline_ci_low": -0.3,
         "uf1_diff_baseline_ci_high": -0.1},
        {**base, "row": "LBP", "experiment": "b", "is_baseline": True,
         "uf1_diff_baseline": 0.0, "uf1_diff_baseline_ci_low": 0.0,
         "uf1_diff_baseline_ci_high": 0.0}])
    text = F.baseline_verdict(df)
    assert "**LBP**" in text
    assert "Rows that beat it (the interval is above 0): Deep A (+0.100 [+0.020, +0.200])." \
        in text
    assert "Rows that do NOT beat it (the interval contains 0): Deep B (-0.010" in text
    assert "Rows WORSE than it (the interval is below 0): Deep C (-0.200" in text
    assert F.baseline_verdict(df.drop(columns="best_baseline")) == ""


# ------------------------------------------------------------------ MEGC 2019 composite

SINGLE_TITLES = ["Frames", "Experiment", "Accuracy (%)", "UF1", "UAR"]


def test_one_dataset_keeps_the_pooled_columns_only(project):
    _, tables = fake_tables(project)
    t4 = tables["table4"]
    assert not [c for c in t4.columns if "@" in c] and "dataset_names" not in t4.attrs
    assert list(F.display_table(t4).columns[:5]) == SINGLE_TITLES
    assert [t for _, _, t in F.metric_columns(t4)] == SINGLE_TITLES[2:]


@pytest.fixture
def composite(tmp_path):
    from fakes import BASELINES
    return make_fake_project(tmp_path, datasets=COMPOSITE, n_subjects=9, baselines=BASELINES)


def _parts(project):
    import json
    return json.loads((project / "data" / "dataset.json").read_text())["parts"]


def test_composite_tables_have_uf1_and_uar_per_dataset(composite):
    parts = _parts(composite)
    metric_map, tables = fake_tables(composite, parts=parts)
    for name, t in tables.items():
        for d in COMPOSITE:
            for m in ("uf1", "uar"):
                for suffix in ("", "_ci_low", "_ci_high", "_std"):
                    assert f"{m}@{d}{suffix}" in t.columns, (name, d, m, suffix)
        assert t.attrs["dataset_names"] == {d: parts[d]["label"] for d in COMPOSITE}
    t4 = tables["table4"]
    for _, r in t4[t4["experiment"] != "majority_class"].iterrows():
        for d in COMPOSITE:
            block = metric_map[r["experiment"]]["per_dataset"][d]
            assert r[f"uf1@{d}"] == block["uf1"] and r[f"uar@{d}_ci_high"] == block["uar_ci_high"]
        assert r["uf1"] == metric_map[r["experiment"]]["uf1"]    # the composite score
    # the majority row, scored on each dataset's clips too
    preds = handover.load_predictions(composite / "results", ["apex_annotated"])
    ref = preds["apex_annotated"]
    maj = t4[t4["experiment"] == "majority_class"].iloc[0]
    majority = M.majority_baseline(ref["y_true"], LABELS)["majority_class"]
    for d in COMPOSITE:
        part = ref[ref["sample_id"].str.startswith(f"{d}/")]
        want = M.compute(part["y_true"], [majority] * len(part), LABELS)
        assert maj[f"uf1@{d}"] == pytest.approx(want["uf1"])
        assert maj[f"uar@{d}"] == pytest.approx(want["uar"])
        assert maj[f"uf1@{d}_ci_low"] <= maj[f"uf1@{d}_ci_high"]


def test_composite_columns_are_shown_next_to_the_composite_ones(composite):
    parts = _parts(composite)
    _, tables = fake_tables(composite, parts=parts)
    t4 = tables["table4"]
    shown = F.display_table(t4)
    names = [parts[d]["label"] for d in COMPOSITE]
    assert list(shown.columns[:11]) == [
        "Frames", "Experiment", "Composite accuracy (%)", "Composite UF1", "Composite UAR",
        *[f"{n} {m}" for n in names for m in ("UF1", "UAR")]]
    assert shown["SAMM-shaped (synthetic) UF1"].str.fullmatch(
        r"(\*\*)?\d\.\d{3}(\*\*)? \[\d\.\d{3}, \d\.\d{3}\]").all()
    assert shown["SAMM-shaped (synthetic) UF1"].str.startswith("**").sum() >= 1   # best in bold
    md = F.to_markdown(t4)
    lines = md.strip().splitlines()
    rows = [ln for ln in lines if not ln.startswith(("|:", "| *Baselines"))]
    assert len(rows) == 1 + len(t4)
    assert all(ln.count(" | ") == len(shown.columns) - 1 for ln in rows)
    assert all(f"| {n} UF1 | {n} UAR |" in lines[0] for n in names)
    tex = F.to_latex(t4)
    body = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    assert all(ln.count(" & ") == len(shown.columns) - 1 for ln in body)
    assert "SAMM-shaped (synthetic) UF1" in tex and tex.count("{") == tex.count("}")
    paths = F.write_tables(tables, ["- header"], composite / "reports")
    csv = pd.read_csv(paths["csv"])
    assert {"uf1@samm", "uar@smic_ci_low"} <= set(csv.columns)
    assert "Composite UF1" in paths["md"].read_text()
    # without parts (dataset.json of an older data stage): headed by the dataset values
    _, plain = fake_tables(composite)
    assert "samm UF1" in F.display_table(plain["table4"]).columns
