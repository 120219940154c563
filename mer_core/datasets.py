"""Sample index of CASME II, SAMM and the synthetic CASME-II-shaped set.

(Readers, protocols and LOSO folds: see the Data issue; this file starts with the frame access
that every later stage shares.)
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_NUMBER = re.compile(r"(\d+)$")


def frame_numbers(frames_dir: str | Path) -> dict[int, Path]:
    """Map frame number -> image file for every image in ``frames_dir``.

    The frame number is the last run of digits in the file stem (``img46.jpg`` -> 46,
    ``reg_img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562), so the order is numeric, never
    lexicographic (img99 before img100).

    Raises:
        FileNotFoundError: ``frames_dir`` does not exist.
        ValueError: two files carry the same frame number.
    """
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"{frames_dir}: frame folder not found")
    found: dict[int, Path] = {}
    for p in frames_dir.iterdir():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        m = _NUMBER.search(p.stem)
        if not m:
            continue
        n = int(m.group(1))
        if n in found:
            raise ValueError(f"{frames_dir}: frame number {n} appears twice "
                             f"({found[n].name}, {p.name})")
        found[n] = p
    return dict(sorted(found.items()))


def frame_paths(frames_dir: str | Path, onset: int, offset: int) -> list[Path]:
    """Image files of frames ``onset..offset`` (inclusive, numbers as in the file names).

    Raises:
        FileNotFoundError: a frame in the range is missing; the message lists the first ones.
    """
    onset, offset = int(onset), int(offset)
    if offset < onset:
        raise ValueError(f"{frames_dir}: offset {offset} is before onset {onset}")
    numbers = frame_numbers(frames_dir)
    missing = [n for n in range(onset, offset + 1) if n not in numbers]
    if missing:
        shown = ", ".join(str(n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{frames_dir}: frames {shown}{more} of {onset}..{offset} are missing "
            f"(found {len(numbers)} images)")
    return [numbers[n] for n in range(onset, offset + 1)]


def read_frames(paths: list[Path], gray: bool = False) -> np.ndarray:
    """Decode images into a T x H x W x 3 (RGB) or T x H x W (gray) uint8 array.

    Raises:
        OSError: an image cannot be decoded (the message names the file).
        ValueError: the frames do not all have the same size.
    """
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    out = []
    for p in paths:
        img = cv2.imread(str(p), flag)
        if img is None:
            raise OSError(f"{p}: cannot decode image")
        if not gray:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if out and img.shape != out[0].shape:
            raise ValueError(f"{p}: size {img.shape} differs from the clip's first frame "
                             f"{out[0].shape} ({paths[0]})")
        out.append(img)
    return np.stack(out)
