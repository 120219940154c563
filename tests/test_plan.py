"""The cost planner (mer_core.plan) and the throughput record it reads (mer_core.throughput)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mer_core import config, handover, plan, throughput

ROOT = Path(__file__).resolve().parents[1]
#: 12 clips of 3 subjects.
SUBJECTS = ["a"] * 5 + ["b"] * 3 + ["c"] * 4


def _params(**train) -> config.Params:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["experiments"] = {"one": {"frames": "onset", "backbone": "resnet50", "loss": "ce"},
                           "two": {"frames": "onset", "backbone": "seresnet50", "loss": "ce"}}
    base["evaluate"]["reference"] = "one"
    base["train"].update({"batch_size": 4, "epochs": 2, **train})
    return config.from_dict(base, "test params")


def test_units_count_full_batches_per_fold_seed_and_experiment():
    units = plan.units(_params(n_seeds=2), SUBJECTS)
    assert len(units) == 2 * 2 * 3  # experiments x seeds x folds
    # fold a: 7 training clips -> 1 full batch of 4 per epoch; b: 9 -> 8; c: 8 -> 8; 2 epochs
    assert {u.subject: u.images for u in units} == {"a": 8, "b": 16, "c": 16}
    assert {u.subject: u.eval_images for u in units} == {"a": 10, "b": 6, "c": 8}
    assert {u.trainings for u in units} == {1}
    assert {u.backbone for u in units if u.experiment == "two"} == {"seresnet50"}


def test_select_adds_the_inner_trainings_to_each_unit():
    units = plan.units(_params(select="lr,epochs", lr_grid="0.001,0.01", inner_folds=2), SUBJECTS)
    # inner folds of the 2 training subjects: train on the other one, 2 lrs, 2 epochs
    # (fold a: b 3 images + c 4 per epoch; b: a 4 + c 4; c: a 4 + b 3: a set under one batch
    # is its own size)
    images = {u.subject: u.images for u in units if u.experiment == "one"}
    assert images == {"a": 8 + 2 * 2 * (3 + 4), "b": 16 + 2 * 2 * (4 + 4),
                      "c": 16 + 2 * 2 * (4 + 3)}
    assert {u.trainings for u in units} == {1 + 2 * 2}
    # validation passes: every epoch of every inner training on its validation subjects
    assert {u.subject: u.eval_images for u in units if u.experiment == "one"} == \
        {"a": 10 + 2 * 2 * (3 + 4), "b": 6 + 2 * 2 * (5 + 4), "c": 8 + 2 * 2 * (5 + 3)}


def test_lpt_schedules_largest_first_onto_the_least_loaded():
    # 5 -> A, 4 -> B, 3 -> B (7), 3 -> A (8), 3 -> B (10): LPT gives 10 (the optimum is 9)
    assert plan.lpt([3, 5, 3, 4, 3], 2) == 10
    assert plan.lpt([3, 5, 3, 4, 3], 1) == 18
    assert plan.lpt([3, 5, 3, 4, 3], 8) == 5
    assert plan.lpt([], 4) == 0
    with pytest.raises(ValueError, match="machines"):
        plan.lpt([1.0], 0)


def test_even_subjects_spread_a_dataset_shape():
    subjects = plan.even_subjects(26, 255)  # CASME II
    counts = pd.Series(subjects).value_counts()
    assert len(subjects) == 255 and len(counts) == 26 and set(counts) == {9, 10}
    with pytest.raises(ValueError, match="--subjects 3 --clips 2"):
        plan.even_subjects(3, 2)


def test_unit_seconds_per_overhead_kind():
    unit = plan.Unit("e", "resnet50", 0, "a", images=100, trainings=3, eval_images=20, n_test=5)
    rate = {"images_per_s": 10.0}
    assert plan.unit_seconds(unit, {**rate, "overhead": {"kind": "assumed",
                                                         "per_training_s": 2.0}}, 1.0) == 17.0
    assert plan.unit_seconds(unit, {**rate, "overhead": {"kind": "fold records",
                                                         "per_unit_s": 4.0}}) == 14.0
    derived = {"kind": "derived", "build_s": 1.0, "eval_images_per_s": 40.0}
    assert plan.unit_seconds(unit, {**rate, "overhead": derived}) == 10 + 3 + 0.5 + 0.5


def test_fold_records_give_the_overhead_when_they_match(tmp_path):
    cfg = _params().train
    folds = tmp_path / "one" / "folds"
    folds.mkdir(parents=True)
    train = {"image_size": cfg.image_size, "batch_size": 4, "epochs": 2, "select": ""}
    for i, (wall, fit) in enumerate([(10.0, 7.0), (12.0, 7.0), (9.0, 8.0)]):
        (folds / f"s{i}__seed0.json").write_text(json.dumps(
            {"params": {"backbone": "resnet50", "device": "cpu", "train": train},
             "precision": "fp32", "wall_s": wall, "train_s": fit}))
    got = plan.record_overhead(tmp_path, cfg, "resnet50", "fp32")
    assert got["kind"] == "fold records" and got["per_unit_s"] == 3.0 and got["n"] == 3
    assert plan.record_overhead(tmp_path, cfg, "resnet50", "bf16") is None
    assert plan.record_overhead(tmp_path, _params(epochs=3).train, "resnet50", "fp32") is None


def _fake_measure(backbone, size, batch, precisions, steps, device="cpu", **kw):
    return {"build_s": 0.5, "images_per_s": {p: 4.0 for p in precisions},
            "eval_images_per_s": {p: 12.0 for p in precisions}}


@pytest.fixture
def fake_project(tmp_path, monkeypatch):
    """params.yaml with two tiny rows, a profile, an index of 3 subjects; rates faked."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["experiments"] = {"one": {"frames": "onset", "backbone": "resnet50", "loss": "ce"}}
    base["evaluate"]["reference"] = "one"
    base["train"].update(batch_size=4, epochs=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "big.yaml").write_text(
        "train:\n  n_seeds: 2\nexperiments:\n  two: {frames: onset, backbone: seresnet50, "
        "loss: ce}\n")
    index = pd.DataFrame({c: "" for c in handover.INDEX_COLUMNS}, index=range(len(SUBJECTS)))
    index["sample_id"] = [f"c{i}" for i in range(len(SUBJECTS))]
    index["subject"], index["onset"], index["offset"] = SUBJECTS, 0, 9
    index["apex"] = pd.array([4] * len(SUBJECTS), dtype="Int64")
    (tmp_path / "data").mkdir()
    index.to_csv(tmp_path / "data" / "index.csv", index=False)
    monkeypatch.setattr(throughput, "measure_backbone", _fake_measure)
    monkeypatch.setattr(throughput, "process_start_seconds", lambda: 3.0)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_writes_json_and_labels_assumed_gpu_numbers(fake_project, capsys):
    assert plan.main(["big", "--gpus", "1,2", "--out", "plan.json",
                      "--gpu-images-per-s", "8", "--gpu-overhead-s", "1"]) == 0
    out = capsys.readouterr().out
    rec = json.loads((fake_project / "plan.json").read_text())
    # 2 experiments x 2 seeds x 3 folds; per seed and row 8 + 16 + 16 training images
    assert rec["total"] == {"units": 12, "folds": 3, "training_images": 4 * 40, "trainings": 12}
    assert rec["data"] == {"clips": 12, "subjects": 3,
                           "note": "data/index.csv: 12 clips of 3 subjects"}
    gpu = rec["gpu"]
    assert gpu["assumed"] and gpu["label"] == plan.ASSUMED and plan.ASSUMED in gpu["source"]
    # every unit: images / 8 + 1 s per training + 3 s process start
    assert gpu["hours"] == pytest.approx((4 * 40 / 8 + 12 * 1 + 12 * 3) / 3600)
    assert set(gpu["wall_hours"]) == {"1", "2"}  # 1 is always there
    assert gpu["wall_hours"]["1"] == pytest.approx(gpu["hours"])
    for line in out.splitlines():
        if "GPU" in line and ("hours" in line or "wall on" in line):
            assert plan.ASSUMED in line, line
    cpu = rec["cpu"]
    assert cpu["precision"] == "fp32" and cpu["backbones"]["resnet50"]["images_per_s"] == 4.0
    # derived overhead: 0.5 s build, eval images at 12/s, Grad-CAM of the test clips at 4/s
    per_seed = 40 / 4 + 3 * 0.5 + 24 / 12 + 12 / 4
    assert cpu["hours"] == pytest.approx(4 * per_seed / 3600)
    assert "total" in out and "CPU wall on this machine" in out


def test_cli_reads_a_gpu_record_and_checks_its_size(fake_project, capsys):
    rec = throughput.make_record("cpu", 48, 4, 2, {b: _fake_measure(b, 48, 4, ["fp32"], 2)
                                                   for b in ("resnet50", "seresnet50")}, 2.0)
    throughput.write_record("gpu.json", rec)
    assert plan.main(["big", "--gpus", "2", "--gpu-record", "gpu.json", "--out", "p.json"]) == 0
    got = json.loads(Path("p.json").read_text())["gpu"]
    assert set(json.loads(Path("p.json").read_text())["gpu"]["wall_hours"]) == {"1", "2"}
    assert not got["assumed"] and got["label"] == "measured" and got["process_start_s"] == 2.0
    assert plan.ASSUMED not in capsys.readouterr().out.split("CPU hours")[0].split("GPU (")[1]
    rec["image_size"] = 224
    throughput.write_record("gpu.json", rec)
    assert plan.main(["big", "--gpu-record", "gpu.json"]) == 2
    assert "gpu.json: measured at image_size 224" in capsys.readouterr().err


def test_missing_index_is_a_clear_error(fake_project, capsys):
    assert plan.main(["big", "--index", "nowhere/index.csv"]) == 2
    err = capsys.readouterr().err
    assert "nowhere/index.csv: index not found" in err and "dvc repro data" in err
    assert "--subjects K --clips M" in err
    assert plan.main(["big", "--index", "nowhere/index.csv", "--subjects", "26", "--clips",
                      "255", "--out", "shape.json"]) == 0
    rec = json.loads(Path("shape.json").read_text())
    assert rec["data"]["clips"] == 255 and "spread evenly" in rec["data"]["note"]
    assert rec["total"]["units"] == 2 * 2 * 26


def test_bare_step_runs_a_tiny_model(one_thread):
    got = throughput.measure_backbone("test_resnet", 32, 2, ["fp32"], 1, allow_any=True)
    assert got["images_per_s"]["fp32"] > 0 and got["eval_images_per_s"]["fp32"] > 0
    assert got["build_s"] > 0


def test_units_sharing_a_job_share_its_process_start(fake_project):
    base = yaml.safe_load((fake_project / "params.yaml").read_text())
    base["cluster"]["units_per_task"] = 3
    (fake_project / "params.yaml").write_text(yaml.safe_dump(base))
    assert plan.main(["big", "--gpus", "1", "--out", "plan.json", "--gpu-images-per-s", "8",
                      "--gpu-overhead-s", "1"]) == 0
    gpu = json.loads((fake_project / "plan.json").read_text())["gpu"]
    assert gpu["units_per_task"] == 3 and gpu["process_start_s"] == 3.0
    assert gpu["hours"] == pytest.approx((4 * 40 / 8 + 12 * 1 + 12 * 3 / 3) / 3600)
