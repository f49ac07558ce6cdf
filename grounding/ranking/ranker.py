"""Rank the videos of an index for a sentence, best first, each with its best spans: :class:`Ranker`.

Two stages, as in CONQUER / ReLoCLNet for video corpus moment retrieval::

    stage 1: query embedding (Q, H) x video embeddings (N, H) -> the top M videos   (a vector engine, cheap)
    stage 2: the full span scorer on (query, video) for those M, from the stored clip states -> pooled score
    (optional) dual softmax: rescore stage 2's scores with a bank of other queries (CAMoE)

    ranker = Ranker.from_index("indexes/world")
    for video in ranker.rank("the red circle spins", top_videos=5):
        print(video.video_id, video.score, video.spans[0])     # Span(start, end, score), seconds

Stage 2 never re-encodes a video: the index stores each video's query-independent clip states.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from grounding.errors import InputError
from grounding.inference import Grounder
from grounding.model import Span, decode_spans
from grounding.model.pooling import check_pooling, pool_span_scores
from grounding.ranking.index import VideoIndex
from grounding.ranking.scoring import (
    DEFAULT_PAIR_BATCH,
    EncodedQueries,
    bank_normalisers,
    calibration_of,
    check_sentences,
    dual_softmax_scores,
    encode_queries,
    fusion_of,
    pooled_scores,
    score_pairs,
)

DEFAULT_RERANK = 20  # stage-2 depth M; docs/ranking.md measures the accuracy and latency of other depths
DEFAULT_DUAL_SOFTMAX_TEMPERATURE = 1.0
DUAL_SOFTMAX_BANKS = ("train", "transductive")
QUERY_CHUNK = 16  # queries whose stage-2 pairs are read and scored together


@dataclass
class RankedVideo:
    """One video of a ranking.

    Attributes:
        video_id: the video.
        score: what orders the ranking. For a reranked video: the stage-2 score ``a * stage1_score + b * pooled``
            (``a, b`` fitted by ``grounding fit-ranker``; ``0, 1`` = the pooled log-score of its spans for a
            checkpoint that was not), or its dual-softmax rescoring; for one stage 2 did not see (``reranked``
            False): the stage-1 cosine similarity.
        spans: its best spans ``Span(start, end, score)`` in seconds, best first (empty when not reranked).
        stage1_score: the cosine similarity of the coarse embeddings.
        reranked: whether stage 2 scored it.
        probability: the chance that this video is a true one: ``sigmoid(scale * score + bias)`` as calibrated by
            ``grounding fit-ranker`` (on the score before a dual-softmax rescoring); for a checkpoint that was not
            fitted, the softmax of ``score`` over the reranked videos. NaN when not reranked.
    """

    video_id: str
    score: float
    spans: list[Span] = field(default_factory=list)
    stage1_score: float = float("nan")
    reranked: bool = False
    probability: float = float("nan")


@dataclass
class RankingSettings:
    """How :meth:`Ranker.rank_many` ranks (defaults: the checkpoint's pooling, M = ``DEFAULT_RERANK``).

    Attributes:
        top_videos: videos returned per query.
        top_spans: spans kept per reranked video.
        rerank: M, stage 1's candidates that stage 2 rescores (0 = stage 1 only).
        pooling, pooling_temperature: how span scores become a video score.
        dual_softmax: None, ``train`` (the index's bank of training queries) or ``transductive`` (a bank drawn
            from the queries being ranked: it reads other test queries, so its figures are labelled so).
        dual_softmax_temperature: the rescoring's temperature, in log-score units.
        bank_size: queries drawn for a transductive bank.
        nms: the spans' NMS threshold (None = off); default the checkpoint's.
    """

    top_videos: int = 10
    top_spans: int = 3
    rerank: int = DEFAULT_RERANK
    pooling: str | None = None
    pooling_temperature: float | None = None
    dual_softmax: str | None = None
    dual_softmax_temperature: float = DEFAULT_DUAL_SOFTMAX_TEMPERATURE
    bank_size: int = 64
    nms: float | None | str = "default"

    @property
    def transductive(self) -> bool:
        return self.dual_softmax == "transductive"


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Ranker:
    """A :class:`Grounder` over a :class:`VideoIndex`: sentences in, ranked videos with spans out.

    Args:
        grounder: the model with its text encoder (the one the index was built with).
        index: the opened index.
        pair_batch: (query, video) pairs per forward pass of stage 2.
    """

    def __init__(self, grounder: Grounder, index: VideoIndex, pair_batch: int = DEFAULT_PAIR_BATCH) -> None:
        config = grounder.model.config
        if (config.num_clips, config.hidden_size) != (index.info.num_clips, index.info.hidden_size):
            raise InputError(
                f"{index.folder}: stores {index.info.num_clips} x {index.info.hidden_size} clip states, but the model "
                f"makes {config.num_clips} x {config.hidden_size}; rank with the checkpoint the index was built with"
            )
        self.grounder = grounder
        self.model = grounder.model
        self.index = index
        self.pair_batch = pair_batch
        self.fusion = fusion_of(self.model)  # stage 2's score = a * cosine + b * pooled
        self.calibration = calibration_of(self.model)  # P(true video) = sigmoid(scale * score + bias), when fitted
        self._bank_embeddings: torch.Tensor | None = None  # the train bank's query embeddings, encoded once

    @classmethod
    def from_index(cls, path: str | os.PathLike[str], device: str = "cpu") -> Ranker:
        """Open an index folder and the checkpoint stored in it."""
        index = VideoIndex.open(path)
        return cls(Grounder.from_pretrained(index.model_folder, device=device), index)

    def __repr__(self) -> str:
        return f"Ranker({self.index!r}, {self.grounder!r})"

    def close(self) -> None:
        self.index.close()

    # ---- the public calls ----
    def rank(self, query: str, top_videos: int = 10, top_spans: int = 3, rerank: int = DEFAULT_RERANK,
             **settings: object) -> list[RankedVideo]:
        """The ``top_videos`` best videos for one sentence (see :class:`RankingSettings` for the keywords)."""
        chosen = RankingSettings(top_videos=top_videos, top_spans=top_spans, rerank=rerank, **settings)  # type: ignore[arg-type]
        return self.rank_many([query], chosen)[0]

    @torch.no_grad()
    def rank_many(self, queries: Sequence[str], settings: RankingSettings | None = None,
                  progress: bool = False) -> list[list[RankedVideo]]:
        """Rank the index for each sentence; one list per sentence, best first."""
        settings = self.resolved(settings or RankingSettings())
        sentences = check_sentences(queries)
        count = len(self.index)
        if count == 0 or not sentences:
            return [[] for _ in sentences]
        encoded = encode_queries(self.model, self.grounder.text_encoder, sentences)
        depth = min(max(settings.top_videos, settings.rerank), count)
        stage1_scores, stage1_rows = self.index.engine.search(encoded.embeddings.float().cpu().numpy(), depth)
        reranked = min(settings.rerank, count)
        normalisers = self._normalisers(settings, encoded, stage1_rows[:, :reranked])
        results: list[list[RankedVideo]] = []
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sentences), desc="rank", unit="query", disable=not progress, leave=False)
        for first in range(0, len(sentences), QUERY_CHUNK):
            chunk = range(first, min(first + QUERY_CHUNK, len(sentences)))
            results.extend(self._rank_chunk(chunk, encoded, stage1_scores, stage1_rows, reranked, normalisers, settings))
            bar.update(len(chunk))
        bar.close()
        return results

    # ---- the steps ----
    def resolved(self, settings: RankingSettings) -> RankingSettings:
        """``settings`` checked, with the checkpoint's defaults filled in (InputError on a bad setting)."""
        loss = self.model.config.loss
        pooling = settings.pooling or loss.ranking_pooling
        temperature = settings.pooling_temperature or loss.ranking_pooling_temperature
        check_pooling(pooling, temperature, "ranking")
        _check_count("top_videos", settings.top_videos, 1)
        _check_count("top_spans", settings.top_spans, 1)
        _check_count("rerank", settings.rerank, 0)
        if settings.dual_softmax not in (None, *DUAL_SOFTMAX_BANKS):
            raise InputError(f"dual softmax bank {settings.dual_softmax!r}: use one of {', '.join(DUAL_SOFTMAX_BANKS)}")
        if settings.dual_softmax and settings.rerank == 0:
            raise InputError("the dual softmax rescores stage 2's scores; it needs rerank >= 1 (not stage 1 only)")
        if settings.dual_softmax == "train":
            bank = self.index.bank
            if bank is None:
                raise InputError(
                    f"{self.index.folder}: has no query bank; build the index with --bank TRAIN_ANNOTATIONS to use "
                    "the train-bank dual softmax"
                )
            if (bank.get("pooling"), bank.get("temperature")) != (pooling, temperature):
                raise InputError(
                    f"{self.index.folder}: its bank was scored with {bank.get('pooling')} pooling (temperature "
                    f"{bank.get('temperature')}), not {pooling} ({temperature}); rank with that pooling"
                )
        nms = self.grounder.pipeline.nms if settings.nms == "default" else settings.nms
        return RankingSettings(
            top_videos=settings.top_videos, top_spans=settings.top_spans, rerank=settings.rerank, pooling=pooling,
            pooling_temperature=temperature, dual_softmax=settings.dual_softmax,
            dual_softmax_temperature=settings.dual_softmax_temperature, bank_size=settings.bank_size, nms=nms,
        )

    def _normalisers(
        self, settings: RankingSettings, encoded: EncodedQueries, candidate_rows: np.ndarray
    ) -> dict[int, float] | None:
        """Row -> the dual softmax's bank normaliser, for every row stage 2 will score (None without rescoring)."""
        if settings.dual_softmax is None:
            return None
        rows = np.unique(candidate_rows[candidate_rows >= 0])
        temperature = settings.dual_softmax_temperature
        if settings.dual_softmax == "train":
            assert self.index.bank_scores is not None and self.index.bank is not None
            bank_pooled = np.asarray(self.index.bank_scores[rows], dtype=np.float64)
            if self.fusion[0] and self._bank_embeddings is None:
                sentences = self.index.bank["sentences"]
                self._bank_embeddings = encode_queries(self.model, self.grounder.text_encoder, sentences).embeddings
            values = bank_normalisers(self._stage2_bank(rows, self._bank_embeddings, bank_pooled), temperature)
            return dict(zip(rows.tolist(), values.tolist()))
        if len(encoded) < 2:
            raise InputError("a transductive dual softmax needs a batch of queries to draw its bank from (--queries)")
        _check_count("bank_size", settings.bank_size, 1)
        chosen = np.random.default_rng(0).permutation(len(encoded))[: settings.bank_size]
        bank = EncodedQueries(
            [encoded.sentences[i] for i in chosen], encoded.word_states[chosen], encoded.word_mask[chosen],
            encoded.embeddings[chosen],
        )
        states = torch.from_numpy(self.index.clip_states(rows))
        pairs_row = torch.arange(len(rows)).repeat_interleave(len(bank))
        pairs_query = torch.arange(len(bank)).repeat(len(rows))
        scores = pooled_scores(
            self.model, states, bank, pairs_query, settings.pooling, settings.pooling_temperature, self.pair_batch,
            video_index=pairs_row,
        ).view(len(rows), len(bank))
        stage2 = self._stage2_bank(rows, bank.embeddings, scores.double().numpy())
        return dict(zip(rows.tolist(), bank_normalisers(stage2, temperature).tolist()))

    def _stage2_bank(self, rows: np.ndarray, bank_embeddings: torch.Tensor | None, pooled: np.ndarray) -> np.ndarray:
        """(R, B) the bank queries' stage-2 scores on the videos ``rows``, from their pooled scores (R, B)."""
        stage1_weight, stage2_weight = self.fusion
        scores = stage2_weight * pooled
        if stage1_weight and bank_embeddings is not None:
            cosine = np.asarray(self.index.embeddings[rows], dtype=np.float64) @ bank_embeddings.double().cpu().numpy().T
            scores = scores + stage1_weight * cosine
        return scores

    def _rank_chunk(
        self,
        chunk: range,
        encoded: EncodedQueries,
        stage1_scores: np.ndarray,
        stage1_rows: np.ndarray,
        reranked: int,
        normalisers: dict[int, float] | None,
        settings: RankingSettings,
    ) -> list[list[RankedVideo]]:
        index = self.index
        pair_query, pair_row, pair_cosine = [], [], []
        for query in chunk:
            rows = stage1_rows[query, :reranked]
            rows = rows[rows >= 0]  # the engine pads a short list with -1 at its end
            pair_query += [query] * len(rows)
            pair_row += rows.tolist()
            pair_cosine += stage1_scores[query, : len(rows)].tolist()
        pooled = np.empty(len(pair_row))
        spans: list[list[Span]] = [[] for _ in pair_row]
        if pair_row:
            distinct, inverse = np.unique(np.asarray(pair_row), return_inverse=True)
            states = torch.from_numpy(index.clip_states(distinct))
            query_index = torch.tensor(pair_query)
            video_index = torch.from_numpy(inverse.reshape(-1))
            for part, output in score_pairs(self.model, states, encoded, query_index, self.pair_batch, video_index):
                pooled[part] = pool_span_scores(output, settings.pooling, settings.pooling_temperature).cpu().numpy()
                durations = torch.from_numpy(index.durations[np.asarray(pair_row[part])])
                spans[part] = decode_spans(output, durations, top_k=settings.top_spans, nms_threshold=settings.nms)
        fused = self.fusion[0] * np.asarray(pair_cosine, dtype=np.float64) + self.fusion[1] * pooled
        final = fused
        if normalisers is not None:
            z = np.array([normalisers[row] for row in pair_row])
            final = dual_softmax_scores(final, z, settings.dual_softmax_temperature)
        results = []
        position = 0
        for query in chunk:
            rows = stage1_rows[query]
            valid = rows >= 0
            count = int(valid[:reranked].sum())
            picked = range(position, position + count)
            position += count
            order = sorted(picked, key=lambda p: (-final[p], pair_row[p]))
            if self.calibration is not None:  # fitted per video, on the score before any dual-softmax rescoring
                scale, bias = self.calibration
                probability = 0.5 * (1.0 + np.tanh(0.5 * (scale * fused[order] + bias)))  # the sigmoid, overflow-free
            else:  # not fitted: a softmax over the reranked videos (sums to 1; not a calibrated chance)
                probability = np.exp(final[order] - np.logaddexp.reduce(final[order])) if order else np.empty(0)
            ranked = [
                RankedVideo(index.video_ids[pair_row[p]], float(final[p]), spans[p], pair_cosine[p], True, float(chance))
                for p, chance in zip(order, probability)
            ]
            ranked += [
                RankedVideo(index.video_ids[int(row)], float(score), [], float(score), False)
                for row, score in zip(rows[reranked:][valid[reranked:]], stage1_scores[query, reranked:][valid[reranked:]])
            ]
            results.append(ranked[: settings.top_videos])
        return results
