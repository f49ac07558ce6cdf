"""Score (query, stored video) pairs with the full grounding model, without re-encoding either side.

A ranker encodes each query once (:func:`encode_queries`: word states and the coarse query embedding) and reads
each candidate video's stored clip states from the index; :func:`score_pairs` then runs only the cross-modal
matching and the span head, many pairs per forward pass. The pooled score of a pair
(:mod:`grounding.model.pooling`) is the video-level score; the dual-softmax rescoring of
:func:`dual_softmax_scores` makes those scores comparable across videos with a bank of other queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from grounding.errors import InputError
from grounding.model import GroundingModel, GroundingOutput
from grounding.model.pooling import check_pooling, pool_span_scores

DEFAULT_PAIR_BATCH = 64  # (query, video) pairs per forward pass
RANKING_KEY = "ranking"  # the checkpoint metadata key of a ranker fitted by grounding fit-ranker


@dataclass
class EncodedQueries:
    """Q sentences ready to be paired with any video.

    Attributes:
        sentences: the Q sentences.
        word_states: (Q, L, H) float, :meth:`GroundingModel.encode_query`.
        word_mask: (Q, L) bool, True = real word.
        embeddings: (Q, H) float, unit-norm, :meth:`GroundingModel.embed_query` (stage 1).
    """

    sentences: list[str]
    word_states: Tensor
    word_mask: Tensor
    embeddings: Tensor

    def __len__(self) -> int:
        return len(self.sentences)


def check_sentences(sentences: Sequence[str], where: str = "query") -> list[str]:
    """The sentences as a list; InputError for a non-string or an empty/blank sentence."""
    if isinstance(sentences, str):
        sentences = [sentences]
    checked = list(sentences)
    for position, sentence in enumerate(checked):
        if not isinstance(sentence, str) or not sentence.strip():
            raise InputError(f"{where} {position + 1}: {sentence!r} is empty; give a sentence to search for")
    return checked


@torch.no_grad()
def encode_queries(
    model: GroundingModel, text_encoder: Any, sentences: Sequence[str], batch_size: int = 256
) -> EncodedQueries:
    """Encode sentences with the checkpoint's text encoder and the model's query side.

    Word states of one batch are padded to its longest sentence; they are re-padded to the longest of all.
    """
    sentences = check_sentences(sentences)
    device = next(model.parameters()).device
    states, masks, embeddings = [], [], []
    for first in range(0, len(sentences), batch_size):
        text = text_encoder.encode(sentences[first : first + batch_size], device=device)
        word_states = model.encode_query(text.word_feats, text.word_mask, text.edge_index)
        states.append(word_states)
        masks.append(text.word_mask)
        embeddings.append(model.embed_query(word_states, text.word_mask))
    longest = max((state.shape[1] for state in states), default=1)
    hidden = model.config.hidden_size

    def pad(tensor: Tensor, value: Any) -> Tensor:
        extra = longest - tensor.shape[1]
        if not extra:
            return tensor
        return torch.cat([tensor, tensor.new_full((tensor.shape[0], extra, *tensor.shape[2:]), value)], dim=1)

    if not states:
        empty = torch.zeros(0, 1, hidden, device=device)
        return EncodedQueries([], empty, torch.zeros(0, 1, dtype=torch.bool, device=device), torch.zeros(0, hidden))
    return EncodedQueries(
        sentences,
        torch.cat([pad(state, 0.0) for state in states]),
        torch.cat([pad(mask, False) for mask in masks]),
        torch.cat(embeddings),
    )


@torch.no_grad()
def score_pairs(
    model: GroundingModel,
    clip_states: Tensor,
    queries: EncodedQueries,
    query_index: Tensor,
    pair_batch: int = DEFAULT_PAIR_BATCH,
    video_index: Tensor | None = None,
) -> Iterator[tuple[slice, GroundingOutput]]:
    """The model's output for pairs (video ``video_index[p]``, query ``query_index[p]``), ``pair_batch`` pairs per pass.

    Args:
        model: the grounding model (eval mode).
        clip_states: (V, T, H) float stored clip states (every clip real).
        queries: the encoded queries.
        query_index: (P,) int64, which query each pair takes.
        video_index: (P,) int64, which video each pair takes; default ``arange(P)`` (V = P). Only one pass's
            videos are gathered at a time, so P pairs never cost P copies of a video's states.

    Yields:
        ``(pairs, output)``: the slice of pairs a pass covered and its :class:`GroundingOutput`.
    """
    device = next(model.parameters()).device
    for first in range(0, len(query_index), pair_batch):
        part = slice(first, min(first + pair_batch, len(query_index)))
        states = (clip_states[part] if video_index is None else clip_states[video_index[part]]).to(device)
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=device)
        chosen = query_index[part].to(queries.word_states.device)
        word_mask = queries.word_mask[chosen]
        longest = int(word_mask.sum(dim=1).max())  # no pass pays for a longer sentence of another batch
        yield part, model.score_encoded(states, mask, queries.word_states[chosen][:, :longest], word_mask[:, :longest])


def pooled_scores(
    model: GroundingModel,
    clip_states: Tensor,
    queries: EncodedQueries,
    query_index: Tensor,
    pooling: str,
    temperature: float,
    pair_batch: int = DEFAULT_PAIR_BATCH,
    video_index: Tensor | None = None,
) -> Tensor:
    """(P,) float pooled log-score of each pair (see :func:`score_pairs` for the arguments)."""
    check_pooling(pooling, temperature)
    result = torch.empty(len(query_index))
    for part, output in score_pairs(model, clip_states, queries, query_index, pair_batch, video_index):
        result[part] = pool_span_scores(output, pooling, temperature).float().cpu()
    return result


def bank_normalisers(bank_scores: np.ndarray, temperature: float) -> np.ndarray:
    """Per video, ``logsumexp_b(bank_score[b] / temperature)`` over the bank's queries: (R, B) -> (R,) (the bank's
    scores are stage-2 scores, on the same scale as the scores they normalise)."""
    scaled = np.asarray(bank_scores, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(scaled - top).sum(axis=1, keepdims=True)))[:, 0]


def dual_softmax_scores(scores: np.ndarray, normalisers: np.ndarray, temperature: float) -> np.ndarray:
    r"""CAMoE's dual softmax in log space, with a query bank.

    For query q and video v with pooled log-score :math:`s` and the bank's normaliser
    :math:`Z_v = \log \sum_b e^{s_{bv}/\tau}`:

    .. math::
        \mathrm{score}(q, v) = \underbrace{s/\tau}_{\log p(v \mid q) + c_q}
            + \underbrace{s/\tau - \log(e^{s/\tau} + e^{Z_v})}_{\log p(q \mid v)\text{ over } q \cup \text{bank}}

    A video that every bank query also scores high (a "hub") is pushed down. With an empty bank
    (:math:`Z_v = -\infty`) the score is :math:`s/\tau`, the same order as without rescoring.

    Args:
        scores: (...,) pooled log-scores.
        normalisers: (...,) :math:`Z_v` of each score's video (broadcast against ``scores``).
        temperature: :math:`\tau` > 0.
    """
    scaled = np.asarray(scores, dtype=np.float64) / temperature
    return 2.0 * scaled - np.logaddexp(scaled, normalisers)


def fusion_of(model: GroundingModel) -> tuple[float, float]:
    """``(a, b)`` of the reranked score ``a * cosine + b * pooled`` a checkpoint was fitted with; ``(0, 1)`` (the
    pooled span score alone) for a checkpoint that was not."""
    ranking = model.pretrained_metadata.get(RANKING_KEY) or {}
    fusion = ranking.get("fusion") or {}
    return float(fusion.get("stage1_weight", 0.0)), float(fusion.get("stage2_weight", 1.0))


def calibration_of(model: GroundingModel) -> tuple[float, float] | None:
    """``(scale, bias)`` of the per-video probability ``sigmoid(scale * stage-2 score + bias)`` a checkpoint was
    fitted with (``grounding fit-ranker``); None for a checkpoint that was not."""
    fusion = (model.pretrained_metadata.get(RANKING_KEY) or {}).get("fusion") or {}
    if "probability_scale" not in fusion:
        return None
    return float(fusion["probability_scale"]), float(fusion.get("probability_bias", 0.0))
