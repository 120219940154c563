"""Fake data the evaluation tests share: LOSO-style predictions and a fake project with every
file the evaluate and table4 stages read."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mer_core import handover, io, vocab
from mer_core.baselines import GRID_CSV
from mer_core import evaluate as E
from mer_core import metrics as M
from mer_core import table4 as T

LABELS = ["happiness", "disgust", "repression", "surprise", "others"]
ROOT = Path(__file__).resolve().parents[1]

def fake_loso(seed=0, n_subjects=8, per_subject=12, acc=0.6, never=("repression",)):
    """Pooled LOSO-style predictions where folds miss classes and some class is never predicted."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        # each subject only has 2-3 classes: whole classes are missing in most folds
        present = rng.choice(LABELS, size=rng.integers(2, 4), replace=False)
        for i in range(per_subject):
            t = str(rng.choice(present))
            p = t if rng.random() < acc else str(rng.choice(LABELS))
            if p in never:
                p = "others"
            rows.append({"sample_id": f"casme2/sub{s:02d}/EP{i:02d}", "subject": f"sub{s:02d}",
                         "y_true": t, "y_pred": p})
    return pd.DataFrame(rows)


def fake_predictions(seeds=(0, 1)):
    base = fake_loso(9)
    rng = np.random.default_rng(1)
    parts = []
    for s in seeds:
        d = base.copy()
        flip = rng.random(len(d)) < 0.2
        d.loc[flip, "y_pred"] = "others"
        d["seed"] = s
        for c in LABELS:
            d[f"p_{c}"] = 0.2
        d["experiment"] = "x"
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


EXPERIMENTS = {
    "onset": ("onset", "seresnext50_32x4d", "focal", 0.25),
    "middle": ("middle", "seresnext50_32x4d", "focal", 0.45),
    "apex_spotted": ("spotted:best", "seresnext50_32x4d", "focal", 0.6),
    "apex_annotated": ("annotated", "seresnext50_32x4d", "focal", 0.8),
    "bb_resnet50": ("annotated", "resnet50", "focal", 0.65),
    "loss_ce": ("annotated", "seresnext50_32x4d", "ce", 0.7),
}


#: The datasets of a fake MEGC 2019 composite (``make_fake_project(datasets=COMPOSITE)``).
COMPOSITE = ("casme2", "samm", "smic")

#: baseline -> accuracy of the fake classifier (names from vocab.BASELINES, in its order)
BASELINES = dict(zip(vocab.BASELINES, (0.75, 0.5, 0.55)))


def make_fake_project(root, experiments=EXPERIMENTS, seeds=(0,), n_subjects=6, per_subject=10,
                      size=16, synthetic=True, seed=0, baselines=None, datasets=("casme2",)):
    """Write the files the evaluate and table4 stages read: params.yaml, data/index.csv,
    data/dataset.json, data/frames/<stem>.npy|csv, reports/apex_metrics.json and, per
    experiment, results/<name>/predictions.csv, epoch_log.csv, run.json, cams/*.npz.

    ``experiments``: name -> (frames, backbone, loss, accuracy of the fake classifier).
    ``baselines``: name -> accuracy; each gets ``results/baselines/<name>/`` (predictions,
    choices, grid predictions over C 0.1 and 1, run.json) and ``params.yaml`` lists them.
    ``datasets``: with several, a composite: subject s belongs to ``datasets[(s - 1) % k]``
    (sample ids ``<dataset>/sub<s>/...``) and dataset.json gets ``dataset: composite`` and
    ``parts`` (name ``synthetic_<dataset>``, label ``<DATASET>-shaped (synthetic)``, as the
    data stage writes them).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["experiments"] = {n: {"frames": f, "backbone": b, "loss": l}
                             for n, (f, b, l, _) in experiments.items()}
    params["train"].update(image_size=64, epochs=10, pretrained="")  # fixed, whatever params.yaml says
    params["train"]["n_seeds"] = len(seeds)
    params["train"]["seed"] = seeds[0]
    params["baselines"]["names"] = ",".join(baselines or {})
    (root / "data" / "frames").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rows = []
    weights = np.array([32, 63, 27, 25, 99], float)
    for s in range(1, n_subjects + 1):
        ds = datasets[(s - 1) % len(datasets)]
        for i in range(per_subject):
            label = str(rng.choice(LABELS, p=weights / weights.sum()))
            rows.append({"sample_id": f"{ds}/sub{s:02d}/EP{i:02d}_0{i % 3}", "dataset": ds,
                         "subject": f"sub{s:02d}", "clip": f"EP{i:02d}", "frames_dir": "x",
                         "onset": 1, "apex": 10, "offset": 20, "emotion": label, "aus": "4",
                         "apex_note": "", "label": label})
    index = pd.DataFrame(rows)
    index.to_csv(root / "data" / "index.csv", index=False)
    info = {
        "dataset": "synthetic" if synthetic else "casme2",
        "description": ("synthetic CASME-II-shaped (seed 0, amplitude 5.0 px) - NOT real CASME II"
                        if synthetic else "CASME II (Cropped)"),
        "synthetic": synthetic, "protocol": "casme2-5class", "labels": LABELS, "fps": 200,
        "aligned": True, "n_clips": len(index), "n_excluded": 3}
    if len(datasets) > 1:
        part_rows = index.groupby("dataset", sort=False)
        info.update(dataset="composite", description="composite of fakes", parts={
            d: {"name": f"synthetic_{d}", "label": f"{d.upper()}-shaped (synthetic)",
                "description": f"fake {d}",
                "synthetic": True, "n_clips": len(g), "n_subjects": g["subject"].nunique()}
            for d, g in part_rows})
    (root / "data" / "dataset.json").write_text(json.dumps(info))
    (root / "reports" / "apex_metrics.json").write_text(json.dumps(
        {"lbp": {"mae_frames": 3.0}, "middle": {"mae_frames": 9.0}, "best": "lbp"}))
    for strategy in {f for f, *_ in experiments.values()}:
        stem = strategy.replace(":", "-")
        np.save(root / "data" / "frames" / f"{stem}.npy",
                rng.integers(0, 255, (len(index), size, size, 3), dtype=np.uint8))
        pd.DataFrame({"sample_id": index["sample_id"], "frame": 10, "source": strategy}).to_csv(
            root / "data" / "frames" / f"{stem}.csv", index=False)
    for name, (frames, backbone, loss, acc) in experiments.items():
        out = root / "results" / name
        (out / "cams").mkdir(parents=True, exist_ok=True)
        preds, log, epoch_preds = [], [], []
        for sd in seeds:
            right = rng.random(len(index)) < acc
            y_pred = np.where(right, index["label"], rng.choice(LABELS, len(index)))
            p = pd.DataFrame({"sample_id": index["sample_id"], "subject": index["subject"],
                              "y_true": index["label"], "y_pred": y_pred})
            for c in LABELS:
                p[f"p_{c}"] = np.where(y_pred == c, 0.6, 0.1)
            p["seed"], p["experiment"] = sd, name
            preds.append(p)
            for subj, g in p.groupby("subject"):
                np.savez(out / "cams" / f"{subj}__seed{sd}.npz",
                         sample_id=g["sample_id"].to_numpy(dtype=str),
                         cam=rng.random((len(g), 8, 8)).astype(np.float16),
                         y_true=g["y_true"].to_numpy(dtype=str),
                         y_pred=g["y_pred"].to_numpy(dtype=str))
                for ep in range(1, 5):
                    y_ep = g["y_pred"].to_numpy() if ep == 4 else np.where(
                        rng.random(len(g)) < acc * ep / 4, g["y_true"], rng.choice(LABELS, len(g)))
                    epoch_preds.append(pd.DataFrame({
                        "seed": sd, "fold": subj, "epoch": ep, "sample_id": g["sample_id"],
                        "y_true": g["y_true"], "y_pred": y_ep}))
                    fa = M.fold_average(g["y_true"], y_ep, g["subject"], LABELS)
                    log.append({"seed": sd, "fold": subj, "epoch": ep, "train_loss": 1 / ep,
                                "test_accuracy": fa["fold_avg_accuracy"],
                                "test_uf1": fa["fold_avg_uf1"], "test_uar": fa["fold_avg_uar"],
                                "n_test": len(g), "n_correct": int((g["y_true"] == y_ep).sum()),
                                "lr": 1e-3})
        pd.concat(preds).to_csv(out / "predictions.csv", index=False)
        pd.DataFrame(log).to_csv(out / "epoch_log.csv", index=False)
        pd.concat(epoch_preds).to_csv(out / "epoch_predictions.csv", index=False)
        (out / "run.json").write_text(json.dumps({
            "experiment": name, "labels": LABELS, "n_folds": n_subjects * len(seeds),
            "device": "cpu", "precision": "bf16", "threads": 2, "wall_s_folds": 120.0,
            "mean_fold_s": 120.0 / n_subjects, "train_images_per_s": 250.0}))
    for name, acc in (baselines or {}).items():
        out = root / "results" / "baselines" / name
        grid = []
        for C in (0.1, 1.0):
            right = rng.random(len(index)) < (acc if C == 1.0 else acc / 2)
            grid.append(pd.DataFrame({"seed": 0, "fold": index["subject"], "C": C,
                                      "sample_id": index["sample_id"], "y_true": index["label"],
                                      "y_pred": np.where(right, index["label"], "others")}))
        chosen = grid[1]
        p = pd.DataFrame({"sample_id": index["sample_id"], "subject": index["subject"],
                          "y_true": index["label"], "y_pred": chosen["y_pred"],
                          **{f"p_{c}": 0.2 for c in LABELS}, "seed": 0})
        handover.write_predictions(out, p)
        choices = pd.DataFrame({"subject": sorted(index["subject"].unique()), "C": 1.0,
                                "inner_uf1": 0.5, "n_train": 50, "n_test": 10, "seconds": 0.5,
                                "not_converged": 0})
        io.write_csv(out / handover.CHOICES_CSV, choices)
        io.write_csv(out / GRID_CSV, pd.concat(grid, ignore_index=True))
        handover.write_run(out, {"experiment": name, "wall_s_this_call": 4.0,
                                 "wall_s_folds": 3.0, "n_folds": n_subjects})
    return root


def fake_tables(project, reference="apex_annotated", **kw):
    """Evaluate the fake project (200 resamples) and build its tables."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    names = [n for n in params["baselines"]["names"].split(",") if n]
    metric_map = E.evaluate_experiments(project / "results", params["experiments"], LABELS,
                                        project / "reports", n_boot=200, progress=False,
                                        reference=reference, baselines=names)
    preds = handover.load_predictions(project / "results", list(params["experiments"]))
    preds |= handover.load_predictions(project / "results" / "baselines", names)
    return metric_map, T.build_tables(metric_map, LABELS, preds, reference=reference,
                                      best_spotter="lbp", n_boot=200, **kw)
