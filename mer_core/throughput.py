"""Measured training throughput: the bare step of a backbone, its set-up cost, and the record
a benchmark run leaves for the cost planner (:mod:`mer_core.plan`).

The bare step is forward + backward + fused AdamW on one fixed batch, channels_last, with the
autocast of a resolved precision (:func:`mer_core.machine.select_precision`), as
:func:`mer_core.fold.fit_fold` steps; no data path. A throughput record is one JSON file
(``benchmarks/throughput/<name>.json``, written by ``benchmarks/train_throughput.py --record``)::

    {"format": "mer-throughput/1", "date": "2026-11-30", "device": "cuda",
     "device_name": "NVIDIA H100 80GB HBM3", "cpu": "...", "torch": "2.14.1", "threads": 16,
     "image_size": 224, "batch_size": 32, "steps": 20, "auto_precision": "amp-bf16",
     "process_start_s": 4.2,
     "backbones": {"seresnext50_32x4d": {"build_s": 0.4,
                                         "images_per_s": {"fp32": 410.0, "amp-bf16": 980.0},
                                         "eval_images_per_s": {"fp32": 1300.0, ...}}}}

Rates are images/s of one process; ``build_s`` is the seconds to create the model (random
init) and move it to the device.
"""
from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

import torch

from mer_core import io, machine
from mer_core.models import create_model

#: The ``format`` key of a throughput record.
RECORD_FORMAT = "mer-throughput/1"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, warmup: int, steps: int, min_seconds: float, dev: torch.device
           ) -> tuple[int, float]:
    """Run ``step`` ``warmup`` times untimed, then at least ``steps`` times and at least
    ``min_seconds``; returns (timed calls, their seconds)."""
    for _ in range(warmup):
        step()
    _sync(dev)
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        if n >= steps:
            _sync(dev)
            if time.perf_counter() - t0 >= min_seconds:
                return n, time.perf_counter() - t0


def bare_step(backbone: str, size: int, batch: int, precision: str, steps: int, warmup: int = 3,
              num_classes: int = 5, x: torch.Tensor | None = None, device: str = "cpu",
              allow_any: bool = False, min_seconds: float = 0.0) -> float:
    """Images/s of forward + backward + AdamW step on one fixed batch (no data path),
    channels_last as in :func:`mer_core.fold.fit_fold`.

    Args:
        backbone: model name (:data:`mer_core.vocab.BACKBONES`; any timm name with
            ``allow_any``).
        size: input side in px.
        batch: images per step.
        precision: a resolved precision (``fp32``, ``bf16``, ``amp-bf16``, ``amp-fp16``).
        steps: timed steps (after ``warmup`` untimed ones), at least.
        warmup: untimed steps first (allocation, kernel choice).
        num_classes: classifier outputs.
        x: the batch (normalised images); None = random normal values. Random input runs about
            10 % slower than real frames on a CPU, so the loop comparisons pass real frames.
        device: torch device string.
        allow_any: accept any timm model name (tests use tiny ones).
        min_seconds: keep stepping until the timed steps took this long (small images: a few
            steps are too short to time on a shared machine).

    Returns:
        Training images per second.
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(backbone, num_classes, allow_any=allow_any).train()
    model = model.to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as fold.fit_fold
    if x is None:
        x = torch.randn(batch, 3, size, size)
    x = x[:batch].to(dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (len(x),)).to(dev)

    def step():
        with machine.autocast(precision, dev):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # (amp-fp16's gradient scaler, a few elementwise ops, is left out)
        opt.step()

    n, seconds = _timed(step, warmup, steps, min_seconds, dev)
    return len(x) * n / seconds


def eval_rate(backbone: str, size: int, batch: int, precision: str, steps: int = 2,
              num_classes: int = 5, device: str = "cpu", allow_any: bool = False,
              min_seconds: float = 0.0) -> float:
    """Images/s of the test pass (eval mode, no gradient) on one fixed batch, one warm-up;
    at least ``steps`` batches and ``min_seconds`` (as :func:`bare_step`)."""
    dev = torch.device(device)
    model = create_model(backbone, num_classes, allow_any=allow_any).eval()
    model = model.to(dev, memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).to(dev).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.no_grad(), machine.autocast(precision, dev):
            model(x)

    n, seconds = _timed(step, 1, steps, min_seconds, dev)
    return batch * n / seconds


def build_seconds(backbone: str, num_classes: int = 5, device: str = "cpu",
                  allow_any: bool = False) -> float:
    """Seconds to create a randomly initialised model and move it to ``device``."""
    dev = torch.device(device)
    t0 = time.perf_counter()
    create_model(backbone, num_classes, allow_any=allow_any).to(dev)
    _sync(dev)
    return time.perf_counter() - t0


def process_start_seconds() -> float:
    """Seconds for a fresh Python process to import what a fold job imports (torch, timm, the
    training modules): the start of every job-array task."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mer_core.fold, mer_core.gradcam"],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def measure_backbone(backbone: str, size: int, batch: int, precisions: list[str], steps: int,
                     device: str = "cpu", warmup: int = 1, allow_any: bool = False,
                     min_seconds: float = 0.0) -> dict:
    """The entry of one backbone in a throughput record (see the module docstring).

    Args:
        backbone: model name.
        size: input side in px.
        batch: images per step.
        precisions: resolved precisions to time.
        steps: timed steps of the bare step (the test pass: the same number of batches).
        device: torch device string.
        warmup: untimed bare steps first.
        allow_any: accept any timm model name.
        min_seconds: each rate times at least this long.

    Returns:
        ``{"build_s": float, "images_per_s": {precision: float},
        "eval_images_per_s": {precision: float}}``.
    """
    out = {"build_s": build_seconds(backbone, device=device, allow_any=allow_any),
           "images_per_s": {}, "eval_images_per_s": {}}
    for p in precisions:
        out["images_per_s"][p] = bare_step(backbone, size, batch, p, steps, warmup=warmup,
                                           device=device, allow_any=allow_any,
                                           min_seconds=min_seconds)
        out["eval_images_per_s"][p] = eval_rate(backbone, size, batch, p, steps, device=device,
                                                allow_any=allow_any, min_seconds=min_seconds)
    return out


def make_record(device: str, size: int, batch: int, steps: int, backbones: dict,
                process_start_s: float | None = None) -> dict:
    """A throughput record (module docstring) for rates measured in this process on ``device``.

    Args:
        device: torch device string the rates were measured on.
        size: input side in px.
        batch: images per step.
        steps: timed steps per rate.
        backbones: ``{backbone: measure_backbone(...)}``.
        process_start_s: :func:`process_start_seconds`, if measured.

    Returns:
        The record (a JSON-ready dict).
    """
    dev = torch.device(device)
    return {"format": RECORD_FORMAT, "date": datetime.date.today().isoformat(),
            "device": dev.type, "device_name": machine.device_name(dev),
            "cpu": machine.cpu_model(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "image_size": size, "batch_size": batch,
            "steps": steps, "auto_precision": machine.select_precision("auto", dev),
            "process_start_s": process_start_s, "backbones": backbones}


def write_record(path: str | Path, record: dict) -> Path:
    """Write a throughput record atomically (:func:`mer_core.io.write_json`)."""
    return io.write_json(path, record)


def read_record(path: str | Path) -> dict:
    """Read and check a throughput record.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a record of :data:`RECORD_FORMAT`, or a key is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: throughput record not found (write one with "
                                "`benchmarks/train_throughput.py --record PATH` on that machine)")
    rec = io.read_json(path)
    if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: key 'format' must be {RECORD_FORMAT!r}, got "
                         f"{rec.get('format') if isinstance(rec, dict) else type(rec).__name__!r}")
    for key in ("device", "image_size", "batch_size", "auto_precision", "backbones"):
        if key not in rec:
            raise ValueError(f"{path}: key {key!r} missing (expected a {RECORD_FORMAT} record)")
    return rec


__all__ = ["RECORD_FORMAT", "bare_step", "eval_rate", "build_seconds", "process_start_seconds",
           "measure_backbone", "make_record", "write_record", "read_record"]
