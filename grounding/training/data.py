"""Training data: annotation records + clip features + frozen text features -> padded batches.

- :class:`~grounding.text.sentence_bank.SentenceBank` (re-exported here) encodes each distinct sentence ONCE
  with a frozen text encoder and keeps its token features and language-graph edges in memory.
- :class:`GroundingDataset` pairs each query with its video's clip features, resampled to the model's
  ``num_clips`` (:func:`grounding.data.resample.resample_clips`), and its ground-truth window in seconds.
  Every video id is checked against the feature store up front: a missing one is an
  :class:`~grounding.errors.InputError`, or, with ``skip_missing_videos``, a reported skip. With a
  :class:`~grounding.training.augment.TemporalCrop`, training samples are cropped around their moment first.
- :func:`collate_samples` pads a list of samples into a :class:`GroundingBatch` and offsets each sentence's
  edges onto the flattened ``(B*L)`` token positions.

Training targets: a query's FIRST ground-truth window (Charades-STA, TACoS and ActivityNet have one per
query; evaluation always scores against all of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from grounding.data.features import FeatureStore
from grounding.data.records import AnnotationSet, QueryRecord
from grounding.data.resample import resample_clips
from grounding.errors import InputError
from grounding.text.language_graph import batch_edge_index
from grounding.text.sentence_bank import SentenceBank
from grounding.training.augment import TemporalCrop

@dataclass
class GroundingSample:
    """One query with its inputs.

    Attributes:
        qid, video_id, duration: from the annotation record (duration in seconds).
        clip_feats: (T, D) float32, resampled to the model's num_clips.
        clip_mask: (T,) bool, True = real clip (all True after resampling).
        word_feats: (L_i, D_text) float32 token features.
        word_edges: (2, E_i) int64 language-graph edges over the sample's tokens.
        target_window: (start, end) in seconds, the first ground-truth window.
    """

    qid: int
    video_id: str
    duration: float
    clip_feats: Tensor
    clip_mask: Tensor
    word_feats: Tensor
    word_edges: Tensor
    target_window: tuple[float, float]


@dataclass
class GroundingBatch:
    """A padded batch of B queries.

    Attributes:
        clip_feats: (B, T, D) float32.
        clip_mask: (B, T) bool, True = real clip.
        word_feats: (B, L, D_text) float32, zeros at padding.
        word_mask: (B, L) bool, True = real token.
        word_edge_index: (2, E) int64 over the flattened (B*L) token positions (sample b's token l is b*L + l).
        durations: (B,) float64 seconds.
        target_windows: (B, 2) float64 ``(start, end)`` seconds.
        qids, video_ids: B of each.
    """

    clip_feats: Tensor
    clip_mask: Tensor
    word_feats: Tensor
    word_mask: Tensor
    word_edge_index: Tensor
    durations: Tensor
    target_windows: Tensor
    qids: list[int] = field(default_factory=list)
    video_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.qids)

    def pin_memory(self) -> GroundingBatch:
        """The same batch in page-locked memory (DataLoader calls this with ``pin_memory=True``)."""
        return GroundingBatch(
            self.clip_feats.pin_memory(), self.clip_mask.pin_memory(), self.word_feats.pin_memory(),
            self.word_mask.pin_memory(), self.word_edge_index.pin_memory(), self.durations.pin_memory(),
            self.target_windows.pin_memory(), self.qids, self.video_ids,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> GroundingBatch:
        """The same batch with its tensors on ``device``."""
        def move(tensor: Tensor) -> Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return GroundingBatch(
            move(self.clip_feats), move(self.clip_mask), move(self.word_feats), move(self.word_mask),
            move(self.word_edge_index), move(self.durations), move(self.target_windows), self.qids, self.video_ids,
        )


def collate_samples(samples: Sequence[GroundingSample]) -> GroundingBatch:
    """Pad samples into a :class:`GroundingBatch` (clips are all ``num_clips`` long; words pad to the longest)."""
    if not samples:
        raise InputError("collate_samples: got an empty list of samples")
    clip_feats = torch.stack([sample.clip_feats for sample in samples])
    clip_mask = torch.stack([sample.clip_mask for sample in samples])
    word_feats = torch.nn.utils.rnn.pad_sequence([sample.word_feats for sample in samples], batch_first=True)
    max_len = word_feats.shape[1]
    lengths = torch.tensor([sample.word_feats.shape[0] for sample in samples])
    word_mask = torch.arange(max_len)[None, :] < lengths[:, None]
    return GroundingBatch(
        clip_feats=clip_feats,
        clip_mask=clip_mask,
        word_feats=word_feats,
        word_mask=word_mask,
        word_edge_index=batch_edge_index([sample.word_edges for sample in samples], max_len),
        durations=torch.tensor([sample.duration for sample in samples], dtype=torch.float64),
        target_windows=torch.tensor([sample.target_window for sample in samples], dtype=torch.float64),
        qids=[sample.qid for sample in samples],
        video_ids=[sample.video_id for sample in samples],
    )


@dataclass
class SkippedQuery:
    """A query left out of a dataset, and why."""

    qid: int
    video_id: str
    split: str
    reason: str


class GroundingDataset(Dataset):
    """Queries of one split as :class:`GroundingSample` items.

    Args:
        records: the split's query records.
        store: the clip-feature store holding every video of ``records``.
        bank: a :class:`SentenceBank` holding every sentence of ``records``.
        num_clips: T, the model's clip count; each video's features are resampled to it.
        split: the split's name, for messages (``train``, ``val``, ...).
        source: the annotation file, for messages.
        skip_missing_videos: leave out queries whose video is not in ``store`` (listed in :attr:`skipped`)
            instead of raising.
        cache_features: read and resample every video once, up front (also checks every video before
            training starts); otherwise read on each access.
        progress: tqdm bar while caching.
        crop: crop each sample's video around its moment (training only; see :meth:`set_epoch`). The
            crop draws from a generator seeded by ``(seed, epoch, sample index)``, so runs and resumed runs
            see the same crops.
        seed: the run's seed, for ``crop``.

    Raises:
        InputError: a video id not in the store (naming the qid, the video and the feature file), or a split
            left with no queries.
    """

    def __init__(
        self,
        records: Sequence[QueryRecord],
        store: FeatureStore,
        bank: SentenceBank,
        num_clips: int,
        split: str = "train",
        source: str = "",
        skip_missing_videos: bool = False,
        cache_features: bool = True,
        progress: bool = False,
        crop: TemporalCrop | None = None,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.crop = crop
        self.seed = seed
        self.epoch = 0
        self.bank = bank
        self.num_clips = num_clips
        self.split = split
        self.source = source
        self.skipped: list[SkippedQuery] = []
        kept: list[QueryRecord] = []
        for record in records:
            if record.video_id in store:
                kept.append(record)
            elif skip_missing_videos:
                self.skipped.append(
                    SkippedQuery(record.qid, record.video_id, split, f"video not in {store.path}")
                )
            else:
                missing = sorted({r.video_id for r in records if r.video_id not in store})
                more = f" ({len(missing) - 1} more missing videos)" if len(missing) > 1 else ""
                raise InputError(
                    f"{source or split}: qid {record.qid} asks about video '{record.video_id}', which is not in the "
                    f"feature file {store.path}{more}; extract its features, fix the id, or set "
                    "data.skip_missing_videos=true to leave such queries out (they are listed in skipped.json)."
                )
        if not kept:
            raise InputError(
                f"{source or split}: no queries left for split '{split}' ({len(self.skipped)} skipped: their videos "
                f"are not in {store.path}); check that the annotation and feature files belong together."
            )
        self.records = kept
        for record in kept:
            if record.sentence not in bank:
                raise InputError(f"{source or split}: qid {record.qid}: its sentence is not in the sentence bank")
        self._sentence_index = [bank.index_of[record.sentence] for record in kept]
        self._clip_cache: dict[str, Tensor] = {}
        self._stored_cache: dict[str, np.ndarray] = {}
        if cache_features:
            video_ids = list(dict.fromkeys(record.video_id for record in kept))
            bar = tqdm(video_ids, desc=f"reading {split} features", unit="video", disable=not progress, leave=False)
            for video_id in bar:
                stored = np.asarray(store.get(video_id), dtype=np.float32)  # one read serves both caches
                self._clip_cache[video_id] = torch.from_numpy(resample_clips(stored, num_clips)[0])
                if crop is not None:
                    self._stored_cache[video_id] = stored

    def set_epoch(self, epoch: int) -> None:
        """The epoch that seeds this epoch's crops (call before building the epoch's loader)."""
        self.epoch = int(epoch)

    def _stored_clips(self, video_id: str) -> np.ndarray:
        cached = self._stored_cache.get(video_id)
        return cached if cached is not None else np.asarray(self.store.get(video_id), dtype=np.float32)

    def _load_clips(self, video_id: str) -> Tensor:
        resampled, _ = resample_clips(self.store.get(video_id), self.num_clips)
        return torch.from_numpy(resampled)

    def clip_feats(self, video_id: str) -> Tensor:
        """(T, D) float32 resampled features of one video (cached when the dataset caches)."""
        cached = self._clip_cache.get(video_id)
        return cached if cached is not None else self._load_clips(video_id)

    def input_chunks(self) -> tuple[Iterator[Tensor], Iterator[Tensor]]:
        """What the model's input standardisation is fitted on, lazily: every video of the split once (its
        resampled (T, D) clips) and every distinct sentence once (its (L_i, D_text) words)."""
        video_ids = list(dict.fromkeys(record.video_id for record in self.records))
        sentences = sorted(set(self._sentence_index))
        clips = (self.clip_feats(video_id) for video_id in video_ids)
        words = (self.bank.get_index(index)[0] for index in sentences)
        return clips, words

    def annotation_set(self) -> AnnotationSet:
        """The kept records as an AnnotationSet (what evaluation scores against)."""
        return AnnotationSet(path=self.source or self.split, format="records", records=list(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> GroundingSample:
        record = self.records[index]
        word_feats, word_edges = self.bank.get_index(self._sentence_index[index])
        start, end = record.windows[0]
        duration = record.duration
        if self.crop is None:
            clip_feats = self.clip_feats(record.video_id)
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            cropped = self.crop(rng, self._stored_clips(record.video_id), duration, (float(start), float(end)))
            if cropped.first_clip == 0 and cropped.duration == duration:
                clip_feats = self.clip_feats(record.video_id)
            else:
                clip_feats = torch.from_numpy(resample_clips(cropped.clip_feats, self.num_clips)[0])
                duration = cropped.duration
                start, end = cropped.target_window
        return GroundingSample(
            qid=record.qid,
            video_id=record.video_id,
            duration=duration,
            clip_feats=clip_feats,
            clip_mask=torch.ones(clip_feats.shape[0], dtype=torch.bool),
            word_feats=word_feats,
            word_edges=word_edges,
            target_window=(float(start), float(end)),
        )


def split_by_videos(
    records: Sequence[QueryRecord], fraction: float, seed: int
) -> tuple[list[QueryRecord], list[QueryRecord]]:
    """Hold out a fraction of the VIDEOS (all their queries) as a validation split.

    The held-out videos are the first ``max(1, round(fraction * V))`` of a permutation of the sorted distinct
    video ids drawn from ``numpy.random.default_rng([seed, 7])``, so the split depends only on the seed and the
    video ids, not on file order.

    Returns:
        ``(train_records, val_records)``, each in the input order.

    Raises:
        InputError: fewer than two videos to split.
    """
    video_ids = sorted({record.video_id for record in records})
    if len(video_ids) < 2:
        raise InputError(
            f"data.val_fraction={fraction}: the training split has {len(video_ids)} video(s); a held-out val split "
            "needs at least 2. Set data.val_fraction=0 and give data.val instead."
        )
    num_val = min(len(video_ids) - 1, max(1, int(math.floor(fraction * len(video_ids) + 0.5))))
    order = np.random.default_rng([seed, 7]).permutation(len(video_ids))
    held_out = {video_ids[i] for i in order[:num_val]}
    train = [record for record in records if record.video_id not in held_out]
    val = [record for record in records if record.video_id in held_out]
    return train, val
