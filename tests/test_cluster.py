"""cluster.launcher: units (seed x fold) as submitit jobs give the in-process run's predictions,
a killed unit is resubmitted, switching launcher redoes nothing, and the Slurm array asks for
what the cluster section says (the sbatch file submitit would submit; no Slurm here)."""
from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from submitit.slurm.slurm import _make_sbatch_string

from mer_core import cluster, config, io, machine
from mer_core.config import ClusterConfig, ConfigError

from test_train import EXP, LABELS, cfg, fake_data, run, tiny

pytestmark = pytest.mark.usefixtures("one_thread")
TESTS = Path(__file__).resolve().parent


class KillOnce:
    """A model factory whose first call (in any process) kills that process with SIGKILL, as
    an out-of-memory killer or a pre-empted node would: the unit dies midway, writing nothing."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __call__(self, name, num_classes):
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return tiny(name, num_classes)


def always_fails(name, num_classes):
    raise RuntimeError("this unit cannot build its model")


@pytest.fixture
def task_path(monkeypatch):
    """submitit's local jobs are new processes: they import this test module's factories."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))


def local(**kw) -> ClusterConfig:
    c = ClusterConfig(launcher="local", parallel=2, timeout_min=10, **kw)
    c.check("test")
    return c


@pytest.mark.slow
def test_local_units_match_in_process_and_a_killed_unit_is_resubmitted(tmp_path, task_path):
    """Byte-identical to the in-process run with one unit SIGKILLed midway and resubmitted;
    switching back to in-process retrains nothing."""
    never = tmp_path / "in-process never kills"
    never.write_text("")
    ref_dir = tmp_path / "inprocess" / "apex_annotated"
    ref = run(ref_dir, model_factory=KillOnce(never))
    marker = tmp_path / "killed"
    out = tmp_path / "local" / "apex_annotated"
    preds = run(out, launcher=local(max_tries=2), model_factory=KillOnce(marker))
    assert marker.is_file(), "one unit was killed midway"
    pd.testing.assert_frame_equal(preds, ref)
    for name in ("predictions.csv", "epoch_log.csv", "epoch_predictions.csv"):
        assert (out / name).read_bytes() == (ref_dir / name).read_bytes()
    meta = io.read_json(out / "run.json")
    assert meta["launcher"]["launcher"] == "local" and meta["launcher"]["jobs"] == 5
    assert meta["launcher"]["parallel"] == 2 and meta["launcher"]["resubmitted"] == 1
    assert meta["deterministic_algorithms"] is True
    assert meta["fingerprint"] == io.read_json(ref_dir / "run.json")["fingerprint"]
    assert list((out / "logs").glob("*/*_log.out")), "logs go under results/<exp>/logs/<launch>/"
    assert not list((out / "logs").rglob("job.pkl")), "the job's images are not kept"
    # the launcher is not in the fingerprint: in-process now reuses every unit
    stamps = {p: p.stat().st_mtime_ns for p in (out / "folds").glob("*.csv")}
    pd.testing.assert_frame_equal(run(out, model_factory=KillOnce(marker)), ref)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert io.read_json(out / "run.json")["launcher"]["launcher"] == "local"  # record kept


@pytest.mark.slow
def test_a_unit_failing_every_try_names_itself_and_its_log(tmp_path, task_path):
    out = tmp_path / "apex_annotated"
    with pytest.raises(cluster.ClusterError, match=r"did not finish in 2 tries") as err:
        run(out, cfg(max_folds=1), launcher=local(max_tries=2), model_factory=always_fails)
    text = str(err.value)
    assert "(0, 'sub00')" in text and "cannot build its model" in text
    assert str(out / "logs") in text and "_log.err" in text
    assert not (out / "folds" / "sub00__seed0.csv").exists()


def test_the_slurm_array_asks_for_the_cluster_section(tmp_path):
    c = ClusterConfig(launcher="slurm", parallel=8, gpus_per_task=1, cpus_per_task=6,
                      mem_gb=24, timeout_min=90, partition="gpu",
                      sbatch="account=mer qos=normal --constraint=a100",
                      setup="module load cuda/12.4")
    c.check("test")
    params = cluster.slurm_parameters(c, threads=1, name="apex_annotated")
    text = _make_sbatch_string(command="python -m submitit.core._submit x", folder=tmp_path / "%j",
                               map_count=26, **params)
    for flag in ("--array=0-25%8", "--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=6",
                 "--mem=24576MB", "--time=90", "--account=mer", "--qos=normal",
                 "--constraint=a100", "--job-name=apex_annotated"):
        assert f"#SBATCH {flag}" in text, flag
    assert "module load cuda/12.4" in text
    assert str(tmp_path) in text  # logs: results/<exp>/logs/
    bare = cluster.slurm_parameters(ClusterConfig(launcher="slurm"), threads=2, name="x")
    assert bare["cpus_per_task"] == 2 and "gpus_per_node" not in bare
    assert "partition" not in bare and "array_parallelism" not in bare


def test_slurm_without_a_slurm_client_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(cluster.ClusterError, match="srun.*Slurm login node"):
        run(tmp_path / "x", launcher=ClusterConfig(launcher="slurm"))


def test_local_slots(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5")
    assert cluster.local_slots(ClusterConfig(launcher="local", gpus_per_task=1), 1) == \
        [(2,), (3,), (5,)]
    assert cluster.local_slots(ClusterConfig(launcher="local", gpus_per_task=1, parallel=2), 1) \
        == [(2,), (3,)]
    assert cluster.local_slots(ClusterConfig(launcher="local", gpus_per_task=2), 1) == [(2, 3)]
    with pytest.raises(cluster.ClusterError, match="gpus_per_task is 4 but this machine shows 3"):
        cluster.local_slots(ClusterConfig(launcher="local", gpus_per_task=4), 1)
    cores = machine.available_cores()
    assert cluster.local_slots(ClusterConfig(launcher="local"), 1) == [()] * cores
    assert cluster.local_slots(ClusterConfig(launcher="local", parallel=3), 1) == [()] * 3


def test_local_gpus_need_a_gpu_here(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(cluster.ClusterError, match="torch sees no CUDA GPU here"):
        run(tmp_path / "x", launcher=ClusterConfig(launcher="local", gpus_per_task=1))


@pytest.mark.parametrize("kw, message", [
    ({"launcher": "kubernetes"}, "key 'launcher' is 'kubernetes'; expected one of inprocess"),
    ({"sbatch": "account"}, "key 'sbatch' has 'account'; expected space-separated"),
    ({"parallel": -1}, "key 'parallel' must be an integer >= 0"),
    ({"max_tries": 0}, "key 'max_tries' must be > 0"),
    ({"timeout_min": 0}, "key 'timeout_min' must be > 0"),
])
def test_bad_cluster_sections(kw, message):
    with pytest.raises(ConfigError, match=message):
        config.section(ClusterConfig, **{**dataclasses.asdict(ClusterConfig()), **kw})


def test_the_cluster_section_is_read_alone(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("cluster:\n  launcher: local\n  parallel: 3\n  gpus_per_task: 0\n"
                    "  cpus_per_task: 0\n  mem_gb: 8\n  timeout_min: 30\n  partition: ''\n"
                    "  sbatch: 'account=x'\n  setup: ''\n  max_tries: 2\n  units_per_task: 1\n")
    c = config.load_section(path, "cluster")
    assert (c.launcher, c.parallel, c.mem_gb, c.sbatch_flags) == ("local", 3, 8.0, {"account": "x"})
    with pytest.raises(ConfigError, match="missing section 'train'"):
        config.load_section(path, "train")
    with pytest.raises(ConfigError, match="params file not found"):
        config.load_section(tmp_path / "none.yaml", "cluster")


def test_training_mode_sets_and_restores():
    cpu = torch.device("cpu")
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    restore = machine.training_mode(cpu, 1)
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert machine.determinism(cpu) == {"deterministic_algorithms": True}
    restore()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


@pytest.mark.slow
def test_stale_units_are_redone_and_a_job_can_train_several(tmp_path, task_path):
    """dvc repro passes redo_stale: folds of other settings are resubmitted, not taken as done;
    with units_per_task 2 one job trains both folds of a two-subject run."""
    index, images = fake_data(n_subjects=2)
    out = tmp_path / "apex_annotated"
    two = local(units_per_task=2)
    run(out, cfg(epochs=1), index, images, launcher=two)
    old = io.read_json(out / "folds" / "sub00__seed0.json")["fingerprint"]
    assert io.read_json(out / "run.json")["launcher"]["jobs"] == 1
    preds = run(out, cfg(), index, images, launcher=two, redo_stale=True)
    new = io.read_json(out / "folds" / "sub00__seed0.json")
    assert new["fingerprint"] != old and new["params"]["train"]["epochs"] == 2
    assert io.read_json(out / "run.json")["launcher"]["jobs"] == 1
    pd.testing.assert_frame_equal(preds, run(tmp_path / "ref" / "apex_annotated", cfg(), index,
                                             images))


@pytest.mark.slow
def test_fresh_retrains_through_the_launcher(tmp_path, task_path):
    out = tmp_path / "apex_annotated"
    run(out, cfg(max_folds=1), launcher=local())
    before = io.read_json(out / "folds" / "sub00__seed0.json")["wall_s"]
    (out / "folds" / "sub00__seed0.json").write_text(
        (out / "folds" / "sub00__seed0.json").read_text().replace(str(before), "-1.0"))
    run(out, cfg(max_folds=1), launcher=local(), fresh=True)
    assert io.read_json(out / "folds" / "sub00__seed0.json")["wall_s"] > 0  # trained again


def test_a_model_factory_in_main_is_refused(tmp_path):
    factory = type("Factory", (), {"__module__": "__main__", "__call__": tiny})()
    with pytest.raises(cluster.ClusterError, match="defined in __main__"):
        run(tmp_path / "x", cfg(max_folds=1), launcher=local(), model_factory=factory)


def test_the_slurm_device_comes_from_records_only_when_they_fit(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(cluster, "probe", lambda *a, **k: asked.append(1) or
                        {"device": "cuda", "device_name": "GPU-X", "precision": "amp-bf16"})
    folds = tmp_path / "folds"
    folds.mkdir()
    plan = [(0, "s1"), (0, "s2")]
    gpu = ClusterConfig(launcher="slurm", gpus_per_task=1)
    for _, s in plan:
        io.write_json(folds / f"{s}__seed0.json", {"params": {
            "device": "cuda", "device_name": "GPU-X", "precision": "amp-bf16",
            "train": {"precision": "auto"}}})
    got = cluster.unit_device("e", gpu, cfg(precision="auto"), "auto", tmp_path, plan)
    assert (str(got[0]), got[1], got[2]) == ("cuda", "amp-bf16", "GPU-X") and not asked
    cluster.unit_device("e", gpu, cfg(precision="fp32"), "auto", tmp_path, plan)  # changed
    cluster.unit_device("e", ClusterConfig(launcher="slurm"), cfg(precision="auto"), "auto",
                        tmp_path, plan)                                              # CPU now
    cluster.unit_device("e", gpu, cfg(precision="auto"), "auto", tmp_path, plan, fresh=True)
    assert len(asked) == 3


class _FakeJob:
    """A Slurm array element whose states are scripted: done() is True from the first poll,
    but it is SUSPENDED at first (it will resume), then it ends with a result."""

    def __init__(self, folder, i, units, done_units):
        self.job_id, self.units, self.done_units = f"7_{i}", units, done_units
        self.paths = type("P", (), {"result_pickle": folder / f"{i}_result.pkl",
                                    "stderr": folder / f"{i}.err"})()
        self.polls = 0

    def done(self, force_check=False):
        self.polls += 1
        if self.polls >= 2:
            self.paths.result_pickle.write_text("ok")
            self.done_units.update(self.units)
        return True

    @property
    def state(self):
        return "COMPLETED" if self.paths.result_pickle.exists() else "SUSPENDED"

    def exception(self):
        return None


class _FakeSlurm:
    def __init__(self, folder, done_units):
        self.folder, self.done_units, self.params, self.arrays = folder, done_units, {}, []

    def update_parameters(self, **kw):
        self.params.update(kw)

    def map_array(self, fn, files, groups):
        self.arrays.append(list(groups))
        return [_FakeJob(self.folder, i, g, self.done_units) for i, g in enumerate(groups)]


def test_slurm_bookkeeping_waits_out_a_suspended_job_and_sizes_the_array(tmp_path, monkeypatch):
    done_units: set = set()
    fake = _FakeSlurm(tmp_path, done_units)
    monkeypatch.setattr(cluster, "executor", lambda *a, **k: fake)
    units = [(0, f"s{i}") for i in range(5)]
    res = cluster.run_units(None, ("job.pkl",), units,
                            ClusterConfig(launcher="slurm", units_per_task=2), tmp_path,
                            lambda u: u in done_units, 1, "e", poll_s=0)
    # one array of 3 tasks (2 + 2 + 1 units), all at once, and nothing resubmitted while
    # the tasks were suspended
    assert fake.arrays == [[units[0:2], units[2:4], units[4:5]]]
    assert fake.params["array_parallelism"] == 3
    assert res["jobs"] == 3 and set(res["tries"].values()) == {1}
