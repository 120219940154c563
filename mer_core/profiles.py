"""Run profiles: named sets of ``params.yaml`` overrides, run as one DVC experiment.

A profile is ``profiles/<name>.yaml``, a partial ``params.yaml`` (same nesting; only the keys it
changes or adds). ``python -m mer_core.profiles <name>`` checks the merged parameters and runs

    dvc exp run -S 'train.n_seeds=3' -S '+experiments.random={...}' ...

so DVC reruns exactly the stages the overrides touch, keeps finished folds (``results/`` is
persistent) and records the experiment for ``dvc exp show``. When the run succeeds, its tables
and metrics are copied to ``reports/profiles/<name>/`` (:data:`SAVED`) with ``run.json``: the
command, the wall time, the date and the machine, so a profile's table can be committed beside
the default run's. Like any ``dvc exp run`` it leaves the
merged values in the workspace's ``params.yaml``; ``git checkout params.yaml`` returns to the
default (then ``dvc repro`` again reruns what changed).
"""
from __future__ import annotations

import argparse
import copy
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from mer_core import config

PROFILES_DIR = Path("profiles")
#: What a finished profile run leaves in reports/profiles/<name>/.
SAVED = ("table4.md", "table4.csv", "table4.tex", "results.md", "metrics.json")


def load_profile(name: str, directory: str | Path = PROFILES_DIR, _seen: tuple = ()) -> dict:
    """The overrides of profile ``name`` (``<directory>/<name>.yaml``).

    A top-level ``extends: <other>`` starts from profile ``<other>`` and applies this file's
    keys on top (recursively merged), so a profile repeats nothing of the one it builds on.

    Raises:
        FileNotFoundError: no such profile (the message lists the profiles there are).
        ValueError: the file is not a mapping, or ``extends`` is not a name or forms a cycle.
    """
    path = Path(directory) / f"{name}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no such profile; profiles: {', '.join(have) or 'none'}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of params.yaml sections, got "
                         f"{type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data

    if not isinstance(parent, str) or not parent:
        raise ValueError(f"{path}: key 'extends' must be a profile name, got {parent!r}")
    if parent in _seen + (name,):
        raise ValueError(f"{path}: 'extends' cycle: {' -> '.join(_seen + (name, parent))}")
    base = load_profile(parent, directory, _seen + (name,))
    out = merge(base, data)
    keep = sorted(set(base.get("replace") or []) | set(data.get("replace") or []))
    if keep:  # a parent's 'replace' list carries over (merge would overwrite the list)
        out["replace"] = keep
    return out


def merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied recursively (a new copy)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _value(v) -> str:
    """A value in Hydra's override grammar (strings quoted: commas would start a sweep)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str):
        if "'" in v:
            raise ValueError(f"profile value {v!r}: single quotes are not supported")
        return f"'{v}'"
    raise ValueError(f"profile value {v!r}: expected a number, string, boolean or mapping")


def set_params(base: dict, overrides: dict, prefix: str = "") -> list[str]:
    """``dvc exp run -S`` arguments for ``overrides``: ``+`` marks keys ``base`` lacks.

    Args:
        base: the current ``params.yaml`` (nested).
        overrides: the profile (nested).
        prefix: dotted path of ``base`` within the whole file (recursion).

    Returns:
        One ``key=value`` string per leaf, or per new mapping (added whole).
    """
    out = []
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in base:
            out.append(f"+{path}={_value(value)}")
        elif isinstance(value, dict) and isinstance(base[key], dict):
            out.extend(set_params(base[key], value, prefix=f"{path}."))
        else:
            out.append(f"{path}={_value(value)}")
    return out


def check(merged: dict, where: str) -> config.Params:
    """Validate the merged parameters like ``params.yaml`` itself, and the weights file."""
    from mer_core.models import weights_path

    params = config.from_dict(merged, where)
    for name, exp in params.experiments.items():
        weights = weights_path(params.train.pretrained, exp.backbone)
        if weights and weights.lower() != "imagenet" and not Path(weights).is_file():
            raise FileNotFoundError(
                f"{where}: experiment {name}: weights file {weights} (train.pretrained = "
                f"{params.train.pretrained!r}) does not exist. Save a local ImageNet state_dict "
                f"of {exp.backbone} there (timm.create_model('{exp.backbone}', pretrained=True) "
                "on a machine with internet, then torch.save(model.state_dict(), path)).")
    return params


def replaced(base: dict, overrides: dict) -> tuple[dict, list[str]]:
    """Apply a profile's top-level ``replace: [section, ...]``: those sections of ``base`` take
    exactly the profile's entries (``replace: [experiments]`` runs only the profile's rows).

    Returns:
        (the merged parameters, ``~section.key`` deletions for ``dvc exp run -S``).

    Raises:
        ValueError: ``replace`` is not a list of mapping sections the profile gives.
    """
    overrides = dict(overrides)
    sections = overrides.pop("replace", None) or []
    merged, removed = merge(base, overrides), []
    if not isinstance(sections, list):
        raise ValueError(f"profile key 'replace' must be a list of sections, got {sections!r}")
    for sec in sections:
        if not isinstance(overrides.get(sec), dict) or not isinstance(base.get(sec), dict):
            raise ValueError(f"profile key 'replace' names {sec!r}, which is not a mapping "
                             "section of both params.yaml and the profile")
        merged[sec] = copy.deepcopy(overrides[sec])
        removed += [f"~{sec}.{k}" for k in base[sec] if k not in overrides[sec]]
    return merged, removed


def command(name: str, params_file: str | Path = "params.yaml",
            directory: str | Path = PROFILES_DIR) -> list[str]:
    """The checked ``dvc exp run`` command line of profile ``name`` (a list of arguments)."""
    base = yaml.safe_load(Path(params_file).read_text())
    overrides = load_profile(name, directory)
    merged, removed = replaced(base, overrides)
    check(merged, where=f"profile {name} ({Path(directory) / name}.yaml)")
    cmd = ["dvc", "exp", "run"]
    for arg in removed + set_params(base, {k: v for k, v in overrides.items()
                                           if k != "replace"}):
        cmd += ["-S", arg]
    return cmd


def save_reports(name: str, cmd: list[str], wall_s: float, reports_dir: str | Path = "reports"
                 ) -> Path:
    """Copy a finished profile run's tables to ``<reports_dir>/profiles/<name>/`` (atomically),
    with ``run.json`` (command, wall time, date, CPU).

    Raises:
        FileNotFoundError: a file of :data:`SAVED` is missing (the run did not finish).
    """
    import datetime
    import platform

    from mer_core import io
    from mer_core.machine import cpu_model

    reports_dir = Path(reports_dir)
    out = reports_dir / "profiles" / name
    for f in SAVED:
        src = reports_dir / f
        if not src.is_file():
            raise FileNotFoundError(f"{src}: not found; the profile run did not finish")
        io.write_text(out / f, src.read_text().replace("](reports/", "](../../"))
    io.write_json(out / "run.json", {
        "profile": name, "command": " ".join(shlex.quote(c) for c in cmd),
        "wall_s": round(wall_s, 1), "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(), "python": platform.python_version()})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run a profile (profiles/<name>.yaml) with dvc exp run")
    ap.add_argument("name", help="profile name, e.g. full or paper")
    ap.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    args = ap.parse_args(argv)
    try:
        cmd = command(args.name)
    except (FileNotFoundError, ValueError, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(" ".join(shlex.quote(c) for c in cmd), flush=True)
    if args.dry_run:
        return 0
    import time

    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", *cmd])  # the dvc of this environment
    if rc == 0:
        out = save_reports(args.name, cmd, time.perf_counter() - t0)
        print(f"profile {args.name}: tables saved in {out} "
              f"({(time.perf_counter() - t0) / 60:.1f} min)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
