"""Run profiles (profiles/*.yaml -> dvc exp run -S ...)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mer_core import config, profiles, vocab

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "train": {"epochs": 4, "augment": "flip", "pretrained": ""},
    "experiments": {"onset": {"frames": "onset", "backbone": "seresnext50_32x4d",
                              "loss": "focal"}},
}


def test_set_params_marks_new_keys_and_quotes_strings():
    over = {"train": {"epochs": 30, "augment": "flip,affine"},
            "experiments": {"onset": {"loss": "ce"},
                            "random": {"frames": "random", "backbone": "resnet50",
                                       "loss": "focal"}}}
    args = profiles.set_params(BASE, over)
    assert args == [
        "train.epochs=30",
        "train.augment='flip,affine'",  # quoted: an unquoted comma is a Hydra sweep
        "experiments.onset.loss='ce'",
        "+experiments.random={frames: 'random', backbone: 'resnet50', loss: 'focal'}",
    ]


def test_merge_is_recursive_and_leaves_the_base_alone():
    merged = profiles.merge(BASE, {"train": {"epochs": 9}, "experiments": {"x": {"frames": "m"}}})
    assert merged["train"] == {"epochs": 9, "augment": "flip", "pretrained": ""}
    assert set(merged["experiments"]) == {"onset", "x"}
    assert BASE["train"]["epochs"] == 4 and "x" not in BASE["experiments"]


def test_unknown_profile_lists_the_known_ones(tmp_path):
    (tmp_path / "full.yaml").write_text("train: {n_seeds: 2}\n")
    with pytest.raises(FileNotFoundError, match="nope.yaml.*profiles: full"):
        profiles.load_profile("nope", tmp_path)


def test_extends_builds_on_another_profile_and_refuses_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text("train: {n_seeds: 3, epochs: 4}\n"
                                     "experiments: {x: {frames: m}}\n")
    (tmp_path / "b.yaml").write_text("extends: a\ntrain: {epochs: 30}\n")
    assert profiles.load_profile("b", tmp_path) == {
        "train": {"n_seeds": 3, "epochs": 30}, "experiments": {"x": {"frames": "m"}}}
    (tmp_path / "a.yaml").write_text("extends: b\n")
    with pytest.raises(ValueError, match="cycle: b -> a -> b"):
        profiles.load_profile("b", tmp_path)
    (tmp_path / "c.yaml").write_text("extends: [a]\n")
    with pytest.raises(ValueError, match="c.yaml: key 'extends' must be a profile name"):
        profiles.load_profile("c", tmp_path)


@pytest.mark.parametrize("name", ["full", "paper"])
def test_shipped_profiles_are_valid_params(name):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    merged = profiles.merge(base, profiles.load_profile(name, ROOT / "profiles"))
    params = config.from_dict(merged, f"profile {name}")
    specs = {(e.frames, e.backbone, e.loss) for e in params.experiments.values()}
    # the Table 4 core rows stay, the random row and both ablations are added
    for frames in ("onset", "middle", "spotted:best", "annotated", "random"):
        assert (frames, "seresnext50_32x4d", "focal") in specs
    assert {b for f, b, lo in specs if f == "annotated" and lo == "focal"} == set(vocab.BACKBONES)
    assert {lo for f, b, lo in specs if f == "annotated" and b == "seresnext50_32x4d"} \
        == set(vocab.LOSSES)
    assert params.train.n_seeds >= 3
    if name == "paper":
        assert params.train.image_size == 224 and params.apex.image_size == 224
        assert params.train.epochs >= 30 and params.train.n_seeds == 5
        assert "{backbone}" in params.train.pretrained


def test_paper_profile_refuses_missing_weights_and_runs_with_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(FileNotFoundError, match=r"weights/seresnext50_32x4d_imagenet\.pth"):
        profiles.command("paper", directory=ROOT / "profiles")
    (tmp_path / "weights").mkdir()
    for b in vocab.BACKBONES:
        (tmp_path / "weights" / f"{b}_imagenet.pth").write_bytes(b"x")
    cmd = profiles.command("paper", directory=ROOT / "profiles")
    assert cmd[:3] == ["dvc", "exp", "run"]
    assert "train.image_size=224" in cmd and "train.pretrained='weights/{backbone}_imagenet.pth'" \
        in cmd
    assert profiles.main(["paper", "--dry-run"]) == 2  # the CLI looks in ./profiles: none here


def test_cli_dry_run_prints_the_command(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert profiles.main(["full", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dvc exp run ") and "+experiments.random=" in out


def test_seeds_profile_reruns_the_four_rows_with_three_seeds():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = profiles.load_profile("seeds", ROOT / "profiles")
    merged = config.from_dict(profiles.merge(base, overrides), "profile seeds")
    assert merged.train.seeds == [0, 1, 2]
    assert set(merged.experiments) == set(base["experiments"])
    assert profiles.set_params(base, overrides) == ["train.n_seeds=3"]


def test_inputs_profile_adds_the_motion_rows_to_the_default_run():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = profiles.load_profile("inputs", ROOT / "profiles")
    merged = config.from_dict(profiles.merge(base, overrides), "profile inputs")
    frames = {n: e.frames for n, e in merged.experiments.items()}
    assert {"onset", "middle", "spotted:best", "annotated", "diff:annotated", "flow:annotated",
            "flow:spotted:best"} == set(frames.values())
    assert all(vocab.motion_of(f)[0] for n, f in frames.items() if n not in base["experiments"])
    assert merged.train == config.from_dict(base, "params").train   # the same recipe
    assert all(a.startswith("+experiments.") for a in profiles.set_params(base, overrides))


def test_real_profile_chooses_lr_and_epochs_inside_the_folds_from_imagenet_weights():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    merged = profiles.merge(base, profiles.load_profile("real", ROOT / "profiles"))
    params = config.from_dict(merged, "profile real")
    t = params.train
    assert config.split_list(t.select) == ["lr", "epochs"] and len(config.split_list(t.lr_grid)) >= 2
    assert t.inner_folds >= 2 and t.pretrained == "imagenet" and t.image_size >= 112
    assert params.apex.image_size >= t.image_size and t.augment_list == ["flip"]
    assert merged["data"] == base["data"]          # the user's data section is left alone
    frames = {e.frames for e in params.experiments.values()}
    assert {"annotated", "spotted:best", "flow:annotated", "diff:annotated"} <= frames
    cmd = profiles.command("real", directory=ROOT / "profiles")
    assert "train.select='lr,epochs'" in cmd and "train.pretrained='imagenet'" in cmd


def test_finished_profile_tables_are_saved_with_their_wall_time(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    for f in profiles.SAVED:
        (reports / f).write_text(f"{f}: ![bars](reports/figures/x.png)\n")
    out = profiles.save_reports("seeds", ["dvc", "exp", "run", "-S", "train.n_seeds=3"], 3600.0,
                                reports)
    assert out == reports / "profiles" / "seeds"
    assert (out / "table4.md").read_text() == "table4.md: ![bars](../../figures/x.png)\n"
    run = json.loads((out / "run.json").read_text())
    assert run["wall_s"] == 3600.0 and "train.n_seeds=3" in run["command"] and run["cpu"]
    (reports / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        profiles.save_reports("seeds", [], 1.0, reports)


def test_composite_profile_replaces_the_rows_and_reads_every_stand_in():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = profiles.load_profile("composite", ROOT / "profiles")
    merged, removed = profiles.replaced(base, overrides)
    params = config.from_dict(merged, "profile composite")
    assert set(params.experiments) == {"megc_apex_spotted"}
    assert sorted(removed) == sorted(f"~experiments.{k}" for k in base["experiments"])
    assert params.data.dataset == "composite" and params.data.protocol == "megc2019-3class"
    assert [n for n, _ in params.data.part_list] == ["synthetic", "synthetic_samm",
                                                     "synthetic_smic"]
    # no annotated apex in SMIC: nothing reads the annotated strategy
    assert "annotated" not in {e.frames for e in params.experiments.values()}
    assert params.baselines.apex == "spotted:best"
    cmd = profiles.command("composite", ROOT / "params.yaml", ROOT / "profiles")
    assert "~experiments.onset" in cmd and "replace" not in " ".join(cmd)


def test_replace_is_checked_and_inherited(tmp_path):
    (tmp_path / "a.yaml").write_text("replace: [experiments]\nexperiments: {x: {frames: onset, "
                                     "backbone: resnet50, loss: ce}}\n")
    (tmp_path / "b.yaml").write_text("extends: a\ntrain: {epochs: 2}\n")
    assert profiles.load_profile("b", tmp_path)["replace"] == ["experiments"]
    with pytest.raises(ValueError, match="not a mapping section"):
        profiles.replaced({"train": {}}, {"replace": ["train"]})
