"""Training objective of :class:`grounding.model.GroundingModel`.

``loss = span + boundary_weight * boundary [+ inside_weight * inside] + contrastive_weight * contrastive
+ ranking_weight * ranking`` where

- ``span``: 2D-TAN's scaled-IoU binary cross-entropy over the valid candidates. The IoU of each candidate's
  window (seconds, :func:`grounding.model.spans.candidate_windows`) with the ground truth becomes the soft
  target ``clamp((iou - min_iou) / (max_iou - min_iou), 0, 1)``.
- ``boundary``: binary cross-entropy of the start and end logits of the real clips against Gaussian targets
  ``exp(-(t - c)^2 / (2 sigma^2))`` centred on the ground-truth start clip and end clip.
- ``inside`` (only when the model has ``span.inside_score``): binary cross-entropy of the per-clip inside logits
  against the fraction of each clip the ground truth covers.
- ``contrastive``: symmetric InfoNCE between the batch's video and query embeddings (each query's own video
  is its positive; other samples of the same video are left out of its negatives when ``video_ids`` is
  given). Off by default (weight 0).
- ``ranking``: HN-NCE of each query's score on its own video against its pooled span scores
  (:mod:`grounding.model.pooling`) on ``ranking_negatives`` other videos of the batch, so that scores compare across
  videos (what a ranker needs). The own video's score is its best span among those that are right
  (``ranking_positive: target``, the default: pushing up whichever span scores highest would teach it to be the
  wrong one) or its pooled score (``pooled``). Off by default (weight 0).

Both contrastive terms are HN-NCE (``contrastive_alpha``, ``contrastive_beta``); the defaults 1 and 0 make them
InfoNCE exactly. A pair known to be a true match (the same video, or ``false_negatives``) is never a negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from grounding.errors import InputError
from grounding.model.config import LossConfig
from grounding.model.outputs import GroundingOutput
from grounding.model.pooling import pool_span_scores, span_log_scores
from grounding.model.spans import candidate_windows, check_durations


def _check_targets(target_windows: Tensor, durations: Tensor) -> Tensor:
    if target_windows.ndim != 2 or target_windows.shape != (durations.shape[0], 2):
        raise InputError(
            f"target_windows must have shape (B, 2) = ({durations.shape[0]}, 2) as (start, end) in seconds, "
            f"got {tuple(target_windows.shape)}"
        )
    finite = torch.isfinite(target_windows).all(dim=1)
    reversed_ = target_windows[:, 0] > target_windows[:, 1]
    bad = ~finite | reversed_
    if bad.any():
        index = int(bad.nonzero()[0, 0])
        start, end = (float(value) for value in target_windows[index])
        raise InputError(
            f"target_windows: sample {index} has window ({start}, {end}) s; a target needs finite start <= end"
        )
    return torch.minimum(target_windows.clamp_min(0.0), durations[:, None])


def scaled_iou_targets(output: GroundingOutput, target_windows: Tensor, durations: Tensor, config: LossConfig) -> Tensor:
    """2D-TAN's soft targets ``clamp((iou - min_iou) / (max_iou - min_iou), 0, 1)``.

    Args:
        output: the model output (candidates, clip mask).
        target_windows: (B, 2) float64 ground-truth ``(start, end)`` in seconds, within the video.
        durations: (B,) float64 seconds.
        config: the loss settings.

    Returns:
        (B, M) float64 in [0, 1].
    """
    windows = candidate_windows(output.candidates, output.clip_mask, durations)  # (B, M, 2)
    target = target_windows[:, None, :]
    intersection = (torch.minimum(windows[..., 1], target[..., 1]) - torch.maximum(windows[..., 0], target[..., 0])).clamp_min(0)
    union = (windows[..., 1] - windows[..., 0]) + (target[..., 1] - target[..., 0]) - intersection
    iou = torch.where(union > 0, intersection / union.clamp_min(1e-12), torch.zeros_like(union))
    return ((iou - config.min_iou) / (config.max_iou - config.min_iou)).clamp(0.0, 1.0)


def boundary_targets(clip_mask: Tensor, target_windows: Tensor, durations: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """Gaussian start and end targets over the clips.

    The ground-truth start clip is the real clip containing the start time, the end clip the one
    containing the end time (an end exactly on a clip border belongs to the clip before it).

    Args:
        clip_mask: (B, T) bool, True = real clip (a prefix).
        target_windows: (B, 2) float64 ``(start, end)`` seconds.
        durations: (B,) float64 seconds.
        sigma: Gaussian width in clips.

    Returns:
        start_targets, end_targets: (B, T) float64 in [0, 1], peaking at 1 on the ground-truth clips.
    """
    num_real = clip_mask.sum(dim=1).double()  # (B,)
    position = target_windows * (num_real / durations)[:, None]  # (B, 2) in clips
    last = (num_real - 1)[:, None]
    start_clip = position[:, :1].floor().clamp(min=0).minimum(last)
    end_clip = (position[:, 1:].ceil() - 1).clamp(min=0).minimum(last)
    clips = torch.arange(clip_mask.shape[1], device=clip_mask.device, dtype=torch.float64)[None, :]
    start_targets = torch.exp(-((clips - start_clip) ** 2) / (2 * sigma**2))
    end_targets = torch.exp(-((clips - end_clip) ** 2) / (2 * sigma**2))
    return start_targets, end_targets


def inside_targets(clip_mask: Tensor, target_windows: Tensor, durations: Tensor) -> Tensor:
    """The fraction of each real clip that the ground-truth window covers.

    Args:
        clip_mask: (B, T) bool, True = real clip (a prefix).
        target_windows: (B, 2) float64 ``(start, end)`` seconds.
        durations: (B,) float64 seconds.

    Returns:
        (B, T) float64 in [0, 1]; 0 at padded clips.
    """
    num_real = clip_mask.sum(dim=1).double()  # (B,)
    position = target_windows * (num_real / durations)[:, None]  # (B, 2) in clips
    clips = torch.arange(clip_mask.shape[1], device=clip_mask.device, dtype=torch.float64)[None, :]
    covered = torch.minimum(clips + 1, position[:, 1:]) - torch.maximum(clips, position[:, :1])
    return covered.clamp(0.0, 1.0) * clip_mask


def hn_nce_loss(logits: Tensor, positive: Tensor, negative_mask: Tensor, alpha: float = 1.0, beta: float = 0.0) -> Tensor:
    r"""HN-NCE (Radenovic et al., 2023; the loss of CoVR, Ventura et al., AAAI 2024) over rows of candidates.

    For each row (an anchor) with positive column :math:`p` and negatives :math:`N` (``n = |N|``):

    .. math::
        \ell = -\log \frac{e^{s_p}}{\alpha e^{s_p} + \sum_{j \in N} w_j e^{s_j}}, \qquad
        w_j = n \, \mathrm{softmax}_{j \in N}(\beta s_j)

    ``beta > 0`` weights the harder (higher-scored) negatives up; ``alpha < 1`` takes part of the positive out of
    the denominator. ``alpha = 1, beta = 0`` is InfoNCE exactly (``w_j = 1``). Rows without a negative carry no
    contrast and are left out of the mean.

    With several positives per row (a bool mask, e.g. every video a query is true of), :math:`e^{s_p}` becomes
    :math:`\sum_{p \in P} e^{s_p}` in both places: the multi-positive InfoNCE at ``alpha = 1, beta = 0``.

    Args:
        logits: (A, C) float, scores already divided by the temperature.
        positive: (A,) int64, each row's positive column; or (A, C) bool, each row's positive columns (a row
            without one is left out like a row without a negative).
        negative_mask: (A, C) bool, True where a column may serve as a negative (the positive column is never one).
        alpha: in (0, 1].
        beta: >= 0.

    Returns:
        scalar, the mean over rows with at least one negative; 0 (keeping the graph) when there is none.
    """
    if positive.dtype == torch.bool:  # several positives per row: their summed exponentials take e^{s_p}'s place
        negatives = negative_mask & ~positive
        has_negative = negatives.any(dim=1) & positive.any(dim=1)
        safe = positive | ~positive.any(dim=1, keepdim=True)  # a row without a positive: finite, then left out
        positive_logit = torch.logsumexp(logits.masked_fill(~safe, -math.inf), dim=1)
    else:
        rows = torch.arange(logits.shape[0], device=logits.device)
        columns = torch.arange(logits.shape[1], device=logits.device)
        negatives = negative_mask & (columns[None, :] != positive[:, None])
        positive_logit = logits[rows, positive]
        has_negative = negatives.any(dim=1)
    if not bool(has_negative.any()):
        return logits.sum() * 0.0
    if beta == 0:
        log_weights = torch.zeros_like(logits)  # exactly 1: InfoNCE
    else:
        count = negatives.sum(dim=1, keepdim=True).clamp_min(1).to(logits.dtype)
        log_weights = torch.log(count) + torch.log_softmax((beta * logits).masked_fill(~negatives, -math.inf), dim=1)
    weighted = (log_weights + logits).masked_fill(~negatives, -math.inf)
    positive_term = (positive_logit + math.log(alpha))[:, None]
    denominator = torch.logsumexp(torch.cat([positive_term, weighted], dim=1), dim=1)
    return (denominator - positive_logit)[has_negative].mean()


def _pair_codes(video_ids: Sequence[str], device: torch.device) -> Tensor:
    codes = {name: code for code, name in enumerate(dict.fromkeys(video_ids))}
    return torch.tensor([codes[name] for name in video_ids], device=device)


def contrastive_loss(
    video_embedding: Tensor,
    query_embedding: Tensor,
    temperature: float,
    video_ids: Sequence[str] | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    false_negatives: Tensor | None = None,
) -> Tensor:
    """Symmetric in-batch HN-NCE between unit-norm video and query embeddings (InfoNCE at the defaults).

    Args:
        video_embedding: (B, H) float, unit-norm.
        query_embedding: (B, H) float, unit-norm.
        temperature: softmax temperature > 0.
        video_ids: optional B video ids; pairs (i, j != i) of the same video are dropped from the negatives.
        alpha, beta: see :func:`hn_nce_loss`.
        false_negatives: optional (B queries, B videos) bool, True where query i is known to be true of video j
            (e.g. the rendered world's multi-positive truth); those pairs are dropped from the negatives both ways.

    Returns:
        scalar; 0 for a batch of one.
    """
    batch_size = video_embedding.shape[0]
    if batch_size < 2:
        return video_embedding.sum() * 0.0
    logits = query_embedding @ video_embedding.T / temperature  # (B queries, B videos)
    allowed = torch.ones(batch_size, batch_size, dtype=torch.bool, device=logits.device)
    if video_ids is not None:
        if len(video_ids) != batch_size:
            raise InputError(f"video_ids: expected one per sample ({batch_size}), got {len(video_ids)}")
        ids = _pair_codes(video_ids, logits.device)
        allowed &= ids[:, None] != ids[None, :]
    if false_negatives is not None:
        allowed &= ~false_negatives.to(logits.device)
    labels = torch.arange(batch_size, device=logits.device)
    return 0.5 * (hn_nce_loss(logits, labels, allowed, alpha, beta) + hn_nce_loss(logits.T, labels, allowed.T, alpha, beta))


def negative_video_index(batch_size: int, num_negatives: int) -> Tensor:
    """Which videos of the batch each query is scored against as negatives: (B, n) int64, ``(i + k) % B`` for
    ``k = 1 .. n`` (n is capped at ``B - 1``, so a video is never paired with its own query's slot twice)."""
    count = max(0, min(num_negatives, batch_size - 1))
    return (torch.arange(batch_size)[:, None] + torch.arange(1, count + 1)[None, :]) % batch_size


@dataclass
class RankingNegatives:
    """Each query of a batch scored against other videos of the batch, for the ranking term.

    Attributes:
        output: the model's output for the B * n (video, query) pairs, row ``k * B + i`` = query i with video
            ``negative_video_index(B, n)[i, k]``; None when n = 0 (a batch of one).
        valid: (B, n) bool, False where that video is not a true negative of the query (the same video, or a
            video the query is known to be true of).
    """

    output: GroundingOutput | None
    valid: Tensor


def target_span_log_scores(output: GroundingOutput, iou_targets: Tensor) -> Tensor:
    """(B,) the best log-score among the candidates that count as the right moment (scaled-IoU target > 0, i.e.
    IoU above ``loss.min_iou`` with the ground truth); the candidate of highest target where none does."""
    log_scores = span_log_scores(output)
    right = (iou_targets > 0) & output.candidate_mask
    best = torch.zeros_like(right)
    best[torch.arange(len(right), device=right.device), iou_targets.masked_fill(~output.candidate_mask, -1).argmax(dim=1)] = True
    chosen = torch.where(right.any(dim=1, keepdim=True), right, best)
    return log_scores.masked_fill(~chosen, -torch.inf).max(dim=1).values


def ranking_loss(
    positive_scores: Tensor, negative_scores: Tensor, valid: Tensor, temperature: float, alpha: float = 1.0, beta: float = 0.0
) -> Tensor:
    """HN-NCE of each query's pooled log-score on its own video against its scores on other videos.

    Args:
        positive_scores: (B,) pooled log-scores of the (own video, query) pairs.
        negative_scores: (B, n) pooled log-scores on the negative videos.
        valid: (B, n) bool, True = a true negative.
        temperature: > 0, divides the log-scores.
        alpha, beta: see :func:`hn_nce_loss`.
    """
    logits = torch.cat([positive_scores[:, None], negative_scores], dim=1) / temperature  # (B, 1 + n)
    mask = torch.cat([torch.zeros_like(valid[:, :1]), valid], dim=1)
    return hn_nce_loss(logits, torch.zeros_like(positive_scores, dtype=torch.long), mask, alpha, beta)


def compute_loss(
    output: GroundingOutput,
    target_windows: Tensor,
    durations: Sequence[float] | Tensor,
    config: LossConfig,
    video_ids: Sequence[str] | None = None,
    *,
    negatives: RankingNegatives | None = None,
    false_negatives: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss of a batch and its parts.

    Args:
        output: the model's :class:`GroundingOutput` for B (video, query) pairs.
        target_windows: (B, 2) float ground-truth ``(start, end)`` in seconds; clipped to ``[0, duration]``.
        durations: (B,) video durations in seconds.
        config: :class:`LossConfig` (``model.config.loss``).
        video_ids: optional B video ids, used by the contrastive terms only.
        negatives: the batch's queries scored on other videos of the batch; needed when
            ``config.ranking_weight > 0``.
        false_negatives: optional (B, B) bool, True where query i is known to be true of video j (dropped from
            the embedding term's negatives).

    Returns:
        ``(loss, parts)``: the scalar loss to minimise, and detached scalars ``{"span", "boundary",
        "inside", "contrastive", "ranking", "total"}`` ("inside" is 0 without that head).
    """
    device = output.span_logits.device
    seconds = check_durations(durations, output.span_logits.shape[0], device)
    targets = _check_targets(torch.as_tensor(target_windows, dtype=torch.float64, device=device), seconds)

    candidate_mask = output.candidate_mask
    iou_targets = scaled_iou_targets(output, targets, seconds, config).to(output.span_logits.dtype)
    span_terms = F.binary_cross_entropy_with_logits(output.span_logits, iou_targets, reduction="none")
    span_loss = span_terms[candidate_mask].mean()

    clip_mask = output.clip_mask
    start_targets, end_targets = boundary_targets(clip_mask, targets, seconds, config.boundary_sigma)
    dtype = output.start_logits.dtype
    boundary_terms = F.binary_cross_entropy_with_logits(
        output.start_logits, start_targets.to(dtype), reduction="none"
    ) + F.binary_cross_entropy_with_logits(output.end_logits, end_targets.to(dtype), reduction="none")
    boundary_loss = 0.5 * boundary_terms[clip_mask].mean()

    total = span_loss + config.boundary_weight * boundary_loss
    inside = span_loss.new_zeros(())
    if output.inside_logits is not None:
        coverage = inside_targets(clip_mask, targets, seconds).to(dtype)
        inside_terms = F.binary_cross_entropy_with_logits(output.inside_logits, coverage, reduction="none")
        inside = inside_terms[clip_mask].mean()
        total = total + config.inside_weight * inside
    contrastive = span_loss.new_zeros(())
    if config.contrastive_weight > 0:
        if output.video_embedding is None or output.query_embedding is None:
            raise InputError("compute_loss: loss.contrastive_weight > 0 needs video_embedding and query_embedding in the output")
        contrastive = contrastive_loss(
            output.video_embedding, output.query_embedding, config.contrastive_temperature, video_ids,
            config.contrastive_alpha, config.contrastive_beta, false_negatives,
        )
        total = total + config.contrastive_weight * contrastive
    ranking = span_loss.new_zeros(())
    if config.ranking_weight > 0:
        if negatives is None:
            raise InputError("compute_loss: loss.ranking_weight > 0 needs the batch's negative pairs (negatives=...)")
        if negatives.output is None or negatives.valid.shape[1] == 0:
            return _finish(total, span_loss, boundary_loss, inside, contrastive, ranking)
        batch_size = output.span_logits.shape[0]
        pooled = lambda scored: pool_span_scores(scored, config.ranking_pooling, config.ranking_pooling_temperature)  # noqa: E731
        negative_scores = pooled(negatives.output).view(-1, batch_size).T  # (B, n): row k * B + i -> [i, k]
        if config.ranking_positive == "target":
            positive_scores = target_span_log_scores(output, iou_targets)
        else:
            positive_scores = pooled(output)
        ranking = ranking_loss(
            positive_scores, negative_scores, negatives.valid.to(device), config.ranking_temperature,
            config.contrastive_alpha, config.contrastive_beta,
        )
        total = total + config.ranking_weight * ranking
    return _finish(total, span_loss, boundary_loss, inside, contrastive, ranking)


def _finish(
    total: Tensor, span: Tensor, boundary: Tensor, inside: Tensor, contrastive: Tensor, ranking: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    parts = {"span": span, "boundary": boundary, "inside": inside, "contrastive": contrastive, "ranking": ranking}
    return total, {**{name: value.detach() for name, value in parts.items()}, "total": total.detach()}
