"""mer_core.stats: bootstrap intervals against plain loops, McNemar against the binomial, Holm by
hand."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from sklearn.metrics import accuracy_score, f1_score

from mer_core import metrics as M
from mer_core import stats as S

from fakes import LABELS, fake_loso

def test_bootstrap_contains_point_and_is_deterministic():
    df = fake_loso(4, n_subjects=20)
    m = M.compute(df["y_true"], df["y_pred"], LABELS)
    a = S.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=500, seed=7)
    b = S.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=500, seed=7)
    c = S.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=500, seed=8)
    assert a == b
    assert a != c
    for k in ("accuracy", "uf1", "uar"):
        lo, hi = a[k]
        assert lo <= m[k] <= hi
        assert hi - lo > 0.01


def test_bootstrap_matches_loop_and_is_fast():
    df = fake_loso(5, n_subjects=20)
    t, p = df["y_true"].to_numpy(), df["y_pred"].to_numpy()
    got = S.bootstrap_ci(t, p, LABELS, n=200, seed=3, chunk=64)
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
        S.bootstrap_ci(y, np.roll(y, 7), LABELS, n=1000)
    assert time.perf_counter() - start < 5


def test_bootstrap_several_seeds_brackets_seed_mean():
    df = fake_loso(6, n_subjects=20)
    rng = np.random.default_rng(0)
    preds = np.stack([df["y_pred"].to_numpy(),
                      np.where(rng.random(len(df)) < 0.3, "others", df["y_pred"].to_numpy())])
    mean_uf1 = np.mean([M.compute(df["y_true"], p, LABELS)["uf1"] for p in preds])
    lo, hi = S.bootstrap_ci(df["y_true"], preds, LABELS, n=300)["uf1"]
    assert lo <= mean_uf1 <= hi


def test_mcnemar_exact_against_binomial():
    a = np.array([1] * 30 + [1] * 9 + [0] * 2 + [0] * 10, dtype=bool)
    b = np.array([1] * 30 + [0] * 9 + [1] * 2 + [0] * 10, dtype=bool)
    r = S.mcnemar_exact(a, b)
    assert (r["b"], r["c"], r["n"]) == (9, 2, 51)
    expected = min(1.0, 2 * binom.cdf(2, 11, 0.5))  # two-sided exact: 2 * P(X <= min(b, c))
    assert r["p_value"] == pytest.approx(expected)
    assert r["p_value"] == pytest.approx(2 * (1 + 11 + 55) / 2 ** 11)
    assert S.mcnemar_exact(a, a)["p_value"] == 1.0


def test_paired_correct_aligns_by_sample_id():
    df = fake_loso(7)
    df["seed"] = 0
    other = df.sample(frac=1.0, random_state=1).assign(y_pred=lambda d: d["y_true"])
    ca, cb, seed = S.paired_correct(df, other)
    assert seed == 0 and cb.all()
    assert ca.sum() == (df["y_true"] == df["y_pred"]).sum()
    with pytest.raises(ValueError, match="same clips"):
        S.paired_correct(df, other.iloc[1:])


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
    a = fake_loso(seed=1).assign(seed=0)
    b = fake_loso(seed=1, acc=0.3).assign(seed=0)
    b["y_true"] = a["y_true"]
    tables = {"a": a, "b": b}
    got = S.subject_bootstrap(tables, LABELS, n=60, seed=4, reference="a",
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
    subj = S.subject_bootstrap({"m": df}, LABELS, n=400, seed=0, metrics=("accuracy",))["m"]
    clip = S.bootstrap_ci(df["y_true"], df["y_pred"], LABELS, n=400, seed=0,
                          metrics=("accuracy",))["accuracy"]
    assert subj["accuracy_ci_high"] - subj["accuracy_ci_low"] > 2 * (clip[1] - clip[0])


def test_identical_rows_have_a_zero_difference_and_seeds_are_averaged():
    a = fake_loso(seed=2)
    two = pd.concat([a.assign(seed=0), a.assign(seed=1)])
    got = S.subject_bootstrap({"a": a.assign(seed=0), "b": two}, LABELS, n=100, reference="a")
    assert got["b"]["uf1_diff"] == 0 and got["b"]["uf1_diff_ci_low"] == 0 == \
        got["b"]["uf1_diff_ci_high"]
    shuffled = a.assign(seed=0).sample(frac=1, random_state=0)
    with pytest.raises(ValueError, match="not among the rows"):
        S.subject_bootstrap({"a": a.assign(seed=0)}, LABELS, reference="z")
    other = shuffled.iloc[1:]
    with pytest.raises(ValueError, match="same clips"):
        S.subject_bootstrap({"a": a.assign(seed=0), "b": other}, LABELS)


def test_holm_by_hand():
    assert S.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert S.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert S.holm([0.6, 0.7]) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert S.holm([]) == []
