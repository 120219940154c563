"""The coding sheets researchers receive with CASME II and SAMM, read into clip records.

:func:`read_sheet` and :func:`parse_rows` handle every quirk of the official sheets: the header
is searched for (SAMM's sheet has a 13-row preamble) and its columns are matched through aliases
(``OnsetFrame`` / ``Onset Frame``, blank columns in between); subjects come as text or ints
(``'01'``, ``1``, ``'sub01'``); the apex may be ``'/'`` or outside the clip (kept as None with the
reason, never guessed). Every error is a :class:`SheetError` naming the file and the sheet row.
:func:`resolve_sheet` finds the sheet under a dataset root (official name, or a given path).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The official sheets' file names and SAMM's worksheet of micro-expressions.
CASME2_SHEET_GLOB = "CASME2-coding-*.xlsx"
SAMM_SHEET_NAME = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_WORKSHEET = "MICRO_ONLY"

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


@dataclass
class _Row:
    """One data row of a coding sheet: its 1-based sheet row number and raw cells by field."""
    number: int
    cells: dict


def _norm_header(value) -> str:
    return re.sub(r"[\s_]+", "", str(value)).lower() if value is not None else ""


def worksheet_rows(path: Path, worksheet: str | None, data_only: bool = True,
                   hint: str = "") -> tuple[list[tuple], str]:
    """Every row of one worksheet as raw cell values, and the worksheet's name.

    Args:
        path: the ``.xlsx`` workbook.
        worksheet: its name; None = ``Sheet1``, else the first worksheet.
        data_only: True: the values Excel cached for formula cells; False: the formulas.
        hint: appended to the "worksheet not found" message.

    Raises:
        SheetError: not an ``.xlsx`` workbook, or no such worksheet (lists the ones there are).
    """
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    except Exception as e:  # openpyxl raises several types for a broken/non-xlsx file
        raise SheetError(f"{path}: cannot open as an .xlsx workbook ({e})") from None
    try:
        if worksheet is None:
            ws = wb["Sheet1"] if "Sheet1" in wb.sheetnames else wb.worksheets[0]
        elif worksheet in wb.sheetnames:
            ws = wb[worksheet]
        else:
            raise SheetError(f"{path}: worksheet {worksheet!r} not found "
                             f"(worksheets: {', '.join(wb.sheetnames)}){hint}")
        return list(ws.iter_rows(values_only=True)), ws.title
    finally:
        wb.close()


def read_sheet(path: Path, worksheet: str | None, flavour: str) -> tuple[list[_Row], str]:
    """Read the data rows of a coding sheet with openpyxl (raw cell values, real row numbers).

    The header is the first row (of the first 30) holding ``Subject`` and ``Filename``, so the
    CASME II sheet (header on row 1) and SAMM's (13-row preamble, header on row 14) both work.

    Args:
        path: the ``.xlsx`` coding sheet.
        worksheet: the worksheet to read; None = ``Sheet1``, else the first one.
        flavour: ``"casme2"`` or ``"samm"``: whose column names the error messages use.

    Returns:
        The non-blank data rows and the worksheet name actually read.

    Raises:
        SheetError: not an ``.xlsx`` workbook, no such worksheet, no header row, a required
            column missing, or no data rows.
    """
    rows, title = worksheet_rows(path, worksheet)

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


def parse_rows(rows: list[_Row], sheet: Path, flavour: str) -> list[dict]:
    """Turn raw sheet rows into clip records (subject number, frames, apex + note, text).

    Args:
        rows: the rows :func:`read_sheet` returned.
        sheet: the sheet's path, for error messages.
        flavour: ``"casme2"`` or ``"samm"``: whose column names the error messages use.

    Returns:
        One dict per row, in sheet order: ``subject_no``, ``clip``, ``onset``, ``apex`` (None when
        missing or outside onset..offset), ``offset``, ``emotion`` (lower case), ``aus``,
        ``apex_note`` (why apex is None, else ``""``), ``sheet_row`` and, when the sheet has the
        column, ``objective_class``.

    Raises:
        SheetError: a subject that is not a number, an empty filename or emotion, an onset or
            offset that is not a whole number, onset > offset, or a repeated (subject, filename).
    """
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

    Args:
        root: the dataset root.
        pattern: a file name or glob (Excel lock files ``~$...`` are skipped).

    Returns:
        The sheet's path.

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


def resolve_sheet(root: Path, sheet, pattern: str) -> Path:
    """The coding sheet to read: ``sheet`` when given, else the one :func:`find_sheet` finds.

    Args:
        root: the dataset root.
        sheet: a path (a relative one is tried against the working directory, then ``root``),
            or None / ``""`` to look for ``pattern``.
        pattern: the official sheet name or glob.

    Returns:
        The sheet's path.

    Raises:
        FileNotFoundError: ``sheet`` does not exist, or no sheet matches ``pattern``.
        ValueError: several sheets match ``pattern``.
    """
    if sheet in (None, ""):
        return find_sheet(root, pattern)
    p = Path(sheet)
    if not p.is_absolute() and not p.exists() and (root / p).exists():
        p = root / p
    if not p.is_file():
        raise FileNotFoundError(f"{sheet}: coding sheet not found (also looked in {root})")
    return p

