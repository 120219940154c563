"""Sample index of CASME II, SAMM, SMIC-E, CAS(ME)^3 Part A and the synthetic CASME-II-shaped set.

One row per clip, read from the official coding sheet (:mod:`mer_core.sheets`) and checked
against the frames on disk (:mod:`mer_core.images`):

* :func:`load_index` reads a dataset (``synthetic``, ``casme2``, ``samm``, ``smic`` or
  ``casme3``, whose sheets :mod:`mer_core.smic` and :mod:`mer_core.casme3` parse; or a prepared
  ``apex_images`` set, :mod:`mer_core.apex_images`) into the index
  DataFrame (columns :data:`mer_core.handover.INDEX_COLUMNS`); :func:`casme2_layout` finds the
  CASME II frame folder.
* :func:`combine` stacks several datasets' indexes (the MEGC 2019 composite; subjects stay
  distinct) and :func:`dataset_of` names a sample id's dataset (both from
  :mod:`mer_core.composite`).
* :func:`apply_protocol` keeps the clips of a class protocol and adds ``label``; with
  ``clips=`` the official composite list is the clip and label source, checked against the sheets.
* :func:`loso_folds` gives the leave-one-subject-out splits.
* :func:`build_index` is the ``data`` stage: generate (synthetic), load, apply the protocol and
  write ``data/index.csv``, ``data/excluded.csv`` and ``data/dataset.json``.

Decisions shared by every stage:

* ``frames_dir`` is as absolute or relative as the ``root`` it came from: a relative root (the
  default ``data/synthetic``) gives paths relative to the project, so ``data/index.csv`` and
  ``dvc.lock`` do not depend on where the project is cloned; every stage runs from the project root.
* ``onset``, ``apex`` and ``offset`` are the numbers in the image names
  (:func:`mer_core.images.frame_numbers`), never positions.
* Nothing is dropped silently: every clip left out (missing frames with ``strict=False``, or not
  in the protocol) is listed with its reason in ``df.attrs["excluded"]`` (records
  ``{"sample_id", "reason"}``); :func:`excluded` returns them as a DataFrame and
  :func:`exclusion_summary` counts them. :func:`apply_protocol` carries the exclusions of its
  input forward, so its result lists every clip lost since the sheet.
* ``df.attrs`` also holds ``dataset``, ``root``, ``sheet``, ``layout``, ``aligned`` (True for
  the aligned CASME II ``Cropped`` release and the synthetic set: frames are already face crops)
  and ``apex_annotated`` (False for SMIC-E, which has no apex column).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mer_core import apex_images, casme3, composite, handover, smic, vocab
from mer_core.composite import combine, dataset_of  # noqa: F401  (the datasets API)
from mer_core.handover import INDEX_COLUMNS
from mer_core.images import FRAME_NUMBER, decodes, frame_paths, image_problem
from mer_core.sheets import (CASME2_SHEET_GLOB, SAMM_SHEET_NAME, SAMM_WORKSHEET, parse_rows,
                             read_sheet, resolve_sheet)

logger = logging.getLogger(__name__)


SAMM_IMAGE_PATTERN = "{subject}_{frame:05d}.jpg"
#: CASME II frame folders, in order of preference for ``layout="auto"``: the aligned release
#: first (face crops registered to a template, so no face detection is needed downstream).
CASME2_LAYOUTS = {"cropped": ("Cropped", True), "raw": ("CASME2_RAW_selected", False)}


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
            ``"casme2"``, ``"samm"``, ``"smic"`` (SMIC-E, one band; :mod:`mer_core.smic`),
            ``"casme3"`` (CAS(ME)^3 Part A; its decisions are in :mod:`mer_core.casme3`) or
            ``"apex_images"`` (a prepared set: one face image per clip and a label list; its
            decisions are in :mod:`mer_core.apex_images`).
        root: the dataset root folder (``apex_images``: the folder of images).
        **options:
            labels (str | Path): ``apex_images`` only, and required there (``sheet`` is
                accepted as its synonym, so the data stage's ``data.sheet`` names it): the
                label list, ``dataset,subject,clip,label`` (the MEGC composite CSV,
                headerless) or ``subject,clip,label`` (header optional). A relative path is
                tried against the working directory, then ``root``. ``apex_images`` takes only
                ``labels``/``sheet``, ``strict`` and ``validate_frames``.
            sheet (str | Path | None): the coding sheet; default: the official name under
                ``root`` (``CASME2-coding-*.xlsx`` / ``SAMM_Micro_FACS_Codes_v2.xlsx`` /
                ``SMIC-HS-E_annotation.xlsx`` / ``cas(me)3_part_A_ME_label_JpgIndex*.xlsx``),
                also one folder below. A relative path is tried against the working directory,
                then ``root``.
            worksheet (str | None): default ``Sheet1`` (else the first one) for CASME II,
                ``MICRO_ONLY`` for SAMM, the band (``HS`` / ``VIS``) for SMIC-E, ``label`` for
                CAS(ME)^3.
            strict (bool): default True: a clip with missing frames (SMIC-E: also a sheet row
                whose onset/offset is not a frame number) is an error; False: it is dropped
                and listed in ``attrs["excluded"]``. CAS(ME)^3: a sheet row with offset 0 or
                onset after offset is always excluded and listed (the official sheet has them).
                ``apex_images``: a listed clip without an image (or with an unreadable one)
                is an error naming it and its line, or with False excluded with the reason.
            validate_frames (bool): default True: check that frames onset..offset exist, are
                whole (:func:`mer_core.images.image_problem`) and decode. ``apex_images``:
                that every matched image is whole and decodes (names are matched either way).
            layout (str): CASME II / synthetic only; see :func:`casme2_layout` (default
                ``"auto"``: ``Cropped`` preferred over ``CASME2_RAW_selected``).
            image_pattern (str): SAMM: frame file name inside
                ``<root>/<subject>/<Filename>/``, default ``"{subject}_{frame:05d}.jpg"``
                (fields ``subject`` = sheet code such as ``006``, ``frame``, ``filename``).
                SMIC-E: unchecked by default (any ``image<N>.bmp``); when given, e.g.
                ``"image{frame:07d}.bmp"``, every frame must be named so (``subject`` =
                ``s01``, ``filename`` = the sheet's name).
            band (str): SMIC-E only: ``"HS"`` (default, 100 fps) or ``"VIS"`` (25 fps).
            folder_pattern (str | list[str]): SMIC-E only: the clip folder below ``root``, or
                several tried in order; default :data:`mer_core.smic.FOLDER_PATTERNS`
                (``<band>/<subject>/`` with the sheet's name or the padded key, with ``s01``
                or ``s1``, then ``<subject>/``); fields ``band``, ``subject`` (``s01``),
                ``subject_no``, ``filename`` (``s1_ne_01``), ``clip`` (``s01_ne_01``).

                CAS(ME)^3: the frame file below ``root``, default
                ``"{subject}/{task}/color/{frame}.jpg"`` (fields ``subject`` = sheet code such
                as ``spNO.1``, ``task`` = lower-cased Filename, ``filename``, ``frame``).

    Returns:
        DataFrame with :data:`mer_core.handover.INDEX_COLUMNS` (+ ``objective_class`` when the
        sheet has it, + ``clip_on_disk`` for SMIC-E: the sheet's unpadded name, while ``clip``
        is the padded MEGC key), in sheet order, index 0..n-1. ``onset``/``offset`` are int64,
        ``apex`` is nullable Int64 (NA when missing or outside onset..offset; ``apex_note``
        says why, else ``""``), ``frames_dir`` is absolute. ``attrs``: dataset, root, sheet,
        layout, aligned, apex_annotated (False for SMIC-E: ``apex`` is NA, ``apex_note`` "not
        annotated"), excluded (records ``{"sample_id", "reason"}``; see :func:`excluded`).
        SMIC-E adds band, fps, flags
        (``{"sample_id", "what"}``: garbage extra segments, file names disagreeing with the
        Emotion cell) and segments (valid 2nd/3rd segments of a row, not clips).
        CAS(ME)^3 adds ``subject_codes`` (``spNO001`` -> ``spNO.1``).
        ``apex_images``: ``onset = apex = offset = 0`` (the clip is the image; its name's digits
        are no frame number), ``apex_note`` "single prepared apex image", ``dataset``
        ``apex_images``, + ``source_dataset`` (the list's dataset, ``""`` for three columns)
        and ``image`` (absolute path); attrs ``sheet`` and ``labels_file`` (the list),
        ``single_frame`` True, ``apex_annotated`` True, ``aligned`` False,
        ``unmatched_images`` (absolute paths of images no line names).

    Raises:
        ValueError: unknown dataset name or option (``apex_images``: no ``labels``).
        FileNotFoundError: missing root, sheet or (strict) frames (``apex_images``: label list,
            or an image of a listed clip).
        mer_core.apex_images.ListError: a label list line of the wrong shape, a repeated clip,
            two images for one clip (names the file and the line).
        mer_core.sheets.SheetError: missing columns, non-numeric onset/offset, onset > offset,
            duplicate (subject, filename) keys (CAS(ME)^3: (subject, task, onset); SMIC-E: also
            a formula without a cached value; with strict=False such a SMIC-E row is skipped
            and listed in ``excluded``); the message names the file and the sheet row.
    """
    if name not in vocab.DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(vocab.DATASETS)}")
    known = {"sheet", "worksheet", "strict", "validate_frames", "layout", "image_pattern",
             "band", "folder_pattern", "labels"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"load_index: unknown option(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(known))}")
    if name == "apex_images":
        return _load_apex_images(root, options)
    if "labels" in options:
        raise ValueError("load_index: option 'labels' is for apex_images only")
    if name in ("samm", "smic", "casme3") and "layout" in options:
        raise ValueError(f"load_index: option 'layout' is for CASME II; {name} uses "
                         + ("folder_pattern" if name == "smic" else "image_pattern"))
    if name not in ("samm", "smic", "casme3") and "image_pattern" in options:
        raise ValueError("load_index: option 'image_pattern' is for SAMM, SMIC-E and CAS(ME)^3 "
                         "only")
    if name != "smic" and {"band", "folder_pattern"} & set(options):
        raise ValueError("load_index: options 'band' and 'folder_pattern' are for SMIC-E only")
    root = Path(os.path.normpath(Path(root).expanduser()))
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {name} dataset root not found")
    strict = bool(options.get("strict", True))
    validate = bool(options.get("validate_frames", True))
    extra = {"apex_annotated": True, "excluded": []}

    if name == "smic":
        records, extra = smic.read_records(
            root, **{k: options[k] for k in ("band", "sheet", "worksheet", "folder_pattern")
                     if k in options}, strict=strict)
        sheet, ws, layout, aligned = extra.pop("sheet"), extra.pop("worksheet"), \
            extra.pop("layout"), False
        if options.get("image_pattern"):
            _check_pattern(options["image_pattern"])
            for r in records:
                r["expected"] = lambda n, r=r, p=options["image_pattern"]: p.format(
                    subject=r["subject"], frame=n, filename=r["clip_on_disk"])
    elif name == "casme3":
        records, extra["excluded"], sheet, ws, codes = casme3.read(root, name, options, strict)
        layout, aligned, extra["subject_codes"] = "casme3", False, codes
    elif name == "samm":
        sheet = resolve_sheet(root, options.get("sheet"), SAMM_SHEET_NAME)
        rows, ws = read_sheet(sheet, options.get("worksheet") or SAMM_WORKSHEET, "samm")
        records = parse_rows(rows, sheet, "samm")
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
        sheet = resolve_sheet(root, options.get("sheet"), CASME2_SHEET_GLOB)
        rows, ws = read_sheet(sheet, options.get("worksheet"), "casme2")
        records = parse_rows(rows, sheet, "casme2")
        folder, layout, aligned = casme2_layout(root, options.get("layout", "auto"))
        for r in records:
            r["subject"] = f"sub{r['subject_no']:02d}"
            r["frames_dir"] = str(folder / r["subject"] / r["clip"])
        if name == "synthetic":
            aligned = True  # generated frames are face crops by construction

    for r in records:
        r["dataset"] = name
        r["sample_id"] = f"{name}/{r['subject']}/{r['clip']}"

    dropped = extra.pop("excluded")
    if validate:
        records, missing = _validate_frames(records, strict, sheet)
        dropped += missing

    df = _to_frame(records)
    df.attrs.update({"dataset": name, "root": str(root), "sheet": str(sheet),
                     "worksheet": ws, "layout": layout, "aligned": bool(aligned),
                     "excluded": dropped, **extra})
    logger.info("%s: %d clips from %s (%d excluded)", name, len(df), sheet.name, len(dropped))
    return df


def _load_apex_images(root, options: dict) -> pd.DataFrame:
    """The ``apex_images`` branch of :func:`load_index` (reader: :mod:`mer_core.apex_images`)."""
    name = apex_images.NAME
    wrong = sorted(set(options) - {"labels", "sheet", "strict", "validate_frames"})
    if wrong:
        raise ValueError(f"load_index: option(s) {', '.join(wrong)} do not apply to {name} "
                         "(valid: labels (or sheet), strict, validate_frames)")
    if options.get("labels") and options.get("sheet") and \
            Path(options["labels"]) != Path(options["sheet"]):
        raise ValueError(f"load_index: {name} takes one label list; got labels="
                         f"{options['labels']!r} and sheet={options['sheet']!r}")
    root = Path(os.path.normpath(Path(root).expanduser()))
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {name} image folder not found")
    records, dropped, labels, unmatched = apex_images.read(
        root, options.get("labels") or options.get("sheet"),
        strict=bool(options.get("strict", True)),
        validate=bool(options.get("validate_frames", True)))
    df = _to_frame(records)
    for column in ("source_dataset", "image"):
        df[column] = pd.Series([r[column] for r in records], dtype="str")
    df.attrs.update({"dataset": name, "root": str(root), "sheet": str(labels),
                     "labels_file": str(labels), "worksheet": None, "layout": name,
                     "aligned": False, "apex_annotated": True, "single_frame": True,
                     "excluded": dropped, "unmatched_images": unmatched})
    logger.info("%s: %d clips from %s (%d excluded, %d images without a line)", name, len(df),
                labels.name, len(dropped), len(unmatched))
    return df


def _check_pattern(pattern: str) -> None:
    try:
        sample = pattern.format(subject="006", frame=12345, filename="006_1_2")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"image_pattern {pattern!r}: cannot format it ({e}); fields are "
                         "subject, frame, filename") from None
    m = FRAME_NUMBER.search(Path(sample).stem)
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
    extra = [c for c in ("objective_class", "clip_on_disk") if records and c in records[0]]
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

def apply_protocol(index: pd.DataFrame, protocol: str,
                   clips: str | Path | None = None) -> pd.DataFrame:
    """Keep the clips of ``protocol`` and add its class name as ``label``.

    Without ``clips`` the sheet decides: each row's emotion is mapped to a class (the map is
    chosen per row by ``dataset``) and the protocol's ``drop_clips`` are left out (megc2019-3class
    drops CASME II sub04/EP12_01f and sub05/EP09_05f, as the MEGC 2019 composite does).

    With ``clips`` (the official MEGC 2019 composite list, a headerless CSV
    ``dataset,subject,clip,label``; :func:`mer_core.composite.read_clip_list`) the list is the
    clip and label source, checked against the sheets (:func:`mer_core.composite.apply_clip_list`):
    a listed clip that the index holds is kept with the list's label; every disagreement is
    recorded in ``attrs["list_report"]`` (records ``{"sample_id", "line", "what"}``, ``line`` =
    the list's line or None; :func:`mer_core.composite.list_report`): a listed clip with no
    sheet row of its own (a SMIC-E second segment is named when ``attrs["segments"]`` holds
    it) or excluded before (missing frames), a label differing from the sheet's (the list's
    wins), a clip of the protocol not in the list (excluded, reason "not in the composite
    list"). Listed rows of a dataset the index does not hold are counted, not reported one by
    one, so one list serves each dataset and the stack.

    Args:
        index: a :func:`load_index` result, or several datasets stacked with :func:`combine`.
        protocol: a :data:`mer_core.vocab.PROTOCOLS` name (``casme2-5class``,
            ``casme2-7class``, ``megc2019-3class``, ``casme3-7class``, ``casme3-4class``).
        clips: the official clip list (path), or None.

    Returns:
        The kept rows (index reset to 0..n-1, every input column kept, ``dataset`` included, so
        results can be grouped per dataset) with ``label``. ``attrs["excluded"]`` lists the
        input's exclusions followed by every clip this protocol (or list) drops, with the
        reason; with ``clips``, also ``attrs["clip_list"]`` (the path) and
        ``attrs["list_report"]``.

    Raises:
        ValueError: unknown protocol, a dataset the protocol does not cover (e.g.
            casme2-5class on SAMM or SMIC-E; the message lists the protocols that apply), an
            emotion the protocol does not know (a typo in the sheet is never dropped
            silently), or a malformed clip list (the file, the line and what was expected).
        FileNotFoundError: ``clips`` does not exist.
    """
    labels = vocab.protocol_labels(protocol)
    spec = vocab.PROTOCOLS[protocol]
    datasets = sorted(set(index["dataset"]))
    unfit = [d for d in datasets if d not in spec["maps"]]
    if unfit:
        fits = "; ".join(f"{d} has {', '.join(_protocols_of(d)) or 'none'}" for d in unfit)
        raise ValueError(f"protocol {protocol!r} does not apply to dataset(s) "
                         f"{', '.join(unfit)}; it covers {', '.join(spec['maps'])}; the "
                         f"protocols that apply: {fits}")
    sheet_label, sheet_reason, unknown = [], [], []
    for row in index.itertuples(index=False):
        mapping = spec["maps"][row.dataset]
        if (row.subject, row.clip) in spec["drop_clips"].get(row.dataset, set()):
            sheet_label.append(None)
            sheet_reason.append(f"on the MEGC 2019 exclusion list ({protocol})")
        elif row.emotion not in mapping:
            unknown.append(f"{row.sample_id} ({row.emotion!r})")
            sheet_label.append(None)
            sheet_reason.append(None)
        elif mapping[row.emotion] is None:
            sheet_label.append(None)
            sheet_reason.append(f"emotion {row.emotion} is not a class of {protocol}")
        else:
            sheet_label.append(mapping[row.emotion])
            sheet_reason.append(None)
    if unknown:
        known = sorted({e for d in datasets for e in spec["maps"][d]})
        raise ValueError(f"protocol {protocol!r}: {len(unknown)} clip(s) have an emotion it "
                         f"does not know: {', '.join(unknown[:5])}"
                         f"{' ...' if len(unknown) > 5 else ''}; known: {', '.join(known)}")
    extra = {}
    if clips is None:
        final = sheet_label
        dropped = [{"sample_id": sid, "reason": why}
                   for sid, lab, why in zip(index["sample_id"], sheet_label, sheet_reason)
                   if lab is None]
    else:
        final, dropped, report = composite.apply_clip_list(index, clips, labels, sheet_label,
                                                           sheet_reason)
        extra = {"clip_list": str(clips), "list_report": report}
    keep = np.asarray([lab is not None for lab in final], dtype=bool)
    out = index.loc[keep].reset_index(drop=True)
    out["label"] = pd.Series([lab for lab in final if lab is not None], dtype="str")
    assert set(out["label"]) <= set(labels)
    out.attrs = {**index.attrs, "protocol": protocol, "labels": labels,
                 "excluded": list(index.attrs.get("excluded", [])) + dropped, **extra}
    logger.info("%s: kept %d of %d clips; dropped %d%s", protocol, len(out), len(index),
                len(dropped), f"; {len(extra['list_report'])} list disagreement(s)"
                if extra else "")
    return out


def _protocols_of(dataset: str) -> list[str]:
    """The protocols with an emotion map for ``dataset``."""
    return [p for p, spec in vocab.PROTOCOLS.items() if dataset in spec["maps"]]


# ---------------------------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------------------------

def loso_folds(index: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-subject-out folds.

    Args:
        index: an index with a ``subject`` column (a :func:`combine` result too: its subject ids
            are distinct across datasets, so a fold holds one dataset's person).

    Returns:
        One ``(test_subject, train_rows, test_rows)`` per subject, sorted by subject name.
        The rows are **positions** (``index.iloc``, int64 arrays, ascending), which are also the
        rows of the ``data/frames`` arrays. A subject is never on both sides.

    Raises:
        ValueError: fewer than two subjects; a subject id under two datasets (an index stacked
            without :func:`combine`: two people would share a fold).
    """
    if "dataset" in index.columns:
        owners = index.groupby(index["subject"].astype(str))["dataset"].unique()
        shared = {s: d for s, d in owners.items() if len(d) > 1}
        if shared:
            s, d = next(iter(shared.items()))
            raise ValueError(f"LOSO: subject {s!r} appears in datasets {d[0]!r} and {d[1]!r} "
                             "(stack datasets with combine(), which keeps subjects distinct)")
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
    if cfg.dataset == "composite":
        kind = "MEGC 2019 composite" if cfg.protocol == "megc2019-3class" else "composite"
        part = f", subjects {','.join(subjects)}" if subjects else ""
        return f"{kind}{part} of " + " + ".join(
            _part_description(name, Path(cfg.root) / folder, cfg) for name, folder in cfg.part_list)
    if cfg.dataset == "synthetic":
        part = f", subjects {','.join(subjects)}" if subjects else ""
        return (f"synthetic CASME-II-shaped (seed {cfg.synthetic_seed}, amplitude "
                f"{cfg.synthetic_amplitude} px at 128 px, {cfg.synthetic_size} px frames{part})"
                " - NOT real CASME II")
    return _part_description(cfg.dataset, Path(cfg.root), cfg)


def _part_description(name: str, root: Path, cfg) -> str:
    if name == "synthetic":
        return (f"synthetic CASME-II-shaped (seed {cfg.synthetic_seed}, amplitude "
                f"{cfg.synthetic_amplitude} px) - NOT real CASME II")
    if name in vocab.STANDINS:
        real = {"samm": "SAMM", "smic": "SMIC-E (HS)"}[vocab.STANDINS[name]]
        return (f"synthetic {real.split()[0]}-shaped stand-in (seed {cfg.synthetic_seed}, "
                f"amplitude {cfg.synthetic_amplitude} px) - NOT real {real}")
    label = {"casme2": "CASME II", "samm": "SAMM", "smic": f"SMIC-E ({cfg.band})",
             "casme3": "CAS(ME)^3 Part A", "apex_images": "prepared apex images"}[name]
    return f"{label} ({root})"


def _generate(name: str, root: Path, cfg, subjects, progress: bool) -> None:
    """Write a synthetic dataset or stand-in (skipped when an identical one is there)."""
    from mer_core import synthetic, synthetic_standins

    make = {"synthetic": synthetic.generate, "synthetic_samm": synthetic_standins.generate_samm,
            "synthetic_smic": synthetic_standins.generate_smic}[name]
    make(root, seed=cfg.synthetic_seed, size=cfg.synthetic_size,
         amplitude=cfg.synthetic_amplitude, subjects=subjects or None, progress=progress)


def _own_subjects(name: str, subjects) -> list[str] | None:
    """The subjects of ``subjects`` (a subset over every part) that synthetic set ``name`` has."""
    if not subjects:
        return None
    pattern = {"synthetic": r"sub\d+", "synthetic_samm": r"samm\d+", "synthetic_smic": r"s\d+"}
    own = [s for s in subjects if pd.Series([s]).str.fullmatch(pattern[name]).iloc[0]]
    return own


def read_part(name: str, root: str | Path, cfg, subjects=None, progress: bool = True
              ) -> tuple[pd.DataFrame, dict]:
    """Generate (synthetic sets) and read one dataset of the data stage.

    Args:
        name: a :data:`mer_core.vocab.DATA_CHOICES` value other than ``composite``.
        root: its folder.
        cfg: the :class:`mer_core.config.DataConfig` (strict, sheet, band, labels, synthetic_*).
        subjects: synthetic sets only: generate this subset (None: all).
        progress: the generators' progress bars.

    Returns:
        (its index, before the protocol; its part record for ``dataset.json``: name, label
        (the table's column head), description, synthetic, fps, aligned, apex_annotated, root, sheet, layout).
    """
    root = Path(root)
    reader = vocab.STANDINS.get(name, name)
    if name == "synthetic" or name in vocab.STANDINS:
        _generate(name, root, cfg, subjects, progress)
    options = {"strict": cfg.strict}
    if cfg.sheet and cfg.dataset != "composite":
        options["sheet"] = cfg.sheet
    if reader == "smic":
        options["band"] = cfg.band
    if reader == apex_images.NAME:  # data.labels ("" = the one CSV under root)
        options.update(apex_images.load_options(cfg))
    index = load_index(reader, root, **options)
    # generated frames are face crops by construction (the stand-ins use SAMM's and SMIC's
    # layouts, whose readers say "raw frames")
    aligned = bool(index.attrs["aligned"]) or name in vocab.STANDINS
    fps = vocab.SMIC_BAND_FPS[cfg.band] if reader == "smic" else vocab.FPS[reader]
    label = vocab.DATASET_LABELS[reader]
    if name in vocab.STANDINS:
        label = f"{label}-shaped (synthetic)"
    elif reader == "smic":
        label = f"{label} {cfg.band}"
    return index, {
        "name": name, "label": label, "description": _part_description(name, root, cfg),
        "synthetic": name == "synthetic" or name in vocab.STANDINS, "fps": fps,
        "aligned": aligned, "apex_annotated": bool(index.attrs.get("apex_annotated", True)),
        "root": index.attrs["root"], "sheet": index.attrs["sheet"],
        "layout": index.attrs["layout"]}


def build_index(cfg, out_dir: str | Path = "data", subjects=None, progress: bool = True):
    """The ``data`` stage: (generate,) load, apply the protocol, write the index files.

    Args:
        cfg: a :class:`mer_core.config.DataConfig`. ``dataset: composite`` reads every
            ``parts`` entry (``<dataset>=<folder under root>``) and stacks them
            (:func:`combine`); ``labels`` is then the official MEGC 2019 list, if given.
        out_dir: where ``index.csv``, ``excluded.csv`` and ``dataset.json`` go.
        subjects: synthetic sets only: generate this subset (e.g. ``["sub01", "samm006",
            "s01"]``: each synthetic part takes its own) for a quick run; None = all.
        progress: show the generator's progress bar.

    Returns:
        (index after the protocol, the ``dataset.json`` dict). ``dataset.json`` has ``parts``:
        the index's ``dataset`` value -> that dataset's record (:func:`read_part`), and at the
        top ``fps`` (the parts' common rate, else None: per clip from its part), ``aligned``
        and ``apex_annotated`` (True only when true of every part).

    Raises:
        ValueError: no clip is left (or none of a composite's part); ``subjects`` for a dataset
            that is not generated, or naming no subject of a synthetic part (or one of none);
            plus everything :func:`load_index` and
            :func:`apply_protocol` raise.
    """
    generated = ("synthetic", *vocab.STANDINS)
    names = [n for n, _ in cfg.part_list] if cfg.dataset == "composite" else [cfg.dataset]
    if subjects and not set(names) & set(generated):
        raise ValueError("build_index: subjects= only selects synthetic subjects")
    folders = ([Path(cfg.root) / f for _, f in cfg.part_list] if cfg.dataset == "composite"
               else [Path(cfg.root)])
    if subjects and cfg.dataset == "composite":
        claimed = {s for n in names if n in generated for s in _own_subjects(n, subjects)}
        if set(subjects) - claimed:
            raise ValueError(f"build_index: subjects {sorted(set(subjects) - claimed)} belong to "
                             "no synthetic part of data.parts (sub01, samm006, s01, ...)")
    indexes, parts = [], {}
    for name, folder in zip(names, folders):
        own = (_own_subjects(name, subjects) if cfg.dataset == "composite" else subjects) \
            if name in generated else None
        if subjects and name in generated and not own:
            raise ValueError(f"build_index: subjects {subjects} name none of part {name}'s "
                             "subjects; a subset names some of every synthetic part")
        index, part = read_part(name, folder, cfg, own, progress)
        indexes.append(index)
        parts[vocab.STANDINS.get(name, name)] = part
    index = combine(indexes) if cfg.dataset == "composite" else indexes[0]
    if not any(p["apex_annotated"] for p in parts.values()):
        # no annotated apex at all (SMIC-E): the apex stage caches no annotated strategy and
        # chooses no spotter per fold; the strategies that need one stop with the reason
        logger.warning("%s: no annotated apex: only the onset, middle, random and "
                       "spotted:<method> frame strategies apply", cfg.dataset)
    clip_list = cfg.labels or None if cfg.dataset == "composite" else None
    out = apply_protocol(index, cfg.protocol, clips=clip_list)
    ex = excluded(out)
    if out.empty:
        raise ValueError(f"{cfg.root}: no clip left after validation and protocol "
                         f"{cfg.protocol!r} ({len(ex)} excluded; see excluded(...))")
    for name, part in parts.items():
        kept = out[out["dataset"] == name]
        if kept.empty and len(parts) > 1:
            lost = ex[ex["sample_id"].str.startswith(f"{name}/")]["reason"].value_counts()
            raise ValueError(
                f"data.parts: part {part['name']} ({part['root']}) has no clip left after "
                f"validation and protocol {cfg.protocol!r}: " + ("; ".join(
                    f"{n} x {r}" for r, n in lost.head(3).items()) or "no clip in its sheet")
                + ". Fix or remove the part; a composite never loses a dataset silently.")
        part.update(n_clips=int(len(kept)), n_subjects=int(kept["subject"].nunique()))
    rates = {p["fps"] for p in parts.values()}
    info = {
        "dataset": cfg.dataset,
        "description": describe(cfg, subjects),
        "synthetic": any(p["synthetic"] for p in parts.values()),
        "protocol": cfg.protocol,
        "labels": vocab.protocol_labels(cfg.protocol),
        "fps": rates.pop() if len(rates) == 1 else None,
        "aligned": all(p["aligned"] for p in parts.values()),
        "apex_annotated": all(p["apex_annotated"] for p in parts.values()),
        "n_clips": int(len(out)),
        "n_excluded": int(len(ex)),
        "n_subjects": int(out["subject"].nunique()),
        "layout": out.attrs["layout"] if cfg.dataset != "composite" else "composite",
        "root": out.attrs["root"] if cfg.dataset != "composite" else str(cfg.root),
        "sheet": out.attrs["sheet"] if cfg.dataset != "composite" else "",
        "parts": parts,
        **apex_images.info_fields(out),  # single_frame: true for one image per clip
    }
    if clip_list:
        info["clip_list"] = str(clip_list)
        info["n_list_disagreements"] = int(len(out.attrs.get("list_report", [])))
    handover.write_index(out_dir, out, ex, info)
    summary = exclusion_summary(out)
    print(f"{info['description']}: {info['n_clips']} clips of {info['n_subjects']} subjects "
          f"({cfg.protocol}); {info['n_excluded']} excluded"
          + "".join(f"\n  {r.clips:4d}  {r.reason}" for r in summary.itertuples()))
    return out, info


