"""Units of the train stage as submitit jobs: a Slurm job array, or one process per unit here.

A unit is one seed x one LOSO fold; a job trains ``cluster.units_per_task`` of them (default 1)
one after the other. A unit writes its fold files itself (atomically, predictions last, as
every fold does), so "finished" always means "its files exist with the run's
fingerprint", whoever ran it. :func:`run_units` submits the units, shows a progress bar of
finished ones while it waits, resubmits a unit whose job failed, was killed, timed out or was
preempted (up to ``cluster.max_tries`` tries in all) and raises :class:`ClusterError` naming the
units that never finished and their log files. Logs (submitit's ``<job>_log.out/.err`` and its
small pickles) go under ``results/<experiment>/logs/``.

Launchers (``cluster.launcher``):
- ``local``: submitit's LocalExecutor, one process per unit, at most ``cluster.parallel`` at once
  (0: cores // ``train.threads``, or one per GPU group when ``gpus_per_task`` > 0: each unit is
  given its own GPUs through ``CUDA_VISIBLE_DEVICES``), with the real time limit
  ``cluster.timeout_min`` (submitit's own default kills a local job after 2 minutes).
- ``slurm``: submitit's SlurmExecutor, all pending units as one job array
  (``--array=0-N%parallel``), partition, GPUs, CPUs, memory, time limit, extra sbatch flags and a
  setup line from the ``cluster`` section. The head (where ``dvc repro`` runs) needs no GPU: a
  one-task probe job first reports the device, its model and the precision the nodes resolve
  (they enter every fold's fingerprint), and every unit checks that it got the same.

Nothing here decides what a fold computes (the LOSO driver :mod:`mer_core.loso` and
:mod:`mer_core.fold` own that), so this module is not in the fold code version
(:data:`mer_core.fingerprints.LAUNCH_ONLY`): editing it redoes no finished fold.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import platform
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from mer_core import io
from mer_core.config import ClusterConfig, TrainConfig
from mer_core.fingerprints import FingerprintError, check_fold, fold_stem
from mer_core.fold import FoldJob
from mer_core.machine import (available_cores, device_name, select_device, select_precision,
                              training_mode)


class ClusterError(RuntimeError):
    """Units that did not finish within their tries, or a launcher that cannot start here."""


def slurm_parameters(ccfg: ClusterConfig, threads: int, name: str) -> dict:
    """The SlurmExecutor parameters of one unit's task (submitit's names).

    Args:
        ccfg: the cluster section.
        threads: ``train.threads`` (the CPUs of a task when ``cpus_per_task`` is 0).
        name: the Slurm job name.

    Returns:
        Keyword arguments of ``submitit.SlurmExecutor.update_parameters``.
    """
    params = {"job_name": name, "time": int(ccfg.timeout_min),
              "cpus_per_task": ccfg.cpus_per_task or threads,
              "mem": f"{int(round(ccfg.mem_gb * 1024))}MB"}
    if ccfg.gpus_per_task:
        params["gpus_per_node"] = ccfg.gpus_per_task
    if ccfg.partition:
        params["partition"] = ccfg.partition
    if ccfg.parallel:
        params["array_parallelism"] = ccfg.parallel
    if ccfg.sbatch.strip():
        params["additional_parameters"] = ccfg.sbatch_flags
    if ccfg.setup.strip():
        params["setup"] = [ccfg.setup]
    return params


def visible_gpus() -> list[int]:
    """GPU ids this process may hand out: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [int(g) for g in env.split(",") if g.strip().lstrip("-").isdigit() and int(g) >= 0]
    import torch
    return list(range(torch.cuda.device_count()))


def local_slots(ccfg: ClusterConfig, threads: int) -> list[tuple[int, ...]]:
    """One entry per unit that may run at once on this machine: its GPU ids (``()`` on a CPU).

    Raises:
        ClusterError: GPUs asked for but fewer visible than one unit needs.
    """
    if ccfg.gpus_per_task:
        ids = visible_gpus()
        groups = [tuple(ids[i:i + ccfg.gpus_per_task])
                  for i in range(0, len(ids) - ccfg.gpus_per_task + 1, ccfg.gpus_per_task)]
        if not groups:
            raise ClusterError(f"cluster.gpus_per_task is {ccfg.gpus_per_task} but this machine "
                               f"shows {len(ids)} GPU(s) (CUDA_VISIBLE_DEVICES="
                               f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); expected "
                               f"gpus_per_task 0 (CPU) or <= {len(ids)}")
        return groups[:ccfg.parallel] if ccfg.parallel else groups
    n = ccfg.parallel or max(1, available_cores() // max(1, threads))
    return [()] * n


def executor(ccfg: ClusterConfig, folder: Path, threads: int, name: str):
    """A submitit executor for the launcher, its logs in ``folder``.

    Raises:
        ClusterError: ``slurm`` where no Slurm client (``srun``) is on the PATH.
    """
    import submitit

    if ccfg.launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=ccfg.timeout_min, gpus_per_node=ccfg.gpus_per_task)
        return ex
    if ccfg.launcher == "slurm":
        try:
            ex = submitit.SlurmExecutor(folder=folder)
        except RuntimeError as e:
            raise ClusterError(f"cluster.launcher is 'slurm' but {e} (run `dvc repro` on a "
                               f"Slurm login node, or set cluster.launcher to local or "
                               f"inprocess)") from None
        ex.update_parameters(**slurm_parameters(ccfg, threads, name))
        return ex
    raise ClusterError(f"cluster.launcher {ccfg.launcher!r} submits nothing; expected local or "
                       f"slurm")


def _why(job) -> str:
    """One line on why a job ended without its unit's files, and where its log is."""
    if not job.paths.result_pickle.exists():  # killed: no outcome (exception() would wait 15 s)
        return f"{job.state}: ended without a result (killed?) (log {job.paths.stderr})"
    try:
        err = job.exception()
    except Exception as e:  # the job vanished: no state, no result
        err = e
    if err is None:
        text = "no error raised"
    else:  # submitit: "... with trace:\n----\n<traceback>\n----\n<log paths>": its last line
        parts = re.split(r"\n-{6,}\n", str(err))
        lines = [ln for ln in (parts[1] if len(parts) > 2 else str(err)).splitlines() if ln.strip()]
        text = (lines or [type(err).__name__])[-1].strip()[:300]
    return f"{job.state}: {text} (log {job.paths.stderr})"


#: Slurm states in which submitit's ``Job.done()`` is True but the job will go on (its units
#: must not be resubmitted beside it).
_NOT_OVER = ("SUSPENDED", "RESIZING", "REQUEUED")


def _over(job) -> bool:
    """Whether a job has ended (a suspended Slurm job has not)."""
    if not job.done():
        return False
    if job.paths.result_pickle.exists():
        return True
    state = str(job.state or "").split()
    return not state or state[0] not in _NOT_OVER


def _settled(unit, finished: Callable[[tuple], bool], wait_s: float) -> bool:
    """``finished(unit)``, asked again for up to ``wait_s`` seconds: files a node has just
    written can take a moment to show on a shared (NFS) file system."""
    deadline = time.monotonic() + wait_s
    while not finished(unit):
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)
    return True


def _cancel(jobs, slurm: bool) -> None:
    """Cancel jobs: one ``scancel`` for all Slurm arrays, SIGINT to each local job."""
    if slurm:
        ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
        if ids:
            import subprocess
            subprocess.run(["scancel", *ids], check=False, capture_output=True)
        return
    for job in jobs:
        job.cancel(check=False)


def run_units(fn: Callable, args: Sequence, units: Sequence[tuple], ccfg: ClusterConfig,
              folder: str | Path, finished: Callable[[tuple], bool], threads: int,
              name: str, bar: tqdm | None = None, poll_s: float | None = None) -> dict:
    """Run every unit through ``fn(*args, [unit, ...])`` as submitit jobs until each is finished.

    A job gets up to ``ccfg.units_per_task`` units (trained one after the other); when it
    ends, each of its units is checked on its own: an unfinished one is resubmitted (in a new
    group) until it has had ``ccfg.max_tries`` tries.

    Args:
        fn: a picklable module-level function (it runs in another process or on another node)
            taking ``*args`` and a list of units.
        args: its leading arguments, the same for every job.
        units: the units, e.g. ``(seed, subject)`` tuples.
        ccfg: the cluster section (launcher ``local`` or ``slurm``).
        folder: where submitit writes its logs and pickles.
        finished: whether a unit's results exist (checked when its job ends; a job that ended
            without them failed, whatever it returned).
        threads: ``train.threads``.
        name: the job name (Slurm) and the progress bar's label.
        bar: a progress bar to update per finished unit (its total is the caller's).
        poll_s: seconds between checks (default 1 local, 15 on Slurm).

    Returns:
        ``{"tries": {unit: tries}, "jobs": number of jobs submitted, "parallel": jobs at once
        (local) or the array's limit (Slurm, 0 = Slurm's default)}``.

    Raises:
        ClusterError: units still unfinished after ``ccfg.max_tries`` tries (each named with
            its last job's state, error and log file).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ex = executor(ccfg, folder, threads, name)
    slurm = ccfg.launcher == "slurm"
    poll_s = poll_s if poll_s is not None else (15.0 if slurm else 1.0)
    free = [] if slurm else local_slots(ccfg, threads)
    parallel = ccfg.parallel if slurm else len(free)
    queue = [u for u in units if not finished(u)]
    if bar is not None and len(queue) < len(units):
        bar.update(len(units) - len(queue))
    tries = {u: 0 for u in units}
    running: dict = {}
    failed: dict = {}
    n_jobs = 0
    k = ccfg.units_per_task
    try:
        while queue or running:
            if slurm and queue:
                groups = [queue[i:i + k] for i in range(0, len(queue), k)]
                queue = []
                # parallel 0: the whole array at once (submitit's own default is 256)
                ex.update_parameters(array_parallelism=ccfg.parallel or len(groups))
                jobs = ex.map_array(fn, *([a] * len(groups) for a in args), groups)
                for job, group in zip(jobs, groups):
                    running[job] = (group, None)
                n_jobs += len(jobs)
            while not slurm and queue and free:
                slot, group, queue = free.pop(0), queue[:k], queue[k:]
                if ccfg.gpus_per_task:
                    ex.update_parameters(visible_gpus=slot, gpus_per_node=len(slot))
                running[ex.submit(fn, *args, group)] = (group, slot)
                n_jobs += 1
            time.sleep(poll_s)
            for job in [j for j in running if _over(j)]:
                group, slot = running.pop(job)
                if slot is not None:
                    free.append(slot)
                why = None
                ok = job.paths.result_pickle.exists() and not _failed(job)
                for unit in group:
                    tries[unit] += 1
                    if _settled(unit, finished, 30.0 if ok and slurm else 0.0):
                        if bar is not None:
                            bar.update(1)
                        continue
                    why = why or _why(job)
                    if tries[unit] < ccfg.max_tries:
                        tqdm.write(f"{name}: unit {unit} did not finish ({why}); resubmitted "
                                   f"(try {tries[unit] + 1} of {ccfg.max_tries})",
                                   file=sys.stderr)
                        queue.append(unit)
                    else:
                        failed[unit] = why
    except BaseException:
        _cancel(list(running), slurm)  # a stopped head leaves no job behind to write late
        raise
    if failed:
        lines = "\n".join(f"  {u}: {w}" for u, w in failed.items())
        raise ClusterError(f"{name}: {len(failed)} unit(s) did not finish in "
                           f"{ccfg.max_tries} tries (cluster.max_tries):\n{lines}\nFinished units "
                           f"are kept; rerun to resubmit the rest.")
    return {"tries": tries, "jobs": n_jobs, "parallel": parallel}


def _failed(job) -> bool:
    """Whether a job's result pickle holds an error (read without waiting)."""
    try:
        return job.exception() is not None
    except Exception:
        return True


def probe(fn: Callable, args: Sequence, ccfg: ClusterConfig, folder: str | Path, threads: int,
          name: str, poll_s: float = 15.0):
    """Run ``fn(*args)`` once as a Slurm job with the units' resources and return its result
    (what the nodes are: device, its model, the precision it resolves).

    Raises:
        ClusterError: the probe job failed (its state, error and log are named).
    """
    ex = executor(ccfg, Path(folder), threads, f"{name}-probe")
    if ccfg.launcher == "slurm":  # a short job: it should not wait in the queue like a unit
        ex.update_parameters(time=min(int(ccfg.timeout_min), 10))
    job = ex.submit(fn, *args)
    try:
        while not _over(job):
            time.sleep(poll_s)
    except BaseException:
        _cancel([job], ccfg.launcher == "slurm")
        raise
    try:
        return job.result()
    except Exception:
        raise ClusterError(f"{name}: the probe job that asks the nodes for their device failed "
                           f"({_why(job)})") from None


# ----------------------------------------------------------------------------- the LOSO driver's units


def unit_device(name: str, ccfg: ClusterConfig, cfg: TrainConfig, device: str, out: Path,
                plan: list, fresh: bool = False) -> tuple[torch.device, str, str | None]:
    """The device, precision and device model a run's units train with (fingerprinted).

    Args:
        name: the experiment (for messages).
        ccfg: the cluster section.
        cfg: the train section (``precision``, ``threads``).
        device: ``auto`` or a torch device string (in-process runs only).
        out: ``results/<experiment>``.
        plan: the run's (seed, subject) units.
        fresh: every unit is redone (no finished fold's record is trusted).

    Returns:
        ``(device, precision, device model or None)``: in-process ``device`` on this machine;
        ``local`` a GPU of this machine if ``cluster.gpus_per_task`` > 0, else its CPU (None:
        this machine's model); ``slurm`` what a probe job on the nodes reports, or, when every
        planned fold is already finished, what their records say (no job is submitted just to
        find that nothing is left to do).

    Raises:
        ClusterError: a GPU asked for where there is none, or the probe job failed.
    """
    if ccfg.launcher == "inprocess":
        dev = select_device(device)
        return dev, select_precision(cfg.precision, dev), None
    if ccfg.launcher == "local":
        dev = torch.device("cuda" if ccfg.gpus_per_task else "cpu")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ClusterError(f"experiment {name}: cluster.gpus_per_task is "
                               f"{ccfg.gpus_per_task} but torch sees no CUDA GPU here; expected "
                               "gpus_per_task 0 on this machine")
        return dev, select_precision(cfg.precision, dev), None
    records = [out / "folds" / f"{fold_stem(s, k)}.json" for k, s in plan]
    if not fresh and records and all(r.is_file() for r in records):
        # every fold exists: no probe just to learn that nothing is left, if the records were
        # made for this device kind and precision setting (stale ones are probed for anew)
        p = io.read_json(records[0]).get("params", {})
        if {"device", "device_name", "precision"} <= set(p) \
                and p["device"] == ("cuda" if ccfg.gpus_per_task else "cpu") \
                and p.get("train", {}).get("precision") == cfg.precision:
            return torch.device(p["device"]), p["precision"], p["device_name"]
    node = probe(probe_node, (cfg.precision, ccfg.gpus_per_task), ccfg, out / "logs",
                 cfg.threads, name)
    return torch.device(node["device"]), node["precision"], node["device_name"]


def probe_node(precision: str, gpus: int) -> dict:
    """On a cluster node: the device a unit gets, its model and the precision it resolves."""
    dev = torch.device("cuda" if gpus else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"a task asked for {gpus} GPU(s) but torch sees no CUDA device on "
                           f"{platform.node()}")
    return {"device": dev.type, "device_name": device_name(dev),
            "precision": select_precision(precision, dev), "node": platform.node()}


def launch(job: FoldJob, todo: list, ccfg: ClusterConfig, bar=None) -> dict:
    """Train the ``todo`` (seed, subject) units of a LOSO run as submitit jobs.

    Every launch has its own log folder, ``results/<exp>/logs/<time>-<id>/`` (so that shards
    or a rerun launched while an old array still runs never share files): the job (images on
    the CPU) is written there once, atomically, as ``job.pkl`` (removed when the launch ends),
    and every unit reads it (:func:`run_unit`); submitit writes its logs and pickles beside it.
    The predictions of every ``todo`` unit are removed first: a finished fold of other
    settings (``fresh``, ``redo_stale``) must not pass for this run's when its new job dies.
    A unit is finished when its predictions exist with the run's fold fingerprint.

    Returns:
        What ``run.json`` records of the launch: launcher, parallel, jobs, resubmitted,
        gpus_per_task, logs.
    """
    factory = job.model_factory
    if getattr(factory, "__module__", None) == "__main__" or \
            getattr(type(factory), "__module__", None) == "__main__":
        raise ClusterError(f"{job.name}: the model factory {factory!r} is defined in __main__ "
                           "(a notebook or script): a job in another process cannot import it; "
                           "define it in a module, or use cluster.launcher inprocess")
    folds = job.out / "folds"
    for seed, subject in todo:
        (folds / f"{fold_stem(subject, seed)}.csv").unlink(missing_ok=True)
    logs = job.out / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    job_file = logs / "job.pkl"
    with io.atomic_path(job_file) as tmp, open(tmp, "wb") as f:
        pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)

    def finished(unit) -> bool:
        stem = fold_stem(unit[1], unit[0])
        try:  # refresh the folder's attribute cache (NFS), as submitit does for its results
            folds.chmod(folds.stat().st_mode)
        except OSError:
            pass
        if not (folds / f"{stem}.csv").is_file():
            return False
        try:  # a fold of other settings (redo_stale) is not this run's
            check_fold(job.out, stem, job.fingerprint, job.params)
        except FingerprintError:
            return False
        return True
    try:
        res = run_units(run_unit, (str(job_file),), todo, ccfg, logs, finished,
                        job.cfg.threads, job.name, bar)
    finally:
        job_file.unlink(missing_ok=True)  # the images: not a result
    return {"launcher": ccfg.launcher, "parallel": res["parallel"], "jobs": res["jobs"],
            "resubmitted": sum(t - 1 for t in res["tries"].values() if t > 1),
            "gpus_per_task": ccfg.gpus_per_task, "logs": str(logs)}


def run_unit(job_file: str, units: list) -> list[str]:
    """The units of one submitit job (another process, maybe another node; one unit unless
    ``cluster.units_per_task`` > 1): train and write the fold of each
    (seed, subject) unit on this task's device, one after the other
    (:func:`mer_core.loso.run_fold`), after checking that it is the device the run's
    fingerprint names. Each fold's files are complete as soon as it ends, so a job killed
    midway keeps the folds it finished.

    Returns:
        The folds' file stems.
    """
    from mer_core.loso import run_fold  # the driver imports this module

    with open(job_file, "rb") as f:
        job: FoldJob = pickle.load(f)
    dev = torch.device(job.device.type)  # cuda: the GPU(s) this task was given
    got, want = device_name(dev), job.params["device_name"]
    if got != want:
        raise RuntimeError(f"units {units} got {got} on {platform.node()}, but the run's "
                           f"fingerprint was made for {want}: keep the units on one kind of "
                           "device (Slurm: cluster.sbatch, e.g. constraint=<feature>)")
    training_mode(dev, job.cfg.threads)
    job = dataclasses.replace(job, device=dev, xs={k: v.to(dev) for k, v in job.xs.items()})
    errors = []
    for seed, subject in units:  # one failing fold does not starve the others of its job
        try:
            run_fold(job, seed, subject, progress=False)
        except Exception as e:
            errors.append(f"{subject} seed {seed}: {type(e).__name__}: {e}")
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(units)} unit(s) failed: " + "; ".join(errors))
    return [fold_stem(subject, seed) for seed, subject in units]


__all__ = ["ClusterError", "run_units", "probe", "executor", "slurm_parameters", "local_slots",
           "visible_gpus", "unit_device", "probe_node", "launch", "run_unit"]
