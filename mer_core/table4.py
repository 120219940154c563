"""Table 4 and its ablations as numbers, from ``reports/metrics.json`` and the predictions.

Table 4 of the paper compares frame strategies for SE-ResNeXt-50 + Focal Loss. Its numbers are
not public, so every table here is regenerated from this project's own predictions.

Tables (only rows whose experiments exist in ``metrics.json``):

* ``table4``: frame strategy (onset, middle, random, spotted apex, annotated apex) with
  ``seresnext50_32x4d`` + ``focal``;
* ``backbone``: ResNet-50, ResNeXt-50, SE-ResNet-50, SE-ResNeXt-50 on annotated apex + focal;
* ``loss``: cross-entropy, class-weighted CE, focal on annotated apex + SE-ResNeXt-50;
* ``inputs``: the annotated apex frame next to the motion inputs (apex - onset difference,
  onset -> apex optical flow; :data:`mer_core.vocab.MOTION`) with SE-ResNeXt-50 + focal;

each with a Baselines block (the classical baselines of :mod:`mer_core.baselines` in Table 4,
and the majority class everywhere) and McNemar's exact test against the reference experiment
(``params.yaml: evaluate.reference``), Holm-adjusted, the paired subject-bootstrap difference of
every row to it, and of every deep row to the strongest baseline. On a composite (MEGC 2019:
``metrics.json`` entries with a ``per_dataset`` block) every table also has UF1 and UAR per
dataset (columns ``uf1@<dataset>``, ``uar@<dataset>`` with their intervals) next to the composite
score. This module builds them as numbers (fractions);
:mod:`mer_core.table4_format` renders and writes them, :mod:`mer_core.report` writes the text
around them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mer_core import metrics, stats, vocab

_PAPER = (vocab.BACKBONES[vocab.PAPER_BACKBONE], vocab.LOSSES[vocab.PAPER_LOSS])
_REF = vocab.frame_label(vocab.REFERENCE_FRAMES).lower()
TABLE_TITLES = {
    "table4": f"Table 4: frame strategy ({_PAPER[0]} + {_PAPER[1]})",
    "inputs": f"Inputs beyond one frame ({_PAPER[0]} + {_PAPER[1]})",
    "backbone": f"Ablation: backbone ({_REF} + {_PAPER[1]})",
    "loss": f"Ablation: loss ({_REF} + {_PAPER[0]})",
}
METRIC_COLUMNS = (("accuracy", "Accuracy (%)"), ("uf1", "UF1"), ("uar", "UAR"))
#: The metrics a composite's tables give per dataset (MEGC 2019 reports UF1 and UAR).
DATASET_METRICS = (("uf1", "UF1"), ("uar", "UAR"))
#: Per dataset metric column ``m@dataset``, the columns ``m@dataset`` + suffix of a table
#: (its interval and seeds' sd).
_DATASET_SUFFIXES = ("_ci_low", "_ci_high", "_std")
#: Per metric m, the columns m + suffix of a table (intervals, seeds' sd, paired differences to
#: the reference and to the strongest baseline).
_SUFFIXES = ("_ci_low", "_ci_high", "_std", "_diff", "_diff_ci_low", "_diff_ci_high",
             "_diff_baseline", "_diff_baseline_ci_low", "_diff_baseline_ci_high")


# ----------------------------------------------------------------------------------------------
# Datasets of a composite
# ----------------------------------------------------------------------------------------------
def dataset_column(metric: str, dataset: str) -> str:
    """The numeric column of ``metric`` on ``dataset``'s clips: ``uf1@samm``."""
    return f"{metric}@{dataset}"


def dataset_order(metric_map: Mapping[str, Mapping], parts: Mapping | None = None) -> list[str]:
    """The datasets of ``metrics.json``'s ``per_dataset`` blocks, in the order of ``parts``
    (``data/dataset.json``), then in order of appearance; ``[]`` for one dataset."""
    found = list(dict.fromkeys(d for m in metric_map.values()
                               for d in (m.get("per_dataset") or {})))
    return [d for d in (parts or {}) if d in found] + [d for d in found if d not in (parts or {})]


def dataset_names(datasets: Sequence[str], parts: Mapping | None = None) -> dict[str, str]:
    """dataset -> its display name: ``parts[dataset]["label"]`` or ``["name"]``
    (``data/dataset.json``), else
    the dataset value itself."""
    return {d: str(((parts or {}).get(d) or {}).get("label")
                   or ((parts or {}).get(d) or {}).get("name") or d) for d in datasets}


def _dataset_cells(block: Mapping | None, datasets: Sequence[str]) -> dict:
    """A row's per-dataset cells (:func:`dataset_column` names) from a ``per_dataset`` block."""
    row = {}
    for d in datasets:
        scores = (block or {}).get(d) or {}
        for m, _ in DATASET_METRICS:
            col = dataset_column(m, d)
            row[col] = scores.get(m)
            for suffix in _DATASET_SUFFIXES:
                row[f"{col}{suffix}"] = scores.get(f"{m}{suffix}")
    return row


# ----------------------------------------------------------------------------------------------
# Row selection
# ----------------------------------------------------------------------------------------------
def spotter_summary(per_fold: Mapping[str, int] | None) -> str | None:
    """``{"frame_diff": 25, "lbp": 1}`` -> "frame_diff in 25, lbp in 1 of 26 folds"."""
    if not per_fold:
        return None
    total = sum(per_fold.values())
    parts = [f"{m} in {n}" for m, n in sorted(per_fold.items(), key=lambda x: (-x[1], x[0]))]
    return ", ".join(parts) + f" of {total} folds"


def _spec(metrics_or_spec, key):
    return metrics_or_spec[key] if isinstance(metrics_or_spec, Mapping) \
        else getattr(metrics_or_spec, key)


def select_rows(specs: Mapping, table: str, best_spotter: str | None = None
                ) -> list[tuple[str, str]]:
    """The (row label, experiment) pairs of one table, in display order.

    Args:
        specs: experiment -> object or mapping with ``frames``, ``backbone``, ``loss`` (the
            entries of ``metrics.json`` carry them; ``config.ExperimentConfig`` too).
        table: one of :data:`TABLE_TITLES` (``table4``, ``backbone``, ``loss``, ``inputs``).
        best_spotter: name shown for ``spotted:best``.
    """
    rows = []
    for name, s in specs.items():
        frames, backbone, loss = (_spec(s, k) for k in ("frames", "backbone", "loss"))
        paper_backbone, paper_loss = backbone == vocab.PAPER_BACKBONE, loss == vocab.PAPER_LOSS
        if table == "table4" and paper_backbone and paper_loss:
            kind = vocab.SPOTTED if vocab.spotter_of(frames) is not None else frames
            if kind in vocab.FRAME_ORDER:
                rows.append((vocab.FRAME_ORDER.index(kind), frames,
                             vocab.frame_label(frames, best_spotter), name))
        elif table == "backbone" and frames == vocab.REFERENCE_FRAMES and paper_loss \
                and backbone in vocab.BACKBONES:
            rows.append((list(vocab.BACKBONES).index(backbone), "", vocab.BACKBONES[backbone],
                         name))
        elif table == "loss" and frames == vocab.REFERENCE_FRAMES and paper_backbone \
                and loss in vocab.LOSSES:
            rows.append((list(vocab.LOSSES).index(loss), "", vocab.LOSSES[loss], name))
        elif table == "inputs" and paper_backbone and paper_loss and (
                frames == vocab.REFERENCE_FRAMES or vocab.motion_of(frames)[0] is not None):
            kind, apex = vocab.motion_of(frames)   # the frame, then its motion inputs
            order = (apex != vocab.REFERENCE_FRAMES) * len(vocab.MOTION) + \
                (0 if kind is None else 1 + list(vocab.MOTION).index(kind))
            rows.append((order, frames, vocab.frame_label(frames, best_spotter), name))
        elif table not in TABLE_TITLES:
            raise ValueError(f"unknown table {table!r}; expected one of {list(TABLE_TITLES)}")
    rows.sort(key=lambda r: (r[0], r[1], r[3]))
    return [(label, name) for _, _, label, name in rows]


# ----------------------------------------------------------------------------------------------
# Table assembly (numeric)
# ----------------------------------------------------------------------------------------------
def baseline_rows(metric_map: Mapping[str, Mapping]) -> list[tuple[str, str]]:
    """The (row label, baseline) pairs of ``metrics.json``, in :data:`mer_core.vocab.BASELINES`
    order."""
    names = [n for n, m in metric_map.items() if m.get("kind") == "baseline"]
    order = list(vocab.BASELINES)
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    return [(vocab.BASELINES.get(n, n), n) for n in names]


def reference_of(metric_map: Mapping[str, Mapping]) -> str:
    """The reference experiment that ``metrics.json``'s paired differences are taken against.

    Raises:
        ValueError: the entries name no reference, or different ones.
    """
    refs = {m.get("diff_reference") for m in metric_map.values()}
    if len(refs) != 1 or None in refs:
        raise ValueError(f"metrics.json: expected one diff_reference in every entry, got {refs} "
                         f"(rerun the evaluate stage)")
    ref = refs.pop()
    if ref not in metric_map:
        raise ValueError(f"metrics.json: the reference {ref!r} has no entry")
    return ref


def majority_row(y_true, labels: Sequence[str], n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0, sample_ids=None, subjects=None,
                 reference_pred: pd.DataFrame | None = None, reference: str | None = None) -> dict:
    """Numeric row of the majority-class reference, with subject-bootstrap intervals.

    Given ``subjects`` (aligned with ``y_true``), the intervals resample subjects, on the same
    resamples as :func:`mer_core.stats.subject_bootstrap` draws for the experiments (same
    seed, same subjects), and with ``reference_pred`` the row's paired difference to the
    reference experiment comes from those resamples too. Without subjects: clip bootstrap.
    ``sample_ids`` lets :func:`build_table` test the row against the reference with McNemar.
    With subjects and clips of several datasets, ``_per_dataset`` holds the row's per-dataset
    scores (:func:`mer_core.stats.per_dataset`; None otherwise), for :func:`build_table`."""
    base = metrics.majority_baseline(y_true, labels)
    row = {"row": f"Majority class (always '{base['majority_class']}')",
           "experiment": "majority_class", "frames": "", "backbone": "", "loss": "",
           "n": base["n"], "n_seeds": 1, "is_baseline": True}
    for m, _ in METRIC_COLUMNS:
        row[m] = base[m]
    if subjects is not None and sample_ids is not None:
        maj = pd.DataFrame({"sample_id": [str(x) for x in sample_ids],
                            "subject": [str(x) for x in subjects], "y_true": list(y_true),
                            "y_pred": base["y_pred"], "seed": 0})
        tables = {"majority_class": maj}
        if reference_pred is not None and reference is not None:
            tables[reference] = reference_pred
        boot = stats.subject_bootstrap(tables, labels, n=n_boot, ci=ci, seed=seed,
                                         reference=reference if len(tables) > 1 else None,
                                         metrics=[m for m, _ in METRIC_COLUMNS])
        row.update(boot["majority_class"])
        row["_per_dataset"] = stats.per_dataset(
            {"majority_class": maj}, labels, n=n_boot, ci=ci, seed=seed,
            metrics=[m for m, _ in DATASET_METRICS]).get("majority_class")
    else:
        cis = stats.bootstrap_ci(y_true, base["y_pred"], labels, n=n_boot, ci=ci, seed=seed)
        for m, _ in METRIC_COLUMNS:
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = cis[m]
    row["_y_pred"] = base["y_pred"]
    row["_sample_id"] = None if sample_ids is None else [str(x) for x in sample_ids]
    return row


def build_table(metric_map: Mapping[str, Mapping], rows: Sequence[tuple[str, str]],
                predictions: Mapping[str, pd.DataFrame] | None = None,
                reference: str | None = None, baseline: Mapping | None = None,
                table: str = "table4",
                baselines: Sequence[tuple[str, str]] = (),
                parts: Mapping | None = None) -> pd.DataFrame:
    """One table as numbers: a row per experiment, then the Baselines block (the classical
    baselines, then the majority-class row).

    Args:
        metric_map: ``metrics.json`` content (experiment -> metrics).
        rows: (label, experiment) pairs from :func:`select_rows`.
        predictions: experiment -> predictions table, for McNemar (optional).
        reference: the experiment every row is tested against (McNemar, exact).
        baseline: a :func:`majority_row` dict, appended last (optional).
        table: the table's name (``table`` column).
        baselines: (label, baseline) pairs of ``metrics.json`` (:func:`baseline_rows`), shown
            after the experiments with ``is_baseline`` True; they get intervals and paired
            differences but no McNemar test (the Holm family stays the frame strategies').
        parts: ``data/dataset.json``'s ``parts`` (dataset -> ``{"name", ...}``): the order and
            names of a composite's datasets (None: their order in ``metrics.json``, the dataset
            values as names).

    Returns:
        DataFrame with columns table, row, experiment, frames, backbone, loss, and for m in
        accuracy, uf1, uar: m, m_ci_low, m_ci_high, m_std, m_diff, m_diff_ci_low,
        m_diff_ci_high (paired difference to the reference, subject bootstrap); n, n_seeds,
        is_reference, is_baseline, mcnemar_b (row right & reference wrong), mcnemar_c,
        mcnemar_p, mcnemar_p_holm (Holm-adjusted over the table's tests), mcnemar_seed,
        best_baseline and m_diff_baseline, m_diff_baseline_ci_low/high (paired difference to
        the strongest baseline, when ``metrics.json`` has baselines). On a composite (entries
        with ``per_dataset``), then for each dataset d and m in uf1, uar: ``m@d``,
        ``m@d_ci_low``, ``m@d_ci_high``, ``m@d_std`` (that dataset's clips alone; the intervals
        resample its subjects), and ``attrs["dataset_names"]`` = dataset -> display name.
        Values are fractions (accuracy too).
    """
    out = []
    datasets = dataset_order({name: metric_map[name] for _, name in [*rows, *baselines]}, parts)
    can_test = predictions is not None and reference is not None and reference in predictions
    blocks = [(label, name, False) for label, name in rows] + \
        [(label, name, True) for label, name in baselines]
    for label, name, is_base in blocks:
        m = metric_map[name]
        r = {"table": table, "row": label, "experiment": name,
             **{k: m.get(k, "") for k in ("frames", "backbone", "loss")}}
        for k, _ in METRIC_COLUMNS:
            r[k] = m[k]
            for suffix in _SUFFIXES:
                r[f"{k}{suffix}"] = m.get(f"{k}{suffix}")
        r.update(n=m.get("n"), n_seeds=m.get("n_seeds", 1), is_reference=name == reference,
                 is_baseline=is_base, best_baseline=m.get("best_baseline"))
        r.update(_dataset_cells(m.get("per_dataset"), datasets))
        if can_test and name != reference and name in predictions and not is_base:
            ca, cb, s = stats.paired_correct(predictions[name], predictions[reference])
            t = stats.mcnemar_exact(ca, cb)
            r.update(mcnemar_b=t["b"], mcnemar_c=t["c"], mcnemar_p=t["p_value"], mcnemar_seed=s)
        out.append(r)
    if baseline is not None:
        r = {"table": table, **{k: v for k, v in baseline.items() if not k.startswith("_")},
             "is_reference": False, **_dataset_cells(baseline.get("_per_dataset"), datasets)}
        ids = baseline.get("_sample_id")
        if can_test and ids is not None:
            ref = predictions[reference]
            ref = ref[ref["seed"] == ref["seed"].min()].set_index("sample_id")
            if set(ids) == set(ref.index) and len(ids) == len(ref):
                ref = ref.loc[ids]              # the baseline's clip order
                cb = (ref["y_true"].astype(str) == ref["y_pred"].astype(str)).to_numpy()
                ca = ref["y_true"].astype(str).to_numpy() == np.asarray(baseline["_y_pred"])
                t = stats.mcnemar_exact(ca, cb)
                r.update(mcnemar_b=t["b"], mcnemar_c=t["c"], mcnemar_p=t["p_value"],
                         mcnemar_seed=int(ref["seed"].iloc[0]))
        out.append(r)
    cols = ["table", "row", "experiment", "frames", "backbone", "loss"]
    for k, _ in METRIC_COLUMNS:
        cols += [k] + [f"{k}{suffix}" for suffix in _SUFFIXES]
    cols += ["n", "n_seeds", "is_reference", "is_baseline", "mcnemar_b", "mcnemar_c",
             "mcnemar_p", "mcnemar_p_holm", "mcnemar_seed", "best_baseline"]
    cols += list(_dataset_cells(None, datasets))
    df = pd.DataFrame(out).reindex(columns=cols)
    df["mcnemar_p_holm"] = stats.holm(df["mcnemar_p"].tolist())
    if datasets:
        df.attrs["dataset_names"] = dataset_names(datasets, parts)
    return df


def build_tables(metric_map: Mapping[str, Mapping], labels: Sequence[str],
                 predictions: Mapping[str, pd.DataFrame] | None = None,
                 reference: str | None = None, best_spotter: str | None = None,
                 y_true=None, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                 min_rows: int = 2, parts: Mapping | None = None) -> dict[str, pd.DataFrame]:
    """Table 4 and the ablations that have at least ``min_rows`` experiments.

    Args:
        metric_map: ``metrics.json`` content; each entry has frames, backbone, loss.
        labels: the protocol's classes.
        predictions: experiment -> predictions (McNemar, and the majority row's clips).
        reference: experiment tested against (McNemar).
        best_spotter: named in the spotted-apex row.
        y_true: clips of the majority row; default: the reference's (or first experiment's)
            predictions of its smallest seed, so the row covers the same clips as the others.
        min_rows: an ablation with fewer experiments is left out (Table 4 never is).
        parts: ``data/dataset.json``'s ``parts`` on a composite: the order and names of the
            per-dataset columns (:func:`build_table`).

    Returns:
        ``{"table4": df, "backbone": df, "loss": df, "inputs": df}`` (all but Table 4 only
        when they have ``min_rows`` experiments).
    """
    ids = subjects = ref_pred = None
    if y_true is None:
        if not predictions:
            raise ValueError("build_tables: give y_true or predictions for the majority row")
        src = predictions.get(reference)
        ref_pred = src
        src = src if src is not None else next(iter(predictions.values()))
        src = src[src["seed"] == src["seed"].min()].sort_values("sample_id")
        y_true = src["y_true"].astype(str).to_numpy(dtype=object)
        ids = src["sample_id"].astype(str).tolist()
        subjects = src["subject"].astype(str).tolist()
    base = majority_row(y_true, labels, n_boot=n_boot, ci=ci, seed=seed, sample_ids=ids,
                        subjects=subjects, reference_pred=ref_pred,
                        reference=reference if ref_pred is not None else None)
    tables = {}
    for t in TABLE_TITLES:
        rows = select_rows(metric_map, t, best_spotter)
        if t != "table4" and len(rows) < min_rows:
            continue
        tables[t] = build_table(metric_map, rows, predictions, reference, base, table=t,
                                baselines=baseline_rows(metric_map) if t == "table4" else (),
                                parts=parts)
    return tables


def bootstrap_settings(metric_map: Mapping[str, Mapping], reference: str
                       ) -> tuple[int, float, int]:
    """The bootstrap the evaluate stage ran (``metrics.json``), so that the majority row is
    resampled exactly as the experiments were.

    Args:
        metric_map: ``metrics.json`` content.
        reference: the reference experiment (:func:`reference_of`).

    Returns:
        ``(n_resamples, ci_level, seed)``.
    """
    m = metric_map[reference]
    return m["n_bootstrap"], m["ci_level"], m["bootstrap_seed"]


def mcnemar_seed(tables: Mapping[str, pd.DataFrame]) -> int | None:
    """The seed McNemar's tests were computed on (None when no row was tested)."""
    seeds = pd.concat(tables.values())["mcnemar_seed"].dropna()
    return int(seeds.iloc[0]) if len(seeds) else None


def n_tests(tables: Mapping[str, pd.DataFrame]) -> int:
    """McNemar tests of Table 4 (the Holm family): every row but the reference and the
    classical baselines."""
    t4 = tables["table4"]
    return int((~t4["is_reference"].astype(bool) & ~t4["experiment"].isin(vocab.BASELINES)).sum())


def best_baseline(tables: Mapping[str, pd.DataFrame]) -> str | None:
    """The strongest baseline the deep rows are compared with (None without baselines)."""
    names = pd.concat(tables.values())["best_baseline"].dropna()
    return str(names.iloc[0]) if len(names) else None


__all__ = ["select_rows", "spotter_summary", "baseline_rows", "best_baseline", "reference_of", "majority_row", "build_table",
           "build_tables", "bootstrap_settings", "mcnemar_seed", "n_tests", "dataset_column",
           "dataset_order", "dataset_names", "TABLE_TITLES", "METRIC_COLUMNS",
           "DATASET_METRICS"]
