"""Temporal intersection over union of windows given in seconds.

Conventions (see docs/metrics.md):

- A window is ``(start, end)`` in seconds, used as given: nothing is clipped to the video's duration.
- A window's length is ``max(end - start, 0)``; a reversed window (start > end) therefore counts as empty.
  The predictions reader rejects reversed windows, so this only matters to callers passing raw arrays.
- IoU is ``intersection / union`` in float64. Where the union is 0 (two zero-length windows, even identical
  ones) the IoU is defined as 0, without NaN or a numpy warning. A zero-length window inside a longer one has
  intersection 0, hence IoU 0: a point is never a hit.
"""

from __future__ import annotations

import numpy as np


def _as_windows(windows: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(windows, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"temporal_iou: {name} must have shape (N, 2) as (start, end) rows, got {array.shape}")
    return array


def temporal_iou(pred_windows: np.ndarray, gt_windows: np.ndarray) -> np.ndarray:
    """IoU of every predicted window with every ground-truth window.

    Args:
        pred_windows: (N, 2) float, ``(start, end)`` in seconds.
        gt_windows: (M, 2) float, ``(start, end)`` in seconds.

    Returns:
        (N, M) float64 IoU in [0, 1]; 0 where the union is 0.
    """
    pred = _as_windows(pred_windows, "pred_windows")
    gt = _as_windows(gt_windows, "gt_windows")
    return pairwise_temporal_iou(pred[:, None, :], gt[None, :, :])


def pairwise_temporal_iou(windows_a: np.ndarray, windows_b: np.ndarray) -> np.ndarray:
    """IoU of two broadcastable stacks of windows, element by element.

    Args:
        windows_a: (..., 2) float64 ``(start, end)`` in seconds.
        windows_b: (..., 2) float64, broadcastable against ``windows_a``.

    Returns:
        float64 array of the broadcast shape without the last axis; 0 where the union is 0.
    """
    start_a, end_a = windows_a[..., 0], windows_a[..., 1]
    start_b, end_b = windows_b[..., 0], windows_b[..., 1]
    intersection = np.maximum(np.minimum(end_a, end_b) - np.maximum(start_a, start_b), 0.0)
    union = np.maximum(end_a - start_a, 0.0) + np.maximum(end_b - start_b, 0.0) - intersection
    iou = np.zeros(np.broadcast_shapes(intersection.shape, union.shape), dtype=np.float64)
    np.divide(intersection, union, out=iou, where=union > 0)
    return iou
