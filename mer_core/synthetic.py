"""Synthetic CASME-II-shaped dataset: the embedded default when no licensed data is at hand.

:func:`generate` writes the layout of CASME II's aligned release and its official coding sheet::

    root/Cropped/subNN/<Filename>/reg_img<N>.jpg   face crops, onset..offset plus a few frames
    root/CASME2-coding-synthetic.xlsx             Sheet1, the official columns and quirks
    root/ground_truth.csv                          true apex and action units of every clip
    root/SYNTHETIC.txt                             what this is, with which parameters
    root/.generated.json                           stamp, written last: a complete set

so the CASME II reader loads it through the same code path as the real data. The shape follows
CASME II: 26 subjects, 255 clips with the published per-subject class counts (:data:`COUNTS`),
200 fps, clip lengths of 24-141 frames (quartiles about 51/62/86) and the apex near the middle.

Every subject gets a procedurally drawn face (:func:`face_params`, :func:`render_face`). Emotions
are action-unit-like local displacement fields that also deepen the AU's wrinkles and furrows
(:func:`au_maps`); their intensity (:func:`intensity_profile`) is exactly 0 up to the onset
frame, 1 at the apex and 0 again at the offset. Frames also carry label-independent nuisances
(sensor noise, sub-pixel head drift, illumination flicker, blinks away from the apex).
``amplitude`` (peak displacement in px at 128 px; wrinkles darken by :data:`WRINKLE_PER_PX` per px)
and :data:`IDENTITY_SPREAD` (how much the subjects' faces differ) set the difficulty; onset frames
carry no label at all. ``benchmarks/synthetic_probe.py`` measures how much a single apex frame
tells a linear model.

The output depends only on the parameters: the same seed gives byte-identical files, and every clip
draws from its own random stream, so a ``subjects=`` subset holds exactly the clips of the full set.
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer_core.io import atomic_path, write_csv, write_json, write_text

#: Bump when the output of a given seed changes on purpose (the stamp also hashes this file).
VERSION = "2"
SHEET_NAME = "CASME2-coding-synthetic.xlsx"
STAMP_NAME = ".generated.json"
FPS = 200
JPEG_QUALITY = 95
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

#: Class order of :data:`COUNTS` (alphabetical, as in the issue's table).
EMOTIONS = ("disgust", "fear", "happiness", "others", "repression", "sadness", "surprise")
#: CASME II clips per subject and class (disgust/fear/happiness/others/repression/sadness/surprise).
COUNTS = {
    1: (2, 0, 1, 6, 0, 0, 0), 2: (0, 0, 1, 4, 5, 0, 3), 3: (4, 0, 0, 2, 0, 0, 1),
    4: (3, 0, 0, 2, 0, 0, 0), 5: (1, 0, 1, 12, 0, 0, 5), 6: (1, 0, 1, 1, 0, 0, 2),
    7: (5, 0, 0, 4, 0, 0, 0), 8: (0, 0, 0, 2, 1, 0, 0), 9: (0, 1, 5, 3, 5, 0, 0),
    10: (0, 1, 0, 13, 0, 0, 0), 11: (4, 0, 0, 6, 0, 0, 0), 12: (5, 0, 2, 1, 0, 0, 4),
    13: (0, 0, 2, 6, 0, 0, 0), 14: (0, 0, 3, 1, 0, 0, 0), 15: (1, 0, 1, 0, 0, 0, 1),
    16: (0, 0, 2, 1, 1, 0, 0), 17: (14, 0, 7, 3, 9, 2, 1), 18: (0, 0, 0, 3, 0, 0, 0),
    19: (3, 0, 3, 4, 0, 1, 5), 20: (2, 0, 0, 9, 0, 0, 0), 21: (0, 0, 0, 1, 1, 0, 0),
    22: (0, 0, 0, 0, 2, 0, 0), 23: (4, 0, 1, 4, 3, 0, 0), 24: (2, 0, 0, 4, 0, 3, 1),
    25: (3, 0, 0, 2, 0, 0, 2), 26: (9, 0, 2, 5, 0, 1, 0),
}
SUBJECTS = tuple(f"sub{n:02d}" for n in sorted(COUNTS))

# Quantile functions (piecewise linear) of the clip length (frames onset..offset inclusive) and of
# the relative apex position (apex - onset) / (offset - onset), fitted to CASME II's published
# shape.
_LENGTH_Q = ((0.0, 24), (0.25, 51), (0.5, 62), (0.75, 86), (1.0, 141))
_APEX_Q = ((0.0, 0.12), (0.1, 0.30), (0.5, 0.51), (0.9, 0.71), (1.0, 0.88))
_ONSET_RANGE = (4, 396)

#: Action units as sheet text, with the probability of each, per emotion. ``L``/``R``: one side.
AU_CHOICES = {
    "happiness": (("12", .35), ("6+12", .5), ("R12", .15)),
    "disgust": (("4", .12), ("9", .12), ("10", .1), ("4+9", .16), ("4+10", .1), ("4+L10", .12),
                ("9+10", .1), ("4+7", .08), ("R10", .1)),
    "surprise": (("1+2", .6), ("2", .15), ("1", .1), ("L1+L2", .15)),
    "repression": (("14", .2), ("15", .15), ("17", .2), ("15+17", .2), ("14+15", .1),
                   ("L14", .15)),
    "sadness": (("1+4+15", .4), ("1+15", .2), ("4+15", .2), ("1+4", .2)),
    "fear": (("1+2+4+20", .5), ("1+2+4", .25), ("4+20", .25)),
    # A varied mix that overlaps the other classes, as CASME II's "others" does.
    "others": (("4", .16), ("7", .14), ("4+7", .12), ("L12", .06), ("R2+15", .06), ("1", .06),
               ("17", .08), ("R14", .08), ("6", .08), ("L2", .06), ("20", .1)),
}

# Filenames: episode names as CASME II spells them (the same name recurs across subjects).
_EXAMPLE_NAMES = ("EP02_01f", "EP01_2", "EP06_02_01", "EP09f")


# CASME II clips that the MEGC 2019 composite protocol excludes (both disgust in the real sheet).
_MEGC_DROPPED = {4: "EP12_01f", 5: "EP09_05f"}


def _filename_pool() -> list[str]:
    rng = np.random.default_rng(20140101)  # fixed: the pool does not depend on the seed
    names = set(_EXAMPLE_NAMES)
    while len(names) < 64:
        ep, k = int(rng.integers(1, 20)), int(rng.integers(1, 10))
        form = rng.choice(["%02d", "%02df", "%d", "%02d_%02d"], p=[.45, .3, .1, .15])
        if form == "%02d_%02d":
            name = f"EP{ep:02d}_{k:02d}_{int(rng.integers(1, 4)):02d}"
        else:
            name = f"EP{ep:02d}_" + (form % k)
        names.add(name)
    return sorted(names)


def _quantile(q, table) -> np.ndarray:
    xs, ys = zip(*table)
    return np.interp(q, xs, ys)


def _stratified(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniforms, one per stratum, in random order (sample quantiles land on the targets)."""
    return rng.permutation((np.arange(n) + rng.uniform(0.2, 0.8, n)) / n)


def _choose(rng: np.random.Generator, options) -> str:
    names, p = zip(*options)
    p = np.asarray(p, float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _sheet_value(text: str):
    """AU text as the official sheet stores it: an int when it is a plain number."""
    return int(text) if text.isdigit() else text


def plan_clips(seed: int = 0, apex_noise: float = 0.0) -> pd.DataFrame:
    """The clips of the full synthetic set (no images): what :func:`generate` renders.

    Args:
        seed: dataset seed.
        apex_noise: standard deviation (frames) of Gaussian noise added to the apex written in the
            coding sheet (annotation noise); the rendered apex (``apex_true``) never changes.

    Returns:
        One row per clip, sorted by subject and filename: ``subject`` (``sub01``), ``subject_code``
        (``'01'``), ``clip_index`` (position within the subject), ``filename``, ``emotion``,
        ``aus`` (true action units), ``aus_sheet`` (sheet text, ``'?'`` once), ``onset``,
        ``apex_true``, ``offset`` (frame numbers), ``apex_sheet`` (int, or ``'/'`` once; one clip
        has apex == onset), ``apex_note``, ``first_frame``, ``last_frame`` (frames on disk),
        ``n_frames`` (offset - onset + 1).
    """
    rng = np.random.default_rng([seed, 0])
    pool = _filename_pool()
    rows = []
    for subj in sorted(COUNTS):
        emotions = [e for e, k in zip(EMOTIONS, COUNTS[subj]) for _ in range(k)]
        emotions = [emotions[i] for i in rng.permutation(len(emotions))]
        if subj == 17:  # the largest subject shows every filename form of the real sheet
            rest = [n for n in pool if n not in _EXAMPLE_NAMES]
            names = list(_EXAMPLE_NAMES) + list(rng.choice(rest, len(emotions) - 4, replace=False))
        else:
            names = list(rng.choice(pool, len(emotions), replace=False))
        if subj in _MEGC_DROPPED:  # the two clips MEGC 2019 drops carry their real names
            fixed, j = _MEGC_DROPPED[subj], emotions.index("disgust")
            if fixed in names:
                k = names.index(fixed)
                names[j], names[k] = names[k], names[j]
            else:
                names[j] = fixed
        for name, emo in zip(names, emotions):
            rows.append({"subject": f"sub{subj:02d}", "subject_code": f"{subj:02d}",
                         "filename": str(name), "emotion": emo,
                         "aus": _choose(rng, AU_CHOICES[emo])})
    df = pd.DataFrame(rows)
    n = len(df)
    length = np.rint(_quantile(_stratified(rng, n), _LENGTH_Q)).astype(int)
    rel = _quantile(_stratified(rng, n), _APEX_Q)
    onset = rng.integers(_ONSET_RANGE[0], _ONSET_RANGE[1] + 1, n)
    pre = np.minimum(rng.integers(2, 7, n), onset - 2)  # first frame >= 2, never 1
    post = rng.integers(2, 7, n)
    offset = onset + length - 1
    apex = np.clip(onset + np.rint(rel * (length - 1)).astype(int), onset + 2, offset - 2)
    df["onset"], df["apex_true"], df["offset"] = onset, apex, offset
    df["first_frame"], df["last_frame"], df["n_frames"] = onset - pre, offset + post, length

    # Quirks of the official sheet, each on one clip; forced so that every seed has them.
    quirks = rng.choice(n, 3, replace=False)
    apex_sheet = apex.astype(object).copy()
    if apex_noise > 0:
        noise = np.random.default_rng([seed, 3]).normal(0.0, apex_noise, n)
        apex_sheet = np.clip(np.rint(apex + noise).astype(int), onset, offset).astype(object)
    note = np.array([""] * n, dtype=object)
    apex_sheet[quirks[0]], note[quirks[0]] = "/", "missing apex ('/') in the sheet"
    apex_sheet[quirks[1]] = int(onset[quirks[1]])
    note[quirks[1]] = "sheet apex == onset (true apex elsewhere)"
    df["apex_sheet"] = pd.Series(list(apex_sheet), dtype=object)
    df["apex_note"] = pd.Series(list(note), dtype=object)
    aus = df["aus"].tolist()
    for emo, text in (("happiness", "12"), ("disgust", "4+L10"), ("others", "R2+15")):
        if text not in [a for a, e in zip(aus, df["emotion"]) if e == emo]:
            aus[int(np.flatnonzero(df["emotion"].to_numpy() == emo)[0])] = text
    df["aus"] = aus
    sheet_aus = list(aus)
    others = [i for i in range(n) if df["emotion"].iat[i] == "others" and i not in quirks[:2]]
    sheet_aus[int(rng.choice(others))] = "?"  # one unreadable AU code, as in the real sheet
    df["aus_sheet"] = sheet_aus
    df = df.sort_values(["subject", "filename"], kind="stable").reset_index(drop=True)
    df["clip_index"] = df.groupby("subject").cumcount()
    cols = ["subject", "subject_code", "clip_index", "filename", "emotion", "aus", "aus_sheet",
            "onset", "apex_true", "offset", "apex_sheet", "apex_note", "first_frame",
            "last_frame", "n_frames"]
    return df[cols]


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


def au_field(aus: str, landmarks: dict, size: int,
             rng: np.random.Generator | None = None) -> np.ndarray:
    """Displacement part of :func:`au_maps` (size x size x 2)."""
    return au_maps(aus, landmarks, size, rng)[0]


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
    """Render the frames ``first_frame..last_frame`` of one planned clip (a :func:`plan_clips` row).

    Args:
        row: mapping with ``subject``, ``clip_index``, ``aus``, ``onset``, ``apex_true``,
            ``offset``, ``first_frame``, ``last_frame``.
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
    tt = np.arange(T) / FPS
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


def _write_clip(job) -> int:
    row, seed, size, amplitude, folder = job
    cv2.setNumThreads(1)
    numbers, frames = render_clip(row, seed, size, amplitude)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for n, img in zip(numbers, frames):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"{folder}: cannot encode frame {n}")
        (folder / f"reg_img{n}.jpg").write_bytes(buf.tobytes())
    return len(numbers)


# --------------------------------------------------------------------------------------------
# Files

_FIXED_TIME = datetime(2014, 1, 1, 0, 0, 0)  # CASME II's year; any constant works
_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
           "Action Units", "Estimated Emotion"]


def _normalise_zip(path: Path) -> None:
    """Rewrite an .xlsx with fixed timestamps and sorted entries (byte-identical reruns)."""
    with zipfile.ZipFile(path) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    core = entries.get("docProps/core.xml")
    if core is not None:
        stamp = _FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        entries["docProps/core.xml"] = re.sub(
            rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
            lambda m: m.group(1) + stamp + m.group(3), core)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            z.writestr(info, entries[name])
    path.write_bytes(buf.getvalue())


def write_sheet(path: str | Path, plan: pd.DataFrame) -> Path:
    """Write ``plan`` as an official-format CASME II coding sheet (``Sheet1``, row-1 header)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(_HEADER)
    for r in plan.itertuples(index=False):
        ws.append([r.subject_code, r.filename, None, int(r.onset), r.apex_sheet, int(r.offset),
                   None, _sheet_value(r.aus_sheet), r.emotion])
    for cell in ws["A"][1:]:
        cell.number_format = "@"  # subject codes are text, as in the official sheet
    wb.properties.creator = "mer_core.synthetic"
    wb.properties.created = wb.properties.modified = _FIXED_TIME
    with atomic_path(path) as tmp:
        wb.save(tmp)
        _normalise_zip(tmp)
    return Path(path)


def _select_subjects(subjects) -> list[str]:
    if subjects is None:
        return list(SUBJECTS)
    out = []
    for s in subjects:
        number = isinstance(s, (int, np.integer)) or str(s).isdigit()
        name = f"sub{int(s):02d}" if number else str(s)
        if name not in SUBJECTS:
            raise ValueError(f"unknown subject {s!r}: expected one of sub01..sub26")
        out.append(name)
    if not out:
        raise ValueError("subjects is empty: pass None for all 26 or at least one subject")
    return sorted(set(out))


def _code_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _is_complete(root: Path, stamp: dict) -> bool:
    try:
        with open(root / STAMP_NAME) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return False
    if {k: old.get(k) for k in stamp} != stamp:
        return False
    if not (root / SHEET_NAME).is_file() or not (root / "ground_truth.csv").is_file():
        return False
    clips = [d for s in (root / "Cropped").glob("sub*") for d in s.iterdir() if d.is_dir()]
    return len(clips) == stamp["n_clips"]


def _describe(params: dict, plan: pd.DataFrame) -> str:
    counts = plan["emotion"].value_counts().reindex(EMOTIONS, fill_value=0)
    return (
        "SYNTHETIC DATA - NOT CASME II.\n\n"
        "Generated by mer_core.synthetic (mer-companion) as a stand-in with CASME II's shape:\n"
        "the aligned layout (Cropped/subNN/<Filename>/reg_img<N>.jpg), the official coding-sheet\n"
        "format, CASME II's subjects and per-subject class counts, 200 fps, clip lengths and\n"
        "apex positions like the real data. Faces are procedurally drawn; each emotion is a set\n"
        "of "
        "action-unit-like local deformations (and wrinkles) whose intensity is 0 at onset, 1 at\n"
        "the true apex (ground_truth.csv) and 0 at offset. Results on it say nothing about real\n"
        "micro-expressions.\n\n"
        f"parameters: {json.dumps(params, sort_keys=True)}\n"
        f"generator version {VERSION}, code {_code_hash()}\n"
        f"clips: {len(plan)} in {plan['subject'].nunique()} subjects; "
        + ", ".join(f"{e} {int(k)}" for e, k in counts.items()) + "\n"
        "amplitude: peak displacement of the action units in px at 128 px (difficulty); wrinkles\n"
        f"darken by {WRINKLE_PER_PX} per px of amplitude (at most {WRINKLE_MAX}); identity spread "
        f"{IDENTITY_SPREAD} (1 = faces differ over the whole range).\n"
        "apex_noise: std (frames) of the noise on the sheet's apex (annotation noise).\n"
        "Sheet quirks on purpose: one ApexFrame '/', one apex == onset (true apex elsewhere), one\n"
        "Action Units '?', subject codes as text; see ground_truth.csv for the truth.\n")


def generate(root: str | Path, seed: int = 0, size: int = 128, amplitude: float = 10.0,
             apex_noise: float = 0.0, subjects=None, progress: bool = True,
             workers: int | None = None) -> Path:
    """Write the synthetic CASME-II-shaped dataset under ``root`` (skip if already there).

    Args:
        root: dataset folder. Replaced as a whole; it must be absent, empty or a synthetic set.
        seed: dataset seed; the same seed gives byte-identical files.
        size: side of the frames in px.
        amplitude: peak action-unit displacement in px at 128 px (scaled with ``size``): the
            difficulty; wrinkles darken by ``WRINKLE_PER_PX * amplitude`` (at most
            ``WRINKLE_MAX``) at the apex. 0 gives expressionless clips.
        apex_noise: std (frames) of Gaussian noise on the apex written in the sheet.
        subjects: ``['sub01', ...]`` (or numbers) to write only those subjects; None = all 26.
            A subset holds exactly the same clips as the full set.
        progress: show a tqdm bar over clips.
        workers: processes (default: all CPUs); the output does not depend on it.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``root`` holds something that is not a synthetic set.
        ValueError: bad parameters or an unknown subject.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    if amplitude < 0 or apex_noise < 0:
        raise ValueError("amplitude and apex_noise must be >= 0")
    root = Path(root)
    chosen = _select_subjects(subjects)
    plan = plan_clips(seed, apex_noise)
    plan = plan[plan["subject"].isin(chosen)].reset_index(drop=True)
    params = {"seed": int(seed), "size": int(size), "amplitude": float(amplitude),
              "apex_noise": float(apex_noise),
              "subjects": "all" if subjects is None or chosen == list(SUBJECTS) else chosen}
    stamp = {"generator": "mer_core.synthetic", "version": VERSION, "code": _code_hash(),
             "params": params, "n_clips": int(len(plan))}
    if _is_complete(root, stamp):
        return root
    if root.exists():
        if not root.is_dir() or (any(root.iterdir()) and not (root / STAMP_NAME).exists()
                                 and not (root / "SYNTHETIC.txt").exists()):
            raise FileExistsError(f"{root}: exists and is not a synthetic dataset; "
                                  "refusing to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    for stale in root.parent.glob(f".{root.name}.generating-*"):
        shutil.rmtree(stale, ignore_errors=True)  # leftovers of an interrupted run
    tmp = root.parent / f".{root.name}.generating-{os.getpid()}"
    tmp.mkdir()
    try:
        jobs = [(r._asdict(), seed, size, amplitude,
                 str(tmp / "Cropped" / r.subject / r.filename))
                for r in plan.itertuples(index=False)]
        n_workers = min(workers or os.cpu_count() or 1, len(jobs)) or 1
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(jobs), desc="synthetic clips", unit="clip")
        if n_workers > 1:
            # spawn, not fork: a forked child can deadlock on locks of the parent's OpenCV /
            # OpenMP threads (e.g. after render_clip ran in this process)
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(n_workers, mp_context=spawn) as ex:
                for _ in ex.map(_write_clip, jobs, chunksize=2):
                    bar is not None and bar.update()
        else:
            for job in jobs:
                _write_clip(job)
                bar is not None and bar.update()
        if bar is not None:
            bar.close()
        write_sheet(tmp / SHEET_NAME, plan)
        truth = plan[["subject", "filename", "onset", "apex_true", "offset", "emotion", "aus",
                      "apex_sheet", "aus_sheet", "apex_note", "first_frame", "last_frame"]]
        write_csv(tmp / "ground_truth.csv", truth)
        write_text(tmp / "SYNTHETIC.txt", _describe(params, plan))
        write_json(tmp / STAMP_NAME, stamp)  # last: marks the set complete
        if root.exists():
            old = root.parent / f".{root.name}.generating-{os.getpid()}-old"
            root.rename(old)
            tmp.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
