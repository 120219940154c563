"""mer_core.metrics against scikit-learn and hand computations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from mer_core import handover
from mer_core import metrics as M

from fakes import LABELS, fake_loso, fake_predictions

# CASME II 5-class counts (246 clips)
REAL_COUNTS = {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compute_matches_sklearn_pooled(seed):
    df = fake_loso(seed)
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
    df = fake_loso(3)
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


def test_per_subject_and_confusion():
    df = fake_loso(8)
    ps = M.per_subject_accuracy(df)
    assert len(ps) == 8 and ps["n_clips"].sum() == len(df)
    cm = M.confusion_frame(df["y_true"], df["y_pred"], LABELS)
    assert cm.to_numpy().sum() == len(df)
    assert list(cm.index) == LABELS
    norm = M.confusion_frame(df["y_true"], df["y_pred"], LABELS, normalize=True)
    sums = norm.sum(axis=1)
    present = cm.sum(axis=1) > 0
    assert np.allclose(sums[present], 1) and np.allclose(sums[~present], 0)


def test_check_predictions_rejects_duplicates_and_uneven_seeds():
    pred = fake_predictions()
    with pytest.raises(ValueError, match="twice"):
        handover.check_predictions(pd.concat([pred, pred.iloc[:1]]))
    with pytest.raises(ValueError, match="same clips"):
        handover.check_predictions(pred.iloc[:-1])
