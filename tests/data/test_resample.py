"""Resampling clip features to N clips: hand-computed averages, interpolation and padding."""

from __future__ import annotations

import numpy as np
import pytest

from grounding.data.resample import pad_clips, resample_clips
from grounding.errors import InputError


def _ramp(num_clips: int, width: int = 2) -> np.ndarray:
    """Clip t has features [t, 10*t, ...]: easy to average by hand."""
    return np.arange(num_clips, dtype=np.float32)[:, None] * (10.0 ** np.arange(width, dtype=np.float32))


def test_average_t6_to_n3_pairs_of_clips():
    resampled, clip_mask = resample_clips(_ramp(6), 3)
    # segments [0,2), [2,4), [4,6): means 0.5, 2.5, 4.5
    np.testing.assert_allclose(resampled, [[0.5, 5.0], [2.5, 25.0], [4.5, 45.0]], atol=1e-6)
    assert resampled.dtype == np.float32 and resampled.shape == (3, 2)
    assert clip_mask.dtype == bool and clip_mask.tolist() == [True, True, True]


def test_average_t7_to_n3_uses_floor_boundaries():
    resampled, clip_mask = resample_clips(_ramp(7), 3)
    # floor(i*7/3) -> boundaries 0, 2, 4, 7: segments {0,1}, {2,3}, {4,5,6}
    np.testing.assert_allclose(resampled[:, 0], [0.5, 2.5, 5.0], atol=1e-6)
    assert clip_mask.all()


def test_average_uses_every_clip_once():
    clip_feats = np.random.default_rng(0).normal(size=(23, 4)).astype(np.float32)
    resampled, _ = resample_clips(clip_feats, 5)
    # boundaries 0, 4, 9, 13, 18, 23 -> weighted sum of segment means equals the total
    lengths = np.array([4, 5, 4, 5, 5])
    np.testing.assert_allclose((resampled * lengths[:, None]).sum(0), clip_feats.sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(resampled[1], clip_feats[4:9].mean(0), atol=1e-6)


def test_interpolate_t2_to_n4_exact_values():
    clip_feats = np.array([[0.0, 4.0], [8.0, 0.0]], dtype=np.float32)
    resampled, clip_mask = resample_clips(clip_feats, 4)
    # positions -0.25 -> 0, 0.25, 0.75, 1.25 -> 1
    np.testing.assert_allclose(resampled, [[0.0, 4.0], [2.0, 3.0], [6.0, 1.0], [8.0, 0.0]], atol=1e-6)
    assert clip_mask.tolist() == [True] * 4


def test_interpolate_single_clip_repeats_it():
    resampled, clip_mask = resample_clips(np.array([[3.0, -1.0]]), 3)
    np.testing.assert_array_equal(resampled, [[3.0, -1.0]] * 3)
    assert clip_mask.all()


def test_t_equals_n_is_identity():
    clip_feats = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    resampled, clip_mask = resample_clips(clip_feats, 5)
    np.testing.assert_array_equal(resampled, clip_feats)
    padded, pad_mask = pad_clips(clip_feats, 5)
    np.testing.assert_array_equal(padded, clip_feats)
    assert clip_mask.all() and pad_mask.all()


def test_pad_clips_zero_pads_with_false_mask():
    padded, clip_mask = pad_clips(_ramp(2) + 1.0, 4)
    np.testing.assert_array_equal(padded, [[1.0, 1.0], [2.0, 11.0], [0.0, 0.0], [0.0, 0.0]])
    assert padded.dtype == np.float32
    assert clip_mask.tolist() == [True, True, False, False]


def test_pad_clips_average_pools_long_videos():
    padded, clip_mask = pad_clips(_ramp(7), 3)
    np.testing.assert_allclose(padded[:, 0], [0.5, 2.5, 5.0], atol=1e-6)
    assert clip_mask.tolist() == [True, True, True]


@pytest.mark.parametrize("function", [resample_clips, pad_clips])
def test_bad_inputs_raise(function):
    with pytest.raises(InputError, match="num_clips must be an int >= 1, got 0"):
        function(_ramp(3), 0)
    with pytest.raises(InputError, match=r"no clips \(shape \(0, 2\)\)"):
        function(np.zeros((0, 2), dtype=np.float32), 4)
    with pytest.raises(InputError, match=r"expected \[T clips, D features\] \(rank 2\)"):
        function(np.zeros(5, dtype=np.float32), 4)
