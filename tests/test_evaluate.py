"""mer_core.evaluate: metrics.json and the DVC plots, and the tables notebook 03 shows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mer_core import handover
from mer_core import evaluate as E
from mer_core import metrics as M
from mer_core import stats as S

from fakes import BASELINES, COMPOSITE, LABELS, fake_predictions, fake_tables, make_fake_project

def test_seed_summary_and_evaluate_files(tmp_path):
    pred = fake_predictions()
    s = M.seed_summary(pred)                      # labels from the p_<class> columns
    per = [M.compute(g["y_true"], g["y_pred"], LABELS)["uf1"] for _, g in pred.groupby("seed")]
    assert s.loc["uf1", "mean"] == pytest.approx(np.mean(per))
    assert s.loc["uf1", "std"] == pytest.approx(np.std(per, ddof=1))
    assert s.loc["uf1", "n_seeds"] == 2
    (tmp_path / "results" / "x").mkdir(parents=True)
    pred.to_csv(tmp_path / "results" / "x" / "predictions.csv", index=False)
    out = E.evaluate_experiments(tmp_path / "results",
                                 {"x": {"frames": "onset", "backbone": "resnet50", "loss": "ce"}},
                                 LABELS, tmp_path / "reports", n_boot=100, progress=False)
    saved = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(out))
    x = saved["x"]
    assert x["uf1"] == pytest.approx(np.mean(per))
    assert x["uf1_ci_low"] <= x["uf1"] <= x["uf1_ci_high"]
    assert x["n"] == len(pred) // 2 and x["n_seeds"] == 2 and x["seeds"] == "0,1"
    assert x["frames"] == "onset" and "fold_avg_uf1" in x
    assert "per_dataset" not in x                 # one dataset: nothing to split
    conf = pd.read_csv(tmp_path / "reports" / "plots" / "confusion_x.csv")
    assert list(conf.columns) == ["actual", "predicted"] and len(conf) == len(pred) // 2
    with pytest.raises(FileNotFoundError, match="predictions"):
        E.evaluate_experiments(tmp_path / "results", ["missing"], LABELS, tmp_path / "r",
                               progress=False)


def test_notebook_views_on_a_fake_project(project, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    metric_map, _ = fake_tables(project)
    preds = {n: handover.read_predictions(project / "results" / n / "predictions.csv") for n in metric_map}
    summary = pd.DataFrame(metric_map).T
    cols = E.summary_columns(summary)
    assert cols[:3] == ["frames", "backbone", "loss"] and "uf1_diff_ci_low" in cols
    assert set(cols) <= set(summary.columns)
    cov = E.coverage(preds, 61)
    assert list(cov.columns) == ["clips predicted", "clips in index", "subjects", "seeds"]
    assert (cov["clips predicted"] == 60).all() and (cov["clips in index"] == 61).all()
    mats = E.confusions(preds, LABELS)
    counts, norm = mats["onset"]
    plot = pd.read_csv(project / "reports" / "plots" / "confusion_onset.csv")
    assert counts.to_numpy().sum() == len(plot)            # the smallest seed, as the DVC plot
    assert counts.loc["others", "others"] == ((plot["actual"] == "others")
                                              & (plot["predicted"] == "others")).sum()
    assert np.allclose(norm.sum(axis=1)[counts.sum(axis=1) > 0], 1)
    per_class = E.per_class_f1(metric_map, LABELS)
    assert len(per_class) == len(metric_map) * len(LABELS)
    row = per_class[(per_class["experiment"] == "onset") & (per_class["class"] == "others")]
    assert row["F1"].item() == metric_map["onset"]["f1_others"]
    per_subject = E.per_subject(preds)
    assert len(per_subject) == 6 * len(preds) and set(per_subject["experiment"]) == set(preds)
    E.plot_confusions(mats, tmp_path / "c.png")
    E.plot_per_class_f1(per_class, tmp_path / "f1.png")
    E.plot_per_subject(per_subject, tmp_path / "s.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("c.png", "f1.png", "s.png"))


# ------------------------------------------------------------------ MEGC 2019 composite

def _evaluate(project):
    """metrics.json of a fake project (experiments and baselines, 200 resamples) and the
    predictions it was computed from."""
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    names = [n for n in params["baselines"]["names"].split(",") if n]
    out = E.evaluate_experiments(project / "results", params["experiments"], LABELS,
                                 project / "reports", n_boot=200, progress=False,
                                 reference="apex_annotated", baselines=names)
    preds = handover.load_predictions(project / "results", list(params["experiments"]))
    preds |= handover.load_predictions(project / "results" / "baselines", names)
    return out, preds


def _dataset(pred):
    return pred["sample_id"].str.split("/").str[0]


@pytest.fixture
def composite(tmp_path):
    """A fake three-dataset composite: 9 subjects (3 per dataset), 2 seeds, the baselines."""
    return make_fake_project(tmp_path, datasets=COMPOSITE, n_subjects=9, seeds=(0, 1),
                             baselines=BASELINES)


def test_composite_scores_every_row_per_dataset_and_over_all_clips(composite):
    out, preds = _evaluate(composite)
    saved = json.loads((composite / "reports" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert set(out) == set(preds) and {m["kind"] for m in out.values()} == {"experiment",
                                                                            "baseline"}
    for name, pred in preds.items():
        m = out[name]
        # the composite score: every clip pooled, as the headline always was
        pooled = [M.compute(g["y_true"], g["y_pred"], LABELS) for _, g in pred.groupby("seed")]
        assert m["uf1"] == pytest.approx(np.mean([s["uf1"] for s in pooled]))
        assert list(m["per_dataset"]) == list(COMPOSITE)
        for d in COMPOSITE:
            part = pred[_dataset(pred) == d]
            per_seed = [M.compute(g["y_true"], g["y_pred"], LABELS)
                        for _, g in part.groupby("seed")]
            block = m["per_dataset"][d]
            for k in ("uf1", "uar", "accuracy"):
                assert block[k] == pytest.approx(np.mean([s[k] for s in per_seed])), (name, d, k)
                sd = np.std([s[k] for s in per_seed], ddof=1) if len(per_seed) > 1 else None
                assert block[f"{k}_std"] == (None if sd is None else pytest.approx(sd))
            assert block["n"] == 30 and block["n_subjects"] == 3
            assert block["uf1_ci_low"] <= block["uf1_ci_high"]
            assert ("uf1_diff" in block) == (name != "apex_annotated")


def test_per_dataset_intervals_resample_only_that_datasets_subjects(composite):
    out, preds = _evaluate(composite)
    # the interval of a dataset is the subject bootstrap of its clips alone ...
    part = {n: p[_dataset(p) == "samm"] for n, p in preds.items()}
    alone = S.subject_bootstrap(part, LABELS, n=200, seed=0, reference="apex_annotated")
    assert alone["_bootstrap"]["n_subjects"] == 3
    for name in preds:
        block = out[name]["per_dataset"]["samm"]
        for k in ("uf1_ci_low", "uf1_ci_high", "uar_ci_low", "uar_ci_high"):
            assert block[k] == pytest.approx(alone[name][k])
        if name != "apex_annotated":
            assert block["uf1_diff_ci_low"] == pytest.approx(alone[name]["uf1_diff_ci_low"])
    # ... so the other datasets' predictions do not move it: make onset perfect elsewhere
    path = composite / "results" / "onset" / "predictions.csv"
    onset = pd.read_csv(path)
    elsewhere = (_dataset(onset) != "samm").to_numpy()
    onset.loc[elsewhere, "y_pred"] = onset.loc[elsewhere, "y_true"]
    onset.to_csv(path, index=False)
    again, _ = _evaluate(composite)
    assert again["onset"]["per_dataset"]["samm"] == out["onset"]["per_dataset"]["samm"]
    assert again["onset"]["per_dataset"]["smic"]["uar"] == 1 == \
        again["onset"]["per_dataset"]["smic"]["uar_ci_low"]
    assert again["onset"]["uf1"] > out["onset"]["uf1"]     # the composite score moved


def test_per_dataset_table_lists_the_composite_then_each_part(composite):
    out, _ = _evaluate(composite)
    parts = json.loads((composite / "data" / "dataset.json").read_text())["parts"]
    table = E.per_dataset_table(out, parts)
    assert list(table.columns) == ["experiment", "dataset", "n", "n_subjects", "uf1",
                                   "uf1_ci_low", "uf1_ci_high", "uar", "uar_ci_low",
                                   "uar_ci_high"]
    onset = table[table["experiment"] == "onset"]
    assert list(onset["dataset"]) == ["Composite", "CASME2-shaped (synthetic)",
                                      "SAMM-shaped (synthetic)", "SMIC-shaped (synthetic)"]
    assert onset["uf1"].iloc[0] == out["onset"]["uf1"] and onset["n"].iloc[0] == 90
    assert onset["uar"].iloc[2] == out["onset"]["per_dataset"]["samm"]["uar"]
    assert len(table) == 4 * len(out)
    # without parts: the dataset values, in metrics.json's order
    assert list(E.per_dataset_table(out)["dataset"][:4]) == ["Composite", *COMPOSITE]


def test_one_dataset_has_no_per_dataset_scores(project):
    out, preds = _evaluate(project)
    assert all("per_dataset" not in m for m in out.values())
    assert S.per_dataset(preds, LABELS, n=10) == {}
    assert E.per_dataset_table(out).empty


def test_datasets_of_sample_ids():
    assert S.datasets_of(["samm/samm006/006_1_2", "smic/s01/x", "samm/samm007/y"]) == \
        ["samm", "smic"]
    assert S.datasets_of(["a", "b"]) == []                  # no dataset to split by
    with pytest.raises(ValueError, match="'odd'.*dataset/subject/clip"):
        S.datasets_of(["samm/samm006/006_1_2", "odd"])
