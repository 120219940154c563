"""mer_core.metrics against scikit-learn and hand computations."""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from sklearn.metrics import accuracy_score, f1_score, recall_score

from mer_core import handover, metrics as M

LABELS = ["happiness", "disgust", "repression", "surprise", "others"]
# CASME II 5-class counts (246 clips)
REAL_COUNTS = {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25}


def _fake_loso(seed=0, n_subjects=8, per_subject=12, acc=0.6, never=("repression",)):
    """Pooled LOSO-style predictions where folds miss classes and some class is never predicted."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        # each subject only has 2-3 classes: whole classes are missing in most folds
        present = rng.choice(LABELS, size=rng.integers(2, 4), replace=False)
        for i in range(per_subject):
            t = str(rng.choice(present))
            p = t if rng.random() < acc else str(rng.choice(LABELS))
            if p in never:
                p = "others"
            rows.append({"sample_id": f"casme2/sub{s:02d}/EP{i:02d}", "subject": f"sub{s:02d}",
                         "y_true": t, "y_pred": p})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compute_matches_sklearn_pooled(seed):
    df = _fake_loso(seed)
    assert "repression" not in set(df["y_pred"])            # a class never predicted
    m = M.compute(df["y_true"], df["y_pred"], LABELS)
    assert m["accuracy"] == pytest.approx(accuracy_score(df["y_true"], df["y_pred"]))
    assert m["uf1"] == pytest.approx(f1_score(df["y_true"], df["y_pred"], labels=LABELS,
                                              average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(f1_score(df["y_true"], df["y_pred"], labels=LABELS,
                                                      average="weighted", zero_division=0))
    present = [c for c in LABELS if c in set(df["y_true"])]
    assert m["uar"] == pytest.approx(recall_score(df["y_true"], df["y_pred"], labels=present,
                                                  average="macro", zero_division=0))
    f1s = f1_score(df["y_true"], df["y_pred"], labels=LABELS, average=None, zero_division=0)
    for c, v in zip(LABELS, f1s):
        assert m[f"f1_{c}"] == pytest.approx(v)
    assert m["f1_repression"] == 0.0
    assert m["n"] == len(df)


def test_class_absent_from_truth_and_prediction():
    y_true = ["happiness", "disgust", "disgust", "others"]
    y_pred = ["happiness", "disgust", "others", "others"]
    m = M.compute(y_true, y_pred, LABELS)
    # repression and surprise: neither true nor predicted -> F1 0 (zero_division=0), no recall
    assert m["uf1"] == pytest.approx(f1_score(y_true, y_pred, labels=LABELS, average="macro",
                                              zero_division=0))
    assert m["f1_surprise"] == 0.0
    assert np.isnan(m["recall_surprise"])
    assert m["uar"] == pytest.approx((1 + 0.5 + 1) / 3)


def test_compute_rejects_unknown_class_and_mismatched_lengths():
    with pytest.raises(ValueError, match="fear"):
        M.compute(["fear"], ["others"], LABELS)
    with pytest.raises(ValueError, match="entries"):
        M.compute(["others", "others"], ["others"], LABELS)


def test_fold_average_differs_from_pooled_and_matches_manual():
    df = _fake_loso(3)
    fa = M.fold_average(df["y_true"], df["y_pred"], df["subject"], LABELS)
    accs, f1s = [], []
    for _, g in df.groupby("subject"):
        accs.append(accuracy_score(g["y_true"], g["y_pred"]))
        f1s.append(f1_score(g["y_true"], g["y_pred"], average="macro", zero_division=0))
    assert fa["fold_avg_accuracy"] == pytest.approx(np.mean(accs))
    assert fa["fold_avg_uf1"] == pytest.approx(np.mean(f1s))
    assert fa["n_folds"] == 8
    pooled = M.compute(df["y_true"], df["y_pred"], LABELS)
    assert fa["fold_avg_uf1"] != pytest.approx(pooled["uf1"])


def test_bootstrap_contains_point_and_is_deterministic():
    df = _fake_loso(4, n_subjects=20)
    m = M.compute(df["y_true"], df["y_pred"], LABELS)
    a = M.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=500, seed=7)
    b = M.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=500, seed=7)
    c = M.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=500, seed=8)
    assert a == b
    assert a != c
    for k in ("accuracy", "uf1", "uar"):
        lo, hi = a[k]
        assert lo <= m[k] <= hi
        assert hi - lo > 0.01


def test_bootstrap_matches_loop_and_is_fast():
    df = _fake_loso(5, n_subjects=20)
    t, p = df["y_true"].to_numpy(), df["y_pred"].to_numpy()
    got = M.bootstrap_ci(t, p, LABELS, n=200, seed=3, chunk=64)
    rng = np.random.default_rng(3)
    vals = []
    for start in range(0, 200, 64):            # same draws as the chunked implementation
        for idx in rng.integers(0, len(t), size=(min(64, 200 - start), len(t))):
            vals.append(f1_score(t[idx], p[idx], labels=LABELS, average="macro",
                                 zero_division=0))
    assert got["uf1"][0] == pytest.approx(np.quantile(vals, 0.025))
    assert got["uf1"][1] == pytest.approx(np.quantile(vals, 0.975))
    y = np.repeat(LABELS, 50)
    start = time.perf_counter()
    for _ in range(10):                          # ~10 experiments x 1000 resamples x 250 clips
        M.bootstrap_ci(y, np.roll(y, 7), LABELS, n=1000)
    assert time.perf_counter() - start < 5


def test_bootstrap_several_seeds_brackets_seed_mean():
    df = _fake_loso(6, n_subjects=20)
    rng = np.random.default_rng(0)
    preds = np.stack([df["y_pred"].to_numpy(),
                      np.where(rng.random(len(df)) < 0.3, "others", df["y_pred"].to_numpy())])
    mean_uf1 = np.mean([M.compute(df["y_true"], p, LABELS)["uf1"] for p in preds])
    lo, hi = M.bootstrap_ci(df["y_true"], preds, LABELS, n=300)["uf1"]
    assert lo <= mean_uf1 <= hi


def test_majority_baseline_real_casme2_counts():
    y = [c for c, k in REAL_COUNTS.items() for _ in range(k)]
    b = M.majority_baseline(y, LABELS)
    assert b["majority_class"] == "others"
    assert round(100 * b["accuracy"], 1) == 40.2
    assert round(b["uf1"], 3) == 0.115
    assert b["uar"] == pytest.approx(0.2)
    # LOSO-honest variant (training majority per fold) agrees here
    groups = [f"s{i % 26}" for i in range(len(y))]
    assert M.majority_baseline(y, LABELS, groups)["accuracy"] == pytest.approx(b["accuracy"])


def test_mcnemar_exact_against_binomial():
    a = np.array([1] * 30 + [1] * 9 + [0] * 2 + [0] * 10, dtype=bool)
    b = np.array([1] * 30 + [0] * 9 + [1] * 2 + [0] * 10, dtype=bool)
    r = M.mcnemar_exact(a, b)
    assert (r["b"], r["c"], r["n"]) == (9, 2, 51)
    expected = min(1.0, 2 * binom.cdf(2, 11, 0.5))  # two-sided exact: 2 * P(X <= min(b, c))
    assert r["p_value"] == pytest.approx(expected)
    assert r["p_value"] == pytest.approx(2 * (1 + 11 + 55) / 2 ** 11)
    assert M.mcnemar_exact(a, a)["p_value"] == 1.0


def test_paired_correct_aligns_by_sample_id():
    df = _fake_loso(7)
    df["seed"] = 0
    other = df.sample(frac=1.0, random_state=1).assign(y_pred=lambda d: d["y_true"])
    ca, cb, seed = M.paired_correct(df, other)
    assert seed == 0 and cb.all()
    assert ca.sum() == (df["y_true"] == df["y_pred"]).sum()
    with pytest.raises(ValueError, match="same clips"):
        M.paired_correct(df, other.iloc[1:])


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
    folds = M.leakage_folds(log, n_test)
    assert len(folds) == 6
    assert (folds["best_accuracy"] >= folds["fixed_accuracy"]).all()
    assert (folds["fixed_epoch"] == 5).all()
    t = M.leakage_table(log, n_test)
    valid, invalid, infl = t.iloc[0], t.iloc[1], t.iloc[2]
    assert valid["valid"] and not invalid["valid"] and "INVALID" in invalid["protocol"]
    assert invalid["pooled_accuracy"] >= valid["pooled_accuracy"]
    assert infl["pooled_accuracy"] == pytest.approx(invalid["pooled_accuracy"]
                                                   - valid["pooled_accuracy"])
    last = log[log["epoch"] == 5]
    w = last["fold"].map(n_test)
    assert valid["pooled_accuracy"] == pytest.approx(np.average(last["test_accuracy"], weights=w))
    assert bool(valid["weighted"])
    assert not bool(M.leakage_table(log)["weighted"].iloc[0])


def test_leakage_pooled_from_epoch_predictions():
    """Log and per-epoch predictions built together (as mer_core.train writes them): the pooled
    accuracy from the log equals the accuracy of the chosen epochs' pooled predictions."""
    rng = np.random.default_rng(1)
    base = _fake_loso(10)
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
    t = M.leakage_table(log, epoch_predictions=ep, labels=LABELS)
    assert bool(t["weighted"].iloc[0]) and t["n_folds"].iloc[0] == 8 and t["n_seeds"].iloc[0] == 2
    last = ep[ep["epoch"] == 4]
    per_seed = [M.compute(g["y_true"], g["y_pred"], LABELS) for _, g in last.groupby("seed")]
    assert t["pooled_uf1"].iloc[0] == pytest.approx(np.mean([m["uf1"] for m in per_seed]))
    assert t["pooled_accuracy"].iloc[0] == pytest.approx(np.mean([m["accuracy"]
                                                                  for m in per_seed]))
    folds = M.leakage_folds(log)
    chosen = ep.merge(folds.rename(columns={"best_epoch": "epoch"})[["seed", "fold", "epoch"]])
    assert t["pooled_accuracy"].iloc[1] == pytest.approx(
        (chosen["y_true"] == chosen["y_pred"]).mean())
    assert t["pooled_accuracy"].iloc[1] >= t["pooled_accuracy"].iloc[0]
    with pytest.raises(ValueError, match="labels"):
        M.leakage_table(log, epoch_predictions=ep)


def test_per_subject_and_confusion():
    df = _fake_loso(8)
    ps = M.per_subject_accuracy(df)
    assert len(ps) == 8 and ps["n_clips"].sum() == len(df)
    cm = M.confusion_frame(df["y_true"], df["y_pred"], LABELS)
    assert cm.to_numpy().sum() == len(df)
    assert list(cm.index) == LABELS
    norm = M.confusion_frame(df["y_true"], df["y_pred"], LABELS, normalize=True)
    sums = norm.sum(axis=1)
    present = cm.sum(axis=1) > 0
    assert np.allclose(sums[present], 1) and np.allclose(sums[~present], 0)


def _predictions(seeds=(0, 1)):
    base = _fake_loso(9)
    rng = np.random.default_rng(1)
    parts = []
    for s in seeds:
        d = base.copy()
        flip = rng.random(len(d)) < 0.2
        d.loc[flip, "y_pred"] = "others"
        d["seed"] = s
        for c in LABELS:
            d[f"p_{c}"] = 0.2
        d["experiment"] = "x"
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def test_seed_summary_and_evaluate_files(tmp_path):
    pred = _predictions()
    s = M.seed_summary(pred)                      # labels from the p_<class> columns
    per = [M.compute(g["y_true"], g["y_pred"], LABELS)["uf1"] for _, g in pred.groupby("seed")]
    assert s.loc["uf1", "mean"] == pytest.approx(np.mean(per))
    assert s.loc["uf1", "std"] == pytest.approx(np.std(per, ddof=1))
    assert s.loc["uf1", "n_seeds"] == 2
    (tmp_path / "results" / "x").mkdir(parents=True)
    pred.to_csv(tmp_path / "results" / "x" / "predictions.csv", index=False)
    out = M.evaluate_experiments(tmp_path / "results",
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
        M.evaluate_experiments(tmp_path / "results", ["missing"], LABELS, tmp_path / "r",
                               progress=False)


def test_check_predictions_rejects_duplicates_and_uneven_seeds():
    pred = _predictions()
    with pytest.raises(ValueError, match="twice"):
        handover.check_predictions(pd.concat([pred, pred.iloc[:1]]))
    with pytest.raises(ValueError, match="same clips"):
        handover.check_predictions(pred.iloc[:-1])


def _naive_subject_bootstrap(tables, n, seed, metric, reference):
    """Resample subjects with a plain loop and scikit-learn: the independent check."""
    first = next(iter(tables.values())).sort_values("sample_id")
    subjects = np.unique(first["subject"])
    draws = np.random.default_rng(seed).integers(0, len(subjects), size=(n, len(subjects)))
    score = {"uf1": lambda t, p: f1_score(t, p, labels=LABELS, average="macro", zero_division=0),
             "accuracy": accuracy_score}[metric]
    values = {k: [] for k in tables}
    for row in draws:
        for k, df in tables.items():
            df = df.sort_values("sample_id")
            parts = [df[df["subject"] == subjects[i]] for i in row]
            both = pd.concat(parts)
            values[k].append(score(both["y_true"], both["y_pred"]))
    out = {k: np.quantile(v, [0.025, 0.975]) for k, v in values.items()}
    diffs = {k: np.quantile(np.subtract(values[k], values[reference]), [0.025, 0.975])
             for k in tables if k != reference}
    return out, diffs


def test_subject_bootstrap_matches_a_plain_loop():
    a = _fake_loso(seed=1).assign(seed=0)
    b = _fake_loso(seed=1, acc=0.3).assign(seed=0)
    b["y_true"] = a["y_true"]
    tables = {"a": a, "b": b}
    got = M.subject_bootstrap(tables, LABELS, n=60, seed=4, reference="a",
                              metrics=("uf1", "accuracy"))
    for metric in ("uf1", "accuracy"):
        want, diffs = _naive_subject_bootstrap(tables, 60, 4, metric, "a")
        for k in tables:
            np.testing.assert_allclose([got[k][f"{metric}_ci_low"], got[k][f"{metric}_ci_high"]],
                                       want[k], atol=1e-12)
        np.testing.assert_allclose([got["b"][f"{metric}_diff_ci_low"],
                                    got["b"][f"{metric}_diff_ci_high"]], diffs["b"], atol=1e-12)
        point = M.compute(b["y_true"], b["y_pred"], LABELS)[metric] - \
            M.compute(a["y_true"], a["y_pred"], LABELS)[metric]
        assert got["b"][f"{metric}_diff"] == pytest.approx(point)
    assert "a_diff" not in got["a"] and got["_bootstrap"]["n_subjects"] == 8


def test_subject_intervals_are_wider_than_clip_intervals_when_subjects_cluster():
    rows = []
    for s in range(12):        # a subject is either recognised on every clip or on none
        good = s % 2 == 0
        for i in range(10):
            t = LABELS[i % 5]
            rows.append({"sample_id": f"x/sub{s:02d}/{i}", "subject": f"sub{s:02d}", "y_true": t,
                         "y_pred": t if good else LABELS[(i + 1) % 5], "seed": 0})
    df = pd.DataFrame(rows)
    subj = M.subject_bootstrap({"m": df}, LABELS, n=400, seed=0, metrics=("accuracy",))["m"]
    clip = M.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=400, seed=0,
                          metrics=("accuracy",))["accuracy"]
    assert subj["accuracy_ci_high"] - subj["accuracy_ci_low"] > 2 * (clip[1] - clip[0])


def test_identical_rows_have_a_zero_difference_and_seeds_are_averaged():
    a = _fake_loso(seed=2)
    two = pd.concat([a.assign(seed=0), a.assign(seed=1)])
    got = M.subject_bootstrap({"a": a.assign(seed=0), "b": two}, LABELS, n=100, reference="a")
    assert got["b"]["uf1_diff"] == 0 and got["b"]["uf1_diff_ci_low"] == 0 == \
        got["b"]["uf1_diff_ci_high"]
    shuffled = a.assign(seed=0).sample(frac=1, random_state=0)
    with pytest.raises(ValueError, match="not among the rows"):
        M.subject_bootstrap({"a": a.assign(seed=0)}, LABELS, reference="z")
    other = shuffled.iloc[1:]
    with pytest.raises(ValueError, match="same clips"):
        M.subject_bootstrap({"a": a.assign(seed=0), "b": other}, LABELS)


def test_holm_by_hand():
    assert M.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert M.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert M.holm([0.6, 0.7]) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert M.holm([]) == []
