"""Grad-CAM (Selvaraju et al., 2017): where in the face a trained network looks.

The map of clip i is ReLU(sum_k w_k A_k) with w_k the spatial mean of d score / d A_k, A the
activations of one stage (by default timm's ``layer3``: at 64 px the last stage is only 2 x 2),
upsampled bilinearly to the input size and scaled to [0, 1] per clip.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(model: nn.Module, images: torch.Tensor, layer: nn.Module,
             target: torch.Tensor | None = None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM maps of a batch of (already normalised) images.

    Args:
        model: the classifier; it is put in eval mode and left there.
        images: N x 3 x H x W float tensor on the model's device, as fed to the model.
        layer: the submodule whose output is explained (see ``mer_core.models.cam_layer``).
        target: N class ids to explain; None = the predicted class of each image.
        batch_size: images per forward/backward pass.

    Returns:
        N x H x W float32 maps in [0, 1] (a map that is zero everywhere stays zero).
    """
    model.eval()
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inp, out):
        store["act"] = out

    handle = layer.register_forward_hook(hook)
    maps = []
    try:
        with torch.enable_grad():
            for start in range(0, images.shape[0], batch_size):
                x = images[start:start + batch_size].detach().float()
                logits = model(x).float()
                cls = logits.argmax(1) if target is None else \
                    torch.as_tensor(target[start:start + batch_size], device=logits.device).long()
                score = logits.gather(1, cls.unsqueeze(1)).sum()  # images do not interact in eval
                act = store["act"]
                grad, = torch.autograd.grad(score, act)
                weights = grad.float().mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * act.float()).sum(1, keepdim=True))
                cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
                cam = cam.squeeze(1)
                peak = cam.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
                maps.append((cam / peak).detach().cpu().numpy().astype(np.float32))
    finally:
        handle.remove()
    if not maps:
        return np.zeros((0,) + tuple(images.shape[-2:]), dtype=np.float32)
    return np.concatenate(maps)


__all__ = ["grad_cam"]
