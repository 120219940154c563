"""Prepared apex-image sets: a folder of face images, one per clip, and a label list.

:func:`read` turns such a set into the clip records :func:`mer_core.datasets.load_index`
completes (``load_index("apex_images", root, labels=...)``). The input, and what is decided
about each of its traits:

* **The label list** is a CSV in one of two formats, told apart by the number of columns of its
  first line: the MEGC composite format ``dataset,subject,clip,label`` (headerless as
  published; a header line ``dataset,subject,clip,label`` is also accepted), or
  ``subject,clip,label`` with or without a header line. CRLF line ends, a UTF-8 byte-order mark,
  blank lines and surrounding spaces are allowed; every other line must have the first line's
  number of columns and no empty cell, else a :class:`ListError` names the file, the line and
  what was expected. Labels are lower-cased (they are already the classes).
* **Subjects** of the composite format are written the way the dataset readers write them, so
  the subjects of different source datasets stay distinct and match the readers':
  ``casme2`` ``1`` -> ``sub01``, ``samm`` ``6`` -> ``samm006``, ``smic`` ``s1`` / ``1`` ->
  ``s01``, ``casme3`` ``spNO.1`` -> ``spNO001``; another dataset name ``d`` gives
  ``d_<subject as written>``. The list's dataset is kept in the optional index column
  ``source_dataset`` (``casme2``, ``samm``, ``smic``, ``casme3`` or the name as written,
  lower-cased); in the three-column format it is ``""`` and the subject is kept as written.
  ``dataset`` is ``apex_images`` for every row, so one protocol map covers the list.
* **The clip key** is the list's clip as written (``clip``); ``sample_id`` is
  ``apex_images/<subject>/<clip>``. Two lines with the same key are an error naming both.
* **Images** are the files directly in the root folder with an image suffix
  (:data:`mer_core.images.IMAGE_SUFFIXES`, any case), colour or grey. Each is named
  ``<subject>_<clip>.<ext>``, but the names in circulation disagree with the lists, so an image
  matches a line when its stem (case-insensitively) is any spelling of the line's key
  (:func:`candidate_names`): the subject as written, padded or unpadded, with or without its
  dataset prefix (``6``, ``06``, ``006``, ``samm006``), followed by ``_`` and the clip with its
  leading subject token padded or unpadded (``s01_ne_01`` / ``s1_ne_01``); or the clip alone
  (SAMM's ``006_1_2.jpg``). A spelling two lines share matches neither (its image is reported
  as unmatched, with a warning saying why); two images matching one line are an error naming
  both files.
* Every listed clip without an image is an error naming it and its line (``strict=True``) or
  is excluded with the reason (``strict=False``); every image without a line is listed in
  ``unmatched_images`` (absolute paths) and logged, never dropped silently.
* A clip is the image alone: ``onset = apex = offset = 0``, ``apex_note``
  :data:`APEX_NOTE`, ``aus`` ``""``, ``frames_dir`` the folder holding the image (as relative
  or absolute as ``root``, like every reader's) and the optional column ``image`` its absolute
  path. Frame numbers do **not** apply: the image's name
  may end in digits (``s01_s1_ne_01.jpg``) that are no frame number, so nothing may look it up
  with :func:`mer_core.images.frame_paths`; read ``image``.
* ``attrs`` says ``single_frame`` True and ``apex_annotated`` True (the image is the apex, by
  the list's word). The stages that need a frame sequence (spotters, onset / middle / random
  frames, motion images, the LBP-TOP clip) call :func:`require_sequences`, which stops them with
  a :class:`SingleFrameError` saying this input has no sequence.

In the pipeline (``data.dataset: apex_images``): the data stage finds the list with
:func:`load_options` (``data.labels``; ``""``: :func:`default_labels`, the one CSV file directly
in ``data.root``) and writes ``single_frame: true`` into ``dataset.json`` (:func:`info_fields`);
the apex stage caches each image, resized, as the ``annotated`` frame and nothing else
(:mod:`mer_core.apex_single`); training takes only ``frames: annotated``
(:func:`require_frames` names any other experiment) on the rows that cache holds
(:func:`cached_index`); the baselines stage runs only the baselines that need no sequence
(:func:`mer_core.baselines.applicable`).

Protocols: the labels are classes already. :data:`mer_core.vocab.PROTOCOLS` ``megc2019-3class``
maps ``apex_images`` negative / positive / surprise to themselves (the composite's classes).
A list with another label set needs a protocol whose ``maps`` has an ``apex_images`` entry
covering its labels: add that entry (one line in :mod:`mer_core.vocab`) to the protocol that
fits, then choose that protocol; until then :func:`mer_core.datasets.apply_protocol` says
which protocols apply.
:data:`mer_core.vocab.FPS` has an ``apex_images`` entry only because the data stage and the
dataset card read one per dataset; a single image has no frame rate, so the value means nothing.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from mer_core.images import IMAGE_SUFFIXES, decodes, image_problem

logger = logging.getLogger(__name__)

NAME = "apex_images"
APEX_NOTE = "single prepared apex image"
#: The columns of the two list formats (by their number of columns).
FORMATS = {4: ("dataset", "subject", "clip", "label"), 3: ("subject", "clip", "label")}
#: Header words accepted for each column (lower case).
_HEADER_WORDS = {"dataset": {"dataset", "database", "db"}, "subject": {"subject", "sub"},
                 "clip": {"clip", "filename", "file", "video"},
                 "label": {"label", "emotion", "class", "estimated emotion"}}
#: Source dataset names as written in lists (lower case, letters and digits only) -> ours.
_SOURCES = {"casme2": "casme2", "casmeii": "casme2", "samm": "samm", "smic": "smic",
            "smice": "smic", "smichs": "smic", "smichse": "smic", "casme3": "casme3"}
#: Subject id of a known source dataset from its number.
_SUBJECT_FORMS = {"casme2": "sub{n:02d}", "samm": "samm{n:03d}", "smic": "s{n:02d}",
                  "casme3": "spNO{n:03d}"}
_NUMBERED = re.compile(r"([A-Za-z.]*?)(\d+)")


class ListError(ValueError):
    """A label list that does not have the expected shape (names the file and the line)."""


class SingleFrameError(ValueError):
    """A stage that needs frame sequences was given single prepared images."""


# ---------------------------------------------------------------------------- the list

def read_list(path: str | Path) -> list[dict]:
    """Read a label list into rows.

    Args:
        path: the CSV (either format; see the module docstring).

    Returns:
        One dict per data line: ``line`` (1-based line number in the file), ``dataset``
        (the source dataset, normalised, or ``""`` in the three-column format), ``subject_raw``,
        ``subject`` (normalised), ``clip`` and ``label`` (lower case).

    Raises:
        FileNotFoundError: no such file.
        ListError: no data line, a line with another number of columns or an empty cell, a
            subject of a known dataset without a number, or two lines with the same key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label list not found")
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    lines = [(i, cells) for i, cells in enumerate(csv.reader(text.splitlines()), start=1)]
    lines = [(i, _trim(cells)) for i, cells in lines]
    lines = [(i, cells) for i, cells in lines if cells]
    if not lines:
        raise ListError(f"{path}: empty label list (expected lines dataset,subject,clip,label "
                        "or subject,clip,label)")
    first_line, first = lines[0]
    columns = FORMATS.get(len(first))
    if columns is None:
        raise ListError(f"{path}, line {first_line}: {len(first)} column(s) {first!r}; expected "
                        "4 (dataset,subject,clip,label) or 3 (subject,clip,label)")
    if all(c.lower() in _HEADER_WORDS[name] for c, name in zip(first, columns)):
        lines = lines[1:]
        if not lines:
            raise ListError(f"{path}: a header line and no data line")
    rows, seen = [], {}
    for i, cells in lines:
        where = f"{path}, line {i}"
        if len(cells) != len(columns):
            raise ListError(f"{where}: {len(cells)} column(s) {cells!r}; expected "
                            f"{len(columns)} ({','.join(columns)}) like line {first_line}")
        row = dict(zip(columns, cells))
        empty = [c for c in columns if not row[c]]
        if empty:
            raise ListError(f"{where}: empty {', '.join(empty)}; expected "
                            f"{','.join(columns)} all filled")
        dataset = _source(row.get("dataset", ""))
        row = {"line": i, "dataset": dataset, "subject_raw": row["subject"],
               "subject": subject_id(dataset, row["subject"], where), "clip": row["clip"],
               "label": row["label"].lower()}
        key = (row["subject"], row["clip"])
        if key in seen:
            raise ListError(f"{where}: clip {row['clip']!r} of subject {row['subject']} is "
                            f"listed again (first on line {seen[key]}); expected one line per "
                            "clip")
        seen[key] = i
        rows.append(row)
    return rows


def _trim(cells: list[str]) -> list[str]:
    cells = [c.strip() for c in cells]
    while cells and not cells[-1]:
        cells.pop()   # a trailing comma (spreadsheet export) is no column
    return cells


def _source(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return _SOURCES.get(key, name.strip().lower())


def subject_id(dataset: str, subject: str, where: str = "") -> str:
    """The index's subject of a list's (dataset, subject).

    Args:
        dataset: the normalised source dataset (``""``: the three-column format).
        subject: the subject as the list writes it.
        where: the file and line, for the error message.

    Returns:
        ``sub01`` / ``samm006`` / ``s01`` / ``spNO001`` for the known datasets,
        ``<dataset>_<subject>`` for another one, the subject as written without a dataset.

    Raises:
        ListError: a known dataset's subject holds no number.
    """
    if not dataset:
        return subject
    if dataset not in _SUBJECT_FORMS:
        return f"{dataset}_{subject}"
    m = re.search(r"(\d+)\s*$", subject)
    if not m:
        raise ListError(f"{where}: subject {subject!r} of {dataset} has no number; expected e.g. "
                        f"{_SUBJECT_FORMS[dataset].format(n=1)} or 1")
    return _SUBJECT_FORMS[dataset].format(n=int(m.group(1)))


# ---------------------------------------------------------------------------- matching

def _number_forms(token: str) -> set[str]:
    """``s01`` -> {s1, s01, s001}; ``6`` -> {6, 06, 006}; a token without a final number: itself."""
    m = _NUMBERED.fullmatch(token)
    if not m:
        return {token}
    prefix, n = m.group(1), int(m.group(2))
    return {f"{prefix}{n}", f"{prefix}{n:02d}", f"{prefix}{n:03d}"}


def candidate_names(row: dict) -> set[str]:
    """Every image stem (lower case) that names the list row ``row`` (see the module docstring).

    Args:
        row: a :func:`read_list` row (``subject_raw``, ``subject``, ``clip``).

    Returns:
        The spellings ``<subject>_<clip>`` and ``<clip>`` with padded and unpadded numbers.
    """
    subjects = _number_forms(row["subject_raw"]) | _number_forms(row["subject"])
    digits = re.search(r"(\d+)$", row["subject"])
    if digits:
        subjects |= _number_forms(digits.group(1))
    head, sep, rest = row["clip"].partition("_")
    clips = {row["clip"]} | ({f + sep + rest for f in _number_forms(head)} if sep else set())
    names = {f"{s}_{c}" for s in subjects for c in clips} | clips
    return {n.lower() for n in names}


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def match(rows: list[dict], images: list[Path], labels: Path) -> tuple[dict, list[Path]]:
    """Pair list rows with images.

    Args:
        rows: :func:`read_list` rows.
        images: the image files.
        labels: the list's path, for messages.

    Returns:
        (row position -> image, images matching no row). An image whose name two rows share is
        unmatched, with a warning naming the rows.

    Raises:
        ListError: two images match the same row (the message names both files and the line).
    """
    owners: dict[str, list[int]] = {}
    for k, row in enumerate(rows):
        for name in candidate_names(row):
            owners.setdefault(name, []).append(k)
    found: dict[int, Path] = {}
    unmatched = []
    for p in images:
        ks = owners.get(p.stem.lower(), [])
        if len(ks) != 1:
            if ks:
                logger.warning("%s: its name fits lines %s of %s alike; not used", p,
                               ", ".join(str(rows[k]["line"]) for k in ks), labels)
            unmatched.append(p)
            continue
        k = ks[0]
        if k in found:
            raise ListError(f"{labels}, line {rows[k]['line']}: clip {rows[k]['clip']!r} "
                            f"(subject {rows[k]['subject']}) has two images, {found[k].name} "
                            f"and {p.name}; expected one image per clip")
        found[k] = p
    return found, unmatched


# ---------------------------------------------------------------------------- the reader

def resolve_labels(root: Path, labels) -> Path:
    """The label list's path: as given (a relative path is tried against the working directory,
    then ``root``).

    Raises:
        ValueError: no list given. FileNotFoundError: the file does not exist.
    """
    if labels in (None, ""):
        raise ValueError(f"{root}: apex_images needs its label list: load_index('apex_images', "
                         "root, labels=<CSV dataset,subject,clip,label or subject,clip,label>)")
    p = Path(labels).expanduser()
    if not p.is_absolute() and not p.exists() and (root / p).exists():
        p = root / p
    if not p.is_file():
        raise FileNotFoundError(f"{labels}: label list not found (also looked in {root})")
    return p


def default_labels(root: str | Path) -> Path:
    """The label list of a set when none is named (``data.labels: ""``): the one CSV file
    directly in ``root``.

    Raises:
        FileNotFoundError: ``root`` is missing, or holds no CSV file.
        ValueError: ``root`` holds several CSV files (all named): choose one with ``data.labels``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {NAME} image folder not found")
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not found:
        raise FileNotFoundError(f"{root}: no label list (a .csv file) in the image folder; "
                                "expected one (dataset,subject,clip,label or subject,clip,label) "
                                "or data.labels naming it")
    if len(found) > 1:
        raise ValueError(f"{root}: {len(found)} CSV files ({', '.join(p.name for p in found)}); "
                         "expected one label list: name it with data.labels")
    return found[0]


def load_options(cfg) -> dict:
    """The label-list option of :func:`mer_core.datasets.load_index` for the data stage.

    Args:
        cfg: a :class:`mer_core.config.DataConfig` of dataset ``apex_images``.

    Returns:
        ``{"labels": path}``: ``data.labels`` as given, or :func:`default_labels` when it and
        ``data.sheet`` (a synonym) are both empty; ``{}`` when only ``data.sheet`` names it.
    """
    if cfg.labels.strip():
        return {"labels": cfg.labels.strip()}
    if cfg.sheet:
        return {}
    return {"labels": str(default_labels(cfg.root))}


def info_fields(index) -> dict:
    """The ``dataset.json`` entries of a single-image set (``{}`` for any other index).

    Args:
        index: the index after the protocol (its ``attrs``).

    Returns:
        ``single_frame`` (True: one image per clip, no sequence) and ``unmatched_images`` (how
        many images no line of the list names; the data stage logged each).
    """
    if not is_single_frame(index):
        return {}
    return {"single_frame": True,
            "unmatched_images": len(index.attrs.get("unmatched_images", []))}


def read(root: Path, labels, strict: bool = True, validate: bool = True):
    """Read a prepared apex-image set into clip records (the ``apex_images`` branch of
    :func:`mer_core.datasets.load_index`).

    Args:
        root: the folder of images.
        labels: the label list (see :func:`resolve_labels`).
        strict: True: a listed clip without an image (or, with ``validate``, with an unreadable
            one) is an error naming it; False: it is excluded with the reason.
        validate: check that every matched image is whole and decodes
            (:func:`mer_core.images.image_problem`, :func:`mer_core.images.decodes`). Matching
            names is always done: the image is the clip.

    Returns:
        (records, excluded, labels path, unmatched images). Records carry every index column
        plus ``image`` and ``source_dataset``; excluded are ``{"sample_id", "reason"}``;
        unmatched images are absolute paths (str).

    Raises:
        FileNotFoundError: (strict) listed clips without an image, every one named.
        OSError: (strict, validate) unreadable images, every one named.
        ListError: see :func:`read_list` and :func:`match`.
    """
    path = resolve_labels(root, labels)
    rows = read_list(path)
    images = [p.resolve() for p in list_images(root)]
    found, unmatched = match(rows, images, path)
    records, excluded, missing, broken = [], [], [], []
    for k, row in enumerate(rows):
        sid = f"{NAME}/{row['subject']}/{row['clip']}"
        where = f"{path.name} line {row['line']}"
        image = found.get(k)
        if image is None:
            detail = (f"{where} lists clip {row['clip']!r} of subject {row['subject_raw']!r}; "
                      f"expected an image {row['subject_raw']}_{row['clip']}.jpg (or .png, "
                      f".bmp; numbers padded or not) in {root}")
            missing.append(f"{sid} ({detail})")
            excluded.append({"sample_id": sid, "reason": f"no image: {detail}"})
            continue
        if validate:
            problem = image_problem(image) or (None if decodes(image) else "cannot decode image")
            if problem:
                broken.append(f"{sid} ({where}): {image}: {problem}")
                excluded.append({"sample_id": sid,
                                 "reason": f"unreadable image: {image}: {problem}"})
                continue
        records.append({
            "sample_id": sid, "dataset": NAME, "subject": row["subject"], "clip": row["clip"],
            "frames_dir": str(root), "onset": 0, "apex": 0, "offset": 0,
            "emotion": row["label"], "aus": "", "apex_note": APEX_NOTE, "image": str(image),
            "source_dataset": row["dataset"], "line": row["line"]})
    if strict and missing:
        raise FileNotFoundError(_listing(f"{len(missing)} of {len(rows)} clips of {path} have "
                                         "no image", missing))
    if strict and broken:
        raise OSError(_listing(f"{len(broken)} of {len(rows)} images of {path} are unreadable",
                               broken))
    for p in unmatched:
        logger.warning("%s: no line of %s names this image", p, path.name)
    return records, excluded, path, [str(p) for p in unmatched]


def _listing(head: str, items: list[str]) -> str:
    shown = "\n  ".join(items[:10])
    more = f"\n  ... and {len(items) - 10} more" if len(items) > 10 else ""
    return f"{head}:\n  {shown}{more}\n(strict=False excludes and reports them)"


# ---------------------------------------------------------------------------- the guard

def is_single_frame(index, info: dict | None = None) -> bool:
    """Whether an index (or its ``dataset.json``) holds single prepared images, not sequences.

    Args:
        index: a sample index (its ``attrs`` may be lost after a CSV round trip, so the
            ``dataset`` column is read too).
        info: ``data/dataset.json`` as a dict, if at hand.

    Returns:
        True for an ``apex_images`` index.
    """
    if index.attrs.get("single_frame") or (info or {}).get("single_frame") \
            or (info or {}).get("dataset") == NAME:
        return True
    return "dataset" in index.columns and bool((index["dataset"].astype(str) == NAME).any())


def require_sequences(index, info: dict | None = None, what: str = "this stage") -> None:
    """Stop a stage that needs frame sequences when the index holds single images.

    Args:
        index: the sample index.
        info: ``data/dataset.json``, if at hand.
        what: what needs the sequences, for the message.

    Raises:
        SingleFrameError: the index is (or holds) an ``apex_images`` set.
    """
    if is_single_frame(index, info):
        raise SingleFrameError(
            f"{what} needs frame sequences (onset..offset), but this input is a prepared "
            f"apex-image set ({NAME}): one image per clip and no sequence, so no spotter, no "
            "onset / middle / random frame, no motion image and no LBP-TOP clip can be made; "
            "only the annotated apex (the image itself) exists")


#: What a report says where a figure or a step needs the frame sequence this input lacks.
NO_SEQUENCES = (f"This input has no frame sequences: it is a prepared apex-image set ({NAME}), one "
                "face image per clip, so there is no clip length, no onset or offset frame and "
                "nothing to spot; the image itself is the (annotated) apex.")
#: The one frame strategy a single-image set has.
ANNOTATED = "annotated"


def require_frames(strategy: str, info: dict | None, what: str) -> None:
    """Stop an experiment or baseline whose frames the input cannot give: a single-image set
    has only its images, a composite with an unannotated part no annotated apex there.

    Args:
        strategy: its frame strategy (``annotated``, ``onset``, ``spotted:best``,
            ``flow:annotated``, ...).
        info: ``data/dataset.json``.
        what: the experiment or baseline, for the message (``experiment 'onset'``).

    Raises:
        SingleFrameError: the dataset is a single-image set and ``strategy`` is not
            ``annotated`` (the message names ``what`` and the strategy).
        mer_core.composite.UnannotatedPartError: a composite with a part without an annotated
            apex, and ``strategy`` is at the annotated apex.
    """
    from mer_core.composite import require_annotated_parts

    require_annotated_parts(strategy, info, what)
    if strategy == ANNOTATED or not (info or {}).get("single_frame"):
        return
    raise SingleFrameError(
        f"{what}: frames {strategy!r} need frame sequences, but this input ({NAME}) has one "
        f"image per clip: only frames {ANNOTATED!r} (the image itself) exist. Remove it from "
        f"params.yaml or set its frames to {ANNOTATED!r}.")


def cached_index(index, frames_dir, info: dict | None = None):
    """The rows of the index whose frames the apex stage cached, in index order.

    A sequence dataset: :func:`mer_core.frame_cache.cached_index`. A single-image set: the rows
    its ``annotated`` cache holds (the only cache it has); the rows left out (an image the apex
    stage could not read with ``strict: false``) are named in a warning.

    Args:
        index: the sample index.
        frames_dir: the apex stage's caches.
        info: ``data/dataset.json``.

    Raises:
        FileNotFoundError: the apex stage has not written its caches.
    """
    from mer_core import frame_cache

    return frame_cache.cached_index(index, frames_dir,
                                    ANNOTATED if is_single_frame(index, info) else "onset")
