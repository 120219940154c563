"""Face crop of raw frames: OpenCV's bundled Haar cascades on a clip's onset frame and ONE fixed
transform per clip, applied to every frame (per-frame boxes or warps would jitter more than a
micro-expression moves, and a shared warp keeps the motion between frames). Aligned data
(synthetic, CASME II ``Cropped``) is only resized.

Raw frames (:func:`align_clip`): the frontal-face cascade finds the face; the eye cascades
(``haarcascade_eye``, ``haarcascade_eye_tree_eyeglasses``) look for the eyes in the upper part
of the face box and :func:`eye_pair` keeps the most plausible left/right pair;
:func:`similarity_from_eyes` then rotates the eye line level, scales the inter-ocular distance
to a fixed fraction of the square and puts the eye midpoint at a fixed place
(:func:`eye_geometry`: the place where the face-box crop would put the eyes of an average
face, so ``face_margin`` frames both kinds of crop alike). No eye pair: the face box crop,
widened by the margin, unrotated, and the clip says ``"no eyes: box crop"``. No face: a warning
and a centre crop.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


class FaceNotFoundWarning(UserWarning):
    """The Haar cascade found no face on a clip's onset frame; a centre crop is used."""


class FaceDetectorUnavailable(RuntimeError):
    """This OpenCV build has no Haar cascade (OpenCV 5 moved it out of the main package)."""


HAAR_FILE = "haarcascade_frontalface_default.xml"
#: Eye cascades, both run; their detections are pooled before a pair is chosen.
EYE_FILES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")
#: Inter-ocular distance (eye centres) as a fraction of the Haar face box's width, for an upright
#: frontal face. Measured: 0.39 on scikit-image's ``astronaut`` photograph (the usual rule of
#: thumb, eyes at 0.3 and 0.7 of the box, gives 0.4); the cartoon faces of the synthetic set
#: are wider-eyed (about 0.45).
EYE_SPAN = 0.40
#: Height of the eye line below the face box's top, as a fraction of the box's height
#: (``astronaut``: 0.38).
EYE_ROW = 0.38
#: A pair of eye detections is plausible when (face box width ``w``): each centre lies in the
#: upper half of the box, one on each side of its vertical midline; their distance is within
#: EYE_DISTANCE x ``w``; their sizes differ by at most EYE_SIZE_RATIO; the line through them
#: is at most EYE_MAX_TILT degrees from horizontal.
EYE_DISTANCE = (0.25, 0.70)
EYE_SIZE_RATIO = 1.5
EYE_MAX_TILT = 30.0
#: What a clip's crop says when the face was found but no eye pair was.
NO_EYES = "no eyes: box crop"
#: ... and when no face was found.
NO_FACE = "no face: centre crop"


def haar_available() -> bool:
    """True if this OpenCV has ``CascadeClassifier`` and its bundled frontal-face cascade."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    return hasattr(cv2, "CascadeClassifier") and os.path.isfile(os.path.join(folder, HAAR_FILE))


@lru_cache(maxsize=None)
def _cascade(name: str = HAAR_FILE):
    if not haar_available():
        raise FaceDetectorUnavailable(
            f"OpenCV {cv2.__version__} has no bundled Haar cascade ({HAAR_FILE}; OpenCV 5 "
            "removed CascadeClassifier from the main package): raw (unaligned) frames cannot be "
            "face-cropped. Install opencv-python-headless 4.x, or use aligned frames "
            "(CASME II Cropped).")
    path = os.path.join(cv2.data.haarcascades, name)
    cascade = cv2.CascadeClassifier(path) if os.path.isfile(path) else None
    if cascade is None or cascade.empty():
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


# ---------------------------------------------------------------------------- eye alignment

def detect_eyes(image: np.ndarray, face: tuple[int, int, int, int]
                ) -> list[tuple[int, int, int, int]]:
    """Eye candidates ``(x, y, w, h)`` (image coordinates) in the upper part of a face box.

    Both :data:`EYE_FILES` cascades search the top 60 % of the box (an eye window reaching a
    little below the middle is still whole); their detections are pooled, unfiltered
    (:func:`eye_pair` chooses).

    Args:
        image: H x W gray or H x W x 3 RGB uint8.
        face: the face box ``(x, y, w, h)`` (:func:`detect_face`).

    Raises:
        FaceDetectorUnavailable: this OpenCV has no Haar cascade.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    x, y, w, h = (int(v) for v in face)
    x0, y0 = max(x, 0), max(y, 0)
    roi = gray[y0:max(y0, y + int(round(0.6 * h))), x0:max(x0, x + w)]
    if min(roi.shape) < 8:
        return []
    roi = cv2.equalizeHist(roi)
    lo, hi = max(6, w // 12), max(7, w // 2)
    found = []
    for name in EYE_FILES:
        eyes = _cascade(name).detectMultiScale(roi, scaleFactor=1.05, minNeighbors=3,
                                               minSize=(lo, lo), maxSize=(hi, hi))
        found += [(int(ex) + x0, int(ey) + y0, int(ew), int(eh)) for ex, ey, ew, eh in eyes]
    return found


def eye_pair(eyes, face: tuple[int, int, int, int]
             ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The most plausible pair of eye detections: ``(left, right)`` centres, or None.

    Plausible (see :data:`EYE_DISTANCE`, :data:`EYE_SIZE_RATIO`, :data:`EYE_MAX_TILT`): both
    centres in the upper half of the face box, one left and one right of its vertical midline,
    a distance of 0.25 to 0.7 box widths, sizes within a factor 1.5, the line between them at
    most 30 degrees from horizontal. Among plausible pairs the one with the largest summed area
    wins (an eyebrow or nostril false positive is usually smaller than a true eye); ties go to
    the more horizontal pair.

    Args:
        eyes: ``(x, y, w, h)`` detections (:func:`detect_eyes`).
        face: the face box ``(x, y, w, h)``.

    Returns:
        ``((xl, yl), (xr, yr))``: the centres of the eye on the image's left and on its right
        (the subject's right and left eye), or None when no pair is plausible.
    """
    fx, fy, fw, fh = face
    mid_x, mid_y = fx + fw / 2, fy + fh / 2
    cands = [(ex + ew / 2, ey + eh / 2, max(ew, eh)) for ex, ey, ew, eh in eyes]
    cands = [c for c in cands if fy <= c[1] <= mid_y]
    best, best_key = None, None
    for a in cands:
        for b in cands:
            if not a[0] < mid_x < b[0]:   # a on the left, b on the right (each pair once)
                continue
            dx, dy = b[0] - a[0], b[1] - a[1]
            dist = math.hypot(dx, dy)
            if not EYE_DISTANCE[0] * fw <= dist <= EYE_DISTANCE[1] * fw:
                continue
            if max(a[2], b[2]) > EYE_SIZE_RATIO * min(a[2], b[2]):
                continue
            if abs(math.degrees(math.atan2(dy, dx))) > EYE_MAX_TILT:
                continue
            key = (a[2] ** 2 + b[2] ** 2, -abs(dy))
            if best_key is None or key > best_key:
                best, best_key = ((a[0], a[1]), (b[0], b[1])), key
    return best


def eye_geometry(margin: float = 0.2) -> tuple[float, float]:
    """Where the eyes go in an aligned square crop: ``(span, row)``, fractions of its side.

    The crop frames the face as the box crop would an average face (:data:`EYE_SPAN`,
    :data:`EYE_ROW`): a face box ``1 + 2 margin`` times narrower than the crop, so the
    inter-ocular distance is ``EYE_SPAN / (1 + 2 margin)`` of the side (0.286 at margin 0.2)
    and the eye line lies ``(margin + EYE_ROW) / (1 + 2 margin)`` of the side from the top
    (0.414), the eye midpoint centred horizontally.

    Args:
        margin: the face margin (``apex.face_margin``).
    """
    width = 1 + 2 * float(margin)
    return EYE_SPAN / width, (float(margin) + EYE_ROW) / width


def similarity_from_eyes(left, right, size: int, margin: float = 0.2) -> np.ndarray:
    """The similarity transform that puts two eye centres at their place in a square crop.

    Rotation: the eye line becomes horizontal; scale: the inter-ocular distance becomes
    ``span * size``; translation: the eye midpoint lands at ``(size / 2, row * size)``
    (``span, row`` = :func:`eye_geometry`). So ``left`` maps to
    ``((1 - span) / 2 * size, row * size)`` and ``right`` to ``((1 + span) / 2 * size,
    row * size)``.

    Args:
        left, right: ``(x, y)`` of the eye on the image's left and on its right (px).
        size: side of the output square (px).
        margin: the face margin (:func:`eye_geometry`).

    Returns:
        2 x 3 float64 matrix ``M`` mapping image px to crop px (``cv2.warpAffine``'s convention:
        ``[u, v] = M @ [x, y, 1]``).

    Raises:
        ValueError: the two points coincide, or the left one is not left of the right one.
    """
    (xl, yl), (xr, yr) = (float(v) for v in left), (float(v) for v in right)
    dx, dy = xr - xl, yr - yl
    dist = math.hypot(dx, dy)
    if dist == 0 or dx <= 0:
        raise ValueError(f"eyes at {tuple(left)} and {tuple(right)}: expected the left eye "
                         "strictly left of the right one")
    span, row = eye_geometry(margin)
    scale = span * size / dist
    c, s = scale * dx / dist, scale * dy / dist      # scale x cos / sin of the eye line angle
    rot = np.array([[c, s], [-s, c]])                # rotation by minus that angle, scaled
    mid = np.array([(xl + xr) / 2, (yl + yr) / 2])
    shift = np.array([size / 2, row * size]) - rot @ mid
    return np.hstack([rot, shift[:, None]])


def resize_transform(width: int, height: int, size: int) -> np.ndarray:
    """The 2 x 3 matrix of ``cv2.resize`` from ``width`` x ``height`` to ``size`` x ``size``.

    Pixel centres are integer coordinates (OpenCV's convention): pixel ``i`` covers
    ``[i - 0.5, i + 0.5]``, so the image's edges map onto the output's edges and
    ``u = (x + 0.5) * size / width - 0.5``.
    """
    sx, sy = size / width, size / height
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def box_transform(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The 2 x 3 matrix of :func:`crop`: ``box`` cut out and resized to ``size`` x ``size``
    (:func:`resize_transform` after a shift by the box's corner)."""
    x0, y0, x1, y1 = box
    m = resize_transform(x1 - x0, y1 - y0, size)
    m[:, 2] -= m[:, :2] @ np.array([x0, y0], float)
    return m


@dataclass(frozen=True)
class ClipCrop:
    """How every frame of one clip is cut: decided once, on its onset frame (:func:`align_clip`).

    Attributes:
        how: ``"aligned"`` (whole frame, resize only), ``"eyes"`` (eye-aligned similarity
            warp), ``"haar"`` (face box crop: no eye pair) or ``"centre"`` (no face).
        box: the square crop box ``(x0, y0, x1, y1)``: what ``haar``, ``centre`` and
            ``aligned`` cut; for ``eyes`` where the box crop would have cut (for reference).
        note: ``""``, :data:`NO_EYES` or :data:`NO_FACE`.
        face: the Haar face box ``(x, y, w, h)`` or None.
        eyes: ``((xl, yl), (xr, yr))`` for ``eyes``, else None.
        matrix: ``eyes`` only: the warp onto the native square (``side`` px).
        side: ``eyes`` only: side of the native square: the face at about its recorded
            resolution (the inter-ocular distance over :func:`eye_geometry`'s span).
    """

    how: str
    box: tuple[int, int, int, int]
    note: str = ""
    face: tuple[int, int, int, int] | None = None
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None
    matrix: np.ndarray | None = None
    side: int = 0

    def native(self, frame: np.ndarray) -> np.ndarray:
        """The clip's crop of ``frame`` before resizing: the box's pixels, or the eye-aligned
        warp (bilinear, borders replicated) onto ``side`` x ``side``."""
        if self.how == "eyes":
            return cv2.warpAffine(frame, self.matrix, (self.side, self.side),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = self.box
        return frame[y0:y1, x0:x1]

    def crop(self, frame: np.ndarray, size: int) -> np.ndarray:
        """``frame`` cut like the clip and resized to ``size`` x ``size`` (as :func:`crop`)."""
        part = self.native(frame)
        return crop(part, (0, 0, part.shape[1], part.shape[0]), size)

    def transform(self, size: int) -> np.ndarray:
        """The 2 x 3 matrix from frame px to the ``size`` px crop (``[u, v] = M @ [x, y, 1]``,
        pixel centres at integer coordinates): the warp, or the box's cut, then the resize."""
        if self.how == "eyes":
            resize = resize_transform(self.side, self.side, size)
            return resize[:, :2] @ self.matrix + np.hstack([np.zeros((2, 2)), resize[:, 2:]])
        return box_transform(self.box, size)

    def record(self, size: int) -> dict:
        """JSON-ready summary: ``how``, ``note``, ``transform`` (rounded), ``eyes``, ``face``."""
        return {"how": self.how, "note": self.note,
                "transform": np.round(self.transform(size), 5).tolist(),
                "eyes": None if self.eyes is None else
                [[round(v, 1) for v in e] for e in self.eyes],
                "face": None if self.face is None else list(self.face)}


def align_clip(onset_frame: np.ndarray, aligned: bool, margin: float = 0.2,
               where: str = "clip") -> ClipCrop:
    """The one crop of a clip, decided on its onset frame: eye-aligned where it can be.

    Args:
        onset_frame: H x W (x 3) uint8.
        aligned: True for face-aligned data: the whole frame is the face (no detection).
        margin: fraction of the face box added on every side; with eyes, the same framing
            (:func:`eye_geometry`).
        where: the clip's name for the warning.

    Returns:
        A :class:`ClipCrop`: ``aligned``; ``eyes`` (face and an eye pair found); ``haar`` (face,
        no plausible eye pair: the face box crop, note :data:`NO_EYES`); ``centre`` (no face:
        a :class:`FaceNotFoundWarning`, note :data:`NO_FACE`).

    Raises:
        FaceDetectorUnavailable: raw frames, and this OpenCV has no Haar cascade.
    """
    h, w = onset_frame.shape[:2]
    if aligned:
        return ClipCrop("aligned", (0, 0, w, h))
    face = detect_face(onset_frame)
    if face is None:
        warnings.warn(f"{where}: no face found on the onset frame; using a centre crop",
                      FaceNotFoundWarning, stacklevel=2)
        return ClipCrop("centre", centre_box(w, h), note=NO_FACE)
    box = square_box(face, margin, w, h)
    pair = eye_pair(detect_eyes(onset_frame, face), face)
    if pair is None:
        return ClipCrop("haar", box, note=NO_EYES, face=face)
    (xl, yl), (xr, yr) = pair
    side = max(8, int(round(math.hypot(xr - xl, yr - yl) / eye_geometry(margin)[0])))
    return ClipCrop("eyes", box, face=face, eyes=pair,
                    matrix=similarity_from_eyes(*pair, side, margin), side=side)


__all__ = ["FaceNotFoundWarning", "FaceDetectorUnavailable", "EYE_FILES", "EYE_SPAN", "EYE_ROW",
           "NO_EYES", "NO_FACE", "haar_available", "detect_face", "square_box", "centre_box",
           "face_box", "crop", "detect_eyes", "eye_pair", "eye_geometry", "similarity_from_eyes",
           "resize_transform", "box_transform", "ClipCrop", "align_clip"]
