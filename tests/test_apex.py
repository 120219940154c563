"""Apex spotters on hand-made clips with a known apex, LBP, and the scoring table."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from mer_core import apex, apex_scores, vocab


def make_face(size: int = 96, seed: int = 0) -> np.ndarray:
    """A drawn aligned face (float32 gray): textured skin, brows, eyes, nose, mouth."""
    rng = np.random.default_rng(seed)
    s = size
    img = np.full((s, s), 170, np.float32)
    img += cv2.GaussianBlur(rng.normal(0, 25, (s, s)).astype(np.float32), (0, 0), 2.0)
    cv2.ellipse(img, (s // 2, s // 2), (int(s * .42), int(s * .48)), 0, 0, 360, 150, 2)
    for cx in (0.32, 0.68):
        cv2.ellipse(img, (int(cx * s), int(.28 * s)), (int(.11 * s), int(.025 * s)), 0, 180, 360,
                    60, -1)                                                    # brow
        cv2.ellipse(img, (int(cx * s), int(.42 * s)), (int(.08 * s), int(.035 * s)), 0, 0, 360,
                    240, -1)                                                   # eye white
        cv2.circle(img, (int(cx * s), int(.42 * s)), int(.03 * s), 40, -1)     # iris
    cv2.line(img, (s // 2, int(.45 * s)), (int(.47 * s), int(.63 * s)), 120, 2)  # nose
    cv2.ellipse(img, (s // 2, int(.76 * s)), (int(.16 * s), int(.03 * s)), 0, 0, 360, 80, -1)
    return img


def make_clip(n: int = 80, apex_at: int = 50, size: int = 96, amp: float = 2.5,
              noise: float = 3.0, drift: float = 1.5, flicker: float = 0.01, blink=(15, 6),
              region: str = "mouth", seed: int = 0, rgb: bool = False) -> np.ndarray:
    """A clip whose only expression is a local deformation peaking at frame ``apex_at``.

    Nuisances: Gaussian sensor noise, a linear sub-pixel-to-pixel head drift, random
    illumination gain (flicker) and a blink (eyes closed for ``blink[1]`` frames from
    ``blink[0]``), all independent of the expression.
    """
    rng = np.random.default_rng(seed + 1)
    base = make_face(size, seed)
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    if region == "mouth":       # lip corners pulled up (AU12-like)
        centres, sig = [(.34 * s, .74 * s), (.66 * s, .74 * s)], .09 * s
    else:                       # brows raised (AU1+2-like)
        centres, sig = [(.32 * s, .28 * s), (.68 * s, .28 * s)], .1 * s
    field = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sig ** 2)) for cx, cy in centres)
    t = np.arange(n)
    level = np.where(t <= apex_at, np.sin(np.pi / 2 * t / max(apex_at, 1)) ** 2,
                     np.cos(np.pi / 2 * (t - apex_at) / max(n - 1 - apex_at, 1)) ** 2)
    out = []
    for i in range(n):
        d = drift * i / max(n - 1, 1)
        mx = (xx - d).astype(np.float32)          # float32 maps: OpenCV 5 hangs on float64
        my = (yy + amp * level[i] * field - 0.5 * d).astype(np.float32)
        f = cv2.remap(base, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if blink and blink[0] <= i < blink[0] + blink[1]:
            for cx in (0.32, 0.68):
                cv2.ellipse(f, (int(cx * s), int(.42 * s)), (int(.09 * s), int(.045 * s)), 0, 0,
                            360, 150, -1)
        f = f * (1 + rng.normal(0, flicker)) + rng.normal(0, noise, f.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    out = np.stack(out)
    if rgb:
        out = np.stack([out, (out * .9).astype(np.uint8), (out * .8).astype(np.uint8)], -1)
    return out


CASES = [  # (n, apex, blink start, region, rgb)
    (80, 50, 12, "mouth", False),
    (60, 22, 45, "brows", True),
    (45, 27, 5, "mouth", True),
    (100, 38, 75, "brows", False),
]


@pytest.mark.parametrize("method", ["frame_diff", "lbp", "optical_flow"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_spotters_find_the_known_apex(method, case):
    n, a, b, region, rgb = CASES[case]
    clip = make_clip(n, a, blink=(b, 6), region=region, seed=case, rgb=rgb)
    got = apex.spot(clip, method)
    assert abs(got - a) <= 3, f"{method} found {got}, apex is {a}"
    # ...and not the midpoint by luck: every case's apex is away from it.
    assert abs((n - 1) // 2 - a) > 3


def test_blink_alone_does_not_make_an_apex_elsewhere():
    # The blink is 3x stronger than in CASES and the expression is weak: still the apex.
    clip = make_clip(70, 45, amp=1.5, blink=(10, 8), seed=7)
    for method in ("frame_diff", "optical_flow"):
        assert abs(apex.spot(clip, method) - 45) <= 3, method


def test_frequency_runs_and_lands_near_the_apex():
    # The experimental Li et al. adaptation is weaker (see the metrics): no blink here.
    clip = make_clip(50, 30, seed=3, blink=None)
    c = apex.curve(clip, "frequency")
    assert c.shape == (50,) and np.isfinite(c).all()
    assert abs(apex.spot(clip, "frequency") - 30) <= 8


def test_middle_is_the_midpoint():
    for n in (1, 2, 10, 11, 57):
        clip = np.zeros((n, 8, 8), np.uint8)
        assert apex.spot(clip, "middle") == (n - 1) // 2
        assert np.argmax(apex.curve(clip, "middle")) == (n - 1) // 2


def test_curve_shape_and_no_motion_is_flat():
    still = np.repeat(make_face(64)[None].astype(np.uint8), 20, axis=0)
    for m in ("frame_diff", "lbp", "optical_flow", "frequency"):
        c = apex.curve(still, m)
        assert c.shape == (20,) and (c >= 0).all()
        assert c.max() < 1e-3, m


def test_one_frame_clip():
    one = make_clip(1, 0, blink=None)
    for m in vocab.SPOTTERS:
        assert apex.spot(one, m) == 0


def test_bad_arguments():
    clip = make_clip(10, 5, blink=None)
    with pytest.raises(ValueError, match="unknown apex method 'nope'"):
        apex.spot(clip, "nope")
    with pytest.raises(ValueError, match="unknown apex option"):
        apex.curve(clip, "lbp", smoth=3)
    with pytest.raises(ValueError, match="non-empty"):
        apex.curve(np.zeros((0, 8, 8), np.uint8), "lbp")
    with pytest.raises(ValueError, match="unknown region"):
        apex.curve(clip, "frame_diff", regions=("forehead",))


def test_options_change_the_curve():
    clip = make_clip(40, 25, blink=None)
    a = apex.curve(clip, "frame_diff", smooth=1)
    b = apex.curve(clip, "frame_diff", smooth=9)
    assert np.abs(np.diff(b)).sum() < np.abs(np.diff(a)).sum()   # smoother
    boxes = apex.curve(clip, "frame_diff", regions=[(0.6, 0.95, 0.2, 0.8)])
    assert np.argmax(boxes) == pytest.approx(25, abs=3)


def test_region_blocks_cover_the_boxes():
    boxes = apex.region_blocks((96, 96), ("brows", "mouth"), 8)
    assert boxes and all(0 <= y0 < y1 <= 96 and 0 <= x0 < x1 <= 96 for y0, y1, x0, x1 in boxes)
    top, bottom, left, right = apex.REGIONS["mouth"]
    mouth = apex.region_blocks((100, 100), ("mouth",), 8)
    assert min(b[0] for b in mouth) == round(top * 100)
    assert max(b[1] for b in mouth) == round(bottom * 100)
    assert max(b[3] for b in mouth) == round(right * 100)


def test_lbp_codes_match_a_plain_loop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 7, 9)).astype(np.uint8)
    codes = apex.lbp_codes(img, uniform=False)
    p = np.pad(img.astype(int), ((0, 0), (1, 1), (1, 1)), mode="edge")
    offs = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    for t in range(2):
        for y in range(7):
            for x in range(9):
                c = p[t, y + 1, x + 1]
                want = sum(int(p[t, y + 1 + dy, x + 1 + dx] >= c) << k
                           for k, (dy, dx) in enumerate(offs))
                assert codes[t, y, x] == want
    uni = apex.lbp_codes(img)
    assert uni.max() <= 58 and len(np.unique(apex._uniform_lut())) == 59
    # flat image: every neighbour >= centre -> code 255, a uniform pattern
    assert (apex.lbp_codes(np.zeros((1, 4, 4), np.uint8), uniform=False) == 255).all()


def test_lbp_histograms_and_chi_square():
    codes = np.array([[[0, 0], [1, 1]]])
    h = apex.lbp_histograms(codes, [(0, 2, 0, 2), (0, 1, 0, 2)], bins=3)
    assert np.allclose(h[0, 0], [0.5, 0.5, 0]) and np.allclose(h[0, 1], [1, 0, 0])
    assert apex.chi_square(h[0, 0], h[0, 0]) == 0
    assert apex.chi_square(np.array([1.0, 0]), np.array([0, 1.0])) == pytest.approx(2.0)


def table(rows):
    return pd.DataFrame(rows, columns=["sample_id", "method", "apex_pred", "apex_annotated"]).astype(
        {"apex_annotated": "Int64"})


def test_score_numbers_on_a_hand_made_table():
    t = table([
        ("a", "middle", 10, 20), ("b", "middle", 30, 30), ("c", "middle", 50, 38),
        ("d", "middle", 7, None),
        ("a", "lbp", 18, 20), ("b", "lbp", 36, 30), ("c", "lbp", 38, 38), ("d", "lbp", 1, None),
    ])
    m = apex_scores.score(t, fps=200)
    assert m["middle"] == {"mae_frames": pytest.approx(22 / 3, abs=1e-4),
                           "mae_ms": pytest.approx(22 / 3 * 5, abs=1e-3),
                           "median_frames": 10.0, "hit5": pytest.approx(1 / 3, abs=1e-4),
                           "hit10": pytest.approx(2 / 3, abs=1e-4), "n_scored": 3,
                           "n_excluded_na": 1}
    assert m["lbp"]["mae_frames"] == pytest.approx(8 / 3, abs=1e-4)
    assert m["lbp"]["median_frames"] == 2.0
    assert m["lbp"]["hit5"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["lbp"]["hit10"] == 1.0
    assert m["best"] == "lbp"
    assert apex_scores.score(t, fps=100)["lbp"]["mae_ms"] == pytest.approx(8 / 3 * 10, abs=1e-3)


def test_best_is_never_middle_and_survives_missing_annotations():
    t = table([("a", "middle", 20, 20), ("a", "frame_diff", 25, 20), ("a", "lbp", 23, 20)])
    assert apex_scores.score(t)["best"] == "lbp"            # middle is perfect here, but not eligible
    none = table([("a", "middle", 1, None), ("a", "optical_flow", 2, None)])
    m = apex_scores.score(none)
    assert m["optical_flow"]["mae_frames"] is None and m["optical_flow"]["n_excluded_na"] == 1
    assert m["best"] is None                                 # nothing to choose by
    assert apex_scores.score(table([("a", "middle", 1, 1)]))["best"] == "middle"
    with pytest.raises(ValueError, match="apex_annotated"):
        apex_scores.score(pd.DataFrame({"sample_id": ["a"], "method": ["lbp"], "apex_pred": [1]}))
