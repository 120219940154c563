"""The MEGC 2019 composite: several datasets' indexes stacked into one, and its official clip list.

The composite database of the MEGC 2019 challenge pools CASME II, SAMM and SMIC-E (HS) under three
classes (``megc2019-3class``: negative, positive, surprise). From the sheets: CASME II 145 clips,
SAMM 133, SMIC-E HS one clip per sheet row; 68 subjects. The official list names 442 clips (SMIC
164: some of its clips are the second segment of a sheet row, which has no row of its own).

* :func:`combine` stacks per-dataset indexes (:func:`mer_core.datasets.load_index` results);
  subjects stay distinct (``sub01``, ``samm006``, ``s01``), so leave-one-subject-out folds
  (:func:`mer_core.datasets.loso_folds`) never mix two datasets' people.
* :func:`read_clip_list` parses the official list, a headerless CSV ``dataset,subject,clip,label``
  (CRLF line ends, SAMM subjects unpadded, SMIC clips ``s1_ne_01`` or ``s01_ne_01``).
* :func:`apply_clip_list` is the list half of
  ``apply_protocol(index, "megc2019-3class", clips=path)``: the list is the clip and label
  source, checked against the sheets; every disagreement goes to ``attrs["list_report"]``
  (records ``{"sample_id", "line", "what"}``; :func:`list_report` returns them as a table) and
  every clip left out to ``attrs["excluded"]``, as everywhere in the project.
* :func:`dataset_of` gives the dataset of a sample id, for per-dataset evaluation.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple, Sequence

import pandas as pd

from mer_core.handover import INDEX_COLUMNS

#: The dataset values of the official list (lower-cased) -> the index datasets their rows match.
#: The synthetic set copies CASME II's subjects and clips, so the list's CASME II rows apply to it.
LIST_DATASETS = {"casme2": ("casme2", "synthetic"), "samm": ("samm",), "smic": ("smic",)}
#: The fields of a list row, in order.
LIST_FIELDS = ("dataset", "subject", "clip", "label")
#: A subject of the list, per dataset: (pattern giving the number, index spelling, example).
_SUBJECTS = {"casme2": (r"(?:sub)?0*(\d+)", "sub{:02d}", "sub01, 01 or 1"),
             "samm": (r"(?:samm)?0*(\d+)", "samm{:03d}", "6, 006 or samm006"),
             "smic": (r"s?0*(\d+)", "s{:02d}", "s1, s01 or 1")}


class ListRow(NamedTuple):
    """One row of the composite list, in the index's spelling."""

    line: int        #: line number in the file (1-based)
    dataset: str     #: ``casme2``, ``samm`` or ``smic``
    subject: str     #: ``sub01``, ``samm006``, ``s01``
    clip: str        #: ``EP02_01f``, ``006_1_2``, ``s01_ne_01`` (SMIC: the padded key)
    label: str       #: a class of the protocol, lower case


class UnannotatedPartError(ValueError):
    """A frame strategy at the annotated apex on a composite with a part that has none."""


def unannotated_parts(info: dict | None) -> list[str]:
    """The parts of a composite's ``dataset.json`` without an annotated apex (SMIC-E)."""
    parts = (info or {}).get("parts") or {}
    return [k for k, v in parts.items() if len(parts) > 1 and not v.get("apex_annotated", True)]


def require_annotated_parts(strategy: str, info: dict | None, what: str) -> None:
    """Stop an experiment or baseline at the annotated apex (``annotated``, ``flow:annotated``,
    ``diff:annotated``) on a composite with a part that has no annotated apex: every clip of that
    part would take its fold's spotter, and the row, headed "Annotated apex", would be spotter
    output there.

    Args:
        strategy: the frame strategy.
        info: ``data/dataset.json``.
        what: the experiment or key, for the message.

    Raises:
        UnannotatedPartError: names ``what``, the strategy and the parts.
    """
    from mer_core import vocab

    missing = unannotated_parts(info)
    if not missing or vocab.motion_of(strategy)[1] != "annotated":
        return
    raise UnannotatedPartError(
        f"{what}: frames {strategy!r} need an annotated apex, but the composite's part(s) "
        f"{', '.join(missing)} have none (their clips would all be spotter output under an "
        f"'annotated' heading). Use 'spotted:best' (chosen per fold on the annotated parts), "
        f"'spotted:<method>', 'onset' or 'middle'.")


def dataset_of(sample_id: str) -> str:
    """The dataset of a sample id: ``samm/samm006/006_1_2`` -> ``samm``.

    The ``dataset`` column also survives :func:`mer_core.datasets.apply_protocol`; this serves
    tables that kept only the sample id (predictions).

    Raises:
        ValueError: not a ``dataset/subject/clip`` id.
    """
    parts = str(sample_id).split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"sample_id {sample_id!r}: expected dataset/subject/clip")
    return parts[0]


# ---------------------------------------------------------------------------------------------
# Stacking indexes
# ---------------------------------------------------------------------------------------------

def combine(indexes: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack per-dataset indexes into one (the MEGC 2019 composite).

    Args:
        indexes: :func:`mer_core.datasets.load_index` results (or earlier :func:`combine`
            results), one per dataset.

    Returns:
        The rows of every input in order (index 0..n-1) with :data:`INDEX_COLUMNS` first, then
        the union of the optional columns (``objective_class``, ``clip_on_disk``, ``label``...;
        ``""`` where an input lacks one). ``attrs``: ``dataset`` = ``"composite"``,
        ``datasets`` (the names, in order), ``parts`` (dataset -> that input's attrs),
        ``excluded`` (every input's exclusions, concatenated), ``aligned`` and
        ``apex_annotated`` (True only when true of every part).

    Raises:
        ValueError: no input; an input that is not an index (names it and the missing
            columns); a dataset given twice; a sample_id in two inputs; a subject id in two
            datasets (names the subject and both datasets).
    """
    indexes = list(indexes)
    if not indexes:
        raise ValueError("combine: no index given; expected one index per dataset")
    parts, names, owner = {}, [], {}
    for k, df in enumerate(indexes):
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"combine: input {k} is a {type(df).__name__}, expected an index "
                             "DataFrame (load_index)")
        missing = [c for c in INDEX_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"combine: input {k} is not an index: missing column(s) "
                             f"{', '.join(missing)} (expected {', '.join(INDEX_COLUMNS)})")
        own = df.attrs.get("parts") or {_name_of(df, k): dict(df.attrs)}
        for name, attrs in own.items():
            if name in parts:
                raise ValueError(f"combine: dataset {name!r} is given twice (input {k} and "
                                 f"input {owner[name]}); give each dataset once")
            parts[name], owner[name] = attrs, k
            names.append(name)

    seen_ids: dict[str, int] = {}
    for k, df in enumerate(indexes):
        for sid in df["sample_id"].astype(str):
            if sid in seen_ids:
                where = (f"inputs {seen_ids[sid]} and {k}" if seen_ids[sid] != k
                         else f"input {k} (twice)")
                raise ValueError(f"combine: sample_id {sid!r} appears in {where}; sample ids "
                                 "must be unique")
            seen_ids[sid] = k

    optional = [c for df in indexes for c in df.columns if c not in INDEX_COLUMNS]
    optional = list(dict.fromkeys(optional))
    frames = []
    for df in indexes:
        df = df.copy()
        df.attrs = {}
        for c in optional:
            if c not in df.columns:
                df[c] = ""
        frames.append(df[INDEX_COLUMNS + optional])
    out = pd.concat(frames, ignore_index=True)
    out["apex"] = out["apex"].astype("Int64")

    datasets_of = out.groupby(out["subject"].astype(str))["dataset"].unique()
    for subject, ds in datasets_of.items():
        if len(ds) > 1:
            raise ValueError(f"combine: subject {subject!r} appears in datasets {ds[0]!r} and "
                             f"{ds[1]!r}; subject ids must be distinct across datasets "
                             "(sub01, samm006, s01) or LOSO would mix two people")

    out.attrs = {"dataset": "composite", "datasets": names, "parts": parts,
                 "excluded": [e for df in indexes for e in df.attrs.get("excluded", [])],
                 "aligned": all(bool(a.get("aligned", False)) for a in parts.values()),
                 "apex_annotated": all(bool(a.get("apex_annotated", True))
                                       for a in parts.values())}
    return out


def _name_of(df: pd.DataFrame, k: int) -> str:
    """The dataset name of one input: its attrs, else its single ``dataset`` value."""
    name = df.attrs.get("dataset")
    values = sorted(set(df["dataset"].astype(str)))
    if name and name != "composite":
        return str(name)
    if len(values) == 1:
        return values[0]
    raise ValueError(f"combine: input {k} holds datasets {', '.join(values) or '(none)'} "
                     "without attrs['parts']; pass one index per dataset")


# ---------------------------------------------------------------------------------------------
# The official list
# ---------------------------------------------------------------------------------------------

def read_clip_list(path: str | Path, labels: Sequence[str]) -> list[ListRow]:
    """Parse the official composite list (headerless CSV ``dataset,subject,clip,label``).

    CRLF or LF line ends, a UTF-8 byte-order mark, blank lines (a trailing one) and a header
    line ``dataset,subject,clip,label`` are accepted. Values are trimmed; dataset and label are
    read case-insensitively (``CASME2``, ``SMIC``, ``Negative``). Subjects: CASME II ``sub01`` /
    ``01`` / ``1`` -> ``sub01``; SAMM ``6`` -> ``samm006``; SMIC ``s1`` / ``s01`` -> ``s01``.
    SMIC clips are padded like the SMIC index's ``clip`` (``s1_ne_01`` -> ``s01_ne_01``).

    Args:
        path: the list file.
        labels: the protocol's classes (a row's label must be one of them).

    Returns:
        The rows in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a row with the wrong number of fields, an unknown dataset, a subject of the
            wrong form, an unknown label, or a clip listed twice; the message names the file,
            the line and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: composite clip list not found")
    known = {lab.lower(): lab for lab in labels}
    rows, first_line = [], {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for number, fields in enumerate(csv.reader(f), start=1):
            fields = [v.strip() for v in fields]
            if not any(fields):
                continue
            where = f"{path}, line {number}"
            if number == 1 and [v.lower() for v in fields] == list(LIST_FIELDS):
                continue   # a header line
            if len(fields) != len(LIST_FIELDS):
                raise ValueError(f"{where}: expected {len(LIST_FIELDS)} fields "
                                 f"({','.join(LIST_FIELDS)}), got {len(fields)}: "
                                 f"{','.join(fields)!r}")
            dataset, subject, clip, label = fields
            dataset = dataset.lower()
            if dataset not in LIST_DATASETS:
                raise ValueError(f"{where}: unknown dataset {fields[0]!r}; expected one of "
                                 f"{', '.join(LIST_DATASETS)} (any case)")
            if label.lower() not in known:
                raise ValueError(f"{where}: unknown label {label!r}; expected one of "
                                 f"{', '.join(labels)} (any case)")
            if not clip:
                raise ValueError(f"{where}: empty clip; expected e.g. EP02_01f, 006_1_2 or "
                                 "s01_ne_01")
            row = ListRow(number, dataset, _subject(dataset, subject, where),
                          _clip(dataset, clip), known[label.lower()])
            key = _key(row.dataset, row.subject, row.clip)
            if key in first_line:
                raise ValueError(f"{where}: clip {dataset}/{row.subject}/{clip} is already "
                                 f"listed on line {first_line[key]}; expected each clip once")
            first_line[key] = number
            rows.append(row)
    return rows


def _subject(dataset: str, text: str, where: str) -> str:
    pattern, spelling, example = _SUBJECTS[dataset]
    m = re.fullmatch(pattern, text, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"{where}: subject {text!r} is not a {dataset} subject; expected e.g. "
                         f"{example}")
    return spelling.format(int(m.group(1)))


def _clip(dataset: str, text: str) -> str:
    """The index's spelling of a listed clip (SMIC: the subject part padded)."""
    if dataset == "smic":
        m = re.match(r"s0*(\d+)(_.*)$", text, flags=re.IGNORECASE)
        if m:
            return f"s{int(m.group(1)):02d}{m.group(2)}"
    return text


def _key(dataset: str, subject: str, clip: str) -> tuple[str, str, str]:
    return dataset, subject, clip.lower()


def _list_name(dataset: str) -> str | None:
    """The list's name of an index dataset (``synthetic`` -> ``casme2``), None if not listed."""
    return next((k for k, v in LIST_DATASETS.items() if dataset in v), None)


def apply_clip_list(index: pd.DataFrame, path: str | Path, labels: Sequence[str],
                    sheet_labels: Sequence[str | None], sheet_reasons: Sequence[str | None]):
    """Decide every clip of ``index`` by the official list (the list half of ``apply_protocol``).

    A clip is kept when the list names it, with the list's label. Disagreements with the sheets
    are reported, never silent: a listed clip with no index row (no sheet row of its own, e.g.
    a SMIC-E second segment; or excluded before, e.g. missing frames), a label that differs
    from what the protocol makes of the sheet's emotion (also a listed clip the protocol drops),
    and a clip the protocol keeps that the list does not name (excluded).

    Args:
        index: the index (one dataset or a :func:`combine` result).
        path: the list file (:func:`read_clip_list`).
        labels: the protocol's classes.
        sheet_labels: per row of ``index``, the class the protocol gives it from the sheet, or
            None when the protocol drops it.
        sheet_reasons: per row, why the protocol drops it (None when kept).

    Returns:
        (labels per row, None = dropped; exclusion records ``{"sample_id", "reason"}`` in row
        order; report records ``{"sample_id", "line", "what"}``, ``line`` being the list's line
        or None).

    Raises:
        ValueError: everything :func:`read_clip_list` raises; two index rows with one list key.
    """
    rows = read_clip_list(path, labels)
    records = index[["sample_id", "dataset", "subject", "clip", "emotion"]].astype(str) \
        .to_dict("records")
    by_key, present = {}, {}
    for pos, r in enumerate(records):
        name = _list_name(r["dataset"])
        if name is None:
            continue
        present.setdefault(name, r["dataset"])
        key = _key(name, r["subject"], r["clip"])
        if key in by_key:
            raise ValueError(f"{path}: index rows {records[by_key[key]]['sample_id']} and "
                             f"{r['sample_id']} are the same list clip; expected one row each")
        by_key[key] = pos
    before = {e["sample_id"]: e["reason"] for e in index.attrs.get("excluded", [])}
    segments = _segments(index)

    report, listed, unused = [], {}, Counter()
    for row in rows:
        if row.dataset not in present:
            unused[row.dataset] += 1
            continue
        pos = by_key.get(_key(row.dataset, row.subject, row.clip))
        if pos is not None:
            listed[pos] = row
            continue
        sid = f"{present[row.dataset]}/{row.subject}/{row.clip}"
        if sid in before:
            what = f"listed, but its sheet row was excluded before the protocol: {before[sid]}"
        else:
            what = "listed, no sheet row of its own" + _segment_hint(row, segments)
        report.append({"sample_id": sid, "line": row.line, "what": what + "; not kept"})
    for name, n in unused.items():
        report.append({"sample_id": "", "line": None,
                       "what": f"{n} listed {name} clip(s) unused: the index holds no "
                               f"{'/'.join(LIST_DATASETS[name])} dataset"})

    out_labels, dropped = [], []
    for pos, r in enumerate(records):
        row, sheet = listed.get(pos), sheet_labels[pos]
        if row is None:
            out_labels.append(None)
            if sheet is None:
                dropped.append({"sample_id": r["sample_id"], "reason": sheet_reasons[pos]})
                continue
            dropped.append({"sample_id": r["sample_id"], "reason":
                            f"not in the composite list ({Path(path).name})"})
            report.append({"sample_id": r["sample_id"], "line": None,
                           "what": f"not in the composite list (the sheet's emotion "
                                   f"{r['emotion']} gives {sheet}); excluded"})
            continue
        out_labels.append(row.label)
        if sheet != row.label:
            said = sheet if sheet is not None else f"nothing: {sheet_reasons[pos]}"
            report.append({"sample_id": r["sample_id"], "line": row.line,
                           "what": f"label {row.label} in the list, but the sheet's emotion "
                                   f"{r['emotion']} gives {said}; the list's label is used"})
    return out_labels, dropped, report


def _segments(index: pd.DataFrame) -> list[dict]:
    """The extra segments of sheet rows (SMIC-E ``attrs["segments"]``), also of a composite's
    parts."""
    found = list(index.attrs.get("segments", []))
    for attrs in (index.attrs.get("parts") or {}).values():
        found += [s for s in attrs.get("segments", []) if s not in found]
    return found


def _segment_hint(row: ListRow, segments: list[dict]) -> str:
    """Name the same subject's extra segments: the listed clip may be one of them."""
    mine = [s for s in segments if str(s.get("sample_id", "")).split("/")[1:2] == [row.subject]]
    if not mine:
        return ""
    token = row.clip.split("_")[1:2]
    same = [s for s in mine if s["sample_id"].split("/")[-1].split("_")[1:2] == token] or mine
    shown = ", ".join(f"{s['sample_id']} segment {s['segment']} (frames {s['onset']}.."
                      f"{s['offset']})" for s in same)
    return (f" (the sheet records extra segment(s) of other rows of {row.subject}: {shown}; "
            "it may be one of them, which the index does not hold as a clip)")


def list_report(df: pd.DataFrame) -> pd.DataFrame:
    """The disagreements between the composite list and the sheets (``attrs["list_report"]``),
    columns ``sample_id``, ``line`` (nullable Int64: NA when the record is not about a list
    line), ``what``; empty without a list."""
    out = pd.DataFrame(list(df.attrs.get("list_report", [])),
                       columns=["sample_id", "line", "what"])
    out["line"] = out["line"].astype("Int64")
    return out
