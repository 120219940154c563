"""mer_core.evaluate: metrics.json and the DVC plots, and the tables notebook 03 shows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mer_core import handover
from mer_core import evaluate as E
from mer_core import metrics as M

from fakes import LABELS, fake_predictions, fake_tables

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
