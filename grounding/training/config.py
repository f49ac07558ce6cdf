"""Experiment configuration: YAML files -> checked dataclasses, with ``base:`` files and ``key.sub=value`` overrides.

An experiment file has three sections (``configs/*.yaml``)::

    base: rendered-world.yaml      # optional: a file (or list of files) merged first, relative to this file
    model:                         # GroundingConfig fields (grounding.model.config)
      preset: tacos                # optional: start from GroundingConfig.preset(name) instead of the defaults
      hidden_size: 256
    data:                          # DataConfig: annotation files, features, text encoder, extraction settings
      root: worlds/w300
      train: train.txt
      extraction: {backbone: null} # ExtractionSettings; null = read from the feature file
    train:                         # TrainConfig: optimisation, evaluation, outputs
      epochs: 30

Resolution order: the defaults of the dataclasses (for ``model``: the named ``model.preset`` when one is given),
then each ``base`` file (recursively, in order), then the file itself, then the overrides (``train.lr=3e-4``,
values parsed as YAML: ``data.val=null``, ``model.span.pooling_counts=[15,8]``). Mappings merge key by key; any
other value (lists included) replaces the previous one. An unknown key, in a file or an override, is a
:class:`~grounding.errors.ConfigError` that names the closest known key.

Every value is checked by the dataclasses' ``__post_init__``. The resolved config is written to the run folder as
``config.yaml`` (:func:`save_config`), and ``--resume`` refuses a run whose ``config.yaml`` differs.
Reading, merging and key checks of the YAML tree live in :mod:`grounding.training.config_files` (their names are
importable from here too); this module holds the sections and turns the tree into them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from grounding.checks import check_bool, check_choice, check_int, check_number, check_optional_str
from grounding.errors import ConfigError
from grounding.files import write_text_atomic
from grounding.model.config import GroundingConfig
from grounding.training.config_files import (  # the tree helpers are importable from here too (__all__)
    OPEN_MAPPINGS,
    RENAMED_KEYS,
    check_known_keys,
    dump_yaml,
    flatten,
    known_keys,
    load_tree,
    merge_trees,
    overrides_tree,
    parse_yaml_value,
    read_yaml,
    rename_old_keys,
)
from grounding.video.settings import ExtractionSettings

SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
SECTIONS = ("model", "data", "train")
# Keys that may differ between a run's config.yaml and the config given with --resume: they change where files
# go, how fast data loads or when the run pauses, never the weights (train.eval_batch_size regroups the evaluation
# batches, which can move a score by one float32 rounding step; docs/inference.md).
RESUME_MUTABLE_KEYS = frozenset(
    {"train.output_dir", "train.num_workers", "train.stop_after_epoch", "train.progress", "train.eval_batch_size"}
)

__all__ = [
    "AMP_MODES", "DEVICES", "OPEN_MAPPINGS", "RENAMED_KEYS", "RESUME_MUTABLE_KEYS", "SCHEDULES", "SECTIONS",
    "DataConfig", "ExperimentConfig", "TrainConfig", "check_known_keys", "config_differences", "config_to_yaml",
    "default_tree", "flatten", "known_keys", "load_config", "merge_trees", "parse_overrides", "parse_yaml_value",
    "read_yaml", "rename_old_keys", "save_config",
]


# --- the sections -----------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Where the data is and how it becomes model inputs.

    Defaults are the rendered world of ``grounding synth --out worlds/w300`` with its features extracted to
    ``worlds/w300/features-motion.h5`` by ``grounding extract --backbone efficientnet-lite0-motion`` (Charades-STA style ``train.txt`` / ``test.txt`` / ``test_novel.txt`` and
    ``durations.csv``; 10 % of the training videos held out as val). Relative paths are relative to ``root``
    (itself relative to the working directory); absolute paths stay.
    The number of clips per video is ``model.num_clips`` (features are resampled to it with
    :func:`grounding.data.resample.resample_clips`), and the feature width must equal ``model.input_dim``.

    Args:
        root: folder that relative paths start from (``""``: the working directory).
        train: training annotation file.
        val: validation annotation file, or null.
        test: test annotation file, or null.
        extra_eval: more splits to evaluate every time, ``{name: annotation file}`` (e.g. the rendered world's
            ``test_novel``), logged like val and test. In a file or override, ``{}`` clears the mapping and
            ``name: null`` removes one split.
        train_relevant: a relevance file for ``train`` (every video each training query is true of: the
            rendered world's ``train.relevant.jsonl``, see docs/synth.md), or null. The contrastive terms then
            never treat a video a query is true of as its negative.
        val_fraction: when ``val`` is null, hold out this fraction of the training *videos* (chosen by
            ``train.seed``) as the ``val`` split (0 = none).
        format: annotation format for every file (see :data:`grounding.data.annotations.ANNOTATION_FORMATS`);
            null = detect per file.
        durations: Charades ``Charades_v1_*.csv`` (``id,length``) files, for ``charades-sta`` annotations.
        features: clip features of every split: an HDF5 file or a folder of ``<video_id>.npy`` / ``.pt``.
        skip_missing_videos: drop queries whose video is not in ``features`` (listed in the run folder's
            ``skipped.json`` and counted on stderr) instead of stopping with an error (default false).
        cache_features: keep each video's resampled features in memory after its first read (default true).
        text_encoder: name for :func:`grounding.text.create_text_encoder` (``minilm-l6``, ``hf:DIR``,
            ``glove:FILE``); frozen, each distinct sentence is encoded once.
        max_words: tokens kept per query (default 32).
        syntax: language-graph edges: ``auto``, ``dependency`` or ``sequential`` (default ``auto``).
        extraction: how the features were extracted (:class:`~grounding.video.settings.ExtractionSettings`:
            ``backbone``, ``clip_seconds``, ``frames_per_clip``, ``frame_size``, ``resize``, as given to
            ``grounding extract``), saved with checkpoints so ``grounding ground --video`` extracts the same
            features. A setting left null (the default) is read from the feature file's attributes. Written
            ``data.extraction.backbone`` etc.; the old flat keys (``data.backbone``, ...) still load.
    """

    root: str = "worlds/w300"
    train: str = "train.txt"
    val: str | None = None
    test: str | None = "test.txt"
    extra_eval: dict[str, str] = field(default_factory=lambda: {"test_novel": "test_novel.txt"})
    train_relevant: str | None = None
    val_fraction: float = 0.1
    format: str | None = "charades-sta"
    durations: list[str] = field(default_factory=lambda: ["durations.csv"])
    features: str = "features-motion.h5"
    skip_missing_videos: bool = False
    cache_features: bool = True
    text_encoder: str = "minilm-l6"
    max_words: int = 32
    syntax: str = "auto"
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)

    def __post_init__(self) -> None:
        from grounding.data.annotations import ANNOTATION_FORMATS
        from grounding.text.language_graph import SYNTAX_MODES

        if not isinstance(self.root, str):
            raise ConfigError(f"data.root must be a string (a folder), got {self.root!r}")
        for key in ("train", "features", "text_encoder"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"data.{key} must be a non-empty string, got {value!r}")
        for key in ("val", "test", "train_relevant"):
            check_optional_str(f"data.{key}", getattr(self, key))
        if not isinstance(self.extra_eval, Mapping):
            raise ConfigError(
                f"data.extra_eval must be a mapping {{split name: annotation file}}, got {self.extra_eval!r}"
            )
        self.extra_eval = dict(self.extra_eval)
        for name, path in self.extra_eval.items():
            if name in ("train", "val", "test"):
                raise ConfigError(f"data.extra_eval.{name}: '{name}' is a reserved split name; set data.{name} instead")
            if not isinstance(path, str) or not path.strip():
                raise ConfigError(f"data.extra_eval.{name} must be an annotation file path, got {path!r}")
        check_number("data.val_fraction", self.val_fraction, 0.0, 0.9)
        if self.val_fraction > 0 and self.val is not None:
            raise ConfigError(
                f"data.val_fraction={self.val_fraction} carves a val split out of train, but data.val is set "
                f"({self.val!r}); use one of them (set data.val=null or data.val_fraction=0)"
            )
        if self.format is not None:
            check_choice("data.format", self.format, ANNOTATION_FORMATS)
        if isinstance(self.durations, str):
            self.durations = [self.durations]
        if not isinstance(self.durations, (list, tuple)) or not all(isinstance(p, str) for p in self.durations):
            raise ConfigError(f"data.durations must be a list of CSV paths, got {self.durations!r}")
        self.durations = list(self.durations)
        check_bool("data.skip_missing_videos", self.skip_missing_videos)
        check_bool("data.cache_features", self.cache_features)
        check_int("data.max_words", self.max_words, 1)
        check_choice("data.syntax", self.syntax, SYNTAX_MODES)
        if self.extraction is None:
            self.extraction = ExtractionSettings()
        elif isinstance(self.extraction, Mapping):
            self.extraction = ExtractionSettings.from_mapping(self.extraction, "data.extraction")
        elif isinstance(self.extraction, ExtractionSettings):
            self.extraction.check("data.extraction.")
        else:
            raise ConfigError(f"data.extraction must be a mapping of extraction settings, got {self.extraction!r}")

    def resolve(self, path: str) -> str:
        """``path`` joined to ``root`` unless it is absolute."""
        return path if os.path.isabs(path) else os.path.join(self.root, path) if self.root else path

    def durations_paths(self) -> list[str]:
        return [self.resolve(path) for path in self.durations]

    def eval_splits(self) -> dict[str, str]:
        """Every evaluated split as ``{name: resolved annotation path}``: val, test, then ``extra_eval``
        (a ``val`` made by ``val_fraction`` has no file and is not listed)."""
        splits = {name: self.resolve(path) for name, path in (("val", self.val), ("test", self.test)) if path}
        splits.update({name: self.resolve(path) for name, path in self.extra_eval.items()})
        return splits


@dataclass
class TrainConfig:
    """How to optimise, evaluate and save.

    Args:
        epochs: passes over the training split (default 20).
        batch_size: queries per optimiser step, over all processes (default 16; each of W torchrun processes
            takes ``batch_size / W``, which must divide evenly).
        eval_batch_size: queries per forward pass when evaluating (default 64).
        lr: peak learning rate of AdamW (default 1e-3).
        weight_decay: AdamW decoupled weight decay, not applied to biases and normalisation weights
            (default 1e-4; 0 gives Adam, as VLG-Net and 2D-TAN train).
        betas: AdamW betas (default [0.9, 0.999]).
        warmup_epochs: linear warm-up from ``warmup_start_factor * lr`` to ``lr`` over this many epochs,
            counted in optimiser steps (default 0.5; 0 = none).
        warmup_start_factor: see ``warmup_epochs`` (default 0.01).
        schedule: after warm-up: ``cosine`` (to ``min_lr_ratio * lr`` at the last step), ``step`` (times
            ``step_gamma`` every ``step_size`` epochs, VLG-Net's StepLR) or ``constant`` (default ``cosine``).
        min_lr_ratio: floor of the cosine schedule as a fraction of ``lr`` (default 0.01).
        step_size, step_gamma: the ``step`` schedule (default 20 epochs, 0.1).
        grad_clip: clip the global gradient L2 norm to this value; 0 = off (default 5.0).
        seed: seeds parameters, dropout and the data order (each epoch's order is a function of seed and epoch).
        deterministic: ``torch.use_deterministic_algorithms`` (warn-only for ops that have no deterministic
            kernel) and no cuDNN autotuning (default true).
        eval_every: evaluate every N epochs; the last epoch is always evaluated (default 1).
        best_metric: metric that picks the ``best`` checkpoint, higher is better (default ``R1@0.5``).
        best_split: split whose ``best_metric`` picks ``best``: ``val`` (default) or another evaluated split.
        test_every_epoch: evaluate every split at every evaluation (default true). False: only ``best_split``
            until the last epoch, which evaluates every split; then the ``best`` checkpoint is scored on the
            other splits once. The test figures are then those of the chosen model only, and each epoch skips
            the test passes.
        nms: NMS IoU threshold when decoding spans (default 0.5); null = none.
        top_k: spans kept per query for evaluation after NMS (default 10, what mAP reads).
        num_workers: DataLoader worker processes (default 0).
        amp: mixed precision on CUDA: ``none``, ``bf16`` or ``fp16`` (with a gradient scaler); ignored on CPU.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; torchrun processes use ``cuda:LOCAL_RANK``.
        output_dir: the run folder (``--output-dir`` overrides it).
        stop_after_epoch: stop (as if killed) after saving this epoch; ``--resume`` continues. For tests and
            time-sliced clusters (default null).
        progress: tqdm progress bars on stderr (default true).
        crop_probability: chance that a training sample's video is cropped to a random window that still holds
            the whole moment (:class:`grounding.training.augment.TemporalCrop`), a fresh crop every epoch;
            0 = never (default 0.0).
    """

    epochs: int = 20
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_epochs: float = 0.5
    warmup_start_factor: float = 0.01
    schedule: str = "cosine"
    min_lr_ratio: float = 0.01
    step_size: int = 20
    step_gamma: float = 0.1
    grad_clip: float = 5.0
    seed: int = 0
    deterministic: bool = True
    eval_every: int = 1
    best_metric: str = "R1@0.5"
    best_split: str = "val"
    test_every_epoch: bool = True
    nms: float | None = 0.5
    top_k: int = 10
    num_workers: int = 0
    amp: str = "none"
    device: str = "auto"
    output_dir: str = "runs/rendered-world"
    stop_after_epoch: int | None = None
    progress: bool = True
    crop_probability: float = 0.0

    def __post_init__(self) -> None:
        from grounding.eval.metrics import moment_metric_keys

        check_int("train.epochs", self.epochs, 1)
        check_int("train.batch_size", self.batch_size, 1)
        check_int("train.eval_batch_size", self.eval_batch_size, 1)
        check_number("train.lr", self.lr, 0.0, 10.0, low_open=True)
        check_number("train.weight_decay", self.weight_decay, 0.0, 10.0)
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ConfigError(f"train.betas must be a list of two numbers in [0, 1), got {self.betas!r}")
        self.betas = [check_number(f"train.betas[{i}]", beta, 0.0, 0.9999999) for i, beta in enumerate(self.betas)]
        check_number("train.warmup_epochs", self.warmup_epochs, 0.0, float(self.epochs))
        check_number("train.warmup_start_factor", self.warmup_start_factor, 0.0, 1.0)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_number("train.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_int("train.step_size", self.step_size, 1)
        check_number("train.step_gamma", self.step_gamma, 0.0, 1.0, low_open=True)
        check_number("train.grad_clip", self.grad_clip, 0.0)
        check_int("train.seed", self.seed, 0)
        check_bool("train.deterministic", self.deterministic)
        check_int("train.eval_every", self.eval_every, 1)
        check_bool("train.test_every_epoch", self.test_every_epoch)
        known_metrics = moment_metric_keys()
        if self.best_metric not in known_metrics:
            check_choice("train.best_metric", self.best_metric, known_metrics)
        if not isinstance(self.best_split, str) or not self.best_split:
            raise ConfigError(f"train.best_split must be a split name such as 'val', got {self.best_split!r}")
        if self.nms is not None:
            check_number("train.nms", self.nms, 0.0, 1.0)
        check_int("train.top_k", self.top_k, 1)
        check_int("train.num_workers", self.num_workers, 0)
        check_choice("train.amp", self.amp, AMP_MODES)
        check_choice("train.device", self.device, DEVICES)
        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            raise ConfigError(f"train.output_dir must be a folder path, got {self.output_dir!r}")
        if self.stop_after_epoch is not None:
            check_int("train.stop_after_epoch", self.stop_after_epoch, 1)
        check_bool("train.progress", self.progress)
        check_number("train.crop_probability", self.crop_probability, 0.0, 1.0)


@dataclass
class ExperimentConfig:
    """One training run: the model, its data and how to train it."""

    model: GroundingConfig = field(default_factory=GroundingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        splits = set(self.data.eval_splits()) | ({"val"} if self.data.val_fraction > 0 else set())
        if self.train.best_split not in splits:
            available = ", ".join(sorted(splits)) or "none"
            raise ConfigError(
                f"train.best_split is '{self.train.best_split}', but the evaluated splits are: {available}; "
                "set data.val (or data.val_fraction) or pick one of those (selecting on test flatters the test score)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists (YAML/JSON ready); :meth:`from_dict` inverts it."""
        return {
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> ExperimentConfig:
        """Build from (possibly partial) nested dicts; missing keys keep their defaults, old key names
        (``data.backbone``, ...) move to their new place (``data.extraction.backbone``).

        Raises:
            ConfigError: an unknown key (naming the closest known one) or a value a dataclass refuses.
        """
        values = rename_old_keys(values, source)
        defaults = default_tree()
        check_known_keys(values, defaults, source)
        merged = merge_trees(defaults, values)
        model_values = dict(values.get("model") or {})
        preset = model_values.pop("preset", None)
        if preset is not None:
            if not isinstance(preset, str):
                raise ConfigError(f"{source}: model.preset must be a preset name, got {preset!r}")
            model_values = merge_trees(GroundingConfig.preset(preset).to_dict(), model_values)
        else:
            model_values = merged["model"]
            model_values.pop("preset", None)
        return cls(
            model=GroundingConfig.from_dict(model_values),
            data=DataConfig(**merged["data"]),
            train=TrainConfig(**merged["train"]),
        )


def default_tree() -> dict[str, Any]:
    """The defaults of every section as nested dicts: the tree of known keys."""
    return {
        "model": {"preset": None, **GroundingConfig().to_dict()},
        "data": dataclasses.asdict(DataConfig()),
        "train": dataclasses.asdict(TrainConfig()),
    }


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.span.pooling_counts=[15,8]"]`` -> a nested update tree.

    Raises:
        ConfigError: an item without ``=``, an empty key, or an unknown key (with the closest known key).
    """
    return overrides_tree(overrides, default_tree())


def load_config(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read an experiment config: defaults, then ``path`` (with its ``base`` files), then ``overrides``.

    Args:
        path: a YAML file, or None for the defaults alone.
        overrides: ``key.sub=value`` strings, values parsed as YAML.

    Raises:
        InputError: the file does not exist.
        ConfigError: invalid YAML, an unknown key (naming the closest known key), or an invalid value.
    """
    tree = load_tree(path, default_tree()) if path is not None else {}
    tree = merge_trees(tree, parse_overrides(overrides))
    source = str(path) if path is not None else "config"
    return ExperimentConfig.from_dict(tree, source=source)


def config_to_yaml(config: ExperimentConfig) -> str:
    """The resolved config as YAML text (sections in order, keys in dataclass order)."""
    return dump_yaml(config.to_dict())


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (:func:`grounding.files.write_text_atomic`: a crash leaves the old file)."""
    write_text_atomic(path, config_to_yaml(config))


def config_differences(saved: ExperimentConfig, current: ExperimentConfig, ignore: Iterable[str] = ()) -> list[str]:
    """Keys whose values differ, as ``"key: saved -> current"`` lines (keys in ``ignore`` skipped)."""
    skip = set(ignore)
    old, new = flatten(saved.to_dict()), flatten(current.to_dict())
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in old
        if key not in skip and old.get(key) != new.get(key)
    ]
