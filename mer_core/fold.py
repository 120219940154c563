"""One LOSO fold: the images on the device, batch augmentation, the training loop, prediction.

:func:`train_fold` trains a fresh model on every subject but one for a fixed number of epochs
with a fixed lr, unless ``train.select`` is set: then the lr and/or the stopping epoch are chosen
by a cross-validation inside the training subjects (:mod:`mer_core.nested`), the model trains
over the same full ``train.epochs`` schedule with the chosen lr, and its state at the chosen
epoch is the one that predicts. Either way the test subject never selects anything: it is
evaluated after each epoch for the evaluation stage's leakage check only. It returns the test
subject's probabilities and Grad-CAM maps. It is seeded from (seed, test subject) (the inner fits
from that seed, the lr and the inner fold), so a fold's result does not depend on which folds ran
before it or beside it. Writing a fold's files, resuming and running folds in
parallel are the LOSO driver's job (:mod:`mer_core.loso`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mer_core import vocab
from mer_core.config import ExperimentConfig, TrainConfig
from mer_core.gradcam import grad_cam
from mer_core.losses import make_loss
from mer_core.machine import autocast, channels_last
from mer_core.models import cam_layer
from mer_core.nested import select_recipe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ModelFactory = Callable[[str, int], nn.Module]


@dataclass(frozen=True)
class FoldJob:
    """What every fold of one experiment shares (sent once to each fold worker).

    Attributes:
        name: the experiment (written into every prediction row).
        exp: frames, backbone, loss.
        cfg: the train section.
        sample_ids, subjects: of every index row (NumPy arrays of str, index order).
        labels: class names in fixed order.
        y: int64 class of every index row.
        xs: frame variant -> uint8 N x 3 x S x S images on the device.
        fold_key: test subject -> the variant its fold uses (:class:`mer_core.frame_cache.FoldFrames`).
        model_factory: ``(backbone, num_classes) -> nn.Module``.
        device, precision: from :mod:`mer_core.machine`.
        params, fingerprint: the fold fingerprint and what it hashes (:mod:`mer_core.fingerprints`).
        out: ``results/<experiment>``.
    """
    name: str
    exp: ExperimentConfig
    cfg: TrainConfig
    sample_ids: np.ndarray
    subjects: np.ndarray
    labels: list
    y: np.ndarray
    xs: dict
    fold_key: dict
    model_factory: ModelFactory
    device: torch.device
    precision: str
    params: dict
    fingerprint: str
    out: Path


def fold_seed(seed: int, subject: str) -> int:
    """The seed of one fold: a hash of (seed, test subject), independent of the fold order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{subject}".encode()).digest()[:4], "little")


def train_fold(job: FoldJob, seed: int, subject: str, progress: bool = True) -> dict:
    """Train and test the fold of ``subject`` (choosing lr / epoch first when ``cfg.select``).

    Returns:
        :func:`fit_fold`'s dict plus ``test`` (index rows of the test subject), ``n_train``,
        ``fold_seed`` and ``cam`` (Grad-CAM of the test images, n_test x h x w); when the
        selection ran also ``selection`` (``{"lr", "epoch", "inner_uf1"}``) and
        ``selection_grid`` (:func:`mer_core.nested.select_recipe`'s grid).
    """
    x_all = job.xs[job.fold_key[subject]]
    test = np.flatnonzero(job.subjects == subject)
    train = np.flatnonzero(job.subjects != subject)
    fs = fold_seed(seed, subject)
    extra, lr, keep = {}, job.cfg.lr, None
    if job.cfg.select:
        def inner_fit(tr, val, inner_lr, inner_seed):
            return _fit(job, x_all, tr, val, inner_lr, inner_seed, False,
                        f"{subject} seed {seed} inner lr {inner_lr:g}")[1]["epoch_preds"]
        choice, grid = select_recipe(job.cfg, train, job.subjects[train], job.y[train],
                                     job.labels, inner_fit, fs)
        extra = {"selection": choice, "selection_grid": grid}
        lr, keep = choice["lr"], choice["epoch"]
    model, res = _fit(job, x_all, train, test, lr, fs, progress, f"{subject} seed {seed}", keep)
    cam = grad_cam(model, res["aug"](x_all[_rows_on(test, x_all)], train=False), cam_layer(model))
    return {**res, "test": test, "n_train": int(len(train)), "fold_seed": fs, "cam": cam, **extra}


def _rows_on(rows: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """Index rows as a tensor on the device of ``x``."""
    return torch.from_numpy(rows).to(x.device)


def _fit(job: FoldJob, x_all: torch.Tensor, train: np.ndarray, test: np.ndarray, lr: float,
         seed: int, progress: bool, desc: str, keep_epoch: int | None = None):
    """Seed everything, build a fresh model and its loss (from ``train``'s labels) and
    :func:`fit_fold` it on ``train`` rows with ``lr``, evaluating ``test`` rows every epoch.

    Returns:
        ``(model, fit_fold's dict)``.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dev = job.device
    model = job.model_factory(job.exp.backbone, len(job.labels)).to(dev)
    if channels_last(dev):
        model = model.to(memory_format=torch.channels_last)
    loss_fn = make_loss(job.exp.loss, job.y[train], len(job.labels), job.cfg.focal_gamma,
                        job.cfg.focal_alpha).to(dev)
    cfg = job.cfg if lr == job.cfg.lr else dataclasses.replace(job.cfg, lr=lr)
    y_dev = torch.from_numpy(job.y).to(dev)
    tr, te = _rows_on(train, x_all), _rows_on(test, x_all)
    res = fit_fold(model, loss_fn, x_all[tr], y_dev[tr], x_all[te], job.y[test], cfg,
                   job.precision, seed, progress, desc=desc, keep_epoch=keep_epoch,
                   flow=vocab.motion_of(job.exp.frames)[0] == "flow")
    return model, res


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
        to_channels_last: return the batch in channels_last memory format.
        flow: the images are flow images (:mod:`mer_core.motion`): a flip also negates the
            horizontal displacement (channel 0: c -> 256 - c), and only
            :data:`mer_core.vocab.FLOW_AUGMENT` ops are allowed.
    """

    def __init__(self, ops, generator: torch.Generator, to_channels_last: bool = False,
                 flow: bool = False):
        unknown = [o for o in ops if o not in ("flip", "affine", "color")]
        if unknown:
            raise ValueError(f"augment: unknown op(s) {unknown}; valid: flip, affine, color")
        if flow and any(o not in vocab.FLOW_AUGMENT for o in ops):
            raise ValueError(f"augment: {', '.join(o for o in ops if o not in vocab.FLOW_AUGMENT)} "
                             f"would change the vectors of a flow image; valid for flow: "
                             f"{', '.join(vocab.FLOW_AUGMENT)}")
        self.flow = flow
        self.ops = list(ops)
        self.gen = generator
        self.to_channels_last = to_channels_last
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
        return x.contiguous(memory_format=torch.channels_last) if self.to_channels_last else x

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        x = x.float()
        n, dev = x.shape[0], x.device
        if train and "flip" in self.ops:
            flip = (torch.rand(n, generator=self.gen) < 0.5).to(dev)
            mirrored = x.flip(-1)
            if self.flow:  # a mirrored flow field: the horizontal displacement changes sign
                mirrored = torch.cat([256 - mirrored[:, :1], mirrored[:, 1:]], 1)
            x = torch.where(flip.view(-1, 1, 1, 1), mirrored, x)
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


# ----------------------------------------------------------------------------- training loop


def fold_metrics(y: np.ndarray, p: np.ndarray) -> dict:
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
        with autocast(precision, x.device):
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
             seed: int, progress: bool = True, desc: str = "",
             keep_epoch: int | None = None, flow: bool = False) -> dict:
    """Train one fold for ``cfg.epochs`` epochs, evaluating the test subject after each epoch.

    Args:
        model: a fresh model, already on the device (channels_last on CPU and CUDA).
        loss_fn: the fold's loss.
        x_train, y_train: uint8 N x 3 x S x S images and int64 classes, on the device.
        x_test, y_test: the test subject's images (device) and classes (NumPy).
        cfg: optimiser, schedule, epochs, batch size, augmentation.
        precision: from :func:`mer_core.machine.select_precision`.
        seed: the fold seed (shuffling and augmentation generators).
        progress: show a tqdm bar over epochs.
        desc: the bar's label.
        keep_epoch: None, or the epoch (1..cfg.epochs, chosen without the test subject) whose
            model state is kept: a copy of the state is taken after that epoch and restored
            once the whole schedule has run, so ``proba`` (and whatever the caller computes from
            the model afterwards) is that epoch's; ``epochs`` and ``epoch_preds`` still cover
            every epoch.
        flow: the images are optical-flow images (:class:`BatchAugment`'s ``flow``).

    Returns:
        dict with ``proba`` (test probabilities of the final epoch, or of ``keep_epoch``),
        ``epochs`` (list of per-epoch dicts), ``epoch_preds`` (list of per-epoch predicted
        classes), ``train_images``, ``train_s``.
    """
    device = x_train.device
    n = x_train.shape[0]
    if n < 2:
        raise ValueError(f"{desc}: a fold needs at least 2 training images, got {n}")
    if keep_epoch is not None and not 1 <= keep_epoch <= cfg.epochs:
        raise ValueError(f"{desc}: keep_epoch {keep_epoch!r}; expected 1..{cfg.epochs} "
                         f"(train.epochs)")
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
                       to_channels_last=channels_last(device), flow=flow)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    rows, epoch_preds, train_s, kept = [], [], 0.0, None
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
            with autocast(precision, device):
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
        row = {"epoch": epoch + 1, "train_loss": train_loss, **fold_metrics(y_test, pred),
               "n_test": int(len(y_test)), "n_correct": int(np.sum(pred == y_test)), "lr": lr}
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"{desc}: training loss is {train_loss} at epoch {epoch + 1}; "
                                     f"lower train.lr (now {cfg.lr})")
        rows.append(row)
        epoch_preds.append(pred)
        if epoch + 1 == keep_epoch:
            kept = ({k: v.detach().clone() for k, v in model.state_dict().items()}, proba)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{row['test_accuracy']:.2f}", refresh=False)
    bar.close()
    if kept is not None:
        model.load_state_dict(kept[0])
        proba = kept[1]
    return {"proba": proba, "epochs": rows, "epoch_preds": epoch_preds,
            "train_images": seen * cfg.epochs, "train_s": train_s, "aug": aug}


__all__ = ["FoldJob", "train_fold", "fit_fold", "predict_proba", "fold_metrics", "fold_seed",
           "BatchAugment", "prepare_images", "IMAGENET_MEAN", "IMAGENET_STD"]
