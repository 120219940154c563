"""mer_core.report: Table 4 assembly, writers, README section, on a fake project."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mer_core import handover, metrics as M, vocab
from mer_core import report as R

LABELS = ["happiness", "disgust", "repression", "surprise", "others"]
ROOT = Path(__file__).resolve().parents[1]

EXPERIMENTS = {
    "onset": ("onset", "seresnext50_32x4d", "focal", 0.25),
    "middle": ("middle", "seresnext50_32x4d", "focal", 0.45),
    "apex_spotted": ("spotted:best", "seresnext50_32x4d", "focal", 0.6),
    "apex_annotated": ("annotated", "seresnext50_32x4d", "focal", 0.8),
    "bb_resnet50": ("annotated", "resnet50", "focal", 0.65),
    "loss_ce": ("annotated", "seresnext50_32x4d", "ce", 0.7),
}


def make_fake_project(root, experiments=EXPERIMENTS, seeds=(0,), n_subjects=6, per_subject=10,
                      size=16, synthetic=True, seed=0):
    """Write the files the evaluate and table4 stages read: params.yaml, data/index.csv,
    data/dataset.json, data/frames/<stem>.npy|csv, reports/apex_metrics.json and, per
    experiment, results/<name>/predictions.csv, epoch_log.csv, run.json, cams/*.npz.

    ``experiments``: name -> (frames, backbone, loss, accuracy of the fake classifier).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["experiments"] = {n: {"frames": f, "backbone": b, "loss": l}
                             for n, (f, b, l, _) in experiments.items()}
    params["train"].update(image_size=64, epochs=10, pretrained="")  # fixed, whatever params.yaml says
    params["train"]["n_seeds"] = len(seeds)
    params["train"]["seed"] = seeds[0]
    (root / "data" / "frames").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rows = []
    weights = np.array([32, 63, 27, 25, 99], float)
    for s in range(1, n_subjects + 1):
        for i in range(per_subject):
            label = str(rng.choice(LABELS, p=weights / weights.sum()))
            rows.append({"sample_id": f"casme2/sub{s:02d}/EP{i:02d}_0{i % 3}", "dataset": "casme2",
                         "subject": f"sub{s:02d}", "clip": f"EP{i:02d}", "frames_dir": "x",
                         "onset": 1, "apex": 10, "offset": 20, "emotion": label, "aus": "4",
                         "apex_note": "", "label": label})
    index = pd.DataFrame(rows)
    index.to_csv(root / "data" / "index.csv", index=False)
    (root / "data" / "dataset.json").write_text(json.dumps({
        "dataset": "synthetic" if synthetic else "casme2",
        "description": ("synthetic CASME-II-shaped (seed 0, amplitude 5.0 px) - NOT real CASME II"
                        if synthetic else "CASME II (Cropped)"),
        "synthetic": synthetic, "protocol": "casme2-5class", "labels": LABELS, "fps": 200,
        "aligned": True, "n_clips": len(index), "n_excluded": 3}))
    (root / "reports" / "apex_metrics.json").write_text(json.dumps(
        {"lbp": {"mae_frames": 3.0}, "middle": {"mae_frames": 9.0}, "best": "lbp"}))
    for strategy in {f for f, *_ in experiments.values()}:
        stem = vocab.strategy_stem(strategy)
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
    return root


@pytest.fixture
def project(tmp_path):
    return make_fake_project(tmp_path)


def _tables(project, reference="apex_annotated", **kw):
    params = yaml.safe_load((project / "params.yaml").read_text())
    metric_map = M.evaluate_experiments(project / "results", params["experiments"], LABELS,
                                        project / "reports", n_boot=200, progress=False,
                                        reference=reference)
    preds = handover.load_predictions(project / "results", list(metric_map))
    return metric_map, R.build_tables(metric_map, LABELS, preds, reference=reference,
                                      best_spotter="lbp", n_boot=200, **kw)


def test_select_rows_orders_and_filters():
    specs = {n: {"frames": f, "backbone": b, "loss": l} for n, (f, b, l, _) in EXPERIMENTS.items()}
    rows = R.select_rows(specs, "table4", "lbp")
    assert [n for _, n in rows] == ["onset", "middle", "apex_spotted", "apex_annotated"]
    assert rows[2][0] == "Spotted apex (spotter per fold: lbp)"
    assert [n for _, n in R.select_rows(specs, "backbone")] == ["bb_resnet50", "apex_annotated"]
    assert [n for _, n in R.select_rows(specs, "loss")] == ["loss_ce", "apex_annotated"]


def test_build_tables_rows_baseline_and_mcnemar(project):
    metric_map, tables = _tables(project)
    assert set(tables) == {"table4", "backbone", "loss"}
    t4 = tables["table4"]
    assert list(t4["experiment"]) == ["onset", "middle", "apex_spotted", "apex_annotated",
                                      "majority_class"]
    base = t4.iloc[-1]
    assert base["is_baseline"] and "others" in base["row"]
    assert base["accuracy_ci_low"] <= base["accuracy"] <= base["accuracy_ci_high"]
    ref = t4[t4["experiment"] == "apex_annotated"].iloc[0]
    assert ref["is_reference"] and pd.isna(ref["mcnemar_p"])
    onset = t4[t4["experiment"] == "onset"].iloc[0]
    assert 0 <= onset["mcnemar_p"] < 0.05          # 25 % vs 80 % correct on 60 clips
    preds = handover.load_predictions(project / "results", ["onset", "apex_annotated"])
    ca, cb, _ = M.paired_correct(preds["onset"], preds["apex_annotated"])
    assert onset["mcnemar_p"] == pytest.approx(M.mcnemar_exact(ca, cb)["p_value"])
    assert not pd.isna(base["mcnemar_p"])
    assert onset["uf1"] == pytest.approx(metric_map["onset"]["uf1"])


def test_ablation_left_out_when_only_reference(tmp_path):
    exps = {k: v for k, v in EXPERIMENTS.items() if k in ("onset", "apex_annotated")}
    project = make_fake_project(tmp_path, exps)
    _, tables = _tables(project)
    assert list(tables) == ["table4"]


def test_markdown_bold_best_and_tex(project):
    _, tables = _tables(project)
    t4 = tables["table4"]
    md = R.to_markdown(t4)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(t4)
    best = t4.loc[~t4["is_baseline"], "uf1"].idxmax()
    uf1_col = 3
    cells = [ln.split(" | ")[uf1_col] for ln in lines[2:]]
    assert cells[best].startswith("**")
    assert sum(c.startswith("**") for c in cells) >= 1
    assert not cells[-1].startswith("**")           # the baseline row is never bold
    assert re.search(r"\[\d\.\d{3}, \d\.\d{3}\]", cells[0])
    tex = R.to_latex(t4, caption="Table 4 & co", label="tab:t4")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert tex.count("{") == tex.count("}")
    assert r"\textbf{" in tex and r"\&" in tex and r"apex\_annotated" in tex
    body = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    ncols = len(R.display_table(t4).columns)
    assert all(ln.count(" & ") == ncols - 1 for ln in body)


def test_header_mentions_dataset_and_paper_note(project):
    from mer_core import config

    params = config.load(project / "params.yaml")
    dataset = json.loads((project / "data" / "dataset.json").read_text())
    lines = R.header_lines(dataset, params.train, 1000, 0.95, best_spotter="lbp",
                           reference="apex_annotated", mcnemar_seed=0, n_subjects=6)
    text = "\n".join(lines)
    assert "synthetic" in text.lower() and "SYNTHETIC" in text
    assert "not public" in text and "no paper column" in text
    assert "random initialisation" in text and "64 px" in text and "10 epochs" in text
    assert "casme2-5class" in text and "60 clips" in text and "lbp" in text
    real = R.header_lines({**dataset, "synthetic": False, "dataset": "casme2",
                           "description": "CASME II (Cropped)"}, params.train, 1000, 0.95)
    assert "SYNTHETIC" not in "\n".join(real) and "CASME II" in "\n".join(real)


def test_write_tables(project):
    _, tables = _tables(project)
    paths = R.write_tables(tables, ["- header line", "- synthetic data"], project / "reports")
    md = paths["md"].read_text()
    assert "header line" in md and "Ablation: backbone" in md and "**" in md
    csv = pd.read_csv(paths["csv"])
    assert set(csv["table"]) == {"table4", "backbone", "loss"}
    assert pd.api.types.is_float_dtype(csv["uf1"]) and csv["uf1"].between(0, 1).all()
    tex = paths["tex"].read_text()
    assert tex.count(r"\begin{table}") == 3 and tex.count("{") == tex.count("}")
    assert tex.startswith("%")


def test_readme_section_replacement(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nintro\n\n{R.START}\nold\n{R.END}\n\nfooter\n")
    assert R.write_readme_section(readme, "new *table*\n")
    text = readme.read_text()
    assert "new *table*" in text and "old" not in text
    assert text.startswith("# T\n\nintro") and text.endswith("footer\n")
    assert not R.write_readme_section(readme, "new *table*\n")      # unchanged: not rewritten
    readme.write_text("# T\nno markers\n")
    with pytest.raises(ValueError, match="results:start"):
        R.write_readme_section(readme, "x")
    readme.write_text(f"{R.END}\n{R.START}\n")
    with pytest.raises(ValueError, match="before"):
        R.write_readme_section(readme, "x")


def test_cli_readme(tmp_path, monkeypatch, capsys):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.md").write_text("| a |\n")
    (tmp_path / "README.md").write_text(f"x\n{R.START}\n{R.END}\n")
    monkeypatch.chdir(tmp_path)
    assert R.main(["readme"]) == 0
    assert "| a |" in (tmp_path / "README.md").read_text()
    (tmp_path / "README.md").write_text("no markers\n")
    assert R.main(["readme"]) == 1


def test_results_markdown_links_and_figures(project, monkeypatch):
    monkeypatch.chdir(project)
    _, tables = _tables(project)
    links = R.notebook_links("reports")
    assert links[0] == "[00_data](reports/00_data.html)" and len(links) == 5
    (project / "reports" / "02_train_loso_onset.html").write_text("<html/>")
    links = R.notebook_links("reports")
    assert "[02_train_loso_onset](reports/02_train_loso_onset.html)" in links
    assert not any(link.startswith("[02_train_loso]") for link in links)
    info = handover.run_info(project / "results", ["onset", "apex_annotated"])
    measured = R.measured_lines(info)
    assert "2.0 min" in measured[0] and "4.0 min" in measured[-1]
    assert "20 s per fold" in measured[0] and "cpu bf16, 2 threads" in measured[0]
    assert R.measured_lines(handover.run_info(project / "results", ["nothing"])) == []
    run_json = project / "results" / "onset" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "workers": 2,
                                    "threads": 1, "wall_s_this_call": 66.0}))
    measured = R.measured_lines(handover.run_info(project / "results", ["onset", "apex_annotated"]))
    assert measured[0].startswith("- `onset`: training 1.1 min elapsed (2 fold workers in "
                                  "parallel, 2.0 min of fold time;")
    assert "per worker" in measured[0] and measured[0].endswith("cpu bf16, 1 thread each)")
    assert measured[-1] == "- all experiments: 3.1 min of training (elapsed)"
    md = R.results_markdown(["- header"], tables, [("bars", "reports/figures/table4_bars.png")],
                            measured, links)
    assert "![bars](reports/figures/table4_bars.png)" in md
    assert "reports/04_table4.html" in md and "Table 4: frame strategy" in md


def test_figures(project, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    _, tables = _tables(project)
    R.plot_table_bars(tables["table4"], tmp_path / "bars.png")
    cams = handover.load_cams(project / "results" / "apex_annotated" / "cams")
    assert len(cams) == 60
    ex = R.select_cam_examples(cams, LABELS, per_class=2)
    assert ex.groupby("y_true").size().max() <= 2
    index = pd.read_csv(project / "data" / "index.csv")
    frames = np.load(project / "data" / "frames" / "annotated.npy")
    R.plot_gradcam(ex, frames, index["sample_id"], LABELS, tmp_path / "cam.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000
    assert (tmp_path / "cam.png").stat().st_size > 1000


def test_leakage_on_fake_project_matches_headline(project):
    """The valid row of the leakage check reproduces the headline metrics (last epoch =
    predictions.csv), and the invalid row is at least as high in pooled accuracy."""
    metric_map, _ = _tables(project)
    res = project / "results" / "onset"
    t = M.leakage_table(pd.read_csv(res / "epoch_log.csv", dtype={"fold": str}),
                        epoch_predictions=pd.read_csv(res / "epoch_predictions.csv",
                                                      dtype={"fold": str}), labels=LABELS)
    assert t["pooled_accuracy"].iloc[0] == pytest.approx(metric_map["onset"]["accuracy"])
    assert t["pooled_uf1"].iloc[0] == pytest.approx(metric_map["onset"]["uf1"])
    assert t["pooled_accuracy"].iloc[1] >= t["pooled_accuracy"].iloc[0]


def test_rows_carry_paired_differences_holm_and_a_generated_verdict(project):
    metric_map, tables = _tables(project)
    t4 = tables["table4"]
    assert R.reference_of(metric_map) == "apex_annotated"
    ref = t4[t4["is_reference"]].iloc[0]
    assert pd.isna(ref["uf1_diff"])
    for _, r in t4[~t4["is_reference"]].iterrows():
        assert r["uf1_diff"] == pytest.approx(r["uf1"] - ref["uf1"])
        assert r["uf1_diff_ci_low"] <= r["uf1_diff"] <= r["uf1_diff_ci_high"]
    raw = t4["mcnemar_p"].dropna()
    holm = t4["mcnemar_p_holm"].dropna()
    assert (holm.to_numpy() >= raw.to_numpy() - 1e-12).all()
    assert holm.min() == pytest.approx(min(1, raw.min() * len(raw)))
    text = R.verdict(t4)
    for _, r in t4[~t4["is_reference"]].iterrows():
        assert r["row"] in text
        group = "Distinguishable from zero:" if R.distinguishable(r) else "Not distinguishable"
        before = text.split(r["row"])[0]
        assert group in before
    assert "Holm" in text
    md = R.to_markdown(t4)
    assert "ΔUF1 vs apex_annotated" in md and "McNemar p (Holm)" in md
    assert r"$\Delta$UF1" in R.to_latex(t4)
    assert text in R.tables_markdown(tables)


def test_verdict_sorts_rows_by_their_interval():
    df = pd.DataFrame([
        {"row": "Onset", "is_reference": False, "uf1_diff": -0.3, "uf1_diff_ci_low": -0.4,
         "uf1_diff_ci_high": -0.2, "mcnemar_p_holm": 0.001},
        {"row": "Middle", "is_reference": False, "uf1_diff": 0.01, "uf1_diff_ci_low": -0.09,
         "uf1_diff_ci_high": 0.11, "mcnemar_p_holm": 0.6},
        {"row": "Annotated", "is_reference": True, "uf1_diff": None, "uf1_diff_ci_low": None,
         "uf1_diff_ci_high": None, "mcnemar_p_holm": None}])
    text = R.verdict(df)
    assert text.index("Distinguishable from zero: Onset (-0.300 [-0.400, -0.200])") < \
        text.index("Not distinguishable from zero") < text.index("Middle (+0.010 [-0.090, +0.110])")
    assert "p < 0.05 for Onset." in text


def test_header_names_calibration_subject_bootstrap_and_machine(project):
    from mer_core import config

    params = config.load(project / "params.yaml")
    dataset = json.loads((project / "data" / "dataset.json").read_text())
    calibration = {"population": {"description": "synthetic seed 1", "synthetic_seed": 1},
                   "date": "2026-11-29", "spotters": {"chosen_smooth": 3},
                   "recipe": {"chosen": {"lr": params.train.lr, "epochs": params.train.epochs}}}
    info = handover.run_info(project / "results", list(params.experiments))
    lines = R.header_lines(dataset, params.train, 500, 0.95, best_spotter="lbp in 6 of 6 folds",
                           reference="apex_annotated", n_subjects=6, calibration=calibration,
                           machine=R.machine_lines(info), n_tests=4)
    text = "\n".join(lines)
    assert "subject-level bootstrap (500 resamples of the 6 test subjects" in text
    assert "benchmarks/calibrate.py" in text and "reports/calibration.md" in text
    assert "never reported" in text and "departs" not in text
    assert "Holm-adjusted over each table's tests (Table 4: 4)" in text
    assert "TRAINING subjects" in text and "smoothing window (3 frames)" in text
    assert "**Run on:** cpu" in text and "bf16" in text and "2 threads per fold" in text
    off = {**calibration, "recipe": {"chosen": {"lr": 0.5, "epochs": params.train.epochs}}}
    assert "departs from the calibrated recipe:** lr" in R.recipe_line(params.train, off, True)
    assert "no calibration record" in R.recipe_line(params.train, None, True)
