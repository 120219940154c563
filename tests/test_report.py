"""mer_core.report: the header, the training cost, the README section and its CLI, on a fake
project."""
from __future__ import annotations

import dataclasses
import json

import pytest

from mer_core import handover
from mer_core import report as R

from fakes import fake_tables

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


def test_header_describes_a_composite_and_only_a_composite(project):
    from mer_core import config

    params = config.load(project / "params.yaml")
    dataset = json.loads((project / "data" / "dataset.json").read_text())
    assert R.composite_line(dataset) is None
    assert R.composite_line({**dataset, "parts": {"samm": {"name": "SAMM"}}}) is None
    parts = {"casme2": {"name": "CASME II", "synthetic": False, "n_clips": 145,
                        "n_subjects": 24},
             "samm": {"name": "SAMM-shaped synthetic", "synthetic": True, "n_clips": 133}}
    line = R.composite_line({**dataset, "dataset": "composite", "parts": parts})
    assert line.startswith("- **Composite (MEGC 2019):**")
    assert "CASME II (`casme2`, 145 clips, 24 subjects)" in line
    assert "SAMM-shaped synthetic (`samm`, SYNTHETIC, 133 clips)" in line
    single = R.header_lines(dataset, params.train, 1000, 0.95)
    both = R.header_lines({**dataset, "parts": parts}, params.train, 1000, 0.95)
    assert [ln for ln in both[1:] if ln != line] == single[1:] and line in both
    # the Dataset line names what the synthetic parts stand in for; a real part is not real alone
    assert "not CASME II results" in single[0]
    assert "**partly SYNTHETIC** data" in both[0] and "CASME II columns" in both[0]
    three = {k: {"synthetic": True} for k in ("synthetic", "samm", "smic")}
    assert "not CASME II, SAMM or SMIC-E results" in R.header_lines(
        {**dataset, "parts": three}, params.train, 1000, 0.95)[0]


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
    _, tables = fake_tables(project)
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
    nested = dataclasses.replace(params.train, select="lr,epochs", lr_grid="0.001,0.004",
                                 inner_folds=3)
    line = R.recipe_line(nested, off, False)
    n = params.train.epochs
    assert (f"the learning rate (from {{0.001,0.004}}) and the stopping epoch (1..{n} of the full "
            f"{n}-epoch schedule) were chosen by 3-fold subject-grouped cross-validation over "
            f"that fold's training subjects") in line
    assert "never on the test subject" in line and "departs" not in line  # both chosen per fold
    assert "lr 0." not in line and "calibration" not in line
    assert "set in advance in `params.yaml` or the run's profile" in line
    only_lr = R.recipe_line(dataclasses.replace(nested, select="lr"), off, False)
    assert "The epoch budget was chosen on a separate" in only_lr
    assert "no other value was tuned on its subjects" in only_lr
    only_ep = R.recipe_line(dataclasses.replace(nested, select="epochs"), off, True)
    assert "The learning rate was chosen on a separate" in only_ep and "departs" in only_ep
    head = "\n".join(R.header_lines({"labels": ["a", "b"]}, nested, 100, 0.95))
    assert f"up to {n} epochs (the stopping epoch chosen per fold" in head
    assert "fixed budget" not in head
    assert "Per fold" not in R.recipe_line(params.train, off, False)
    assert "the stopping epoch" in R.recipe_line(
        dataclasses.replace(params.train, select="epochs"), None, True)


def test_header_says_how_the_baselines_were_made(project):
    from mer_core import config

    params = config.load(project / "params.yaml")
    dataset = json.loads((project / "data" / "dataset.json").read_text())
    cfg = config.BaselinesConfig()
    lines = R.header_lines(dataset, params.train, 200, 0.95, baselines=cfg, clip_frames=16,
                           best_baseline=cfg.name_list[0])
    text = next(line for line in lines if line.startswith("- **Baselines**"))
    assert "LBP-TOP of 16 frames evenly spaced over onset..offset (5 x 5 blocks, P = 8" in text
    assert "59 uniform codes per plane" in text and "linear SVM" in text
    assert "C from {0.0001, 0.001, 0.01, 0.1, 1, 10, 100} chosen per fold by 5-fold group" in text
    assert "never on the test subject" in text and f"`{cfg.name_list[0]}`, the baseline" in text
    assert not any("Baselines" in line for line in R.header_lines(
        dataset, params.train, 200, 0.95, baselines=config.BaselinesConfig(names="")))


def test_leakage_note_names_every_experiments_inflation(tmp_path):
    csv = tmp_path / "leakage.csv"
    assert R.leakage_note(handover.read_leakage(csv)) == ""
    csv.write_text("experiment,protocol,pooled_accuracy,pooled_uf1\n"
                   "a,fixed epoch budget (valid),0.5,0.4\n"
                   "a,inflation (INVALID - valid),0.05,0.031\n"
                   "b,inflation (INVALID - valid),-0.01,0.0\n")
    note = R.leakage_note(handover.read_leakage(csv))
    assert note.startswith("Leakage check (invalid protocol, not a result)")
    assert "+5.0 pp / +0.031 (`a`), -1.0 pp / +0.000 (`b`)" in note
    assert note.endswith("see `reports/leakage.csv` and `reports/03_evaluate.html`.")
    csv.write_text("experiment,protocol,pooled_accuracy,pooled_uf1\na,fixed,0.5,0.4\n")
    assert R.leakage_note(handover.read_leakage(csv)) == ""


def test_motion_line_says_how_the_motion_inputs_were_made():
    from mer_core import motion

    rec = {"flow": {"method": "tvl1", "scale_px": motion.FLOW_SCALE}, "diff": {"gain": 2.0}}
    line = R.motion_line(rec)
    assert "TV-L1" in line and "/ 4 px" in line and "128 + 2 x difference" in line
    assert "Farneback" in R.motion_line({**rec, "flow": {"method": "farneback",
                                                               "scale_px": 4.0}})
    with pytest.raises(ValueError, match="'diff'"):
        R.motion_line({"flow": rec["flow"]})
