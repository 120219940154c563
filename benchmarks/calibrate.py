"""Choose the training recipe on a calibration population that no table ever reports.

The default pipeline reports the synthetic set of ``data.synthetic_seed`` (0). This script
generates ANOTHER synthetic set (``--seed``, default 1: other faces, other clip draws, the same
CASME II shape and difficulty) in a scratch folder, and on it alone:

1. scores every spotter for each temporal smoothing window of ``--smooth`` (MAE against the
   calibration set's own annotated apex) and keeps the window with the lowest best-spotter MAE;
2. trains the ``annotated`` row (SE-ResNeXt-50 + focal) leave-one-subject-out on every n-th
   fold (``--folds``) for each recipe of the grid (learning rate x epochs; input size, batch,
   schedule and augmentation fixed as listed in the output) and keeps the recipe with the
   highest pooled UF1, the cheaper one when two are within ``--tie`` UF1;
3. measures, for the chosen recipe, how far bf16 autocast moves the predictions against fp32,
   next to how far a second seed moves them (clips whose prediction changes, and UF1): the
   evidence behind the default ``train.precision``.

Everything is written to ``--out`` (default ``reports/calibration.json``, committed) together
with a Markdown rendering; ``params.yaml`` is edited by hand to the chosen values, and a test
holds the two equal. Finished folds are reused when the script is run again (the scratch folder
keeps them), so an interrupted calibration resumes.

    .venv/bin/python benchmarks/calibrate.py              # about 40 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mer_core import apex_stage, config, datasets, frame_cache, io, loso, machine, metrics

ROOT = Path(__file__).resolve().parents[1]

LRS = (0.002, 0.003, 0.004)
EPOCHS = (3, 4)
SMOOTH = (3, 5, 9)


def calibration_data(params: config.Params, seed: int, work: Path) -> tuple[pd.DataFrame, dict]:
    """Generate the calibration population and build its index (scratch folder)."""
    if seed == params.data.synthetic_seed:
        raise SystemExit(f"--seed {seed} is the reported population's seed "
                         f"(params.yaml data.synthetic_seed); pick another")
    cfg = dataclasses.replace(params.data, dataset="synthetic", root=str(work / "synthetic"),
                              synthetic_seed=seed)
    index, info = datasets.build_index(cfg, out_dir=work, progress=False)
    return index, info


def spotter_grid(index, info, apex_cfg, smooths, work: Path) -> tuple[list[dict], int, Path]:
    """Run the apex stage once per smoothing window; return rows, chosen window, its cache."""
    rows = []
    for k in smooths:
        cfg = dataclasses.replace(apex_cfg, smooth=int(k))
        out = work / f"apex-smooth{k}"
        done = out / "apex_metrics.json"
        if not done.is_file():
            apex_stage.build_apex_stage(index, info, cfg, frames_dir=out / "frames",
                                        apex_csv=out / "apex.csv", metrics_json=done,
                                        report_json=out / "apex_report.json", progress=False)
        m = io.read_json(done)
        for method in cfg.method_list:
            rows.append({"smooth": int(k), "method": method, "mae": m[method]["mae_frames"],
                         "hit5": m[method]["hit5"]})
        print(f"smooth {k}: " + ", ".join(f"{r['method']} MAE {r['mae']:.2f}" for r in rows
                                          if r["smooth"] == k), flush=True)
    table = pd.DataFrame(rows)
    spotters = table[table["method"] != "middle"]
    best = spotters.loc[spotters.groupby("smooth")["mae"].idxmin()]
    chosen = int(best.sort_values(["mae", "smooth"]).iloc[0]["smooth"])
    return rows, chosen, work / f"apex-smooth{chosen}" / "frames"


def train_row(name, strategy, cfg, index, labels, frames_dir, out) -> dict:
    exp = config.ExperimentConfig(frames=strategy, backbone="seresnext50_32x4d", loss="focal")
    images = frame_cache.load_cache(frames_dir, strategy, index)
    t0 = time.perf_counter()
    preds = loso.run_experiment(name, exp, cfg, index, images, labels, out, progress=False,
                                 redo_stale=True)
    elapsed = time.perf_counter() - t0
    m = metrics.compute(preds["y_true"], preds["y_pred"], labels)
    n_folds = int(preds["subject"].nunique())
    return {"uf1": round(m["uf1"], 4), "accuracy": round(m["accuracy"], 4),
            "uar": round(m["uar"], 4), "n_folds": n_folds, "n_clips": int(len(preds)),
            "elapsed_s": round(elapsed, 1), "images_per_s": images_per_s(out), "preds": preds}


def images_per_s(out: Path) -> float:
    """Training images/s of a run's folds (their own timings: a resumed run that trained nothing
    still reports the speed its folds were trained at)."""
    metas = [io.read_json(p) for p in sorted((Path(out) / "folds").glob("*__seed*.json"))]
    images = sum(m["train_images"] for m in metas)
    seconds = sum(m["train_s"] for m in metas)
    return round(images / max(seconds, 1e-9), 2)


def changed(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Share of clips whose predicted class differs between two runs."""
    a = a.set_index("sample_id")["y_pred"]
    b = b.set_index("sample_id")["y_pred"].reindex(a.index)
    return round(float((a != b).mean()), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="seed of the calibration population")
    ap.add_argument("--folds", default="0/2", help="LOSO folds trained per recipe ('i/n')")
    ap.add_argument("--lr", default=",".join(map(str, LRS)))
    ap.add_argument("--epochs", default=",".join(map(str, EPOCHS)))
    ap.add_argument("--smooth", default=",".join(map(str, SMOOTH)))
    ap.add_argument("--tie", type=float, default=0.01,
                    help="UF1 within which the cheaper recipe (fewer epochs) wins")
    ap.add_argument("--no-precision", action="store_true", help="skip the bf16 vs fp32 check")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite --out's Markdown (and precision decision) from its JSON")
    ap.add_argument("--work", default=str(ROOT / "scratch" / "calibration"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "calibration.json"))
    args = ap.parse_args()
    if args.render:
        out = Path(args.out)
        record = io.read_json(out)
        pr = record.get("precision")
        if pr:
            c = record["recipe"]["chosen"]
            tag = Path(args.work) / "train" / f"lr{c['lr']}-ep{c['epochs']}"
            for key, folder in (("fp32_seed0", tag), ("fp32_seed1", f"{tag}-seed1"),
                                ("bf16_seed0", f"{tag}-bf16")):
                pr[key].pop("elapsed_s", None)   # a resumed run's call time says nothing
                pr[key]["images_per_s"] = images_per_s(Path(folder))
            pr.update(precision_choice(pr))
        io.write_json(out, record)
        io.write_text(out.with_suffix(".md"), render(record))
        print(f"wrote {out} and {out.with_suffix('.md')}")
        return
    t_start = time.perf_counter()
    params = config.load(ROOT / "params.yaml")
    work = Path(args.work)
    index, info = calibration_data(params, args.seed, work)
    labels = info["labels"]
    print(f"calibration population: {info['description']}: {len(index)} clips, "
          f"{index['subject'].nunique()} subjects", flush=True)

    smooths = [int(s) for s in config.split_list(args.smooth)]
    spot_rows, smooth, frames_dir = spotter_grid(index, info, params.apex, smooths, work)
    print(f"chosen smoothing window: {smooth} frames", flush=True)

    base = dataclasses.replace(params.train, folds=args.folds, max_folds=0, seed=0, n_seeds=1,
                               precision="fp32")
    grid = []
    for lr, epochs in itertools.product([float(x) for x in config.split_list(args.lr)],
                                        [int(x) for x in config.split_list(args.epochs)]):
        cfg = dataclasses.replace(base, lr=lr, epochs=epochs)
        r = train_row("annotated", "annotated", cfg, index, labels, frames_dir,
                      work / "train" / f"lr{lr}-ep{epochs}")
        r.pop("preds")
        grid.append({"lr": lr, "epochs": epochs, **r})
        print(f"lr {lr} epochs {epochs}: UF1 {r['uf1']:.3f}, accuracy "
              f"{100 * r['accuracy']:.1f} % ({r['n_folds']} folds, {r['elapsed_s']:.0f} s)",
              flush=True)
    top = max(g["uf1"] for g in grid)
    near = [g for g in grid if g["uf1"] >= top - args.tie]
    chosen = min(near, key=lambda g: (g["epochs"], -g["uf1"]))
    print(f"chosen: lr {chosen['lr']}, {chosen['epochs']} epochs (UF1 {chosen['uf1']:.3f})",
          flush=True)

    precision = None
    if not args.no_precision:
        cfg = dataclasses.replace(base, lr=chosen["lr"], epochs=chosen["epochs"])
        tag = f"lr{chosen['lr']}-ep{chosen['epochs']}"
        fp32 = train_row("annotated", "annotated", cfg, index, labels, frames_dir,
                         work / "train" / tag)
        seed1 = train_row("annotated", "annotated", dataclasses.replace(cfg, seed=1), index,
                          labels, frames_dir, work / "train" / f"{tag}-seed1")
        bf16 = train_row("annotated", "annotated", dataclasses.replace(cfg, precision="bf16"),
                         index, labels, frames_dir, work / "train" / f"{tag}-bf16")
        precision = {
            "native_bf16": machine.cpu_has_bf16(),
            "fp32_seed0": {k: fp32[k] for k in ("uf1", "accuracy", "images_per_s")},
            "fp32_seed1": {k: seed1[k] for k in ("uf1", "accuracy", "images_per_s")},
            "bf16_seed0": {k: bf16[k] for k in ("uf1", "accuracy", "images_per_s")},
            "changed_bf16_vs_fp32": changed(fp32["preds"], bf16["preds"]),
            "changed_seed1_vs_seed0": changed(fp32["preds"], seed1["preds"]),
            "uf1_bf16_minus_fp32": round(bf16["uf1"] - fp32["uf1"], 4),
            "uf1_seed1_minus_seed0": round(seed1["uf1"] - fp32["uf1"], 4),
        }
        print(f"precision: bf16 changes {precision['changed_bf16_vs_fp32']:.1%} of the "
              f"predictions, a second seed {precision['changed_seed1_vs_seed0']:.1%}", flush=True)
        precision.update(precision_choice(precision))

    record = {
        "what": "recipe calibration on a population that no table reports",
        "script": "benchmarks/calibrate.py",
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": machine.cpu_model(), "cores": machine.available_cores(),
                    "python": platform.python_version()},
        "population": {"description": info["description"], "synthetic_seed": args.seed,
                       "reported_seed": params.data.synthetic_seed,
                       "amplitude": params.data.synthetic_amplitude,
                       "n_clips": int(len(index)), "n_subjects": int(index["subject"].nunique()),
                       "protocol": info["protocol"]},
        "spotters": {"criterion": "lowest MAE (frames) of the best non-middle spotter",
                     "grid": spot_rows, "chosen_smooth": smooth},
        "recipe": {"criterion": f"highest pooled UF1 of the annotated-apex row on folds "
                                f"{args.folds}; within {args.tie} UF1 the fewer epochs",
                   "row": "annotated apex, seresnext50_32x4d, focal",
                   "fixed": {k: v for k, v in dataclasses.asdict(base).items()
                             if k not in ("lr", "epochs", "folds", "max_folds", "seed",
                                          "n_seeds", "workers")},
                   "grid": grid, "chosen": {"lr": chosen["lr"], "epochs": chosen["epochs"]}},
        "precision": precision,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    out = Path(args.out)
    io.write_json(out, record)
    io.write_text(out.with_suffix(".md"), render(record))
    print(f"wrote {out} and {out.with_suffix('.md')} ({record['wall_s'] / 60:.1f} min)")


#: bf16 becomes the default only when it is both within seed noise and clearly faster.
BF16_MIN_SPEEDUP = 1.2


def precision_choice(p: dict) -> dict:
    """The default ``train.precision`` from the measurement: bf16 only if it changes no more
    predictions than a second fp32 seed does AND trains at least :data:`BF16_MIN_SPEEDUP` x
    faster; otherwise fp32 (the same table on every machine, up to the CPU's fp32 kernels).

    Speed compares the two runs made back to back after the grid (fp32 seed 1, then bf16
    seed 0); the fp32 seed 0 run is the grid's, made while other work shared the machine."""
    speedup = p["bf16_seed0"]["images_per_s"] / max(p["fp32_seed1"]["images_per_s"], 1e-9)
    within = p["changed_bf16_vs_fp32"] <= p["changed_seed1_vs_seed0"]
    choice = "bf16" if within and speedup >= BF16_MIN_SPEEDUP else "fp32"
    return {"bf16_speedup": round(speedup, 2), "bf16_within_seed_noise": bool(within),
            "chosen": choice,
            "rule": f"bf16 only if it changes no more predictions than a second seed and is "
                    f">= {BF16_MIN_SPEEDUP}x faster; else fp32"}


def render(r: dict) -> str:
    """The calibration record as Markdown (reports/calibration.md)."""
    p = r["population"]
    lines = [f"# Recipe calibration ({r['date']}, {r['machine']['cpu']}, "
             f"{r['machine']['cores']} cores)", "",
             f"Made by `{r['script']}` on **{p['description']}**, {p['n_clips']} clips of "
             f"{p['n_subjects']} subjects ({p['protocol']}). The reported tables use seed "
             f"{p['reported_seed']}; no clip or subject of them took part.", "",
             "## Spotter smoothing window", "", "| smooth | method | MAE (frames) |",
             "|---:|:---|---:|"]
    lines += [f"| {g['smooth']} | {g['method']} | {g['mae']:.2f} |" for g in r["spotters"]["grid"]]
    lines += ["", f"Chosen: **{r['spotters']['chosen_smooth']}** frames "
                  f"({r['spotters']['criterion']}).", "", "## Training recipe", "",
              f"Row: {r['recipe']['row']}. Fixed: "
              + ", ".join(f"{k}={v}" for k, v in r["recipe"]["fixed"].items()) + ".", "",
              "| lr | epochs | UF1 | accuracy (%) | folds | clips | s elapsed (machine shared with other work) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {g['lr']} | {g['epochs']} | {g['uf1']:.3f} | {100 * g['accuracy']:.1f} | "
              f"{g['n_folds']} | {g['n_clips']} | {g['elapsed_s']:.0f} |"
              for g in r["recipe"]["grid"]]
    c = r["recipe"]["chosen"]
    lines += ["", f"Chosen: **lr {c['lr']}, {c['epochs']} epochs** ({r['recipe']['criterion']})."]
    pr = r["precision"]
    if pr:
        lines += ["", "## bf16 against fp32 and against seed noise (chosen recipe)", "",
                  "| run | UF1 | accuracy (%) | training images/s per fold worker |",
                  "|:---|---:|---:|---:|"]
        for k in ("fp32_seed0", "fp32_seed1", "bf16_seed0"):
            lines.append(f"| {k} | {pr[k]['uf1']:.3f} | {100 * pr[k]['accuracy']:.1f} | "
                         f"{pr[k]['images_per_s']:.1f} |")
        lines += ["", f"bf16 changes {100 * pr['changed_bf16_vs_fp32']:.1f} % of the predictions "
                      f"(UF1 {pr['uf1_bf16_minus_fp32']:+.3f}); a second fp32 seed changes "
                      f"{100 * pr['changed_seed1_vs_seed0']:.1f} % (UF1 "
                      f"{pr['uf1_seed1_minus_seed0']:+.3f}). Native bf16 on this CPU: "
                      f"{pr['native_bf16']}; bf16 trained {pr['bf16_speedup']}x as fast as "
                      f"fp32 (training images/s of the folds, one per core, of the two runs made "
                      f"back to back: fp32 seed 1, then bf16; the grid runs, fp32 seed 0 among "
                      f"them, shared the machine with other work, so their times are not "
                      f"comparable).",
                  "", f"Default precision: **{pr['chosen']}** ({pr['rule']})."]
    lines += ["", f"Wall time: {r['wall_s'] / 60:.1f} min.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
