"""Backbones: the paper's SE-ResNeXt-50 (32x4d) and the Table 4 baselines, built with timm.

``create_model`` returns a randomly initialised network by default, or one whose body is loaded from
a local weights file (a timm or torchvision checkpoint; the classifier head is always replaced), or
timm's ImageNet weights (``"imagenet"``, needs the network once; offline, put the file on disk).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from mer_core import vocab

#: Wrapper keys under which checkpoints commonly nest their state dict.
_WRAPPERS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")


class WeightsError(ValueError):
    """A weights file that cannot be loaded into the requested backbone."""


def create_model(name: str, num_classes: int, pretrained: str | None = None,
                 allow_any: bool = False) -> nn.Module:
    """Build a classifier backbone.

    Args:
        name: one of :data:`mer_core.vocab.BACKBONES` (``seresnext50_32x4d`` is the paper's).
        num_classes: size of the new classifier head.
        pretrained: ``None`` or ``""``: random init; ``"imagenet"``: timm's pretrained weights
            (downloaded once into the Hugging Face cache); otherwise a path to a local weights file
            (``.pth``/``.pt``/``.bin``/``.safetensors``; a timm or torchvision state dict, possibly
            wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``). The head is never loaded.
        allow_any: accept any timm model name (tests use tiny networks such as ``test_resnet``).

    Returns:
        The ``torch.nn.Module`` (training mode, fp32, on the CPU).

    Raises:
        ValueError: unknown backbone (the message lists the valid ones).
        WeightsError: the weights file is missing, unreadable or does not fit the body.
        RuntimeError: ``"imagenet"`` could not be downloaded (the message says where to put a file).
    """
    if name not in vocab.BACKBONES and not allow_any:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(vocab.BACKBONES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    pretrained = (pretrained or "").strip()
    if pretrained.lower() == "imagenet":
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes)
        except Exception as e:  # offline, proxy, missing hub: all the same advice
            raise RuntimeError(
                f"could not download ImageNet weights for {name!r} ({type(e).__name__}: {e}). "
                f"Offline? Download them once elsewhere (e.g. timm.create_model({name!r}, "
                f"pretrained=True) and torch.save(model.state_dict(), '{name}.pth')), copy the "
                f"file to this machine, e.g. models/{name}.pth, and set train.pretrained to it."
            ) from e
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    if pretrained:
        load_body_weights(model, pretrained)
    return model


def weights_path(pretrained: str, backbone: str) -> str:
    """``train.pretrained`` for one backbone: ``{backbone}`` in the path becomes its name."""
    return (pretrained or "").replace("{backbone}", backbone)


def imagenet_source(backbone: str) -> str:
    """What ``pretrained: imagenet`` loads for ``backbone``: timm's version and hub id (a newer
    timm may serve other weights under the same name, so a fold's fingerprint records this)."""
    cfg = timm.models.get_pretrained_cfg(backbone)
    return f"timm {timm.__version__} {getattr(cfg, 'hf_hub_id', None) or backbone}"


def head_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the classifier head (``"fc"`` for the ResNet family)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return cfg.get("classifier", "fc")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its flat tensor state dict.

    Unwraps ``{"state_dict": ...}``, ``{"model": ...}`` and similar, and strips the ``module.``
    prefix that ``DataParallel`` leaves.

    Raises:
        WeightsError: missing file, unreadable file, or no state dict inside.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (train.pretrained)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    for _ in range(3):  # nested wrappers, e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, dict):
            wrapper = next((k for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if wrapper is None:
                break
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), possibly under one of "
                           f"the keys {', '.join(_WRAPPERS)}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_body_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load every non-head tensor of ``path`` into ``model``; the head keeps its fresh init.

    timm and torchvision share the ResNet/ResNeXt key layout (``conv1``, ``bn1``, ``layerN.M.*``,
    ``downsample.0/1``, ``fc``), so a torchvision ``resnet50``/``resnext50_32x4d`` checkpoint loads
    into the timm model of the same name.

    Raises:
        WeightsError: body keys missing from the file, unexpected keys in the file, or shapes that
            differ; the message names the keys (first ten) and the file.
    """
    path = Path(path)
    state = read_state_dict(path)
    head = head_prefix(model) + "."
    own = model.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith(head)}
    missing = [k for k in own if not k.startswith(head) and k not in body]
    unexpected = [k for k in body if k not in own]
    wrong = [f"{k}: file {tuple(body[k].shape)} vs model {tuple(own[k].shape)}"
             for k in body if k in own and body[k].shape != own[k].shape]
    problems = []
    for what, keys in (("shape mismatch", wrong), ("missing from the file", missing),
                       ("not in the model", unexpected)):
        if keys:
            more = f" (+{len(keys) - 10} more)" if len(keys) > 10 else ""
            problems.append(f"{len(keys)} {what}: {'; '.join(keys[:10])}{more}")
    if problems:
        raise WeightsError(f"{path}: does not fit the body of {type(model).__name__} "
                           f"({getattr(model, 'pretrained_cfg', {}).get('architecture', '?')}): "
                           + " | ".join(problems))
    model.load_state_dict(body, strict=False)
    return model


def cam_layer(model: nn.Module, name: str = "layer3") -> nn.Module:
    """The module whose output Grad-CAM uses (default: timm's ``layer3``, stride 16).

    At 64 px the last stage (``layer4``) is only 2 x 2, so the mid-resolution stage is kept.

    Raises:
        ValueError: the model has no such submodule.
    """
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"{type(model).__name__} has no submodule {name!r} for Grad-CAM")
    return modules[name]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["create_model", "load_body_weights", "read_state_dict", "head_prefix", "cam_layer",
           "count_parameters", "WeightsError"]
