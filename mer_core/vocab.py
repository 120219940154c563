"""Every name a user can choose, defined once: datasets, protocols and their classes, spotters,
frame strategies, backbones, losses and classical baselines.

The config checks, the stages and the table builders all read these (``vocab.BACKBONES``, not a
copy), so adding a choice is one line here plus, where it needs one, its implementation:

- a backbone: one ``BACKBONES`` entry (any timm model name; its display name is the row label);
- a spotter: one ``SPOTTERS`` entry and its score curve in :data:`mer_core.apex.CURVES`;
- a loss: one ``LOSSES`` entry and its branch in :func:`mer_core.losses.make_loss`;
- a baseline: one ``BASELINES`` entry and its features in :data:`mer_core.baselines.FEATURES`;
- a protocol: one ``PROTOCOLS`` entry (classes, emotion maps, dropped clips);
- a motion input: one ``MOTION`` entry and its image in the apex stage
  (:mod:`mer_core.apex_stage`, :mod:`mer_core.motion`).

Tables show backbones and losses in the order of these mappings.
"""
from __future__ import annotations

#: Datasets :func:`mer_core.datasets.load_index` reads.
DATASETS = ("synthetic", "casme2", "samm", "smic", "casme3", "apex_images")
#: Frame rate of each dataset's videos (the synthetic set is made in CASME II's image). SMIC-E
#: is its default HS band (100 fps); its VIS band runs at 25 fps (:data:`SMIC_BAND_FPS`).
#: CAS(ME)^3 Part A: its colour frames, 30 fps. ``apex_images`` (one prepared image per clip)
#: has no frame rate: its 200 means nothing and is there only because the data stage and the
#: dataset card read one per dataset (they divide by it); it equals the apex stage's default
#: ``apex.fps`` so that no mismatch is warned about.
FPS = {"synthetic": 200, "casme2": 200, "samm": 200, "smic": 100, "casme3": 30,
       "apex_images": 200}
#: SMIC-E's recording bands (worksheets of its sheet) and their frame rates; ``HS`` is the default.
SMIC_BAND_FPS = {"HS": 100, "VIS": 25}
#: How a table heads each dataset's columns in a composite (a stand-in: its dataset's name
#: with "-shaped (synthetic)"; the synthetic set is CASME II-shaped).
DATASET_LABELS = {"synthetic": "CASME II-shaped (synthetic)", "casme2": "CASME II",
                  "samm": "SAMM", "smic": "SMIC-E", "casme3": "CAS(ME)^3",
                  "apex_images": "apex images"}
#: Synthetic stand-ins (:mod:`mer_core.synthetic_standins`) -> the reader of the folder they
#: write: generated, then read exactly like the real dataset.
STANDINS = {"synthetic_samm": "samm", "synthetic_smic": "smic"}
#: The values of ``data.dataset``: a dataset, a stand-in, or ``composite`` (several of them
#: stacked, ``data.parts``; :mod:`mer_core.composite`).
DATA_CHOICES = DATASETS + tuple(STANDINS) + ("composite",)

_CASME = ("casme2", "synthetic")
_CASME_EMOTIONS = ("happiness", "disgust", "repression", "surprise", "fear", "sadness", "others")
#: CAS(ME)^3 Part A's emotions as its sheet spells them, lower-cased (``Others`` -> ``others``).
_CASME3_EMOTIONS = ("happy", "disgust", "fear", "anger", "sad", "surprise", "others")
#: CAS(ME)^3's negative emotions (its 4-class protocol and MEGC's 3 classes agree on them).
_CASME3_NEGATIVE = {"disgust": "negative", "fear": "negative", "anger": "negative",
                    "sad": "negative"}

#: protocol -> ``labels`` (the classes, in the fixed order every stage uses), ``maps`` (per
#: dataset: raw emotion -> class, or None = dropped) and ``drop_clips`` (per dataset: (subject,
#: clip) pairs the protocol leaves out).
PROTOCOLS = {
    "casme2-5class": {
        "labels": ["happiness", "disgust", "repression", "surprise", "others"],
        "maps": {d: {"happiness": "happiness", "disgust": "disgust",
                     "repression": "repression", "surprise": "surprise", "others": "others",
                     "fear": None, "sadness": None} for d in _CASME},
        "drop_clips": {},
    },
    "casme2-7class": {
        "labels": ["happiness", "disgust", "repression", "surprise", "fear", "sadness",
                   "others"],
        "maps": {d: {e: e for e in _CASME_EMOTIONS} for d in _CASME},
        "drop_clips": {},
    },
    "megc2019-3class": {
        "labels": ["negative", "positive", "surprise"],
        "maps": {
            **{d: {"disgust": "negative", "repression": "negative", "happiness": "positive",
                   "surprise": "surprise", "others": None, "fear": None, "sadness": None}
               for d in _CASME},
            "samm": {"anger": "negative", "contempt": "negative", "disgust": "negative",
                     "fear": "negative", "sadness": "negative", "happiness": "positive",
                     "surprise": "surprise", "other": None},
            "smic": {"negative": "negative", "positive": "positive", "surprise": "surprise"},
            "casme3": {**_CASME3_NEGATIVE, "happy": "positive", "surprise": "surprise",
                       "others": None},
            # a prepared apex-image list (mer_core.apex_images) is labelled with the classes
            "apex_images": {"negative": "negative", "positive": "positive",
                            "surprise": "surprise"},
        },
        # The MEGC 2019 composite database leaves these two CASME II clips out.
        "drop_clips": {d: {("sub04", "EP12_01f"), ("sub05", "EP09_05f")} for d in _CASME},
    },
    # CAS(ME)^3 Part A (Li et al., TPAMI 2022): its seven emotions, and its four classes.
    "casme3-7class": {
        "labels": list(_CASME3_EMOTIONS),
        "maps": {"casme3": {e: e for e in _CASME3_EMOTIONS}},
        "drop_clips": {},
    },
    "casme3-4class": {
        "labels": ["negative", "positive", "surprise", "others"],
        "maps": {"casme3": {**_CASME3_NEGATIVE, "happy": "positive", "surprise": "surprise",
                            "others": "others"}},
        "drop_clips": {},
    },
}

#: Apex spotters (:mod:`mer_core.apex`). ``middle`` is the no-information reference.
SPOTTERS = ("middle", "frame_diff", "lbp", "optical_flow", "frequency")

#: Frame strategies with a cache of their own, besides ``spotted:<spotter>``; display names.
BASE_FRAMES = {"onset": "Onset frame", "middle": "Middle frame", "random": "Random frame",
               "annotated": "Annotated apex"}
SPOTTED = "spotted"
#: The spotter chosen per LOSO fold on the fold's training subjects (no cache of its own).
PER_FOLD = "spotted:best"
#: Row order of Table 4 (every ``spotted:*`` strategy sits at ``spotted``).
FRAME_ORDER = ("onset", "middle", "random", SPOTTED, "annotated")
#: Motion inputs: an image the apex stage computes from the onset frame and an apex
#: (:mod:`mer_core.motion`) instead of the apex frame itself; prefix -> display name, in the
#: Inputs table's row order. ``flow:annotated`` is the onset -> annotated apex flow,
#: ``diff:spotted:best`` the apex - onset difference at the spotter chosen per fold.
MOTION = {"diff": "Apex - onset difference", "flow": "Optical flow onset -> apex"}
#: Augmentations that keep a flow image a flow field: a horizontal flip, with the horizontal
#: displacement negated (rotation, scaling and colour changes would alter the vectors).
FLOW_AUGMENT = ("flip",)

#: Backbones (timm names) -> display names, in the ablation table's row order.
BACKBONES = {"resnet50": "ResNet-50", "resnext50_32x4d": "ResNeXt-50 (32x4d)",
             "seresnet50": "SE-ResNet-50", "seresnext50_32x4d": "SE-ResNeXt-50 (32x4d)"}
#: Losses -> display names, in the ablation table's row order.
LOSSES = {"ce": "Cross-entropy", "weighted_ce": "Class-weighted cross-entropy",
          "focal": "Focal loss"}

#: Classical baselines (:mod:`mer_core.baselines`) -> display names, in Table 4's row order.
#: Each is fitted on the same LOSO folds as the deep rows, its options fixed in advance and its
#: regularisation chosen inside each fold's training subjects.
BASELINES = {"lbptop_svm": "LBP-TOP + linear SVM (onset..offset)",
             "probe_apex": "Linear probe: apex pixels",
             "probe_diff": "Linear probe: apex - onset pixels"}

#: ``cluster.launcher``: the train stage's own worker pool, submitit's local executor (one
#: process per unit on this machine), or a Slurm job array (:mod:`mer_core.cluster`).
LAUNCHERS = ("inprocess", "local", "slurm")

#: The paper's choices: Table 4 varies the frames with these fixed; the ablations vary one.
PAPER_BACKBONE = "seresnext50_32x4d"
PAPER_LOSS = "focal"
REFERENCE_FRAMES = "annotated"


def spotted(method: str) -> str:
    """The frame strategy of one spotter: ``frame_diff`` -> ``spotted:frame_diff``."""
    return f"{SPOTTED}:{method}"


def spotter_of(strategy: str) -> str | None:
    """``spotted:lbp`` -> ``lbp``; ``best`` for :data:`PER_FOLD`; None for other strategies."""
    prefix = SPOTTED + ":"
    return strategy[len(prefix):] if strategy.startswith(prefix) else None


def motion_of(strategy: str) -> tuple[str | None, str]:
    """Split a motion input: ``flow:spotted:best`` -> ("flow", "spotted:best");
    ``annotated`` -> (None, "annotated")."""
    kind, _, rest = strategy.partition(":")
    return (kind, rest) if kind in MOTION and rest else (None, strategy)


def frame_strategies() -> list[str]:
    """Every valid frame strategy: the base ones, ``spotted:<spotter>``, ``spotted:best``, then
    the motion inputs (``<motion>:annotated``, ``<motion>:spotted:<spotter>``,
    ``<motion>:spotted:best``)."""
    apexes = ["annotated"] + [spotted(m) for m in SPOTTERS] + [PER_FOLD]
    return list(BASE_FRAMES) + [spotted(m) for m in SPOTTERS] + [PER_FOLD] + \
        [f"{k}:{a}" for k in MOTION for a in apexes]


def cached_strategies(methods) -> list[str]:
    """The strategies the apex stage caches for these spotters, in a fixed order
    (``spotted:best`` is assembled per fold from the ``spotted:<method>`` caches)."""
    return list(BASE_FRAMES) + [spotted(m) for m in methods]


def strategy_stem(name: str) -> str:
    """File stem of a strategy (cache files, experiment folders): ``spotted:best`` ->
    ``spotted-best``."""
    return name.replace(":", "-")


def frame_label(frames: str, best_spotter: str | None = None) -> str:
    """Display name of a frame strategy; ``best_spotter`` describes the per-fold spotter choice
    of ``spotted:best`` (e.g. "frame_diff in 26 of 26 folds"). A motion input reads
    "Optical flow onset -> apex (annotated apex)"."""
    kind, apex = motion_of(frames)
    if kind is not None:
        head, _, detail = frame_label(apex, best_spotter).partition(" (")
        return f"{MOTION[kind]} ({head.lower()}{', ' + detail[:-1] if detail else ''})"
    method = spotter_of(frames)
    if method == "best":
        return f"Spotted apex (spotter per fold: {best_spotter})" if best_spotter \
            else "Spotted apex (spotter chosen per fold)"
    if method is not None:
        return f"Spotted apex ({method})"
    return BASE_FRAMES.get(frames, frames)


def protocol_labels(protocol: str) -> list[str]:
    """The class names of ``protocol`` in the fixed order used by every later stage.

    Raises:
        ValueError: unknown protocol (lists the known ones).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of "
                         f"{', '.join(PROTOCOLS)}")
    return list(PROTOCOLS[protocol]["labels"])
