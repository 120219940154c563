"""Cost planner: what a profile asks for, in units of work, GPU-hours and wall time.

    python -m mer_core.plan paper --gpus 8
    python -m mer_core.plan paper --gpus 1,8 --subjects 26 --clips 255 --out plan.json
    python -m mer_core.plan real --gpus 8 --gpu-record benchmarks/throughput/h100.json

A *unit* is one seed x one LOSO fold of one experiment: what one task of a cluster job array
trains. Its training images follow :mod:`mer_core.fold` exactly (full batches only; a set
smaller than one batch is one batch of its own size), and with ``train.select`` a unit also
holds the inner trainings (one per learning rate of ``lr_grid`` and inner fold, on the inner
training subjects, :func:`mer_core.nested.inner_splits`), so every unit has its own cost.

Seconds of a unit = training images / the bare step rate of its backbone
(:func:`mer_core.throughput.bare_step` at the profile's image size, batch size and precision)
+ its overhead: the median ``wall_s - train_s`` of matching finished fold records
(``results/*/folds/*.json``) where there are any, else derived from measurements (model
creation per training, the per-epoch test or validation passes at the measured eval rate,
Grad-CAM as one training pass over the test clips). The GPU side adds a process start per unit
(a job-array task is its own process). GPU rates are measured when a GPU is present, read from a
throughput record (``--gpu-record``), or ASSUMED (``--gpu-images-per-s``,
``--gpu-overhead-s``): every number that rests on them says "assumed, not measured".

Wall time: on N GPUs the units are scheduled largest first onto the least loaded GPU (greedy
LPT); on this CPU each experiment's units run on the fold workers ``loso.plan_workers`` would
start (cores // train.threads, at most 8), the experiments one after another (DVC's stages).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import heapq
import statistics
import sys
from pathlib import Path

import yaml

from mer_core import config, handover, io, machine, nested, profiles, throughput
from mer_core.loso import plan_folds, plan_workers

#: What every number resting on an assumed GPU rate carries.
ASSUMED = "assumed, not measured"
#: Assumed GPU defaults (no GPU was lent to this project).
GPU_IMAGES_PER_S = 1000.0
GPU_OVERHEAD_S = 2.0


@dataclasses.dataclass(frozen=True)
class Unit:
    """One seed x one LOSO fold of one experiment.

    Attributes:
        experiment: experiment name.
        backbone: its backbone.
        seed: training seed.
        subject: the test subject.
        images: training images of every training of the unit (outer + inner).
        trainings: models trained (1 + lrs x inner folds with ``train.select``).
        eval_images: images of the per-epoch test and validation passes.
        n_test: clips of the test subject (Grad-CAM runs on them).
    """
    experiment: str
    backbone: str
    seed: int
    subject: str
    images: int
    trainings: int
    eval_images: int
    n_test: int


def training_images(n: int, cfg: config.TrainConfig) -> int:
    """Training images of one training on ``n`` images: full batches only, as
    :func:`mer_core.fold.fit_fold` (a set smaller than one batch is one batch of its size)."""
    per_epoch = n // cfg.batch_size * cfg.batch_size if n >= cfg.batch_size else n
    return per_epoch * cfg.epochs


def units(params: config.Params, subjects: list[str]) -> list[Unit]:
    """Every unit of a profile run, experiment by experiment, seed by seed, fold by fold.

    Args:
        params: the merged parameters of the profile.
        subjects: the subject of every clip (the index's ``subject`` column).

    Returns:
        The units (finished folds are not subtracted).
    """
    cfg = params.train
    per_subject = {s: subjects.count(s) for s in set(map(str, subjects))}
    lrs = cfg.lr_list
    out = []
    for name, exp in params.experiments.items():
        for seed in cfg.seeds:
            for test in plan_folds(per_subject, cfg.folds, cfg.max_folds):
                train = sorted(s for s in per_subject if s != test)
                n_train = sum(per_subject[s] for s in train)
                images, trainings = training_images(n_train, cfg), 1
                evals = cfg.epochs * per_subject[test]
                if cfg.select:
                    for val in nested.inner_splits(train, cfg.inner_folds):
                        n_val = sum(per_subject[s] for s in val)
                        images += len(lrs) * training_images(n_train - n_val, cfg)
                        trainings += len(lrs)
                        evals += len(lrs) * cfg.epochs * n_val
                out.append(Unit(name, exp.backbone, seed, test, images, trainings, evals,
                                per_subject[test]))
    return out


def lpt(durations: list[float], machines: int) -> float:
    """Makespan of greedy LPT: jobs largest first, each onto the least loaded machine.

    Args:
        durations: seconds of every job.
        machines: how many run at once (>= 1).

    Returns:
        Seconds until the last machine finishes (0 without jobs).
    """
    if machines < 1:
        raise ValueError(f"machines: expected an integer >= 1, got {machines!r}")
    loads = [0.0] * min(machines, max(1, len(durations)))
    heapq.heapify(loads)
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def load_params(profile: str, params_file: str | Path = "params.yaml",
                directory: str | Path = profiles.PROFILES_DIR) -> config.Params:
    """A profile's parameters as :mod:`mer_core.profiles` merges them (``params.yaml`` + the
    profile, its ``replace`` applied); ``default`` is ``params.yaml`` alone. Weights files are
    not checked (planning needs none)."""
    base = yaml.safe_load(Path(params_file).read_text())
    if profile == "default":
        return config.from_dict(base, str(params_file))
    merged, _ = profiles.replaced(base, profiles.load_profile(profile, directory))
    return config.from_dict(merged, f"profile {profile} ({Path(directory) / profile}.yaml)")


def even_subjects(n_subjects: int, n_clips: int) -> list[str]:
    """The subject of every clip of a dataset shape: ``n_clips`` spread evenly over
    ``n_subjects`` subjects (the first ``n_clips % n_subjects`` get one more)."""
    if n_subjects < 2 or n_clips < n_subjects:
        raise ValueError(f"--subjects {n_subjects} --clips {n_clips}: expected >= 2 subjects "
                         "and at least one clip each")
    out = []
    for i in range(n_subjects):
        out += [f"s{i + 1:02d}"] * (n_clips // n_subjects + (i < n_clips % n_subjects))
    return out


def read_subjects(index: str | Path) -> list[str]:
    """The subject of every clip of ``index`` (the rows the apex stage cached when its
    ``frames/`` folder sits beside the index).

    Raises:
        FileNotFoundError: no index (the message says how to make one or what to pass instead).
    """
    index = Path(index)
    if not index.is_file():
        raise FileNotFoundError(
            f"{index}: index not found. Run `dvc repro data` first, or plan a dataset's shape "
            "without data with --subjects K --clips M (e.g. CASME II: --subjects 26 --clips 255)")
    df = handover.read_index(index)
    if (index.parent / "frames").is_dir():
        from mer_core import frame_cache
        df = frame_cache.cached_index(df, index.parent / "frames")
    return df["subject"].astype(str).tolist()


def record_overhead(results: str | Path, cfg: config.TrainConfig, backbone: str,
                    precision: str) -> dict | None:
    """Per-fold overhead from finished fold records: the median ``wall_s - train_s`` (model
    build, per-epoch test passes, Grad-CAM, files) of the folds in ``results/*/folds/`` trained
    on a CPU with this backbone, image size, batch size, epochs and precision and without
    ``train.select`` (whose ``wall_s`` holds the inner trainings too).

    Returns:
        ``{"kind": "fold records", "per_unit_s", "n", "where"}``, or None without any match.
    """
    gaps = []
    for path in sorted(Path(results).glob("*/folds/*__seed*.json")):
        rec = io.read_json(path)
        p, t = rec.get("params", {}), rec.get("params", {}).get("train", {})
        if (p.get("backbone") == backbone and p.get("device") == "cpu"
                and rec.get("precision") == precision and not t.get("select")
                and "wall_s" in rec and "train_s" in rec
                and (t.get("image_size"), t.get("batch_size"), t.get("epochs"))
                == (cfg.image_size, cfg.batch_size, cfg.epochs)):
            gaps.append(rec["wall_s"] - rec["train_s"])
    if not gaps:
        return None
    return {"kind": "fold records", "per_unit_s": statistics.median(gaps), "n": len(gaps),
            "where": f"{results}/*/folds/*.json"}


def unit_seconds(unit: Unit, rate: dict, start_s: float = 0.0) -> float:
    """Seconds of one unit at a backbone's rate entry (:func:`measure_rates`).

    The overhead is the fold records' per-unit median, or derived (model creation per
    training, test/validation passes at the eval rate, Grad-CAM as one training pass over the
    test clips), or an assumed number of seconds per training; plus ``start_s`` once.
    """
    step = unit.images / rate["images_per_s"]
    ov = rate["overhead"]
    if ov["kind"] == "fold records":
        extra = ov["per_unit_s"]
    elif ov["kind"] == "derived":
        extra = (unit.trainings * ov["build_s"] + unit.eval_images / ov["eval_images_per_s"]
                 + unit.n_test / rate["images_per_s"])
    else:
        extra = unit.trainings * ov["per_training_s"]
    return step + extra + start_s


def _derived(entry: dict, precision: str) -> dict:
    return {"images_per_s": entry["images_per_s"][precision],
            "overhead": {"kind": "derived", "build_s": entry["build_s"],
                         "eval_images_per_s": entry["eval_images_per_s"][precision]}}


def measure_rates(params: config.Params, device: str, steps: int,
                  results: str | Path | None = None, min_seconds: float = 0.0) -> dict:
    """Measure every backbone of a profile on ``device`` at its size, batch and precision
    (each rate: at least ``steps`` timed steps and ``min_seconds``); the CPU's overhead from
    the fold records in ``results`` where they match (:func:`record_overhead`).

    On a CPU the fold's threads (``train.threads``) and flushed denormals, as a fold worker.

    Returns:
        ``{"device", "device_name", "precision", "threads", "steps", "backbones": {name:
        {"images_per_s", "overhead"}}}``.
    """
    import torch

    import os

    cfg = params.train
    dev = torch.device(device)
    precision = machine.select_precision(cfg.precision, dev)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)  # as a CPU fold worker (loso.run_experiment)
    if dev.type == "cpu":
        torch.set_num_threads(cfg.threads)
    try:
        rates = {}
        for bb in sorted({e.backbone for e in params.experiments.values()}):
            entry = throughput.measure_backbone(bb, cfg.image_size, cfg.batch_size, [precision],
                                                steps, device, min_seconds=min_seconds)
            rates[bb] = _derived(entry, precision)
            found = record_overhead(results, cfg, bb, precision) \
                if results is not None and dev.type == "cpu" else None
            if found:
                rates[bb]["overhead"] = found
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
    return {"device": dev.type, "device_name": machine.device_name(dev), "precision": precision,
            "threads": cfg.threads if dev.type == "cpu" else threads, "steps": steps,
            "min_seconds": min_seconds, "load_average_1min": load, "backbones": rates}


def record_rates(params: config.Params, path: str | Path) -> dict:
    """GPU rates of a profile from a throughput record (:func:`throughput.read_record`).

    Raises:
        ValueError: the record was measured at another image or batch size, or lacks a backbone
            or precision of the profile (the message names the file, key and value wanted).
    """
    rec, cfg = throughput.read_record(path), params.train
    if (rec["image_size"], rec["batch_size"]) != (cfg.image_size, cfg.batch_size):
        raise ValueError(
            f"{path}: measured at image_size {rec['image_size']}, batch_size {rec['batch_size']}; "
            f"the profile trains at {cfg.image_size} px, batch {cfg.batch_size}: rerun "
            f"benchmarks/train_throughput.py --size {cfg.image_size} --batch {cfg.batch_size} "
            f"--record {path}")
    precision = {"fp32": "fp32", "auto": rec["auto_precision"]}.get(
        cfg.precision, "amp-bf16" if rec["device"] == "cuda" else cfg.precision)
    rates = {}
    for bb in sorted({e.backbone for e in params.experiments.values()}):
        entry = rec["backbones"].get(bb)
        if entry is None or precision not in entry.get("images_per_s", {}):
            raise ValueError(f"{path}: key backbones.{bb}.images_per_s.{precision} missing "
                             f"(the profile trains {bb} in {precision})")
        rates[bb] = _derived(entry, precision)
    return {"device": rec["device"], "device_name": rec.get("device_name", "?"),
            "precision": precision, "threads": rec.get("threads"), "steps": rec.get("steps"),
            "date": rec.get("date"), "process_start_s": rec.get("process_start_s"),
            "backbones": rates}


def assumed_rates(params: config.Params, images_per_s: float, overhead_s: float) -> dict:
    """GPU rates given on the command line: ASSUMED, every backbone alike."""
    return {"device": "cuda", "device_name": "no GPU measured",
            "precision": f"train.precision {params.train.precision}",
            "backbones": {e.backbone: {"images_per_s": images_per_s,
                                       "overhead": {"kind": "assumed",
                                                    "per_training_s": overhead_s}}
                          for e in params.experiments.values()}}


def plan(params: config.Params, unit_list: list[Unit], cpu: dict, gpu: dict, gpus: list[int],
         start_s: float, cores: int) -> dict:
    """The numbers of a plan (JSON-ready): per experiment and in total, GPU and CPU.

    Args:
        params: the profile's parameters.
        unit_list: :func:`units`.
        cpu: :func:`measure_rates` on the CPU.
        gpu: :func:`measure_rates` on a GPU, :func:`record_rates` or :func:`assumed_rates`
            (the latter's numbers are labelled :data:`ASSUMED`).
        gpus: GPU counts to schedule on.
        start_s: process start of one job; every GPU unit carries its share
            (``cluster.units_per_task`` units share one job's start).
        cores: CPU cores of this machine (for the fold workers).

    Returns:
        The plan record (``experiments``, ``total``, ``gpu``, ``cpu``).
    """
    import torch

    per_unit_start = start_s / params.cluster.units_per_task
    gpu_s = [unit_seconds(u, gpu["backbones"][u.backbone], per_unit_start) for u in unit_list]
    cpu_s = [unit_seconds(u, cpu["backbones"][u.backbone]) for u in unit_list]
    rows, cpu_wall, workers_used = [], 0.0, set()
    for name in params.experiments:
        idx = [i for i, u in enumerate(unit_list) if u.experiment == name]
        if not idx:
            continue
        folds = len({unit_list[i].subject for i in idx})
        workers = plan_workers(params.train.workers, torch.device("cpu"), cores,
                               params.train.threads, folds)
        workers_used.add(workers)
        wall = lpt([cpu_s[i] for i in idx], workers)
        cpu_wall += wall
        imgs = [unit_list[i].images for i in idx]
        rows.append({"experiment": name, "backbone": unit_list[idx[0]].backbone,
                     "units": len(idx), "training_images": sum(imgs),
                     "unit_images_min": min(imgs), "unit_images_max": max(imgs),
                     "trainings": sum(unit_list[i].trainings for i in idx),
                     "gpu_hours": sum(gpu_s[i] for i in idx) / 3600,
                     "cpu_hours": sum(cpu_s[i] for i in idx) / 3600,
                     "cpu_workers": workers, "cpu_wall_hours": wall / 3600})
    assumed = any(b["overhead"]["kind"] == "assumed" for b in gpu["backbones"].values())
    return {
        "experiments": rows,
        "total": {"units": len(unit_list), "folds": len({u.subject for u in unit_list}),
                  "training_images": sum(u.images for u in unit_list),
                  "trainings": sum(u.trainings for u in unit_list)},
        "gpu": {**gpu, "assumed": assumed, "label": ASSUMED if assumed else "measured",
                "process_start_s": start_s, "units_per_task": params.cluster.units_per_task,
                "hours": sum(gpu_s) / 3600,
                "wall_hours": {str(n): lpt(gpu_s, n) / 3600 for n in gpus},
                "schedule": "greedy LPT: units largest first onto the least loaded GPU"},
        "cpu": {**cpu, "cpu": machine.cpu_model(), "cores": cores,
                "workers": sorted(workers_used), "hours": sum(cpu_s) / 3600,
                "wall_hours": cpu_wall / 3600,
                "schedule": "each experiment's units largest first on its fold workers (as "
                            "loso.plan_workers: cores // train.threads, at most 8), experiments "
                            "one after another; each worker at the bare-step rate measured alone"},
    }


def _h(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:,.1f} h" + (f" ({hours / 24:,.1f} d)" if hours >= 72 else "")


def _overhead_text(ov: dict) -> str:
    if ov["kind"] == "fold records":
        return f"overhead {ov['per_unit_s']:.1f} s per fold (median of {ov['n']} fold records)"
    if ov["kind"] == "derived":
        return (f"overhead derived: model creation {ov['build_s']:.2f} s per training, test "
                f"passes at {ov['eval_images_per_s']:.1f} images/s, Grad-CAM")
    return f"overhead {ov['per_training_s']:g} s per training ({ASSUMED})"


def format_plan(rec: dict) -> str:
    """The plan as readable text (what ``python -m mer_core.plan`` prints)."""
    g, c, t = rec["gpu"], rec["cpu"], rec["total"]
    tag = f" [{ASSUMED}]" if g["assumed"] else ""
    lines = [
        f"profile {rec['profile']} ({rec['params']}): {len(rec['experiments'])} experiment(s) x "
        f"{rec['recipe']['n_seeds']} seed(s) x {t['folds']} LOSO folds = {t['units']:,} units "
        "(a unit: one seed x one fold of one experiment)",
        f"data: {rec['data']['note']}",
        f"recipe: {rec['recipe']['image_size']} px, batch {rec['recipe']['batch_size']}, "
        f"{rec['recipe']['epochs']} epochs, select {rec['recipe']['select'] or 'none'}"
        + (f" (lr_grid {rec['recipe']['lr_grid']}, {rec['recipe']['inner_folds']} inner folds)"
           if rec['recipe']['select'] else ""),
        f"CPU (measured {rec['date']}): {c['cpu']}, {c['precision']} (train.precision "
        f"{rec['recipe']['precision']}), {c['threads']} thread(s) "
        f"per fold worker, bare step timed over >= {c['steps']} steps and >= "
        f"{c['min_seconds']:g} s:",
    ]
    for bb, r in c["backbones"].items():
        lines.append(f"  {bb:20s} {r['images_per_s']:8.2f} images/s; "
                     f"{_overhead_text(r['overhead'])}")
    src = g.get("source", "")
    if c.get("load_average_1min") is not None:
        busy = c["load_average_1min"] > c["cores"] - 0.5  # a job beside the measurement
        lines.append(f"  (load average {c['load_average_1min']:.1f} on {c['cores']} cores when "
                     "the CPU measurement began"
                     + (": other jobs shared the CPU and the rates are lower bounds)" if busy
                        else ")"))
    per_task = g.get("units_per_task", 1)
    lines.append(f"GPU ({src}): {g['device_name']}, {g['precision']}; process start "
                 f"{g['process_start_s']:.1f} s per job ({g['process_start_source']})"
                 + (f", {per_task} units per job (cluster.units_per_task)" if per_task > 1
                    else "") + ":")
    for bb, r in g["backbones"].items():
        lines.append(f"  {bb:20s} {r['images_per_s']:8.1f} images/s"
                     f"{' (' + ASSUMED + ')' if g['assumed'] else ''}; "
                     f"{_overhead_text(r['overhead'])}")
    head = (f"{'experiment':24s} {'backbone':18s} {'units':>6s} {'training images':>16s} "
            f"{'GPU-h':>8s} {'CPU-h':>9s}")
    lines += ["", head, "-" * len(head)]
    for r in rec["experiments"]:
        lines.append(f"{r['experiment']:24s} {r['backbone']:18s} {r['units']:6,d} "
                     f"{r['training_images']:16,d} {r['gpu_hours']:8.2f} {r['cpu_hours']:9.1f}")
    lines.append(f"{'total':43s} {t['units']:6,d} {t['training_images']:16,d} "
                 f"{g['hours']:8.2f} {c['hours']:9.1f}")
    lines += ["", f"GPU-hours: {_h(g['hours'])}{tag}"]
    for n, h in g["wall_hours"].items():
        lines.append(f"wall on {n} GPU(s) (greedy LPT, largest unit first): {_h(h)}{tag}")
    lines.append(f"CPU hours (per fold worker, {c['threads']} thread(s) each): {_h(c['hours'])}")
    lines.append(f"CPU wall on this machine ({c['cores']} cores, "
                 f"{'/'.join(map(str, c['workers']))} fold worker(s) as loso.plan_workers, "
                 f"experiments one after another): {_h(c['wall_hours'])}")
    return "\n".join(lines)


def _gpus(text: str) -> list[int]:
    try:
        out = [int(v) for v in config.split_list(text)]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--gpus {text!r}: expected N or N,M,... (each >= 1)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", help="profiles/<name>.yaml, or 'default' for params.yaml alone")
    ap.add_argument("--gpus", type=_gpus, default=[1],
                    help="GPUs to schedule on: N or N,M,... (1 is always shown too)")
    ap.add_argument("--index", default="data/index.csv", help="clips per subject from here")
    ap.add_argument("--subjects", type=int, help="plan a dataset shape without data: K subjects")
    ap.add_argument("--clips", type=int, help="... and M clips, spread evenly over them")
    ap.add_argument("--steps", type=int, default=2, help="timed bare steps per backbone, at least")
    ap.add_argument("--min-seconds", type=float, default=5.0,
                    help="... and at least this long (a few steps of small images are too short)")
    ap.add_argument("--results", default="results", help="finished fold records (overhead)")
    ap.add_argument("--gpu-record", help="throughput record of a GPU machine (JSON)")
    ap.add_argument("--gpu-images-per-s", type=float, default=GPU_IMAGES_PER_S,
                    help=f"GPU training rate when none is measured or recorded ({ASSUMED})")
    ap.add_argument("--gpu-overhead-s", type=float, default=GPU_OVERHEAD_S,
                    help=f"GPU seconds per training beyond its steps ({ASSUMED})")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profiles-dir", default=str(profiles.PROFILES_DIR))
    ap.add_argument("--out", help="also write the numbers here (JSON, atomically)")
    args = ap.parse_args(argv)
    try:
        params = load_params(args.profile, args.params, args.profiles_dir)
        if (args.subjects is None) != (args.clips is None):
            raise ValueError("--subjects and --clips go together")
        if args.subjects is not None:
            subjects = even_subjects(args.subjects, args.clips)
            per = sorted({subjects.count(s) for s in set(subjects)})
            note = (f"shape given: {args.clips} clips of {args.subjects} subjects, spread evenly "
                    f"({'-'.join(map(str, per))} per subject); no index read")
        else:
            subjects = read_subjects(args.index)
            note = f"{args.index}: {len(subjects)} clips of {len(set(subjects))} subjects"
        unit_list = units(params, subjects)
        import torch

        cpu = measure_rates(params, "cpu", args.steps, args.results, args.min_seconds)
        start_s, start_src = throughput.process_start_seconds(), "measured on this machine"
        if torch.cuda.is_available():
            gpu = {**measure_rates(params, "cuda", args.steps, min_seconds=args.min_seconds),
                   "source": "measured here"}
        elif args.gpu_record:
            gpu = {**record_rates(params, args.gpu_record),
                   "source": f"measured, record {args.gpu_record}"}
            if gpu.get("process_start_s") is not None:
                start_s, start_src = gpu["process_start_s"], f"record {args.gpu_record}"
        else:
            gpu = {**assumed_rates(params, args.gpu_images_per_s, args.gpu_overhead_s),
                   "source": f"{ASSUMED}: no GPU here and no --gpu-record"}
    except (FileNotFoundError, ValueError, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    gpus = sorted({1, *args.gpus})  # one GPU's wall (= the GPU-hours) is always shown
    rec = plan(params, unit_list, cpu, gpu, gpus, start_s, machine.available_cores())
    rec["gpu"]["process_start_source"] = start_src
    cfg = params.train
    rec = {"profile": args.profile, "date": datetime.date.today().isoformat(),
           "command": "python -m mer_core.plan " + " ".join(sys.argv[1:] if argv is None
                                                            else argv),
           "params": args.params + ("" if args.profile == "default"
                                    else f" + {args.profiles_dir}/{args.profile}.yaml"),
           "data": {"clips": len(subjects), "subjects": len(set(subjects)), "note": note},
           "recipe": {"image_size": cfg.image_size, "batch_size": cfg.batch_size,
                      "epochs": cfg.epochs, "n_seeds": cfg.n_seeds, "select": cfg.select,
                      "lr_grid": cfg.lr_grid, "inner_folds": cfg.inner_folds,
                      "precision": cfg.precision},
           **rec}
    print(format_plan(rec))
    if args.out:
        io.write_json(args.out, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
