"""SMIC-E (the extended Spontaneous Micro-expression Corpus): its coding sheet read into clips.

:func:`read_records` turns one band's worksheet of ``SMIC-HS-E_annotation.xlsx`` into the clip
records :func:`mer_core.datasets.load_index` completes (``load_index("smic", root, ...)``).
The sheet's traits, and what is done with each:

* The header is ``Subject | Filename | (blank) | OnsetF | OffsetF | Onset2F | Offset2F |
  Onset3F | Offset3F | (blank) | FirstF | LastF | TotalMF1..3 | TotalVL | Emotion``, one
  worksheet per band (``HS``, ``VIS``). There is no apex column: ``apex`` is None with the note
  ``"not annotated"``, and the index says so in ``attrs["apex_annotated"] = False``.
* Subjects are ints (``1``..``20``, not contiguous) -> ``s01``. File names are unpadded
  (``s1_ne_01``) while the MEGC lists use ``s01_ne_01``: ``clip`` is the padded key,
  ``clip_on_disk`` the sheet's name, and the frame folder is looked for under both.
* Frame numbers are absolute image numbers (tens of millions); several cells are formulas,
  read through their cached values. A formula saved without one is an error naming the row.
* A row may hold three segments: the clip is the first (``OnsetF..OffsetF``); a valid second or
  third one is listed in ``segments``, a garbage one (not numbers, before the onset, negative
  length) in ``flags``; neither becomes a clip.
* The Emotion cell (negative / positive / surprise) wins over the file name's class token
  (``ne``, ``po``, ``sur``); a disagreement is listed in ``flags``.
* A row whose onset or offset is not a frame number (an edited copy holds ``MISSING <-426679``)
  is a :class:`mer_core.sheets.SheetError` naming the file, the row and the column, or with
  ``strict=False`` a skip listed in ``excluded`` with the reason.
"""
from __future__ import annotations

import re
from pathlib import Path

from mer_core import vocab
from mer_core.sheets import (SheetError, _as_int, _blank, _norm_header, _text, resolve_sheet,
                             worksheet_rows)

SMIC_SHEET_NAME = "SMIC-HS-E_annotation.xlsx"
DEFAULT_BAND = "HS"
#: Where a clip's frame folder is looked for below the dataset root, in this order; the first
#: that exists is used (if none does, the first, so a missing folder is reported there).
#: Fields: ``band`` (``HS``/``VIS``), ``subject`` (``s01``), ``subject_no`` (1), ``filename``
#: (the sheet's name, ``s1_ne_01``) and ``clip`` (the padded key, ``s01_ne_01``).
FOLDER_PATTERNS = ("{band}/{subject}/{filename}", "{band}/{subject}/{clip}",
                   "{band}/s{subject_no}/{filename}", "{band}/s{subject_no}/{clip}",
                   "{subject}/{filename}", "{subject}/{clip}")
#: The sheet's columns (normalised header -> field); the official names are used in messages.
_COLUMNS = {"subject": "Subject", "filename": "Filename", "onset": "OnsetF",
            "offset": "OffsetF", "onset2": "Onset2F", "offset2": "Offset2F",
            "onset3": "Onset3F", "offset3": "Offset3F", "emotion": "Emotion"}
_REQUIRED = ("subject", "filename", "onset", "offset", "emotion")
#: The class token of a file name (``s1_ne_01``) -> the emotion it stands for.
_TOKENS = {"ne": "negative", "po": "positive", "sur": "surprise"}
_FILENAME = re.compile(r"s0*(\d+)_([A-Za-z]+)_(\d+)", flags=re.IGNORECASE)
_HEADER_SEARCH_ROWS = 30


def read_records(root: Path, band: str = DEFAULT_BAND, sheet=None, worksheet: str | None = None,
                 folder_pattern=None, strict: bool = True) -> tuple[list[dict], dict]:
    """Read one band of the SMIC-E sheet into clip records.

    Args:
        root: the dataset root.
        band: ``"HS"`` (default) or ``"VIS"``: the worksheet read and the frame rate.
        sheet: the coding sheet; default ``SMIC-HS-E_annotation.xlsx`` under ``root`` (or one
            folder below); see :func:`mer_core.sheets.resolve_sheet`.
        worksheet: default: the band's name.
        folder_pattern: a folder template or a list of them, tried in order (default
            :data:`FOLDER_PATTERNS`).
        strict: True: a bad row (onset/offset not a frame number, onset after offset, empty
            subject/filename/emotion, repeated clip) is an error; False: it is skipped and
            listed in ``excluded``.

    Returns:
        (records, info). Each record has ``subject``, ``clip``, ``clip_on_disk``,
        ``frames_dir``, ``onset``, ``apex`` (None), ``offset``, ``emotion``, ``aus`` (``""``),
        ``apex_note``, ``sheet_row``, ``sample_id``. ``info``: ``sheet``, ``worksheet``,
        ``layout``, ``band``, ``fps``, ``apex_annotated`` (False), ``flags`` (records
        ``{"sample_id", "what"}``), ``segments`` (valid 2nd/3rd segments: ``{"sample_id",
        "segment", "onset", "offset"}``), ``excluded`` (skipped rows: ``{"sample_id",
        "reason"}``).

    Raises:
        ValueError: unknown band or a folder pattern that does not format.
        FileNotFoundError: no sheet.
        mer_core.sheets.SheetError: no such worksheet, no header, a required column missing;
            with ``strict``, a bad row (the message names the file, row and column).
    """
    if band not in vocab.SMIC_BAND_FPS:
        raise ValueError(f"smic: band {band!r} is not one of {', '.join(vocab.SMIC_BAND_FPS)}")
    patterns = _patterns(folder_pattern)
    path = resolve_sheet(root, sheet, SMIC_SHEET_NAME)
    title, columns, rows = _read_sheet(path, worksheet or band)
    where_sheet = f"{path} ({title})"
    records, flags, segments, excluded, seen = [], [], [], [], {}
    for number, values, formulas in rows:
        cells = {f: values[c] if c < len(values) else None for f, c in columns.items()}
        raw = {f: formulas[c] if c < len(formulas) else None for f, c in columns.items()}
        where = f"{where_sheet}: row {number}"
        try:
            rec = _parse_row(cells, raw, where)
            if rec["sample_id"] in seen:
                raise SheetError(f"{where_sheet}: rows {seen[rec['sample_id']]} and {number} "
                                 f"are the same clip {rec['clip']!r} (subject {rec['subject']})"
                                 "; clips must be unique")
        except SheetError as e:
            if strict:
                raise
            excluded.append({"sample_id": _row_id(cells, number),
                             "reason": f"bad sheet row: {e} (strict=False skips it)"})
            continue
        seen[rec["sample_id"]] = number
        rec["sheet_row"] = number
        flags += _name_flags(rec, cells)
        extra, bad = _extra_segments(rec, cells, raw)
        segments += extra
        flags += bad
        rec["frames_dir"] = str(_frames_dir(root, patterns, band, rec))
        records.append(rec)
    info = {"sheet": path, "worksheet": title, "layout": f"smic-{band}", "band": band,
            "fps": vocab.SMIC_BAND_FPS[band], "apex_annotated": False,
            "folder_patterns": list(patterns), "flags": flags, "segments": segments,
            "excluded": excluded}
    return records, info


def _patterns(folder_pattern) -> tuple[str, ...]:
    """The folder templates to try, each checked to format (a typo is caught before reading)."""
    if folder_pattern in (None, ""):
        return FOLDER_PATTERNS
    patterns = (folder_pattern,) if isinstance(folder_pattern, str) else tuple(folder_pattern)
    for p in patterns:
        try:
            p.format(band="HS", subject="s01", subject_no=1, filename="s1_ne_01",
                     clip="s01_ne_01")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"smic folder_pattern {p!r}: cannot format it ({e}); fields are "
                             "band, subject, subject_no, filename, clip") from None
    return patterns


def _read_sheet(path: Path, worksheet: str):
    """The worksheet's name, its columns (field -> position) and its data rows as (sheet row,
    cached values, formulas).

    The workbook is read twice: ``data_only=True`` gives the values Excel cached for formula
    cells, the plain read gives the formulas, so a formula without a cached value is told apart
    from an empty cell.
    """
    views = [worksheet_rows(path, worksheet, data_only=d,
                            hint="; SMIC-E has one per band")[0] for d in (True, False)]
    values, formulas = views
    header_at = next((i for i, row in enumerate(values[:_HEADER_SEARCH_ROWS])
                      if {"subject", "filename"} <= {_norm_header(v) for v in row}), None)
    if header_at is None:
        raise SheetError(f"{path} ({worksheet}): no header row with 'Subject' and 'Filename' "
                         f"in the first {_HEADER_SEARCH_ROWS} rows")
    header = [_norm_header(v) for v in values[header_at]]
    columns = {f: header.index(_norm_header(name)) for f, name in _COLUMNS.items()
               if _norm_header(name) in header}
    missing = [_COLUMNS[f] for f in _REQUIRED if f not in columns]
    if missing:
        found = [str(v) for v in values[header_at] if not _blank(v)]
        raise SheetError(f"{path} ({worksheet}), header on row {header_at + 1}: missing "
                         f"column(s) {', '.join(map(repr, missing))} (found: {', '.join(found)})")
    rows = []
    for i in range(header_at + 1, len(values)):
        vals, forms = values[i], formulas[i] if i < len(formulas) else ()
        used = [(vals[c] if c < len(vals) else None, forms[c] if c < len(forms) else None)
                for c in columns.values()]
        if all(_blank(v) and not _is_formula(f) for v, f in used):
            continue  # blank in every column read (other columns, e.g. totals, do not count)
        rows.append((i + 1, vals, forms))
    return worksheet, columns, rows


def _is_formula(value) -> bool:
    return isinstance(value, str) and value.startswith("=")


def _parse_row(cells: dict, raw: dict, where: str) -> dict:
    """One row's clip (its first segment); SheetError naming the row and column if it is bad."""
    subject_no = _subject_number(cells["subject"], where)
    filename = _text(cells["filename"])
    if not filename:
        raise SheetError(f"{where}: Filename is empty")
    subject, clip = f"s{subject_no:02d}", _clip_key(filename)
    frames = {k: _frame(cells[k], raw[k], f"{where} ({filename}), column {_COLUMNS[k]}")
              for k in ("onset", "offset")}
    if frames["onset"] > frames["offset"]:
        raise SheetError(f"{where} ({filename}): OnsetF {frames['onset']} is after OffsetF "
                         f"{frames['offset']}")
    emotion = _text(cells["emotion"]).lower()
    if not emotion:
        raise SheetError(f"{where} ({filename}): Emotion is empty")
    return {"subject": subject, "clip": clip, "clip_on_disk": filename,
            "sample_id": f"smic/{subject}/{clip}", "onset": frames["onset"], "apex": None,
            "offset": frames["offset"], "emotion": emotion, "aus": "",
            "apex_note": "not annotated", "subject_no": subject_no}


def _subject_number(value, where: str) -> int:
    m = re.fullmatch(r"s?0*(\d+)", _text(value), flags=re.IGNORECASE)
    if not m:
        raise SheetError(f"{where}: Subject {value!r} is not a subject number "
                         "(expected e.g. 1 or 's01')")
    return int(m.group(1))


def _clip_key(filename: str) -> str:
    """The MEGC list key of a file name: the subject part padded (``s1_ne_01`` ->
    ``s01_ne_01``); a name of another shape is kept as it is."""
    m = re.match(r"s0*(\d+)(_.*)$", filename, flags=re.IGNORECASE)
    return f"s{int(m.group(1)):02d}{m.group(2)}" if m else filename


def _frame(value, formula, where: str) -> int:
    """A frame-number cell (its cached value for a formula) as a non-negative int."""
    n = _as_int(value)
    if n is not None and n >= 0:
        return n
    if value is None and _is_formula(formula):
        raise SheetError(f"{where}: the formula {formula!r} has no cached value (the workbook "
                         "was saved by a program that does not compute formulas; open and save "
                         "it in Excel or LibreOffice); expected a whole frame number")
    shown = "empty" if _blank(value) else repr(value)
    raise SheetError(f"{where}: {shown}; expected a whole, non-negative frame number")


def _row_id(cells: dict, number: int) -> str:
    """The sample_id of a skipped row when its subject and filename read, else its row."""
    try:
        subject = f"s{_subject_number(cells['subject'], ''):02d}"
    except SheetError:
        return f"smic/row{number}"
    filename = _text(cells["filename"])
    return f"smic/{subject}/{_clip_key(filename)}" if filename else f"smic/row{number}"


def _name_flags(rec: dict, cells: dict) -> list[dict]:
    """The file name's subject and class token checked against the Subject and Emotion cells
    (the cells win; a disagreement is listed)."""
    m = _FILENAME.fullmatch(rec["clip_on_disk"])
    if not m:
        return [{"sample_id": rec["sample_id"],
                 "what": f"file name {rec['clip_on_disk']!r} is not s<subject>_<class>_<n>; "
                         "its class is not checked"}]
    out = []
    if int(m.group(1)) != rec["subject_no"]:
        out.append({"sample_id": rec["sample_id"],
                    "what": f"file name {rec['clip_on_disk']!r} names subject {m.group(1)} but "
                            f"Subject is {cells['subject']!r}; the Subject cell is used"})
    token = m.group(2).lower()
    said = _TOKENS.get(token)
    if said != rec["emotion"]:
        named = f"class {said}" if said else "no known class (ne, po, sur)"
        out.append({"sample_id": rec["sample_id"],
                    "what": f"file name {rec['clip_on_disk']!r} token {token!r} means {named} "
                            f"but Emotion is {rec['emotion']!r}; the Emotion cell is used"})
    return out


def _extra_segments(rec: dict, cells: dict, raw: dict) -> tuple[list[dict], list[dict]]:
    """A row's 2nd and 3rd segments: valid ones (listed, not clips) and flagged garbage."""
    valid, flags = [], []
    for k in (2, 3):
        on_key, off_key = f"onset{k}", f"offset{k}"
        if on_key not in cells or off_key not in cells:
            continue
        pair = [(cells[key], raw[key]) for key in (on_key, off_key)]
        if all(_blank(v) and not _is_formula(f) for v, f in pair):
            continue
        on, off = (_as_int(v) for v, _ in pair)
        name = f"segment {k} (Onset{k}F {_shown(*pair[0])}, Offset{k}F {_shown(*pair[1])})"
        if on is None or off is None:
            why = "is not a pair of frame numbers"
        elif on < rec["onset"]:
            why = f"starts before the clip's onset {rec['onset']}"
        elif off < on:
            why = f"has a negative length ({off - on} frames)"
        else:
            valid.append({"sample_id": rec["sample_id"], "segment": k, "onset": on,
                          "offset": off})
            continue
        flags.append({"sample_id": rec["sample_id"],
                      "what": f"{name} {why}: ignored, not a clip (sheet row "
                              f"{rec['sheet_row']})"})
    return valid, flags


def _shown(value, formula) -> str:
    if value is None and _is_formula(formula):
        return f"{formula!r} without a cached value"
    return "empty" if _blank(value) else repr(value)


def _frames_dir(root: Path, patterns, band: str, rec: dict) -> Path:
    """The first existing folder of the patterns, else the first pattern's (reported later)."""
    fields = {"band": band, "subject": rec["subject"], "subject_no": rec["subject_no"],
              "filename": rec["clip_on_disk"], "clip": rec["clip"]}
    candidates = [root / p.format(**fields) for p in patterns]
    return next((c for c in candidates if c.is_dir()), candidates[0])
