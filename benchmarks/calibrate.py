"""Try a training recipe on a subset of LOSO folds before paying for a full `dvc repro`.

Trains the given rows of `params.yaml: experiments` with `params.yaml: train` plus the overrides,
on every n-th fold only (`--folds i/n`), through the real `mer_core.train.run_experiment` (fold
workers, fingerprints, everything), and prints the pooled UF1 and accuracy of each row and the
time per fold. Results go to a scratch folder, never to `results/`. Needs `dvc repro apex` first.

    .venv/bin/python benchmarks/calibrate.py --rows apex_annotated,onset --folds 0/3 \
        --set epochs=3 --set lr=0.003

This chose the default `train.epochs` and `train.lr` (README: the 45-minute budget). Scores
pooled over a third of the folds rank recipes; they are not results.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import yaml

from mer_core import config, datasets, frames, io, metrics, train

ROOT = Path(__file__).resolve().parents[1]


def overrides(pairs: list[str], cfg: config.TrainConfig) -> config.TrainConfig:
    """``key=value`` strings (YAML values) applied to a TrainConfig, checked by config.section."""
    values = dataclasses.asdict(cfg)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in values:
            raise SystemExit(f"--set {pair!r}: expected key=value with a key of params.yaml: train "
                             f"({', '.join(values)})")
        values[key] = yaml.safe_load(value)
    return config.section(config.TrainConfig, where="--set", **values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="apex_annotated,onset",
                    help="experiments of params.yaml to train (comma-separated)")
    ap.add_argument("--folds", default="0/3", help="train.folds shard: every n-th fold from i")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of params.yaml: train (repeatable)")
    ap.add_argument("--out", default="", help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    params = config.load(ROOT / "params.yaml")
    cfg = overrides(args.set + [f"folds={args.folds}"], params.train)
    index = datasets.read_index(ROOT / "data" / "index.csv")
    labels = io.read_json(ROOT / "data" / "dataset.json")["labels"]
    out = Path(args.out or tempfile.mkdtemp(prefix="mer-calibrate-"))
    print(f"train: {', '.join(f'{k}={v}' for k, v in dataclasses.asdict(cfg).items())}")
    print(f"scratch: {out}")
    for name in config.split_list(args.rows):
        if name not in params.experiments:
            raise SystemExit(f"--rows: {name!r} is not in params.yaml: experiments "
                             f"({', '.join(params.experiments)})")
        exp = params.experiments[name]
        images = frames.load_cache(ROOT / "data" / "frames", exp.frames, index)
        t0 = time.perf_counter()
        preds = train.run_experiment(name, exp, cfg, index, images, labels, out / name,
                                     progress=False)
        elapsed = time.perf_counter() - t0
        m = metrics.compute(preds["y_true"], preds["y_pred"], labels)
        n_folds = preds["subject"].nunique()
        print(f"{name:16s} {n_folds} folds, {len(preds)} clips: UF1 {m['uf1']:.3f}, "
              f"accuracy {100 * m['accuracy']:.1f} %, {elapsed:.0f} s elapsed "
              f"({elapsed / n_folds:.1f} s per fold)", flush=True)


if __name__ == "__main__":
    main()
