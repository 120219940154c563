"""Training throughput: bare model step per backbone (fp32 vs bf16, both channels_last), and the
real LOSO training loop against the bare step (the data path must not be the bottleneck).

Usage (from the project root, after `make setup`; the loop part needs `dvc repro apex` first):

    .venv/bin/python benchmarks/train_throughput.py                 # every backbone, params.yaml size
    .venv/bin/python benchmarks/train_throughput.py --backbones seresnext50_32x4d --steps 10
    .venv/bin/python benchmarks/train_throughput.py --size 224 --batch 8 --steps 2 --no-bf16 --no-loop
    # on a GPU machine: a record for the cost planner (python -m mer_core.plan --gpu-record)
    .venv/bin/python benchmarks/train_throughput.py --device cuda --size 224 --batch 32 --no-loop \
        --record benchmarks/throughput/<gpu>.json

Measured in one run, one thing after the other:
1. the bare step (`mer_core.throughput.bare_step`: forward + backward + AdamW on one fixed
   batch) of each backbone in this process with every thread, fp32 and bf16 autocast, with its test pass and model creation
   (`--record` writes them as a throughput record for `python -m mer_core.plan`);
2. the real loop of one fold (`fold.fit_fold`: shuffling, batch gathering, augmentation, focal
   loss, schedule) against the bare step, both with the threads ONE fold worker gets
   (`train.threads`), the bare step on a fixed batch of real frames: the data-path ratio,
   target >= 0.90;
3. the whole LOSO runs of the last `dvc repro` (`results/<experiment>/`: fold workers in
   parallel, per-epoch test pass, Grad-CAM, files and process start included), read from their
   records, against as many bare steps running at once in separate processes, measured here.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
from pathlib import Path

import numpy as np
import torch

from mer_core import config, fold, frame_cache, handover, io, loso, machine, throughput, vocab
from mer_core.losses import make_loss
from mer_core.models import create_model
from mer_core.throughput import bare_step

ROOT = Path(__file__).resolve().parents[1]


def _bare_process(barrier, queue, threads, args, kwargs) -> None:
    torch.set_flush_denormal(True)  # as the fold workers of loso.run_experiment
    torch.set_num_threads(threads)
    create_model(args[0], 5)  # imports and first construction outside the timed window
    barrier.wait()
    queue.put(bare_step(*args, **kwargs))


def parallel_bare(workers: int, threads: int, *args, **kwargs) -> float:
    """Summed images/s of ``workers`` bare steps running at once (spawned processes)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_bare_process, args=(barrier, queue, threads, args, kwargs))
             for _ in range(workers)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def _data(params: config.Params):
    index = handover.read_index(ROOT / "data" / "index.csv")
    labels = io.read_json(ROOT / "data" / "dataset.json")["labels"]
    name = next(iter(params.experiments))
    exp = params.experiments[name]
    return name, exp, index, labels, frame_cache.load_cache(ROOT / "data" / "frames", exp.frames, index)


def frame_tensors(params: config.Params) -> tuple[torch.Tensor, np.ndarray, np.ndarray, int]:
    """The default frame cache as the loop sees it (uint8, resized once), its classes, the test
    mask of the first subject's fold, and the number of classes."""
    _, _, index, labels, images = _data(params)
    x = fold.prepare_images(images, params.train.image_size, torch.device("cpu"))
    y = np.array([labels.index(v) for v in index["label"]])
    return x, y, (index["subject"] == index["subject"].iloc[0]).to_numpy(), len(labels)


def fold_loop(cfg: config.TrainConfig, x: torch.Tensor, y: np.ndarray, test: np.ndarray,
              n_classes: int, backbone: str, precision: str, epochs: int) -> float:
    """Images/s of :func:`mer_core.fold.fit_fold` on the real frame cache (one LOSO fold)."""
    cfg = dataclasses.replace(cfg, epochs=epochs)
    torch.manual_seed(0)
    model = create_model(backbone, n_classes).to(memory_format=torch.channels_last)
    loss = make_loss("focal", y[~test], n_classes, gamma=cfg.focal_gamma)
    out = fold.fit_fold(model, loss, x[~test], torch.from_numpy(y[~test]), x[test], y[test],
                         cfg, precision, seed=0, progress=False)
    return out["train_images"] / out["train_s"]


def recorded_runs(params: config.Params) -> list[dict]:
    """Training images per elapsed second of each finished LOSO run in ``results/``."""
    rows = []
    for name in params.experiments:
        run = ROOT / "results" / name / "run.json"
        if not run.is_file():
            continue
        info = io.read_json(run)
        metas = [io.read_json(p) for p in (run.parent / "folds").glob("*__seed*.json")]
        if not info.get("wall_s_this_call") or len(metas) != info.get("n_folds"):
            continue  # resumed or partial: the elapsed time does not cover every fold
        images = sum(m["train_images"] for m in metas)
        rows.append({"name": name, "images": images, "elapsed": info["wall_s_this_call"],
                     "workers": info.get("workers") or 1, "threads": info["threads"]})
    return rows


def main() -> None:
    params = config.load(ROOT / "params.yaml")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default=",".join(vocab.BACKBONES))
    ap.add_argument("--size", type=int, default=params.train.image_size)
    ap.add_argument("--batch", type=int, default=params.train.batch_size)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--loop-epochs", type=int, default=params.train.epochs,
                    help="epochs of the measured fold (default: params.yaml, as a real fold)")
    ap.add_argument("--no-loop", action="store_true", help="skip the real-loop measurements")
    ap.add_argument("--no-bf16", action="store_true", help="fp32 only (e.g. 224 px on a CPU)")
    ap.add_argument("--device", default="cpu",
                    help="cpu, or cuda on a GPU machine (the bare-step table only, no loop)")
    ap.add_argument("--record", default="",
                    help="also write the bare-step table as a throughput record for "
                         "`python -m mer_core.plan --gpu-record`, e.g. "
                         "benchmarks/throughput/<machine>.json")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cores = machine.available_cores()
    torch.set_flush_denormal(True)  # as loso.run_experiment on a CPU, for both sides
    torch.set_num_threads(cores)
    bf16 = machine.cpu_has_bf16()
    cpu = machine.cpu_model()
    # the second column: bf16 autocast on this device (CPU: bf16, CUDA: amp-bf16)
    low = machine.select_precision("bf16", dev)
    print(f"torch {torch.__version__}, {machine.device_name(dev)}, {cores} threads, native bf16 "
          f"(AVX512-BF16/AMX): {bf16}, {args.size} px, batch {args.batch}, channels_last")
    print(f"{'backbone':22s} {'fp32 img/s':>11s} {low + ' img/s':>14s} {'ratio':>7s}")
    bare_step("resnet50", args.size, args.batch, "fp32", 1, warmup=1, device=args.device)  # set-up
    precisions = ["fp32"] + ([] if args.no_bf16 else [low])
    measured = {}
    for name in config.split_list(args.backbones):
        # measured either way; without native bf16 it is emulated and slower (auto picks fp32)
        m = throughput.measure_backbone(name, args.size, args.batch, precisions, args.steps,
                                        device=args.device, warmup=3)
        measured[name] = m
        fp32 = m["images_per_s"]["fp32"]
        fast = m["images_per_s"].get(low, float("nan"))
        print(f"{name:22s} {fp32:11.1f} {fast:14.1f} {fast / fp32:7.2f}", flush=True)
    if args.record:
        rec = throughput.make_record(args.device, args.size, args.batch, args.steps, measured,
                                     throughput.process_start_seconds())
        print(f"throughput record: {throughput.write_record(args.record, rec)}")
    if args.no_loop or dev.type != "cpu":
        return
    name = "seresnext50_32x4d"
    precision = machine.select_precision(params.train.precision, torch.device("cpu"))
    each = params.train.threads
    workers = loso.plan_workers(params.train.workers, torch.device("cpu"), cores, each, 26)
    step = (name, params.train.image_size, params.train.batch_size, precision, args.steps)
    frames_x, frames_y, test, n_classes = frame_tensors(params)
    # a fixed batch of real frames, normalised as the loop does
    x = fold.BatchAugment([], torch.Generator()).normalise(frames_x[:params.train.batch_size])
    torch.set_num_threads(each)
    # bare step (on real frames) before and after the fold: drift of a shared machine cancels
    bare_before = bare_step(*step, x=x)
    loop = fold_loop(params.train, frames_x, frames_y, test, n_classes, name, precision,
                     args.loop_epochs)
    bare_after = bare_step(*step, x=x)
    bare_one = (bare_before + bare_after) / 2
    print(f"one fold ({name}, {precision} as train.precision gives, {each} thread(s) as one of "
          f"{workers} fold worker(s), {args.loop_epochs} epochs from a fresh model, augment "
          f"{params.train.augment or 'none'}): fit_fold {loop:.1f} img/s vs bare step "
          f"{bare_one:.1f} img/s ({bare_before:.1f} before, {bare_after:.1f} after) = "
          f"{loop / bare_one:.2f} x (target >= 0.90)", flush=True)
    runs = recorded_runs(params)
    if not runs:
        print("whole LOSO runs: none finished in results/ (run `dvc repro` for this line)")
        return
    bare_all = parallel_bare(workers, each, *step, x=x) if workers > 1 else bare_one
    for r in runs:
        rate = r["images"] / r["elapsed"]
        print(f"whole LOSO run results/{r['name']} ({r['workers']} worker(s) x {r['threads']} "
              f"thread(s)): {r['images']} training images in {r['elapsed'] / 60:.1f} min = "
              f"{rate:.1f} img/s vs {workers} bare step(s) at once {bare_all:.1f} img/s = "
              f"{rate / bare_all:.2f} x")


if __name__ == "__main__":
    main()
