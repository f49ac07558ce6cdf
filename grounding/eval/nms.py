"""Greedy temporal non-maximum suppression.

Conventions (see docs/metrics.md):

- Candidates are visited in descending score order; ties keep their given order (a stable sort,
  ``np.argsort(-scores, kind="stable")``), so the result never depends on the sort algorithm.
- A candidate is removed when its IoU with an already kept, higher-ranked window is strictly GREATER than
  ``threshold``. IoU equal to the threshold survives. ``threshold >= 1`` therefore keeps everything.
- IoU is :func:`grounding.eval.iou.temporal_iou`'s: float64, 0 for zero-length windows.
"""

from __future__ import annotations

import math

import numpy as np

from grounding.errors import InputError
from grounding.eval.iou import pairwise_temporal_iou


def check_nms_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, or raise :class:`InputError` unless it is a finite number >= 0."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"NMS threshold must be a number in [0, 1], got {threshold!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"NMS threshold must be a number in [0, 1] (>= 1 keeps every window), got {threshold!r}")
    return value


def _check_max_keep(max_keep: int | None) -> None:
    is_count = isinstance(max_keep, (int, np.integer)) and not isinstance(max_keep, bool)
    if max_keep is not None and (not is_count or max_keep < 0):
        raise InputError(f"nms: max_keep must be None or an integer >= 0, got {max_keep!r}")


def nms(windows: np.ndarray, scores: np.ndarray, threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS over one query's candidate windows.

    Args:
        windows: (N, 2) float, ``(start, end)`` in seconds.
        scores: (N,) float, finite; higher is better.
        threshold: IoU above which (strictly) a lower-scored window is removed; ``>= 1`` keeps all.
        max_keep: stop after this many kept windows (``None``: no limit).

    Returns:
        (k,) int64 indices into ``windows``, kept windows in descending score order (ties in given order).
    """
    threshold = check_nms_threshold(threshold)
    _check_max_keep(max_keep)
    windows = np.asarray(windows, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if windows.ndim != 2 or windows.shape[1] != 2 or scores.shape != (windows.shape[0],):
        raise InputError(f"nms: expected windows (N, 2) and scores (N,), got {windows.shape} and {scores.shape}")
    if not np.isfinite(scores).all():
        raise InputError("nms: scores must be finite (found NaN or inf)")
    order = np.argsort(-scores, kind="stable")
    limit = len(order) if max_keep is None else min(int(max_keep), len(order))
    if threshold >= 1.0:
        return order[:limit].astype(np.int64)
    sorted_windows = windows[order]
    suppressed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    for position in range(len(order)):
        if len(kept) >= limit:
            break
        if suppressed[position]:
            continue
        kept.append(position)
        overlaps = pairwise_temporal_iou(sorted_windows[position], sorted_windows[position + 1 :])
        suppressed[position + 1 :] |= overlaps > threshold
    return order[np.asarray(kept, dtype=np.int64)].astype(np.int64)


def batched_nms(
    windows: np.ndarray,
    scores: np.ndarray,
    valid: np.ndarray,
    threshold: float | None,
    max_keep: int | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`nms` for Q queries at once, on padded arrays; the loop runs over candidate ranks, not queries.

    Args:
        windows: (Q, K, 2) float, ``(start, end)`` in seconds; padded rows are ignored.
        scores: (Q, K) float, finite where ``valid``.
        valid: (Q, K) bool, True = a real candidate, False = padding.
        threshold: as in :func:`nms`; ``None`` means no suppression (only sort and cut to ``max_keep``).
        max_keep: keep at most this many per query (``None``: up to K).
        groups: optional (Q, K) int; windows of different groups never suppress each other (e.g. video ids
            in corpus moment retrieval).

    Returns:
        (Q, k) int64 indices into the K axis, kept windows in descending score order (ties in given order),
        padded with -1; ``k = min(max_keep, K)``.
    """
    _check_max_keep(max_keep)
    if threshold is not None:
        threshold = check_nms_threshold(threshold)
    windows = np.asarray(windows, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    num_queries, num_candidates = valid.shape
    if not np.isfinite(scores[valid]).all():
        raise InputError("batched_nms: scores of valid windows must be finite (found NaN or inf)")
    limit = num_candidates if max_keep is None else min(int(max_keep), num_candidates)
    # Padding sorts after every real candidate; the stable sort keeps ties in given order.
    order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")
    sorted_valid = np.take_along_axis(valid, order, axis=1)

    if threshold is None or threshold >= 1.0:
        keep = sorted_valid
    else:
        sorted_windows = np.take_along_axis(windows, order[..., None], axis=1)
        sorted_groups = None if groups is None else np.take_along_axis(np.asarray(groups), order, axis=1)
        num_valid = sorted_valid.sum(axis=1)
        keep = np.zeros_like(sorted_valid)
        suppressed = np.zeros_like(sorted_valid)
        kept_count = np.zeros(num_queries, dtype=np.int64)
        for position in range(num_candidates):
            still_open = (kept_count < limit) & (position < num_valid)
            if not still_open.any():
                break
            take = still_open & sorted_valid[:, position] & ~suppressed[:, position]
            rows = np.flatnonzero(take)
            if rows.size == 0:
                continue
            keep[rows, position] = True
            kept_count[rows] += 1
            later = slice(position + 1, num_candidates)
            overlaps = pairwise_temporal_iou(sorted_windows[rows, position : position + 1], sorted_windows[rows, later])
            remove = overlaps > threshold  # (R, K - position - 1)
            if sorted_groups is not None:
                remove &= sorted_groups[rows, later] == sorted_groups[rows, position : position + 1]
            suppressed[rows, later] |= remove

    # Move kept candidates to the front, still in score order, and cut to `limit`.
    front = np.argsort(~keep, axis=1, kind="stable")[:, :limit]
    kept_indices = np.take_along_axis(order, front, axis=1).astype(np.int64)
    kept_indices[~np.take_along_axis(keep, front, axis=1)] = -1
    return kept_indices
