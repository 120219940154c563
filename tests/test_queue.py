"""A grid through DVC's experiment queue (README: "A grid through the DVC queue").

`dvc exp run --queue` + `dvc queue start` runs each experiment in a temporary copy under
.dvc/tmp/exps/ that holds only git-tracked files and the DVC outs restored from the cache. The
generated synthetic set (data/synthetic) is neither: it is a `cache: false`, `persist: true` out
of the data stage, so that stage regenerates it (byte for byte) in the copy and the apex stage
after it is skipped. This test builds a throwaway git + DVC repository from the project's tracked
files with test_pipeline's tiny settings, runs `dvc repro` once, then queues a two-point
learning-rate grid and checks that both experiments succeed and that `dvc exp show` lists them
with their parameters and metrics. It takes minutes (three pipeline runs), so `make test` leaves
it out (marker ``queue``) and `make test-queue` runs it; what breaks a queued copy (a stage input
that is neither tracked by git nor an output of a stage) is checked in every run by
:func:`test_every_stage_input_exists_in_a_queued_copy`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = "sub02,sub09,sub17,sub19"      # test_pipeline's four subjects
GRID = {"lr-003": "train.lr=0.003", "lr-005": "train.lr=0.005"}


def tiny_params(params: dict) -> dict:
    """params.yaml shrunk to a run of a few minutes: test_pipeline's sizes, one deep row."""
    params["data"]["synthetic_size"] = 48
    params["apex"].update(image_size=32, workers=1, methods="middle,frame_diff", clip_frames=8)
    params["train"].update(image_size=32, epochs=1, batch_size=8, workers=1, threads=1)
    params["experiments"] = {"apex_annotated": params["experiments"]["apex_annotated"]}
    params["baselines"].update(names="probe_apex", c_grid="0.1,1", inner_folds=2, lbp_grid=3)
    params["evaluate"].update(bootstrap=50, reference="apex_annotated")
    params["table4"]["gradcam_per_class"] = 1
    return params


def make_repo(repo: Path) -> None:
    """The project's tracked files in a fresh git repository, with the tiny parameters."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():      # a file deleted but not yet committed is skipped
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    params = tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the data stage generates four subjects only (a notebook parameter params.yaml lacks)
    dvc_yaml = (repo / "dvc.yaml").read_text()
    anchor = "-r out_dir data -r reports_dir reports"
    assert dvc_yaml.count(anchor) == 1, "the data stage's command changed: update this test"
    (repo / "dvc.yaml").write_text(
        dvc_yaml.replace(anchor, f"-r synthetic_subjects {SUBJECTS} {anchor}"))


def sh(repo: Path, *cmd: str, env: dict) -> str:
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def find_experiments(show: list) -> dict[str, dict]:
    """name -> data of every experiment in `dvc exp show --json`."""
    found = {}
    for entry in show:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name") and rev.get("data"):
                    found[rev["name"]] = rev["data"]
    return found


@pytest.mark.slow
@pytest.mark.queue
def test_a_two_point_grid_runs_through_the_dvc_queue(tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mer_core: the copy's own
    # the queue's workers are started as `dvc` from PATH, and the stages call papermill and
    # jupyter: this environment's bin folder comes first (as the Makefile does)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONHASHSEED"] = "0"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    sh(repo, "git", "init", "-q", "-b", "main", env=env)
    sh(repo, "git", "add", "-A", env=env)
    sh(repo, "git", "commit", "-qm", "tiny project", env=env)
    t0 = time.perf_counter()
    sh(repo, "dvc", "repro", env=env)
    sh(repo, "git", "add", "-A", env=env)
    sh(repo, "git", "commit", "-qm", "dvc repro", env=env)
    assert (repo / "data" / "synthetic").is_dir()
    t_repro = time.perf_counter() - t0

    for name, setting in GRID.items():
        sh(repo, "dvc", "exp", "run", "--queue", "-n", name, "-S", setting, env=env)
    try:
        sh(repo, "dvc", "queue", "start", "-j", "1", env=env)   # returns at once
        deadline = time.monotonic() + 1800
        while True:
            status = sh(repo, "dvc", "queue", "status", env=env)
            rows = {line.split()[1]: line.split()[-1] for line in status.splitlines()
                    if len(line.split()) >= 3 and line.split()[1] in GRID}
            if rows and all(s in ("Success", "Failed") for s in rows.values()):
                break
            assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
            time.sleep(5)
    finally:
        subprocess.run(["dvc", "queue", "stop"], cwd=repo, env=env, capture_output=True)
    t_grid = time.perf_counter() - t0 - t_repro
    logs = {name: subprocess.run(["dvc", "queue", "logs", name], cwd=repo, env=env,
                                 capture_output=True, text=True).stdout for name in GRID}
    assert rows == {name: "Success" for name in GRID}, \
        {name: log[-3000:] for name, log in logs.items()}
    for name, log in logs.items():
        # the copy lacked data/synthetic: the data stage made it again, byte for byte, so the
        # apex stage (which reads it) did not rerun; the grid's parameter reran training
        assert "Running stage 'data'" in log, log[-2000:]
        assert "Stage 'apex' didn't change, skipping" in log, log[-2000:]
        assert "Running stage 'train@apex_annotated'" in log, log[-2000:]
        assert "Running stage 'table4'" in log, log[-2000:]

    show = json.loads(sh(repo, "dvc", "exp", "show", "--json", env=env))
    found = find_experiments(show)
    assert set(GRID) <= set(found), f"dvc exp show lists {sorted(found)}"
    uf1 = {}
    for name, setting in GRID.items():
        data = found[name]
        lr = data["params"]["params.yaml"]["data"]["train"]["lr"]
        assert lr == float(setting.split("=")[1])
        metrics = data["metrics"]["reports/metrics.json"]["data"]
        assert {"apex_annotated", "probe_apex"} <= set(metrics)
        uf1[name] = metrics["apex_annotated"]["uf1"]
        assert 0 <= uf1[name] <= 1
    # the workspace is the baseline, as it was: the experiments live in their own refs
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr"] == 0.004
    print(f"dvc repro {t_repro:.0f} s; two-point queue grid {t_grid:.0f} s; UF1 {uf1}")


def test_every_stage_input_exists_in_a_queued_copy():
    """A queued experiment's copy holds git-tracked files and stage outputs only: every
    dependency of every stage must be one of them (data/synthetic was neither, and every
    queued run failed at the apex stage)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.splitlines()
    with Repo(str(ROOT)) as repo:
        stages = list(repo.index.stages)
        outs = {Path(o.fs_path).resolve() for st in stages for o in st.outs}
        missing = []
        for st in stages:
            for dep in st.deps:
                if isinstance(dep, ParamsDependency):
                    continue
                path = Path(dep.fs_path).resolve()
                rel = os.path.relpath(path, ROOT)
                in_git = rel in tracked or any(t.startswith(rel.rstrip("/") + "/") for t in tracked)
                # an output, inside one, or a folder of outputs (results/ of the train stages)
                made = any(path == o or o in path.parents or path in o.parents for o in outs)
                if not (in_git or made):
                    missing.append(f"{st.addressing}: {dep.def_path}")
    assert not missing, f"stage inputs a queued copy would lack: {missing}"
