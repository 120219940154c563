"""The hand-over module's readers and writers: each names the file and what makes it."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from mer_core import handover


def test_read_record_names_the_file_the_maker_and_the_missing_key(tmp_path):
    path = tmp_path / "dataset.json"
    with pytest.raises(FileNotFoundError, match=r"dataset.json: not found \(made by the data stage"):
        handover.read_dataset_info(path)
    path.write_text(json.dumps({"dataset": "synthetic", "labels": ["a", "b"]}))
    with pytest.raises(ValueError, match="missing key.*protocol.*made by the data stage"):
        handover.read_dataset_info(path)
    path.write_text(json.dumps({"dataset": "synthetic", "labels": ["a"], "protocol": "p"}))
    assert handover.read_dataset_info(path)["protocol"] == "p"


def test_metrics_leakage_and_calibration_round_trip(tmp_path):
    handover.write_metrics(tmp_path, {"a": {"uf1": 0.5}})
    assert handover.read_metrics(tmp_path / handover.METRICS_JSON) == {"a": {"uf1": 0.5}}
    assert handover.read_leakage(tmp_path / handover.LEAKAGE_CSV) is None
    leak = pd.DataFrame({"experiment": ["a"], "protocol": ["valid"], "pooled_uf1": [0.4]})
    handover.write_leakage(tmp_path, leak)
    pd.testing.assert_frame_equal(handover.read_leakage(tmp_path / handover.LEAKAGE_CSV), leak)
    assert handover.read_calibration(tmp_path / "calibration.json") is None


def test_run_record_and_predictions(tmp_path):
    assert handover.read_run(tmp_path) is None
    handover.write_run(tmp_path, {"workers": 2})
    assert handover.read_run(tmp_path) == {"workers": 2}
    preds = pd.DataFrame({"sample_id": ["x/s1/a", "x/s1/a"], "subject": ["s1", "s1"],
                          "y_true": ["a", "a"], "y_pred": ["a", "b"], "seed": [0, 0]})
    with pytest.raises(ValueError, match="appears twice for seed 0"):
        handover.write_predictions(tmp_path, preds)
    assert not (tmp_path / handover.PREDICTIONS_CSV).exists()
    handover.write_predictions(tmp_path, preds.iloc[:1])
    assert handover.read_predictions(tmp_path / handover.PREDICTIONS_CSV)["y_pred"].tolist() == ["a"]


def test_apex_table_keeps_a_missing_annotation_as_na(tmp_path):
    table = pd.DataFrame({"sample_id": ["x/s1/a", "x/s1/b"], "method": ["lbp", "lbp"],
                          "apex_pred": [10, 12], "apex_annotated": pd.array([11, None], "Int64")})
    handover.write_apex_outputs(tmp_path / "apex.csv", table, tmp_path / "m.json", {"per_fold": {}})
    back = handover.read_apex_table(tmp_path / "apex.csv")
    assert back["apex_annotated"].isna().tolist() == [False, True]
    assert handover.read_apex_metrics(tmp_path / "m.json") == {"per_fold": {}}
    with pytest.raises(FileNotFoundError, match="made by the apex stage"):
        handover.read_apex_table(tmp_path / "nope.csv")


def test_merged_epoch_files_are_none_when_absent(tmp_path):
    assert handover.read_merged_epochs(tmp_path) == (None, None)
    pd.DataFrame({c: [1] for c in handover.EPOCH_COLUMNS}).to_csv(
        tmp_path / handover.EPOCH_LOG_CSV, index=False)
    log, ep = handover.read_merged_epochs(tmp_path)
    assert list(log.columns) == list(handover.EPOCH_COLUMNS) and log["fold"].tolist() == ["1"]
    assert ep is None
