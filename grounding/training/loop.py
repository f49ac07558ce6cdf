"""The trainer: AdamW + warm-up and a cosine or step schedule, evaluation with the benchmark metrics (through
:func:`grounding.inference.predict_moments`, what ``grounding predict`` runs), checkpoints, exact resume, torchrun.

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

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from grounding.data.features import open_feature_store
from grounding.errors import ConfigError, GroundingError, InputError
from grounding.eval.metrics import evaluate
from grounding.eval.predictions import Predictions
from grounding.inference.pipeline import PIPELINE_KEY, PipelineInfo
from grounding.inference.predict import autocast_for, predict_moments
from grounding.model import GroundingModel, GroundingOutput, compute_loss
from grounding.model.losses import RankingNegatives
from grounding.training.checkpoint import (
    METRICS_FILE,
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
    config_differences,
    load_config,
    save_config,
)
from grounding.training.data import GroundingDataset, SkippedQuery, collate_samples
from grounding.training.forward import TrainingForward, negative_pairs
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
from grounding.training.run_log import LOSS_PARTS, csv_columns, write_csv_log
from grounding.training.schedule import deterministic_mode, lr_multiplier, parameter_groups, seed_everything
from grounding.training.splits import SplitData, build_splits, pipeline_info

__all__ = ["SplitData", "TrainResult", "Trainer", "csv_columns", "lr_multiplier", "train"]


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


def _note(message: str, context: DistributedContext) -> None:
    if context.is_main:
        print(f"grounding train: {message}", file=sys.stderr)


@dataclass
class _RunState:
    """What changes while a run trains: the model (and its DDP wrapper), the optimiser, schedule and scaler,
    the counters and the best value so far."""

    model: GroundingModel
    wrapped: nn.Module
    optimizer: AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    pipeline: PipelineInfo
    per_rank_batch: int
    epoch: int = 0
    step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None


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

    def _note(self, message: str) -> None:
        _note(message, self.context)

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
            progress = config.train.progress and context.is_main
            train_split, eval_splits = build_splits(config, store, context.device, progress, self._note)
            pipeline = pipeline_info(config, store)
            return self._train(train_split, eval_splits, pipeline)
        finally:
            store.close()

    def _train(self, train_split: SplitData, eval_splits: dict[str, SplitData], pipeline: PipelineInfo) -> TrainResult:
        config, context = self.config, self.context
        train_cfg = config.train
        skipped = train_split.dataset.skipped + [q for split in eval_splits.values() for q in split.dataset.skipped]
        if skipped:
            _note(f"{len(skipped)} queries skipped (video not in the feature file); see skipped.json", context)
        run = self._start_run(train_split, pipeline)
        if context.is_main and skipped:
            write_json(self.run_dir / "skipped.json", [vars(query) for query in skipped])
        split_names = list(eval_splits)
        last_metrics: dict[str, dict[str, float]] = {}
        stopped_early = False
        for epoch in range(run.epoch + 1, train_cfg.epochs + 1):
            started = time.perf_counter()
            loss_means = self._train_epoch(run, train_split, epoch)
            metrics = self._evaluate_epoch(run.model, eval_splits, epoch)
            last_metrics = metrics or last_metrics
            record = {
                "epoch": epoch, "step": run.step, "lr": run.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - started, 3), "loss": loss_means, "metrics": metrics,
            }
            self._save_epoch(run, record, split_names)
            run.epoch = epoch
            stop_after = train_cfg.stop_after_epoch
            if stop_after is not None and stop_after <= epoch < train_cfg.epochs:
                stopped_early = True
                _note(f"stopped after epoch {epoch} (train.stop_after_epoch); continue with --resume", context)
                break
        if not stopped_early and not train_cfg.test_every_epoch and run.best_epoch is not None:
            self._complete_best_metrics(run.best_epoch, eval_splits, split_names)
        return TrainResult(
            self.run_dir, run.epoch, stopped_early, run.best_epoch, run.best_value, last_metrics, skipped, context.rank
        )

    def _start_run(self, train_split: SplitData, pipeline: PipelineInfo) -> _RunState:
        """Build the model, optimiser, schedule and scaler; restore them from ``last/`` when resuming, else
        write the run folder's config.yaml."""
        config, context = self.config, self.context
        train_cfg, device = config.train, context.device
        model = GroundingModel(config.model).to(device)
        if not self.resume:  # a resumed run takes the statistics from its checkpoint
            model.fit_input_statistics(*train_split.dataset.input_chunks())
        loss = config.model.loss  # detached embeddings are only worth computing when the embedding term uses them
        wrapped: nn.Module = TrainingForward(model, loss.contrastive_detach and loss.contrastive_weight > 0)
        if context.is_distributed:
            # DDP broadcasts buffers from rank 0 and cannot send sparse ones; those are constants built from the
            # config (the same on every rank), so they are left out of the sync.
            sparse_buffers = [name for name, buffer in wrapped.named_buffers() if buffer.layout != torch.strided]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapped, sparse_buffers)
            # Which parameters get a gradient can change from batch to batch (a static graph fails on the second
            # step of the tests' tiny world), so DDP looks for the unused ones at every step; torch warns once
            # when a step happens to use them all.
            wrapped = DistributedDataParallel(
                wrapped, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
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
        run = _RunState(model, wrapped, optimizer, scheduler, scaler, pipeline, per_rank_batch)
        if self.resume:
            self._restore(run)
        elif context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.run_dir / "config.yaml")
            (self.run_dir / "metrics").mkdir(exist_ok=True)
            for stale in (self.run_dir / "metrics").glob("epoch_*.json"):  # a run killed before its first save
                stale.unlink()
        return run

    def _restore(self, run: _RunState) -> None:
        """Load the model and training state of ``last/`` (or its ``.old`` copy after a kill mid-swap)."""
        context = self.context
        last = self.run_dir / "last"
        if not last.is_dir():
            last = last.with_name("last.old")
        resumed = GroundingModel.from_pretrained(last, map_location=context.device)
        run.model.load_state_dict(resumed.state_dict())
        state = load_training_state(last)
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        run.epoch, run.step = int(state["epoch"]), int(state["step"])
        run.best_value, run.best_epoch = state["best_value"], state["best_epoch"]
        if context.is_main:  # forget epochs logged after the checkpoint (a kill between log and save)
            for stale in (self.run_dir / "metrics").glob("epoch_*.json"):
                if int(stale.stem.split("_")[1]) > run.epoch:
                    stale.unlink()
        _note(f"resuming {self.run_dir} after epoch {run.epoch} (step {run.step})", context)

    def _train_epoch(self, run: _RunState, train_split: SplitData, epoch: int) -> dict[str, float]:
        """One pass over the training split; returns the sample-weighted mean of each loss part."""
        config, context = self.config, self.context
        train_cfg, device = config.train, context.device
        train_split.dataset.set_epoch(epoch)
        loader = self._loader(train_split.dataset, run.per_rank_batch, shuffle=True, epoch=epoch)
        run.wrapped.train()
        sums = torch.zeros(len(LOSS_PARTS) + 1, dtype=torch.float64)
        bar = tqdm(loader, desc=f"epoch {epoch}/{train_cfg.epochs}", unit="batch",
                   disable=not (train_cfg.progress and context.is_main), leave=False)
        for batch in bar:
            batch = batch.to(device, non_blocking=True)
            negative_index, valid, false_negatives = negative_pairs(batch, config.model.loss, train_split.relevant, device)
            with autocast_for(device, train_cfg.amp):
                fields = run.wrapped(
                    batch.clip_feats, batch.clip_mask, batch.word_feats, batch.word_mask, batch.word_edge_index,
                    negative_index,
                )
                output = GroundingOutput(**{k: v for k, v in fields.items() if not k.startswith("negative_")})
                negatives = None
                if negative_index is not None:  # a batch of one has no negative pair (empty fields)
                    negative_fields = {k[9:]: v for k, v in fields.items() if k.startswith("negative_")}
                    negatives = RankingNegatives(GroundingOutput(**negative_fields) if negative_fields else None, valid)
                loss, parts = compute_loss(
                    output, batch.target_windows, batch.durations, config.model.loss, batch.video_ids,
                    negatives=negatives, false_negatives=false_negatives,
                )
            if not torch.isfinite(loss):
                raise GroundingError(
                    f"the loss became {float(loss)} at epoch {epoch}, step {run.step + 1}; lower train.lr, keep "
                    "train.grad_clip > 0, or check the features for extreme values"
                )
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            if train_cfg.grad_clip > 0:
                run.scaler.unscale_(run.optimizer)
                nn.utils.clip_grad_norm_(run.model.parameters(), train_cfg.grad_clip)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.scheduler.step()
            run.step += 1
            size = len(batch)
            sums += torch.tensor([float(parts[part]) * size for part in LOSS_PARTS] + [size], dtype=torch.float64)
            bar.set_postfix(loss=f"{float(parts['total']):.4f}", refresh=False)
        bar.close()
        sums = all_reduce_mean(sums, context) * context.world_size
        return {part: float(sums[i] / max(sums[-1], 1)) for i, part in enumerate(LOSS_PARTS)}

    def _evaluate_epoch(
        self, model: GroundingModel, eval_splits: dict[str, SplitData], epoch: int
    ) -> dict[str, dict[str, float]]:
        """The epoch's evaluation ({} when ``train.eval_every`` skips it): every split, or only ``best_split``
        with ``train.test_every_epoch`` off (every split on the last epoch)."""
        train_cfg = self.config.train
        if epoch % train_cfg.eval_every and epoch != train_cfg.epochs:
            return {}
        if train_cfg.test_every_epoch or epoch == train_cfg.epochs:
            return self._evaluate(model, eval_splits)
        return self._evaluate(model, {train_cfg.best_split: eval_splits[train_cfg.best_split]})

    def _save_epoch(self, run: _RunState, record: dict[str, Any], split_names: list[str]) -> None:
        """Log the epoch, update ``best/`` when it improved ``train.best_metric``, write ``last/`` (rank 0)."""
        train_cfg, context = self.config.train, self.context
        if context.is_main:
            write_json(self.run_dir / "metrics" / f"epoch_{record['epoch']:03d}.json", record)
            write_csv_log(self.run_dir, split_names)
            value = record["metrics"].get(train_cfg.best_split, {}).get(train_cfg.best_metric)
            if value is not None and (run.best_value is None or value > run.best_value):
                run.best_value, run.best_epoch = float(value), record["epoch"]
                self._write_checkpoint("best", run.model, run.pipeline, record, None)
            state = {
                "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                "scaler": run.scaler.state_dict(), "rng": rng_state(), "epoch": record["epoch"], "step": run.step,
                "best_value": run.best_value, "best_epoch": run.best_epoch,
            }
            self._write_checkpoint("last", run.model, run.pipeline, record, state)
            self._report_epoch(record, run.best_epoch)
        run.best_value, run.best_epoch = broadcast_object((run.best_value, run.best_epoch), context)
        barrier(context)

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
        """Metrics of every split, through :func:`grounding.inference.predict_moments` (what ``grounding
        predict`` runs): each rank predicts its share of the batches, every rank gathers all predictions and
        scores them, so the figures are the same everywhere."""
        train_cfg, context = self.config.train, self.context
        results: dict[str, dict[str, float]] = {}
        for name, split in splits.items():
            moments = predict_moments(
                model, split.dataset.records, split.dataset.clip_feats, split.dataset.bank,
                top_k=train_cfg.top_k, nms=train_cfg.nms, batch_size=train_cfg.eval_batch_size,
                device=context.device, amp=train_cfg.amp, shard=(context.rank, context.world_size),
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
