"""End to end: every notebook in dvc.yaml, executed through papermill on tiny inputs.

This is the CI smoke run of the whole pipeline (data -> apex -> train -> evaluate -> table4) on a
four-subject synthetic subset at 32 px with one epoch: it proves that the notebooks, the
parameters dvc.yaml passes and the files the stages hand over fit together. It runs in a
temporary project folder with the pipeline's own relative paths (data/, results/, reports/), so
the README's papermill examples can then be run against that finished pipeline to show that a
parameter run never touches the pipeline's files.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = "sub02,sub09,sub17,sub19"
#: Parameters added to a README example so that it runs in seconds here (its own stay as written).
QUICK = {"00_data.ipynb": {"synthetic_subjects": SUBJECTS, "synthetic_size": 48},
         "01_apex_extraction.ipynb": {"image_size": 32, "workers": 1},
         "02_train_loso.ipynb": {"image_size": 32, "batch_size": 8, "max_folds": 1},
         "02_baselines.ipynb": {"c_grid": "0.1,1", "inner_folds": 2, "lbp_grid": 3},
         "03_evaluate.ipynb": {}, "04_table4.ipynb": {}}


def run(project: Path, notebook: str, out_name: str | None = None, **parameters) -> None:
    pm.execute_notebook(
        str(ROOT / "notebooks" / notebook),
        str(project / "executed" / (out_name or notebook)),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(project),
        progress_bar=False,
    )


def tree_hashes(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders (what `dvc status` compares)."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")) if folder.is_dir() else [folder]:
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def readme_examples() -> list[tuple[str, dict]]:
    """The README's papermill examples: (notebook, parameters) per `papermill` command."""
    text = (ROOT / "README.md").read_text()
    found = []
    for cmd in re.findall(r"^\.venv/bin/papermill .*?(?<!\\)$", text.replace("\\\n", " "), re.M):
        words = shlex.split(cmd)
        notebook = Path(words[words.index("-k") + 2]).name
        params = {}
        for i, w in enumerate(words):
            if w in ("-p", "-r"):
                value = words[i + 2]
                params[words[i + 1]] = value if w == "-r" else yaml.safe_load(value)
        found.append((notebook, params))
    return found


@pytest.mark.slow
def test_every_notebook_runs_end_to_end_and_parameter_runs_leave_it_alone(tmp_path):
    project = tmp_path / "project"
    (project / "executed").mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["experiments"] = {
        "onset": {"frames": "onset", "backbone": "seresnext50_32x4d", "loss": "focal"},
        "apex_spotted": {"frames": "spotted:best", "backbone": "seresnext50_32x4d",
                         "loss": "focal"},
        "apex_annotated": {"frames": "annotated", "backbone": "seresnext50_32x4d", "loss": "focal"},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(ROOT / "README.md", project / "README.md")

    # the pipeline, with the paths dvc.yaml passes (relative to the project)
    data = dict(root="data/synthetic", synthetic_subjects=SUBJECTS, synthetic_size=48,
                out_dir="data", reports_dir="reports")
    run(project, "00_data.ipynb", **data)
    full = pd.read_csv(project / "data" / "index.csv")
    assert set(full.subject) == set(SUBJECTS.split(","))
    assert json.loads((project / "data" / "dataset.json").read_text())["synthetic"] is True
    # bad frames: with strict=False they are excluded, named, and the pipeline runs to the end
    cut, garbled = full["sample_id"].iloc[0], full["sample_id"].iloc[5]
    cut_file = project / full["frames_dir"].iloc[0] / f"reg_img{full['onset'].iloc[0] + 3}.jpg"
    cut_file.write_bytes(cut_file.read_bytes()[:300])       # truncated: OpenCV alone decodes it
    bad_file = project / full["frames_dir"].iloc[5] / f"reg_img{full['onset'].iloc[5] + 1}.jpg"
    bad_file.write_bytes(b"\xff\xd8" + b"\x00" * 200 + b"\xff\xd9")   # whole but undecodable
    with pytest.raises(pm.PapermillExecutionError, match="truncated JPEG"):
        run(project, "00_data.ipynb", "00_strict.ipynb", **data)
    run(project, "00_data.ipynb", **data, strict=False)
    excluded = pd.read_csv(project / "data" / "excluded.csv").set_index("sample_id")["reason"]
    assert "truncated JPEG" in excluded[cut] and "cannot decode" in excluded[garbled]
    index = pd.read_csv(project / "data" / "index.csv")
    assert len(index) == len(full) - 2

    run(project, "01_apex_extraction.ipynb", image_size=32, workers=1, frames_dir="data/frames",
        apex_csv="data/apex.csv", metrics_json="reports/apex_metrics.json",
        report_json="data/apex_report.json", figures_dir="reports/figures/01_apex", strict=False)
    assert (project / "data" / "frames" / "annotated.npy").is_file()
    assert (project / "data" / "frames" / "spotter_choice.csv").is_file()
    assert "per_fold" in json.loads((project / "reports" / "apex_metrics.json").read_text())

    for name, exp in params["experiments"].items():
        run(project, "02_train_loso.ipynb", f"02_{name}.ipynb", experiment=name, **exp,
            image_size=32, epochs=1, batch_size=8, results_dir="results", reports_dir="reports")
        pred = pd.read_csv(project / "results" / name / "predictions.csv")
        assert len(pred) == len(index) and set(pred.experiment) == {name}

    run(project, "02_baselines.ipynb", c_grid="0.1,1", inner_folds=2, lbp_grid=3,
        results_dir="results/baselines", reports_dir="reports")
    names = params["baselines"]["names"].split(",")
    for name in names:
        pred = pd.read_csv(project / "results" / "baselines" / name / "predictions.csv")
        assert len(pred) == len(index)
    assert (project / "reports" / "figures" / "02_baselines" / "02_baselines_c.png").is_file()

    run(project, "03_evaluate.ipynb", bootstrap=200, reports_dir="reports")
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert set(metrics) >= {"onset", "apex_annotated", *names}
    assert metrics["onset"]["ci_unit"] == "subject" and "uf1_diff_ci_low" in metrics["onset"]
    assert metrics[names[0]]["kind"] == "baseline" and "uf1_diff_baseline" in metrics["onset"]
    leak = pd.read_csv(project / "reports" / "leakage.csv")
    assert set(names) <= set(leak["experiment"])

    run(project, "04_table4.ipynb", reports_dir="reports")
    table = (project / "reports" / "table4.md").read_text()
    assert "synthetic" in table.lower() and "not public" in table
    assert "subject-level bootstrap" in table and "distinguishable" in table
    assert "*Baselines (same folds)*" in table and "strongest classical baseline" in table
    for suffix in ("csv", "tex"):
        assert (project / "reports" / f"table4.{suffix}").is_file()

    # the README's parameter runs against the finished pipeline: its files stay as they are
    before = tree_hashes(project / "data", project / "results", project / "reports",
                         project / "README.md")
    examples = readme_examples()
    assert sorted(nb for nb, _ in examples) == sorted(QUICK), \
        "the README shows one papermill example per notebook"
    for notebook, parameters in examples:
        run(project, notebook, f"example_{notebook}", **{**parameters, **QUICK[notebook]})
    assert tree_hashes(project / "data", project / "results", project / "reports",
                       project / "README.md") == before
    assert (project / "scratch" / "01_apex_extraction" / "apex_report.json").is_file()
    assert (project / "scratch" / "04_table4" / "table4.md").is_file()
