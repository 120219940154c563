"""Nested cross-validation of lr and stopping epoch inside each LOSO fold (mer_core.nested)."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from mer_core import handover, io
from mer_core import leakage as L
from mer_core.config import ConfigError, TrainConfig, section
from mer_core.fold import fit_fold, prepare_images
from mer_core.losses import make_loss
from mer_core.metrics import compute
from mer_core.nested import choose, inner_seed, inner_splits, select_recipe
from test_train import EXP, LABELS, cfg, fake_data, run, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- splits, choice


@pytest.mark.parametrize("n, k", [(5, 2), (5, 4), (4, 4), (3, 7), (9, 4)])
def test_inner_splits_cover_every_training_subject_once(n, k):
    subjects = [f"sub{s:02d}" for s in range(n)]
    clips = [s for s in reversed(subjects) for _ in range(3)]  # one entry per clip, any order
    splits = inner_splits(clips, k)
    assert len(splits) == min(n, k)
    flat = [s for g in splits for s in g]
    assert sorted(flat) == subjects and len(set(flat)) == n
    assert splits == inner_splits(list(reversed(clips)), k)  # deterministic
    if k >= n:
        assert all(len(g) == 1 for g in splits)  # leave-one-subject-out inside
    assert max(map(len, splits)) - min(map(len, splits)) <= 1  # round-robin: balanced


def test_inner_splits_reject_too_few():
    with pytest.raises(ValueError, match="inner_folds"):
        inner_splits(["a", "b"], 1)
    with pytest.raises(ValueError, match=">= 2 training subjects"):
        inner_splits(["a", "a"], 2)


def _fake_problem(n_subjects=5, per=4):
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], per)
    y = np.tile(np.arange(3), len(subjects))[:len(subjects)]
    rows = np.arange(100, 100 + len(subjects))  # index rows of the outer training set
    return rows, subjects, y


def test_select_recipe_pools_inner_folds_and_picks_best(tmp_path):
    """A scripted fit: lr 0.01 is right at epoch 2 only, lr 0.1 at epochs 2 and 3; the pooled
    UF1 is checked against mer_core.metrics on the pooled predictions."""
    rows, subjects, y = _fake_problem()
    y_of = dict(zip(rows, y))
    calls = []

    def fit(train_rows, val_rows, lr, seed):
        calls.append((set(train_rows), set(val_rows), lr, seed))
        truth = np.array([y_of[r] for r in val_rows])
        wrong = (truth + 1) % 3
        right_at = {0.01: {2}, 0.1: {2, 3}}[lr]
        return [truth if e in right_at else wrong for e in (1, 2, 3)]

    c = TrainConfig(epochs=3, select="lr,epochs", lr_grid="0.1,0.01", inner_folds=2)
    choice, grid = select_recipe(c, rows, subjects, y, LABELS, fit, fold_seed=7)
    assert choice == {"lr": 0.01, "epoch": 2, "inner_uf1": 1.0}  # tie at epoch 2 -> smaller lr
    assert list(grid.columns) == ["lr", "epoch", "inner_uf1", "inner_accuracy", "n_val",
                                  "diverged"]
    assert len(grid) == 6 and (grid["n_val"] == len(rows)).all()
    names = np.asarray(LABELS)
    wrong_uf1 = compute(names[y], names[(y + 1) % 3], LABELS)["uf1"]
    row = grid[(grid["lr"] == 0.1) & (grid["epoch"] == 1)].iloc[0]
    assert row["inner_uf1"] == pytest.approx(wrong_uf1) and row["inner_accuracy"] == 0
    # every inner fit: disjoint train / val, union = the outer training rows, own seed
    assert len(calls) == 4
    for tr, val, lr, seed in calls:
        assert not tr & val and tr | val == set(rows)
    assert len({seed for *_, seed in calls}) == 4
    assert calls[0][3] == inner_seed(7, 0.1, 0)

    # epochs not selected: the epoch is train.epochs (lr 0.1 is the one right there)
    choice, _ = select_recipe(dataclasses.replace(c, select="lr"), rows, subjects, y, LABELS,
                              fit, fold_seed=7)
    assert choice["epoch"] == 3 and choice["lr"] == 0.1
    # lr not selected: only train.lr is tried
    calls.clear()
    choice, grid = select_recipe(dataclasses.replace(c, select="epochs", lr_grid="", lr=0.1),
                                 rows, subjects, y, LABELS, fit, fold_seed=7)
    assert {lr for *_, lr, _ in calls} == {0.1} and set(grid["lr"]) == {0.1}
    assert choice["epoch"] == 2  # tie between epochs 2 and 3 -> fewer epochs


def test_choose_breaks_ties_by_epochs_then_lr():
    grid = pd.DataFrame({"lr": [0.1, 0.01, 0.1, 0.01], "epoch": [3, 3, 1, 2],
                         "inner_uf1": [0.5, 0.5, 0.4, 0.5]})
    assert choose(grid) == {"lr": 0.01, "epoch": 2, "inner_uf1": 0.5}
    assert choose(grid, epochs=3) == {"lr": 0.01, "epoch": 3, "inner_uf1": 0.5}
    with pytest.raises(ValueError, match="no row at epoch 9"):
        choose(grid, epochs=9)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("kw, match", [
    (dict(select="lr,epoch"), "key 'select'"),
    (dict(select="epochs,epochs"), "key 'select'"),
    (dict(select="none"), "key 'select'"),
    (dict(select="lr"), "key 'lr_grid'"),
    (dict(select="lr,epochs", lr_grid="0.1,x"), "key 'lr_grid'"),
    (dict(select="lr", lr_grid="0.1,-1"), "key 'lr_grid'"),
    (dict(select="epochs", lr_grid="0.1"), "key 'lr_grid'"),
    (dict(lr_grid="0.1"), "key 'lr_grid'"),
    (dict(select="epochs", inner_folds=1), "key 'inner_folds'"),
])
def test_selection_settings_are_checked(kw, match):
    with pytest.raises(ConfigError, match=match):
        section(TrainConfig, **{**dataclasses.asdict(TrainConfig()), **kw})


def test_lr_list():
    assert TrainConfig(lr=0.3).lr_list == [0.3]
    assert TrainConfig(select="epochs,lr", lr_grid="0.1, 0.01").lr_list == [0.1, 0.01]
    section(TrainConfig, **{**dataclasses.asdict(TrainConfig()), "select": "epochs,lr",
                            "lr_grid": "0.1,0.01"})


# ----------------------------------------------------------------------------- keep_epoch


def _fit(c, keep_epoch=None):
    index, images = fake_data(n_subjects=2, per_subject=6)
    y = np.array([LABELS.index(v) for v in index["label"]])
    x = prepare_images(images, c.image_size, torch.device("cpu"))
    torch.manual_seed(0)
    model = tiny("test_resnet", len(LABELS))
    loss = make_loss("focal", y[:6], len(LABELS))
    res = fit_fold(model, loss, x[:6], torch.from_numpy(y[:6]), x[6:], y[6:], c, "fp32", 3,
                   progress=False, keep_epoch=keep_epoch)
    return model, res, x[6:]


def test_keep_epoch_restores_that_epochs_model():
    c = cfg(epochs=3, batch_size=4)
    _, plain, _ = _fit(c)
    _, last, _ = _fit(c, keep_epoch=3)
    np.testing.assert_array_equal(plain["proba"], last["proba"])  # bit for bit
    model, first, x_test = _fit(c, keep_epoch=1)
    assert len(first["epochs"]) == 3 and len(first["epoch_preds"]) == 3  # log covers every epoch
    np.testing.assert_array_equal(first["proba"].argmax(1), first["epoch_preds"][0])
    for a, b in zip(first["epoch_preds"], plain["epoch_preds"]):
        np.testing.assert_array_equal(a, b)  # keeping a copy does not change the training
    from mer_core.fold import predict_proba
    np.testing.assert_array_equal(predict_proba(model, x_test, first["aug"], "fp32"),
                                  first["proba"])  # the model itself is that epoch's
    with pytest.raises(ValueError, match="keep_epoch"):
        _fit(c, keep_epoch=4)


# ----------------------------------------------------------------------------- LOSO runs


SELECT = dict(epochs=3, select="lr,epochs", lr_grid="0.003,0.0003", inner_folds=2)


@pytest.mark.slow
def test_selection_run_writes_its_choice_and_predicts_with_it(tmp_path):
    index, images = fake_data(n_subjects=3)
    out = tmp_path / "apex_annotated"
    preds = run(out, cfg(**SELECT), index, images)
    sel = pd.read_csv(out / handover.SELECTION_CSV, dtype={"fold": str})
    assert list(sel.columns) == ["seed", "fold", "lr", "epoch", "inner_uf1", "inner_accuracy",
                                 "n_val", "diverged", "chosen"]
    assert len(sel) == 3 * 2 * 3  # folds x lrs x epochs
    chosen = sel[sel["chosen"]]
    assert chosen["epoch"].min() < 3  # some fold stops early: its kept state is an earlier one
    assert sorted(chosen["fold"]) == ["sub00", "sub01", "sub02"]
    assert (sel["n_val"] == 12).all()  # every other subject validated once per (lr, epoch)
    ep = pd.read_csv(out / handover.EPOCH_PREDICTIONS_CSV, dtype={"fold": str})
    for r in chosen.itertuples():
        meta = io.read_json(out / "folds" / f"{r.fold}__seed0.json")
        assert (meta["selected_lr"], meta["selected_epoch"]) == (r.lr, r.epoch)
        assert meta["inner_uf1"] == pytest.approx(r.inner_uf1)
        best = sel[sel["fold"] == r.fold]["inner_uf1"].max()
        assert r.inner_uf1 == best
        at = ep[(ep["fold"] == r.fold) & (ep["epoch"] == r.epoch)]
        mine = preds[preds["subject"] == r.fold]
        assert at["sample_id"].tolist() == mine["sample_id"].tolist()
        assert at["y_pred"].tolist() == mine["y_pred"].tolist()
    # the leakage check's valid row is the chosen epochs' predictions (= predictions.csv)
    leak = L.check_experiments(tmp_path, {"apex_annotated": preds}, LABELS)
    valid = leak[leak["valid"]].iloc[0]
    assert valid["protocol"].startswith("epoch chosen inside the training subjects")
    assert valid["pooled_accuracy"] == pytest.approx((preds["y_true"] == preds["y_pred"]).mean())
    assert valid["pooled_uf1"] == pytest.approx(
        compute(preds["y_true"], preds["y_pred"], LABELS)["uf1"])
    assert valid["mean_epoch"] == pytest.approx(chosen["epoch"].mean())
    acc = float((preds["y_true"] == preds["y_pred"]).mean())
    assert L.headline_mismatches(leak, {"apex_annotated": {"accuracy": acc}}) == []


@pytest.mark.slow
def test_the_test_subject_never_influences_the_choice(tmp_path):
    """Shard 0/3 trains only the fold of sub00: scrambling sub00's images and labels leaves its
    selection grid identical."""
    index, images = fake_data(n_subjects=3)
    c = cfg(**SELECT, folds="0/3")
    run(tmp_path / "a" / "apex_annotated", c, index, images)
    test = (index["subject"] == "sub00").to_numpy()
    rng = np.random.default_rng(5)
    images2 = images.copy()
    images2[test] = rng.integers(0, 255, images2[test].shape, dtype=np.uint8)
    index2 = index.copy()
    index2.loc[test, "label"] = "others"
    run(tmp_path / "b" / "apex_annotated", c, index2, images2)
    name = "folds/sub00__seed0.selection.csv"
    a = (tmp_path / "a" / "apex_annotated" / name).read_bytes()
    assert a == (tmp_path / "b" / "apex_annotated" / name).read_bytes()
    assert not (tmp_path / "a" / "apex_annotated" / handover.SELECTION_CSV).exists()  # shard


@pytest.mark.slow
def test_without_select_no_selection_files(tmp_path):
    index, images = fake_data(n_subjects=2)
    out = tmp_path / "apex_annotated"
    run(out, cfg(), index, images)
    assert not list(out.rglob("*selection.csv"))
    meta = io.read_json(out / "folds" / "sub00__seed0.json")
    assert "selected_epoch" not in meta


# ----------------------------------------------------------------------------- leakage keys


def test_leakage_folds_takes_seed_fold_keys():
    log = pd.DataFrame([{"seed": s, "fold": f, "epoch": e, "test_accuracy": 0.1 * e + 0.01 * s,
                         "test_uf1": 0.1 * e, "test_uar": 0.1 * e, "n_test": 4}
                        for s in (0, 1) for f in ("a", "b") for e in (1, 2, 3)])
    out = L.leakage_folds(log, fixed_epoch={(0, "a"): 1, (0, "b"): 2, (1, "a"): 3,
                                            (1, "b"): 1})
    assert out["fixed_epoch"].tolist() == [1, 2, 3, 1]
    assert out["fixed_accuracy"].tolist() == pytest.approx([0.1, 0.2, 0.31, 0.11])
    assert L.leakage_folds(log, fixed_epoch={"a": 2, "b": 1})["fixed_epoch"].tolist() == \
        [2, 1, 2, 1]  # fold-only keys (the baselines) still work
    with pytest.raises(ValueError, match="no epoch for seed 1 fold b"):
        L.leakage_folds(log, fixed_epoch={(0, "a"): 1, (0, "b"): 2, (1, "a"): 3})
    sel = pd.DataFrame({"seed": [0, 0, 1], "fold": ["a", "a", "a"], "epoch": [1, 2, 3],
                        "chosen": [False, True, True]})
    assert L.selected_epochs(sel) == {(0, "a"): 2, (1, "a"): 3}


def test_a_diverging_learning_rate_is_listed_and_never_chosen():
    """One lr of the grid diverges in an inner fold: the fold goes on with the others; the
    diverged lr stays in the grid at -inf. All of them diverging is an error."""
    rows, subjects, y = _fake_problem()
    y_of = dict(zip(rows, y))

    def fit(train_rows, val_rows, lr, seed):
        if lr == 0.1:
            raise FloatingPointError(f"training loss is nan at epoch 1 (lr {lr})")
        truth = np.array([y_of[r] for r in val_rows])
        return [(truth + 1) % 3, truth]

    c = TrainConfig(epochs=2, select="lr,epochs", lr_grid="0.1,0.01", inner_folds=2)
    choice, grid = select_recipe(c, rows, subjects, y, LABELS, fit, fold_seed=3)
    assert choice == {"lr": 0.01, "epoch": 2, "inner_uf1": 1.0}
    bad = grid[grid["lr"] == 0.1]
    assert len(bad) == 2 and np.isneginf(bad["inner_uf1"]).all() and (bad["n_val"] == 0).all()
    assert (bad["diverged"] == "training loss is nan at epoch 1 (lr 0.1)").all()
    assert (grid.loc[grid["lr"] == 0.01, "diverged"] == "").all()  # the error is kept, per lr
    assert list(grid["lr"]) == [0.01, 0.01, 0.1, 0.1]

    def always(*a):
        raise FloatingPointError("loss is inf")
    with pytest.raises(FloatingPointError, match="every learning rate"):
        select_recipe(c, rows, subjects, y, LABELS, always, fold_seed=3)
    with pytest.raises(FloatingPointError, match="loss is inf"):  # one lr: as without selection
        select_recipe(dataclasses.replace(c, select="epochs", lr_grid=""), rows, subjects, y,
                      LABELS, always, fold_seed=3)
