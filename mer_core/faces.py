"""Face crop of raw frames: OpenCV's bundled Haar cascade on a clip's onset frame and ONE fixed
square box per clip (per-frame boxes would jitter more than a micro-expression moves), widened
by a margin. Aligned data (synthetic, CASME II ``Cropped``) is only resized. No face found: a
warning and a centre crop.
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache

import cv2
import numpy as np


class FaceNotFoundWarning(UserWarning):
    """The Haar cascade found no face on a clip's onset frame; a centre crop is used."""


class FaceDetectorUnavailable(RuntimeError):
    """This OpenCV build has no Haar cascade (OpenCV 5 moved it out of the main package)."""


HAAR_FILE = "haarcascade_frontalface_default.xml"


def haar_available() -> bool:
    """True if this OpenCV has ``CascadeClassifier`` and its bundled frontal-face cascade."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    return hasattr(cv2, "CascadeClassifier") and os.path.isfile(os.path.join(folder, HAAR_FILE))


@lru_cache(maxsize=1)
def _cascade():
    if not haar_available():
        raise FaceDetectorUnavailable(
            f"OpenCV {cv2.__version__} has no bundled Haar cascade ({HAAR_FILE}; OpenCV 5 "
            "removed CascadeClassifier from the main package): raw (unaligned) frames cannot be "
            "face-cropped. Install opencv-python-headless 4.x, or use aligned frames "
            "(CASME II Cropped).")
    path = os.path.join(cv2.data.haarcascades, HAAR_FILE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceDetectorUnavailable(f"{path}: cannot load OpenCV's bundled Haar cascade")
    return cascade


def detect_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest frontal face ``(x, y, w, h)`` found by the Haar cascade, or None.

    Args:
        image: H x W gray or H x W x 3 RGB uint8.

    Raises:
        FaceDetectorUnavailable: this OpenCV has no Haar cascade (see :func:`haar_available`).
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    gray = cv2.equalizeHist(gray)
    min_side = max(24, min(gray.shape) // 5)
    faces = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)


def square_box(face: tuple[int, int, int, int], margin: float,
               width: int, height: int) -> tuple[int, int, int, int]:
    """Square crop box ``(x0, y0, x1, y1)`` around a face box, widened by ``margin`` per side.

    The side is ``max(w, h) * (1 + 2 * margin)``, centred on the face, shifted (not shrunk) to
    stay inside the image, and shrunk only when it is larger than the image.
    """
    x, y, w, h = face
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, width, height))
    cx, cy = x + w / 2, y + h / 2
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    x0 = min(max(x0, 0), width - side)
    y0 = min(max(y0, 0), height - side)
    return x0, y0, x0 + side, y0 + side


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square ``(x0, y0, x1, y1)`` of a ``width`` x ``height`` image."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def face_box(onset_frame: np.ndarray, aligned: bool, margin: float = 0.2,
             where: str = "clip") -> tuple[tuple[int, int, int, int], str]:
    """The one crop box of a clip, decided on its onset frame.

    Args:
        onset_frame: H x W (x 3) uint8.
        aligned: True for face-aligned data: the whole frame is the face (no detection).
        margin: fraction of the face box added on every side (raw frames).
        where: the clip's name for the warning.

    Returns:
        ``(box, how)``: box ``(x0, y0, x1, y1)``; how is ``"aligned"``, ``"haar"`` or
        ``"centre"`` (no face found: a :class:`FaceNotFoundWarning` is issued).

    Raises:
        FaceDetectorUnavailable: raw frames, and this OpenCV has no Haar cascade.
    """
    h, w = onset_frame.shape[:2]
    if aligned:
        return (0, 0, w, h), "aligned"
    face = detect_face(onset_frame)
    if face is None:
        warnings.warn(f"{where}: no face found on the onset frame; using a centre crop",
                      FaceNotFoundWarning, stacklevel=2)
        return centre_box(w, h), "centre"
    return square_box(face, margin, w, h), "haar"


def crop(frame: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut ``box`` out of ``frame`` and resize it to ``size`` x ``size`` (area interpolation)."""
    x0, y0, x1, y1 = box
    part = frame[y0:y1, x0:x1]
    if part.shape[0] == size and part.shape[1] == size:
        return np.ascontiguousarray(part)
    interp = cv2.INTER_AREA if min(part.shape[:2]) >= size else cv2.INTER_LINEAR
    return cv2.resize(part, (size, size), interpolation=interp)


__all__ = ["FaceNotFoundWarning", "FaceDetectorUnavailable", "haar_available", "detect_face",
           "square_box", "centre_box", "face_box", "crop"]
