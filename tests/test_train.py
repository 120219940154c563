import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from mer_core import fold, io
from mer_core.config import ConfigError, ExperimentConfig, TrainConfig
from mer_core.fingerprints import FingerprintError
from mer_core.fold import BatchAugment, fold_seed
from mer_core.frame_cache import CacheMismatchError, FoldFrames, load_frames
from mer_core.handover import read_epoch_log
from mer_core.loso import IncompleteError, merge_shards, plan_folds, plan_workers, run_experiment
from mer_core.machine import select_precision
from mer_core.models import create_model

LABELS = ["happiness", "surprise", "others"]


pytestmark = pytest.mark.usefixtures("one_thread")


def fake_data(n_subjects=4, per_subject=6, size=32, seed=0):
    """Clips whose class is a bright bar at a class-specific height (learnable)."""
    rng = np.random.default_rng(seed)
    rows, images = [], []
    for s in range(n_subjects):
        for i in range(per_subject):
            c = i % len(LABELS)
            img = rng.integers(40, 120, (size, size, 3)).astype(np.uint8)
            img[4 + 8 * c:10 + 8 * c, 6:26] = 230
            images.append(img)
            rows.append({"sample_id": f"fake/sub{s:02d}/EP{i:02d}", "subject": f"sub{s:02d}",
                         "label": LABELS[c]})
    return pd.DataFrame(rows), np.stack(images)


def tiny(name, num_classes):
    return create_model(name, num_classes, allow_any=True)


EXP = ExperimentConfig(frames="annotated", backbone="test_resnet", loss="focal")


def cfg(**kw):
    base = dict(image_size=32, epochs=2, batch_size=8, lr=3e-3, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def run(out, c=None, index=None, images=None, **kw):
    if index is None:
        index, images = fake_data()
    kw.setdefault("model_factory", tiny)
    kw.setdefault("threads", 1)
    return run_experiment("apex_annotated", kw.pop("exp", EXP), c or cfg(), index, images, LABELS,
                          out, progress=False, **kw)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 4-fold run, shared by the comparisons below."""
    out = tmp_path_factory.mktemp("full") / "apex_annotated"
    preds = run(out)
    return out, preds


@pytest.mark.slow
def test_predictions_schema_and_files(full_run):
    out, preds = full_run
    index, _ = fake_data()
    disk = pd.read_csv(out / "predictions.csv")
    assert list(disk.columns) == ["sample_id", "subject", "y_true", "y_pred", "p_happiness",
                                  "p_surprise", "p_others", "seed", "experiment"]
    assert disk["sample_id"].tolist() == index["sample_id"].tolist()  # index order
    assert (disk["y_true"] == index["label"]).all()
    assert set(disk["y_pred"]) <= set(LABELS)
    p = disk[[f"p_{c}" for c in LABELS]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    assert (disk["y_pred"] == np.asarray(LABELS)[p.argmax(1)]).all()
    assert (disk["experiment"] == "apex_annotated").all() and (disk["seed"] == 0).all()
    assert len(preds) == len(index)

    log = pd.read_csv(out / "epoch_log.csv")
    assert list(log.columns[:7]) == ["seed", "fold", "epoch", "train_loss", "test_accuracy",
                                     "test_uf1", "test_uar"]
    assert len(log) == 4 * 2 and set(log["epoch"]) == {1, 2}
    assert np.isfinite(log["train_loss"]).all()
    # the last epoch's test accuracy is the accuracy of the written predictions
    last = log[log["epoch"] == 2].set_index("fold")["test_accuracy"]
    acc = (disk["y_true"] == disk["y_pred"]).groupby(disk["subject"]).mean()
    np.testing.assert_allclose(last.sort_index(), acc.sort_index())
    ep = pd.read_csv(out / "epoch_predictions.csv")
    assert len(ep) == 2 * len(index)

    cams = np.load(out / "cams" / "sub01__seed0.npz")
    assert cams["cam"].shape == (6, 32, 32) and cams["cam"].dtype == np.float16
    assert cams["sample_id"].tolist() == index["sample_id"].tolist()[6:12]
    assert set(cams["y_pred"]) <= set(LABELS) and len(cams["y_true"]) == 6

    meta = io.read_json(out / "run.json")
    for key in ("train_config", "labels", "fingerprint", "code_version", "wall_s_folds", "device",
                "precision", "train_images_per_s"):
        assert key in meta
    assert meta["labels"] == LABELS and meta["precision"] == "fp32"
    assert meta["train_images_per_s"] > 0
    assert sorted(p.name for p in (out / "folds").glob("*.csv") if p.name.count(".") == 1) == \
        [f"sub{s:02d}__seed0.csv" for s in range(4)]


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_predictions(full_run, tmp_path):
    out, _ = full_run
    other = tmp_path / "apex_annotated"
    part = run(other, cfg(max_folds=1))  # as if killed after the first fold
    assert set(part["subject"]) == {"sub00"}
    assert not (other / "predictions.csv").exists()
    first = (other / "folds" / "sub00__seed0.csv").stat().st_mtime_ns
    run(other)  # resume: the finished fold is skipped, not redone
    assert (other / "folds" / "sub00__seed0.csv").stat().st_mtime_ns == first
    assert (other / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(other / "epoch_log.csv"),
                                  pd.read_csv(out / "epoch_log.csv"))


@pytest.mark.slow
def test_a_call_that_trains_nothing_keeps_the_run_record(full_run, tmp_path):
    """Every fold reused (a stage rerun for a docstring): run.json still records the call that
    trained the folds; merging shards trained elsewhere records no elapsed time of its own."""
    out, _ = full_run
    again = tmp_path / "apex_annotated"
    shutil.copytree(out, again)
    before = (again / "run.json").read_bytes()
    run(again)
    assert (again / "run.json").read_bytes() == before
    (again / "run.json").unlink()
    run(again)
    rec = io.read_json(again / "run.json")
    assert rec["wall_s_this_call"] is None and rec["workers"] is None and rec["wall_s_folds"] > 0
    assert (again / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()


@pytest.mark.slow
def test_fresh_redoes_folds_and_same_seed_is_identical(full_run, tmp_path):
    out, _ = full_run
    again = tmp_path / "apex_annotated"
    run(again)
    stamp = (again / "folds" / "sub02__seed0.csv").stat().st_mtime_ns
    run(again, fresh=True)
    assert (again / "folds" / "sub02__seed0.csv").stat().st_mtime_ns != stamp
    assert (again / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()
    cam_a = np.load(out / "cams" / "sub02__seed0.npz")["cam"]
    cam_b = np.load(again / "cams" / "sub02__seed0.npz")["cam"]
    np.testing.assert_array_equal(cam_a, cam_b)


@pytest.mark.slow
def test_changed_settings_refuse_to_mix_with_finished_folds(full_run, tmp_path):
    out, _ = full_run
    with pytest.raises(FingerprintError) as e:
        run(out, cfg(lr=1e-3))
    assert "lr" in str(e.value) and "fresh=True" in str(e.value)
    index, images = fake_data()
    images = images.copy()
    images[0, 0, 0, 0] ^= 1  # a rebuilt cache is different data
    with pytest.raises(FingerprintError, match="data"):
        run(out, index=index, images=images)


@pytest.mark.slow
def test_redo_stale_redoes_only_mismatching_folds(tmp_path):
    out = tmp_path / "apex_annotated"
    run(out, cfg(epochs=1, max_folds=2))
    # dvc repro after a params change, killed after one fold
    run(out, cfg(epochs=1, max_folds=1, lr=1e-3), redo_stale=True)
    stamp = (out / "folds" / "sub00__seed0.csv").stat().st_mtime_ns
    with pytest.raises(FingerprintError):
        run(out, cfg(epochs=1, lr=1e-3))
    run(out, cfg(epochs=1, lr=1e-3), redo_stale=True)
    assert (out / "folds" / "sub00__seed0.csv").stat().st_mtime_ns == stamp  # matching: kept
    assert io.read_json(out / "run.json")["train_config"]["lr"] == 1e-3
    fresh = tmp_path / "fresh" / "apex_annotated"
    run(fresh, cfg(epochs=1, lr=1e-3))
    assert (out / "predictions.csv").read_bytes() == (fresh / "predictions.csv").read_bytes()


@pytest.mark.slow
def test_shards_merge_to_the_full_run(full_run, tmp_path):
    out, _ = full_run
    sharded = tmp_path / "apex_annotated"
    run(sharded, cfg(folds="0/2"))
    with pytest.raises(IncompleteError) as e:
        merge_shards(sharded)
    assert "sub01 seed 0" in str(e.value) and "sub03 seed 0" in str(e.value)
    assert "sub00" not in str(e.value)
    part = run(sharded, cfg(folds="1/2"))
    assert set(part["subject"]) == {"sub01", "sub03"}
    assert not (sharded / "predictions.csv").exists()
    merged = merge_shards(sharded)
    assert (sharded / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()
    assert len(merged) == 24
    assert sorted(io.read_json(sharded / "run.json")["shards"]) == ["0/2", "1/2"]


@pytest.mark.slow
def test_merge_refuses_mismatched_shards(tmp_path):
    out = tmp_path / "apex_annotated"
    run(out, cfg(folds="0/2", epochs=1))
    run(out, cfg(folds="1/2", epochs=1, lr=1e-3))
    with pytest.raises(FingerprintError) as e:
        merge_shards(out)
    assert "lr" in str(e.value)


@pytest.mark.slow
def test_two_seeds_and_seeded_by_subject(tmp_path):
    out = tmp_path / "apex_annotated"
    index, images = fake_data(n_subjects=3)
    preds = run(out, cfg(epochs=1, n_seeds=2, seed=5), index=index, images=images)
    assert preds["seed"].tolist() == [5] * 18 + [6] * 18
    assert (out / "cams" / "sub02__seed6.npz").is_file()
    assert len(pd.read_csv(out / "predictions.csv")) == 36
    assert fold_seed(0, "sub01") == fold_seed(0, "sub01") != fold_seed(1, "sub01")


@pytest.mark.slow
def test_learns_the_pattern(tmp_path):
    index, images = fake_data(n_subjects=3, per_subject=9)
    run(tmp_path / "learn", cfg(epochs=8, lr=5e-3, augment="flip", max_folds=1), index=index,
        images=images)
    log = read_epoch_log(tmp_path / "learn")
    assert len(log) == 8
    assert log["train_loss"].iloc[-1] < 0.5 * log["train_loss"].iloc[0]


@pytest.mark.slow
def test_bad_inputs(tmp_path):
    index, images = fake_data()
    with pytest.raises(CacheMismatchError, match="24 rows"):
        run(tmp_path / "x", index=index, images=images[:-1])
    ids = index["sample_id"].tolist()
    ids[3], ids[4] = ids[4], ids[3]
    with pytest.raises(CacheMismatchError, match="row 3"):
        run(tmp_path / "x", index=index, images=images, image_ids=ids)
    with pytest.raises(ValueError, match="seresnext50_32x4d"):
        run(tmp_path / "x", index=index, images=images, model_factory=None,
            exp=dataclasses.replace(EXP, backbone="vgg16"))
    with pytest.raises(ValueError, match="weighted_ce"):
        run(tmp_path / "x", index=index, images=images, exp=dataclasses.replace(EXP, loss="l2"))
    with pytest.raises(ConfigError, match="spotted:best"):
        run(tmp_path / "x", index=index, images=images, exp=dataclasses.replace(EXP, frames="apx"))
    bad = index.copy()
    bad.loc[2, "label"] = "fear"
    with pytest.raises(ValueError, match="row 2.*fear"):
        run(tmp_path / "x", index=bad, images=images)
    assert not (tmp_path / "x").exists()


def test_load_frames_checks_the_cache(tmp_path):
    index, images = fake_data(n_subjects=2)
    ids = index["sample_id"].tolist()
    for m in ("frame_diff", "lbp"):
        io.write_npy(tmp_path / f"spotted-{m}.npy", images if m == "lbp" else images[::-1].copy())
        io.write_csv(tmp_path / f"spotted-{m}.csv",
                     pd.DataFrame({"sample_id": ids, "frame": 1, "source": f"spotted:{m}"}))
    io.write_csv(tmp_path / "spotter_choice.csv", pd.DataFrame(
        {"subject": ["sub00", "sub01"], "method": ["lbp", "frame_diff"],
         "mae_train_frames": [1.0, 2.0], "n_train_clips": [6, 6]}))
    best = load_frames(tmp_path, "spotted:best", index)
    np.testing.assert_array_equal(best.for_fold("sub00"), images)
    np.testing.assert_array_equal(best.for_fold("sub01"), images[::-1])
    io.write_csv(tmp_path / "spotted-lbp.csv",
                 pd.DataFrame({"sample_id": ids[::-1], "frame": 1, "source": "spotted:lbp"}))
    with pytest.raises(CacheMismatchError, match="row 0"):
        load_frames(tmp_path, "spotted:best", index)
    with pytest.raises(ValueError, match=r"12 (rows|clips)"):
        load_frames(tmp_path, "spotted:frame_diff", index.iloc[:5])
    with pytest.raises(FileNotFoundError, match=r"onset\.(npy|csv)"):
        load_frames(tmp_path, "onset", index)


@pytest.mark.slow
def test_each_fold_trains_on_its_own_frames(tmp_path):
    """With per-fold frames (spotted:best) a fold trains and tests on its variant only."""
    index, images = fake_data(n_subjects=2)
    other = images[:, ::-1].copy()
    frames = FoldFrames({"spotted:lbp": images, "spotted:frame_diff": other},
                        {"sub00": "spotted:lbp", "sub01": "spotted:frame_diff"})
    out = tmp_path / "best"
    exp = dataclasses.replace(EXP, frames="spotted:best")
    run(out, cfg(epochs=1), index=index, images=frames, exp=exp)
    assert io.read_json(out / "folds" / "sub00__seed0.json")["frames"] == "spotted:lbp"
    assert io.read_json(out / "folds" / "sub01__seed0.json")["frames"] == "spotted:frame_diff"
    plain = tmp_path / "plain"
    run(plain, cfg(epochs=1), index=index, images=images, exp=exp)
    a, b = pd.read_csv(out / "predictions.csv"), pd.read_csv(plain / "predictions.csv")
    pd.testing.assert_frame_equal(a[a.subject == "sub00"], b[b.subject == "sub00"], check_exact=True)
    assert not a[a.subject == "sub01"].equals(b[b.subject == "sub01"])


def test_plan_folds():
    subjects = ["sub10", "sub02", "sub01", "sub03", "sub02"]
    assert plan_folds(subjects) == ["sub01", "sub02", "sub03", "sub10"]
    assert plan_folds(subjects, "1/2") == ["sub02", "sub10"]
    assert plan_folds(subjects, "all", 2) == ["sub01", "sub02"]
    with pytest.raises(ConfigError):
        plan_folds(subjects, "2/2")


def test_augment_batch_is_deterministic_and_shaped():
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    a = BatchAugment(["flip", "affine", "color"], torch.Generator().manual_seed(0))(x)
    b = BatchAugment(["flip", "affine", "color"], torch.Generator().manual_seed(0))(x)
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    plain = BatchAugment([], torch.Generator())(x)
    assert not torch.equal(a, plain)
    assert abs(plain.mean().item()) < 1.5  # ImageNet-normalised
    with pytest.raises(ValueError, match="flip, affine, color"):
        BatchAugment(["cutout"], torch.Generator())


def test_a_flipped_flow_image_has_its_horizontal_displacement_negated():
    from mer_core import motion

    flow = np.zeros((8, 8, 2), np.float32)
    flow[:, :4, 0], flow[:, 4:, 0], flow[..., 1] = 1.5, -0.5, 0.75    # dx by side; dy
    img = torch.from_numpy(motion.encode_flow(flow)).permute(2, 0, 1)[None].repeat(16, 1, 1, 1)
    aug = BatchAugment(["flip"], torch.Generator().manual_seed(0), flow=True)
    out = aug(img)
    mean = torch.tensor(fold.IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(fold.IMAGENET_STD).view(1, 3, 1, 1) * 255
    raw = (out * std + mean).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    flipped = [i for i in range(16) if not np.array_equal(raw[i], img[i].permute(1, 2, 0))]
    assert 0 < len(flipped) < 16
    for i in flipped:   # the mirrored field: dx negated and mirrored, dy and magnitude mirrored
        back = motion.decode_flow(raw[i])
        assert np.allclose(back[..., 0], -motion.decode_flow(
            motion.encode_flow(flow))[:, ::-1, 0], atol=0.05)
        assert np.allclose(back[..., 1], 0.75, atol=0.05)
    with pytest.raises(ValueError, match="would change the vectors"):
        BatchAugment(["flip", "color"], torch.Generator(), flow=True)


def test_select_precision():
    cpu = torch.device("cpu")
    assert select_precision("fp32", cpu) == "fp32"
    assert select_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(ValueError):
        select_precision("fp16", cpu)


@pytest.mark.parametrize("loss,opt,sched,alpha", [("weighted_ce", "sgd", "cosine", "none"),
                                                  ("focal", "adamw", "cosine", "inverse_frequency"),
                                                  ("ce", "sgd", "onecycle", "none")])
@pytest.mark.slow
def test_other_losses_optimisers_schedules_and_resize(tmp_path, loss, opt, sched, alpha):
    index, images = fake_data(n_subjects=2)
    c = cfg(epochs=1, optimizer=opt, schedule=sched, focal_alpha=alpha, image_size=24)
    preds = run(tmp_path / "x", c, index=index, images=images,
                exp=dataclasses.replace(EXP, loss=loss))
    assert len(preds) == 12 and np.isfinite(preds[[f"p_{k}" for k in LABELS]].to_numpy()).all()
    assert np.load(tmp_path / "x" / "cams" / "sub00__seed0.npz")["cam"].shape == (6, 24, 24)


@pytest.mark.slow
def test_fold_workers_give_the_same_predictions(full_run, tmp_path):
    # two spawned processes with one thread each == one fold at a time with one thread
    out, preds = full_run
    index, images = fake_data()
    par = run_experiment("apex_annotated", EXP, cfg(workers=2), index, images, LABELS,
                         tmp_path / "par", progress=False, threads=2, model_factory=tiny)
    pd.testing.assert_frame_equal(par, preds)
    run_json = io.read_json(tmp_path / "par" / "run.json")
    assert run_json["workers"] == 2 and run_json["threads"] == 1
    # changing only the number of workers keeps the finished folds
    again = run_experiment("apex_annotated", EXP, cfg(workers=1), index, images, LABELS,
                           tmp_path / "par", progress=False, threads=1, model_factory=tiny)
    pd.testing.assert_frame_equal(again, preds)


def test_plan_workers():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert plan_workers(0, cpu, 2, 1, 26) == 2          # auto: one per core
    assert plan_workers(0, cpu, 16, 1, 26) == 8         # at most 8
    assert plan_workers(0, cpu, 16, 2, 26) == 8
    assert plan_workers(0, cpu, 4, 2, 26) == 2          # budget // threads of a fold
    assert plan_workers(0, cpu, 4, 1, 1) == 1           # never more workers than folds
    assert plan_workers(3, cpu, 6, 1, 26, tiny) == 3
    with pytest.warns(UserWarning, match="cuda trains one fold at a time"):
        assert plan_workers(2, cuda, 8, 1, 26) == 1
    with pytest.warns(UserWarning, match="cannot be pickled"):
        assert plan_workers(2, cpu, 2, 1, 26, lambda n, k: tiny(n, k)) == 1


@pytest.mark.slow
def test_every_split_of_the_work_trains_a_fold_alike(full_run, tmp_path):
    """A resumed run whose last fold trains alone on a 2-thread budget, and shards run with that
    budget, give byte-identical files: every fold trains with train.threads threads."""
    out, _ = full_run
    resumed = tmp_path / "resumed"
    run(resumed, cfg(max_folds=3), threads=2)          # two workers, then one
    run(resumed, threads=2)                            # the last fold alone: still one thread
    assert (resumed / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()
    assert {io.read_json(p)["threads"] for p in (resumed / "folds").glob("*__seed0.json")} == {1}
    sharded = tmp_path / "sharded"
    run(sharded, cfg(folds="1/2"), threads=2)
    run(sharded, cfg(folds="0/2", workers=1), threads=2)
    merge_shards(sharded)
    assert (sharded / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()


@pytest.mark.slow
def test_threads_device_and_precision_are_in_the_fingerprint(full_run):
    out, _ = full_run
    with pytest.raises(FingerprintError, match="threads"):
        run(out, cfg(threads=2))
    meta = io.read_json(out / "folds" / "sub00__seed0.json")
    assert meta["params"]["device"] == "cpu" and meta["params"]["precision"] == "fp32"
    assert meta["params"]["device_name"] and meta["params"]["train"]["threads"] == 1
    assert io.read_json(out / "run.json")["device_name"] == meta["params"]["device_name"]


def test_workers_must_be_a_count():
    with pytest.raises(ConfigError, match="workers"):
        cfg(workers=-1).check("train")
    with pytest.raises(ConfigError, match="threads"):
        cfg(threads=0).check("train")


def test_the_fingerprint_holds_parsed_lists_and_the_imagenet_source():
    """config.py is outside the code version: what its parsing gives a fold is in the fold's
    params; "imagenet" records which weights timm serves (a newer timm may serve others)."""
    from mer_core import fingerprints
    from mer_core.config import ExperimentConfig

    exp = ExperimentConfig(frames="annotated", backbone="seresnext50_32x4d", loss="focal")
    c = cfg(augment="flip, color", select="lr,epochs", lr_grid="0.1,0.01")
    p = fingerprints.fold_params("e", exp, c, LABELS, "d", torch.device("cpu"), "fp32", "f")
    assert p["train"]["parsed"] == {"augment": ["flip", "color"], "select": ["lr", "epochs"],
                                    "lr": [0.1, 0.01]}
    assert "config" not in fingerprints.CODE_MODULES and "pretrained_source" not in p["train"]
    p = fingerprints.fold_params("e", exp, cfg(pretrained="imagenet"), LABELS, "d",
                                 torch.device("cpu"), "fp32", "f")
    assert p["train"]["pretrained_source"].startswith("timm ")
    assert "seresnext50_32x4d" in p["train"]["pretrained_source"]
