"""TemporalCrop: the cropped window holds the whole moment, the target moves with it, and it is seeded."""

from __future__ import annotations

import numpy as np
import pytest

from grounding.errors import ConfigError
from grounding.training.augment import TemporalCrop


def _video(num_clips: int = 20, dim: int = 3) -> np.ndarray:
    return np.arange(num_clips * dim, dtype=np.float32).reshape(num_clips, dim)


def test_crop_keeps_the_moment_and_shifts_the_target() -> None:
    feats = _video(20)  # 20 clips over 40 s: 2 s a clip
    crop = TemporalCrop(probability=1.0)
    seen_first, seen_stop = set(), set()
    for seed in range(200):
        result = crop(np.random.default_rng(seed), feats, 40.0, (13.0, 21.0))
        first = result.first_clip
        stop = first + result.clip_feats.shape[0]
        seen_first.add(first)
        seen_stop.add(stop)
        # the moment covers stored clips 6..10; the window always holds them
        assert first <= 6 and stop >= 11
        np.testing.assert_array_equal(result.clip_feats, feats[first:stop])
        assert result.duration == pytest.approx((stop - first) * 2.0)
        assert result.target_window == pytest.approx((13.0 - 2.0 * first, 21.0 - 2.0 * first))
    # every allowed start (0..6) and stop (11..20) turns up
    assert seen_first == set(range(7)) and seen_stop == set(range(11, 21))


def test_crop_clips_a_target_past_the_end() -> None:
    feats = _video(10)
    result = TemporalCrop(1.0)(np.random.default_rng(3), feats, 10.0, (7.5, 12.0))
    assert result.target_window[1] == pytest.approx(result.duration)
    assert result.clip_feats.shape[0] >= 3  # clips 7, 8, 9 always stay


def test_probability_zero_and_seeding() -> None:
    feats = _video(12)
    unchanged = TemporalCrop(0.0)(np.random.default_rng(0), feats, 12.0, (2.0, 4.0))
    assert unchanged.clip_feats is feats and unchanged.duration == 12.0 and unchanged.target_window == (2.0, 4.0)
    crop = TemporalCrop(0.5)
    first = [crop(np.random.default_rng([1, epoch]), feats, 12.0, (5.0, 6.0)).first_clip for epoch in range(50)]
    again = [crop(np.random.default_rng([1, epoch]), feats, 12.0, (5.0, 6.0)).first_clip for epoch in range(50)]
    assert first == again
    cropped = sum(
        crop(np.random.default_rng([1, epoch]), feats, 12.0, (5.0, 6.0)).clip_feats.shape[0] < 12 for epoch in range(50)
    )
    assert 10 < cropped < 40  # about half the samples (a crop may also draw the whole video)


def test_bad_probability_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="crop_probability"):
        TemporalCrop(1.5)
