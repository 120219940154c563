"""Fingerprints: what a finished fold was made with, so that a re-run reuses it only when nothing
that changes its result has changed (settings, labels, data, code, device, precision).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from mer_core import deps, io, vocab
from mer_core.machine import device_name
from mer_core.models import imagenet_source, weights_path

#: Modules of the LOSO driver's imports that only name or parse things: what they decide for a
#: fold is in its fingerprint as values (frames, backbone, loss, labels, the frame arrays, the
#: motion kind of the input, and the train section with its parsed lists), so adding a dataset,
#: spotter or backbone name, or a params key of another section, redoes no finished fold.
NAMES_ONLY = ("vocab", "config")
#: Modules that only decide WHERE and HOW MANY AT ONCE folds run (submitit jobs: the launcher),
#: never what a fold computes; like the launcher setting they stay out of the fingerprint.
LAUNCH_ONLY = ("cluster",)
#: The modules whose source defines what a fold computes: the LOSO driver and everything it
#: imports but :data:`NAMES_ONLY` (their hash is the "code version"). All of them are deps of
#: the train stage (a test checks), so DVC reruns the stage when one changes and the changed
#: fingerprint redoes the folds; modules the notebook uses only around the folds (figures,
#: printed metrics, names) rerun the stage but keep its finished folds.
CODE_MODULES = tuple(m for m in deps.closure(("loso",)) if m not in NAMES_ONLY + LAUNCH_ONLY)

#: TrainConfig keys that choose WHICH folds run (or how many at once), not what a fold computes.
PLAN_KEYS = ("folds", "max_folds", "seed", "n_seeds", "workers")


class FingerprintError(RuntimeError):
    """Finished folds or shards that were made with different settings or code."""


def code_version() -> str:
    """sha256 (16 hex) of the mer_core modules that define a fold's computation (CODE_MODULES)."""
    h = hashlib.sha256()
    for name in CODE_MODULES:
        h.update(name.encode() + b"\0" + (deps.PACKAGE_DIR / f"{name}.py").read_bytes() + b"\0")
    return h.hexdigest()[:16]


def sha(*parts) -> str:
    """sha256 (16 hex) of the parts (bytes, or their ``str``), NUL-separated."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_sha(path: str | Path) -> str:
    """sha256 (16 hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fold_stem(subject: str, seed: int) -> str:
    """File stem of one fold's files: ``sub01__seed0``."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', str(subject))}__seed{seed}"


def diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every nested key whose value differs."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def fold_params(name, exp, cfg, labels, data_hash, device, precision, factory_tag,
                device_label: str | None = None) -> dict:
    """What a fold's result depends on (hashed into its fingerprint): the experiment, its input's
    motion kind (a flow input is flipped with its dx negated), the train settings that change a
    fold (not those choosing which folds run), labels, data, code version, device and its model
    (``device_label``, or this machine's when None: a Slurm head asks its nodes), precision,
    model factory, and the weights file's hash."""
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in PLAN_KEYS}
    # as the fold reads them (config's parsing is not in the code version)
    train["parsed"] = {"augment": cfg.augment_list, "select": cfg.select_list,
                       "lr": cfg.lr_list}
    weights = weights_path(cfg.pretrained, exp.backbone)
    if weights and weights.lower() == "imagenet":
        train["pretrained_source"] = imagenet_source(exp.backbone)
    elif weights and Path(weights).is_file():
        train["pretrained_sha256"] = file_sha(weights)
    return {"experiment": name, "frames": exp.frames, "motion": vocab.motion_of(exp.frames)[0],
            "backbone": exp.backbone, "loss": exp.loss, "train": train, "labels": list(labels), "data": data_hash, "code": code_version(),
            "device": device.type,
            "device_name": device_name(device) if device_label is None else device_label,
            "precision": precision,
            "model_factory": factory_tag}


def check_fold(out: Path, stem: str, fold_fp: str, params: dict) -> None:
    """Raise :class:`FingerprintError` (naming what changed) unless the finished fold ``stem``
    of ``results/<exp>`` (``out``) was made with fingerprint ``fold_fp``."""
    meta_path = out / "folds" / f"{stem}.json"
    if not meta_path.is_file():
        raise FingerprintError(f"{out / 'folds' / stem}.csv exists without its .json record; "
                               f"pass fresh=True to redo the fold")
    meta = io.read_json(meta_path)
    if meta.get("fingerprint") != fold_fp:
        changed = diff(meta.get("params", {}), params) or ["(record without params)"]
        raise FingerprintError(
            f"{meta_path}: this finished fold was made with different settings: "
            f"{'; '.join(changed[:8])}. Pass fresh=True (papermill -p fresh True) to redo the folds, "
            f"or use another results folder; results of different settings are never mixed.")


__all__ = ["CODE_MODULES", "NAMES_ONLY", "LAUNCH_ONLY", "PLAN_KEYS", "FingerprintError", "code_version", "sha", "file_sha",
           "fold_stem", "diff", "fold_params", "check_fold"]
