"""mer_core.motion: the onset -> apex optical flow as an image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mer_core import motion


def _texture(size=64, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (size, size), dtype=np.uint8), (5, 5), 1.5)


@pytest.mark.parametrize("method", ["tvl1", "farneback"])
def test_a_shift_right_is_a_positive_horizontal_flow(method):
    if method == "tvl1" and not hasattr(cv2, "optflow"):
        pytest.skip("this OpenCV has no contrib optflow module")
    a = _texture()
    b = np.roll(a, 1, axis=1)                       # everything moves 1 px to the right
    flow = motion.optical_flow(a, b, method)[8:-8, 8:-8]
    assert flow.shape[-1] == 2
    assert flow[..., 0].mean() == pytest.approx(1.0, abs=0.2)
    assert abs(flow[..., 1].mean()) < 0.2


def test_flow_method_is_tvl1_with_the_pinned_contrib_build():
    assert motion.flow_method() == ("tvl1" if hasattr(cv2, "optflow") else "farneback")


def test_encoding_keeps_direction_and_magnitude_on_a_fixed_scale():
    s = motion.FLOW_SCALE
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 0] = (s / 2, 0)        # half the scale to the right
    flow[0, 1] = (0, -s)           # the full scale upwards
    flow[0, 2] = (3 * s, 0)        # beyond the scale: clipped, not wrapped
    img = motion.encode_flow(flow)
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    assert tuple(img[1, 0]) == (128, 128, 0)                       # no motion
    assert abs(int(img[0, 0, 0]) - 192) <= 1 and img[0, 0, 1] == 128
    assert abs(int(img[0, 0, 2]) - 128) <= 1
    assert img[0, 1, 1] == 1 and img[0, 1, 2] == 255
    assert img[0, 2, 0] == 255 and img[0, 2, 2] == 255
    back = motion.decode_flow(img)
    np.testing.assert_allclose(back[0, 0], (s / 2, 0, s / 2), atol=s / 100)
    np.testing.assert_allclose(back[1, 0], (0, 0, 0), atol=1e-6)


def test_flow_image_of_rgb_crops_and_errors():
    a = np.dstack([_texture()] * 3)
    same = motion.flow_image(a, a)
    assert same.shape == (64, 64, 3) and same[..., 2].max() <= 3   # nothing moved
    moved = motion.flow_image(a, np.roll(a, 2, axis=1))
    assert moved[8:-8, 8:-8, 2].mean() > 100 and moved[8:-8, 8:-8, 0].mean() > 170
    with pytest.raises(ValueError, match="one shape"):
        motion.optical_flow(a[..., 0], a[:32, :, 0])
    with pytest.raises(ValueError, match="unknown flow method"):
        motion.optical_flow(a[..., 0], a[..., 0], "magic")


def test_difference_is_signed_on_a_fixed_gain():
    onset = np.full((2, 2, 3), 100, np.uint8)
    apex = onset.copy()
    apex[0, 0] = 110            # +10 levels
    apex[0, 1] = 0              # -100 levels: clipped at 0
    apex[1, 0] = 255            # +155 levels: clipped at 255
    d = motion.difference(onset, apex)
    assert d.dtype == np.uint8
    assert tuple(d[1, 1]) == (128,) * 3 and tuple(d[0, 0]) == (128 + 20,) * 3
    assert d[0, 1, 0] == 0 and d[1, 0, 0] == 255
    with pytest.raises(ValueError, match="one shape"):
        motion.difference(onset, apex[:1])
