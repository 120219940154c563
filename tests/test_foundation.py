"""The project's promises about itself: environment, notebooks, DVC wiring, params, entry points."""
from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from mer_core import config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _req_name(req: str) -> str:
    return re.split(r"[=<>!~\[ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = {_req_name(d) for d in env["dependencies"] if isinstance(d, str)}
    assert {_req_name(r) for r in wanted} - set(map(_req_name, pip)) == set(), \
        "in pyproject.toml but not in environment.yml"
    assert set(pip) == wanted, (
        f"pins differ: only in environment.yml {sorted(set(pip) - wanted)}, "
        f"only in pyproject.toml {sorted(wanted - set(pip))}")
    assert "python=3.11" in {d for d in env["dependencies"] if isinstance(d, str)}
    assert "pip" in conda


def test_every_runtime_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" in req, f"pyproject.toml: {req!r} is not pinned"
    assert "torch==2.14.1" in project["dependencies"]
    assert "torchvision==0.29.1" in project["dependencies"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel"
    assert "papermill" not in nb.metadata, f"{path.name}: papermill metadata committed"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: cell {i} execution count"
            assert "papermill" not in cell.get("metadata", {}), f"{path.name}: cell {i} metadata"


def parameters_of(path: Path) -> dict:
    """Names and literal values of the notebook's `parameters` cell (it must hold literals only)."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    values = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{path.name}: the parameters cell may only assign literals ({ast.unparse(node)})"
        values[node.targets[0].id] = ast.literal_eval(node.value)  # raises if not a literal
    return values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_literals(path):
    assert parameters_of(path)


def _dvc_stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_dvc_stages_run_existing_notebooks_with_known_parameters():
    """Every `-p/-r/-y name` a stage passes exists in its notebook (a typo would be ignored)."""
    stages = _dvc_stages()
    assert list(stages) == ["data", "apex", "train", "evaluate", "table4"]
    for name, stage in stages.items():
        cmd = (stage.get("do") or stage)["cmd"]
        cmd = cmd.replace("${nb}", "papermill -k python3 --log-output --no-progress-bar")
        first = cmd.split("&&")[0]
        words = shlex.split(re.sub(r"\$\{[^}]+\}", "X", first))
        assert words[:3] == ["papermill", "-k", "python3"], f"stage {name}: {first[:60]}"
        notebook = ROOT / words[5]
        assert notebook.is_file(), f"stage {name}: {words[5]} does not exist"
        known = parameters_of(notebook)
        passed = [words[i + 1] for i, w in enumerate(words) if w in ("-p", "-r")]
        passed += [words[i + 1].split(":")[0] for i, w in enumerate(words) if w == "-y"]
        unknown = sorted(set(passed) - set(known))
        assert not unknown, f"stage {name} passes {unknown}, not in {notebook.name}'s parameters"
        deps = (stage.get("do") or stage)["deps"]
        assert words[5] in deps, f"stage {name}: its notebook is not a dependency"


def test_params_yaml_loads_and_covers_the_train_stage():
    params = config.load(ROOT / "params.yaml")
    assert params.experiments, "no experiments"
    train_cmd = _dvc_stages()["train"]["do"]["cmd"]
    for field in config.TrainConfig.__dataclass_fields__:
        assert "${train.%s}" % field in train_cmd, f"train.{field} is not passed to the notebook"


def _write(tmp_path, mutate):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["train"].update(lr_typo=1), "unknown key(s) 'lr_typo'"),
    (lambda r: r["train"].pop("epochs"), "missing key(s) 'epochs'"),
    (lambda r: r["train"].update(epochs="ten"), "key 'epochs' must be int"),
    (lambda r: r["data"].update(strict="yes"), "key 'strict' must be bool"),
    (lambda r: r["data"].update(dataset="casme3"), "key 'dataset' is 'casme3'"),
    (lambda r: r.update(trian={}), "unknown section(s) 'trian'"),
    (lambda r: r.pop("apex"), "missing section(s) 'apex'"),
    (lambda r: r["experiments"]["onset"].update(backbone="vgg"), "experiments.onset"),
    (lambda r: r["experiments"]["onset"].update(frames="apex"), "unknown frame strategy"),
    (lambda r: r["train"].update(folds="3/2"), "0 <= i < n"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_config_accepts_ints_for_floats_and_parses_lists(tmp_path):
    params = config.load(_write(tmp_path, lambda r: r["train"].update(lr=1, n_seeds=3)))
    assert params.train.lr == 1.0 and isinstance(params.train.lr, float)
    assert params.train.seeds == [0, 1, 2]
    assert config.split_list(" a, b ,,c") == ["a", "b", "c"]
    assert config.split_list("none") == []
    assert config.parse_folds("all") == (0, 1) and config.parse_folds("1/4") == (1, 4)


def test_missing_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(config.ConfigError, match="params file not found"):
        config.load(tmp_path / "nope.yaml")


def test_entry_points_and_ci():
    make = (ROOT / "Makefile").read_text()
    for target in ("setup", "repro", "test", "lab"):
        assert re.search(rf"^{target}:", make, re.M), f"Makefile has no '{target}' target"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run the README's test command"
    readme = (ROOT / "README.md").read_text()
    assert "make repro" in readme and "make test" in readme
    head = "\n".join(readme.splitlines()[:40])
    assert "make repro" in head and "make test" in head, "the two commands come first"


def test_generated_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for folder in ("/data/", "/results/", ".venv/", "/reports/notebooks/*"):
        assert folder in ignored
