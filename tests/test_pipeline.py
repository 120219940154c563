"""End to end: every notebook in dvc.yaml, executed through papermill on tiny inputs.

This is the CI smoke run of the whole pipeline (data -> apex -> train -> evaluate -> table4) on a
four-subject synthetic subset at 32 px with one epoch: it proves that the notebooks, the
parameters dvc.yaml passes and the files the stages hand over fit together.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = "sub02,sub09,sub17,sub19"


def run(tmp: Path, notebook: str, out_name: str | None = None, **parameters) -> None:
    pm.execute_notebook(
        str(ROOT / "notebooks" / notebook),
        str(tmp / "executed" / (out_name or notebook)),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(ROOT),
        progress_bar=False,
    )


@pytest.mark.slow
def test_every_notebook_runs_end_to_end(tmp_path):
    (tmp_path / "executed").mkdir()
    data, results, reports = tmp_path / "data", tmp_path / "results", tmp_path / "reports"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["experiments"] = {
        "onset": {"frames": "onset", "backbone": "seresnext50_32x4d", "loss": "focal"},
        "apex_annotated": {"frames": "annotated", "backbone": "seresnext50_32x4d", "loss": "focal"},
    }
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))

    run(tmp_path, "00_data.ipynb", root=str(data / "synthetic"), synthetic_subjects=SUBJECTS,
        synthetic_size=48, out_dir=str(data), reports_dir=str(reports))
    index = pd.read_csv(data / "index.csv")
    assert set(index.subject) == set(SUBJECTS.split(","))
    assert json.loads((data / "dataset.json").read_text())["synthetic"] is True

    run(tmp_path, "01_apex_extraction.ipynb", index_csv=str(data / "index.csv"),
        dataset_json=str(data / "dataset.json"), image_size=32, workers=1,
        frames_dir=str(data / "frames"), apex_csv=str(data / "apex.csv"),
        metrics_json=str(reports / "apex_metrics.json"), figures_dir=str(reports / "figures" / "01_apex"))
    assert (data / "frames" / "annotated.npy").is_file()
    assert "best" in json.loads((reports / "apex_metrics.json").read_text())

    for name, exp in params["experiments"].items():
        run(tmp_path, "02_train_loso.ipynb", f"02_{name}.ipynb", experiment=name, **exp,
            image_size=32, epochs=1, batch_size=8, index_csv=str(data / "index.csv"),
            dataset_json=str(data / "dataset.json"), frames_dir=str(data / "frames"),
            results_dir=str(results), reports_dir=str(reports))
        pred = pd.read_csv(results / name / "predictions.csv")
        assert len(pred) == len(index) and set(pred.experiment) == {name}

    run(tmp_path, "03_evaluate.ipynb", params_file=str(params_file), results_dir=str(results),
        index_csv=str(data / "index.csv"), dataset_json=str(data / "dataset.json"),
        reports_dir=str(reports))
    metrics = json.loads((reports / "metrics.json").read_text())
    assert set(metrics) >= {"onset", "apex_annotated"}

    run(tmp_path, "04_table4.ipynb", params_file=str(params_file), reports_dir=str(reports),
        results_dir=str(results), frames_dir=str(data / "frames"),
        dataset_json=str(data / "dataset.json"), index_csv=str(data / "index.csv"),
        apex_metrics=str(reports / "apex_metrics.json"), reference="apex_annotated")
    table = (reports / "table4.md").read_text()
    assert "synthetic" in table.lower() and "not public" in table
    for suffix in ("csv", "tex"):
        assert (reports / f"table4.{suffix}").is_file()
