"""Sample index of CASME II, SAMM and the synthetic CASME-II-shaped set.

One row per clip, read from the official coding sheet and checked against the frames on disk:

* :func:`load_index` reads a dataset (``synthetic``, ``casme2`` or ``samm``) into the index
  DataFrame of DESIGN.md, handling every quirk of the official sheets (text or int subjects,
  ``'/'`` apex, a header with blank columns, SAMM's 13-row preamble, apex outside the clip).
* :func:`apply_protocol` keeps the clips of a class protocol and adds ``label``.
* :func:`loso_folds` gives the leave-one-subject-out splits.
* :func:`build_index` is the ``data`` stage: generate (synthetic), load, apply the protocol and
  write ``data/index.csv``, ``data/excluded.csv`` and ``data/dataset.json``.

Decisions shared by every stage:

* ``frames_dir`` is as absolute or relative as the ``root`` it came from: a relative root (the
  default ``data/synthetic``) gives paths relative to the project, so ``data/index.csv`` and
  ``dvc.lock`` do not depend on where the project is cloned; every stage runs from the project root.
* Frame numbers are the numbers in the image names (:func:`frame_numbers`), never positions.
* Nothing is dropped silently: every clip left out (missing frames with ``strict=False``, or not
  in the protocol) is listed with its reason in ``df.attrs["excluded"]`` (records
  ``{"sample_id", "reason"}``); :func:`excluded` returns them as a DataFrame and
  :func:`exclusion_summary` counts them. :func:`apply_protocol` carries the exclusions of its
  input forward, so its result lists every clip lost since the sheet.
* ``df.attrs`` also holds ``dataset``, ``root``, ``sheet``, ``layout`` and ``aligned`` (True for
  the aligned CASME II ``Cropped`` release and the synthetic set: frames are already face crops).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer_core import handover, vocab
from mer_core.handover import INDEX_COLUMNS

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_NUMBER = re.compile(r"(\d+)$")

FPS = 200  # CASME II and SAMM are both recorded at 200 fps

#: Columns of every index, in this order (extra columns such as ``objective_class`` follow).

CASME2_SHEET_GLOB = "CASME2-coding-*.xlsx"
SAMM_SHEET_NAME = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_WORKSHEET = "MICRO_ONLY"
SAMM_IMAGE_PATTERN = "{subject}_{frame:05d}.jpg"
#: CASME II frame folders, in order of preference for ``layout="auto"``: the aligned release
#: first (face crops registered to a template, so no face detection is needed downstream).
CASME2_LAYOUTS = {"cropped": ("Cropped", True), "raw": ("CASME2_RAW_selected", False)}

# Sheet column (normalised: lower case, no spaces/underscores) -> index field.
_HEADER_ALIASES = {
    "subject": ("subject",),
    "filename": ("filename",),
    "onset": ("onsetframe", "onset"),
    "apex": ("apexframe", "apex"),
    "offset": ("offsetframe", "offset"),
    "aus": ("actionunits", "actionunit", "aus"),
    "emotion": ("estimatedemotion", "emotion"),
}
_OPTIONAL_ALIASES = {"objective_class": ("objectiveclasses", "objectiveclass")}
# The name each field has in the official sheets, for error messages.
_SHEET_NAMES = {
    "casme2": {"subject": "Subject", "filename": "Filename", "onset": "OnsetFrame",
               "apex": "ApexFrame", "offset": "OffsetFrame", "aus": "Action Units",
               "emotion": "Estimated Emotion"},
    "samm": {"subject": "Subject", "filename": "Filename", "onset": "Onset Frame",
             "apex": "Apex Frame", "offset": "Offset Frame", "aus": "Action Units",
             "emotion": "Estimated Emotion"},
}
_MISSING_APEX = {"", "/", "-", "--", "na", "n/a", "nan", "none", "?"}
_HEADER_SEARCH_ROWS = 30


class SheetError(ValueError):
    """A coding sheet whose content does not match the expected format."""


# ---------------------------------------------------------------------------------------------
# Frame access (shared by every stage)
# ---------------------------------------------------------------------------------------------

def frame_numbers(frames_dir: str | Path) -> dict[int, Path]:
    """Map frame number -> image file for every image in ``frames_dir``.

    The frame number is the last run of digits in the file stem (``img46.jpg`` -> 46,
    ``reg_img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562), so the order is numeric, never
    lexicographic (img99 before img100).

    Raises:
        FileNotFoundError: ``frames_dir`` does not exist.
        ValueError: two files carry the same frame number.
    """
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"{frames_dir}: frame folder not found")
    found: dict[int, Path] = {}
    for p in frames_dir.iterdir():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        m = _NUMBER.search(p.stem)
        if not m:
            continue
        n = int(m.group(1))
        if n in found:
            raise ValueError(f"{frames_dir}: frame number {n} appears twice "
                             f"({found[n].name}, {p.name})")
        found[n] = p
    return dict(sorted(found.items()))


def frame_paths(frames_dir: str | Path, onset: int, offset: int) -> list[Path]:
    """Image files of frames ``onset..offset`` (inclusive, numbers as in the file names).

    Raises:
        FileNotFoundError: a frame in the range is missing; the message lists the first ones.
    """
    onset, offset = int(onset), int(offset)
    if offset < onset:
        raise ValueError(f"{frames_dir}: offset {offset} is before onset {onset}")
    numbers = frame_numbers(frames_dir)
    missing = [n for n in range(onset, offset + 1) if n not in numbers]
    if missing:
        shown = ", ".join(str(n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{frames_dir}: frames {shown}{more} of {onset}..{offset} are missing "
            f"(found {len(numbers)} images)")
    return [numbers[n] for n in range(onset, offset + 1)]


def image_problem(path: str | Path) -> str | None:
    """Why an image file cannot be a whole frame, from its bytes alone; None if it looks whole.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey, with only
    a libjpeg warning on stderr), so a file is checked before it is decoded: an empty file; a
    JPEG without its start (FF D8) or end-of-image (FF D9) marker; a PNG without its IEND chunk.
    Trailing zero or whitespace padding after the end marker is allowed.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 4096))
        tail = f.read().rstrip(b"\x00\r\n\t ")
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        if head[:2] != b"\xff\xd8":
            return "not a JPEG (no start-of-image marker)"
        if not tail.endswith(b"\xff\xd9"):
            return f"truncated JPEG (no end-of-image marker; {size} bytes)"
    elif suffix == ".png":
        if head != b"\x89PNG\r\n\x1a\n":
            return "not a PNG (bad signature)"
        if b"IEND" not in tail[-12:]:
            return f"truncated PNG (no IEND chunk; {size} bytes)"
    return None


def decodes(path: str | Path) -> bool:
    """True if OpenCV decodes the image (at 1/8 scale, grey: fast; a corrupt stream fails)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    return data.size > 0 and cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None


def read_frames(paths: list[Path], gray: bool = False) -> np.ndarray:
    """Decode images into a T x H x W x 3 (RGB) or T x H x W (gray) uint8 array.

    Raises:
        OSError: an image is empty, truncated or cannot be decoded (the message names the file
            and why; see :func:`image_problem`).
        ValueError: the frames do not all have the same size.
    """
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    out = []
    for p in paths:
        problem = image_problem(p)
        if problem:
            raise OSError(f"{p}: {problem}")
        img = cv2.imdecode(np.fromfile(str(p), dtype=np.uint8), flag)
        if img is None:
            raise OSError(f"{p}: cannot decode image")
        if not gray:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if out and img.shape != out[0].shape:
            raise ValueError(f"{p}: size {img.shape} differs from the clip's first frame "
                             f"{out[0].shape} ({paths[0]})")
        out.append(img)
    return np.stack(out)


# ---------------------------------------------------------------------------------------------
# Coding sheets
# ---------------------------------------------------------------------------------------------

@dataclass
class _Row:
    """One data row of a coding sheet: its 1-based sheet row number and raw cells by field."""
    number: int
    cells: dict


def _norm_header(value) -> str:
    return re.sub(r"[\s_]+", "", str(value)).lower() if value is not None else ""


def _read_sheet(path: Path, worksheet: str | None, flavour: str) -> tuple[list[_Row], str]:
    """Read the data rows of a coding sheet with openpyxl (raw cell values, real row numbers).

    The header is the first row (of the first 30) holding ``Subject`` and ``Filename``, so the
    CASME II sheet (header on row 1) and SAMM's (13-row preamble, header on row 14) both work.

    Returns:
        The non-blank data rows and the worksheet name actually read.
    """
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises several types for a broken/non-xlsx file
        raise SheetError(f"{path}: cannot open as an .xlsx workbook ({e})") from None
    try:
        if worksheet is None:
            ws = wb["Sheet1"] if "Sheet1" in wb.sheetnames else wb.worksheets[0]
        elif worksheet in wb.sheetnames:
            ws = wb[worksheet]
        else:
            raise SheetError(f"{path}: worksheet {worksheet!r} not found "
                             f"(worksheets: {', '.join(wb.sheetnames)})")
        rows = list(ws.iter_rows(values_only=True))
        title = ws.title
    finally:
        wb.close()

    header_at = None
    for i, row in enumerate(rows[:_HEADER_SEARCH_ROWS]):
        names = {_norm_header(v) for v in row}
        if "subject" in names and "filename" in names:
            header_at = i
            break
    if header_at is None:
        raise SheetError(f"{path} ({title}): no header row with 'Subject' and 'Filename' in "
                         f"the first {_HEADER_SEARCH_ROWS} rows")
    header = [_norm_header(v) for v in rows[header_at]]
    columns: dict[str, int] = {}
    missing = []
    for field_, aliases in {**_HEADER_ALIASES, **_OPTIONAL_ALIASES}.items():
        pos = next((header.index(a) for a in aliases if a in header), None)
        if pos is not None:
            columns[field_] = pos
        elif field_ in _HEADER_ALIASES:
            missing.append(_SHEET_NAMES[flavour][field_])
    if missing:
        found = [str(v) for v in rows[header_at] if v is not None and str(v).strip()]
        raise SheetError(f"{path} ({title}), header on row {header_at + 1}: missing column(s) "
                         f"{', '.join(map(repr, missing))} (found: {', '.join(found)})")

    out = []
    for i, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        cells = {f: (row[c] if c < len(row) else None) for f, c in columns.items()}
        if all(_blank(cells[f]) for f in _HEADER_ALIASES):
            continue
        out.append(_Row(i, cells))
    if not out:
        raise SheetError(f"{path} ({title}): no data rows below the header on row "
                         f"{header_at + 1}")
    return out, title


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value) -> str:
    """Cell as text; integral floats lose their ``.0`` (AU ``12.0`` -> ``'12'``)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _as_int(value) -> int | None:
    """A frame-number cell as int, or None when it is not a whole number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def _subject_number(value, where: str) -> int:
    text = _text(value)
    m = re.fullmatch(r"(?:sub|samm)?\s*0*(\d+)", text, flags=re.IGNORECASE)
    if not m:
        raise SheetError(f"{where}: Subject {value!r} is not a subject number "
                         "(expected e.g. '01', 1 or 'sub01')")
    return int(m.group(1))


def _parse_rows(rows: list[_Row], sheet: Path, flavour: str) -> list[dict]:
    """Turn raw sheet rows into clip records (subject number, frames, apex + note, text)."""
    names = _SHEET_NAMES[flavour]
    records, seen = [], {}
    for row in rows:
        where = f"{sheet}: row {row.number}"
        c = row.cells
        subject = _subject_number(c["subject"], where)
        clip = _text(c["filename"])
        if not clip:
            raise SheetError(f"{where}: {names['filename']} is empty")
        frames = {}
        for key in ("onset", "offset"):
            n = _as_int(c[key])
            if n is None:
                raise SheetError(f"{where} ({clip}): {names[key]} is {c[key]!r}; expected a "
                                 "whole frame number")
            frames[key] = n
        if frames["onset"] > frames["offset"]:
            raise SheetError(f"{where} ({clip}): {names['onset']} {frames['onset']} is after "
                             f"{names['offset']} {frames['offset']}")
        apex, note = _parse_apex(c["apex"], frames["onset"], frames["offset"])
        emotion = _text(c["emotion"]).lower()
        if not emotion:
            raise SheetError(f"{where} ({clip}): {names['emotion']} is empty")
        key = (subject, clip)
        if key in seen:
            raise SheetError(f"{sheet}: rows {seen[key]} and {row.number} have the same key "
                             f"(Subject {subject}, Filename {clip!r}); keys must be unique")
        seen[key] = row.number
        rec = {"subject_no": subject, "clip": clip, "onset": frames["onset"], "apex": apex,
               "offset": frames["offset"], "emotion": emotion, "aus": _text(c["aus"]),
               "apex_note": note, "sheet_row": row.number}
        if "objective_class" in c:
            rec["objective_class"] = _text(c["objective_class"])
        records.append(rec)
    return records


def _parse_apex(value, onset: int, offset: int) -> tuple[int | None, str]:
    """Apex frame or None, with the reason when None (never a guess)."""
    n = _as_int(value)
    if n is None:
        text = _text(value)
        if text.lower() in _MISSING_APEX:
            shown = f"{text!r}" if text else "empty"
            return None, f"apex {shown} in sheet: not annotated"
        return None, f"apex {text!r} in sheet is not a frame number"
    if not onset <= n <= offset:
        return None, f"apex {n} in sheet is outside onset..offset {onset}..{offset}"
    return n, ""


def find_sheet(root: str | Path, pattern: str) -> Path:
    """The single coding sheet matching ``pattern`` in ``root`` or one folder below it.

    Raises:
        FileNotFoundError: none found.
        ValueError: several found (pass ``sheet=`` to choose).
    """
    root = Path(root)
    found = sorted({*root.glob(pattern), *root.glob(f"*/{pattern}")})
    found = [p for p in found if not p.name.startswith("~$")]  # Excel lock files
    if not found:
        raise FileNotFoundError(f"{root}: no coding sheet {pattern!r} in the dataset root or "
                                "one folder below it; pass sheet=<path to the .xlsx>")
    if len(found) > 1:
        raise ValueError(f"{root}: several coding sheets match {pattern!r}: "
                         f"{', '.join(str(p) for p in found)}; pass sheet=<path> to choose one")
    return found[0]


def _resolve_sheet(root: Path, sheet, pattern: str) -> Path:
    if sheet in (None, ""):
        return find_sheet(root, pattern)
    p = Path(sheet)
    if not p.is_absolute() and not p.exists() and (root / p).exists():
        p = root / p
    if not p.is_file():
        raise FileNotFoundError(f"{sheet}: coding sheet not found (also looked in {root})")
    return p


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------

def casme2_layout(root: str | Path, layout: str = "auto") -> tuple[Path, str, bool]:
    """Find the CASME II frame folder.

    Args:
        root: the dataset root.
        layout: ``"auto"`` (``Cropped`` if present, else ``CASME2_RAW_selected``, else ``root``
            itself when it holds ``subNN`` folders), ``"cropped"``, ``"raw"``, or a folder name
            below ``root`` that holds the ``subNN`` folders.

    Returns:
        (frames folder, layout name, aligned). ``aligned`` is True for ``Cropped`` (face crops
        registered to a template, ``reg_img<N>.jpg``) and False for the raw release.

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    root = Path(root)
    if layout in CASME2_LAYOUTS:
        name, aligned = CASME2_LAYOUTS[layout]
        if not (root / name).is_dir():
            raise FileNotFoundError(f"{root}: layout {layout!r} expects the folder {name}/ "
                                    "(subNN/<Filename>/ images); not found")
        return root / name, layout, aligned
    if layout == "auto":
        for key, (name, aligned) in CASME2_LAYOUTS.items():
            if (root / name).is_dir():
                return root / name, key, aligned
        if any(root.glob("sub[0-9]*")):
            return root, "flat", _looks_aligned(root)
        raise FileNotFoundError(
            f"{root}: no CASME II frame folder (looked for Cropped/, CASME2_RAW_selected/ and "
            "subNN/ folders); pass layout=<folder below the root>")
    folder = root / layout
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: CASME II frame folder (layout={layout!r}) not found")
    return folder, layout, _looks_aligned(folder)


def _looks_aligned(folder: Path) -> bool:
    """Aligned copies name their frames ``reg_img<N>.jpg`` (the ``Cropped`` release)."""
    first = next(iter(sorted(folder.glob("sub*/*/*"))), None)
    return first is not None and first.name.lower().startswith("reg_")


def load_index(name: str, root: str | Path, **options) -> pd.DataFrame:
    """Read a dataset's coding sheet into the sample index (one row per clip).

    Args:
        name: ``"synthetic"`` (the generated CASME-II-shaped set, read with the CASME II reader),
            ``"casme2"`` or ``"samm"``.
        root: the dataset root folder.
        **options:
            sheet (str | Path | None): the coding sheet; default: the official name under
                ``root`` (``CASME2-coding-*.xlsx`` / ``SAMM_Micro_FACS_Codes_v2.xlsx``), also one
                folder below. A relative path is tried against the working directory, then
                ``root``.
            worksheet (str | None): default ``Sheet1`` (else the first one) for CASME II,
                ``MICRO_ONLY`` for SAMM.
            strict (bool): default True: a clip with missing frames is an error; False: it is
                dropped and listed in ``attrs["excluded"]``.
            validate_frames (bool): default True: check that frames onset..offset exist, are
                whole (:func:`image_problem`) and decode.
            layout (str): CASME II / synthetic only; see :func:`casme2_layout` (default
                ``"auto"``: ``Cropped`` preferred over ``CASME2_RAW_selected``).
            image_pattern (str): SAMM only; frame file name inside
                ``<root>/<subject>/<Filename>/``, default ``"{subject}_{frame:05d}.jpg"``
                (fields ``subject`` = sheet code such as ``006``, ``frame``, ``filename``).

    Returns:
        DataFrame with :data:`mer_core.handover.INDEX_COLUMNS` (+ ``objective_class`` when the sheet has it), in sheet
        order, index 0..n-1. ``onset``/``offset`` are int64, ``apex`` is nullable Int64 (NA when
        missing or outside onset..offset; ``apex_note`` says why, else ``""``), ``frames_dir``
        is absolute. ``attrs``: dataset, root, sheet, layout, aligned, excluded (records
        ``{"sample_id", "reason"}``; see :func:`excluded`).

    Raises:
        ValueError: unknown dataset name or option.
        FileNotFoundError: missing root, sheet or (strict) frames.
        SheetError: missing columns, non-numeric onset/offset, onset > offset, duplicate
            (subject, filename) keys; the message names the file and the sheet row.
    """
    if name not in vocab.DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(vocab.DATASETS)}")
    known = {"sheet", "worksheet", "strict", "validate_frames", "layout", "image_pattern"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"load_index: unknown option(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(known))}")
    if name == "samm" and "layout" in options:
        raise ValueError("load_index: option 'layout' is for CASME II; SAMM uses image_pattern")
    if name != "samm" and "image_pattern" in options:
        raise ValueError("load_index: option 'image_pattern' is for SAMM only")
    root = Path(os.path.normpath(Path(root).expanduser()))
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {name} dataset root not found")
    strict = bool(options.get("strict", True))
    validate = bool(options.get("validate_frames", True))

    if name == "samm":
        sheet = _resolve_sheet(root, options.get("sheet"), SAMM_SHEET_NAME)
        rows, ws = _read_sheet(sheet, options.get("worksheet") or SAMM_WORKSHEET, "samm")
        records = _parse_rows(rows, sheet, "samm")
        pattern = options.get("image_pattern") or SAMM_IMAGE_PATTERN
        _check_pattern(pattern)
        for r in records:
            code = f"{r['subject_no']:03d}"
            r["subject"] = f"samm{code}"
            r["frames_dir"] = str(root / code / r["clip"])
            r["expected"] = lambda n, code=code, clip=r["clip"]: pattern.format(
                subject=code, frame=n, filename=clip)
        layout, aligned = "samm", False
    else:
        sheet = _resolve_sheet(root, options.get("sheet"), CASME2_SHEET_GLOB)
        rows, ws = _read_sheet(sheet, options.get("worksheet"), "casme2")
        records = _parse_rows(rows, sheet, "casme2")
        folder, layout, aligned = casme2_layout(root, options.get("layout", "auto"))
        for r in records:
            r["subject"] = f"sub{r['subject_no']:02d}"
            r["frames_dir"] = str(folder / r["subject"] / r["clip"])
        if name == "synthetic":
            aligned = True  # generated frames are face crops by construction

    for r in records:
        r["dataset"] = name
        r["sample_id"] = f"{name}/{r['subject']}/{r['clip']}"

    dropped = []
    if validate:
        records, dropped = _validate_frames(records, strict, sheet)

    df = _to_frame(records)
    df.attrs.update({"dataset": name, "root": str(root), "sheet": str(sheet),
                     "worksheet": ws, "layout": layout, "aligned": bool(aligned),
                     "excluded": dropped})
    logger.info("%s: %d clips from %s (%d excluded)", name, len(df), sheet.name, len(dropped))
    return df


def _check_pattern(pattern: str) -> None:
    try:
        sample = pattern.format(subject="006", frame=12345, filename="006_1_2")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"image_pattern {pattern!r}: cannot format it ({e}); fields are "
                         "subject, frame, filename") from None
    m = _NUMBER.search(Path(sample).stem)
    if not m or int(m.group(1)) != 12345:
        raise ValueError(f"image_pattern {pattern!r}: the frame number must be the last digits "
                         f"of the file name (gives {sample!r})")


def _validate_frames(records: list[dict], strict: bool, sheet: Path):
    """Check frames onset..offset of every clip; raise (strict) or drop and report."""
    kept, dropped, problems = [], [], []
    for r in records:
        problem, kind = None, "missing frames"
        try:
            paths = frame_paths(r["frames_dir"], r["onset"], r["offset"])
            bad = [(p, why) for p in paths
                   if (why := image_problem(p) or (None if decodes(p) else "cannot decode image"))]
            if bad:
                kind = "unreadable frames"
                problem = (f"{bad[0][0]}: {bad[0][1]}"
                           + (f" (and {len(bad) - 1} more frame(s))" if len(bad) > 1 else ""))
            expected = r.get("expected")
            if expected is not None and problem is None:
                wrong = [p.name for n, p in zip(range(r["onset"], r["offset"] + 1), paths)
                         if p.name != expected(n)]
                if wrong:
                    problem = (f"{r['frames_dir']}: {len(wrong)} frame file(s) do not follow "
                               f"image_pattern (e.g. {wrong[0]!r}, expected "
                               f"{expected(r['onset'])!r} for frame {r['onset']})")
        except (OSError, ValueError) as e:   # missing folder or frame, unreadable file
            problem = str(e)
        if problem is None:
            kept.append(r)
        else:
            problems.append(f"{r['sample_id']} (sheet row {r['sheet_row']}): {problem}")
            dropped.append({"sample_id": r["sample_id"], "reason": f"{kind}: {problem}"})
    if problems and strict:
        shown = "\n  ".join(problems[:5])
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise FileNotFoundError(
            f"{len(problems)} of {len(records)} clips of {sheet.name} have missing or "
            f"unreadable frames:\n  {shown}{more}\n(strict=False drops and reports them)")
    return kept, dropped


def _to_frame(records: list[dict]) -> pd.DataFrame:
    extra = ["objective_class"] if records and "objective_class" in records[0] else []
    df = pd.DataFrame({c: [r.get(c) for r in records] for c in INDEX_COLUMNS + extra})
    if df.empty:
        df = pd.DataFrame({c: pd.Series([], dtype="str") for c in INDEX_COLUMNS + extra})
    df["onset"] = df["onset"].astype("int64")
    df["offset"] = df["offset"].astype("int64")
    df["apex"] = pd.array([r.get("apex") for r in records], dtype="Int64")
    for c in ["sample_id", "dataset", "subject", "clip", "frames_dir", "emotion", "aus",
              "apex_note"] + extra:
        df[c] = df[c].astype("str")
    return df


# ---------------------------------------------------------------------------------------------
# Exclusions
# ---------------------------------------------------------------------------------------------

def excluded(df: pd.DataFrame) -> pd.DataFrame:
    """The clips dropped on the way to ``df`` (columns ``sample_id``, ``reason``)."""
    return pd.DataFrame(list(df.attrs.get("excluded", [])), columns=["sample_id", "reason"])


def exclusion_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Count of dropped clips per reason (the text before the first ``:`` of the reason)."""
    ex = excluded(df)
    kind = ex["reason"].str.split(":", n=1).str[0]
    out = kind.value_counts().rename_axis("reason").reset_index(name="clips")
    return out


# ---------------------------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------------------------

def apply_protocol(index: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Keep the clips of ``protocol`` and add its class name as ``label``.

    Args:
        index: a :func:`load_index` result (several datasets may be concatenated: the emotion
            map is chosen per row by ``dataset``).
        protocol: ``casme2-5class``, ``casme2-7class`` or ``megc2019-3class``.

    Returns:
        The kept rows (index reset to 0..n-1) with ``label``. ``attrs["excluded"]`` lists the
        input's exclusions followed by every clip this protocol drops, with the reason.

    Raises:
        ValueError: unknown protocol, a dataset the protocol does not cover (e.g.
            casme2-5class on SAMM), or an emotion the protocol does not know (a typo in the
            sheet is never dropped silently).
    """
    labels = vocab.protocol_labels(protocol)
    spec = vocab.PROTOCOLS[protocol]
    datasets = sorted(set(index["dataset"]))
    unfit = [d for d in datasets if d not in spec["maps"]]
    if unfit:
        raise ValueError(f"protocol {protocol!r} does not apply to dataset(s) "
                         f"{', '.join(unfit)}; it covers {', '.join(spec['maps'])}"
                         + ("; for SAMM use megc2019-3class" if "samm" in unfit else ""))
    keep, label, dropped, unknown = [], [], [], []
    for row in index.itertuples(index=False):
        mapping = spec["maps"][row.dataset]
        if (row.subject, row.clip) in spec["drop_clips"].get(row.dataset, set()):
            dropped.append({"sample_id": row.sample_id,
                            "reason": f"on the MEGC 2019 exclusion list ({protocol})"})
            keep.append(False)
        elif row.emotion not in mapping:
            unknown.append(f"{row.sample_id} ({row.emotion!r})")
            keep.append(False)
        elif mapping[row.emotion] is None:
            dropped.append({"sample_id": row.sample_id,
                            "reason": f"emotion {row.emotion} is not a class of {protocol}"})
            keep.append(False)
        else:
            label.append(mapping[row.emotion])
            keep.append(True)
    if unknown:
        known = sorted({e for d in datasets for e in spec["maps"][d]})
        raise ValueError(f"protocol {protocol!r}: {len(unknown)} clip(s) have an emotion it "
                         f"does not know: {', '.join(unknown[:5])}"
                         f"{' ...' if len(unknown) > 5 else ''}; known: {', '.join(known)}")
    out = index.loc[np.asarray(keep, dtype=bool)].reset_index(drop=True)
    out["label"] = pd.Series(label, dtype="str")
    assert set(out["label"]) <= set(labels)
    out.attrs = {**index.attrs, "protocol": protocol, "labels": labels,
                 "excluded": list(index.attrs.get("excluded", [])) + dropped}
    logger.info("%s: kept %d of %d clips; dropped %d", protocol, len(out), len(index),
                len(dropped))
    return out


# ---------------------------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------------------------

def loso_folds(index: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-subject-out folds.

    Args:
        index: an index with a ``subject`` column.

    Returns:
        One ``(test_subject, train_rows, test_rows)`` per subject, sorted by subject name.
        The rows are **positions** (``index.iloc``, int64 arrays, ascending), which are also the
        rows of the ``data/frames`` arrays. A subject is never on both sides.

    Raises:
        ValueError: fewer than two subjects.
    """
    subjects = index["subject"].astype(str).to_numpy()
    names = sorted(set(subjects))
    if len(names) < 2:
        raise ValueError(f"LOSO needs at least two subjects; the index has {names}")
    rows = np.arange(len(index))
    return [(s, rows[subjects != s], rows[subjects == s]) for s in names]


# ---------------------------------------------------------------------------------------------
# The data stage
# ---------------------------------------------------------------------------------------------

def describe(cfg, subjects=None) -> str:
    """One line saying what the dataset is (every report repeats it)."""
    if cfg.dataset == "synthetic":
        part = f", subjects {','.join(subjects)}" if subjects else ""
        return (f"synthetic CASME-II-shaped (seed {cfg.synthetic_seed}, amplitude "
                f"{cfg.synthetic_amplitude} px at 128 px, {cfg.synthetic_size} px frames{part})"
                " - NOT real CASME II")
    return {"casme2": "CASME II", "samm": "SAMM"}[cfg.dataset] + f" ({cfg.root})"


def build_index(cfg, out_dir: str | Path = "data", subjects=None, progress: bool = True):
    """The ``data`` stage: (generate,) load, apply the protocol, write the index files.

    Args:
        cfg: a :class:`mer_core.config.DataConfig`.
        out_dir: where ``index.csv``, ``excluded.csv`` and ``dataset.json`` go.
        subjects: synthetic only: generate this subset (e.g. ``["sub01", "sub02"]``) for a
            quick run; None = all 26.
        progress: show the generator's progress bar.

    Returns:
        (index after the protocol, the ``dataset.json`` dict).

    Raises:
        ValueError: no clip is left; plus everything :func:`load_index` and
            :func:`apply_protocol` raise.
    """
    from mer_core import io

    if subjects and cfg.dataset != "synthetic":
        raise ValueError("build_index: subjects= only selects synthetic subjects")
    if cfg.dataset == "synthetic":
        from mer_core import synthetic
        synthetic.generate(cfg.root, seed=cfg.synthetic_seed, size=cfg.synthetic_size,
                           amplitude=cfg.synthetic_amplitude, subjects=subjects or None,
                           progress=progress)
    options = {"strict": cfg.strict}
    if cfg.sheet:
        options["sheet"] = cfg.sheet
    index = load_index(cfg.dataset, cfg.root, **options)
    out = apply_protocol(index, cfg.protocol)
    ex = excluded(out)
    if out.empty:
        raise ValueError(f"{cfg.root}: no clip left after validation and protocol "
                         f"{cfg.protocol!r} ({len(ex)} excluded; see excluded(...))")
    info = {
        "dataset": cfg.dataset,
        "description": describe(cfg, subjects),
        "synthetic": cfg.dataset == "synthetic",
        "protocol": cfg.protocol,
        "labels": vocab.protocol_labels(cfg.protocol),
        "fps": FPS,
        "aligned": bool(out.attrs["aligned"]),
        "n_clips": int(len(out)),
        "n_excluded": int(len(ex)),
        "n_subjects": int(out["subject"].nunique()),
        "layout": out.attrs["layout"],
        "root": out.attrs["root"],
        "sheet": out.attrs["sheet"],
    }
    handover.write_index(out_dir, out, ex, info)
    summary = exclusion_summary(out)
    print(f"{info['description']}: {info['n_clips']} clips of {info['n_subjects']} subjects "
          f"({cfg.protocol}); {info['n_excluded']} excluded"
          + "".join(f"\n  {r.clips:4d}  {r.reason}" for r in summary.itertuples()))
    return out, info


