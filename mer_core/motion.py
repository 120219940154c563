"""Motion between the onset and the apex of a clip, as an image: the onset -> apex optical flow,
and the apex - onset difference.

The field's motion input (most published micro-expression methods feed the network the flow
between onset and apex rather than the apex frame alone). The flow of two face crops is
computed with TV-L1 (``cv2.optflow``, in the ``opencv-contrib-python-headless`` build this
project pins) or, where an OpenCV build lacks it, Farneback; :func:`flow_method` says which, and
the apex stage's report records it.

It is stored like a frame (uint8 H x W x 3, so every consumer of the frame caches can take it):
channel 0 the horizontal and channel 1 the vertical displacement, ``128 + 127 * d / scale``
clipped to [1, 255]; channel 2 the magnitude, ``255 * |d| / scale`` clipped. ``scale``
(:data:`FLOW_SCALE` px at the cache size) is fixed in advance, the same for every clip, so a
stronger movement stays a brighter image.

The difference image is signed and on a fixed gain too: ``128 + DIFF_GAIN * (apex - onset)`` per
RGB channel, clipped to [0, 255] (unlike :func:`mer_core.card.difference_image`, which magnifies
each picture for the eye).
"""
from __future__ import annotations

import cv2
import numpy as np

#: Displacement (px at the cache size) mapped to the ends of the uint8 range. The synthetic
#: set's strongest AU moves about 5 px at 64 px; real micro-expressions move 1-3 px.
FLOW_SCALE = 4.0
#: Grey levels of the difference image per grey level of apex - onset (+-64 levels fit).
DIFF_GAIN = 2.0


def flow_method() -> str:
    """``tvl1`` when this OpenCV has the contrib ``optflow`` module, else ``farneback``."""
    return "tvl1" if hasattr(cv2, "optflow") else "farneback"


def optical_flow(first: np.ndarray, second: np.ndarray, method: str | None = None) -> np.ndarray:
    """Dense flow from ``first`` to ``second`` (grey uint8 H x W): float32 H x W x 2 (dx, dy).

    Raises:
        ValueError: the images differ in shape or are not 2-D, or an unknown method.
    """
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"optical_flow: two grey images of one shape expected, got "
                         f"{first.shape} and {second.shape}")
    method = method or flow_method()
    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create().calc(first, second, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    raise ValueError(f"unknown flow method {method!r}; expected tvl1 or farneback")


def encode_flow(flow: np.ndarray, scale: float = FLOW_SCALE) -> np.ndarray:
    """H x W x 2 flow -> uint8 H x W x 3 image (dx, dy, magnitude; see the module docstring)."""
    d = flow / scale
    mag = np.hypot(d[..., 0], d[..., 1])
    uv = np.clip(128 + 127 * d, 1, 255)
    return np.dstack([uv, np.clip(255 * mag, 0, 255)]).round().astype(np.uint8)


def decode_flow(image: np.ndarray, scale: float = FLOW_SCALE) -> np.ndarray:
    """uint8 ... x 3 flow image -> float32 ... x 3 (dx, dy in px, magnitude in px)."""
    img = image.astype(np.float32)
    return np.stack([(img[..., 0] - 128) / 127 * scale, (img[..., 1] - 128) / 127 * scale,
                     img[..., 2] / 255 * scale], axis=-1)


def flow_image(onset: np.ndarray, apex: np.ndarray, method: str | None = None,
               scale: float = FLOW_SCALE) -> np.ndarray:
    """The onset -> apex flow of two RGB face crops (uint8 S x S x 3) as a uint8 flow image."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (onset, apex)]
    return encode_flow(optical_flow(*grey, method=method), scale)


def difference(onset: np.ndarray, apex: np.ndarray, gain: float = DIFF_GAIN) -> np.ndarray:
    """The apex - onset difference of two RGB crops as a uint8 image (module docstring)."""
    if onset.shape != apex.shape:
        raise ValueError(f"difference: crops of one shape expected, got {onset.shape} and "
                         f"{apex.shape}")
    d = apex.astype(np.float32) - onset.astype(np.float32)
    return np.clip(128 + gain * d, 0, 255).round().astype(np.uint8)


__all__ = ["FLOW_SCALE", "DIFF_GAIN", "difference", "flow_method", "optical_flow", "encode_flow", "decode_flow",
           "flow_image"]
