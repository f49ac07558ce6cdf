"""One score per (query, video) pair from the scores of its candidate spans: the video-level score of ranking.

The grounding model scores every candidate span of a (video, query) pair (``GroundingOutput.span_scores``, in
[0, 1]). A ranker needs one number per pair. Both poolings work on log-scores ``log(span_score)``, so the pooled
value is a log-score too (``exp`` of it is in [0, 1]):

- ``max``: the best span's log-score. ``exp`` of it is the top span's score, the number ``grounding ground``
  prints.
- ``softmax``: ``sum_m w_m * s_m`` with ``w = softmax(s / temperature)`` over the valid candidates, i.e. each
  span weighted by how well it matches the query (the query-weighted pooling of CoVR, Ventura et al., AAAI
  2024, applied to span scores). A high temperature gives the mean log-score, a low one the max.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grounding.errors import InputError
from grounding.model.outputs import GroundingOutput

POOLINGS: tuple[str, ...] = ("max", "softmax")
DEFAULT_POOLING_TEMPERATURE = 1.0
# log(span_score) floor: a score of exactly 0 (float underflow) would give -inf, which poisons means and gradients.
LOG_SCORE_FLOOR = -60.0


def span_log_scores(output: GroundingOutput) -> Tensor:
    """``log(span_scores)`` floored at ``LOG_SCORE_FLOOR``: (B, M) float; -inf where ``candidate_mask`` is False."""
    log_scores = torch.log(output.span_scores.float().clamp_min(1e-26)).clamp_min(LOG_SCORE_FLOOR)
    return log_scores.masked_fill(~output.candidate_mask, -torch.inf)


def check_pooling(pooling: str, temperature: float, where: str = "pooling") -> None:
    """InputError unless ``pooling`` is one of :data:`POOLINGS` and ``temperature`` a finite number > 0."""
    if pooling not in POOLINGS:
        raise InputError(f"{where}: unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise InputError(f"{where}: the pooling temperature must be a number > 0, got {temperature!r}")


def pool_log_scores(
    log_scores: Tensor, candidate_mask: Tensor, pooling: str = "max", temperature: float = DEFAULT_POOLING_TEMPERATURE
) -> Tensor:
    """Pool the candidates' log-scores of each pair into one log-score.

    Args:
        log_scores: (B, M) float, from :func:`span_log_scores` (any value where the mask is False).
        candidate_mask: (B, M) bool, True = a valid candidate; every row needs one.
        pooling: ``max`` or ``softmax`` (see the module docstring).
        temperature: the softmax pooling's temperature, in log-score units (> 0; ignored by ``max``).

    Returns:
        (B,) float, a log-score (<= 0); differentiable (``max`` passes the gradient to the best span).
    """
    check_pooling(pooling, temperature)
    if log_scores.shape != candidate_mask.shape or log_scores.ndim != 2:
        raise InputError(
            f"log_scores {tuple(log_scores.shape)} and candidate_mask {tuple(candidate_mask.shape)} must both be (B, M)"
        )
    if not bool(candidate_mask.any(dim=1).all()):
        raise InputError("candidate_mask: a pair has no valid candidate span to pool")
    masked = log_scores.masked_fill(~candidate_mask, -torch.inf)
    if pooling == "max":
        return masked.max(dim=1).values
    weights = torch.softmax(masked / temperature, dim=1)  # 0 at invalid candidates
    return (weights * log_scores.masked_fill(~candidate_mask, 0.0)).sum(dim=1)


def pool_span_scores(
    output: GroundingOutput, pooling: str = "max", temperature: float = DEFAULT_POOLING_TEMPERATURE
) -> Tensor:
    """The video-level log-score of each (video, query) pair of ``output``: (B,) float, see :func:`pool_log_scores`."""
    return pool_log_scores(span_log_scores(output), output.candidate_mask, pooling, temperature)
