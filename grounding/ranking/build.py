"""Fill an index: encode videos once with a checkpoint's model and append their encodings.

``build_index`` is what ``grounding index`` runs. It takes clip features (a feature file) or video files (featurised
in memory with the checkpoint's backbone, as ``grounding predict --videos`` does), encodes ``chunk`` videos at a
time (clip states, the coarse embedding and, with a bank, the bank queries' pooled scores) and commits each chunk.
A rerun after a kill skips the videos already committed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from grounding.errors import InputError
from grounding.inference import Grounder
from grounding.ranking.index import VideoIndex, missing_from
from grounding.ranking.scoring import encode_queries, pooled_scores

DEFAULT_CHUNK = 32  # videos per commit
DEFAULT_BANK_SIZE = 64


@dataclass
class VideoSource:
    """Where the videos of an index come from: ``load(video_id) -> (clip_feats (T, D) float32, duration s)``."""

    video_ids: list[str]
    load: Callable[[str], tuple[np.ndarray, float]]
    description: dict[str, object] = field(default_factory=dict)


@dataclass
class IndexSummary:
    """What one :func:`build_index` call did."""

    added: int
    already_there: int
    failed: dict[str, str]
    total: int
    seconds: float


def sample_bank(sentences: Sequence[str], size: int, seed: int = 0) -> list[str]:
    """``size`` distinct sentences drawn (seeded) from ``sentences``: the dual softmax's query bank."""
    distinct = list(dict.fromkeys(sentence for sentence in sentences if sentence.strip()))
    if not distinct:
        raise InputError("the bank's annotation file has no sentences")
    order = np.random.default_rng(seed).permutation(len(distinct))[:size]
    return [distinct[i] for i in sorted(order.tolist())]


@torch.no_grad()
def build_index(
    index: VideoIndex, grounder: Grounder, source: VideoSource, chunk: int = DEFAULT_CHUNK, progress: bool = True
) -> IndexSummary:
    """Append every video of ``source`` that ``index`` lacks, ``chunk`` videos per commit.

    A video that cannot be loaded (a decode error, bad features) is reported in ``failed`` and skipped; the
    others go on. Returns an :class:`IndexSummary`.
    """
    import time

    began = time.perf_counter()
    model = grounder.model.eval()
    todo = missing_from(index, source.video_ids)
    already = len(dict.fromkeys(source.video_ids)) - len(todo)
    bank = index.bank
    bank_queries = None
    if bank is not None:
        bank_queries = encode_queries(model, grounder.text_encoder, bank["sentences"])
    failed: dict[str, str] = {}
    added = 0
    bar = tqdm(total=len(todo), desc="index", unit="video", disable=not progress, file=sys.stderr)
    for first in range(0, len(todo), chunk):
        ids, durations, states_list, embedding_list, bank_list = [], [], [], [], []
        for video_id, duration, clip_feats, states in _encoded(grounder, source, todo[first : first + chunk], failed):
            ids.append(video_id)
            durations.append(duration)
            states_list.append(states)
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
            embedding_list.append(model.embed_video(states, mask, clip_feats))
            if bank_queries is not None:
                bank_list.append(pooled_scores(
                    model, states.expand(len(bank_queries), -1, -1), bank_queries,
                    torch.arange(len(bank_queries)), bank["pooling"], bank["temperature"],
                ).numpy())
        if ids:
            clip_states = torch.cat(states_list)
            embeddings = torch.cat(embedding_list)
            bank_scores = np.stack(bank_list) if bank_queries is not None else None
            index.append(ids, durations, clip_states.float().cpu().numpy(), embeddings.float().cpu().numpy(), bank_scores)
            added += len(ids)
        bar.update(len(todo[first : first + chunk]))
    bar.close()
    return IndexSummary(added, already, failed, len(index), round(time.perf_counter() - began, 2))


def _encoded(
    grounder: Grounder, source: VideoSource, video_ids: Sequence[str], failed: dict[str, str]
) -> Iterator[tuple[str, float, torch.Tensor, torch.Tensor]]:
    """``(video_id, duration, clip_feats (1, T, D), clip_states (1, T, H))`` of each video that loads (features
    resampled to the model's clips); the others go into ``failed``.

    One video per forward pass: a video's numbers never depend on which videos share its chunk, so an index built
    in parts, or extended later, equals one built at once bit for bit.
    """
    for video_id in video_ids:
        try:
            clip_feats, duration = source.load(video_id)
            encoded = grounder.encode_features(clip_feats, duration, video_id)
        except InputError as error:
            failed[video_id] = str(error)
            continue
        clip_feats = encoded.clip_feats[None].to(grounder.device)
        mask = torch.ones(clip_feats.shape[:2], dtype=torch.bool, device=grounder.device)
        yield video_id, encoded.duration, clip_feats, grounder.model.encode_clips(clip_feats, mask)


@torch.no_grad()
def encode_videos(
    grounder: Grounder, source: VideoSource, progress: bool = True
) -> tuple[list[str], list[float], list[torch.Tensor], list[torch.Tensor]]:
    """Every video of ``source`` encoded as an index stores it: ``(video ids, durations, [(1, T, H) clip states],
    [(1, P) pooled vectors])``, the last by the model's :meth:`~grounding.model.GroundingModel.pool_video` (its
    config as it is now); a video that fails to load is reported on stderr and left out."""
    ids, durations, states, pooled = [], [], [], []
    failed: dict[str, str] = {}
    videos = list(dict.fromkeys(source.video_ids))
    for video_id, duration, clip_feats, clip_states in tqdm(
        _encoded(grounder, source, videos, failed), total=len(videos), desc="encode", unit="video",
        disable=not progress, file=sys.stderr,
    ):
        ids.append(video_id)
        durations.append(duration)
        states.append(clip_states)
        mask = torch.ones(clip_states.shape[:2], dtype=torch.bool, device=clip_states.device)
        pooled.append(grounder.model.pool_video(clip_states, mask, clip_feats))
    for video_id, reason in list(failed.items())[:5]:
        print(f"failed: {video_id}: {reason}", file=sys.stderr)
    return ids, durations, states, pooled


def _chosen(available: Sequence[str], wanted: Sequence[str] | None, problem: str, fix: str) -> list[str]:
    """``wanted`` (each once) or every available id; InputError naming the first missing ones."""
    chosen = list(available) if wanted is None else list(dict.fromkeys(wanted))
    known = set(available)
    missing = [video_id for video_id in chosen if video_id not in known]
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise InputError(f"{problem} {shown}{fix}")
    return chosen


def feature_source(path: str | os.PathLike[str], video_ids: Sequence[str] | None, durations: dict[str, float]) -> VideoSource:
    """Videos of a feature file (all of them, or ``video_ids``): features as stored, durations from ``durations``
    or the file's per-video ``duration`` attribute."""
    from grounding.data.features import open_feature_store

    store = open_feature_store(path)
    chosen = _chosen(store.video_ids(), video_ids, f"{path}: has no features for", "; extract them, or leave them "
                     "out of --ids")

    def load(video_id: str) -> tuple[np.ndarray, float]:
        duration = durations.get(video_id)
        if duration is None:
            duration = store.attrs(video_id).get("duration")
        if duration is None:
            raise InputError(
                f"{path}: video '{video_id}' has no duration attribute; pass --durations CSV (id,length) or --ids "
                "an annotation file that gives durations"
            )
        return np.asarray(store.get(video_id), dtype=np.float32), float(duration)

    return VideoSource(chosen, load, {"features": str(Path(path).resolve())})


def video_file_source(folder: str | os.PathLike[str], grounder: Grounder, video_ids: Sequence[str] | None) -> VideoSource:
    """Video files under ``folder`` (ids as ``grounding extract`` names them), featurised in memory."""
    from grounding.video import find_videos

    paths = {video.video_id: video.path for video in find_videos([folder])}
    chosen = _chosen(list(paths), video_ids, f"{folder}: has no video file for", "")

    def load(video_id: str) -> tuple[np.ndarray, float]:
        encoded = grounder.encode_video(paths[video_id])
        return encoded.clip_feats.numpy(), encoded.duration

    return VideoSource(chosen, load, {"videos": str(Path(folder).resolve())})
