"""Atomic file output: write to a temporary name in the same folder, then rename.

A killed run therefore never leaves a half-written CSV, JSON or array behind, and a resumed run
can trust every file that exists.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    Args:
        path: the final file name. Parent folders are created.

    Yields:
        The temporary :class:`~pathlib.Path` to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON (NumPy scalars and NaN-free floats welcome)."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")
    return write_text(path, json.dumps(obj, indent=2, default=default, allow_nan=False) + "\n")


def write_csv(path: str | Path, df: pd.DataFrame, **kwargs) -> Path:
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(path)


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return Path(path)


SCRATCH = "scratch"


def announce_outputs(**paths) -> None:
    """Print where a notebook writes: a run by hand or through papermill without output paths
    writes under ``scratch/``, never into ``data/``, ``results/`` or ``reports/``, which only
    the DVC stages pass."""
    scratch = all(Path(p).parts[:1] == (SCRATCH,) for p in paths.values())
    print("outputs: " + ", ".join(f"{k}={v}" for k, v in paths.items())
          + (" (scratch folder: the pipeline's files are untouched; dvc.yaml passes their paths)"
             if scratch else ""))


def read_json(path: str | Path):
    with open(path) as f:
        return json.load(f)
