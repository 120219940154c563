"""What a profile costs: the exact number of training images and model set-ups it asks for, and
their time at the step rate measured here (and, as an estimate, at an assumed GPU rate).

Usage (from the project root, after `make setup` and `dvc repro data`):

    .venv/bin/python benchmarks/profile_cost.py real                  # params.yaml + profiles/real.yaml
    .venv/bin/python benchmarks/profile_cost.py inputs --steps 4
    .venv/bin/python benchmarks/profile_cost.py real --gpu-images-per-s 1500 --out reports/profiles/real/cost.json

The counts follow `mer_core.fold` exactly: full batches only (`n // batch_size` steps per
epoch), every seed x LOSO fold x experiment of the profile, and with `train.select` one more
training per learning rate of `lr_grid` and inner fold, on the inner training subjects
(`mer_core.nested.inner_splits`). Experiments whose folds already exist are not subtracted.
The CPU rate is the bare step (`train_throughput.bare_step`: forward, backward and AdamW on a
fixed batch, every thread of this process) of each backbone at the profile's input size; the
real loop runs about 0.85-0.9 x of it (README: throughput). The GPU line is an ESTIMATE from an
assumed rate, never a measurement: no GPU was lent to this project.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import bare_step  # noqa: E402

from mer_core import config, frame_cache, handover, io, machine, nested, profiles  # noqa: E402
from mer_core.loso import plan_folds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _images(n: int, cfg: config.TrainConfig) -> int:
    """Training images of one training on ``n`` images (full batches only, as fold.fit_fold;
    a set smaller than one batch is one batch of its own size)."""
    per_epoch = n // cfg.batch_size * cfg.batch_size if n >= cfg.batch_size else n
    return per_epoch * cfg.epochs


def count(params: config.Params, subjects: list[str]) -> dict:
    """Training images and trainings (model set-ups) per backbone of a whole profile run.

    Args:
        params: the merged parameters of the profile.
        subjects: the subject of every clip (the index's ``subject`` column).

    Returns:
        ``{backbone: {"images": int, "trainings": int}}``.
    """
    cfg = params.train
    per_subject = {s: subjects.count(s) for s in set(subjects)}
    lrs = config.split_list(cfg.lr_grid) if "lr" in config.split_list(cfg.select) else [cfg.lr]
    out: dict[str, dict] = {}
    for exp in params.experiments.values():
        tally = out.setdefault(exp.backbone, {"images": 0, "trainings": 0})
        for _ in cfg.seeds:
            for test in plan_folds(per_subject, cfg.folds, cfg.max_folds):
                train = sorted(s for s in per_subject if s != test)
                n_train = sum(per_subject[s] for s in train)
                tally["images"] += _images(n_train, cfg)
                tally["trainings"] += 1
                if not cfg.select:
                    continue
                for val in nested.inner_splits(train, cfg.inner_folds):
                    n_val = sum(per_subject[s] for s in val)
                    tally["images"] += len(lrs) * _images(n_train - n_val, cfg)
                    tally["trainings"] += len(lrs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", help="profiles/<name>.yaml, or 'default' for params.yaml alone")
    ap.add_argument("--index", default="data/index.csv")
    ap.add_argument("--steps", type=int, default=3, help="timed bare steps per backbone")
    ap.add_argument("--gpu-images-per-s", type=float, default=1000.0,
                    help="ASSUMED GPU training rate for the estimate")
    ap.add_argument("--gpu-setup-s", type=float, default=2.0,
                    help="ASSUMED seconds to build a model and start a training on the GPU")
    ap.add_argument("--out", default="", help="also write the numbers as JSON here")
    args = ap.parse_args()

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    merged = base if args.profile == "default" else profiles.merge(
        base, profiles.load_profile(args.profile, ROOT / "profiles"))
    params = config.from_dict(merged, f"profile {args.profile}")
    index = frame_cache.cached_index(handover.read_index(args.index), "data/frames") \
        if Path("data/frames").is_dir() else handover.read_index(args.index)
    counts = count(params, index["subject"].astype(str).tolist())
    cfg = params.train
    rows, cpu_h, gpu_h = [], 0.0, 0.0
    for backbone, c in counts.items():
        rate = bare_step(backbone, cfg.image_size, cfg.batch_size, "fp32", args.steps)
        cpu_h += c["images"] / rate / 3600
        gpu_h += (c["images"] / args.gpu_images_per_s + c["trainings"] * args.gpu_setup_s) / 3600
        rows.append({"backbone": backbone, **c, "cpu_fp32_images_per_s": round(rate, 2)})
        print(f"{backbone}: {c['images']:,} training images in {c['trainings']:,} trainings; "
              f"bare fp32 step here {rate:.1f} images/s at {cfg.image_size} px")
    record = {"profile": args.profile, "clips": len(index), "subjects": index["subject"].nunique(),
              "image_size": cfg.image_size, "epochs": cfg.epochs, "select": cfg.select,
              "lr_grid": cfg.lr_grid, "inner_folds": cfg.inner_folds, "n_seeds": cfg.n_seeds,
              "experiments": len(params.experiments), "backbones": rows,
              "cpu": machine.cpu_model(), "cpu_hours_fp32_all_threads": round(cpu_h, 1),
              "gpu_images_per_s_assumed": args.gpu_images_per_s,
              "gpu_setup_s_assumed": args.gpu_setup_s, "gpu_hours_estimate": round(gpu_h, 2)}
    print(f"whole profile: {cpu_h:.1f} h at the bare fp32 step rate of this CPU "
          f"({machine.cpu_model()}); GPU ESTIMATE {gpu_h:.1f} h at an assumed "
          f"{args.gpu_images_per_s:g} images/s + {args.gpu_setup_s:g} s per training")
    if args.out:
        io.write_json(args.out, record)


if __name__ == "__main__":
    main()
