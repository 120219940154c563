"""Training throughput: bare model step per backbone (fp32 vs bf16 + channels_last), and the real
LOSO training loop against the bare step (the data path must not be the bottleneck).

Usage (from the project root, after `make setup`; the loop part needs `dvc repro apex` first):

    .venv/bin/python benchmarks/train_throughput.py                 # every backbone, params.yaml size
    .venv/bin/python benchmarks/train_throughput.py --backbones seresnext50_32x4d --steps 10
    .venv/bin/python benchmarks/train_throughput.py --size 224 --batch 8 --steps 2 --no-bf16 --no-loop

Everything is measured in one process, one after the other, with the same thread count.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mer_core import config, datasets, frames, io, train
from mer_core.losses import make_loss
from mer_core.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def bare_step(backbone: str, size: int, batch: int, precision: str, steps: int, warmup: int = 3,
              num_classes: int = 5) -> float:
    """Images/s of forward + backward + AdamW step on one fixed random batch (no data path)."""
    torch.manual_seed(0)
    model = create_model(backbone, num_classes).train()
    if precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as train.fit_fold
    x = torch.randn(batch, 3, size, size)
    if precision != "fp32":
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def loop_throughput(params: config.Params, backbone: str, precision: str, epochs: int) -> float:
    """Images/s of :func:`mer_core.train.fit_fold` on the real frame cache (one LOSO fold)."""
    index = datasets.read_index(ROOT / "data" / "index.csv")
    labels = io.read_json(ROOT / "data" / "dataset.json")["labels"]
    strategy = params.experiments[next(iter(params.experiments))].frames
    images = frames.load_cache(ROOT / "data" / "frames", strategy, index)
    cfg = params.train
    cfg.epochs = epochs
    x = train.prepare_images(images, cfg.image_size, torch.device("cpu"))
    y = np.array([labels.index(v) for v in index["label"]])
    test = (index["subject"] == index["subject"].iloc[0]).to_numpy()
    torch.manual_seed(0)
    model = create_model(backbone, len(labels))
    if precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    loss = make_loss("focal", y[~test], len(labels), gamma=cfg.focal_gamma)
    out = train.fit_fold(model, loss, x[~test], torch.from_numpy(y[~test]), x[test], y[test],
                         cfg, precision, seed=0, progress=False)
    return out["train_images"] / out["train_s"]


def main() -> None:
    params = config.load(ROOT / "params.yaml")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default=",".join(config.BACKBONES))
    ap.add_argument("--size", type=int, default=params.train.image_size)
    ap.add_argument("--batch", type=int, default=params.train.batch_size)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--loop-epochs", type=int, default=2)
    ap.add_argument("--no-loop", action="store_true", help="skip the real-loop measurement")
    ap.add_argument("--no-bf16", action="store_true", help="fp32 only (e.g. 224 px on a CPU)")
    args = ap.parse_args()
    torch.set_num_threads(train.available_cores())
    bf16 = train.cpu_has_bf16()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    print(f"torch {torch.__version__}, {cpu}, {torch.get_num_threads()} threads, native bf16 "
          f"(AVX512-BF16/AMX): {bf16}, {args.size} px, batch {args.batch}")
    print(f"{'backbone':22s} {'fp32 img/s':>11s} {'bf16+cl img/s':>14s} {'bf16/fp32':>10s}")
    bare = {}
    for name in config.split_list(args.backbones):
        fp32 = bare_step(name, args.size, args.batch, "fp32", args.steps)
        # measured either way; without native bf16 it is emulated and slower (auto picks fp32)
        fast = float("nan") if args.no_bf16 else bare_step(name, args.size, args.batch, "bf16",
                                                           args.steps)
        bare[name] = fast if bf16 else fp32
        print(f"{name:22s} {fp32:11.1f} {fast:14.1f} {fast / fp32:10.2f}", flush=True)
    if args.no_loop:
        return
    name = "seresnext50_32x4d" if "seresnext50_32x4d" in bare else next(iter(bare))
    precision = "bf16" if bf16 else "fp32"
    loop = loop_throughput(params, name, precision, args.loop_epochs)
    print(f"real LOSO loop ({name}, {precision} as precision=auto picks, augment "
          f"{params.train.augment or 'none'}): {loop:.1f} img/s = {loop / bare[name]:.2f} x the "
          f"bare {precision} step (target >= 0.90; includes shuffling and augmentation, not the "
          f"per-epoch test pass)")


if __name__ == "__main__":
    main()
