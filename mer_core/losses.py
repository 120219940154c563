"""Losses: the paper's multi-class Focal Loss and the cross-entropy baselines of the ablation.

Focal loss (Lin et al., 2017), softmax form: FL = -alpha_t (1 - p_t)^gamma log p_t, computed from
``log_softmax`` so that confident logits (p_t -> 1) neither overflow nor give NaN gradients.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mer_core import vocab
from mer_core.config import split_list

ALPHA_SPECS = ("none", "inverse_frequency", "<comma-separated list of one weight per class>")

# Smallest (1 - p_t) the modulating factor sees: keeps d/dp (1-p)^gamma finite for gamma < 1.
_EPS = 1e-12


class FocalLoss(nn.Module):
    """Multi-class softmax focal loss.

    Args:
        gamma: focusing parameter (>= 0); 0 gives (alpha-weighted) cross-entropy.
        alpha: per-class weights (sequence or 1-D tensor of length C), or None for all ones.
        reduction: ``"mean"`` (summed loss / batch size, also with alpha), ``"sum"`` or ``"none"``.

    With ``gamma=0`` and ``alpha=None`` it equals ``F.cross_entropy``.
    """

    def __init__(self, gamma: float = 2.0, alpha=None, reduction: str = "mean"):
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"FocalLoss: gamma must be >= 0, got {gamma!r}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"FocalLoss: reduction must be mean, sum or none, got {reduction!r}")
        self.gamma = float(gamma)
        self.reduction = reduction
        if alpha is not None:
            alpha = torch.as_tensor(np.asarray(alpha, dtype=np.float32))
            if alpha.ndim != 1 or not torch.isfinite(alpha).all() or (alpha < 0).any():
                raise ValueError(f"FocalLoss: alpha must be a 1-D list of finite weights >= 0, "
                                 f"got {alpha.tolist()}")
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B x C) against integer class ``target`` (B)."""
        logp = F.log_softmax(logits.float(), dim=1)
        logpt = logp.gather(1, target.long().unsqueeze(1)).squeeze(1)
        loss = -logpt
        if self.gamma > 0:
            # 1 - p_t = -expm1(log p_t): exact near p_t = 1 where 1 - exp() would cancel.
            loss = (-torch.expm1(logpt)).clamp(min=_EPS).pow(self.gamma) * loss
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ValueError(f"FocalLoss: alpha has {self.alpha.numel()} weights but the "
                                 f"logits have {logits.shape[1]} classes")
            loss = self.alpha[target.long()] * loss
        if self.reduction == "mean":
            return loss.sum() / max(loss.shape[0], 1)
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        alpha = None if self.alpha is None else [round(a, 4) for a in self.alpha.tolist()]
        return f"gamma={self.gamma}, alpha={alpha}, reduction={self.reduction!r}"


def class_alpha(labels_train, num_classes: int, spec: str) -> np.ndarray | None:
    """Per-class weights for the loss, from the TRAINING fold only.

    Args:
        labels_train: integer class ids of the training clips of this fold.
        num_classes: C.
        spec: ``"none"`` (or ``""``) -> None; ``"inverse_frequency"`` -> 1 / count, scaled so that
            the classes present in the fold average 1; a class absent from the fold gets the
            largest weight of the present ones (finite, and unused since it has no training clip);
            or an explicit comma-separated list of C non-negative numbers, e.g. ``"1,2,2,1,0.5"``.

    Returns:
        A float32 array of length C, or None.

    Raises:
        ValueError: an unknown spec, a list of the wrong length or with a bad number.
    """
    spec = str(spec).strip()
    if spec.lower() in ("", "none"):
        return None
    if spec == "inverse_frequency":
        y = np.asarray(labels_train, dtype=np.int64)
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"class_alpha: labels must be in 0..{num_classes - 1}")
        counts = np.bincount(y, minlength=num_classes).astype(np.float64)
        present = counts > 0
        if not present.any():
            return np.ones(num_classes, dtype=np.float32)
        w = np.zeros(num_classes)
        w[present] = 1.0 / counts[present]
        w[present] /= w[present].mean()
        w[~present] = w[present].max()
        return w.astype(np.float32)
    try:
        values = [float(v) for v in split_list(spec)]
    except ValueError:
        raise ValueError(f"focal_alpha: unknown value {spec!r}; expected one of "
                         f"{', '.join(ALPHA_SPECS)}") from None
    if len(values) != num_classes:
        raise ValueError(f"focal_alpha: {spec!r} has {len(values)} weights, expected one per class "
                         f"({num_classes})")
    if not all(np.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"focal_alpha: weights must be finite and >= 0, got {spec!r}")
    return np.asarray(values, dtype=np.float32)


def make_loss(name: str, labels_train, num_classes: int, gamma: float = 2.0,
              alpha: str = "none") -> nn.Module:
    """The loss of an experiment for one fold.

    Args:
        name: ``"focal"`` (FocalLoss(gamma, class_alpha(alpha))), ``"ce"`` (plain cross-entropy)
            or ``"weighted_ce"`` (cross-entropy weighted by the fold's inverse class frequency).
            Every loss uses "mean" = sum / batch size, so the weighted variants do not rescale the
            loss by the batch's weight total as ``F.cross_entropy(weight=...)`` would.
        labels_train: integer class ids of the fold's training clips (for inverse frequency).
        num_classes: C.
        gamma: focal gamma (``focal`` only).
        alpha: focal alpha spec (``focal`` only), see :func:`class_alpha`.

    Raises:
        ValueError: unknown loss name (the message lists the valid ones).
    """
    if name == "focal":
        return FocalLoss(gamma=gamma, alpha=class_alpha(labels_train, num_classes, alpha))
    if name == "ce":
        return FocalLoss(gamma=0.0)
    if name == "weighted_ce":
        return FocalLoss(gamma=0.0,
                         alpha=class_alpha(labels_train, num_classes, "inverse_frequency"))
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(vocab.LOSSES)}")


__all__ = ["FocalLoss", "class_alpha", "make_loss"]
