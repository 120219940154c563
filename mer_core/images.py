"""The frame images of a clip on disk: which files there are, whether they are whole, pixels.

Shared by every stage that touches frames (index validation, frame cache, dataset card):

* Frame numbers are the numbers in the image names (:func:`frame_numbers`), never positions.
* :func:`frame_paths` gives the files of frames onset..offset and fails on a gap.
* :func:`image_problem` spots an empty or truncated file from its bytes (OpenCV decodes a cut
  JPEG without an error), :func:`decodes` tries a fast decode, and :func:`read_frames` decodes
  a clip into one array, refusing broken files and mixed sizes.
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: The frame number of an image: the last run of digits of its file stem.
FRAME_NUMBER = re.compile(r"(\d+)$")


def frame_numbers(frames_dir: str | Path) -> dict[int, Path]:
    """Map frame number -> image file for every image in ``frames_dir``.

    The frame number is the last run of digits in the file stem (``img46.jpg`` -> 46,
    ``reg_img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562), so the order is numeric, never
    lexicographic (img99 before img100).

    Args:
        frames_dir: a clip's folder of images.

    Returns:
        Frame number -> path, in ascending frame number.

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
        m = FRAME_NUMBER.search(p.stem)
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

    Args:
        frames_dir: a clip's folder of images.
        onset: first frame number.
        offset: last frame number.

    Returns:
        One path per frame, in frame order.

    Raises:
        FileNotFoundError: a frame in the range is missing; the message lists the first ones.
        ValueError: ``offset`` is before ``onset``.
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


def image_problem(path: str | Path) -> str | None:
    """Why an image file cannot be a whole frame, from its bytes alone; None if it looks whole.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey, with only
    a libjpeg warning on stderr), so a file is checked before it is decoded: an empty file; a
    JPEG without its start (FF D8) or end-of-image (FF D9) marker; a PNG without its IEND chunk.
    Trailing zero or whitespace padding after the end marker is allowed.

    Args:
        path: an image file (other suffixes than JPEG and PNG are only checked for being empty).

    Returns:
        The problem in words, or None.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 4096))
        tail = f.read().rstrip(b"\x00\r\n\t ")
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        if head[:2] != b"\xff\xd8":
            return "not a JPEG (no start-of-image marker)"
        if not tail.endswith(b"\xff\xd9"):
            return f"truncated JPEG (no end-of-image marker; {size} bytes)"
    elif suffix == ".png":
        if head != b"\x89PNG\r\n\x1a\n":
            return "not a PNG (bad signature)"
        if b"IEND" not in tail[-12:]:
            return f"truncated PNG (no IEND chunk; {size} bytes)"
    return None


def decodes(path: str | Path) -> bool:
    """True if OpenCV decodes the image (at 1/8 scale, grey: fast; a corrupt stream fails).

    Args:
        path: an image file.

    Returns:
        Whether it decodes.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    return data.size > 0 and cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None


def read_frames(paths: list[Path], gray: bool = False) -> np.ndarray:
    """Decode images into a T x H x W x 3 (RGB) or T x H x W (gray) uint8 array.

    Args:
        paths: the frames' image files, in order.
        gray: decode to one grey channel instead of RGB.

    Returns:
        The stacked frames.

    Raises:
        OSError: an image is empty, truncated or cannot be decoded (the message names the file
            and why; see :func:`image_problem`).
        ValueError: the frames do not all have the same size.
    """
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    out = []
    for p in paths:
        problem = image_problem(p)
        if problem:
            raise OSError(f"{p}: {problem}")
        img = cv2.imdecode(np.fromfile(str(p), dtype=np.uint8), flag)
        if img is None:
            raise OSError(f"{p}: cannot decode image")
        if not gray:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if out and img.shape != out[0].shape:
            raise ValueError(f"{p}: size {img.shape} differs from the clip's first frame "
                             f"{out[0].shape} ({paths[0]})")
        out.append(img)
    return np.stack(out)
