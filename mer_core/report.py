"""The text around the tables: the header of facts, the training cost, the README section.

Reads the run records (``results/<name>/run.json``, ``reports/leakage.csv``,
``reports/calibration.json``) and writes ``reports/results.md`` through
``notebooks/04_table4.ipynb``; the tables themselves are :mod:`mer_core.table4` and
:mod:`mer_core.table4_format`, the figures :mod:`mer_core.table4_figures`; the notebook reads the run records through
:func:`mer_core.handover.run_info`.

CLI: ``python -m mer_core.report readme [--readme README.md] [--results reports/results.md]``
copies ``reports/results.md`` between the README's results markers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from mer_core import io
from mer_core.table4_format import tables_markdown

NOTEBOOKS = ("00_data", "01_apex_extraction", "02_train_loso", "03_evaluate", "04_table4")
START, END = "<!-- results:start -->", "<!-- results:end -->"
PAPER_NOTE = ("The paper's own Table 4 numbers are not public (only its abstract is), so there "
              "is no paper column to copy: these rows reproduce the comparison, not its values.")


def header_lines(dataset: Mapping, train, n_boot: int, ci: float,
                 best_spotter: str | None = None, reference: str | None = None,
                 mcnemar_seed: int | None = None, n_subjects: int | None = None,
                 calibration: Mapping | None = None, machine: Sequence[str] = (),
                 n_tests: int | None = None, baselines=None, clip_frames: int | None = None,
                 best_baseline: str | None = None, motion: Mapping | None = None,
                 skipped_baselines: Mapping[str, str] | None = None) -> list[str]:
    """The facts every table is printed with (Markdown bullet lines), including how every
    choice the table depends on was made.

    Args:
        dataset: ``data/dataset.json`` content (description, synthetic, protocol, labels,
            n_clips, n_excluded; on a composite ``parts``, see :func:`composite_line`).
        train: ``config.TrainConfig`` (or a mapping with seeds/seed+n_seeds, epochs,
            image_size, lr, batch_size, schedule, optimizer, augment, pretrained).
        n_boot, ci: bootstrap settings (the intervals resample subjects).
        best_spotter: how the spotted apex was chosen per fold
            (:func:`mer_core.table4.spotter_summary`).
        reference: the experiment every row is compared with.
        mcnemar_seed: the seed McNemar was computed on.
        n_subjects: LOSO folds (= subjects resampled by the bootstrap).
        calibration: ``reports/calibration.json`` (``benchmarks/calibrate.py``), or None.
        machine: :func:`machine_lines` of the runs behind the table.
        n_tests: McNemar tests per table (Holm family), for the text.
        baselines: ``config.BaselinesConfig`` of the Baselines block (None: no line).
        clip_frames: frames of the LBP-TOP clip (``apex.clip_frames``).
        best_baseline: the baseline the deep rows' ΔUF1 column is taken against.
        motion: ``data/apex_report.json`` (its ``flow`` and ``diff`` records) when the tables
            have motion inputs (None: no line).
        skipped_baselines: baselines of ``params.yaml`` that this input cannot run, with the
            reason (:func:`mer_core.baselines.applicable`; None or empty: no line).

    A single-image set (``dataset["single_frame"]``) gets a line saying so (no sequence, no
    spotting).
    """
    def get(k, default=None):
        return train.get(k, default) if isinstance(train, Mapping) else getattr(train, k, default)

    seeds = get("seeds")
    if seeds is None:
        seeds = list(range(int(get("seed", 0)), int(get("seed", 0)) + int(get("n_seeds", 1))))
    pretrained = str(get("pretrained", "") or "")
    weights = ("random initialisation (no pretrained weights)" if not pretrained
               else f"initialised from `{pretrained}`")
    synthetic = bool(dataset.get("synthetic"))
    desc = dataset.get("description") or dataset.get("dataset", "unknown dataset")
    parts = dataset.get("parts") or {}
    real = [v.get("label") or v.get("name") or k for k, v in parts.items()
            if isinstance(v, Mapping) and not v.get("synthetic")]
    kind = ("**SYNTHETIC** data: these numbers are not " + _real_names(dataset)
            + " results and not the paper's" if synthetic
            else f"real data ({dataset.get('dataset', '?')})")
    if synthetic and real:
        kind = ("**partly SYNTHETIC** data: no number here is a result on real data, not even "
                f"in the {', '.join(real)} columns (every model was also trained on synthetic "
                "subjects)")
    folds = f", {n_subjects} folds" if n_subjects else ""
    subjects = f"the {n_subjects} test subjects" if n_subjects else "the test subjects"
    seed_text = (f"seeds {', '.join(map(str, seeds))} (cells: mean ± sd over seeds)"
                 if len(seeds) > 1 else f"seed {seeds[0]}")
    lines = [
        f"- **Dataset:** {desc} ({kind}).",
        f"- **Protocol:** {dataset.get('protocol', '?')}, classes "
        f"{', '.join(dataset.get('labels', []))}; {dataset.get('n_clips', '?')} clips "
        f"({dataset.get('n_excluded', 0)} excluded); leave-one-subject-out{folds}.",
        f"- **Training:** {seed_text}; " + (
            f"up to {get('epochs', '?')} epochs (the stopping epoch chosen per fold inside its "
            f"training subjects, never on a test subject)"
            if "epochs" in str(get("select") or "") else
            f"{get('epochs', '?')} epochs (fixed budget, no epoch chosen on any test subject)")
        + f"; input {get('image_size', '?')} px; {weights}.",
        recipe_line(train, calibration, synthetic),
        f"- **Metrics:** predictions of all folds pooled, then scored (MEGC convention): "
        f"accuracy in %, UF1 = macro F1, UAR = macro recall; [low, high] = {round(100 * ci)} % "
        f"percentile interval of a subject-level bootstrap ({n_boot} resamples of {subjects}, "
        f"each with all its clips: clips of one subject are not independent); Δ = paired "
        f"difference to the reference row with its interval from the same resamples; best "
        f"experiment value per column in bold.",
    ]
    composite = composite_line(dataset)
    if composite:
        lines.append(composite)
    if dataset.get("single_frame"):
        lines.append("- **Input:** one prepared face image per clip (no frame sequence): "
                     "nothing was spotted, and the only frames are the images themselves: the "
                     "apex image as supplied (the 'annotated' rows), whose apex choice this "
                     "project cannot check.")
    if reference:
        on = f" on seed {mcnemar_seed}" if mcnemar_seed is not None else ""
        family = (f" over each table's tests (Table 4: {n_tests})" if n_tests
                  else " over each table's tests")
        lines.append(f"- **Significance:** McNemar's exact test of each row against "
                     f"`{reference}`{on} (same clips), p Holm-adjusted{family}.")
    if baselines is not None and baselines.name_list:
        lines.append(baselines_line(baselines, clip_frames, best_baseline))
    if skipped_baselines:
        lines.append("- **Baselines not run:** " + "; ".join(
            f"`{n}`: {reason}" for n, reason in skipped_baselines.items()) + ".")
    if motion:
        lines.append(motion_line(motion))
    if best_spotter:
        smooth = ""
        if calibration and calibration.get("spotters"):
            smooth = (f"; the spotters' smoothing window ({calibration['spotters']['chosen_smooth']}"
                      f" frames) was chosen on the calibration population")
        lines.append(f"- **Spotted apex:** for each fold, the spotter with the lowest apex error "
                     f"on that fold's TRAINING subjects (never the test subject's annotation): "
                     f"{best_spotter}{smooth}.")
    lines += [f"- {m}" for m in machine]
    lines.append(f"- {PAPER_NOTE}")
    return lines


def _real_names(dataset: Mapping) -> str:
    """The real datasets a synthetic set stands in for: ``CASME II`` (the synthetic set), or
    each synthetic part's (``CASME II, SAMM or SMIC-E``)."""
    parts = dataset.get("parts") or {}
    names = [{"synthetic": "CASME II", "samm": "SAMM", "smic": "SMIC-E"}.get(k, k)
             for k, v in parts.items() if isinstance(v, Mapping) and v.get("synthetic")]
    names = names or ["CASME II"]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def composite_line(dataset: Mapping) -> str | None:
    """How a composite's scores were made (MEGC 2019), from ``data/dataset.json``'s ``parts``.

    Args:
        dataset: ``data/dataset.json`` content; ``parts``: dataset value -> ``{"name",
            "synthetic", "n_clips", "n_subjects", ...}`` (any of them may be missing).

    Returns:
        The bullet line, or None when ``parts`` is absent or names fewer than two datasets.
    """
    parts = dataset.get("parts") or {}
    if not isinstance(parts, Mapping) or len(parts) < 2:
        return None

    def part(key, info):
        info = info if isinstance(info, Mapping) else {}
        facts = [f"`{key}`"] + ["SYNTHETIC"] * bool(info.get("synthetic"))
        facts += [f"{info[k]} {w}" for k, w in (("n_clips", "clips"), ("n_subjects", "subjects"))
                  if info.get(k) is not None]
        return f"{info.get('label') or info.get('name') or key} ({', '.join(facts)})"

    return (f"- **Composite (MEGC 2019):** the Composite columns pool the predictions of all "
            f"parts' clips and score them once (the challenge's composite score); the columns "
            f"headed by a part's name score that part's clips alone, their intervals resampling "
            f"that part's subjects only (the Composite intervals resample all subjects "
            f"together, not stratified by part). Parts: "
            + "; ".join(part(k, v) for k, v in parts.items()) + ".")


def baselines_line(cfg, clip_frames: int | None, best: str | None) -> str:
    """How the Baselines block was made, generated from the ``baselines`` params section."""
    from mer_core.baselines import FEATURES, n_codes

    kinds = {"svm": "linear SVM", "logreg": "logistic regression"}
    inputs = {"clips": f"LBP-TOP of {clip_frames or '?'} frames evenly spaced over onset..offset "
                       f"({cfg.lbp_grid} x {cfg.lbp_grid} blocks, P = {cfg.lbp_points}, "
                       f"R = {cfg.lbp_radius} in x, y and t, {n_codes(cfg.lbp_points)} uniform "
                       "codes per plane)",
              "apex": f"{cfg.probe_size} px grey pixels of the apex frame (`{cfg.apex}`)",
              "apex-onset": f"{cfg.probe_size} px grey apex minus onset pixels"}
    rows = "; ".join(f"`{n}`: {inputs[FEATURES[n].needs]}, {kinds[FEATURES[n].kind]}"
                     for n in cfg.name_list)
    vs = (f" The ΔUF1-vs-best-baseline column compares each deep row with `{best}`, the "
          "baseline with the highest pooled UF1 on these same subjects (a choice made on the "
          "reported subjects, in the baselines' favour; the interval does not account for it)."
          if best else "")
    return (f"- **Baselines** (same LOSO folds): {rows}. Options fixed in advance "
            f"(`params.yaml`: `baselines`); features standardised on each fold's training clips, "
            f"classes balanced; C from {{{', '.join(f'{c:g}' for c in cfg.c_list)}}} chosen per fold by "
            f"{cfg.inner_folds}-fold group cross-validation over that fold's training subjects "
            f"(pooled inner UF1, ties to the smaller C), never on the test subject." + vs)


FLOW_METHODS = {"tvl1": "TV-L1 (OpenCV contrib `DualTVL1OpticalFlow`, default settings)",
                "farneback": "Farneback (OpenCV; this build has no TV-L1)"}


def motion_line(apex_report: Mapping) -> str:
    """How the motion inputs were made, from the apex stage's report (``flow``, ``diff``).

    Raises:
        ValueError: the report has no ``flow`` or ``diff`` record (names the key).
    """
    for key, field in (("flow", "scale_px"), ("diff", "gain")):
        if not isinstance(apex_report.get(key), Mapping) or field not in apex_report[key]:
            raise ValueError(f"apex report: no {key!r} record with {field!r} (rerun the apex "
                             "stage)")
    flow, diff = apex_report["flow"], apex_report["diff"]
    method = FLOW_METHODS.get(flow.get("method"), str(flow.get("method")))
    scale, gain = flow.get("scale_px"), diff.get("gain")
    return (f"- **Motion inputs** (Inputs table): computed once in the apex stage from the "
            f"onset crop and the apex crop of the same cached faces: the onset -> apex optical "
            f"flow by {method}, stored as an image (horizontal and vertical displacement "
            f"128 + 127 d / {scale:g} px, magnitude 255 |d| / {scale:g} px), and the apex - onset "
            f"difference (128 + {gain:g} x difference per RGB channel); fixed scales, the same "
            f"for every clip. Same network, loss, recipe and folds as the frame rows; a flipped "
            f"flow image has its horizontal displacement negated.")


RECIPE_KEYS = ("lr", "epochs", "image_size", "batch_size", "optimizer", "schedule", "augment",
               "weight_decay", "precision")


def recipe_line(train, calibration: Mapping | None, synthetic: bool) -> str:
    """How the training recipe was chosen, generated from ``reports/calibration.json`` and,
    with ``train.select``, from the nested cross-validation inside each fold's training
    subjects (:func:`nested_text`)."""
    def get(k):
        return train.get(k) if isinstance(train, Mapping) else getattr(train, k, None)

    selected = {w.strip() for w in str(get("select") or "").split(",") if w.strip()}
    recipe = ", ".join(f"{k} {get(k)}" for k in RECIPE_KEYS
                       if get(k) is not None and k not in selected)
    nested = nested_text(get("select") or "", get("lr_grid") or "", get("epochs"),
                         get("inner_folds"))
    if {"lr", "epochs"} <= selected:   # nothing of the calibration is used
        return (f"- **Recipe:** {recipe}.{nested} The other values (and the epoch ceiling and "
                f"learning-rate grid) were set in advance in `params.yaml` or the run's profile, "
                f"not tuned on these subjects.")
    if not calibration and nested:
        return (f"- **Recipe:** {recipe}.{nested} No calibration record "
                f"(`reports/calibration.json`) was found, so how the other values were chosen "
                f"is not documented here.")
    if not calibration:
        return (f"- **Recipe:** {recipe}; no calibration record (`reports/calibration.json`) "
                f"was found, so how it was chosen is not documented here.")
    pop = calibration["population"]
    chosen = calibration["recipe"]["chosen"]
    differs = [f"{k} {get(k)} (calibration chose {v})" for k, v in chosen.items()
               if k not in selected and get(k) is not None and float(get(k)) != float(v)]
    where = (f"a separate calibration population ({pop['description']}; seed "
             f"{pop['synthetic_seed']}, never reported) by `benchmarks/calibrate.py` "
             f"({calibration['date']}; `reports/calibration.md`)")
    text = (f"- **Recipe:** {recipe}.{nested} "
            + ("The epoch budget was" if "lr" in selected else
               "The learning rate was" if "epochs" in selected else
               "Learning rate and epochs were") + f" chosen on {where}")
    text += "; the other values were fixed before it (listed there)."
    if not synthetic:
        text += (" On this real dataset no " + ("other " if nested else "") + "value was tuned "
                 "on its subjects: the recipe is the synthetic calibration's.")
    if differs:
        text += " **This run departs from the calibrated recipe:** " + "; ".join(differs) + "."
    return text


def nested_text(select: str, lr_grid: str, epochs, inner_folds) -> str:
    """The sentence on what ``train.select`` chose per fold ("" when nothing was selected)."""
    what = [w.strip() for w in str(select).split(",") if w.strip()]
    if not what:
        return ""
    parts = {"lr": f"the learning rate (from {{{lr_grid}}})",
             "epochs": f"the stopping epoch (1..{epochs} of the full {epochs}-epoch schedule)"}
    chosen = " and ".join(parts[w] for w in ("lr", "epochs") if w in what)
    return (f" Per fold, {chosen} {'were' if len(what) > 1 else 'was'} chosen by "
            f"{inner_folds}-fold subject-grouped cross-validation over that fold's training "
            f"subjects (pooled inner UF1; ties to fewer epochs, then the smaller lr; "
            f"`selection.csv`), never on the test subject.")


def machine_lines(info: pd.DataFrame) -> list[str]:
    """Where the runs behind a table were made (device, CPU or GPU model, precision, threads
    per fold), from ``run.json``: one line when every experiment agrees."""
    cols = ["device", "device_name", "precision", "threads"]
    if info.empty or not set(cols) <= set(info.columns):
        return []
    known = info.dropna(subset=["device"])
    if known.empty:
        return []
    groups = known.groupby(cols, dropna=False)["experiment"].apply(list)
    out = []
    for (device, name, precision, threads), names in groups.items():
        who = "all experiments" if len(groups) == 1 else ", ".join(f"`{n}`" for n in names)
        t = ("threads unknown" if pd.isna(threads)
             else f"{int(threads)} thread{'s' * (int(threads) != 1)} per fold")
        name = "model unknown" if pd.isna(name) or not name else name
        out.append(f"**Run on:** {device} ({name}), {precision}, {t} "
                   f"({who}).")
    return out


# ----------------------------------------------------------------------------------------------
# README section
# ----------------------------------------------------------------------------------------------
def notebook_links(reports_dir: str | Path = "reports", relative_to: str | Path = ".") -> list[str]:
    """Markdown links to the rendered notebooks: the five stages' ``reports/<name>.html`` and
    any other ``*.html`` already in ``reports_dir`` (e.g. per-experiment training reports)."""
    reports_dir = Path(reports_dir)
    base = Path(relative_to)
    per_experiment = sorted(p.stem for p in reports_dir.glob("*.html") if p.stem not in NOTEBOOKS)
    # dvc.yaml renders 02_train_loso once per experiment (02_train_loso_<name>.html)
    names = [n for n in NOTEBOOKS if not (n == "02_train_loso" and any(
        e.startswith("02_train_loso_") for e in per_experiment))] + per_experiment
    links = []
    for n in names:
        target = Path(reports_dir / f"{n}.html")
        try:
            target = target.relative_to(base)
        except ValueError:
            pass
        links.append(f"[{n}]({target.as_posix()})")
    return links


def results_markdown(header: Sequence[str], tables: Mapping[str, pd.DataFrame],
                     figures: Sequence[tuple[str, str]] = (), measured: Sequence[str] = (),
                     links: Sequence[str] = (), extra: str = "") -> str:
    """The README results section (paths relative to the repository root)."""
    parts = ["*Generated by `notebooks/04_table4.ipynb` from `reports/`; do not edit by hand.*",
             "", *header, ""]
    if measured:
        parts += ["**Measured on this run:**", "", *measured, ""]
    parts.append(tables_markdown(tables, 3))
    if extra:
        parts += [extra, ""]
    for title, path in figures:
        parts += [f"![{title}]({path})", ""]
    if links:
        parts += ["Rendered notebooks: " + " · ".join(links), ""]
    return "\n".join(parts).rstrip() + "\n"


def leakage_note(leak: pd.DataFrame | None) -> str:
    """One sentence on the leakage check's inflation of every experiment, for the README.

    Args:
        leak: ``reports/leakage.csv`` (:func:`mer_core.handover.read_leakage`), or None.

    Returns:
        The sentence, or "" when there is no table or it has no inflation row.
    """
    if leak is None:
        return ""
    infl = leak[leak["protocol"].str.startswith("inflation")]
    if not len(infl):
        return ""
    return ("Leakage check (invalid protocol, not a result): choosing each fold's epoch on "
            "its own test subject would change pooled accuracy / UF1 by "
            + ", ".join(f"{100 * r.pooled_accuracy:+.1f} pp / {r.pooled_uf1:+.3f} "
                        f"(`{r.experiment}`)" for r in infl.itertuples())
            + "; see `reports/leakage.csv` and `reports/03_evaluate.html`.")

def write_readme_section(readme_path: str | Path, results_md: str) -> bool:
    """Replace the text between ``<!-- results:start -->`` and ``<!-- results:end -->``.

    Returns:
        True if the README changed (it is not rewritten when the section is already current).

    Raises:
        FileNotFoundError: no README.
        ValueError: a marker is missing, repeated or out of order.
    """
    path = Path(readme_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: README not found")
    text = path.read_text()
    for mark in (START, END):
        if text.count(mark) != 1:
            raise ValueError(f"{path}: expected the marker {mark!r} exactly once, found "
                             f"{text.count(mark)}")
    i, j = text.index(START), text.index(END)
    if j < i:
        raise ValueError(f"{path}: {END!r} comes before {START!r}")
    new = text[:i + len(START)] + "\n" + results_md.strip("\n") + "\n" + text[j:]
    if new == text:
        return False
    io.write_text(path, new)
    return True


# ----------------------------------------------------------------------------------------------
# Training cost
# ----------------------------------------------------------------------------------------------
def _given(r, key) -> bool:
    return r.get(key) is not None and not pd.isna(r.get(key))


def measured_lines(info: pd.DataFrame) -> list[str]:
    """Bullet lines of the per-experiment training cost (only what run.json had). With parallel
    fold workers the line leads with the elapsed time and gives the summed fold time after it."""
    lines, total, any_parallel = [], 0.0, False
    known = info[info["wall_s"].notna()]
    for _, r in known.iterrows():
        par = _given(r, "workers") and int(r["workers"]) > 1 and _given(r, "elapsed_s")
        extra = []
        if par:
            extra.append(f"{int(r['workers'])} fold workers in parallel, "
                         f"{r['wall_s'] / 60:.1f} min of fold time")
        if _given(r, "n_folds"):
            extra.append(f"{int(r['n_folds'])} folds")
        if _given(r, "mean_fold_s"):
            extra.append(f"{r['mean_fold_s']:.0f} s per fold")
        if _given(r, "train_images_per_s"):
            extra.append(f"{r['train_images_per_s']:.0f} training images/s"
                         + " per worker" * par)
        dev = " ".join(str(r[k]) for k in ("device", "precision") if _given(r, k))
        if dev and _given(r, "threads"):
            n = int(r["threads"])
            dev += f", {n} thread{'s' * (n != 1)}" + " each" * par
        if dev:
            extra.append(dev)
        took_s = float(r["elapsed_s"] if par else r["wall_s"])
        total += took_s
        any_parallel |= par
        tail = f" ({'; '.join(extra)})" if extra else ""
        lines.append(f"- `{r['experiment']}`: training {took_s / 60:.1f} min"
                     f"{' elapsed' * par}{tail}")
    if len(known) > 1:
        lines.append(f"- all experiments: {total / 60:.1f} min of training"
                     + " (elapsed)" * any_parallel)
    return lines


def baseline_cost_lines(info: pd.DataFrame) -> list[str]:
    """Bullet lines of what each baseline cost (``results/baselines/<name>/run.json``)."""
    return [f"- `{r['experiment']}` (baseline): {float(r['elapsed_s']):.0f} s "
            f"(features once, then the C search and fit of {int(r['n_folds'])} folds; one "
            "process)" for _, r in info.iterrows() if _given(r, "elapsed_s")
            and _given(r, "n_folds")]


# ----------------------------------------------------------------------------------------------
# Readers of the train stage's files
# ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mer_core.report",
                                     description="Report utilities of the MER companion.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("readme", help="copy reports/results.md into README.md between markers")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--results", default="reports/results.md")
    args = parser.parse_args(argv)
    if args.command == "readme":
        results = Path(args.results)
        if not results.is_file():
            print(f"{results}: not found (run notebooks/04_table4.ipynb first)", file=sys.stderr)
            return 1
        try:
            changed = write_readme_section(args.readme, results.read_text())
        except (ValueError, FileNotFoundError) as e:
            print(e, file=sys.stderr)
            return 1
        print(f"{args.readme}: results section {'updated' if changed else 'already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
