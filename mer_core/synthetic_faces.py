"""Synthetic faces: drawing the frames of the synthetic CASME-II-shaped set.

This module owns what a frame looks like; :mod:`mer_core.synthetic` plans the clips and writes
the files. Each subject gets a procedurally drawn face (:func:`face_params`, :func:`landmarks`,
:func:`render_face`). Emotions are action-unit-like local displacement fields that also deepen
the AU's wrinkles and furrows (:func:`parse_aus`, :func:`au_maps`); their intensity
(:func:`intensity_profile`) is exactly 0 up to the onset frame, 1 at the apex and 0 again at the
offset. :func:`render_clip` draws one planned clip from its own random stream, with
label-independent nuisances (sensor noise, sub-pixel head drift, illumination flicker, blinks
away from the apex). ``amplitude`` (peak displacement in px at 128 px; wrinkles darken by
:data:`WRINKLE_PER_PX` per px) and :data:`IDENTITY_SPREAD` (how much the subjects' faces differ)
set the difficulty.
"""
from __future__ import annotations

import re
from functools import lru_cache

import cv2
import numpy as np

from mer_core import vocab

#: Darkening of an AU's wrinkles at the apex per px of amplitude (0.06 x 10 px = 60 %), capped
#: at :data:`WRINKLE_MAX`.
WRINKLE_PER_PX = 0.06
WRINKLE_MAX = 0.8
#: How much subjects differ (1 = every face trait over its whole range; see :func:`face_params`).
#: CASME II was filmed in one lab under one lighting, of 26 young adults of one ethnicity, and its
#: aligned crops are registered to one face; at 1 identity swamps an expression in a single small
#: frame. ``benchmarks/synthetic_probe.py`` measures what a single frame says (README: synthetic
#: data).
IDENTITY_SPREAD = 0.15


# --------------------------------------------------------------------------------------------
# Expression dynamics and action units


def intensity_profile(frames, onset: int, apex: int, offset: int) -> np.ndarray:
    """Expression intensity of each frame number: 0 up to and at the onset, 1 at the apex.

    A smoothstep rise onset -> apex and fall apex -> offset; 0 outside onset..offset.

    Raises:
        ValueError: unless onset < apex < offset.
    """
    if not onset < apex < offset:
        raise ValueError(f"need onset < apex < offset, got {onset}, {apex}, {offset}")
    f = np.asarray(frames, dtype=np.float64)
    out = np.zeros_like(f)
    rise = (f > onset) & (f <= apex)
    fall = (f > apex) & (f < offset)
    u = np.where(rise, (f - onset) / (apex - onset), 0.0)
    out = np.where(rise, u * u * (3 - 2 * u), out)
    u = np.where(fall, (offset - f) / (offset - apex), 0.0)
    return np.where(fall, u * u * (3 - 2 * u), out)


def _au_bumps(au: int, side: int, lm: dict) -> list[tuple[float, float, float, float, float]]:
    """Gaussian bumps (x, y, sigma, vx, vy) of one AU on one side (+1 = image right)."""
    bx, by = lm["brow_inner"][side]
    ox, oy = lm["brow_outer"][side]
    ex, ey, ery = lm["eye"][side]
    nx, ny = lm["nose_wing"][side]
    cx_, cy_ = lm["lip_corner"][side]
    s = float(side)
    table = {
        1: [(bx, by, .045, 0, -1)],
        2: [(ox, oy, .045, 0, -1)],
        4: [(bx, by + .005, .045, -s * .45, .9)],
        6: [(ex, ey + .085, .055, 0, -1), (ex, ey + ery, .03, 0, -.6)],
        7: [(ex, ey + ery * .8, .028, 0, -1), (ex, ey - ery, .025, 0, .35)],
        9: [(nx - s * .01, ny - .035, .035, 0, -1),
            (lm["glabella"][0], lm["glabella"][1], .03, 0, .5)],
        10: [(lm["mid_x"] + s * .45 * lm["mouth_hw"], lm["upper_lip"], .04, 0, -1)],
        12: [(cx_, cy_, .04, s * .5, -.87)],
        14: [(cx_, cy_, .035, -s, -.1)],
        15: [(cx_, cy_, .04, s * .1, 1)],
        17: [(lm["chin"][0], lm["chin"][1], .05, 0, -1)],
        20: [(cx_, cy_, .04, s, .25)],
    }
    if au not in table:
        raise ValueError(f"action unit {au} has no synthetic deformation")
    return table[au]


def parse_aus(text: str) -> list[tuple[int, tuple[int, ...]]]:
    """``'4+L10'`` -> ``[(4, (-1, 1)), (10, (-1,))]``: AU number and the sides it acts on."""
    out = []
    for part in str(text).split("+"):
        m = re.fullmatch(r"([LR]?)(\d+)", part.strip())
        if not m:
            raise ValueError(f"cannot parse action unit {part!r} in {text!r}")
        sides = {"": (-1, 1), "L": (-1,), "R": (1,)}[m.group(1)]
        out.append((int(m.group(2)), sides))
    return out


def _au_strokes(au: int, side: int, lm: dict) -> list[tuple[float, float, float, float]]:
    """Wrinkles and furrows (x0, y0, x1, y1 segments) that an AU deepens on one side (FACS)."""
    bx, by = lm["brow_inner"][side]
    ox, oy = lm["brow_outer"][side]
    ex, ey, ery = lm["eye"][side]
    nx, ny = lm["nose_wing"][side]
    kx, ky = lm["lip_corner"][side]
    cx, (chx, chy) = lm["mid_x"], lm["chin"]
    erx, s = lm["eye_rx"], float(side)
    table = {
        1: [(cx, by - .035 - .022 * k, cx + s * .05, by - .035 - .022 * k + .004) for k in (0, 1)],
        2: [(ox - s * .03, oy - .03 - .02 * k, ox + s * .02, oy - .032 - .02 * k) for k in (0, 1)],
        4: [(cx + s * .012, by - .025, cx + s * .014, by + .015)],
        6: [(ex + s * erx * 1.1, ey, ex + s * (erx * 1.1 + .035), ey + d)
            for d in (-.015, 0, .017)],
        7: [(ex - .03, ey + ery + .012, ex + .03, ey + ery + .012)],
        9: [(cx, ey + d, cx + s * .03, ey + d - .006) for d in (.035, .052)],
        10: [(nx + s * .012, ny - .01, nx + s * .03, ny + .04)],
        12: [(nx + s * .015, ny, kx + s * .025, ky + .02), (kx, ky, kx + s * .015, ky - .004)],
        14: [(kx + s * .018, ky, kx + s * .02, ky + .002)],
        15: [(kx, ky + .005, kx + s * .01, ky + .04)],
        17: [(cx, chy - .035, cx + s * .04, chy - .03),
             (chx + s * .015, chy, chx + s * .017, chy + .002)],
        20: [(kx + s * .01, ky, kx + s * .045, ky + .008)],
    }
    return table.get(au, [])


def _segment(X, Y, x0, y0, x1, y1, width) -> np.ndarray:
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((X - x0) * dx + (Y - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
    return np.exp(-(((X - x0 - t * dx) ** 2 + (Y - y0 - t * dy) ** 2) / (width * width)))


def au_maps(aus: str, landmarks: dict, size: int,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Displacement field and wrinkle map of the action units ``aus`` at full intensity.

    Each AU moves tissue (Gaussian bumps of displacement, peak magnitude 1 px per unit amplitude
    times a per-AU weight) and deepens its wrinkles and furrows (FACS appearance changes), so an
    expression is visible in a single frame, not only against the neutral face.

    Args:
        aus: action units as in the sheet, e.g. ``'4+L10'``.
        landmarks: :func:`landmarks` of the face.
        size: side in px.
        rng: per-clip jitter of placement, width, direction and weight (None: none).

    Returns:
        ``(field, wrinkles)``: size x size x 2 displacement (px per unit amplitude, before
        scaling to ``size``) and size x size darkening weights in [0, 1].
    """
    grid = (np.arange(size, dtype=np.float64) + 0.5) / size
    X, Y = np.meshgrid(grid, grid)
    field = np.zeros((size, size, 2), np.float64)
    wrinkles = np.zeros((size, size), np.float64)
    for au, sides in parse_aus(aus):
        weight = 1.0 if rng is None else rng.uniform(0.7, 1.0)
        for side in sides:
            jx, jy = (0.0, 0.0) if rng is None else rng.normal(0, .008, 2)
            for x, y, sig, vx, vy in _au_bumps(au, side, landmarks):
                if rng is not None:
                    x, y = x + jx + rng.normal(0, .005), y + jy + rng.normal(0, .005)
                    sig *= rng.uniform(0.85, 1.15)
                    ang = rng.normal(0, .15)
                    c, sn = np.cos(ang), np.sin(ang)
                    vx, vy = vx * c - vy * sn, vx * sn + vy * c
                norm = np.hypot(vx, vy)
                g = weight * np.exp(-((X - x) ** 2 + (Y - y) ** 2) / (2 * sig * sig)) / norm
                field[..., 0] += g * vx
                field[..., 1] += g * vy
            for x0, y0, x1, y1 in _au_strokes(au, side, landmarks):
                w = _segment(X, Y, x0 + jx, y0 + jy, x1 + jx, y1 + jy, max(.006, 1.2 / size))
                wrinkles = np.maximum(wrinkles, weight * w)
    return field, wrinkles


# --------------------------------------------------------------------------------------------
# Faces


def face_params(seed: int, subject: int, spread: float | None = None) -> dict:
    """Fixed random face geometry, colours and texture seed of one subject (fractions of size).

    Args:
        seed: dataset seed.
        subject: subject number.
        spread: how far each trait strays from the middle of its range (1 = the whole range,
            0 = one shared face apart from texture, moles and hair hue); default
            :data:`IDENTITY_SPREAD`. The random draws do not depend on it.
    """
    k = IDENTITY_SPREAD if spread is None else float(spread)
    r = np.random.default_rng([seed, 1, subject])

    def u(lo, hi, size=None):
        mid = (lo + hi) / 2
        return mid + k * (r.uniform(lo, hi, size) - mid)

    def n(mu, sd, size=None):
        return mu + k * r.normal(0, sd, size)

    tone = u(0, 1)
    skin = np.array([95, 62, 45]) * (1 - tone) + np.array([238, 204, 178]) * tone
    skin = skin * u(0.95, 1.05, 3)
    hair_base = r.choice([0, 1, 2], p=[.6, .3, .1])
    hues = np.array([[25, 20, 18], [80, 55, 35], [150, 120, 80]], float)
    mean_hair = np.array([.6, .3, .1]) @ hues
    hair = mean_hair + k * (hues[hair_base] - mean_hair)
    p = {
        "skin": skin, "hair": hair * u(0.8, 1.2),
        "bg": np.full(3, u(40, 200)) * u(0.9, 1.1, 3),
        "cx": n(0.5, .012), "cy": n(0.53, .012),
        "fw": u(.36, .44), "fh": u(.46, .52), "jaw": u(.05, .25),
        "hairline": u(.55, .75), "hair_curve": u(.5, 2.0),
        "eye_dy": u(.08, .12), "eye_dx": u(.15, .19),
        "eye_rx": u(.062, .08), "eye_ry": u(.022, .03),
        "iris": np.array([u(20, 90), u(15, 60), u(10, 40)]),
        "brow_dy": u(.06, .085), "brow_in": u(.035, .06),
        "brow_arch": u(.005, .02), "brow_th": u(.014, .024),
        "brow_dark": u(.25, .6),
        "nose_dy": u(.16, .21), "nose_w": u(.042, .058),
        "mouth_dy": u(.09, .12), "mouth_hw": u(.085, .115),
        "upper_lip": u(.02, .03), "lower_lip": u(.026, .038),
        "lip_red": u(.25, .6), "chin_dy": u(.035, .05),
        "wrinkles": u(0, .08), "blush": u(0, .08),
        "light": n(0, 1, 2) * np.array([.1, .05]),
        "texture_seed": int(r.integers(2**31)), "n_moles": int(r.integers(0, 5)),
        "tilt": n(0, .01),
    }
    return p


def landmarks(p: dict) -> dict:
    """Feature positions (fractions of size) the action units act on; index by side -1/+1."""
    cx, cy = p["cx"], p["cy"]
    ey = cy - p["eye_dy"]
    by = ey - p["brow_dy"]
    ny = ey + p["nose_dy"]
    my = ny + p["mouth_dy"]
    lm = {"mid_x": cx, "mouth_hw": p["mouth_hw"], "eye_rx": p["eye_rx"], "eye": {},
          "brow_inner": {}, "brow_outer": {},
          "nose_wing": {}, "lip_corner": {}, "glabella": (cx, by + .01),
          "upper_lip": my - p["upper_lip"], "mouth_y": my,
          "chin": (cx, my + p["lower_lip"] + p["chin_dy"]), "nose_y": ny}
    for s in (-1, 1):
        ex = cx + s * p["eye_dx"]
        lm["eye"][s] = (ex, ey + s * p["tilt"], p["eye_ry"])
        lm["brow_inner"][s] = (cx + s * p["brow_in"], by + .008)
        lm["brow_outer"][s] = (cx + s * (p["eye_dx"] + .7 * p["eye_rx"]), by - p["brow_arch"])
        lm["nose_wing"][s] = (cx + s * p["nose_w"], ny)
        lm["lip_corner"][s] = (cx + s * p["mouth_hw"], my)
    return lm


def _draw_curve(mask: np.ndarray, pts: np.ndarray, radius, R: int) -> None:
    """Stamp filled discs along ``pts`` (fractions) with per-point ``radius`` (fractions)."""
    radius = np.broadcast_to(radius, (len(pts),))
    for (x, y), rad in zip(pts, radius):
        cv2.circle(mask, (int(round(x * R * 16)), int(round(y * R * 16))),
                   max(1, int(round(rad * R * 16))), 255, -1, cv2.LINE_AA, shift=4)


def render_face(p: dict, size: int, closed_eyes: bool = False) -> np.ndarray:
    """Draw the neutral face of parameters ``p`` (size x size x 3 RGB float32, 0..255)."""
    R = max(2 * size, 256)  # supersampled canvas, area-downsampled at the end
    g = (np.arange(R, dtype=np.float64) + 0.5) / R
    X, Y = np.meshgrid(g, g)
    tex = np.random.default_rng(p["texture_seed"])
    lm = landmarks(p)
    cx, cy, fw, fh = p["cx"], p["cy"], p["fw"], p["fh"]
    soft = 1.5 / R

    def paint(img, m, color, alpha=1.0):
        m = np.clip(m, 0, 1)[..., None] * alpha
        return img * (1 - m) + np.asarray(color, np.float64) * m

    def ellipse(x0, y0, rx, ry):
        d = np.sqrt(((X - x0) / rx) ** 2 + ((Y - y0) / ry) ** 2) - 1
        return 0.5 - d * min(rx, ry) / soft

    # background with a gentle gradient
    img = np.broadcast_to(p["bg"], (R, R, 3)) * (0.9 + 0.2 * Y[..., None])
    # neck and face (egg shape: narrower jaw)
    img = paint(img, (np.abs(X - cx) < fw * .55) & (Y > cy), p["skin"] * .8)
    yy = np.clip((Y - cy) / fh, -1, 1)
    width = fw * (1 - p["jaw"] * np.clip(yy, 0, 1) ** 2)
    d = np.sqrt(((X - cx) / width) ** 2 + ((Y - cy) / fh) ** 2) - 1
    face = np.clip(0.5 - d * fw / soft, 0, 1)
    # skin: shading towards the border, directional light, blotchy and fine texture
    shade = 1 - 0.22 * np.clip(d + 1, 0, 1) ** 3
    shade = shade + p["light"][0] * (X - cx) / fw + p["light"][1] * (Y - cy) / fh
    low = cv2.resize(tex.normal(0, 1, (10, 10)), (R, R), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(tex.normal(0, 1, (R, R)), (0, 0), R / 256)
    skin = p["skin"] * (shade + 0.035 * low + 0.03 * fine)[..., None]
    for s in (-1, 1):  # cheeks
        cheek = np.exp(-((X - lm["eye"][s][0]) ** 2 + (Y - lm["eye"][s][1] - .12) ** 2)
                       / (2 * .05 ** 2))
        skin = paint(skin, cheek, skin.mean((0, 1)) * [1.1, .85, .85], p["blush"])
    img = paint(img, face, skin)
    skin_c = p["skin"]
    # hair above a curved hairline, inside a slightly larger head outline
    hairline = cy - fh * p["hairline"] + p["hair_curve"] * (X - cx) ** 2
    head = np.sqrt(((X - cx) / (fw * 1.1)) ** 2 + ((Y - cy) / (fh * 1.08)) ** 2) < 1
    hair_m = head & (Y < hairline)
    hair_tex = 1 + 0.15 * cv2.GaussianBlur(tex.normal(0, 1, (R, R)), (0, 0), R / 128)
    hm = cv2.GaussianBlur(hair_m.astype(np.float64), (0, 0), R / 200)[..., None]
    img = img * (1 - hm) + (p["hair"] * hair_tex[..., None]) * hm
    # forehead wrinkles (age) and moles: subject-specific texture
    by = lm["brow_inner"][1][1]
    for k in range(3):
        wy = by - .05 - .025 * k
        m = np.exp(-((Y - wy - .15 * (X - cx) ** 2) / .0035) ** 2) * (np.abs(X - cx) < .14)
        img = paint(img, m, skin_c * .7, p["wrinkles"])
    for _ in range(p["n_moles"]):
        mx, my_ = cx + tex.uniform(-.8, .8) * fw, cy + tex.uniform(-.3, .7) * fh
        img = paint(img, ellipse(mx, my_, .008, .008), skin_c * .45, .8)
    # eyes (almond), iris, lids, creases
    for s in (-1, 1):
        ex, ey, ery = lm["eye"][s]
        erx = p["eye_rx"]
        t = np.clip(1 - ((X - ex) / erx) ** 2, 0, 1)
        upper, lower = ey - ery * np.sqrt(t), ey + ery * .8 * np.sqrt(t)
        eye = np.clip(np.minimum(Y - upper, lower - Y) / soft, 0, 1) * (t > 0)
        img = paint(img, np.exp(-((X - ex) ** 2 / (2 * (erx * .9) ** 2)
                                  + (Y - ey - ery * 1.3) ** 2 / (2 * (ery * .6) ** 2))),
                    skin_c * .8, .5)  # under-eye shadow
        crease = np.exp(-((Y - (upper - ery * .55)) / (ery * .25)) ** 2) * (t > .1)
        img = paint(img, crease, skin_c * .65, .6)
        if closed_eyes:
            img = paint(img, eye, skin_c * .88)
            lid = np.exp(-((Y - (ey + ery * .35 * np.sqrt(t))) / (ery * .18)) ** 2) * (t > 0)
            img = paint(img, lid, skin_c * .3, .9)
        else:
            img = paint(img, eye, np.array([232, 226, 220]) * (0.8 + .2 * skin_c / 255))
            iris = ellipse(ex, ey + ery * .1, ery * 1.05, ery * 1.05) * eye
            img = paint(img, iris, p["iris"])
            img = paint(img, ellipse(ex, ey + ery * .1, ery * .45, ery * .45) * eye, (10, 8, 8))
            img = paint(img, ellipse(ex + ery * .3, ey - ery * .2, ery * .18, ery * .18) * eye,
                        (250, 250, 250), .8)
            lash = np.exp(-((Y - upper) / (ery * .2)) ** 2) * (t > 0)
            img = paint(img, lash, (20, 15, 15), .9)
    # eyebrows: tapering arcs from the inner to the outer end
    brow = np.zeros((R, R), np.uint8)
    for s in (-1, 1):
        (x0, y0), (x1, y1) = lm["brow_inner"][s], lm["brow_outer"][s]
        tau = np.linspace(0, 1.25, 40)
        xs = x0 + (x1 - x0) * tau
        ys = y0 + (y1 - y0) * tau - p["brow_arch"] * np.sin(np.pi * tau / 1.25) * 1.5 \
            + .02 * np.clip(tau - .9, 0, None)
        _draw_curve(brow, np.c_[xs, ys], p["brow_th"] * (1 - .45 * tau / 1.25) / 2, R)
    img = paint(img, brow / 255.0, p["hair"] * .8 + skin_c * .2, 1 - p["brow_dark"] * .3)
    # nose: bridge shading, wings, nostrils, tip highlight, nasolabial folds
    ny = lm["nose_y"]
    for s in (-1, 1):
        nx = lm["nose_wing"][s][0]
        ey_s = lm["eye"][s][1]
        bridge = np.exp(-((X - (cx + s * (.02 + .1 * (Y - ey_s)))) / .007) ** 2) \
            * (Y > ey_s + .01) * (Y < ny - .025)
        img = paint(img, bridge, skin_c * .82, .25)
        img = paint(img, ellipse(nx, ny, .018, .022), skin_c * .78, .7)
        img = paint(img, ellipse(cx + s * .018, ny + .012, .011, .006), skin_c * .35, .9)
        fold = np.zeros((R, R), np.uint8)
        ts = np.linspace(0, 1, 25)
        mx_ = lm["lip_corner"][s][0] + s * .025
        fx = nx + s * .012 + (mx_ - nx - s * .012) * ts + s * .015 * np.sin(np.pi * ts)
        fy = ny - .01 + (lm["mouth_y"] + .03 - ny + .01) * ts
        _draw_curve(fold, np.c_[fx, fy], .004, R)
        img = paint(img, cv2.GaussianBlur(fold / 255.0, (0, 0), R / 250), skin_c * .7, .6)
    img = paint(img, ellipse(cx, ny - .01, .012, .01), np.minimum(skin_c * 1.15, 255), .5)
    # mouth: lips, mouth line, corners; chin crease
    my, hw = lm["mouth_y"], p["mouth_hw"]
    t = np.clip(1 - ((X - cx) / hw) ** 2, 0, 1)
    bow = .35 * p["upper_lip"] * np.exp(-((X - cx) / .012) ** 2)
    up = my - p["upper_lip"] * np.sqrt(t) * 1.0 + bow
    lo = my + p["lower_lip"] * t ** .6
    lip_col = skin_c * (.82 - .1 * p["lip_red"]) + np.array([60, 0, 10]) * p["lip_red"]
    lips = np.clip(np.minimum(Y - up, lo - Y) / soft, 0, 1) * (t > 0)
    img = paint(img, lips, lip_col)
    line = np.exp(-((Y - my - .002 * t) / .0035) ** 2) * (t > 0)
    img = paint(img, line, skin_c * .3, .9)
    for s in (-1, 1):
        img = paint(img, ellipse(cx + s * hw, my, .006, .005), skin_c * .45, .8)
    chin_y = lm["chin"][1] - .03
    sulcus = np.exp(-((Y - chin_y + 1.2 * (X - cx) ** 2) / .004) ** 2) * (np.abs(X - cx) < .05)
    img = paint(img, sulcus, skin_c * .75, .6)
    img = paint(img, ellipse(cx, lm["chin"][1] + .02, .04, .025),
                np.minimum(skin_c * 1.08, 255), .3)
    return cv2.resize(np.clip(img, 0, 255).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=8)
def _subject_faces(seed: int, subject: int, size: int):
    p = face_params(seed, subject)
    return render_face(p, size), render_face(p, size, closed_eyes=True), landmarks(p)


# --------------------------------------------------------------------------------------------
# Clips


def render_clip(row, seed: int = 0, size: int = 128, amplitude: float = 10.0,
                nuisances: bool = True, only=None) -> tuple[np.ndarray, np.ndarray]:
    """Render the frames ``first_frame..last_frame`` of one planned clip.

    Args:
        row: a :func:`mer_core.synthetic.plan_clips` row: mapping with ``subject``,
            ``clip_index``, ``aus``, ``onset``, ``apex_true``, ``offset``, ``first_frame``,
            ``last_frame``.
        seed: dataset seed (with subject and clip index it seeds the clip's own stream).
        size: side of the frames in px.
        amplitude: peak AU displacement in px at 128 px (scaled with ``size``).
        nuisances: False renders the clean clip (no noise, drift, flicker or blink; tests).
        only: frame numbers to return (default all); the others are skipped but their random
            draws are still made, so a returned frame is identical to the full render's.

    Returns:
        ``(frame_numbers, frames)``: int array and T x size x size x 3 uint8 RGB array.
    """
    subj = int(str(row["subject"])[-2:])
    rng = np.random.default_rng([seed, 2, subj, int(row["clip_index"])])
    open_face, closed_face, lm = _subject_faces(seed, subj, size)
    numbers = np.arange(int(row["first_frame"]), int(row["last_frame"]) + 1)
    T = len(numbers)
    onset, apex, offset = int(row["onset"]), int(row["apex_true"]), int(row["offset"])
    # Every draw below is label-independent except the AU field itself.
    gain = rng.uniform(0.6, 1.0) * amplitude * size / 128.0
    field, wrinkles = au_maps(str(row["aus"]), lm, size, rng)
    field *= gain
    # wrinkles darken by up to WRINKLE_PER_PX x amplitude (size-independent) at the apex
    wrinkles = np.minimum(wrinkles * gain * 128.0 / size * WRINKLE_PER_PX, WRINKLE_MAX)
    wrinkles = wrinkles[..., None].astype(np.float32)
    level = intensity_profile(numbers, onset, apex, offset)
    # clip pose (session) and per-frame sub-pixel drift
    shift = rng.normal(0, .008, 2) * size
    scale = 1 + rng.normal(0, .012)
    rot = np.deg2rad(rng.normal(0, 1.2))
    light = rng.uniform(0.9, 1.1) * rng.uniform(0.97, 1.03, 3)
    sigma = rng.uniform(1.5, 3.5)
    tt = np.arange(T) / vocab.FPS["synthetic"]  # the clock of drift and flicker
    drift = np.zeros((T, 2))
    for k in range(3):
        amp = rng.uniform(.05, .15) * size / 128 / (k + 1) ** .5
        freq, phase = rng.uniform(.3, 3.0, 2), rng.uniform(0, 2 * np.pi, 2)
        drift += amp * np.sin(2 * np.pi * freq * tt[:, None] + phase)
    f_freq, f_phase = rng.uniform(.5, 4.0), rng.uniform(0, 2 * np.pi)
    flicker = 1 + .008 * np.sin(2 * np.pi * f_freq * tt + f_phase) + .004 * rng.normal(0, 1, T)
    closure = np.zeros(T)
    if rng.uniform() < 0.3:  # a blink, kept away from the apex
        dur = int(rng.integers(24, 41))
        away = (np.abs(numbers - apex) > (offset - onset) * .25 + dur / 2) \
            & (np.abs(numbers - onset) > dur / 2)  # the onset frame stays a clean neutral
        if away.any():
            c = int(rng.choice(np.flatnonzero(away)))
            closure = np.clip(np.cos(np.pi * (np.arange(T) - c) / dur), 0, None) * \
                (np.abs(np.arange(T) - c) < dur / 2)
    if not nuisances:
        drift[:] = 0
        flicker[:] = 1
        closure[:] = 0
        sigma = 0.0
    # base sampling grid: inverse of the clip's similarity transform about the centre
    g = np.arange(size, dtype=np.float64)
    X, Y = np.meshgrid(g, g)
    c0 = (size - 1) / 2
    cos, sin = np.cos(rot) / scale, np.sin(rot) / scale
    bx = cos * (X - c0) + sin * (Y - c0) + c0 - shift[0]
    by = -sin * (X - c0) + cos * (Y - c0) + c0 - shift[1]
    keep = np.ones(T, bool) if only is None else np.isin(numbers, np.asarray(list(only)))
    frames = np.empty((int(keep.sum()), size, size, 3), np.uint8)
    j = 0
    for i in range(T):
        if not keep[i]:
            if sigma > 0:
                rng.standard_normal((size, size, 3), dtype=np.float32)
            continue
        base = open_face if closure[i] == 0 else \
            (1 - closure[i]) * open_face + closure[i] * closed_face
        if level[i] > 0:
            base = base * (1 - np.float32(level[i]) * wrinkles)
        mx = (bx - drift[i, 0] - level[i] * field[..., 0]).astype(np.float32)
        my = (by - drift[i, 1] - level[i] * field[..., 1]).astype(np.float32)
        img = cv2.remap(base, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img = img * (light * flicker[i]).astype(np.float32)
        if sigma > 0:
            img += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)
        frames[j] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        j += 1
    return numbers[keep], frames
