"""How hard is the synthetic set? A linear leave-one-subject-out probe on single frames.

Renders the onset and true-apex frame of every clip in memory (no files), shrinks them to 32 px
as the frame cache would, and scores a ridge classifier LOSO (macro F1 = UF1, 5 classes) on onset
frames, apex frames and apex - onset differences. Onset frames carry no label (expect chance,
about 0.2); apex frames show how much a single frame says, which is what the paper's network gets.

    .venv/bin/python benchmarks/synthetic_probe.py                       # the defaults
    .venv/bin/python benchmarks/synthetic_probe.py --amplitude 5 10 --spread 0.15 1

This calibrated the synthetic defaults (mer_core.synthetic_faces.IDENTITY_SPREAD, WRINKLE_PER_PX and
params.yaml data.synthetic_amplitude); see the README.
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from mer_core import synthetic as syn
from mer_core import synthetic_faces as faces

CLASSES = ("disgust", "happiness", "others", "repression", "surprise")  # casme2-5class


def _render(job):
    row, seed, amplitude, spread, side = job
    cv2.setNumThreads(1)
    faces.IDENTITY_SPREAD = spread  # this worker's module copy
    faces._subject_faces.cache_clear()
    _, frames = faces.render_clip(row, seed, 128, amplitude, only=[row["onset"], row["apex_true"]])
    return [cv2.resize(cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA), (side, side),
                       interpolation=cv2.INTER_AREA) for f in frames]


def probe(amplitude: float, spread: float, seed: int = 0, side: int = 32, alpha: float = 100.0,
          workers: int = 2) -> dict:
    """UF1 of a LOSO ridge classifier on onset, apex and apex - onset frames.

    Args:
        amplitude: ``generate(amplitude=...)``.
        spread: :data:`mer_core.synthetic_faces.IDENTITY_SPREAD` to render with.
        seed: dataset seed.
        side: px of the frames the classifier sees.
        alpha: ridge penalty (features are standardised on the training subjects).
        workers: rendering processes.

    Returns:
        ``{"onset": uf1, "apex": uf1, "apex-onset": uf1, "render_s": seconds}``.
    """
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import f1_score

    plan = syn.plan_clips(seed)
    plan = plan[plan["emotion"].isin(CLASSES)].reset_index(drop=True)
    jobs = [(r._asdict(), seed, amplitude, spread, side) for r in plan.itertuples(index=False)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        pairs = list(ex.map(_render, jobs, chunksize=4))
    render_s = time.perf_counter() - t0
    onset = np.stack([p[0] for p in pairs]).reshape(len(pairs), -1).astype(np.float32) / 255
    apex = np.stack([p[1] for p in pairs]).reshape(len(pairs), -1).astype(np.float32) / 255
    y = plan["emotion"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    subject = plan["subject"].to_numpy()
    out = {}
    for name, x in (("onset", onset), ("apex", apex), ("apex-onset", apex - onset)):
        pred = np.zeros_like(y)
        for s in np.unique(subject):
            tr, te = subject != s, subject == s
            mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-3
            clf = RidgeClassifier(alpha=alpha, class_weight="balanced")
            pred[te] = clf.fit((x[tr] - mu) / sd, y[tr]).predict((x[te] - mu) / sd)
        out[name] = round(float(f1_score(y, pred, average="macro")), 3)
    out["render_s"] = round(render_s, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--amplitude", type=float, nargs="+", default=None,
                    help="default: params.yaml data.synthetic_amplitude")
    ap.add_argument("--spread", type=float, nargs="+", default=[faces.IDENTITY_SPREAD])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", type=int, default=32)
    args = ap.parse_args()
    if args.amplitude is None:
        from mer_core import config
        args.amplitude = [config.load("params.yaml").data.synthetic_amplitude]
    print(f"linear LOSO probe, {args.side} px, casme2-5class, UF1 (chance ~0.2); "
          f"WRINKLE_PER_PX {faces.WRINKLE_PER_PX}")
    for spread in args.spread:
        for amp in args.amplitude:
            r = probe(amp, spread, args.seed, args.side)
            print(f"spread {spread:<5g} amplitude {amp:<5g} onset {r['onset']:.3f}  "
                  f"apex {r['apex']:.3f}  apex-onset {r['apex-onset']:.3f}  "
                  f"(rendered in {r['render_s']} s)", flush=True)


if __name__ == "__main__":
    main()
