"""Typed view of ``params.yaml``.

Every section of ``params.yaml`` is a dataclass below. Loading is strict: an unknown key, a missing
key or a value of the wrong type raises :class:`ConfigError` naming the file and the key, so a typo
in ``dvc exp run -S trian.lr=...`` or in a papermill ``-p`` never runs silently with a default.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mer_core import vocab


class ConfigError(ValueError):
    """A params file (or a papermill parameter) that does not match the schema."""


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: str = "data/synthetic"
    sheet: str = ""
    protocol: str = "casme2-5class"
    strict: bool = True
    band: str = "HS"
    labels: str = ""
    parts: str = ""
    synthetic_seed: int = 0
    synthetic_size: int = 128
    synthetic_amplitude: float = 10.0

    @property
    def part_list(self) -> list[tuple[str, str]]:
        """``parts`` as ``[(dataset, folder), ...]``: ``"samm=SAMM"`` -> ``("samm", "SAMM")``."""
        out = []
        for item in split_list(self.parts):
            name, sep, folder = (t.strip() for t in item.partition("="))
            out.append((name, folder if sep else ""))
        return out

    def check(self, where: str) -> None:
        _choice(where, "dataset", self.dataset, vocab.DATA_CHOICES)
        _choice(where, "protocol", self.protocol, vocab.PROTOCOLS)
        _choice(where, "band", self.band, tuple(vocab.SMIC_BAND_FPS))
        _positive(where, "synthetic_size", self.synthetic_size)
        names = [n for n, _ in self.part_list] if self.dataset == "composite" else [self.dataset]
        if self.band != "HS" and any(vocab.STANDINS.get(n) == "smic" for n in names):
            raise ConfigError(f"{where}: key 'band' is {self.band!r}, but the SMIC-E stand-in "
                              "has the HS band only; expected 'HS'")
        if self.labels.strip() and self.dataset not in ("apex_images", "composite"):
            raise ConfigError(f"{where}: key 'labels' ({self.labels!r}) is a label list for "
                              f"dataset apex_images or composite, not {self.dataset!r}; "
                              "expected ''")
        parts = self.part_list
        if self.dataset != "composite":
            if parts:
                raise ConfigError(f"{where}: key 'parts' is {self.parts!r} but dataset is "
                                  f"{self.dataset!r}; parts are for dataset composite (expected '')")
            return
        kinds = [d for d in vocab.DATA_CHOICES if d not in ("composite", "apex_images")]
        for name, folder in parts:
            if name not in kinds or not folder:
                raise ConfigError(f"{where}: key 'parts' has {name}={folder!r}; expected "
                                  f"comma-separated <dataset>=<folder under root> with dataset "
                                  f"one of {', '.join(kinds)}, e.g. 'casme2=CASME2,samm=SAMM'")
        readers = [vocab.STANDINS.get(n, n) for n, _ in parts]
        if len(parts) < 2 or len(set(readers)) != len(readers):
            raise ConfigError(f"{where}: key 'parts' is {self.parts!r}; a composite needs two or "
                              "more different datasets (a stand-in counts as its dataset)")
        if self.sheet.strip():
            raise ConfigError(f"{where}: key 'sheet' is {self.sheet!r}, but a composite reads "
                              "each part's official sheet under its folder; expected ''")


@dataclass
class ApexConfig:
    methods: str = "middle,frame_diff,lbp,optical_flow"
    smooth: int = 3
    fps: float = 200.0
    image_size: int = 64
    face_margin: float = 0.2
    random_seed: int = 0
    clip_frames: int = 16
    workers: int = 2

    @property
    def method_list(self) -> list[str]:
        return split_list(self.methods)

    def check(self, where: str) -> None:
        for m in self.method_list:
            _choice(where, "methods", m, vocab.SPOTTERS)
        _positive(where, "fps", self.fps)
        _positive(where, "image_size", self.image_size)
        if not isinstance(self.clip_frames, int) or self.clip_frames < 3:
            raise ConfigError(f"{where}: key 'clip_frames' must be an integer >= 3 (LBP-TOP "
                              f"needs a neighbour before and after in time), got "
                              f"{self.clip_frames!r}")


# Defaults: params.yaml is the one place a default is written; every default below equals it
# (tests/test_foundation.py holds them equal), so a dataclass built without arguments, or a
# notebook run by hand, runs the pipeline's experiment.


@dataclass
class TrainConfig:
    image_size: int = 48
    epochs: int = 4
    batch_size: int = 16
    lr: float = 0.004
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    schedule: str = "onecycle"
    seed: int = 0
    n_seeds: int = 1
    focal_gamma: float = 2.0
    focal_alpha: str = "none"
    pretrained: str = ""
    augment: str = "flip"
    precision: str = "fp32"
    folds: str = "all"
    max_folds: int = 0
    workers: int = 0
    threads: int = 1
    select: str = ""
    lr_grid: str = ""
    inner_folds: int = 4

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.n_seeds))

    @property
    def augment_list(self) -> list[str]:
        return split_list(self.augment)

    @property
    def select_list(self) -> list[str]:
        """What the inner cross-validation chooses: any of ``lr``, ``epochs`` ([] = nothing)."""
        return split_list(self.select)

    @property
    def lr_list(self) -> list[float]:
        """The learning rates the inner cross-validation tries (``[lr]`` unless lr is selected)."""
        return [float(v) for v in split_list(self.lr_grid)] if "lr" in self.select_list \
            else [self.lr]

    def check(self, where: str) -> None:
        _choice(where, "optimizer", self.optimizer, ("adamw", "sgd"))
        _choice(where, "schedule", self.schedule, ("cosine", "onecycle"))
        _choice(where, "precision", self.precision, ("auto", "fp32", "bf16"))
        for a in self.augment_list:
            _choice(where, "augment", a, ("flip", "affine", "color"))
        for k in ("image_size", "epochs", "batch_size", "lr", "n_seeds"):
            _positive(where, k, getattr(self, k))
        parse_folds(self.folds, where=f"{where}: key 'folds'")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"{where}: key 'workers' must be 0 (auto) or a positive integer, "
                              f"got {self.workers!r}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"{where}: key 'threads' must be a positive integer (torch threads "
                              f"of one fold), got {self.threads!r}")
        self._check_selection(where)

    def _check_selection(self, where: str) -> None:
        """``select``, ``lr_grid`` and ``inner_folds`` (the nested cross-validation)."""
        chosen = self.select_list
        if (len(chosen) != len(set(chosen)) or not set(chosen) <= {"lr", "epochs"}
                or self.select.strip().lower() == "none"):
            raise ConfigError(f"{where}: key 'select' is {self.select!r}; expected one of "
                              f"'' (fixed lr and epochs), 'lr,epochs', 'epochs', 'lr'")
        if "lr" in chosen:
            try:
                grid = [float(v) for v in split_list(self.lr_grid)]
            except ValueError:
                raise ConfigError(f"{where}: key 'lr_grid' must be comma-separated numbers, got "
                                  f"{self.lr_grid!r}") from None
            if not grid or min(grid) <= 0 or len(set(grid)) != len(grid):
                raise ConfigError(f"{where}: key 'lr_grid' must list distinct positive learning "
                                  f"rates when select chooses lr, got {self.lr_grid!r}")
        elif self.lr_grid.strip():
            raise ConfigError(f"{where}: key 'lr_grid' is {self.lr_grid!r} but select "
                              f"({self.select!r}) does not choose lr; expected '' (key 'lr' is "
                              f"the learning rate)")
        if not isinstance(self.inner_folds, int) or isinstance(self.inner_folds, bool) \
                or self.inner_folds < 2:
            raise ConfigError(f"{where}: key 'inner_folds' must be an integer >= 2, got "
                              f"{self.inner_folds!r}")


@dataclass
class ExperimentConfig:
    frames: str
    backbone: str
    loss: str

    def check(self, where: str) -> None:
        check_strategy(self.frames, where=f"{where}: key 'frames'")
        _choice(where, "backbone", self.backbone, vocab.BACKBONES)
        _choice(where, "loss", self.loss, vocab.LOSSES)


@dataclass
class BaselinesConfig:
    names: str = "lbptop_svm,probe_apex,probe_diff"
    apex: str = "annotated"
    lbp_grid: int = 5
    lbp_points: int = 8
    lbp_radius: int = 1
    probe_size: int = 32
    c_grid: str = "0.0001,0.001,0.01,0.1,1,10,100"
    inner_folds: int = 5

    @property
    def name_list(self) -> list[str]:
        return split_list(self.names)

    @property
    def c_list(self) -> list[float]:
        return [float(c) for c in split_list(self.c_grid)]

    def check(self, where: str) -> None:
        for n in self.name_list:
            _choice(where, "names", n, vocab.BASELINES)
        check_strategy(self.apex, where=f"{where}: key 'apex'")
        for k in ("lbp_grid", "lbp_points", "lbp_radius", "probe_size"):
            _positive(where, k, getattr(self, k))
        try:
            cs = self.c_list
        except ValueError:
            raise ConfigError(f"{where}: key 'c_grid' must be comma-separated numbers, got "
                              f"{self.c_grid!r}") from None
        if not cs or min(cs) <= 0:
            raise ConfigError(f"{where}: key 'c_grid' must list positive numbers, got "
                              f"{self.c_grid!r}")
        if not isinstance(self.inner_folds, int) or self.inner_folds < 2:
            raise ConfigError(f"{where}: key 'inner_folds' must be an integer >= 2, got "
                              f"{self.inner_folds!r}")


@dataclass
class EvaluateConfig:
    bootstrap: int = 1000
    ci: float = 0.95
    reference: str = "apex_annotated"

    def check(self, where: str) -> None:
        if not 0 < self.ci < 1:
            raise ConfigError(f"{where}: key 'ci' must be in (0, 1), got {self.ci!r}")
        _positive(where, "bootstrap", self.bootstrap)


@dataclass
class Table4Config:
    gradcam_per_class: int = 3

    def check(self, where: str) -> None:
        pass


@dataclass
class ClusterConfig:
    """How the train stage runs its units (one seed x one LOSO fold); never what a unit computes,
    so it is not in a fold's fingerprint and switching it redoes no finished fold."""
    launcher: str = "inprocess"
    parallel: int = 0
    gpus_per_task: int = 0
    cpus_per_task: int = 0
    mem_gb: float = 16.0
    timeout_min: int = 120
    partition: str = ""
    sbatch: str = ""
    setup: str = ""
    max_tries: int = 3
    units_per_task: int = 1

    @property
    def sbatch_flags(self) -> dict[str, str]:
        """``sbatch`` as a mapping: ``"account=abc qos=normal"`` -> ``{"account": "abc", ...}``."""
        out = {}
        for word in str(self.sbatch).split():
            key, sep, value = word.lstrip("-").partition("=")
            out[key] = value if sep else ""
        return out

    def check(self, where: str) -> None:
        _choice(where, "launcher", self.launcher, vocab.LAUNCHERS)
        for key in ("parallel", "gpus_per_task", "cpus_per_task"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where}: key {key!r} must be an integer >= 0, got {value!r}")
        for key in ("mem_gb", "timeout_min", "max_tries", "units_per_task"):
            _positive(where, key, getattr(self, key))
        for word in str(self.sbatch).split():
            key, sep, value = word.lstrip("-").partition("=")
            if not key or not sep or not value:
                raise ConfigError(f"{where}: key 'sbatch' has {word!r}; expected space-separated "
                                  "sbatch flags as name=value, e.g. 'account=abc qos=normal'")


@dataclass
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    apex: ApexConfig = field(default_factory=ApexConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    experiments: dict[str, ExperimentConfig] = field(default_factory=dict)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    table4: Table4Config = field(default_factory=Table4Config)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @property
    def frame_strategies(self) -> list[str]:
        """Every frame strategy some experiment uses, in first-use order."""
        return list(dict.fromkeys(e.frames for e in self.experiments.values()))


SECTIONS = {
    "data": DataConfig,
    "apex": ApexConfig,
    "train": TrainConfig,
    "baselines": BaselinesConfig,
    "evaluate": EvaluateConfig,
    "table4": Table4Config,
    "cluster": ClusterConfig,
}


def split_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; ``""`` or ``"none"`` -> ``[]``."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return []
    return [t.strip() for t in str(text).split(",") if t.strip()]


def parse_folds(spec: str, where: str = "folds") -> tuple[int, int]:
    """``"all"`` -> (0, 1); ``"i/n"`` -> (i, n): every n-th fold starting at i."""
    spec = str(spec).strip()
    if spec == "all":
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ConfigError(f"{where}: expected 'all' or 'i/n' (e.g. '0/4'), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"{where}: expected 0 <= i < n in 'i/n', got {spec!r}")
    return i, n


def check_strategy(name: str, where: str = "frames") -> None:
    """Validate a frame strategy (:func:`mer_core.vocab.frame_strategies`)."""
    valid = vocab.frame_strategies()
    if name not in valid:
        raise ConfigError(f"{where}: unknown frame strategy {name!r}; valid: {', '.join(valid)}")


def _choice(where: str, key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: key {key!r} is {value!r}; expected one of {', '.join(choices)}")


def _positive(where: str, key: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{where}: key {key!r} must be > 0, got {value!r}")


def _coerce(where: str, key: str, value, typ):
    """Check ``value`` against the annotation ``typ``; ints are accepted for floats."""
    if isinstance(typ, str):
        typ = {"str": str, "int": int, "float": float, "bool": bool}[typ]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, bool):
        raise ConfigError(f"{where}: key {key!r} must be int, got bool {value!r}")
    if typ is str and value is None:
        return ""
    if not isinstance(value, typ):
        raise ConfigError(
            f"{where}: key {key!r} must be {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def build(cls, values: dict, where: str):
    """Build dataclass ``cls`` from ``values``, strictly (no unknown, no missing keys)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"valid keys: {', '.join(fields)}")
    missing = [k for k in fields if k not in values]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    hints = typing.get_type_hints(cls)
    obj = cls(**{k: _coerce(where, k, v, hints[k]) for k, v in values.items()})
    obj.check(where)
    return obj


def load(path: str | Path = "params.yaml") -> Params:
    """Load and validate a params file.

    Args:
        path: the YAML file (``params.yaml`` by default).

    Returns:
        A :class:`Params` with one typed dataclass per section.

    Raises:
        ConfigError: unknown, missing or mistyped key; the message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return from_dict(raw, str(path))


def load_section(path: str | Path, name: str):
    """Load and validate one section of a params file (the others are not read), e.g. the
    ``cluster`` section the train notebook reads from ``params.yaml``.

    Raises:
        ConfigError: no such file or section, or a bad key (named with the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if name not in SECTIONS:
        raise ConfigError(f"section {name!r}: expected one of {', '.join(SECTIONS)}")
    if not isinstance(raw, dict) or name not in raw:
        raise ConfigError(f"{path}: missing section {name!r}")
    return build(SECTIONS[name], raw[name], f"{path}: {name}")


def from_dict(raw: dict, source: str = "params") -> Params:
    """Validate an already-parsed params mapping (see :func:`load`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    expected = set(SECTIONS) | {"experiments"}
    unknown = sorted(set(raw) - expected)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(sorted(expected))}")
    missing = sorted(expected - set(raw))
    if missing:
        raise ConfigError(f"{source}: missing section(s) {', '.join(map(repr, missing))}")
    sections = {name: build(cls, raw[name], f"{source}: {name}") for name, cls in SECTIONS.items()}
    exps = raw["experiments"]
    if not isinstance(exps, dict) or not exps:
        raise ConfigError(f"{source}: experiments: expected a non-empty mapping name -> "
                          "{frames, backbone, loss}")
    experiments = {str(name): build(ExperimentConfig, spec, f"{source}: experiments.{name}")
                   for name, spec in exps.items()}
    clash = sorted(set(experiments) & set(vocab.BASELINES))
    if clash:
        raise ConfigError(f"{source}: experiments: {', '.join(map(repr, clash))} is the name of a "
                          "baseline (vocab.BASELINES, results/<name>/ is its folder); rename it")
    train = sections["train"]
    for name, exp in experiments.items():
        wrong = [a for a in train.augment_list if a not in vocab.FLOW_AUGMENT]
        if vocab.motion_of(exp.frames)[0] == "flow" and wrong:
            raise ConfigError(f"{source}: experiment {name} feeds optical flow ({exp.frames}), "
                              f"but train.augment has {', '.join(wrong)}, which would change "
                              f"the flow vectors; valid for flow: {', '.join(vocab.FLOW_AUGMENT)}")
    ref = sections["evaluate"].reference
    if ref not in experiments:
        raise ConfigError(f"{source}: evaluate: key 'reference' is {ref!r}; expected one of the "
                          f"experiments {', '.join(experiments)}")
    return Params(experiments=experiments, **sections)


def section(cls, where: str = "papermill parameters", **values):
    """Build one section from papermill parameters (same strict checks as :func:`load`)."""
    return build(cls, values, where)


__all__ = [
    "ConfigError", "DataConfig", "ApexConfig", "TrainConfig", "ExperimentConfig",
    "BaselinesConfig", "EvaluateConfig", "Table4Config", "ClusterConfig", "Params",
    "load", "load_section", "from_dict", "section", "split_list",
    "parse_folds", "check_strategy",
]
