"""Leave-one-subject-out (LOSO) training that resumes, shards and merges.

For every seed and every test subject (subjects sorted) a freshly initialised model, seeded from
(seed, subject) so that a fold's result does not depend on which folds ran before it, is trained on
all other subjects for a FIXED number of epochs (the test subject never selects the epoch) and then
predicts the test subject. As soon as a fold ends its files are written atomically:

    results/<exp>/folds/<subject>__seed<k>.csv                predictions (the completion marker)
    results/<exp>/folds/<subject>__seed<k>.json               fingerprint, params, timings
    results/<exp>/folds/<subject>__seed<k>.epochs.csv         per-epoch train loss + test metrics
    results/<exp>/folds/<subject>__seed<k>.epoch_predictions.csv  per-epoch test predictions
    results/<exp>/cams/<subject>__seed<k>.npz                 Grad-CAM of the test clips
    results/<exp>/shards/<i>of<n>.json                        what a run (or shard) was asked to do

On a CPU the folds train in parallel worker processes (``train.workers``; by default one per
core, each with one thread), which is faster than one process with every thread at small input
sizes. CPU training flushes denormal floats to zero (FTZ/DAZ): the focal loss drives many
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

The per-epoch test metrics exist only for the evaluation stage's leakage check (how much picking the
epoch on the test subject would inflate the score); they never choose anything here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import pickle
import platform
import random
import re
import sys
import time
import warnings
from pathlib import Path
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mer_core import deps, io
from mer_core.frames import CacheMismatchError, FoldFrames, load_fold_frames
from mer_core import vocab
from mer_core.config import ExperimentConfig, TrainConfig, check_strategy, parse_folds
from mer_core.gradcam import grad_cam
from mer_core.losses import make_loss
from mer_core.models import cam_layer, create_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The modules whose source defines what a fold computes: this module, the index reader and
#: metrics the train notebook uses, and everything they import (their hash is the "code version"). A test
#: holds them equal to the train stage's code deps in dvc.yaml.
CODE_MODULES = tuple(deps.closure(("train", "datasets", "metrics")))

#: TrainConfig keys that choose WHICH folds run (or how many at once), not what a fold computes.
_PLAN_KEYS = ("folds", "max_folds", "seed", "n_seeds", "workers")

ModelFactory = Callable[[str, int], nn.Module]


class FingerprintError(RuntimeError):
    """Finished folds or shards that were made with different settings or code."""


class IncompleteError(RuntimeError):
    """Folds missing when merging."""


# ----------------------------------------------------------------------------- input checks


def check_cache(images: np.ndarray, index: pd.DataFrame, ids=None, source: str = "frame cache"
                ) -> None:
    """Check that an image cache lines up with the index.

    Args:
        images: N x S x S x 3 uint8 array, one row per index row.
        index: the index (``sample_id`` column).
        ids: the sample ids stored with the cache (same order), or None to check the length only.
        source: a name for error messages (e.g. the .npy path).

    Raises:
        CacheMismatchError: wrong dtype/shape, a different number of rows, or ids that differ
            (the message names the first differing row).
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        what = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images)
        raise CacheMismatchError(f"{source}: expected a uint8 N x S x S x 3 array, got {what}")
    if len(images) != len(index):
        raise CacheMismatchError(f"{source}: {len(images)} images but the index has {len(index)} "
                                 f"rows; rebuild the frame cache (apex stage) for this index")
    if ids is not None:
        ids = [str(i) for i in ids]
        want = [str(i) for i in index["sample_id"]]
        if len(ids) != len(want):
            raise CacheMismatchError(f"{source}: {len(ids)} sample ids but the index has "
                                     f"{len(want)} rows")
        for row, (a, b) in enumerate(zip(ids, want)):
            if a != b:
                raise CacheMismatchError(f"{source}: row {row} is {a!r} but index row {row} is "
                                         f"{b!r}; the cache is not aligned with the index")


def load_frames(frames_dir: str | Path, strategy: str, index: pd.DataFrame) -> FoldFrames:
    """The cached frames of one strategy for every fold, checked against the index.

    Raises:
        ConfigError: unknown frame strategy (lists the valid ones).
        FileNotFoundError: the cache files are missing.
        CacheMismatchError: length or ids differ from the index.
    """
    check_strategy(strategy)
    frames = load_fold_frames(frames_dir, strategy, index)
    for key, arr in frames.variants.items():
        check_cache(arr, index, source=f"{frames_dir}/{key}")
    return frames


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


# ----------------------------------------------------------------------------- environment


def select_device(name: str = "auto") -> torch.device:
    """``auto``: cuda if available, else mps, else cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What a fold ran on, for fingerprints and reports: the CPU or GPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_model()
    return device.type


def select_precision(precision: str, device: torch.device) -> str:
    """Resolve ``auto | fp32 | bf16`` for a device.

    Returns:
        ``"fp32"``; ``"bf16"`` (CPU bf16 autocast + channels_last); ``"amp-bf16"`` or
        ``"amp-fp16"`` (CUDA autocast + channels_last; fp16 with a gradient scaler).
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision {precision!r}; expected one of auto, fp32, bf16")
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "amp-bf16"
        return "amp-fp16" if precision == "auto" else "amp-bf16"
    if device.type == "cpu":
        if precision == "bf16" or cpu_has_bf16():
            if precision == "bf16" and not cpu_has_bf16():
                warnings.warn("bf16 requested on a CPU without native bf16: expect it to be slow")
            return "bf16"
        return "fp32"
    if precision == "bf16":
        warnings.warn(f"bf16 is not used on {device.type}; training in fp32")
    return "fp32"


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision == "amp-bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp-fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _channels_last(device: torch.device) -> bool:
    """channels_last for every precision on CPU (fp32 too: 1.2x at 48 px, AVX2) and CUDA."""
    return device.type in ("cpu", "cuda")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- fingerprints


def code_version() -> str:
    """sha256 (16 hex) of the mer_core modules that define a fold's computation (CODE_MODULES)."""
    h = hashlib.sha256()
    for name in CODE_MODULES:
        h.update(name.encode() + b"\0" + (deps.PACKAGE_DIR / f"{name}.py").read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _file_sha(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fold_seed(seed: int, subject: str) -> int:
    """The seed of one fold: a hash of (seed, test subject), independent of the fold order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{subject}".encode()).digest()[:4], "little")


def _fold_stem(subject: str, seed: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', str(subject))}__seed{seed}"


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


# ----------------------------------------------------------------------------- data path


def prepare_images(images: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x size x size uint8 tensor on ``device`` (resized once)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    if x.shape[-1] != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).round().clamp(0, 255).to(torch.uint8)
    return x.to(device)


class BatchAugment:
    """Augment and normalise whole uint8 batches with tensor ops (no per-image Python loop).

    Args:
        ops: any of ``flip`` (horizontal, p = 0.5), ``affine`` (rotation +-8 deg, scale 0.95-1.05,
            shift +-4 % of the side; border padding), ``color`` (brightness and contrast x 0.8-1.2).
        generator: CPU ``torch.Generator`` for every random draw (determinism).
        channels_last: return the batch in channels_last memory format.
    """

    def __init__(self, ops, generator: torch.Generator, channels_last: bool = False):
        unknown = [o for o in ops if o not in ("flip", "affine", "color")]
        if unknown:
            raise ValueError(f"augment: unknown op(s) {unknown}; valid: flip, affine, color")
        self.ops = list(ops)
        self.gen = generator
        self.channels_last = channels_last
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _rand(self, n: int, lo: float, hi: float, device) -> torch.Tensor:
        return (torch.rand(n, generator=self.gen) * (hi - lo) + lo).to(device)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 255] float batch -> ImageNet-normalised float batch."""
        if x.device not in self._stats:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255
            self._stats[x.device] = (mean, std)
        mean, std = self._stats[x.device]
        x = (x.float() - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        x = x.float()
        n, dev = x.shape[0], x.device
        if train and "flip" in self.ops:
            flip = (torch.rand(n, generator=self.gen) < 0.5).to(dev)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if train and "affine" in self.ops:
            angle = self._rand(n, -8.0, 8.0, dev) * (np.pi / 180)
            scale = self._rand(n, 0.95, 1.05, dev)
            tx, ty = self._rand(n, -0.08, 0.08, dev), self._rand(n, -0.08, 0.08, dev)
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.stack([torch.stack([cos, -sin, tx], 1),
                                 torch.stack([sin, cos, ty], 1)], 1)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if train and "color" in self.ops:
            b = self._rand(n, 0.8, 1.2, dev).view(-1, 1, 1, 1)
            c = self._rand(n, 0.8, 1.2, dev).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * c + mean * b).clamp(0, 255)
        return self.normalise(x)


# ----------------------------------------------------------------------------- one fold


def _fold_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """Accuracy, UF1 (macro F1 over classes in y or p), UAR (mean recall over classes in y)."""
    if len(y) == 0:
        return {"test_accuracy": float("nan"), "test_uf1": float("nan"), "test_uar": float("nan")}
    f1s, recalls = [], []
    for c in np.union1d(y, p):
        tp = np.sum((y == c) & (p == c))
        n_true, n_pred = np.sum(y == c), np.sum(p == c)
        f1s.append(2 * tp / (n_true + n_pred))
        if n_true:
            recalls.append(tp / n_true)
    return {"test_accuracy": float(np.mean(y == p)), "test_uf1": float(np.mean(f1s)),
            "test_uar": float(np.mean(recalls))}


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, aug: BatchAugment, precision: str,
                  batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (N x C, float64) of uint8 images, without augmentation."""
    model.eval()
    out = []
    for s in range(0, x.shape[0], batch_size):
        with _autocast(precision, x.device):
            logits = model(aug(x[s:s + batch_size], train=False))
        out.append(torch.softmax(logits.float(), 1).cpu().double().numpy())
    n_cls = getattr(model, "num_classes", None)
    return np.concatenate(out) if out else np.zeros((0, n_cls or 0))


def _steps_per_epoch(n: int, batch_size: int) -> int:
    # Full batches only (the images left over differ every epoch, as the order is reshuffled):
    # a short last batch costs as much as a full one on a CPU and builds new kernels for its
    # shape. A training set smaller than one batch is one batch.
    return max(1, n // batch_size)


def fit_fold(model: nn.Module, loss_fn: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
             x_test: torch.Tensor, y_test: np.ndarray, cfg: TrainConfig, precision: str,
             seed: int, progress: bool = True, desc: str = "") -> dict:
    """Train one fold for ``cfg.epochs`` epochs, evaluating the test subject after each epoch.

    Args:
        model: a fresh model, already on the device (channels_last on CPU and CUDA).
        loss_fn: the fold's loss.
        x_train, y_train: uint8 N x 3 x S x S images and int64 classes, on the device.
        x_test, y_test: the test subject's images (device) and classes (NumPy).
        cfg: optimiser, schedule, epochs, batch size, augmentation.
        precision: from :func:`select_precision`.
        seed: the fold seed (shuffling and augmentation generators).
        progress: show a tqdm bar over epochs.
        desc: the bar's label.

    Returns:
        dict with ``proba`` (final test probabilities), ``epochs`` (list of per-epoch dicts),
        ``epoch_preds`` (list of per-epoch predicted classes), ``train_images``, ``train_s``.
    """
    device = x_train.device
    n = x_train.shape[0]
    if n < 2:
        raise ValueError(f"{desc}: a fold needs at least 2 training images, got {n}")
    bs = cfg.batch_size
    steps = _steps_per_epoch(n, bs)
    total_steps = steps * cfg.epochs
    from timm.optim import param_groups_weight_decay  # no decay on norms and biases
    groups = param_groups_weight_decay(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        # fused: one kernel for all 26 M parameters (on 2 CPU cores ~0.05 s less per step)
        opt = torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    else:
        raise ValueError(f"optimizer {cfg.optimizer!r}; expected adamw or sgd")
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        raise ValueError(f"schedule {cfg.schedule!r}; expected cosine or onecycle")
    scaler = torch.amp.GradScaler(device.type) if precision == "amp-fp16" else None
    g_perm = torch.Generator().manual_seed(seed + 1)
    aug = BatchAugment(cfg.augment_list, torch.Generator().manual_seed(seed + 2),
                       channels_last=_channels_last(device))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    rows, epoch_preds, train_s = [], [], 0.0
    bar = tqdm(range(cfg.epochs), desc=desc, leave=False, disable=not progress, file=sys.stderr,
               mininterval=2.0)
    for epoch in bar:
        model.train()
        sync()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g_perm).to(device)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        lr = opt.param_groups[0]["lr"]
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            xb, yb = aug(x_train[idx]), y_train[idx]
            with _autocast(precision, device):
                logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
        train_loss = float(loss_sum) / seen  # one sync per epoch
        sync()
        train_s += time.perf_counter() - t0
        proba = predict_proba(model, x_test, aug, precision)
        pred = proba.argmax(1)
        row = {"epoch": epoch + 1, "train_loss": train_loss, **_fold_metrics(y_test, pred),
               "n_test": int(len(y_test)), "n_correct": int(np.sum(pred == y_test)), "lr": lr}
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"{desc}: training loss is {train_loss} at epoch {epoch + 1}; "
                                     f"lower train.lr (now {cfg.lr})")
        rows.append(row)
        epoch_preds.append(pred)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{row['test_accuracy']:.2f}", refresh=False)
    bar.close()
    return {"proba": proba, "epochs": rows, "epoch_preds": epoch_preds,
            "train_images": seen * cfg.epochs, "train_s": train_s, "aug": aug}


# ----------------------------------------------------------------------------- LOSO driver


def plan_folds(subjects, folds: str = "all", max_folds: int = 0) -> list[str]:
    """Test subjects of this run: sorted, every n-th from i for ``"i/n"``, the first k if k > 0."""
    i, n = parse_folds(folds)
    chosen = sorted(set(map(str, subjects)))[i::n]
    return chosen[:max_folds] if max_folds > 0 else chosen


def weights_path(pretrained: str, backbone: str) -> str:
    """``train.pretrained`` for one backbone: ``{backbone}`` in the path becomes its name."""
    return (pretrained or "").replace("{backbone}", backbone)


def _create(name: str, num_classes: int, pretrained: str = "") -> nn.Module:
    return create_model(name, num_classes, pretrained=weights_path(pretrained, name) or None)


def _default_factory(pretrained: str) -> ModelFactory:
    return functools.partial(_create, pretrained=pretrained)  # picklable for fold workers


def _params(name, exp, cfg, labels, data_hash, device, precision, factory_tag) -> dict:
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _PLAN_KEYS}
    weights = weights_path(cfg.pretrained, exp.backbone)
    if weights and weights.lower() != "imagenet" and Path(weights).is_file():
        train["pretrained_sha256"] = _file_sha(weights)
    return {"experiment": name, "frames": exp.frames, "backbone": exp.backbone, "loss": exp.loss,
            "train": train, "labels": list(labels), "data": data_hash, "code": code_version(),
            "device": device.type, "device_name": device_name(device), "precision": precision,
            "model_factory": factory_tag}


def run_experiment(name: str, exp: ExperimentConfig, cfg: TrainConfig, index: pd.DataFrame,
                   images: np.ndarray | FoldFrames, labels: list[str], out_dir: str | Path,
                   fresh: bool = False, model_factory: ModelFactory | None = None,
                   progress: bool = True, image_ids=None, device: str = "auto",
                   threads: int | None = None, redo_stale: bool = False) -> pd.DataFrame:
    """Train and evaluate one experiment leave-one-subject-out, resumably.

    Args:
        name: experiment name (written into every prediction row).
        exp: frames, backbone, loss (checked: unknown values list the valid choices).
        cfg: the train section (seeds, folds shard, max_folds, optimiser, ...).
        index: the index (``sample_id``, ``subject``, ``label``), row order = cache order.
        images: N x S x S x 3 uint8 cache of ``exp.frames`` aligned with ``index``, or a
            :class:`mer_core.frames.FoldFrames` (:func:`load_frames`) when the frames depend on
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

    dev = select_device(device)
    precision = select_precision(cfg.precision, dev)
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or available_cores()
    subjects_all = sorted(set(index["subject"].astype(str)))
    if len(subjects_all) < 2:
        raise ValueError(f"index: LOSO needs >= 2 subjects, got {subjects_all}")
    fold_key = {s: images.key(s) for s in subjects_all}
    used = sorted(set(fold_key.values()))
    data_hash = _sha(*(images.variants[k].tobytes() for k in used), json.dumps(fold_key, sort_keys=True),
                     "\n".join(index["sample_id"].astype(str)),
                     "\n".join(index["subject"].astype(str)), y_all.tobytes())
    params = _params(name, exp, cfg, labels, data_hash, dev, precision, factory_tag)
    fold_fp = _sha(json.dumps(params, sort_keys=True))
    run_params = {**params, "seeds": cfg.seeds, "subjects": subjects_all}
    run_fp = _sha(json.dumps(run_params, sort_keys=True))

    plan = [(seed, s) for seed in cfg.seeds for s in plan_folds(subjects_all, cfg.folds,
                                                                cfg.max_folds)]
    if fresh:
        for f in ("predictions.csv", "epoch_log.csv", "epoch_predictions.csv", "run.json"):
            (out / f).unlink(missing_ok=True)
        if parse_folds(cfg.folds) == (0, 1):  # a full fresh run owns the whole folder
            for f in (out / "shards").glob("*.json"):
                f.unlink()
    todo, stale = [], []
    for seed, subject in plan:
        stem = _fold_stem(subject, seed)
        done = (out / "folds" / f"{stem}.csv").is_file()
        if done and not fresh:
            try:
                _check_fold(out, stem, fold_fp, params)
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
        for f in ("predictions.csv", "epoch_log.csv", "epoch_predictions.csv", "run.json"):
            (out / f).unlink(missing_ok=True)
        for f in (out / "shards").glob("*.json"):
            if io.read_json(f).get("fingerprint") != run_fp:
                f.unlink()
    io.write_json(out / "shards" / f"{i}of{n}.json", {
        "fingerprint": run_fp, "fold_fingerprint": fold_fp, "params": run_params,
        "train_config": dataclasses.asdict(cfg), "folds": cfg.folds, "max_folds": cfg.max_folds,
        "planned": [_fold_stem(s, k) for k, s in plan],
        "sample_ids": index["sample_id"].astype(str).tolist()})

    workers = plan_workers(cfg.workers, dev, threads, cfg.threads, len(todo), model_factory)
    bar = tqdm(total=len(todo), desc=f"{name}: folds" + (f" ({workers} workers)" if workers > 1
                                                          else ""),
               disable=not progress, file=sys.stderr, mininterval=2.0)
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    if workers == 1:  # before any op: threads torch starts inherit the denormal flag
        torch.set_num_threads(cfg.threads)
        if dev.type == "cpu":
            torch.set_flush_denormal(True)
            torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        xs = {k: prepare_images(images.variants[k], cfg.image_size, dev) for k in used}
        state = dict(name=name, exp=exp, cfg=cfg, index=index, labels=labels, xs=xs,
                     fold_key=fold_key, y_all=y_all, y_dev=torch.from_numpy(y_all).to(dev),
                     subj=index["subject"].astype(str).to_numpy(), model_factory=model_factory,
                     dev=dev, precision=precision, params=params, fold_fp=fold_fp, out=out)
        if workers > 1:
            _run_folds_parallel(state, todo, workers, cfg.threads, bar)
        else:
            for seed, subject in todo:
                bar.set_postfix(subject=subject, seed=seed, refresh=False)
                _run_fold(**state, seed=seed, subject=subject, progress=progress)
                bar.update(1)
    finally:
        if workers == 1:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)
            if dev.type == "cpu":
                torch.set_flush_denormal(False)  # torch's default
    bar.close()

    stems = [_fold_stem(s, k) for k, s in plan]
    if (i, n) == (0, 1) and cfg.max_folds == 0:
        return merge_shards(out, _elapsed=time.perf_counter() - t_start, _workers=workers)
    preds = _order(pd.concat([_read_csv(out / "folds" / f"{s}.csv") for s in stems],
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


_WORKER_STATE: dict = {}


def _worker_init(state: dict, threads: int) -> None:
    torch.set_flush_denormal(True)  # before any op: the threads torch starts inherit it
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _WORKER_STATE.update(state)


def _worker_fold(seed: int, subject: str) -> None:
    _run_fold(**_WORKER_STATE, seed=seed, subject=subject, progress=False)


def _run_folds_parallel(state: dict, todo: list, workers: int, threads: int, bar) -> None:
    """Train ``todo`` folds in ``workers`` spawned processes (each writes its own fold files)."""
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe after OpenMP has started
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(state, threads)) as pool:
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


def _check_fold(out: Path, stem: str, fold_fp: str, params: dict) -> None:
    meta_path = out / "folds" / f"{stem}.json"
    if not meta_path.is_file():
        raise FingerprintError(f"{out / 'folds' / stem}.csv exists without its .json record; "
                               f"pass fresh=True to redo the fold")
    meta = io.read_json(meta_path)
    if meta.get("fingerprint") != fold_fp:
        diff = _diff(meta.get("params", {}), params) or ["(record without params)"]
        raise FingerprintError(
            f"{meta_path}: this finished fold was made with different settings: "
            f"{'; '.join(diff[:8])}. Pass fresh=True (papermill -p fresh True) to redo the folds, "
            f"or use another results folder; results of different settings are never mixed.")


def _run_fold(name, exp, cfg, index, labels, xs, fold_key, y_all, y_dev, subj, model_factory,
              dev, precision, params, fold_fp, out, seed, subject, progress) -> None:
    t0 = time.perf_counter()
    x_all = xs[fold_key[subject]]
    stem = _fold_stem(subject, seed)
    test = np.flatnonzero(subj == subject)
    train = np.flatnonzero(subj != subject)
    fs = fold_seed(seed, subject)
    random.seed(fs)
    np.random.seed(fs)
    torch.manual_seed(fs)
    model = model_factory(exp.backbone, len(labels)).to(dev)
    if _channels_last(dev):
        model = model.to(memory_format=torch.channels_last)
    loss_fn = make_loss(exp.loss, y_all[train], len(labels), cfg.focal_gamma,
                        cfg.focal_alpha).to(dev)
    tr, te = torch.from_numpy(train).to(dev), torch.from_numpy(test).to(dev)
    res = fit_fold(model, loss_fn, x_all[tr], y_dev[tr], x_all[te], y_all[test], cfg, precision,
                   fs, progress, desc=f"{subject} seed {seed}")
    proba, y_true = res["proba"], y_all[test]
    y_pred = proba.argmax(1)
    lab = np.asarray(labels, dtype=object)
    ids = index["sample_id"].astype(str).to_numpy()[test]

    cam = grad_cam(model, res["aug"](x_all[te], train=False), cam_layer(model))
    with io.atomic_path(out / "cams" / f"{stem}.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, sample_id=ids.astype(str), cam=cam.astype(np.float16),
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
    pred = pd.DataFrame({"sample_id": ids, "subject": subject, "y_true": lab[y_true],
                         "y_pred": lab[y_pred]})
    for c, cls in enumerate(labels):
        pred[f"p_{cls}"] = proba[:, c]
    pred["seed"] = seed
    pred["experiment"] = name
    wall = time.perf_counter() - t0
    io.write_json(out / "folds" / f"{stem}.json", {
        "fingerprint": fold_fp, "params": params, "subject": subject, "seed": seed,
        "fold_seed": fs, "frames": fold_key[subject],
        "n_train": int(len(train)), "n_test": int(len(test)),
        "wall_s": round(wall, 3), "train_s": round(res["train_s"], 3),
        "train_images": int(res["train_images"]),
        "images_per_s": round(res["train_images"] / max(res["train_s"], 1e-9), 2),
        "device": str(dev), "precision": precision, "threads": torch.get_num_threads()})
    io.write_csv(out / "folds" / f"{stem}.csv", pred)  # last: marks the fold as finished


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[])


def _order(df: pd.DataFrame, sample_ids: list[str]) -> pd.DataFrame:
    pos = {s: i for i, s in enumerate(sample_ids)}
    df = df.assign(_pos=df["sample_id"].astype(str).map(pos))
    return df.sort_values(["seed", "_pos"], kind="stable").drop(columns="_pos") \
        .reset_index(drop=True)


def merge_shards(out_dir: str | Path, _elapsed: float | None = None,
                 _workers: int | None = None) -> pd.DataFrame:
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
            diff = _diff(ref["params"], m["params"]) or ["(unknown)"]
            raise FingerprintError(
                f"{p} and {ref_path} were run with different settings: {'; '.join(diff[:8])}. "
                f"Re-run the stale shard(s) with fresh=True and the current settings.")
    params = ref["params"]
    seeds, subjects = params["seeds"], params["subjects"]
    missing, frames, epochs, epoch_preds, folds_meta = [], [], [], [], []
    for seed in seeds:
        for subject in subjects:
            stem = _fold_stem(subject, seed)
            csv = out / "folds" / f"{stem}.csv"
            if not csv.is_file():
                owner = [m["folds"] for _, m in metas if stem in m["planned"]]
                missing.append(f"{subject} seed {seed} ("
                               + (f"shard {owner[0]} unfinished" if owner else "no shard ran it")
                               + ")")
                continue
            _check_fold(out, stem, ref["fold_fingerprint"], {k2: v for k2, v in params.items()
                                                             if k2 not in ("seeds", "subjects")})
            frames.append(_read_csv(csv))
            epochs.append(_read_csv(out / "folds" / f"{stem}.epochs.csv"))
            epoch_preds.append(_read_csv(out / "folds" / f"{stem}.epoch_predictions.csv"))
            folds_meta.append(io.read_json(out / "folds" / f"{stem}.json"))
    if missing:
        have = ", ".join(sorted(m["folds"] for _, m in metas))
        raise IncompleteError(
            f"{out}: {len(missing)} of {len(seeds) * len(subjects)} folds missing: "
            f"{', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}. Shards run so far: "
            f"{have}; run the missing shard(s) (train.folds 'i/n') before merging.")
    preds = _order(pd.concat(frames, ignore_index=True), ref["sample_ids"])
    log = pd.concat(epochs, ignore_index=True).sort_values(["seed", "fold", "epoch"], kind="stable")
    ep = pd.concat(epoch_preds, ignore_index=True)
    io.write_csv(out / "predictions.csv", preds)
    io.write_csv(out / "epoch_log.csv", log)
    io.write_csv(out / "epoch_predictions.csv", ep)
    train_s = sum(m["train_s"] for m in folds_meta)
    images = sum(m["train_images"] for m in folds_meta)
    fold_wall = sum(m["wall_s"] for m in folds_meta)
    train_cfg = {k: v for k, v in ref["train_config"].items() if k not in ("folds", "max_folds")}
    io.write_json(out / "run.json", {
        "experiment": params["experiment"],
        "experiment_config": {k: params[k] for k in ("frames", "backbone", "loss")},
        "train_config": train_cfg, "labels": params["labels"], "seeds": seeds,
        "n_subjects": len(subjects), "n_folds": len(folds_meta), "n_clips": len(ref["sample_ids"]),
        "fingerprint": ref["fingerprint"], "fold_fingerprint": ref["fold_fingerprint"],
        "code_version": params["code"], "data_hash": params["data"],
        "device": folds_meta[0]["device"], "device_name": params.get("device_name"),
        "precision": params["precision"],
        "threads": folds_meta[0]["threads"], "workers": _workers,
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


def read_epoch_log(out_dir: str | Path) -> pd.DataFrame:
    """Per-epoch rows of every finished fold in ``results/<exp>/folds`` (also before merging)."""
    files = sorted((Path(out_dir) / "folds").glob("*.epochs.csv"))
    if not files:
        return pd.DataFrame(columns=["seed", "fold", "epoch", "train_loss", "test_accuracy",
                                     "test_uf1", "test_uar", "n_test", "n_correct", "lr"])
    return pd.concat([_read_csv(f) for f in files], ignore_index=True) \
        .sort_values(["seed", "fold", "epoch"], kind="stable").reset_index(drop=True)


__all__ = ["run_experiment", "merge_shards", "read_epoch_log", "load_frames", "check_cache",
           "plan_folds", "plan_workers", "fit_fold", "predict_proba", "BatchAugment",
           "prepare_images", "select_device", "select_precision", "cpu_has_bf16", "code_version", "fold_seed",
           "CacheMismatchError", "FingerprintError", "IncompleteError"]
