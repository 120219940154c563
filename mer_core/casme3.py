"""CAS(ME)^3 Part A: its coding sheet read into clip records, and where its frames lie.

The sheet is ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, worksheet ``label``, columns
``Subject | Filename | Onset | Apex | Offset | AU | Objective class | emotion``. Its quirks, and
what this reader decides about each:

* Every cell is text, frame numbers included (``'123'``): read as whole numbers.
* Subjects are ``spNO.<n>``. The index's ``subject`` is ``spNO<nnn>`` (``spNO.1`` ->
  ``spNO001``): the code without its dot, zero-padded so that subjects sort, safe in file names,
  and distinct from CASME II's ``subNN`` and SAMM's ``sammNNN`` when datasets are stacked. The
  raw code is kept in ``attrs["subject_codes"]`` (id -> code).
* ``Filename`` is the task letter of the video (``a``, ``b``, ...; the sheet writes one of them in
  upper case). One video holds several MEs, so the clip key is the lower-cased task letter and
  the onset: ``a_onset123``. Two rows with the same (subject, task, onset) are a
  :class:`~mer_core.sheets.SheetError` naming both rows.
* ``emotion`` is lower-cased (``Others`` and ``others`` are one class).
* ``Objective class`` is a Roman numeral (``I`` .. ``VII``); it is kept in the optional
  ``objective_class`` column as Arabic digits text (``III`` -> ``'3'``), as the CASME II and
  SAMM sheets write theirs, so the column means the same across datasets.
* An apex outside onset..offset, or missing, becomes NA with the reason in ``apex_note``
  (never guessed), as for CASME II.
* A row with offset ``0`` (offset not annotated) or an onset after its offset has no clip to
  cut. The official sheet has such rows, so they are always excluded, each listed with its
  reason in ``attrs["excluded"]`` (never dropped silently, and never an error that would stop
  every user of the official sheet); ``strict`` keeps its meaning for frames on disk.

Frames: ``<root>/<subject code>/<task>/color/<frame>.jpg`` (:data:`IMAGE_PATTERN`; fields
``subject`` = the raw code ``spNO.1``, ``task`` = the lower-cased letter, ``filename`` = the
``Filename`` cell as written, ``frame``).
"""
from __future__ import annotations

import re
from pathlib import Path

from mer_core.images import FRAME_NUMBER
from mer_core.sheets import (SheetError, _as_int, _blank, _norm_header, _parse_apex, _text,
                             resolve_sheet, worksheet_rows)

SHEET_GLOB = "cas(me)3_part_A_ME_label_JpgIndex*.xlsx"
WORKSHEET = "label"
#: Frame file below the dataset root; only the file name may depend on ``frame``.
IMAGE_PATTERN = "{subject}/{task}/color/{frame}.jpg"

# Sheet column (normalised: lower case, no spaces/underscores) -> record field.
_COLUMNS = {"subject": ("subject",), "filename": ("filename",),
            "onset": ("onset", "onsetframe"), "apex": ("apex", "apexframe"),
            "offset": ("offset", "offsetframe"), "aus": ("au", "aus", "actionunits"),
            "emotion": ("emotion", "estimatedemotion")}
_OPTIONAL = {"objective_class": ("objectiveclass", "objectiveclasses")}
# The name each field has in the official sheet, for error messages.
_NAMES = {"subject": "Subject", "filename": "Filename", "onset": "Onset", "apex": "Apex",
          "offset": "Offset", "aus": "AU", "emotion": "emotion",
          "objective_class": "Objective class"}
_HEADER_SEARCH_ROWS = 30
_ROMAN = {"i": 1, "v": 5, "x": 10}


def read(root: Path, dataset: str, options: dict, strict: bool):
    """Read the CAS(ME)^3 Part A sheet into clip records (the ``casme3`` branch of load_index).

    Args:
        root: the dataset root.
        dataset: the dataset name (``casme3``), the first part of ``sample_id``.
        options: load_index's options: ``sheet``, ``worksheet`` (default ``label``),
            ``image_pattern`` (default :data:`IMAGE_PATTERN`).
        strict: unused by the sheet (rows with offset 0 or onset after offset are always
            excluded with their reason); kept for the reader's common signature.

    Returns:
        (records, excluded, sheet path, worksheet, subject codes): records as load_index needs
        them (``subject``, ``clip``, ``sample_id``, frames, ``frames_dir``, ``expected``, ...),
        excluded rows as ``{"sample_id", "reason"}``, and subject id -> raw code.

    Raises:
        FileNotFoundError: no sheet. ValueError: a bad ``image_pattern``.
        mer_core.sheets.SheetError: see :func:`parse_rows`.
    """
    pattern = options.get("image_pattern") or IMAGE_PATTERN
    check_pattern(pattern)
    sheet = resolve_sheet(root, options.get("sheet"), SHEET_GLOB)
    rows, ws = read_rows(sheet, options.get("worksheet") or WORKSHEET)
    records, bad = parse_rows(rows, sheet)
    for r in records + bad:
        r["sample_id"] = f"{dataset}/{r['subject']}/{r['clip']}"
    for r in records:
        fields = {"subject": r["subject_code"], "task": r["task"], "filename": r["filename"]}
        r["frames_dir"] = str((root / pattern.format(frame=0, **fields)).parent)
        r["expected"] = lambda n, fields=fields: Path(pattern.format(frame=n, **fields)).name
    excluded = [{"sample_id": r["sample_id"], "reason": r["reason"]} for r in bad]
    codes = {r["subject"]: r["subject_code"] for r in records + bad}
    return records, excluded, sheet, ws, codes


def check_pattern(pattern: str) -> None:
    """Refuse an ``image_pattern`` that cannot name a frame file.

    Raises:
        ValueError: an unknown field, a folder that depends on the frame, or a file name whose
            last digits are not the frame number.
    """
    fields = {"subject": "spNO.1", "task": "a", "filename": "a"}
    try:
        one, other = (Path(pattern.format(frame=n, **fields)) for n in (12345, 678))
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"image_pattern {pattern!r}: cannot format it ({e}); fields are "
                         "subject, task, filename, frame") from None
    if one.parent != other.parent:
        raise ValueError(f"image_pattern {pattern!r}: only the file name may hold the frame "
                         f"number (gives folders {one.parent} and {other.parent})")
    m = FRAME_NUMBER.search(one.stem)
    if not m or int(m.group(1)) != 12345:
        raise ValueError(f"image_pattern {pattern!r}: the frame number must be the last digits "
                         f"of the file name (gives {one.name!r})")


def read_rows(path: Path, worksheet: str) -> tuple[list[tuple[int, dict]], str]:
    """The data rows of the sheet: (1-based sheet row, raw cells by field), and the worksheet.

    Raises:
        mer_core.sheets.SheetError: not an ``.xlsx``, no such worksheet, no header row with
            ``Subject`` and ``Filename``, a column missing, or no data rows.
    """
    rows = worksheet_rows(path, worksheet)[0]
    where = f"{path} ({worksheet})"
    at = next((i for i, row in enumerate(rows[:_HEADER_SEARCH_ROWS])
               if {"subject", "filename"} <= {_norm_header(v) for v in row}), None)
    if at is None:
        raise SheetError(f"{where}: no header row with 'Subject' and 'Filename' in the first "
                         f"{_HEADER_SEARCH_ROWS} rows")
    header = [_norm_header(v) for v in rows[at]]
    columns = {f: next((header.index(a) for a in aliases if a in header), None)
               for f, aliases in {**_COLUMNS, **_OPTIONAL}.items()}
    missing = [_NAMES[f] for f in _COLUMNS if columns[f] is None]
    if missing:
        raise SheetError(f"{where}, header on row {at + 1}: missing column(s) "
                         f"{', '.join(map(repr, missing))} (expected Subject, Filename, Onset, "
                         "Apex, Offset, AU, Objective class, emotion)")
    columns = {f: c for f, c in columns.items() if c is not None}
    out = []
    for number, row in enumerate(rows[at + 1:], start=at + 2):
        cells = {f: (row[c] if c < len(row) else None) for f, c in columns.items()}
        if not all(_blank(cells[f]) for f in _COLUMNS):
            out.append((number, cells))
    if not out:
        raise SheetError(f"{where}: no data rows below the header on row {at + 1}")
    return out, worksheet


def parse_rows(rows: list[tuple[int, dict]], sheet: Path) -> tuple[list[dict], list[dict]]:
    """Turn the sheet's rows into clip records, and the rows without a clip into exclusions.

    Args:
        rows: what :func:`read_rows` returned.
        sheet: the sheet's path, for error messages.

    Returns:
        (records, rows without a clip). A record has ``subject`` (``spNO001``),
        ``subject_code`` (``spNO.1``), ``task``, ``filename`` (as written), ``clip``, ``onset``,
        ``apex`` (None when missing or outside onset..offset), ``offset``, ``emotion`` (lower
        case), ``aus``, ``apex_note``, ``sheet_row`` and, when the sheet has the column,
        ``objective_class``. A row without a clip (offset 0, or onset after offset) has
        ``subject``, ``subject_code``, ``clip``, ``sheet_row`` and ``reason``.

    Raises:
        mer_core.sheets.SheetError: a subject that is not ``spNO.<n>``, a Filename that is not a
            task code, an onset or offset that is not a whole number, an empty emotion, an
            objective class that is not a Roman numeral, or a repeated (subject, task, onset).
    """
    records, bad, seen = [], [], {}
    for number, c in rows:
        where = f"{sheet}: row {number}"
        code, subject = _subject(c["subject"], where)
        filename = _text(c["filename"])
        if not re.fullmatch(r"[A-Za-z0-9]+", filename):
            raise SheetError(f"{where}: Filename {c['filename']!r} is not a task code "
                             "(expected a letter such as 'a')")
        task = filename.lower()
        onset, offset = (_frame(c, key, where) for key in ("onset", "offset"))
        clip = f"{task}_onset{onset}"
        key = (subject, clip)
        if key in seen:
            raise SheetError(f"{sheet}: rows {seen[key]} and {number} have the same key "
                             f"(Subject {code}, Filename {filename!r}, Onset {onset}); one "
                             "video's MEs must have distinct onsets")
        seen[key] = number
        head = {"subject": subject, "subject_code": code, "clip": clip, "sheet_row": number}
        reason = _no_clip(onset, offset, number)
        if reason:
            bad.append({**head, "reason": reason})
            continue
        apex, note = _parse_apex(c["apex"], onset, offset)
        emotion = _text(c["emotion"]).lower()
        if not emotion:
            raise SheetError(f"{where} ({subject}/{clip}): emotion is empty")
        rec = {**head, "task": task, "filename": filename, "onset": onset, "apex": apex,
               "offset": offset, "emotion": emotion, "aus": _text(c["aus"]),
               "apex_note": note}
        if "objective_class" in c:
            rec["objective_class"] = _objective_class(c["objective_class"], where)
        records.append(rec)
    return records, bad


def _subject(value, where: str) -> tuple[str, str]:
    """``'spNO.1'`` -> (``'spNO.1'``, ``'spNO001'``)."""
    text = _text(value)
    m = re.fullmatch(r"sp\s*no\.?\s*0*(\d+)", text, flags=re.IGNORECASE)
    if not m:
        raise SheetError(f"{where}: Subject {value!r} is not a CAS(ME)^3 subject code "
                         "(expected e.g. 'spNO.1')")
    return text, f"spNO{int(m.group(1)):03d}"


def _frame(cells: dict, key: str, where: str) -> int:
    n = _as_int(cells[key])
    if n is None:
        raise SheetError(f"{where}: {_NAMES[key]} is {cells[key]!r}; expected a whole frame "
                         "number")
    return n


def _no_clip(onset: int, offset: int, row: int) -> str:
    """Why a row has no clip (the text before ':' is the kind of exclusion), or ``""``."""
    if offset == 0:
        return f"offset not annotated: sheet row {row} has Offset 0 (Onset {onset})"
    if onset > offset:
        return f"onset after offset: sheet row {row} has Onset {onset} after Offset {offset}"
    return ""


def _objective_class(value, where: str) -> str:
    """A Roman numeral (``'III'``) or a number as Arabic digits text (``'3'``); blank -> ``""``."""
    text = _text(value)
    if not text or text.isdigit():
        return text
    if re.fullmatch(r"x{0,3}(ix|iv|v?i{0,3})", text.lower()):
        digits = [_ROMAN[ch] for ch in text.lower()]
        total = sum(-d if i + 1 < len(digits) and d < digits[i + 1] else d
                    for i, d in enumerate(digits))
        return str(total)
    raise SheetError(f"{where}: Objective class {value!r} is not a Roman numeral (expected "
                     "e.g. 'III')")
