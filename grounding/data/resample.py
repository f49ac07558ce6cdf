"""Bring a video's clip features to a fixed number of clips N.

Two policies, both vectorized over clips and features:

- :func:`resample_clips`: average-pool when T >= N, linearly interpolate when T < N (every output clip is real).
- :func:`pad_clips`: average-pool when T > N, zero-pad with a False mask when T < N.

Exact definitions (docs/features.md has a worked example):

- **Average pooling (T >= N).** Output clip i (0-based) is the mean of input clips
  ``[floor(i*T/N), floor((i+1)*T/N))``. Because T >= N each segment holds at least one clip; segments are
  contiguous, do not overlap, and use every input clip exactly once (lengths differ by at most one).
  2D-TAN's ``average_to_fixed_length`` rounds the boundaries instead and caps them at T-1, so its last segment
  never includes the last clip; ours does.
- **Linear interpolation (T < N).** Output clip i samples the input at clip position
  ``p_i = (i + 0.5) * T / N - 0.5`` (output clip centres mapped onto input clip centres), clamped to
  ``[0, T-1]``, and blends the two neighbouring clips: ``(1 - w) * x[floor(p_i)] + w * x[floor(p_i) + 1]`` with
  ``w = p_i - floor(p_i)``.

With either policy, output clip i spans ``[i, i+1) * duration / N`` seconds of the video, up to the rounding of
the segment boundaries to whole input clips.
"""

from __future__ import annotations

import numpy as np

from grounding.errors import InputError


def _check_inputs(clip_feats: np.ndarray, num_clips: int, caller: str) -> np.ndarray:
    """Validate ``[T, D]`` features and N; return them as a float64 array for accurate sums."""
    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) or num_clips < 1:
        raise InputError(f"{caller}: num_clips must be an int >= 1, got {num_clips!r}; pass the model's clip count.")
    array = np.asarray(clip_feats)
    if array.ndim != 2:
        raise InputError(
            f"{caller}: clip_feats has shape {tuple(array.shape)}, expected [T clips, D features] (rank 2)."
        )
    if array.dtype.kind not in "fiu":
        raise InputError(f"{caller}: clip_feats has dtype {array.dtype}, expected real numbers (float or int).")
    if array.shape[0] == 0:
        raise InputError(f"{caller}: clip_feats has no clips (shape {tuple(array.shape)}); the video needs T >= 1.")
    return array.astype(np.float64, copy=False)


def _segment_starts(num_input: int, num_output: int) -> np.ndarray:
    """Start index ``floor(i*T/N)`` of each of the N segments, as int64 ``[N]`` (integer arithmetic, exact)."""
    return (np.arange(num_output, dtype=np.int64) * num_input) // num_output


def _average_pool(clip_feats: np.ndarray, num_clips: int) -> np.ndarray:
    """Mean over N contiguous segments of a float64 ``[T, D]`` array with T >= N; returns float64 ``[N, D]``."""
    num_input = clip_feats.shape[0]
    starts = _segment_starts(num_input, num_clips)
    lengths = np.diff(np.append(starts, num_input))  # all >= 1 because T >= N
    return np.add.reduceat(clip_feats, starts, axis=0) / lengths[:, None]


def _interpolate(clip_feats: np.ndarray, num_clips: int) -> np.ndarray:
    """Linear interpolation of a float64 ``[T, D]`` array at N clip centres; returns float64 ``[N, D]``."""
    num_input = clip_feats.shape[0]
    positions = (np.arange(num_clips) + 0.5) * num_input / num_clips - 0.5
    positions = np.clip(positions, 0.0, num_input - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, num_input - 1)
    weight = (positions - lower)[:, None]
    return (1.0 - weight) * clip_feats[lower] + weight * clip_feats[upper]


def resample_clips(clip_feats: np.ndarray, num_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``[T, D]`` clip features to exactly N clips, averaging (T >= N) or interpolating (T < N).

    Args:
        clip_feats: ``[T, D]`` array-like of real numbers, T >= 1.
        num_clips: N, the number of output clips (>= 1).

    Returns:
        ``(resampled, clip_mask)``: float32 ``[N, D]`` and bool ``[N]``, all True (every output clip is real).
        T == N returns the input values unchanged.

    Raises:
        InputError: clip_feats not rank 2, T == 0, or num_clips < 1.

    Example: T=6, N=3 averages clips {0,1}, {2,3}, {4,5}; T=2, N=4 gives x0, 0.75*x0+0.25*x1,
    0.25*x0+0.75*x1, x1.
    """
    array = _check_inputs(clip_feats, num_clips, "resample_clips")
    if array.shape[0] >= num_clips:
        resampled = _average_pool(array, num_clips)
    else:
        resampled = _interpolate(array, num_clips)
    return resampled.astype(np.float32), np.ones(num_clips, dtype=bool)


def pad_clips(clip_feats: np.ndarray, num_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``[T, D]`` clip features into N slots: zero-pad when T < N, average-pool when T > N.

    Args:
        clip_feats: ``[T, D]`` array-like of real numbers, T >= 1.
        num_clips: N, the number of output slots (>= 1).

    Returns:
        ``(padded, clip_mask)``: float32 ``[N, D]`` and bool ``[N]`` with True = real clip. When T < N the first T
        rows are the input and the last N-T rows are zeros with mask False; otherwise the mask is all True and the
        rows are the average pooling of :func:`resample_clips`.

    Raises:
        InputError: clip_feats not rank 2, T == 0, or num_clips < 1.
    """
    array = _check_inputs(clip_feats, num_clips, "pad_clips")
    num_input, width = array.shape
    if num_input >= num_clips:
        return _average_pool(array, num_clips).astype(np.float32), np.ones(num_clips, dtype=bool)
    padded = np.zeros((num_clips, width), dtype=np.float32)
    padded[:num_input] = array
    clip_mask = np.zeros(num_clips, dtype=bool)
    clip_mask[:num_input] = True
    return padded, clip_mask
