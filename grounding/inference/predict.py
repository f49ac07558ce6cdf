"""Checkpoint x annotations -> windows: the one implementation behind ``grounding predict`` and the trainer's
evaluation.

Queries are grouped by video, so the queries of one video share one video encoding (the model's
query-independent clip states), and many videos go through each forward pass::

    batch = up to ``batch_size`` queries, whole videos at a time (a video with more queries than that is split)
    clip states (V, T, H) = model.encode_clips(features of the V distinct videos)
    word states (Q, L, H) = model.encode_query(the Q sentences)
    scores (Q, M) = model.score_encoded(clip states[video of each query], word states)

The batches are a function of the query order and ``batch_size`` only, so two calls with the same records and
batch size compute the same floating-point numbers (the trainer's figures and ``grounding predict``'s agree
exactly).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from grounding.data.features import FeatureStore
from grounding.data.records import QueryRecord
from grounding.data.resample import resample_clips
from grounding.errors import InputError
from grounding.model import GroundingModel, decode_spans
from grounding.text.language_graph import batch_edge_index

DEFAULT_BATCH_SIZE = 64  # queries per forward pass; the trainer's default train.eval_batch_size


class SentenceFeatures(Protocol):
    """Where word features come from (a :class:`~grounding.text.sentence_bank.SentenceBank`)."""

    def get(self, sentence: str) -> tuple[Tensor, Tensor]:
        """``(word_feats (L, D_text) float32, edges (2, E) int64 over the sentence's own tokens)``."""
        ...


class StoreClips:
    """``video_id -> (T, D)`` float32 clip features of a feature store, resampled to ``num_clips`` exactly as the
    training datasets resample them (each video read once, then cached)."""

    def __init__(self, store: FeatureStore, num_clips: int) -> None:
        self.store = store
        self.num_clips = num_clips
        self._cache: dict[str, Tensor] = {}

    def __call__(self, video_id: str) -> Tensor:
        cached = self._cache.get(video_id)
        if cached is None:
            stored = np.asarray(self.store.get(video_id), dtype=np.float32)
            cached = self._cache[video_id] = torch.from_numpy(resample_clips(stored, self.num_clips)[0])
        return cached


def missing_videos(records: Sequence[QueryRecord], available: Callable[[str], bool]) -> list[str]:
    """Distinct video ids of ``records`` that ``available`` says are not there, in order of first appearance."""
    return [video_id for video_id in dict.fromkeys(r.video_id for r in records) if not available(video_id)]


@dataclass(frozen=True)
class VideoQueries:
    """The queries of one video inside a prediction batch."""

    video_id: str
    records: tuple[QueryRecord, ...]


def group_by_video(records: Sequence[QueryRecord]) -> list[VideoQueries]:
    """Queries grouped by video, videos in order of first appearance, queries in input order."""
    groups: dict[str, list[QueryRecord]] = {}
    for record in records:
        groups.setdefault(record.video_id, []).append(record)
    return [VideoQueries(video_id, tuple(group)) for video_id, group in groups.items()]


def plan_batches(groups: Sequence[VideoQueries], batch_size: int) -> list[list[VideoQueries]]:
    """Pack whole videos into batches of at most ``batch_size`` queries (a bigger video is cut into pieces)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be an integer >= 1, got {batch_size!r}")
    batches: list[list[VideoQueries]] = []
    current: list[VideoQueries] = []
    count = 0
    for group in groups:
        for first in range(0, len(group.records), batch_size):
            piece = VideoQueries(group.video_id, group.records[first : first + batch_size])
            if current and count + len(piece.records) > batch_size:
                batches.append(current)
                current, count = [], 0
            current.append(piece)
            count += len(piece.records)
    if current:
        batches.append(current)
    return batches


def autocast_for(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to bf16/fp16 on CUDA when ``amp`` asks for it; nothing on other devices or with ``none``."""
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _word_inputs(records: Sequence[QueryRecord], sentences: SentenceFeatures) -> tuple[Tensor, Tensor, Tensor]:
    """Padded ``(Q, L, D_text)`` word features, ``(Q, L)`` mask and ``(2, E)`` edges over the flattened words."""
    feats, edges = zip(*(sentences.get(record.sentence) for record in records))
    word_feats = torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True)
    lengths = torch.tensor([len(words) for words in feats])
    word_mask = torch.arange(word_feats.shape[1])[None, :] < lengths[:, None]
    return word_feats, word_mask, batch_edge_index(list(edges), word_feats.shape[1])


@torch.no_grad()
def predict_batch(
    model: GroundingModel,
    batch: Sequence[VideoQueries],
    clip_features: Callable[[str], Tensor],
    sentences: SentenceFeatures,
    *,
    top_k: int,
    nms: float | None,
    device: torch.device,
    amp: str = "none",
) -> dict[int, np.ndarray]:
    """Top spans of the queries of one planned batch: ``{qid: (K, 3) float64 [start, end, score]}``."""
    video_feats = torch.stack([clip_features(group.video_id) for group in batch]).to(device)  # (V, T, D)
    video_mask = torch.ones(video_feats.shape[:2], dtype=torch.bool, device=device)
    records = [record for group in batch for record in group.records]
    owner = torch.tensor([index for index, group in enumerate(batch) for _ in group.records], device=device)
    word_feats, word_mask, edges = (tensor.to(device) for tensor in _word_inputs(records, sentences))
    with autocast_for(device, amp):
        clip_states = model.encode_clips(video_feats, video_mask)  # (V, T, H)
        word_states = model.encode_query(word_feats, word_mask, edges)  # (Q, L, H)
        output = model.score_encoded(clip_states[owner], video_mask[owner], word_states, word_mask)
    durations = torch.tensor([record.duration for record in records], dtype=torch.float64)
    spans = decode_spans(output, durations, top_k=top_k, nms_threshold=nms)
    return {
        record.qid: np.asarray([list(span) for span in query_spans], dtype=np.float64).reshape(-1, 3)
        for record, query_spans in zip(records, spans)
    }


def predict_moments(
    model: GroundingModel,
    records: Sequence[QueryRecord],
    clip_features: Callable[[str], Tensor],
    sentences: SentenceFeatures,
    *,
    top_k: int = 10,
    nms: float | None = 0.5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str | None = None,
    amp: str = "none",
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
    desc: str = "predict",
) -> dict[int, np.ndarray]:
    """Top spans of every query: ``{qid: (K, 3) float64 [start, end, score]}``, seconds, best first.

    Args:
        model: a :class:`GroundingModel` (put in eval mode for the call, then restored).
        records: the queries (``qid``, ``video_id``, ``duration`` in seconds, ``sentence``).
        clip_features: ``video_id -> (T, D)`` float32 clip features resampled to ``model.config.num_clips``.
        sentences: word features for each record's sentence.
        top_k: spans kept per query, after NMS.
        nms: NMS IoU threshold, None = off.
        batch_size: queries per forward pass.
        device: where to compute (default: the model's device).
        amp: ``none``, ``bf16`` or ``fp16`` autocast on CUDA (ignored elsewhere).
        shard: ``(index, count)``: predict only every count-th batch starting at index (one torchrun process's
            share; the union over shards is the whole result).
        progress: a tqdm bar on stderr.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batches = plan_batches(group_by_video(records), batch_size)[shard[0] :: shard[1]]
    was_training = model.training
    model.eval()
    moments: dict[int, np.ndarray] = {}
    try:
        total = sum(len(group.records) for batch in batches for group in batch)
        with tqdm(total=total, desc=desc, unit="query", disable=not progress, leave=False) as bar:
            for batch in batches:
                found = predict_batch(
                    model, batch, clip_features, sentences, top_k=top_k, nms=nms, device=device, amp=amp
                )
                moments.update(found)
                bar.update(len(found))
    finally:
        model.train(was_training)
    return moments
