"""The trainer: AdamW + warm-up and a cosine or step schedule, evaluation with the benchmark metrics, checkpoints,
exact resume, torchrun.

A run folder (``train.output_dir``)::

    config.yaml             the resolved config (defaults + base files + file + overrides)
    log.csv                 one row per epoch: epoch, step, lr, seconds, loss parts, <split>/<metric> ...
    metrics/epoch_NNN.json  the same numbers per epoch, metrics of every evaluated split (percent); with
                            train.test_every_epoch off, only best_split except for the last and the best epoch
    last/                   model + training state after the latest epoch (what --resume continues from)
    best/                   model with the best ``train.best_metric`` on ``train.best_split`` so far
    skipped.json            queries left out by data.skip_missing_videos (only when there are any)

Reproducibility: parameters, dropout and the data order come from ``train.seed``; each epoch's order is a
function of (seed, epoch) (:class:`~torch.utils.data.DistributedSampler`, also for one process), and the RNG
states are saved with ``last``. A run stopped after any epoch and resumed reaches the same weights and metrics
as an uninterrupted one (on the same device; tested on CPU).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from grounding.data.annotations import detect_format, read_annotations
from grounding.data.features import FeatureStore, open_feature_store
from grounding.data.records import AnnotationSet
from grounding.errors import ConfigError, GroundingError, InputError
from grounding.eval.metrics import evaluate, moment_metric_keys
from grounding.eval.predictions import Predictions
from grounding.model import GroundingModel, compute_loss, decode_spans
from grounding.text.encoders import create_text_encoder
from grounding.training.augment import TemporalCrop
from grounding.training.checkpoint import (
    METRICS_FILE,
    PIPELINE_KEY,
    PipelineInfo,
    load_training_state,
    replace_directory,
    rng_state,
    save_training_state,
    set_rng_state,
    staging_directory,
    write_json,
)
from grounding.training.config import (
    RESUME_MUTABLE_KEYS,
    ExperimentConfig,
    TrainConfig,
    config_differences,
    load_config,
    save_config,
)
from grounding.training.data import (
    GroundingBatch,
    GroundingDataset,
    SentenceBank,
    SkippedQuery,
    collate_samples,
    split_by_videos,
)
from grounding.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    gather_objects,
    init_distributed,
)
from grounding.training.optim import AdamW

LOSS_PARTS = ("total", "span", "boundary", "inside", "contrastive")
EXTRACTION_ATTRS = {  # DataConfig key -> attribute name written by grounding extract
    "backbone": "backbone",
    "clip_seconds": "clip_seconds",
    "frames_per_clip": "frames_per_clip",
    "frame_size": "size",
    "resize": "resize",
}


@dataclass
class TrainResult:
    """What a call to :func:`train` did.

    Attributes:
        run_dir: the run folder.
        epochs_done: the last finished epoch (1-based).
        stopped_early: True when ``train.stop_after_epoch`` ended the run before ``train.epochs``.
        best_epoch, best_value: the epoch and value of ``train.best_metric`` behind ``best/`` (None before any).
        metrics: the last evaluation, ``{split: {metric: value}}`` (percent).
        skipped: queries left out by ``data.skip_missing_videos``.
        rank: this process's rank under torchrun (0 without it); only rank 0 should report.
    """

    run_dir: Path
    epochs_done: int
    stopped_early: bool
    best_epoch: int | None
    best_value: float | None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: list[SkippedQuery] = field(default_factory=list)
    rank: int = 0


@dataclass
class SplitData:
    """One split: its dataset (queries with features) and every annotated query (the evaluation's denominator)."""

    name: str
    dataset: GroundingDataset
    annotations: AnnotationSet


# --- seeding, schedules -------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _use_deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, without the import of ``torch._inductor`` (and with it
    ``torch._dynamo``: ~75 MB resident, ~1 s) that it makes to set inductor's flag too. That flag only concerns
    compiled graphs, which the trainer never builds, so it is left alone unless something has loaded inductor."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` (warn-only) and no cuDNN autotuning, restored on exit."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    previous_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        _use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        _use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous_cudnn


def lr_multiplier(train: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """``step -> lr / train.lr`` for the configured warm-up and schedule (``step`` = optimiser steps taken).

    - warm-up: linear from ``warmup_start_factor`` to 1 over ``round(warmup_epochs * steps_per_epoch)`` steps;
    - ``cosine``: from 1 down to ``min_lr_ratio`` at the last step;
    - ``step``: ``step_gamma ** (epoch // step_size)`` with ``epoch = step // steps_per_epoch`` (0-based);
    - ``constant``: 1.
    """
    warmup_steps = int(round(train.warmup_epochs * steps_per_epoch))
    total_steps = train.epochs * steps_per_epoch

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return train.warmup_start_factor + (1.0 - train.warmup_start_factor) * step / warmup_steps
        if train.schedule == "constant":
            return 1.0
        if train.schedule == "step":
            return train.step_gamma ** ((step // steps_per_epoch) // train.step_size)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return train.min_lr_ratio + (1.0 - train.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices and kernels, none on biases, norms and other vectors."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --- evaluation ---------------------------------------------------------------------------------------------------
def _forward(model: nn.Module, batch: GroundingBatch) -> Any:
    return model(batch.clip_feats, batch.clip_mask, batch.word_feats, batch.word_mask, batch.word_edge_index)


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@torch.no_grad()
def predict_moments(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    top_k: int,
    nms: float | None,
    amp: str = "none",
    progress: bool = False,
    desc: str = "predict",
) -> dict[int, np.ndarray]:
    """Top spans of every query in ``loader``: ``{qid: (K, 3) float64 [start, end, score]}``, seconds, best first."""
    was_training = model.training
    model.eval()
    moments: dict[int, np.ndarray] = {}
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        batch = batch.to(device)
        with _autocast(device, amp):
            output = _forward(model, batch)
        spans = decode_spans(output, batch.durations, top_k=top_k, nms_threshold=nms)
        for qid, query_spans in zip(batch.qids, spans):
            moments[qid] = np.asarray([list(span) for span in query_spans], dtype=np.float64).reshape(-1, 3)
    model.train(was_training)
    return moments


# --- logs ---------------------------------------------------------------------------------------------------------
def csv_columns(splits: list[str]) -> list[str]:
    """log.csv's header: epoch, step, lr, seconds, loss parts, then ``<split>/<metric>`` for every split."""
    columns = ["epoch", "step", "lr", "seconds"] + [f"loss_{part}" for part in LOSS_PARTS]
    for split in splits:
        columns += [f"{split}/{metric}" for metric in moment_metric_keys()]
    return columns


def write_csv_log(run_dir: Path, splits: list[str]) -> None:
    """Rebuild ``log.csv`` from ``metrics/epoch_*.json`` (so a resumed run never repeats or loses a row)."""
    rows = []
    for path in sorted((run_dir / "metrics").glob("epoch_*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        row: dict[str, Any] = {
            "epoch": record["epoch"], "step": record["step"], "lr": record["lr"], "seconds": record["seconds"],
        }
        row.update({f"loss_{part}": value for part, value in record["loss"].items()})
        for split, metrics in record.get("metrics", {}).items():
            row.update({f"{split}/{metric}": value for metric, value in metrics.items()})
        rows.append(row)
    tmp = run_dir / "log.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=csv_columns(splits), extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, run_dir / "log.csv")


def _note(message: str, context: DistributedContext) -> None:
    if context.is_main:
        print(f"grounding train: {message}", file=sys.stderr)


# --- the trainer --------------------------------------------------------------------------------------------------
class Trainer:
    """Train one experiment; see the module docstring for what it writes.

    Args:
        config: the resolved :class:`ExperimentConfig`.
        resume: continue the run in ``train.output_dir`` from its ``last`` checkpoint.
    """

    def __init__(self, config: ExperimentConfig, resume: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.run_dir = Path(config.train.output_dir)
        self.context = DistributedContext()

    # ---- setup ----
    def _check_run_dir(self) -> None:
        last = self.run_dir / "last"
        has_last = last.is_dir() or last.with_name("last.old").is_dir()
        if not self.resume:
            if has_last:
                raise ConfigError(
                    f"{self.run_dir} already holds a run (its last/ checkpoint exists); pass --resume to continue it, "
                    "or choose another --output-dir"
                )
            return
        if not has_last:
            raise InputError(f"--resume: {self.run_dir} has no last/ checkpoint to resume; start it without --resume")
        saved_path = self.run_dir / "config.yaml"
        if not saved_path.is_file():
            raise InputError(f"--resume: {saved_path} is missing; the run folder is incomplete")
        saved = load_config(saved_path)
        differences = config_differences(saved, self.config, ignore=RESUME_MUTABLE_KEYS)
        if differences:
            shown = "; ".join(differences[:5]) + (f"; ... ({len(differences)} in all)" if len(differences) > 5 else "")
            raise ConfigError(
                f"--resume: the run in {self.run_dir} was made with another config ({shown}); resume with the "
                f"same config and overrides (its config.yaml), or start a new run in another --output-dir"
            )

    def _read_split(self, path: str) -> AnnotationSet:
        data = self.config.data
        file_format = data.format or detect_format(path)
        durations = data.durations_paths() if file_format == "charades-sta" and data.durations else None
        annotations = read_annotations(path, format=file_format, durations=durations)
        if annotations.report.dropped:
            _note(f"{path}: the reader dropped {len(annotations.report.dropped)} queries (e.g. "
                  f"{annotations.report.dropped[0]})", self.context)
        return annotations

    def _build_data(self, store: FeatureStore) -> tuple[SplitData, dict[str, SplitData]]:
        config, progress = self.config, self.config.train.progress and self.context.is_main
        data = config.data
        train_set = self._read_split(data.resolve(data.train))
        eval_sets = {name: self._read_split(path) for name, path in data.eval_splits().items()}
        if data.val_fraction > 0:
            train_records, val_records = split_by_videos(train_set.records, data.val_fraction, config.train.seed)
            source = f"{train_set.path} (val: {len({r.video_id for r in val_records})} held-out videos)"
            eval_sets = {"val": AnnotationSet(source, train_set.format, val_records), **eval_sets}
            train_set = AnnotationSet(train_set.path, train_set.format, train_records, train_set.report)
        encoder = create_text_encoder(data.text_encoder, max_words=data.max_words, syntax=data.syntax)
        if encoder.dim != config.model.text.input_dim:
            raise ConfigError(
                f"text encoder '{data.text_encoder}' gives {encoder.dim}-d word features, but model.text.input_dim is "
                f"{config.model.text.input_dim}; set model.text.input_dim={encoder.dim}"
            )
        encoder = encoder.to(self.context.device)
        sentences = [record.sentence for records in (train_set, *eval_sets.values()) for record in records]
        bank = SentenceBank(encoder, sentences, progress=progress)
        if bank.num_truncated:
            _note(f"{bank.num_truncated} sentences were cut to data.max_words={data.max_words} tokens", self.context)
        del encoder

        def dataset(name: str, annotations: AnnotationSet) -> SplitData:
            crop_probability = config.train.crop_probability if name == "train" else 0.0
            crop = TemporalCrop(crop_probability) if crop_probability > 0 else None
            built = GroundingDataset(
                annotations.records, store, bank, config.model.num_clips, split=name, source=annotations.path,
                skip_missing_videos=data.skip_missing_videos, cache_features=data.cache_features, progress=progress,
                crop=crop, seed=config.train.seed,
            )
            return SplitData(name, built, annotations)

        return dataset("train", train_set), {name: dataset(name, s) for name, s in eval_sets.items()}

    def _pipeline_info(self, store: FeatureStore) -> PipelineInfo:
        """Text encoder and extraction settings for inference: the config's, else the feature file's attributes."""
        data, train = self.config.data, self.config.train
        attrs = store.attrs(store.video_ids()[0]) if len(store) else {}
        settings: dict[str, Any] = {}
        for key, attr in EXTRACTION_ATTRS.items():
            configured = getattr(data, key, None)
            found = attrs.get(attr)
            if configured is not None and found is not None and configured != found:
                raise ConfigError(
                    f"data.{key} is {configured!r}, but {store.path} was extracted with {attr}={found!r}; drop the "
                    f"setting (it is read from the file) or re-extract the features"
                )
            settings[key] = configured if configured is not None else found
        return PipelineInfo(
            text_encoder=data.text_encoder, max_words=data.max_words, syntax=data.syntax,
            backbone=settings["backbone"],
            clip_seconds=None if settings["clip_seconds"] is None else float(settings["clip_seconds"]),
            frames_per_clip=None if settings["frames_per_clip"] is None else int(settings["frames_per_clip"]),
            frame_size=None if settings["frame_size"] is None else int(settings["frame_size"]),
            resize=settings["resize"], nms=train.nms,
        )

    def _loader(self, dataset: GroundingDataset, batch_size: int, shuffle: bool, epoch: int = 0) -> DataLoader:
        context, train = self.context, self.config.train
        sampler = DistributedSampler(
            dataset, num_replicas=context.world_size, rank=context.rank, shuffle=shuffle, seed=train.seed,
            drop_last=False,
        )
        sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(train.seed * 100_003 + epoch)  # worker seeds only
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=train.num_workers,
            collate_fn=collate_samples, generator=generator, pin_memory=context.device.type == "cuda",
            persistent_workers=False,
        )

    # ---- checkpoints ----
    def _save_model(self, model: GroundingModel, folder: Path, pipeline: PipelineInfo, metrics: dict[str, Any]) -> None:
        model.save_pretrained(folder, metadata={PIPELINE_KEY: pipeline.to_json()})
        write_json(folder / METRICS_FILE, metrics)

    def _write_checkpoint(self, name: str, model: GroundingModel, pipeline: PipelineInfo, metrics: dict[str, Any],
                          state: Mapping[str, Any] | None) -> None:
        target = self.run_dir / name
        staged = staging_directory(target)
        self._save_model(model, staged, pipeline, metrics)
        if state is not None:
            save_training_state(staged, state)
        replace_directory(staged, target)

    # ---- the run ----
    def run(self) -> TrainResult:
        """Train (or resume) to ``train.epochs`` (or ``train.stop_after_epoch``); see :class:`TrainResult`."""
        self.context = init_distributed(self.config.train.device)
        try:
            with deterministic_mode(self.config.train.deterministic, self.context.device):
                return self._run()
        finally:
            cleanup(self.context)

    def _run(self) -> TrainResult:
        config, context = self.config, self.context
        train_cfg, data_cfg = config.train, config.data
        self._check_run_dir()  # read-only, so every rank checks and fails alike (no rank waits on a barrier)
        if train_cfg.batch_size % context.world_size:
            raise ConfigError(
                f"train.batch_size={train_cfg.batch_size} must be a multiple of the {context.world_size} torchrun "
                "processes (each takes an equal share)"
            )
        if train_cfg.amp != "none" and context.device.type != "cuda":
            _note(f"note: train.amp={train_cfg.amp} is ignored on {context.device.type}; training in float32", context)
        seed_everything(train_cfg.seed)

        store = open_feature_store(data_cfg.resolve(data_cfg.features))
        try:
            if store.dim != config.model.input_dim:
                raise ConfigError(
                    f"{store.path} holds {store.dim}-d clip features, but model.input_dim is {config.model.input_dim}; "
                    f"set model.input_dim={store.dim} (or use features of the backbone the config expects)"
                )
            train_split, eval_splits = self._build_data(store)
            pipeline = self._pipeline_info(store)
            return self._train(train_split, eval_splits, pipeline)
        finally:
            store.close()

    def _train(self, train_split: SplitData, eval_splits: dict[str, SplitData], pipeline: PipelineInfo) -> TrainResult:
        config, context = self.config, self.context
        train_cfg = config.train
        progress = train_cfg.progress and context.is_main
        device = context.device
        skipped = train_split.dataset.skipped + [q for split in eval_splits.values() for q in split.dataset.skipped]
        if skipped:
            _note(f"{len(skipped)} queries skipped (video not in the feature file); see skipped.json", context)

        model = GroundingModel(config.model).to(device)
        if not self.resume:  # a resumed run takes the statistics from its checkpoint
            model.fit_input_statistics(*train_split.dataset.input_chunks())
        wrapped: nn.Module = model
        if context.is_distributed:
            # DDP broadcasts buffers from rank 0 and cannot send sparse ones; those are constants built from the
            # config (the same on every rank), so they are left out of the sync.
            sparse_buffers = [name for name, buffer in model.named_buffers() if buffer.layout != torch.strided]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, sparse_buffers)
            # Some parameters get no gradient in some settings (the retrieval embeddings when the contrastive
            # loss weight is 0) but the set never changes during a run: a static graph lets DDP learn it once.
            wrapped = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
            )
            backend = torch.distributed.get_backend()
            _note(f"DistributedDataParallel over {context.world_size} process(es), {backend} on {device}", context)
        per_rank_batch = train_cfg.batch_size // context.world_size
        steps_per_epoch = len(self._loader(train_split.dataset, per_rank_batch, shuffle=True))
        optimizer = AdamW(
            parameter_groups(model, train_cfg.weight_decay), lr=train_cfg.lr, betas=tuple(train_cfg.betas)
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(train_cfg, steps_per_epoch))
        use_amp = device.type == "cuda" and train_cfg.amp != "none"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and train_cfg.amp == "fp16")

        start_epoch, step = 1, 0
        best_value: float | None = None
        best_epoch: int | None = None
        if self.resume:
            last = self.run_dir / "last"
            if not last.is_dir():
                last = last.with_name("last.old")
            resumed = GroundingModel.from_pretrained(last, map_location=device)
            model.load_state_dict(resumed.state_dict())
            state = load_training_state(last)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
            best_value, best_epoch = state["best_value"], state["best_epoch"]
            if context.is_main:  # forget epochs logged after the checkpoint (a kill between log and save)
                for stale in (self.run_dir / "metrics").glob("epoch_*.json"):
                    if int(stale.stem.split("_")[1]) >= start_epoch:
                        stale.unlink()
            _note(f"resuming {self.run_dir} after epoch {start_epoch - 1} (step {step})", context)
        elif context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.run_dir / "config.yaml")
            (self.run_dir / "metrics").mkdir(exist_ok=True)
            for stale in (self.run_dir / "metrics").glob("epoch_*.json"):  # a run killed before its first save
                stale.unlink()
        if context.is_main and skipped:
            write_json(self.run_dir / "skipped.json", [vars(query) for query in skipped])

        split_names = list(eval_splits)
        last_metrics: dict[str, dict[str, float]] = {}
        epochs_done = start_epoch - 1
        stopped_early = False
        for epoch in range(start_epoch, train_cfg.epochs + 1):
            started = time.perf_counter()
            train_split.dataset.set_epoch(epoch)
            loader = self._loader(train_split.dataset, per_rank_batch, shuffle=True, epoch=epoch)
            wrapped.train()
            sums = torch.zeros(len(LOSS_PARTS) + 1, dtype=torch.float64)
            bar = tqdm(loader, desc=f"epoch {epoch}/{train_cfg.epochs}", unit="batch", disable=not progress,
                       leave=False)
            for batch in bar:
                batch = batch.to(device, non_blocking=True)
                with _autocast(device, train_cfg.amp):
                    output = _forward(wrapped, batch)
                    loss, parts = compute_loss(
                        output, batch.target_windows, batch.durations, config.model.loss, batch.video_ids
                    )
                if not torch.isfinite(loss):
                    raise GroundingError(
                        f"the loss became {float(loss)} at epoch {epoch}, step {step + 1}; lower train.lr, keep "
                        "train.grad_clip > 0, or check the features for extreme values"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if train_cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                size = len(batch)
                sums += torch.tensor([float(parts[part]) * size for part in LOSS_PARTS] + [size], dtype=torch.float64)
                bar.set_postfix(loss=f"{float(parts['total']):.4f}", refresh=False)
            bar.close()
            sums = all_reduce_mean(sums, context) * context.world_size
            loss_means = {part: float(sums[i] / max(sums[-1], 1)) for i, part in enumerate(LOSS_PARTS)}

            metrics: dict[str, dict[str, float]] = {}
            if epoch % train_cfg.eval_every == 0 or epoch == train_cfg.epochs:
                every_split = train_cfg.test_every_epoch or epoch == train_cfg.epochs
                metrics = self._evaluate(
                    model, eval_splits if every_split else {train_cfg.best_split: eval_splits[train_cfg.best_split]}
                )
                last_metrics = metrics
            record = {
                "epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - started, 3), "loss": loss_means, "metrics": metrics,
            }
            if context.is_main:
                write_json(self.run_dir / "metrics" / f"epoch_{epoch:03d}.json", record)
                write_csv_log(self.run_dir, split_names)
                value = metrics.get(train_cfg.best_split, {}).get(train_cfg.best_metric)
                if value is not None and (best_value is None or value > best_value):
                    best_value, best_epoch = float(value), epoch
                    self._write_checkpoint("best", model, pipeline, record, None)
                state = {
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "rng": rng_state(), "epoch": epoch, "step": step,
                    "best_value": best_value, "best_epoch": best_epoch,
                }
                self._write_checkpoint("last", model, pipeline, record, state)
                self._report_epoch(record, best_epoch)
            best_value, best_epoch = broadcast_object((best_value, best_epoch), context)
            barrier(context)
            epochs_done = epoch
            stop_after = train_cfg.stop_after_epoch
            if stop_after is not None and stop_after <= epoch < train_cfg.epochs:
                stopped_early = True
                _note(f"stopped after epoch {epoch} (train.stop_after_epoch); continue with --resume", context)
                break
        if not stopped_early and not train_cfg.test_every_epoch and best_epoch is not None:
            self._complete_best_metrics(best_epoch, eval_splits, split_names)
        return TrainResult(
            self.run_dir, epochs_done, stopped_early, best_epoch, best_value, last_metrics, skipped, context.rank
        )

    def _complete_best_metrics(self, best_epoch: int, eval_splits: dict[str, SplitData], split_names: list[str]) -> None:
        """With ``train.test_every_epoch`` off: score ``best/`` on the splits its epoch did not evaluate, and add
        them to ``best/metrics.json``, that epoch's ``metrics/epoch_NNN.json`` and ``log.csv``."""
        context = self.context
        record_path = self.run_dir / "metrics" / f"epoch_{best_epoch:03d}.json"
        record = broadcast_object(
            json.loads(record_path.read_text(encoding="utf-8")) if context.is_main else None, context
        )
        missing = {name: split for name, split in eval_splits.items() if name not in record["metrics"]}
        if not missing:
            return
        best = GroundingModel.from_pretrained(self.run_dir / "best", map_location=context.device)
        record["metrics"].update(self._evaluate(best, missing))
        if context.is_main:
            write_json(record_path, record)
            write_json(self.run_dir / "best" / METRICS_FILE, record)
            write_csv_log(self.run_dir, split_names)
            self._report_epoch(record, best_epoch, prefix="best checkpoint: ")
        barrier(context)

    def _evaluate(self, model: GroundingModel, splits: dict[str, SplitData]) -> dict[str, dict[str, float]]:
        """Metrics of every split: each rank predicts its shard, every rank gathers all predictions and scores
        them, so the figures are the same everywhere."""
        train_cfg, context = self.config.train, self.context
        per_rank = max(1, train_cfg.eval_batch_size // context.world_size)
        results: dict[str, dict[str, float]] = {}
        for name, split in splits.items():
            loader = self._loader(split.dataset, per_rank, shuffle=False)
            moments = predict_moments(
                model, loader, context.device, train_cfg.top_k, train_cfg.nms, train_cfg.amp,
                progress=train_cfg.progress and context.is_main, desc=f"eval {name}",
            )
            merged: dict[int, np.ndarray] = {}
            for part in gather_objects(moments, context):
                merged.update(part)
            # Every annotated query counts: one whose video was skipped has no prediction and is a miss.
            scored = evaluate(split.annotations, Predictions(moments=merged), nms_threshold=None)
            results[name] = dict(scored)
        return results

    def _report_epoch(self, record: Mapping[str, Any], best_epoch: int | None, prefix: str = "") -> None:
        parts = [f"{prefix}epoch {record['epoch']}", f"loss {record['loss']['total']:.4f}", f"lr {record['lr']:.3g}"]
        metric = self.config.train.best_metric
        for split, metrics in record["metrics"].items():
            parts.append(f"{split} {metric} {metrics[metric]:.2f}")
        parts.append(f"{record['seconds']:.1f}s")
        if best_epoch == record["epoch"]:
            parts.append("(best)")
        if self.config.train.progress:
            print("grounding train: " + ", ".join(parts), file=sys.stderr)


def train(config: ExperimentConfig, resume: bool = False) -> TrainResult:
    """Train the experiment ``config`` (see :class:`Trainer`); ``resume`` continues its run folder."""
    return Trainer(config, resume=resume).run()
