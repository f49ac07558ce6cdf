"""Training objective of :class:`grounding.model.GroundingModel`.

``loss = span + boundary_weight * boundary [+ inside_weight * inside] + contrastive_weight * contrastive`` where

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
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from grounding.errors import InputError
from grounding.model.config import LossConfig
from grounding.model.outputs import GroundingOutput
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


def contrastive_loss(
    video_embedding: Tensor, query_embedding: Tensor, temperature: float, video_ids: Sequence[str] | None = None
) -> Tensor:
    """Symmetric in-batch InfoNCE between unit-norm video and query embeddings.

    Args:
        video_embedding: (B, H) float, unit-norm.
        query_embedding: (B, H) float, unit-norm.
        temperature: softmax temperature > 0.
        video_ids: optional B video ids; pairs (i, j != i) of the same video are dropped from the negatives.

    Returns:
        scalar; 0 for a batch of one.
    """
    batch_size = video_embedding.shape[0]
    if batch_size < 2:
        return video_embedding.sum() * 0.0
    logits = query_embedding @ video_embedding.T / temperature  # (B queries, B videos)
    if video_ids is not None:
        if len(video_ids) != batch_size:
            raise InputError(f"video_ids: expected one per sample ({batch_size}), got {len(video_ids)}")
        codes = {name: code for code, name in enumerate(dict.fromkeys(video_ids))}
        ids = torch.tensor([codes[name] for name in video_ids], device=logits.device)
        same_video = (ids[:, None] == ids[None, :]) & ~torch.eye(batch_size, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_video, -math.inf)
    labels = torch.arange(batch_size, device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def compute_loss(
    output: GroundingOutput,
    target_windows: Tensor,
    durations: Sequence[float] | Tensor,
    config: LossConfig,
    video_ids: Sequence[str] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss of a batch and its parts.

    Args:
        output: the model's :class:`GroundingOutput` for B (video, query) pairs.
        target_windows: (B, 2) float ground-truth ``(start, end)`` in seconds; clipped to ``[0, duration]``.
        durations: (B,) video durations in seconds.
        config: :class:`LossConfig` (``model.config.loss``).
        video_ids: optional B video ids, used by the contrastive term only.

    Returns:
        ``(loss, parts)``: the scalar loss to minimise, and detached scalars ``{"span", "boundary",
        "inside", "contrastive", "total"}`` ("inside" is 0 without that head).
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
            output.video_embedding, output.query_embedding, config.contrastive_temperature, video_ids
        )
        total = total + config.contrastive_weight * contrastive
    parts = {
        "span": span_loss.detach(),
        "boundary": boundary_loss.detach(),
        "inside": inside.detach(),
        "contrastive": contrastive.detach(),
        "total": total.detach(),
    }
    return total, parts
