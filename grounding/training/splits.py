"""A run's data: the annotation splits read, the sentences encoded once, each split paired with its clip features,
and what the checkpoint must remember about the inputs (:class:`~grounding.inference.PipelineInfo`).

    train_split, eval_splits = build_splits(config, store, device, progress=True, note=print)
    pipeline = pipeline_info(config, store)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from grounding.data.annotations import detect_format, read_annotations
from grounding.data.features import FeatureStore
from grounding.data.records import AnnotationSet
from grounding.errors import ConfigError
from grounding.inference.pipeline import PipelineInfo
from grounding.text.encoders import create_text_encoder
from grounding.text.sentence_bank import SentenceBank
from grounding.training.augment import TemporalCrop
from grounding.training.config import DataConfig, ExperimentConfig
from grounding.training.data import GroundingDataset, split_by_videos
from grounding.video.settings import ExtractionSettings


@dataclass
class SplitData:
    """One split: its dataset (queries with features), every annotated query (the evaluation's denominator) and,
    when known, every video each query is true of (``qid -> video ids``, multi-positive truth)."""

    name: str
    dataset: GroundingDataset
    annotations: AnnotationSet
    relevant: Mapping[int, frozenset[str]] | None = None


def read_split(path: str, data: DataConfig, note: Callable[[str], None]) -> AnnotationSet:
    """One annotation file with the config's format and durations; the reader's drops are noted."""
    file_format = data.format or detect_format(path)
    durations = data.durations_paths() if file_format == "charades-sta" and data.durations else None
    annotations = read_annotations(path, format=file_format, durations=durations)
    if annotations.report.dropped:
        note(f"{path}: the reader dropped {len(annotations.report.dropped)} queries (e.g. "
             f"{annotations.report.dropped[0]})")
    return annotations


def build_splits(
    config: ExperimentConfig, store: FeatureStore, device: torch.device, progress: bool, note: Callable[[str], None]
) -> tuple[SplitData, dict[str, SplitData]]:
    """The training split and every evaluated split (val first: the file's, or held-out training videos).

    Every sentence of every split is encoded once into one :class:`SentenceBank`.

    Raises:
        ConfigError: the text encoder's width is not ``model.text.input_dim``.
        InputError: from the readers and :class:`GroundingDataset` (missing videos, empty splits).
    """
    data = config.data
    train_set = read_split(data.resolve(data.train), data, note)
    relevant = None
    if data.train_relevant:
        from grounding.eval.relevance import read_relevance

        truth = read_relevance(data.resolve(data.train_relevant), train_set)
        relevant = {qid: frozenset(videos) for qid, videos in truth.videos.items()}
    eval_sets = {name: read_split(path, data, note) for name, path in data.eval_splits().items()}
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
    encoder = encoder.to(device)
    sentences = [record.sentence for records in (train_set, *eval_sets.values()) for record in records]
    bank = SentenceBank(encoder, sentences, progress=progress)
    if bank.num_truncated:
        note(f"{bank.num_truncated} sentences were cut to data.max_words={data.max_words} tokens")
    del encoder

    def dataset(name: str, annotations: AnnotationSet) -> SplitData:
        crop_probability = config.train.crop_probability if name == "train" else 0.0
        crop = TemporalCrop(crop_probability) if crop_probability > 0 else None
        built = GroundingDataset(
            annotations.records, store, bank, config.model.num_clips, split=name, source=annotations.path,
            skip_missing_videos=data.skip_missing_videos, cache_features=data.cache_features, progress=progress,
            crop=crop, seed=config.train.seed,
        )
        return SplitData(name, built, annotations, relevant if name == "train" else None)

    return dataset("train", train_set), {name: dataset(name, s) for name, s in eval_sets.items()}


def pipeline_info(config: ExperimentConfig, store: FeatureStore) -> PipelineInfo:
    """Text encoder, extraction settings and decoding for inference: ``data.extraction`` where it pins a
    setting, else the feature file's attributes.

    Raises:
        ConfigError: ``data.extraction`` pins a setting the feature file contradicts.
    """
    data, train = config.data, config.train
    attrs = store.attrs(store.video_ids()[0]) if len(store) else {}
    found = ExtractionSettings.from_attrs(attrs, str(store.path))
    conflicts = data.extraction.conflicts(found, other_name="the file")
    if conflicts:
        shown = "; ".join(conflicts)
        raise ConfigError(
            f"data.extraction sets {shown} for {store.path}; drop the setting (it is read from the file) or "
            "re-extract the features"
        )
    return PipelineInfo(
        text_encoder=data.text_encoder, max_words=data.max_words, syntax=data.syntax,
        extraction=data.extraction.filled_from(found), nms=train.nms,
    )
