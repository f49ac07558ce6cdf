"""What :class:`grounding.model.GroundingModel` returns, and the decoded :class:`Span`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor


class Span(NamedTuple):
    """A predicted moment: ``start`` and ``end`` in SECONDS, ``score`` in [0, 1] (higher is better).

    A tuple, so ``start, end, score = span`` and ``list(span)`` give lighthouse's ``[start, end, score]``.
    """

    start: float
    end: float
    score: float


@dataclass
class GroundingOutput:
    """Scores of every candidate span for each (video, query) pair of a batch.

    Attributes:
        span_logits: (B, M) float, the span classifier's logit for each candidate; -1e4 where
            ``candidate_mask`` is False.
        candidates: (M, 2) int64 ``(start_clip, end_clip)``, both inclusive, shared by the batch (2D-TAN's
            sparse set, :func:`grounding.model.spans.span_candidates`).
        span_scores: (B, M) float in [0, 1], the score used for ranking:
            ``sigmoid(span_logit) * sqrt(sigmoid(start_logit[start_clip]) * sigmoid(end_logit[end_clip]))``
            (``sigmoid(span_logit)`` when ``span.use_boundary_score`` is off; times
            :func:`grounding.model.spans.soft_span_iou` with ``span.inside_score``); 0 where ``candidate_mask`` is False.
        start_logits: (B, T) float, logit that each clip starts the moment; -1e4 at padded clips.
        end_logits: (B, T) float, logit that each clip ends the moment; -1e4 at padded clips.
        candidate_mask: (B, M) bool, True where the candidate lies within the sample's real clips.
        clip_mask: (B, T) bool, the input clip mask (True = real clip), kept for decoding to seconds.
        inside_logits: (B, T) float, logit that each clip lies inside the moment (``span.inside_score``), -1e4 at
            padded clips; None without that head.
        video_embedding: (B, H) float, unit-norm, query-independent summary of each video (for retrieval).
        query_embedding: (B, H) float, unit-norm, video-independent summary of each query (for retrieval).
    """

    span_logits: Tensor
    candidates: Tensor
    span_scores: Tensor
    start_logits: Tensor
    end_logits: Tensor
    candidate_mask: Tensor
    clip_mask: Tensor
    inside_logits: Tensor | None = None
    video_embedding: Tensor | None = None
    query_embedding: Tensor | None = None
