"""Synthetic CASME-II-shaped dataset: the embedded default when no licensed data is at hand.

This module owns the dataset's plan and files: which clips exist (:func:`plan_clips`), the coding
sheet (:func:`write_sheet`), the folder layout, the stamp that tells a complete, current set
(:func:`generate`). :mod:`mer_core.synthetic_faces` draws the frames.

:func:`generate` writes the layout of CASME II's aligned release and its official coding sheet::

    root/Cropped/subNN/<Filename>/reg_img<N>.jpg   face crops, onset..offset plus a few frames
    root/CASME2-coding-synthetic.xlsx             Sheet1, the official columns and quirks
    root/ground_truth.csv                          true apex and action units of every clip
    root/SYNTHETIC.txt                             what this is, with which parameters
    root/.generated.json                           stamp, written last: a complete set

so the CASME II reader loads it through the same code path as the real data. The shape follows
CASME II: 26 subjects, 255 clips with the published per-subject class counts (:data:`COUNTS`),
200 fps, clip lengths of 24-141 frames (quartiles about 51/62/86) and the apex near the middle.

Every subject gets a procedurally drawn face and every emotion a set of action-unit-like
deformations whose intensity is 0 at the onset frame, 1 at the apex and 0 at the offset (see
:mod:`mer_core.synthetic_faces`). ``amplitude`` (peak displacement in px at 128 px; wrinkles darken
by :data:`~mer_core.synthetic_faces.WRINKLE_PER_PX` per px) and
:data:`~mer_core.synthetic_faces.IDENTITY_SPREAD` (how much the subjects' faces differ) set the
difficulty; onset frames carry no label at all. ``benchmarks/synthetic_probe.py`` measures how much
a single apex frame tells a linear model.

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
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer_core import synthetic_faces
from mer_core.io import atomic_path, write_csv, write_json, write_text

#: Bump when the output of a given seed changes on purpose (the stamp also hashes the source of
#: this module and of :mod:`mer_core.synthetic_faces`).
VERSION = "2"
SHEET_NAME = "CASME2-coding-synthetic.xlsx"
STAMP_NAME = ".generated.json"
JPEG_QUALITY = 95

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
# Clips on disk


def _write_clip(job) -> int:
    row, seed, size, amplitude, folder = job
    cv2.setNumThreads(1)
    numbers, frames = synthetic_faces.render_clip(row, seed, size, amplitude)
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
    """Hash of the generator's source: this module and :mod:`mer_core.synthetic_faces`.

    Returns:
        16 hex digits; a change to either module marks an existing set as stale.
    """
    h = hashlib.sha256()
    for path in (__file__, synthetic_faces.__file__):
        h.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()[:16]


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
        f"darken by {synthetic_faces.WRINKLE_PER_PX} per px of amplitude (at most "
        f"{synthetic_faces.WRINKLE_MAX}); identity spread {synthetic_faces.IDENTITY_SPREAD} "
        "(1 = faces differ over the whole range).\n"
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
            difficulty; wrinkles darken by ``synthetic_faces.WRINKLE_PER_PX * amplitude`` (at most
            ``synthetic_faces.WRINKLE_MAX``) at the apex. 0 gives expressionless clips.
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
            # OpenMP threads (e.g. after synthetic_faces.render_clip ran in this process)
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
