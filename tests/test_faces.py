"""Face alignment of raw frames (mer_core.faces): the similarity transform from two eye points,
the choice of the eye pair, one warp for every frame of a clip, the box-crop fallback, and the
Haar cascades on a real photograph and on the synthetic faces, rotated by known angles."""
from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import pytest

from mer_core import faces

needs_haar = pytest.mark.skipif(not faces.haar_available(),
                                reason="this OpenCV has no Haar cascade")


def angle_of(matrix) -> float:
    """Rotation (degrees, counter-clockwise on screen) of a 2 x 3 similarity matrix."""
    return math.degrees(math.atan2(-matrix[1, 0], matrix[0, 0]))


def apply(matrix, point) -> np.ndarray:
    return np.asarray(matrix, float) @ np.array([point[0], point[1], 1.0])


# ---------------------------------------------------------------------------- the transform

def test_eye_geometry_frames_like_the_widened_face_box():
    assert faces.eye_geometry(0.0) == pytest.approx((faces.EYE_SPAN, faces.EYE_ROW))
    span, row = faces.eye_geometry(0.2)
    assert span == pytest.approx(0.4 / 1.4) and row == pytest.approx(0.58 / 1.4)


def test_similarity_from_known_eye_points():
    left, right, size = (30.0, 50.0), (70.0, 80.0), 100   # 3-4-5: 50 px apart, 36.87 degrees
    m = faces.similarity_from_eyes(left, right, size)
    span, row = faces.eye_geometry(0.2)
    assert m.shape == (2, 3)
    # the eyes land exactly where they should: level, span * size apart, midpoint centred
    np.testing.assert_allclose(apply(m, left), [(1 - span) / 2 * size, row * size], atol=1e-9)
    np.testing.assert_allclose(apply(m, right), [(1 + span) / 2 * size, row * size], atol=1e-9)
    np.testing.assert_allclose(apply(m, (50, 65)), [size / 2, row * size], atol=1e-9)
    # a rotation by minus the eye line's angle, scaled: OpenCV's own rotation matrix about the
    # eye midpoint (angle in degrees, counter-clockwise on screen), then a shift
    theta = math.degrees(math.atan2(30, 40))
    scale = span * size / 50
    expected = cv2.getRotationMatrix2D((50.0, 65.0), theta, scale)
    expected[:, 2] += np.array([size / 2, row * size]) - np.array([50.0, 65.0])
    np.testing.assert_allclose(m, expected, atol=1e-9)
    assert angle_of(m) == pytest.approx(theta)      # it turns the tilted line back by theta
    assert math.hypot(m[0, 0], m[1, 0]) == pytest.approx(scale)
    # a level pair: no rotation; the margin only changes the framing
    level = faces.similarity_from_eyes((40, 60), (80, 60), 64, margin=0.0)
    np.testing.assert_allclose(level[:, :2], np.eye(2) * 0.4 * 64 / 40, atol=1e-12)
    with pytest.raises(ValueError, match="left eye strictly left"):
        faces.similarity_from_eyes((70, 80), (30, 50), size)
    with pytest.raises(ValueError, match="left eye strictly left"):
        faces.similarity_from_eyes((30, 50), (30, 50), size)


def test_box_transform_is_the_crop():
    """Pixel centres at integer coordinates: the box's outer edges map onto the crop's."""
    m = faces.box_transform((10, 20, 74, 84), 32)
    np.testing.assert_allclose(apply(m, (9.5, 19.5)), [-0.5, -0.5])
    np.testing.assert_allclose(apply(m, (73.5, 83.5)), [31.5, 31.5])
    assert angle_of(m) == 0
    # what faces.crop does to a bright pixel's centroid: a 2 x 2 block at 40..41 -> 8 x 8 px
    # block scaled 1/2 -> centre (40.5 - 10 + 0.5) / 2 - 0.5 = 15
    img = np.zeros((100, 80, 3), np.uint8)
    img[60:62, 40:42] = 255
    small = faces.crop(img, (10, 20, 74, 84), 32)
    np.testing.assert_allclose(centroid(small, floor=0), apply(m, (40.5, 60.5)), atol=1e-6)


# ---------------------------------------------------------------------------- the eye pair

FACE = (100, 50, 100, 100)   # x, y, w, h: midline x = 150, half height y = 100


def test_eye_pair_picks_the_largest_plausible_pair():
    eyes = [(120, 70, 20, 20), (160, 74, 20, 20),   # the eyes: centres (130, 80), (170, 84)
            (121, 55, 14, 14), (163, 56, 14, 14),   # the brows: plausible too, but smaller
            (142, 76, 6, 6),                        # a speck near the midline
            (120, 120, 22, 22),                     # a nostril / mouth corner: lower half
            (178, 58, 34, 34)]                      # too large next to either eye
    assert faces.eye_pair(eyes, FACE) == ((130.0, 80.0), (170.0, 84.0))


@pytest.mark.parametrize("eyes, why", [
    ([(120, 70, 20, 20)], "one eye"),
    ([(110, 70, 20, 20), (125, 70, 20, 20)], "same side of the midline"),
    ([(140, 70, 10, 10), (152, 70, 10, 10)], "too close"),
    ([(120, 60, 12, 12), (160, 60, 24, 24)], "sizes differ"),
    ([(120, 52, 20, 20), (160, 85, 20, 20)], "too steep"),
    ([(120, 95, 20, 20), (160, 95, 20, 20)], "below the upper half"),
])
def test_eye_pair_rejects_implausible_pairs(eyes, why):
    assert faces.eye_pair(eyes, FACE) is None, why


# ---------------------------------------------------------------------------- one warp per clip

def dot_clip(n=5, shape=(180, 220), start=(90.0, 80.0), step=(2.5, 1.5)):
    """Grey frames with one Gaussian dot moving by ``step`` px per frame; its true positions."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    frames, where = [], []
    for t in range(n):
        x, y = start[0] + t * step[0], start[1] + t * step[1]
        img = 40 + 200 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0 ** 2))
        frames.append(np.repeat(img.round().astype(np.uint8)[..., None], 3, axis=2))
        where.append((x, y))
    return np.stack(frames), np.array(where)


def centroid(img, floor: float = 40) -> np.ndarray:
    """Intensity centroid ``(x, y)`` of what is brighter than ``floor`` (+ 20 grey levels)."""
    g = img[..., 0].astype(np.float64) - floor
    g[g < (20 if floor else 1)] = 0
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    return np.array([(g * xx).sum(), (g * yy).sum()]) / g.sum()


def test_one_warp_keeps_the_motion_between_frames(monkeypatch):
    frames, where = dot_clip()
    # eyes tilted by atan(20 / 56) = 19.65 degrees, injected: one ClipCrop cuts every frame
    monkeypatch.setattr(faces, "detect_face", lambda image: (40, 20, 140, 140))
    monkeypatch.setattr(faces, "detect_eyes",
                        lambda image, face: [(62, 52, 16, 16), (118, 72, 16, 16)])
    cut = faces.align_clip(frames[0], aligned=False)
    assert cut.how == "eyes" and cut.note == "" and cut.eyes == ((70, 60), (126, 80))
    # the eye line runs down to the right (clockwise on screen): turned back counter-clockwise
    assert angle_of(cut.matrix) == pytest.approx(math.degrees(math.atan2(20, 56)))
    size = 64
    m = cut.transform(size)
    moved = np.array([centroid(cut.crop(f, size)) for f in frames])
    native = np.array([centroid(cut.native(f)) for f in frames])
    # every frame's dot sits where the clip's one transform puts it ...
    np.testing.assert_allclose(native, [apply(cut.matrix, p) for p in where], atol=0.15)
    np.testing.assert_allclose(moved, [apply(m, p) for p in where], atol=0.3)
    # ... so the frame-to-frame motion is the raw motion, rotated and scaled, nothing removed
    step = np.diff(where, axis=0)
    scale = math.hypot(m[0, 0], m[1, 0])
    np.testing.assert_allclose(np.diff(moved, axis=0), step @ m[:, :2].T, atol=0.3)
    np.testing.assert_allclose(np.linalg.norm(np.diff(moved, axis=0), axis=1),
                               np.linalg.norm(step, axis=1) * scale, atol=0.3)
    assert scale == pytest.approx(faces.eye_geometry(0.2)[0] * size / math.hypot(20, 56))


def test_no_eyes_falls_back_to_the_box_crop_and_says_so(monkeypatch):
    img = np.full((120, 160, 3), 128, np.uint8)
    monkeypatch.setattr(faces, "detect_face", lambda image: (60, 30, 40, 40))
    monkeypatch.setattr(faces, "detect_eyes", lambda image, face: [])
    cut = faces.align_clip(img, aligned=False, margin=0.2)
    assert cut.how == "haar" and cut.note == faces.NO_EYES == "no eyes: box crop"
    assert cut.box == faces.square_box((60, 30, 40, 40), 0.2, 160, 120) == (52, 22, 108, 78)
    rec = cut.record(28)
    assert rec["note"] == "no eyes: box crop" and rec["eyes"] is None
    np.testing.assert_allclose(rec["transform"], faces.box_transform(cut.box, 28), atol=1e-5)
    assert np.array_equal(cut.crop(img, 28), faces.crop(img, cut.box, 28))
    monkeypatch.setattr(faces, "detect_face", lambda image: None)
    with pytest.warns(faces.FaceNotFoundWarning, match="clipY: no face found"):
        cut = faces.align_clip(img, aligned=False, where="clipY")
    assert cut.how == "centre" and cut.note == faces.NO_FACE and cut.box == (20, 0, 140, 120)
    cut = faces.align_clip(img, aligned=True)
    assert cut.how == "aligned" and cut.box == (0, 0, 160, 120) and cut.note == ""
    assert np.array_equal(cut.crop(img, 32), faces.crop(img, (0, 0, 160, 120), 32))


# ---------------------------------------------------------------------------- the cascades

def rotated(img, degrees, pad):
    """``img`` padded (edges replicated) and rotated by ``degrees`` (counter-clockwise on
    screen) about the canvas centre; the 3 x 3 matrix of that rotation."""
    canvas = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    h, w = canvas.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = cv2.warpAffine(canvas, rot, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return out, np.vstack([rot, [0, 0, 1]])


def recovered(img, degrees, pad):
    """The clip crop of ``img`` rotated by ``degrees``, composed with that rotation: the
    transform the alignment gives the UNROTATED image (None if no eye pair was found)."""
    image, rot = rotated(img, degrees, pad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", faces.FaceNotFoundWarning)
        cut = faces.align_clip(image, aligned=False)
    return None if cut.how != "eyes" else cut.matrix @ rot


@needs_haar
def test_alignment_undoes_a_known_rotation_of_a_photograph():
    """scikit-image's astronaut (a real face, its head tilted about 4 degrees): rotating the
    photograph by a known angle changes the recovered transform by that angle only."""
    from skimage import data

    photo = data.astronaut()
    upright = recovered(photo, 0, 0)
    assert upright is not None
    for degrees in (-10, 10, 15):
        m = recovered(photo, degrees, 0)
        assert m is not None, degrees
        assert angle_of(m) == pytest.approx(angle_of(upright), abs=3.0), degrees
        assert math.hypot(m[0, 0], m[1, 0]) == pytest.approx(
            math.hypot(upright[0, 0], upright[1, 0]), rel=0.08)


@needs_haar
def test_alignment_levels_rotated_synthetic_faces():
    """The synthetic set's cartoon faces (rendered at 256 px, padded): the cascades find their
    eyes, and the recovered transform levels the true eye line within 2.5 degrees and puts the
    true eyes within 4 % of the side of their target place, whatever the rotation."""
    from mer_core import synthetic_faces

    p = synthetic_faces.face_params(0, 1)
    lm = synthetic_faces.landmarks(p)
    face = np.clip(synthetic_faces.render_face(p, 256), 0, 255).round().astype(np.uint8)
    pad = 64
    eyes = [(lm["eye"][s][0] * 256 + pad, lm["eye"][s][1] * 256 + pad) for s in (-1, 1)]
    span, row = faces.eye_geometry(0.2)
    for degrees in (-8, 0, 8):
        image, rot = rotated(face, degrees, pad)
        cut = faces.align_clip(image, aligned=False)
        assert cut.how == "eyes", degrees
        m = cut.transform(100) @ rot            # the unrotated canvas -> the 100 px crop
        (ul, vl), (ur, vr) = apply(m, eyes[0]), apply(m, eyes[1])
        assert math.degrees(math.atan2(vr - vl, ur - ul)) == pytest.approx(0, abs=2.5)
        np.testing.assert_allclose([ul, vl, ur, vr], [50 - 50 * span, 100 * row,
                                                      50 + 50 * span, 100 * row], atol=4.0)
