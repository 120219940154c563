"""Leave-one-subject-out (LOSO) training that resumes, shards and merges.

For every seed and every test subject (subjects sorted) a freshly initialised model, seeded from
(seed, subject) so that a fold's result does not depend on which folds ran before it, is trained on
all other subjects for a fixed number of epochs with a fixed lr (the test subject never selects the
epoch) and then predicts the test subject. With ``train.select`` the lr and/or the stopping epoch
are instead chosen by a cross-validation inside the fold's training subjects
(:mod:`mer_core.nested`; never on the test subject). As soon as a fold ends its files are written
atomically:

    results/<exp>/folds/<subject>__seed<k>.csv                predictions (the completion marker)
    results/<exp>/folds/<subject>__seed<k>.json               fingerprint, params, timings
    results/<exp>/folds/<subject>__seed<k>.epochs.csv         per-epoch train loss + test metrics
    results/<exp>/folds/<subject>__seed<k>.epoch_predictions.csv  per-epoch test predictions
    results/<exp>/folds/<subject>__seed<k>.selection.csv      train.select only: the inner-CV
                                                              grid (lr, epoch, inner_uf1, chosen)
    results/<exp>/cams/<subject>__seed<k>.npz                 Grad-CAM of the test clips
    results/<exp>/shards/<i>of<n>.json                        what a run (or shard) was asked to do

On a CPU the folds train in parallel worker processes (``train.workers``; by default one per
core, each with one thread), which is faster than one process with every thread at small input
sizes. With ``cluster.launcher`` ``local`` or ``slurm`` each unit (one seed x one fold) is
instead a submitit job (:mod:`mer_core.cluster`: one process per unit here, or a Slurm job array;
failed units resubmitted; logs in ``results/<exp>/logs/``); the fold it trains and the files it
writes are the same, and the launcher is not in the fingerprint. CPU training flushes denormal floats to zero (FTZ/DAZ): the focal loss drives many
gradients into the denormal range, where x86 arithmetic is slow (measured: one fold 10.5 img/s
without, 21 with, on one AVX2 core).

A re-run skips finished folds whose fingerprint (params including the threads of a fold, seed,
labels, data, code version, device and its model, precision) matches and refuses mismatching ones unless ``fresh=True``. When every fold of every
seed exists the merged files are written:

    results/<exp>/predictions.csv   sample_id, subject, y_true, y_pred, p_<class>..., seed,
                                    experiment
    results/<exp>/epoch_log.csv     seed, fold, epoch, train_loss, test_accuracy, test_uf1,
                                    test_uar, n_test, n_correct, lr (lr at the epoch's start)
    results/<exp>/epoch_predictions.csv  seed, fold, epoch, sample_id, y_true, y_pred
    results/<exp>/run.json          config, labels, fingerprint, wall time, device, precision,
                                    training images/s
    results/<exp>/selection.csv     train.select only: seed, fold, lr, epoch, inner_uf1,
                                    inner_accuracy, n_val, chosen (the fold's recipe)

The per-epoch test metrics exist only for the evaluation stage's leakage check (how much picking the
epoch on the test subject would inflate the score); they never choose anything here. With
``train.select`` the predictions are the chosen epoch's, and the leakage check's valid row reads
that epoch from ``selection.csv``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
import os
import pickle
import platform
import sys
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from mer_core import cluster, handover, io, vocab
from mer_core.config import (ClusterConfig, ExperimentConfig, TrainConfig, check_strategy,
                             parse_folds)
from mer_core.fingerprints import (FingerprintError, check_fold, diff, fold_params, fold_stem,
                                   sha)
from mer_core.fold import FoldJob, ModelFactory, prepare_images, train_fold
from mer_core.frame_cache import FoldFrames, check_cache
from mer_core.handover import read_table
from mer_core.machine import available_cores, determinism, training_mode
from mer_core.models import create_model, weights_path


class IncompleteError(RuntimeError):
    """Folds missing when merging."""


# ----------------------------------------------------------------------------- LOSO driver


def _check_index(index: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Validate the index columns; return the integer class of each row."""
    missing = [c for c in ("sample_id", "subject", "label") if c not in index.columns]
    if missing:
        raise ValueError(f"index: missing column(s) {', '.join(missing)}")
    if index["sample_id"].duplicated().any():
        dup = index.loc[index["sample_id"].duplicated(), "sample_id"].iloc[0]
        raise ValueError(f"index: duplicate sample_id {dup!r}")
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError(f"labels: expected >= 2 distinct class names, got {labels}")
    lookup = {name: i for i, name in enumerate(labels)}
    y = np.empty(len(index), dtype=np.int64)
    for row, name in enumerate(index["label"].astype(str)):
        if name not in lookup:
            raise ValueError(f"index row {row} ({index['sample_id'].iloc[row]}): label {name!r} "
                             f"is not one of the dataset labels {labels}")
        y[row] = lookup[name]
    return y


def plan_folds(subjects, folds: str = "all", max_folds: int = 0) -> list[str]:
    """Test subjects of this run: sorted, every n-th from i for ``"i/n"``, the first k if k > 0."""
    i, n = parse_folds(folds)
    chosen = sorted(set(map(str, subjects)))[i::n]
    return chosen[:max_folds] if max_folds > 0 else chosen


def _create(name: str, num_classes: int, pretrained: str = "") -> nn.Module:
    return create_model(name, num_classes, pretrained=weights_path(pretrained, name) or None)


def _default_factory(pretrained: str) -> ModelFactory:
    return functools.partial(_create, pretrained=pretrained)  # picklable for fold workers


def run_experiment(name: str, exp: ExperimentConfig, cfg: TrainConfig, index: pd.DataFrame,
                   images: np.ndarray | FoldFrames, labels: list[str], out_dir: str | Path,
                   fresh: bool = False, model_factory: ModelFactory | None = None,
                   progress: bool = True, image_ids=None, device: str = "auto",
                   threads: int | None = None, redo_stale: bool = False,
                   launcher: ClusterConfig | None = None) -> pd.DataFrame:
    """Train and evaluate one experiment leave-one-subject-out, resumably.

    Args:
        name: experiment name (written into every prediction row).
        exp: frames, backbone, loss (checked: unknown values list the valid choices).
        cfg: the train section (seeds, folds shard, max_folds, optimiser, ...).
        index: the index (``sample_id``, ``subject``, ``label``), row order = cache order.
        images: N x S x S x 3 uint8 cache of ``exp.frames`` aligned with ``index``, or a
            :class:`~mer_core.frame_cache.FoldFrames` (:func:`~mer_core.frame_cache.load_frames`) when the frames depend on
            the fold (``spotted:best``: the spotter chosen on the fold's training subjects).
        labels: class names in fixed order (``dataset.json: labels``).
        out_dir: ``results/<name>``.
        fresh: redo this run's folds even if finished ones exist (and drop stale merged files).
        model_factory: ``(backbone, num_classes) -> nn.Module``; default builds
            :func:`mer_core.models.create_model` with ``cfg.pretrained``. With a factory the
            backbone name is not restricted to vocab.BACKBONES (tests use tiny timm models).
        progress: tqdm bars (folds, epochs).
        image_ids: the cache's sample ids, checked against the index when given.
        device: ``auto`` (cuda > mps > cpu) or a torch device string.
        threads: CPU threads this run may use in total; None = ``$OMP_NUM_THREADS`` if set,
            else every core this process may use. It only decides how many folds train at once
            (see :func:`plan_workers`): every fold trains with ``cfg.threads`` threads, so a
            fold's result does not depend on how the work is split. CPU training turns on
            ``torch.set_flush_denormal`` while it runs.
        redo_stale: finished folds made with other settings are redone (and the merged files
            removed) instead of raising; matching folds are still skipped. Meant for
            ``dvc repro`` with a persistent results folder, which reruns the stage only when
            something changed.
        launcher: the ``cluster`` section; None or ``inprocess``: the folds train here (fold
            workers on a CPU); ``local`` / ``slurm``: each unit is a submitit job
            (:func:`mer_core.cluster.run_units`; ``device`` is then decided by
            ``cluster.gpus_per_task``: a GPU if > 0, else the CPU; on Slurm the nodes' device
            model and precision are asked by a probe job). Never part of the fingerprint.

    Returns:
        Predictions (schema of ``predictions.csv``) of the folds this call covers (all folds of all
        seeds when the shard is ``all`` and ``max_folds`` is 0), in seed, index order.

    Raises:
        ConfigError / ValueError: unknown frames, backbone or loss; bad index or labels.
        CacheMismatchError: the cache does not line up with the index.
        FingerprintError: finished folds made with other settings (pass ``fresh=True`` or
            ``redo_stale=True``).
    """
    t_start = time.perf_counter()
    check_strategy(exp.frames, where=f"experiment {name}: key 'frames'")
    if exp.loss not in vocab.LOSSES:
        raise ValueError(f"experiment {name}: unknown loss {exp.loss!r}; "
                         f"valid: {', '.join(vocab.LOSSES)}")
    if model_factory is None:
        if exp.backbone not in vocab.BACKBONES:
            raise ValueError(f"experiment {name}: unknown backbone {exp.backbone!r}; valid: "
                             f"{', '.join(vocab.BACKBONES)}")
        model_factory = _default_factory(cfg.pretrained)
        factory_tag = "mer_core.models.create_model"
    else:
        factory_tag = getattr(model_factory, "__qualname__", type(model_factory).__name__)
    cfg.check(f"experiment {name}: train")
    index = index.reset_index(drop=True)
    y_all = _check_index(index, labels)
    if not isinstance(images, FoldFrames):
        check_cache(images, index, image_ids)
        images = FoldFrames({exp.frames: images})
    for key, arr in images.variants.items():
        check_cache(arr, index, image_ids, source=f"frame cache {key}")
    out = Path(out_dir)

    ccfg = launcher or ClusterConfig()
    ccfg.check(f"experiment {name}: cluster")
    subjects_all = sorted(set(index["subject"].astype(str)))
    if len(subjects_all) < 2:
        raise ValueError(f"index: LOSO needs >= 2 subjects, got {subjects_all}")
    plan = [(seed, s) for seed in cfg.seeds for s in plan_folds(subjects_all, cfg.folds,
                                                                cfg.max_folds)]
    dev, precision, dev_label = cluster.unit_device(name, ccfg, cfg, device, out, plan, fresh)
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or available_cores()
    fold_key = {s: images.key(s) for s in subjects_all}
    used = sorted(set(fold_key.values()))
    data_hash = sha(*(images.variants[k].tobytes() for k in used), json.dumps(fold_key, sort_keys=True),
                     "\n".join(index["sample_id"].astype(str)),
                     "\n".join(index["subject"].astype(str)), y_all.tobytes())
    params = fold_params(name, exp, cfg, labels, data_hash, dev, precision, factory_tag,
                         dev_label)
    fold_fp = sha(json.dumps(params, sort_keys=True))
    run_params = {**params, "seeds": cfg.seeds, "subjects": subjects_all}
    run_fp = sha(json.dumps(run_params, sort_keys=True))

    if fresh:
        for f in handover.MERGED:
            (out / f).unlink(missing_ok=True)
        if parse_folds(cfg.folds) == (0, 1):  # a full fresh run owns the whole folder
            for f in (out / "shards").glob("*.json"):
                f.unlink()
    todo, stale = [], []
    for seed, subject in plan:
        stem = fold_stem(subject, seed)
        done = (out / "folds" / f"{stem}.csv").is_file()
        if done and not fresh:
            try:
                check_fold(out, stem, fold_fp, params)
                continue
            except FingerprintError:
                if not redo_stale:
                    raise
                stale.append(stem)
        todo.append((seed, subject))
    i, n = parse_folds(cfg.folds)
    if stale:
        if progress:
            tqdm.write(f"{name}: {len(stale)} finished fold(s) were made with other settings "
                       f"and are redone: {', '.join(stale[:6])}{' ...' if len(stale) > 6 else ''}",
                       file=sys.stderr)
        for f in handover.MERGED:
            (out / f).unlink(missing_ok=True)
        for f in (out / "shards").glob("*.json"):
            if io.read_json(f).get("fingerprint") != run_fp:
                f.unlink()
    io.write_json(out / "shards" / f"{i}of{n}.json", {
        "fingerprint": run_fp, "fold_fingerprint": fold_fp, "params": run_params,
        "train_config": dataclasses.asdict(cfg), "folds": cfg.folds, "max_folds": cfg.max_folds,
        "planned": [fold_stem(s, k) for k, s in plan],
        "sample_ids": index["sample_id"].astype(str).tolist()})

    remote = ccfg.launcher != "inprocess"
    workers = 1 if remote else plan_workers(cfg.workers, dev, threads, cfg.threads, len(todo),
                                            model_factory)
    bar = tqdm(total=len(todo), desc=f"{name}: " + (f"units ({ccfg.launcher})" if remote else
                                                    "folds" + (f" ({workers} workers)"
                                                               if workers > 1 else "")),
               disable=not progress, file=sys.stderr, mininterval=2.0)
    # in this process: set up before any op (threads torch starts inherit the denormal flag)
    restore = training_mode(dev, cfg.threads) if workers == 1 and not remote else None
    launch = {"launcher": "inprocess"}
    try:
        # cluster units move the images to their own device
        xs = {k: prepare_images(images.variants[k], cfg.image_size,
                                torch.device("cpu") if remote else dev) for k in used}
        job = FoldJob(name=name, exp=exp, cfg=cfg,
                      sample_ids=index["sample_id"].astype(str).to_numpy(),
                      subjects=index["subject"].astype(str).to_numpy(), labels=list(labels),
                      y=y_all, xs=xs, fold_key=fold_key, model_factory=model_factory, device=dev,
                      precision=precision, params=params, fingerprint=fold_fp, out=out.resolve())
        if remote and todo:
            launch = cluster.launch(job, todo, ccfg, bar)
        elif workers > 1:
            _run_folds_parallel(job, todo, workers, cfg.threads, bar)
        else:
            for seed, subject in todo:
                bar.set_postfix(subject=subject, seed=seed, refresh=False)
                run_fold(job, seed, subject, progress)
                bar.update(1)
    finally:
        if restore is not None:
            restore()
    bar.close()

    stems = [fold_stem(s, k) for k, s in plan]
    if (i, n) == (0, 1) and cfg.max_folds == 0:
        if not todo:
            # Nothing trained in this call: the merged files of the same run stay as they are
            # (their run.json records the call that trained the folds, its workers and time).
            prev, merged = handover.read_run(out), out / handover.PREDICTIONS_CSV
            if prev and prev.get("fingerprint") == run_fp and merged.is_file():
                return handover.read_predictions(merged)
            return merge_shards(out)  # folds of earlier calls: no elapsed time of this call
        return merge_shards(out, _elapsed=time.perf_counter() - t_start,
                            _workers=None if remote else workers, _launch=launch)
    preds = _order(pd.concat([read_table(out / "folds" / f"{s}.csv") for s in stems],
                             ignore_index=True), index["sample_id"].astype(str).tolist())
    if progress:
        tqdm.write(f"{name}: {len(stems)} fold(s) of shard {cfg.folds} done"
                   + (f" (max_folds={cfg.max_folds})" if cfg.max_folds else "")
                   + "; merged files are written when every fold exists (merge_shards)",
                   file=sys.stderr)
    return preds


# ----------------------------------------------------------------------------- fold workers


def plan_workers(requested: int, device: torch.device, budget: int, fold_threads: int,
                 n_folds: int, model_factory: ModelFactory | None = None) -> int:
    """How many folds train at once.

    Every fold trains with exactly ``fold_threads`` torch threads (``train.threads``, part of
    the fold fingerprint), whether it runs alone, beside others, resumed or in a shard: the
    thread count changes a fold's floating-point sums and so its predictions (measured: 2 of 9
    test predictions of one fold flipped between 1 and 2 threads). Only the number of folds
    trained at once follows the machine. On a CPU, small images keep two threads of one process
    half idle (48 px on 2 cores: one process with 2 threads 31 img/s, two processes with 1
    thread each 41 img/s in all), so by default every core trains its own fold.

    Args:
        requested: ``train.workers``; 0 = auto (CPU: ``budget // fold_threads``, at most 8;
            else 1).
        device: the training device; CUDA and MPS always use one worker.
        budget: the CPU threads this run may use in total.
        fold_threads: ``train.threads``.
        n_folds: folds left to train (never more workers than folds).
        model_factory: must pickle to be sent to worker processes; if it does not, one worker.

    Returns:
        The number of fold workers.
    """
    if device.type != "cpu":
        if requested > 1:
            warnings.warn(f"train.workers={requested} applies to CPU training only; "
                          f"{device.type} trains one fold at a time")
        return 1
    auto = min(max(1, budget // max(1, fold_threads)), 8)
    workers = max(1, min(requested or auto, n_folds))
    if workers > 1 and model_factory is not None:
        try:
            pickle.dumps(model_factory)
        except Exception as e:  # a lambda or closure: cannot reach a spawned process
            warnings.warn(f"model_factory {model_factory!r} cannot be pickled ({e}); "
                          f"training one fold at a time")
            workers = 1
    return workers


_WORKER_JOB: dict = {}  # the FoldJob of this worker process (set once by _worker_init)


def _worker_init(job: FoldJob, threads: int) -> None:
    training_mode(job.device, threads)
    _WORKER_JOB["job"] = job


def _worker_fold(seed: int, subject: str) -> None:
    run_fold(_WORKER_JOB["job"], seed, subject, progress=False)


def _run_folds_parallel(job: FoldJob, todo: list, workers: int, threads: int, bar) -> None:
    """Train ``todo`` folds in ``workers`` spawned processes (each writes its own fold files)."""
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe after OpenMP has started
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(job, threads)) as pool:
        pending = {pool.submit(_worker_fold, seed, subject) for seed, subject in todo}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    fut.result()  # re-raises a fold's error here
                    bar.update(1)
        except BaseException:
            # folds already running finish and are kept (their files are complete)
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_fold(job: FoldJob, seed: int, subject: str, progress: bool) -> None:
    """Train one fold (:func:`mer_core.fold.train_fold`) and write its files, predictions last
    (in this process, a fold worker or a cluster unit: :func:`mer_core.cluster.run_unit`)."""
    t0 = time.perf_counter()
    stem = fold_stem(subject, seed)
    res = train_fold(job, seed, subject, progress)
    test, labels, out = res["test"], job.labels, job.out
    proba, y_true = res["proba"], job.y[test]
    y_pred = proba.argmax(1)
    lab = np.asarray(labels, dtype=object)
    ids = job.sample_ids[test]
    cam = res["cam"]
    handover.write_cams(out, stem, sample_id=ids.astype(str), cam=cam.astype(np.float16),
                        y_true=lab[y_true].astype(str), y_pred=lab[y_pred].astype(str),
                        labels=np.asarray(labels, dtype=str), layer=np.asarray("layer3"))
    epochs = pd.DataFrame(res["epochs"])
    epochs.insert(0, "fold", subject)
    epochs.insert(0, "seed", seed)
    io.write_csv(out / "folds" / f"{stem}.epochs.csv", epochs)
    ep = pd.DataFrame([{"seed": seed, "fold": subject, "epoch": e + 1, "sample_id": sid,
                        "y_true": labels[t], "y_pred": labels[p]}
                       for e, preds in enumerate(res["epoch_preds"])
                       for sid, t, p in zip(ids, y_true, preds)])
    io.write_csv(out / "folds" / f"{stem}.epoch_predictions.csv", ep)
    choice = res.get("selection")
    if choice is not None:
        io.write_csv(out / "folds" / f"{stem}.selection.csv", selection_table(
            res["selection_grid"], choice, seed, subject))
    pred = pd.DataFrame({"sample_id": ids, "subject": subject, "y_true": lab[y_true],
                         "y_pred": lab[y_pred]})
    for c, cls in enumerate(labels):
        pred[f"p_{cls}"] = proba[:, c]
    pred["seed"] = seed
    pred["experiment"] = job.name
    wall = time.perf_counter() - t0
    io.write_json(out / "folds" / f"{stem}.json", {
        "fingerprint": job.fingerprint, "params": job.params, "subject": subject, "seed": seed,
        "fold_seed": res["fold_seed"], "frames": job.fold_key[subject],
        "n_train": res["n_train"], "n_test": int(len(test)),
        "wall_s": round(wall, 3), "train_s": round(res["train_s"], 3),
        "train_images": int(res["train_images"]),
        "images_per_s": round(res["train_images"] / max(res["train_s"], 1e-9), 2),
        "device": str(job.device), "precision": job.precision,
        "threads": torch.get_num_threads(), **determinism(job.device),
        **({} if choice is None else {"selected_lr": choice["lr"],
                                      "selected_epoch": choice["epoch"],
                                      "inner_uf1": choice["inner_uf1"]})})
    io.write_csv(out / "folds" / f"{stem}.csv", pred)  # last: marks the fold as finished


def selection_table(grid: pd.DataFrame, choice: dict, seed: int, subject: str) -> pd.DataFrame:
    """A fold's selection grid with ``seed``, ``fold`` first and a ``chosen`` column (True on
    the (lr, epoch) row of ``choice``)."""
    table = grid.copy()
    table.insert(0, "fold", subject)
    table.insert(0, "seed", seed)
    table["chosen"] = (table["lr"] == choice["lr"]) & (table["epoch"] == choice["epoch"])
    return table


def _order(df: pd.DataFrame, sample_ids: list[str]) -> pd.DataFrame:
    pos = {s: i for i, s in enumerate(sample_ids)}
    df = df.assign(_pos=df["sample_id"].astype(str).map(pos))
    return df.sort_values(["seed", "_pos"], kind="stable").drop(columns="_pos") \
        .reset_index(drop=True)


def merge_shards(out_dir: str | Path, _elapsed: float | None = None,
                 _workers: int | None = None, _launch: dict | None = None) -> pd.DataFrame:
    """Merge the folds of every shard of ``results/<exp>`` into the final files.

    Every ``shards/*.json`` must carry the same fingerprint (params, seeds, subjects, labels, data,
    code version, device, precision) and every (seed, subject) fold must be finished with the
    matching fold fingerprint.

    Args:
        out_dir: ``results/<exp>``.

    Returns:
        The merged predictions (also written to ``predictions.csv``).

    Raises:
        FingerprintError: shards or folds made with different settings.
        IncompleteError: folds missing (the message names them and the shard that owns them).
    """
    out = Path(out_dir)
    manifests = sorted((out / "shards").glob("*.json"))
    if not manifests:
        raise IncompleteError(f"{out}: no shards/*.json; nothing has been run here")
    metas = [(p, io.read_json(p)) for p in manifests]
    ref_path, ref = metas[0]
    for p, m in metas[1:]:
        if m["fingerprint"] != ref["fingerprint"]:
            changed = diff(ref["params"], m["params"]) or ["(unknown)"]
            raise FingerprintError(
                f"{p} and {ref_path} were run with different settings: {'; '.join(changed[:8])}. "
                f"Re-run the stale shard(s) with fresh=True and the current settings.")
    params = ref["params"]
    seeds, subjects = params["seeds"], params["subjects"]
    selected = bool(ref["train_config"].get("select"))
    missing, frames, epochs, epoch_preds, folds_meta, grids = [], [], [], [], [], []
    for seed in seeds:
        for subject in subjects:
            stem = fold_stem(subject, seed)
            csv = out / "folds" / f"{stem}.csv"
            if not csv.is_file():
                owner = [m["folds"] for _, m in metas if stem in m["planned"]]
                missing.append(f"{subject} seed {seed} ("
                               + (f"shard {owner[0]} unfinished" if owner else "no shard ran it")
                               + ")")
                continue
            check_fold(out, stem, ref["fold_fingerprint"], {k2: v for k2, v in params.items()
                                                             if k2 not in ("seeds", "subjects")})
            frames.append(read_table(csv))
            epochs.append(read_table(out / "folds" / f"{stem}.epochs.csv"))
            epoch_preds.append(read_table(out / "folds" / f"{stem}.epoch_predictions.csv"))
            folds_meta.append(io.read_json(out / "folds" / f"{stem}.json"))
            if selected:
                grids.append(read_table(out / "folds" / f"{stem}.selection.csv"))
    if missing:
        have = ", ".join(sorted(m["folds"] for _, m in metas))
        raise IncompleteError(
            f"{out}: {len(missing)} of {len(seeds) * len(subjects)} folds missing: "
            f"{', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}. Shards run so far: "
            f"{have}; run the missing shard(s) (train.folds 'i/n') before merging.")
    preds = _order(pd.concat(frames, ignore_index=True), ref["sample_ids"])
    log = pd.concat(epochs, ignore_index=True).sort_values(["seed", "fold", "epoch"], kind="stable")
    ep = pd.concat(epoch_preds, ignore_index=True)
    handover.write_predictions(out, preds)
    io.write_csv(out / handover.EPOCH_LOG_CSV, log)
    io.write_csv(out / handover.EPOCH_PREDICTIONS_CSV, ep)
    if selected:
        io.write_csv(out / handover.SELECTION_CSV, pd.concat(grids, ignore_index=True)
                     .sort_values(["seed", "fold", "lr", "epoch"], kind="stable"))
    else:
        (out / handover.SELECTION_CSV).unlink(missing_ok=True)
    train_s = sum(m["train_s"] for m in folds_meta)
    images = sum(m["train_images"] for m in folds_meta)
    fold_wall = sum(m["wall_s"] for m in folds_meta)
    train_cfg = {k: v for k, v in ref["train_config"].items() if k not in ("folds", "max_folds")}
    handover.write_run(out, {
        "experiment": params["experiment"],
        "experiment_config": {k: params[k] for k in ("frames", "backbone", "loss")},
        "train_config": train_cfg, "labels": params["labels"], "seeds": seeds,
        "n_subjects": len(subjects), "n_folds": len(folds_meta), "n_clips": len(ref["sample_ids"]),
        "fingerprint": ref["fingerprint"], "fold_fingerprint": ref["fold_fingerprint"],
        "code_version": params["code"], "data_hash": params["data"],
        "device": folds_meta[0]["device"], "device_name": params.get("device_name"),
        "precision": params["precision"],
        "threads": folds_meta[0]["threads"], "workers": _workers,
        "launcher": _launch,
        "deterministic_algorithms": folds_meta[0].get("deterministic_algorithms"),
        "shards": [m["folds"] for _, m in metas],
        "wall_s_folds": round(fold_wall, 1),
        "wall_s_this_call": None if _elapsed is None else round(_elapsed, 1),
        "mean_fold_s": round(fold_wall / len(folds_meta), 2),
        "train_images_per_s": round(images / max(train_s, 1e-9), 2),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "timm": __import__("timm").__version__, "numpy": np.__version__},
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
    })
    return preds


__all__ = ["run_experiment", "merge_shards", "plan_folds", "plan_workers", "run_fold",
           "IncompleteError"]
