"""Synthetic SAMM- and SMIC-E-shaped stand-ins: the MEGC 2019 composite with no licensed data.

:mod:`mer_core.synthetic` writes the CASME-II-shaped set; this module writes the other two
datasets of the MEGC 2019 composite (3 classes: negative, positive, surprise) in the folder
layout and sheet format their readers expect, so ``load_index("samm", root)`` and
``load_index("smic", root)`` read them through the same code path as the real data. Faces and
action-unit motion come from :mod:`mer_core.synthetic_faces`; :mod:`mer_core.synthetic` is not
changed (its output for a seed stays byte-identical).

:func:`generate_samm` (SAMM, 200 fps, grey frames)::

    root/<subject>/<Filename>/<subject>_<frame:05d>.jpg   single-channel JPEG, onset..offset
    root/SAMM_Micro_FACS_Codes_v2.xlsx                    worksheet MICRO_ONLY, 13-row preamble
    root/ground_truth.csv, SYNTHETIC.txt, .generated.json  as the CASME-II-shaped set

28 subjects (``006``..``037``), 133 clips with the composite's per-subject counts
(:data:`SAMM_COUNTS`); the sheet's Estimated Emotion is a SAMM word (the negative clips are
spread over anger, contempt, disgust, fear and sadness in SAMM's 57/12/9/8/6 proportion); onset
frames are absolute (hundreds to thousands); clips of 20-100 frames (quartiles 36/48/64: shorter
than SAMM's longest so generation stays quick).

:func:`generate_smic` (SMIC-E HS, 100 fps)::

    root/HS/s01/s1_ne_01/image<frame>.jpg   FirstF..LastF (JPEG: the reader accepts any
                                            image<N>; SMIC ships .bmp, ten times larger)
    root/SMIC-HS-E_annotation.xlsx          worksheet HS, the official header, no apex column
    root/ground_truth.csv                   the true apex of every clip (never read by the
                                            reader: it lets apex spotting be scored on SMIC)
    root/SYNTHETIC.txt, .generated.json

16 subjects (``s01``..``s20``, not contiguous), 164 clips (:data:`SMIC_COUNTS`), int subjects and
unpadded file names (``s1_ne_01``) in the sheet, absolute frame numbers (tens of millions),
clips of 16-58 frames. Quirks on purpose (:data:`SMIC_SEGMENT_QUIRKS`): three rows with a valid
second segment (its frames lie on disk, neutral: the reader lists it, never makes it a clip) and
one row with a garbage third segment (before the onset, negative length).

Every clip is rendered by :func:`mer_core.synthetic_faces.render_clip` from its own random
stream, keyed by a seed derived from (``seed``, dataset), so SAMM's subject 006 is not CASME's
sub06 and a ``subjects=`` subset holds exactly the clips of the full set. The drift and flicker
clock of the nuisances runs at 200 fps for SMIC too (their frequencies double per second; they
carry no label). Action units per class follow the CASME-II-shaped set
(:data:`mer_core.synthetic.AU_CHOICES`, plus anger and contempt here), so the three classes are
learnable.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer_core import synthetic, synthetic_faces
from mer_core.io import atomic_path, write_csv, write_json, write_text
from mer_core.sheets import SAMM_SHEET_NAME, SAMM_WORKSHEET
from mer_core.smic import SMIC_SHEET_NAME

#: Bump when the output of a given seed changes on purpose (the stamp also hashes the source).
VERSION = "1"
STAMP_NAME = synthetic.STAMP_NAME
MARKER_NAME = "SYNTHETIC.txt"
TRUTH_NAME = "ground_truth.csv"
JPEG_QUALITY = synthetic.JPEG_QUALITY
#: Class order of the count tables (MEGC 2019's three classes).
CLASSES = ("negative", "positive", "surprise")

#: SAMM clips per subject in the MEGC 2019 composite (negative/positive/surprise): 92/26/15.
SAMM_COUNTS = {
    "006": (9, 0, 2), "007": (1, 5, 2), "009": (3, 0, 1), "010": (4, 0, 0),
    "011": (13, 7, 0), "012": (2, 0, 1), "013": (6, 0, 0), "014": (2, 7, 1),
    "015": (2, 0, 1), "016": (2, 1, 2), "017": (3, 0, 1), "018": (2, 0, 1),
    "019": (0, 1, 0), "020": (2, 2, 0), "021": (2, 0, 0), "022": (3, 2, 0),
    "023": (1, 0, 0), "024": (1, 0, 0), "026": (9, 0, 0), "028": (1, 0, 2),
    "030": (3, 0, 0), "031": (1, 0, 0), "032": (4, 0, 0), "033": (4, 1, 0),
    "034": (3, 0, 0), "035": (7, 0, 1), "036": (1, 0, 0), "037": (1, 0, 0),
}
#: SMIC-E HS clips per subject number in the MEGC 2019 composite: 70/51/43.
SMIC_COUNTS = {
    1: (3, 2, 1), 2: (0, 1, 5), 3: (22, 11, 6), 4: (10, 4, 5), 5: (1, 0, 1), 6: (2, 0, 2),
    8: (9, 4, 0), 9: (0, 1, 3), 11: (3, 3, 1), 12: (0, 8, 1), 13: (0, 10, 0), 14: (3, 2, 5),
    15: (1, 1, 2), 18: (2, 0, 5), 19: (0, 1, 1), 20: (14, 3, 5),
}
#: SAMM's negative emotion words and how many of SAMM's 92 negative clips carry each (the real
#: sheet's proportion); the words map to ``negative`` in ``vocab.PROTOCOLS["megc2019-3class"]``.
SAMM_NEGATIVE = {"anger": 57, "contempt": 12, "disgust": 9, "fear": 8, "sadness": 6}
#: The SAMM word of the other two classes.
SAMM_WORD = {"positive": "happiness", "surprise": "surprise"}
#: SMIC's file-name token of each class.
SMIC_TOKEN = {"negative": "ne", "positive": "po", "surprise": "sur"}
#: SMIC rows with extra segments: subject -> {position of the clip within the subject (sheet
#: order): 2 (a valid second segment) or 3 (a garbage third one)}. On small subjects, so a
#: two-subject subset (``s05``, ``s19``) shows both kinds.
SMIC_SEGMENT_QUIRKS = {"s05": {0: 2, 1: 3}, "s19": {0: 2}, "s15": {0: 2}}

#: Action units (sheet text, probability) of the two SAMM emotions the CASME-II-shaped set lacks.
_EXTRA_AUS = {
    "anger": (("4+7", .45), ("4", .2), ("4+7+17", .2), ("L4+L7", .15)),
    "contempt": (("R14", .45), ("L14", .35), ("R14+R15", .2)),
}
_AUS = {**synthetic.AU_CHOICES, **_EXTRA_AUS}
#: SMIC's negative clips draw from every negative emotion's action units.
_SMIC_AUS = {"negative": sum((_AUS[w] for w in SAMM_NEGATIVE), ()),
             "positive": _AUS["happiness"], "surprise": _AUS["surprise"]}

# Quantile functions of the clip length (onset..offset, frames) and the onset range.
_SAMM_LENGTH_Q = ((0.0, 20), (0.25, 36), (0.5, 48), (0.75, 64), (1.0, 100))
_SMIC_LENGTH_Q = ((0.0, 16), (0.25, 26), (0.5, 33), (0.75, 41), (1.0, 58))
_SAMM_ONSETS = (300, 9500)
_SMIC_ONSETS = (10_000_000, 40_000_000)
_STREAM_TAG = {"samm": 0x5A3, "smic": 0x53C}

_SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
                "Offset Frame", "Duration", "Type", "Action Units", "Notes",
                "Estimated Emotion"]
_SMIC_HEADER = ["Subject", "Filename", None, "OnsetF", "OffsetF", "Onset2F", "Offset2F",
                "Onset3F", "Offset3F", None, "FirstF", "LastF", "TotalMF1", "TotalMF2",
                "TotalMF3", "TotalVL", "Emotion"]


# --------------------------------------------------------------------------------------------
# Plans


def stream_seed(seed: int, dataset: str) -> int:
    """The seed of a stand-in's faces and clip streams, derived from (``seed``, dataset).

    Args:
        seed: dataset seed.
        dataset: ``"samm"`` or ``"smic"``.

    Returns:
        A 32-bit int: the stand-ins' subjects do not share the CASME-II-shaped set's faces.
    """
    return int(np.random.SeedSequence([int(seed), _STREAM_TAG[dataset]]).generate_state(1)[0])


def _clip_timing(rng: np.random.Generator, n: int, length_q, onsets) -> dict:
    """Onset, true apex and offset of ``n`` clips (apex inside, as in the CASME-shaped set)."""
    length = np.rint(synthetic._quantile(synthetic._stratified(rng, n), length_q)).astype(int)
    rel = synthetic._quantile(synthetic._stratified(rng, n), synthetic._APEX_Q)
    onset = rng.integers(onsets[0], onsets[1] + 1, n)
    offset = onset + length - 1
    apex = np.clip(onset + np.rint(rel * (length - 1)).astype(int), onset + 2, offset - 2)
    return {"onset": onset, "apex_true": apex, "offset": offset, "n_frames": length}


def _classes(counts) -> list[str]:
    return [c for c, k in zip(CLASSES, counts) for _ in range(k)]


def _negative_words(rng: np.random.Generator) -> list[str]:
    """SAMM's 92 negative clips' words in :data:`SAMM_NEGATIVE`'s proportion, shuffled."""
    words = [w for w, k in SAMM_NEGATIVE.items() for _ in range(k)]
    return [words[i] for i in rng.permutation(len(words))]


def plan_samm(seed: int = 0) -> pd.DataFrame:
    """The clips of the full SAMM-shaped set (no images): what :func:`generate_samm` renders.

    Args:
        seed: dataset seed.

    Returns:
        One row per clip, sorted by subject and filename: ``subject`` (``samm006``),
        ``subject_code`` (``'006'``), ``clip_index`` (position within the subject),
        ``filename`` (``006_1_2``), ``inducement``, ``label`` (3-class), ``emotion`` (SAMM
        word), ``aus``, ``onset``, ``apex_true``, ``offset``, ``first_frame``, ``last_frame``
        (= onset, offset: SAMM's folders hold the clip), ``n_frames``.
    """
    rng = np.random.default_rng([seed, 10])
    negatives = iter(_negative_words(rng))
    rows = []
    for code in sorted(SAMM_COUNTS):
        labels = _classes(SAMM_COUNTS[code])
        labels = [labels[i] for i in rng.permutation(len(labels))]
        used: dict[int, int] = {}
        for label in labels:
            word = next(negatives) if label == "negative" else SAMM_WORD[label]
            task = int(rng.integers(1, 8))  # SAMM's seven inducement videos
            used[task] = used.get(task, 0) + 1
            rows.append({"subject": f"samm{code}", "subject_code": code,
                         "filename": f"{code}_{task}_{used[task]}", "inducement": task,
                         "label": label, "emotion": word,
                         "aus": synthetic._choose(rng, _AUS[word])})
    df = pd.DataFrame(rows)
    for k, v in _clip_timing(rng, len(df), _SAMM_LENGTH_Q, _SAMM_ONSETS).items():
        df[k] = v
    df["first_frame"], df["last_frame"] = df["onset"], df["offset"]
    return _finish(df)


def plan_smic(seed: int = 0) -> pd.DataFrame:
    """The clips of the full SMIC-E-HS-shaped set (no images): what :func:`generate_smic` renders.

    Args:
        seed: dataset seed.

    Returns:
        One row per clip, sorted by subject and filename: ``subject`` (``s01``), ``subject_code``
        (1), ``clip_index``, ``filename`` (``s1_ne_01``), ``label``, ``emotion`` (= label),
        ``aus`` (rendered, not in the sheet), ``onset``, ``apex_true``, ``offset``,
        ``onset2``/``offset2``/``onset3``/``offset3`` (extra segments or None),
        ``first_frame``, ``last_frame`` (frames on disk), ``n_frames``.
    """
    rng = np.random.default_rng([seed, 20])
    rows = []
    for number in sorted(SMIC_COUNTS):
        labels = _classes(SMIC_COUNTS[number])
        labels = [labels[i] for i in rng.permutation(len(labels))]
        used: dict[str, int] = {}
        for label in labels:
            used[label] = used.get(label, 0) + 1
            rows.append({"subject": f"s{number:02d}", "subject_code": number,
                         "filename": f"s{number}_{SMIC_TOKEN[label]}_{used[label]:02d}",
                         "label": label, "emotion": label,
                         "aus": synthetic._choose(rng, _SMIC_AUS[label])})
    df = pd.DataFrame(rows)
    for k, v in _clip_timing(rng, len(df), _SMIC_LENGTH_Q, _SMIC_ONSETS).items():
        df[k] = v
    pre, post = rng.integers(2, 7, len(df)), rng.integers(2, 7, len(df))
    df["first_frame"], df["last_frame"] = df["onset"] - pre, df["offset"] + post
    df = _finish(df)
    return _add_segments(df, rng)


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values(["subject", "filename"], kind="stable").reset_index(drop=True)
    df["clip_index"] = df.groupby("subject").cumcount()
    return df


def _add_segments(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The extra segments of :data:`SMIC_SEGMENT_QUIRKS`: a valid second one after the clip
    (frames on disk reach its end) or a garbage third one (before the onset, negative length)."""
    for key in ("onset2", "offset2", "onset3", "offset3"):
        df[key] = pd.Series([None] * len(df), dtype=object)
    for subject, quirks in SMIC_SEGMENT_QUIRKS.items():
        for pos, kind in quirks.items():
            i = int(np.flatnonzero(df["subject"].to_numpy() == subject)[pos])
            if kind == 2:
                start = int(df.at[i, "offset"]) + int(rng.integers(3, 10))
                end = start + int(rng.integers(8, 20))
                df.at[i, "onset2"], df.at[i, "offset2"] = start, end
                df.at[i, "last_frame"] = end + int(rng.integers(2, 7))
            else:
                start = int(df.at[i, "onset"]) - int(rng.integers(500, 1000))
                df.at[i, "onset3"], df.at[i, "offset3"] = start, start - 10
    return df


# --------------------------------------------------------------------------------------------
# Frames


def _write_clip(job) -> int:
    """Render one clip and write its frames (``job``: row, stream seed, size, amplitude,
    folder, file-name template with ``{frame}``, grey)."""
    row, seed, size, amplitude, folder, template, grey = job
    cv2.setNumThreads(1)
    numbers, frames = synthetic_faces.render_clip(row, seed, size, amplitude)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    code = cv2.COLOR_RGB2GRAY if grey else cv2.COLOR_RGB2BGR
    for n, img in zip(numbers, frames):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, code),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"{folder}: cannot encode frame {n}")
        (folder / template.format(frame=int(n))).write_bytes(buf.tobytes())
    return len(numbers)


def _render_all(jobs: list, progress: bool, workers: int | None, desc: str) -> None:
    """Run :func:`_write_clip` over ``jobs`` (spawned processes when more than one worker)."""
    n_workers = min(workers or os.cpu_count() or 1, len(jobs)) or 1
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc=desc, unit="clip")
    if n_workers > 1:
        # spawn, not fork: see mer_core.synthetic.generate
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


# --------------------------------------------------------------------------------------------
# Sheets


def _save_workbook(wb, path: Path) -> Path:
    """Save with fixed timestamps and sorted zip entries (byte-identical reruns)."""
    wb.properties.creator = "mer_core.synthetic_standins"
    wb.properties.created = wb.properties.modified = synthetic._FIXED_TIME
    with atomic_path(path) as tmp:
        wb.save(tmp)
        synthetic._normalise_zip(tmp)
    return Path(path)


def _samm_preamble() -> list[list]:
    """SAMM's 13 rows above the header (here: what the file is)."""
    lines = ["SYNTHETIC SAMM-SHAPED DATA - NOT REAL SAMM",
             "Generated by mer_core.synthetic_standins (mer-companion); see SYNTHETIC.txt",
             "Layout and format of SAMM_Micro_FACS_Codes_v2.xlsx, worksheet MICRO_ONLY",
             "Frames: <Subject>/<Filename>/<Subject>_<frame:05d>.jpg, grey, 200 fps",
             "Classes and per-subject counts: the MEGC 2019 composite (92/26/15)"]
    return [[text] for text in lines] + [[None]] * (13 - len(lines))


def write_samm_sheet(path: str | Path, plan: pd.DataFrame) -> Path:
    """Write ``plan`` as SAMM's coding sheet: worksheet ``MICRO_ONLY``, header on row 14.

    Args:
        path: the ``.xlsx`` to write.
        plan: rows of :func:`plan_samm`.

    Returns:
        ``path``.
    """
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = SAMM_WORKSHEET
    for line in _samm_preamble():
        ws.append(line)
    ws.append(_SAMM_HEADER)
    for r in plan.itertuples(index=False):
        ws.append([r.subject_code, r.filename, int(r.inducement), int(r.onset),
                   int(r.apex_true), int(r.offset), int(r.n_frames), "Micro - 1/2",
                   synthetic._sheet_value(r.aus), None, r.emotion.capitalize()])
    for cell in ws["A"][14:]:
        cell.number_format = "@"  # subject codes are text ('006')
    return _save_workbook(wb, Path(path))


def _cell(value):
    return None if value is None or pd.isna(value) else int(value)


def write_smic_sheet(path: str | Path, plan: pd.DataFrame) -> Path:
    """Write ``plan`` as the SMIC-E sheet: worksheet ``HS``, the official header, no apex.

    Args:
        path: the ``.xlsx`` to write.
        plan: rows of :func:`plan_smic`.

    Returns:
        ``path``.
    """
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "HS"
    ws.append(_SMIC_HEADER)
    for r in plan.itertuples(index=False):
        seg2 = (_cell(r.onset2), _cell(r.offset2))
        seg3 = (_cell(r.onset3), _cell(r.offset3))
        total2 = seg2[1] - seg2[0] + 1 if seg2[0] is not None else None
        total3 = seg3[1] - seg3[0] + 1 if seg3[0] is not None else None
        ws.append([int(r.subject_code), r.filename, None, int(r.onset), int(r.offset), *seg2,
                   *seg3, None, int(r.first_frame), int(r.last_frame), int(r.n_frames), total2,
                   total3, int(r.last_frame - r.first_frame + 1), r.emotion])
    return _save_workbook(wb, Path(path))


# --------------------------------------------------------------------------------------------
# Datasets


def _code_hash() -> str:
    """Hash of the source that makes the files: this module and the two it draws on."""
    h = hashlib.sha256()
    for path in (__file__, synthetic.__file__, synthetic_faces.__file__):
        h.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()[:16]


def _select(subjects, known: list[str], dataset: str) -> list[str]:
    """Subject names (``samm006`` / ``s01``) from names, codes or numbers."""
    if subjects is None:
        return list(known)
    prefix = "samm" if dataset == "samm" else "s"
    out = []
    for s in subjects:
        text = str(s)
        name = text if text.startswith(prefix) else (
            f"samm{int(text):03d}" if dataset == "samm" else f"s{int(text):02d}")
        if name not in known:
            raise ValueError(f"{dataset}: unknown subject {s!r}; expected one of "
                             f"{', '.join(known)}")
        out.append(name)
    if not out:
        raise ValueError(f"{dataset}: subjects is empty: pass None for all or at least one")
    return sorted(set(out))


def _describe(dataset: str, params: dict, plan: pd.DataFrame) -> str:
    name, shape = {"samm": ("SAMM", "SAMM's layout (<Subject>/<Filename>/<Subject>_<frame:05d>"
                            ".jpg, grey), its coding sheet (MICRO_ONLY, 13-row preamble),\n"
                            "absolute frame numbers, 200 fps"),
                   "smic": ("SMIC-E", "SMIC-E's layout (HS/sNN/<Filename>/image<frame>.jpg), "
                            "its HS sheet (no apex column,\nextra segments), absolute frame "
                            "numbers, 100 fps")}[dataset]
    counts = plan["label"].value_counts().reindex(CLASSES, fill_value=0)
    return (f"SYNTHETIC DATA - NOT REAL {name}.\n\n"
            f"Synthetic {name}-shaped stand-in generated by mer_core.synthetic_standins "
            "(mer-companion):\n"
            f"{shape}; the subjects and per-subject class counts of the\n"
            "MEGC 2019 composite. Faces are procedurally drawn; each class is a set of\n"
            "action-unit-like deformations, 0 at onset, 1 at the true apex (ground_truth.csv),\n"
            "0 at offset. Results on it say nothing about real micro-expressions.\n\n"
            f"parameters: {json.dumps(params, sort_keys=True)}\n"
            f"generator version {VERSION}, code {_code_hash()}\n"
            f"clips: {len(plan)} in {plan['subject'].nunique()} subjects; "
            + ", ".join(f"{c} {int(k)}" for c, k in counts.items()) + "\n")


def _is_complete(root: Path, stamp: dict, sheet: str, folders: list[Path]) -> bool:
    try:
        old = json.loads((root / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (old == stamp and (root / sheet).is_file() and (root / TRUTH_NAME).is_file()
            and all((root / f).is_dir() for f in folders))


def _generate(root, dataset: str, plan: pd.DataFrame, params: dict, jobs: list, folders: list,
              sheet: str, write_sheet, progress: bool, workers: int | None) -> Path:
    """Write a stand-in under ``root`` through a temporary folder (stamp last), or skip it
    when the stamp says the same set is complete."""
    root = Path(root)
    stamp = {"generator": "mer_core.synthetic_standins", "dataset": dataset, "version": VERSION,
             "code": _code_hash(), "params": params, "n_clips": int(len(plan))}
    if _is_complete(root, stamp, sheet, folders):
        return root
    if root.exists() and (not root.is_dir() or (any(root.iterdir())
                                                and not (root / STAMP_NAME).exists()
                                                and not (root / MARKER_NAME).exists())):
        raise FileExistsError(f"{root}: exists and is not a synthetic dataset; refusing to "
                              "replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    for stale in root.parent.glob(f".{root.name}.generating-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root.parent / f".{root.name}.generating-{os.getpid()}"
    tmp.mkdir()
    try:
        _render_all([(*job[:4], str(tmp / job[4]), *job[5:]) for job in jobs], progress,
                    workers, f"synthetic {dataset} clips")
        write_sheet(tmp / sheet, plan)
        truth = [c for c in ("subject", "filename", "onset", "apex_true", "offset", "label",
                             "emotion", "aus", "first_frame", "last_frame") if c in plan]
        write_csv(tmp / TRUTH_NAME, plan[truth])
        write_text(tmp / MARKER_NAME, _describe(dataset, params, plan))
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


def _check(size: int, amplitude: float) -> None:
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    if amplitude < 0:
        raise ValueError("amplitude must be >= 0")


def _params(seed, size, amplitude, subjects, chosen, known) -> dict:
    return {"seed": int(seed), "size": int(size), "amplitude": float(amplitude),
            "subjects": "all" if subjects is None or chosen == list(known) else chosen}


def generate_samm(root: str | Path, seed: int = 0, size: int = 128, amplitude: float = 10.0,
                  subjects=None, progress: bool = True, workers: int | None = None) -> Path:
    """Write the synthetic SAMM-shaped stand-in under ``root`` (skip if already there).

    Args:
        root: dataset folder. Replaced as a whole; it must be absent, empty or a synthetic set.
        seed: dataset seed; the same seed gives byte-identical files.
        size: side of the (grey) frames in px.
        amplitude: peak action-unit displacement in px at 128 px (the difficulty; see
            :func:`mer_core.synthetic.generate`).
        subjects: codes (``'006'``, ``6``) or names (``'samm006'``) to write only those; None =
            all 28. A subset holds exactly the same clips as the full set.
        progress: show a tqdm bar over clips.
        workers: processes (default: all CPUs); the output does not depend on it.

    Returns:
        ``root`` as a :class:`~pathlib.Path`; read it with ``load_index("samm", root)``.

    Raises:
        FileExistsError: ``root`` holds something that is not a synthetic set.
        ValueError: bad parameters or an unknown subject.
    """
    _check(size, amplitude)
    known = [f"samm{c}" for c in sorted(SAMM_COUNTS)]
    chosen = _select(subjects, known, "samm")
    plan = plan_samm(seed)
    plan = plan[plan["subject"].isin(chosen)].reset_index(drop=True)
    faces = stream_seed(seed, "samm")
    folders = [Path(r.subject_code) / r.filename for r in plan.itertuples()]
    jobs = [(r._asdict(), faces, size, amplitude, str(f), f"{r.subject_code}_{{frame:05d}}.jpg",
             True) for r, f in zip(plan.itertuples(index=False), folders)]
    return _generate(root, "samm", plan, _params(seed, size, amplitude, subjects, chosen, known),
                     jobs, folders, SAMM_SHEET_NAME, write_samm_sheet, progress, workers)


def generate_smic(root: str | Path, seed: int = 0, size: int = 128, amplitude: float = 10.0,
                  subjects=None, progress: bool = True, workers: int | None = None) -> Path:
    """Write the synthetic SMIC-E-HS-shaped stand-in under ``root`` (skip if already there).

    Args:
        root: dataset folder. Replaced as a whole; it must be absent, empty or a synthetic set.
        seed: dataset seed; the same seed gives byte-identical files.
        size: side of the (colour) frames in px.
        amplitude: peak action-unit displacement in px at 128 px.
        subjects: numbers (``1``) or names (``'s01'``) to write only those; None = all 16.
            A subset holds exactly the same clips as the full set.
        progress: show a tqdm bar over clips.
        workers: processes (default: all CPUs); the output does not depend on it.

    Returns:
        ``root`` as a :class:`~pathlib.Path`; read it with ``load_index("smic", root)``.

    Raises:
        FileExistsError: ``root`` holds something that is not a synthetic set.
        ValueError: bad parameters or an unknown subject.
    """
    _check(size, amplitude)
    known = [f"s{n:02d}" for n in sorted(SMIC_COUNTS)]
    chosen = _select(subjects, known, "smic")
    plan = plan_smic(seed)
    plan = plan[plan["subject"].isin(chosen)].reset_index(drop=True)
    faces = stream_seed(seed, "smic")
    folders = [Path("HS") / r.subject / r.filename for r in plan.itertuples()]
    jobs = [(r._asdict(), faces, size, amplitude, str(f), "image{frame}.jpg", False)
            for r, f in zip(plan.itertuples(index=False), folders)]
    return _generate(root, "smic", plan, _params(seed, size, amplitude, subjects, chosen, known),
                     jobs, folders, SMIC_SHEET_NAME, write_smic_sheet, progress, workers)


def standin_note(root: str | Path) -> str | None:
    """The first line of a synthetic set's ``SYNTHETIC.txt`` (e.g. ``"SYNTHETIC DATA - NOT REAL
    SAMM."``), or None when ``root`` holds no such marker: what a report says about its data.

    Args:
        root: a dataset root.

    Returns:
        The marker's first line, or None.
    """
    marker = Path(root) / MARKER_NAME
    if not marker.is_file():
        return None
    return marker.read_text().splitlines()[0].strip() or None
