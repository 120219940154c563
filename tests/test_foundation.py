"""The project's promises about itself: environment, notebooks, DVC wiring, params, entry points."""
from __future__ import annotations

import ast
import dataclasses
import re
import shlex
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from mer_core import config
from mer_core import deps as deps_mod
from mer_core.config import ConfigError, DataConfig, section

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter(path):
    """papermill's own parser gives up on a line whose comment holds '=' or quotes (it then
    warns and cannot type that parameter): every parameter must parse."""
    from papermill.translators import PythonTranslator

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    names = [p.name for p in PythonTranslator.inspect(cell)]
    assert names == list(parameters_of(path)), path.name


def _dvc_stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_dvc_stages_run_existing_notebooks_with_known_parameters():
    """Every `-p/-r/-y name` a stage passes exists in its notebook (a typo would be ignored)."""
    stages = _dvc_stages()
    assert list(stages) == ["data", "apex", "train", "baselines", "evaluate", "table4"]
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


def _invocation(cmd: str) -> tuple[str, dict]:
    """The notebook a stage runs and the ``-p/-r`` values it passes (``${...}`` -> X)."""
    first = cmd.replace("${nb}", "papermill -k python3").split("&&")[0]
    words = shlex.split(re.sub(r"\$\{[^}]+\}", "X", first))
    passed = {words[i + 1]: words[i + 2] for i, w in enumerate(words) if w in ("-p", "-r")}
    return words[3], passed


def _covered(path: str, entries) -> bool:
    """``path`` is one of ``entries``, inside one, or a folder holding one."""
    path = path.rstrip("/")
    return any(path == e or path.startswith(e + "/") or e.startswith(path + "/") for e in entries)


def _names(items) -> list[str]:
    return [next(iter(i)) if isinstance(i, dict) else i for i in items or []]


def _is_path(key: str, value) -> bool:
    return isinstance(value, str) and key != "root" and (
        "/" in value or value.endswith((".csv", ".json", ".yaml")) or key.endswith("_dir"))


@pytest.mark.parametrize("stage_name", ["data", "apex", "train", "evaluate", "table4"])
def test_stage_deps_are_its_imports_and_its_inputs(stage_name):
    """deps list exactly the mer_core modules the notebook imports (directly or through other
    modules) and every file it reads; every output path it writes is passed and declared."""
    stage = _dvc_stages()[stage_name]
    body = stage.get("do") or stage
    notebook, passed = _invocation(body["cmd"])
    deps = body["deps"]
    code = sorted(d for d in deps if d.startswith("mer_core/"))
    want = deps_mod.module_files(deps_mod.notebook_modules(ROOT / notebook))
    assert code == want, f"stage {stage_name}: mer_core deps {code}, imports need {want}"
    outs = _names(body.get("outs")) + _names(body.get("metrics")) + _names(body.get("plots"))
    for key, default in parameters_of(ROOT / notebook).items():
        if not _is_path(key, default):
            continue
        if default.startswith("scratch/"):  # an output: the stage must name the pipeline's path
            assert key in passed, f"stage {stage_name} does not pass the output path {key}"
            assert _covered(passed[key], outs), \
                f"stage {stage_name}: {key}={passed[key]} is not among its outs"
        elif key == "params_file":
            assert body.get("params"), f"stage {stage_name} reads params.yaml: declare params"
        else:  # an input
            value = passed.get(key, default)
            assert _covered(value, deps), f"stage {stage_name} reads {key}={value}, not a dep"


def test_code_version_hashes_what_a_fold_computes_and_the_stage_reruns_on_it():
    """The code version is the LOSO driver and everything it imports (a change there can change
    a fold's result, so finished folds are redone); every one of those modules is a dep of the
    train stage. Modules the notebook uses only around the folds (metrics for the printout,
    figures), the names-only vocab (its choices enter the fingerprint as values) and the
    launcher (where folds run, not what they compute) rerun the stage but reuse its folds."""
    from mer_core import fingerprints
    notebook = deps_mod.notebook_modules(ROOT / "notebooks" / "02_train_loso.ipynb")
    outside = fingerprints.NAMES_ONLY + fingerprints.LAUNCH_ONLY
    assert list(fingerprints.CODE_MODULES) == [m for m in deps_mod.closure(["loso"])
                                                if m not in outside]
    assert set(outside) <= set(deps_mod.closure(["loso"]))   # still stage deps
    assert set(fingerprints.CODE_MODULES) <= set(notebook)
    assert {"fold", "losses", "models", "machine", "handover"} <= set(fingerprints.CODE_MODULES)
    # what vocab decides for a fold is in its fingerprint as values: here the flow flip
    import torch
    from mer_core.config import ExperimentConfig, TrainConfig
    fp = {f: fingerprints.fold_params("x", ExperimentConfig(f, "seresnext50_32x4d", "focal"),
                                      TrainConfig(), ["a", "b"], "d", torch.device("cpu"),
                                      "fp32", "t")["motion"]
          for f in ("annotated", "flow:annotated", "diff:spotted:best")}
    assert fp == {"annotated": None, "flow:annotated": "flow", "diff:spotted:best": "diff"}


#: The stage (notebook number) whose modules these are; every other module is shared.
STAGE_MODULES = {
    0: {"sheets", "smic", "images", "datasets", "composite", "casme3", "apex_images",
        "synthetic", "synthetic_faces", "synthetic_standins", "card"},
    1: {"apex", "apex_scores", "faces", "motion", "apex_stage", "apex_figures", "apex_single"},
    2: {"loso", "fold", "nested", "machine", "fingerprints", "models", "losses", "gradcam",
        "train_figures", "baselines", "cluster"},
    3: {"stats", "evaluate", "leakage"},
    4: {"table4", "table4_format", "table4_figures", "report"},
}


def test_no_notebook_imports_a_later_stage():
    """Data flows one way: a stage's notebook (and what it imports) never uses the module of a
    later stage; every module of the package is either a stage's or shared."""
    shared = {"vocab", "config", "handover", "frame_cache", "metrics", "io", "charts", "deps",
              "profiles", "plan", "throughput"}  # the last three: tools, no stage imports them
    owned = set().union(*STAGE_MODULES.values())
    package = {p.stem for p in (ROOT / "mer_core").glob("*.py") if p.stem != "__init__"}
    assert package == owned | shared, f"unplaced modules: {sorted(package - owned - shared)}"
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        stage = int(nb.name[:2])
        later = set().union(*(m for k, m in STAGE_MODULES.items() if k > stage))
        used = set(deps_mod.notebook_modules(nb))
        assert not used & later, f"{nb.name} imports later stages' {sorted(used & later)}"


def test_deps_follow_imports_transitively(tmp_path):
    assert deps_mod.imported("from mer_core import io, metrics\nimport mer_core.apex as a\n"
                             "def f():\n    from mer_core.handover import load_cache\n"
                             "from .losses import FocalLoss\nimport numpy") == \
        {"io", "metrics", "apex", "handover", "losses"}
    assert "io" in deps_mod.closure(["report"]) and "metrics" in deps_mod.closure(["report"])
    with pytest.raises(ValueError, match="no such module"):
        deps_mod.closure(["nope"])


NOTEBOOK_SECTION = {"00_data.ipynb": "data", "01_apex_extraction.ipynb": "apex",
                    "02_train_loso.ipynb": "train", "02_baselines.ipynb": "baselines",
                    "03_evaluate.ipynb": "evaluate",
                    "04_table4.ipynb": "table4"}
#: Where data lives, not what the experiment is: a notebook run by hand generates the synthetic
#: set in its scratch folder (dvc.yaml passes params.yaml's data.root).
LOCATION_KEYS = {"root"}


def test_params_yaml_is_the_one_set_of_defaults():
    """The dataclass defaults and every notebook's parameters cell equal params.yaml, so running
    a notebook by hand runs the pipeline's experiment."""
    import dataclasses

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, cls in config.SECTIONS.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        assert defaults == raw[section], f"{cls.__name__} defaults differ from params.yaml: {section}"
    for name, section in NOTEBOOK_SECTION.items():
        values = parameters_of(ROOT / "notebooks" / name)
        for key in (set(values) & set(raw[section])) - LOCATION_KEYS:
            assert values[key] == raw[section][key], \
                f"{name}: parameter {key}={values[key]!r}, params.yaml {section}.{key}={raw[section][key]!r}"
    apex_nb = parameters_of(ROOT / "notebooks" / "01_apex_extraction.ipynb")
    assert apex_nb["strict"] == raw["data"]["strict"]
    train_nb = parameters_of(ROOT / "notebooks" / "02_train_loso.ipynb")
    exp = raw["experiments"][train_nb["experiment"]]
    assert {k: train_nb[k] for k in exp} == exp


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
    (lambda r: r["data"].update(dataset="casme9"), "key 'dataset' is 'casme9'"),
    (lambda r: r.update(trian={}), "unknown section(s) 'trian'"),
    (lambda r: r.pop("apex"), "missing section(s) 'apex'"),
    (lambda r: r["experiments"]["onset"].update(backbone="vgg"), "experiments.onset"),
    (lambda r: r["experiments"]["onset"].update(frames="apex"), "unknown frame strategy"),
    (lambda r: r["train"].update(folds="3/2"), "0 <= i < n"),
    (lambda r: (r["experiments"]["onset"].update(frames="flow:annotated"),
                r["train"].update(augment="flip,affine")), "would change the flow vectors"),
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
    for folder in ("/data/", "/results/", ".venv", "/reports/notebooks/*"):  # .venv: dir or link
        assert folder in ignored


def test_params_yaml_holds_the_calibrated_recipe():
    """The values benchmarks/calibrate.py chose on the calibration population are the ones the
    pipeline runs (reports/calibration.json), and that population is not the reported one."""
    import json

    record = json.loads((ROOT / "reports" / "calibration.json").read_text())
    params = config.load(ROOT / "params.yaml")
    chosen = record["recipe"]["chosen"]
    assert (params.train.lr, params.train.epochs) == (chosen["lr"], chosen["epochs"])
    assert params.apex.smooth == record["spotters"]["chosen_smooth"]
    if record.get("precision"):
        assert params.train.precision == record["precision"]["chosen"]
    fixed = record["recipe"]["fixed"]
    for key in ("image_size", "batch_size", "optimizer", "schedule", "augment", "weight_decay"):
        assert getattr(params.train, key) == fixed[key], key
    population = record["population"]
    assert population["synthetic_seed"] != params.data.synthetic_seed
    assert population["amplitude"] == params.data.synthetic_amplitude


def test_calibration_precision_rule():
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate", ROOT / "benchmarks" / "calibrate.py")
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    run = {"fp32_seed1": {"images_per_s": 20.0}, "bf16_seed0": {"images_per_s": 40.0},
           "changed_bf16_vs_fp32": 0.10, "changed_seed1_vs_seed0": 0.30}
    assert cal.precision_choice(run)["chosen"] == "bf16"
    assert cal.precision_choice({**run, "changed_bf16_vs_fp32": 0.4})["chosen"] == "fp32"
    assert cal.precision_choice({**run, "bf16_seed0": {"images_per_s": 21.0}})["chosen"] == "fp32"


@pytest.mark.parametrize("kw, match", [
    (dict(dataset="smic", band="NIR"), "band"),
    (dict(dataset="casme2", labels="list.csv"), "labels"),
    (dict(dataset="casme2", parts="samm=SAMM"), "parts are for dataset composite"),
    (dict(dataset="composite", parts="samm=SAMM"), "two or more"),
    (dict(dataset="composite", parts="samm=SAMM,samm=S2"), "two or more"),
    (dict(dataset="composite", parts="samm=SAMM,smic"), "smic=''"),
    (dict(dataset="composite", parts="samm=SAMM,composite=C"), "composite=")])
def test_data_keys_are_checked(kw, match):
    with pytest.raises(ConfigError, match=match):
        section(DataConfig, **{**dataclasses.asdict(DataConfig()), **kw})


def test_composite_parts_parse():
    c = section(DataConfig, **{**dataclasses.asdict(DataConfig()), "dataset": "composite",
                               "protocol": "megc2019-3class",
                               "parts": "synthetic=casme2, synthetic_samm=samm,smic=SMIC"})
    assert c.part_list == [("synthetic", "casme2"), ("synthetic_samm", "samm"), ("smic", "SMIC")]


@pytest.mark.parametrize("kw, match", [
    (dict(dataset="composite", parts="samm=SAMM,synthetic_samm=S2"), "stand-in counts"),
    (dict(dataset="composite", parts="samm=SAMM,smic=SMIC", sheet="x.xlsx"), "official sheet"),
    (dict(dataset="synthetic_smic", band="VIS"), "HS band only")])
def test_composite_keys_are_checked_before_a_run(kw, match):
    with pytest.raises(ConfigError, match=match):
        section(DataConfig, **{**dataclasses.asdict(DataConfig()), **kw})
