"""mer_core.vocab: each vocabulary has one definition, and a new backbone or spotter reaches the
config checks, the stages and the tables through it alone."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from mer_core import apex, apex_stage, config, frame_cache, losses, models, table4, vocab
from mer_core.config import ApexConfig, ConfigError, DataConfig, ExperimentConfig

from test_apex_stage import write_dataset
from fakes import EXPERIMENTS, fake_tables, make_fake_project

PACKAGE = Path(vocab.__file__).parent


def _string_tuples(path: Path):
    """Every tuple, list, set or dict-key collection of >= 3 string literals in a module."""
    for node in ast.walk(ast.parse(path.read_text())):
        items = node.keys if isinstance(node, ast.Dict) else \
            node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else []
        strings = {n.value for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        if len(strings) >= 3:
            yield node.lineno, strings


@pytest.mark.parametrize("name", ["DATASETS", "SPOTTERS", "BACKBONES", "LOSSES", "BASE_FRAMES",
                                  "PROTOCOLS"])
def test_each_vocabulary_is_spelled_out_only_in_vocab(name):
    words = set(getattr(vocab, name))
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "vocab.py":
            continue
        for line, strings in _string_tuples(path):
            assert not words <= strings, \
                f"{path.name}:{line} repeats vocab.{name}; import it from mer_core.vocab"


def test_every_spotter_and_loss_has_its_implementation():
    assert set(apex.CURVES) == set(vocab.SPOTTERS) - {"middle"}
    y = np.array([0, 0, 1, 1])
    for name in vocab.LOSSES:
        assert losses.make_loss(name, y, 2) is not None
    assert vocab.PAPER_BACKBONE in vocab.BACKBONES and vocab.PAPER_LOSS in vocab.LOSSES
    assert vocab.REFERENCE_FRAMES in vocab.BASE_FRAMES
    for protocol in vocab.PROTOCOLS:
        DataConfig(protocol=protocol).check("params")
        labels = vocab.protocol_labels(protocol)
        for maps in vocab.PROTOCOLS[protocol]["maps"].values():
            assert {c for c in maps.values() if c is not None} == set(labels)


def test_strategy_names():
    assert vocab.frame_strategies()[:4] == ["onset", "middle", "random", "annotated"]
    base = [s for s in vocab.frame_strategies() if vocab.motion_of(s)[0] is None]
    assert base[-1] == vocab.PER_FOLD == "spotted:best"
    assert {"flow:annotated", "diff:annotated", "flow:spotted:best", "diff:spotted:lbp"} \
        <= set(vocab.frame_strategies())
    assert vocab.motion_of("flow:spotted:best") == ("flow", "spotted:best")
    assert vocab.motion_of("spotted:best") == (None, "spotted:best")
    assert vocab.motion_of("annotated") == (None, "annotated")
    assert vocab.spotter_of("flow:spotted:lbp") is None    # a motion input is not a frame row
    assert vocab.frame_label("diff:annotated") == "Apex - onset difference (annotated apex)"
    assert vocab.frame_label("flow:spotted:best", "lbp in 3 of 3 folds") == \
        "Optical flow onset -> apex (spotted apex, spotter per fold: lbp in 3 of 3 folds)"
    assert vocab.strategy_stem("flow:spotted:best") == "flow-spotted-best"
    assert vocab.spotter_of("spotted:lbp") == "lbp" and vocab.spotter_of("onset") is None
    assert vocab.frame_label("spotted:lbp") == "Spotted apex (lbp)"
    assert vocab.frame_label("spotted:best", "lbp in 3 of 3 folds") \
        == "Spotted apex (spotter per fold: lbp in 3 of 3 folds)"
    with pytest.raises(ValueError, match="casme2-5class"):
        vocab.protocol_labels("casme9")


def test_a_new_backbone_is_one_line_and_reaches_config_model_and_tables(tmp_path, monkeypatch):
    monkeypatch.setitem(vocab.BACKBONES, "resnet10t", "ResNet-10-T")
    ExperimentConfig(frames="annotated", backbone="resnet10t", loss="focal").check("params")
    with pytest.raises(ConfigError, match="resnet10t"):
        ExperimentConfig(frames="annotated", backbone="resnet11", loss="focal").check("params")
    model = models.create_model("resnet10t", 3)
    assert model.get_classifier().out_features == 3
    exps = {**EXPERIMENTS, "bb_resnet10t": ("annotated", "resnet10t", "focal", 0.5)}
    project = make_fake_project(tmp_path, exps)
    _, tables = fake_tables(project)
    rows = list(tables["backbone"]["row"])
    assert "ResNet-10-T" in rows and rows.index("ResNet-10-T") > rows.index("ResNet-50")


def test_a_new_spotter_is_one_name_and_its_curve(tmp_path, monkeypatch):
    def _toy(gray, blocks, opts):  # brightness above the first frame
        return np.abs(gray.mean(axis=(1, 2)) - gray[0].mean())

    monkeypatch.setattr(vocab, "SPOTTERS", vocab.SPOTTERS + ("toy",))
    monkeypatch.setitem(apex.CURVES, "toy", _toy)
    cfg = ApexConfig(methods="middle,frame_diff,toy", image_size=32, workers=1)
    cfg.check("params")
    config.check_strategy("spotted:toy")
    index = write_dataset(tmp_path / "data")
    out = tmp_path / "out"
    apex_stage.build_apex_stage(
        index, {"dataset": "synthetic", "aligned": True, "fps": 200, "description": "test"},
        cfg, frames_dir=out / "frames", apex_csv=out / "apex.csv",
        metrics_json=out / "apex_metrics.json", report_json=out / "apex_report.json",
        progress=False)
    assert (out / "frames" / "spotted-toy.npy").is_file()
    assert frame_cache.load_cache(out / "frames", "spotted:toy", index).shape[0] == len(index)
    specs = {"a": {"frames": "spotted:toy", "backbone": vocab.PAPER_BACKBONE,
                   "loss": vocab.PAPER_LOSS},
             "b": {"frames": "onset", "backbone": vocab.PAPER_BACKBONE, "loss": vocab.PAPER_LOSS}}
    assert table4.select_rows(specs, "table4") == [("Onset frame", "b"),
                                                   ("Spotted apex (toy)", "a")]
