"""The machine a fold trains on: device, CPU model, precision and its autocast, cores.

Everything here is measured or read at run time (never hard-coded from one CPU), and what it
returns goes into every fold's fingerprint and ``run.json``.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re
import warnings
from pathlib import Path

import torch


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


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision (:func:`select_precision`)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision == "amp-bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp-fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def channels_last(device: torch.device) -> bool:
    """channels_last for every precision on CPU (fp32 too: 1.2x at 48 px, AVX2) and CUDA."""
    return device.type in ("cpu", "cuda")


#: cuBLAS's workspace setting that deterministic CUDA matrix products need (torch's docs).
CUBLAS_WORKSPACE = ":4096:8"


def training_mode(device: torch.device, threads: int):
    """Set this process up to train reproducibly on ``device``; return a function that undoes it.

    Every fold runs under it, in this process, in a fold worker or in a cluster task:
    ``threads`` torch threads; deterministic algorithms where torch has them (``warn_only``: an
    op without one warns instead of failing); on a CPU denormals flushed to zero (see
    :mod:`mer_core.loso`); on CUDA the cuBLAS workspace setting deterministic matrix products
    need (set here unless already set: it acts when cuBLAS starts, so before the first CUDA
    op), cuDNN's deterministic kernels and no autotuning.
    """
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # before any op: the threads torch starts inherit it
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)

    def restore() -> None:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]
        if device.type == "cpu":
            torch.set_flush_denormal(False)  # torch's default
    return restore


def determinism(device: torch.device) -> dict:
    """What :func:`training_mode` set, as recorded in every fold's record."""
    out = {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        out.update(cublas_workspace=os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
                   cudnn_deterministic=torch.backends.cudnn.deterministic,
                   cudnn_benchmark=torch.backends.cudnn.benchmark)
    return out


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


__all__ = ["select_device", "cpu_has_bf16", "cpu_model", "device_name", "select_precision",
           "autocast", "channels_last", "training_mode", "determinism", "available_cores",
           "CUBLAS_WORKSPACE"]
