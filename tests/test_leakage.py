"""mer_core.leakage: the INVALID best-test-epoch protocol next to the valid fixed budget."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_core import handover
from mer_core.baselines import read_choices
from mer_core import leakage as L
from mer_core import metrics as M

from fakes import LABELS, fake_loso, fake_tables

def _epoch_log():
    rows = []
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        for fold in ("sub01", "sub02", "sub03"):
            for epoch in range(1, 6):
                rows.append({"seed": seed, "fold": fold, "epoch": epoch,
                             "train_loss": 1 / epoch, "test_accuracy": rng.random(),
                             "test_uf1": rng.random(), "test_uar": rng.random()})
    return pd.DataFrame(rows)


def test_leakage_table_best_epoch_at_least_fixed():
    log = _epoch_log()
    n_test = {"sub01": 10, "sub02": 3, "sub03": 7}
    folds = L.leakage_folds(log, n_test)
    assert len(folds) == 6
    assert (folds["best_accuracy"] >= folds["fixed_accuracy"]).all()
    assert (folds["fixed_epoch"] == 5).all()
    t = L.leakage_table(log, n_test)
    valid, invalid, infl = t.iloc[0], t.iloc[1], t.iloc[2]
    assert valid["valid"] and not invalid["valid"] and "INVALID" in invalid["protocol"]
    assert invalid["pooled_accuracy"] >= valid["pooled_accuracy"]
    assert infl["pooled_accuracy"] == pytest.approx(invalid["pooled_accuracy"]
                                                   - valid["pooled_accuracy"])
    last = log[log["epoch"] == 5]
    w = last["fold"].map(n_test)
    assert valid["pooled_accuracy"] == pytest.approx(np.average(last["test_accuracy"], weights=w))
    assert bool(valid["weighted"])
    assert not bool(L.leakage_table(log)["weighted"].iloc[0])


def test_leakage_pooled_from_epoch_predictions():
    """Log and per-epoch predictions built together (as mer_core.loso writes them): the pooled
    accuracy from the log equals the accuracy of the chosen epochs' pooled predictions."""
    rng = np.random.default_rng(1)
    base = fake_loso(10)
    ep_rows, log_rows = [], []
    for seed in (0, 1):
        for fold, g in base.groupby("subject"):
            for epoch in range(1, 5):
                pred = np.where(rng.random(len(g)) < 0.2 * epoch, g["y_true"],
                                rng.choice(LABELS, len(g)))
                ep_rows.append(pd.DataFrame({"seed": seed, "fold": fold, "epoch": epoch,
                                             "sample_id": g["sample_id"], "y_true": g["y_true"],
                                             "y_pred": pred}))
                fa = M.fold_average(g["y_true"], pred, g["subject"], LABELS)
                log_rows.append({"seed": seed, "fold": fold, "epoch": epoch, "train_loss": 0.1,
                                 "test_accuracy": fa["fold_avg_accuracy"],
                                 "test_uf1": fa["fold_avg_uf1"], "test_uar": fa["fold_avg_uar"],
                                 "n_test": len(g)})
    ep, log = pd.concat(ep_rows, ignore_index=True), pd.DataFrame(log_rows)
    t = L.leakage_table(log, epoch_predictions=ep, labels=LABELS)
    assert bool(t["weighted"].iloc[0]) and t["n_folds"].iloc[0] == 8 and t["n_seeds"].iloc[0] == 2
    last = ep[ep["epoch"] == 4]
    per_seed = [M.compute(g["y_true"], g["y_pred"], LABELS) for _, g in last.groupby("seed")]
    assert t["pooled_uf1"].iloc[0] == pytest.approx(np.mean([m["uf1"] for m in per_seed]))
    assert t["pooled_accuracy"].iloc[0] == pytest.approx(np.mean([m["accuracy"]
                                                                  for m in per_seed]))
    folds = L.leakage_folds(log)
    chosen = ep.merge(folds.rename(columns={"best_epoch": "epoch"})[["seed", "fold", "epoch"]])
    assert t["pooled_accuracy"].iloc[1] == pytest.approx(
        (chosen["y_true"] == chosen["y_pred"]).mean())
    assert t["pooled_accuracy"].iloc[1] >= t["pooled_accuracy"].iloc[0]
    with pytest.raises(ValueError, match="labels"):
        L.leakage_table(log, epoch_predictions=ep)


def test_leakage_on_fake_project_matches_headline(project):
    """The valid row of the leakage check reproduces the headline metrics (last epoch =
    predictions.csv), and the invalid row is at least as high in pooled accuracy."""
    metric_map, _ = fake_tables(project)
    res = project / "results" / "onset"
    t = L.leakage_table(pd.read_csv(res / "epoch_log.csv", dtype={"fold": str}),
                        epoch_predictions=pd.read_csv(res / "epoch_predictions.csv",
                                                      dtype={"fold": str}), labels=LABELS)
    assert t["pooled_accuracy"].iloc[0] == pytest.approx(metric_map["onset"]["accuracy"])
    assert t["pooled_uf1"].iloc[0] == pytest.approx(metric_map["onset"]["uf1"])
    assert t["pooled_accuracy"].iloc[1] >= t["pooled_accuracy"].iloc[0]


def test_check_experiments_reads_every_log_and_cross_checks_the_headline(project, tmp_path,
                                                                          capsys):
    import matplotlib
    matplotlib.use("Agg")
    metric_map, _ = fake_tables(project)
    results = project / "results"
    preds = {n: handover.read_predictions(results / n / "predictions.csv") for n in metric_map}
    (results / "middle" / "epoch_log.csv").unlink()
    (results / "onset" / "epoch_predictions.csv").unlink()
    leak = L.check_experiments(results, preds, LABELS)
    out = capsys.readouterr().out
    assert "no leakage check for middle" in out and "left out for onset" in out
    assert list(leak.columns[:2]) == ["experiment", "protocol"]
    assert "middle" not in set(leak["experiment"]) and len(leak) == 3 * (len(preds) - 1)
    assert leak[leak["experiment"] == "onset"]["pooled_uf1"].isna().all()
    assert leak[leak["experiment"] == "loss_ce"]["pooled_uf1"].notna().all()
    assert L.headline_mismatches(leak, metric_map) == []
    off = {**metric_map, "onset": {**metric_map["onset"], "accuracy": 0.0}}
    assert [w.split(":")[0] for w in L.headline_mismatches(leak, off)] == ["WARNING onset"]
    L.plot_leakage(leak, tmp_path / "leak.png")
    assert (tmp_path / "leak.png").stat().st_size > 1000
    assert L.check_experiments(tmp_path / "nothing", preds, LABELS) is None


def test_baselines_get_the_check_for_their_choice_of_c(tmp_path):
    """A baseline's C grid is checked like an epoch: the C each fold chose (valid) reproduces
    the headline, the C its test subject likes best (INVALID) is at least as high."""
    from fakes import BASELINES, make_fake_project

    project = make_fake_project(tmp_path, baselines=BASELINES)
    metric_map, _ = fake_tables(project)
    results = project / "results"
    preds = handover.load_predictions(results / "baselines", list(BASELINES))
    leak = L.check_experiments(results, preds, LABELS)
    assert set(leak["experiment"]) == set(BASELINES) and len(leak) == 3 * len(BASELINES)
    valid = leak[leak["valid"]]
    assert valid["protocol"].eq("C chosen inside the training subjects (valid)").all()
    assert leak["protocol"].str.startswith("best test C per fold").sum() == len(BASELINES)
    assert L.headline_mismatches(leak, metric_map) == []
    for name in BASELINES:
        v, bad = leak[leak["experiment"] == name]["pooled_accuracy"].iloc[:2]
        assert bad >= v and v == pytest.approx(metric_map[name]["accuracy"])
        assert leak[leak["experiment"] == name]["pooled_uf1"].iloc[0] == \
            pytest.approx(metric_map[name]["uf1"])
    choices, grid = read_choices(results / "baselines" / list(BASELINES)[0])
    log, ep, chosen = L.baseline_grid_log(choices, grid, LABELS)
    assert sorted(log["epoch"].unique()) == [1, 2] and set(chosen.values()) == {2}
