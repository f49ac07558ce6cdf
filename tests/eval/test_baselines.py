"""Blind baselines: exact outputs on tiny hand-built queries."""

from __future__ import annotations

import numpy as np
import pytest

from grounding.data.records import QueryRecord
from grounding.errors import ConfigError, InputError
from grounding.eval.baselines import (
    BASELINES,
    FullVideoBaseline,
    IoUPriorBaseline,
    MomentPriorBaseline,
    UniformRandomBaseline,
    baseline_options,
    make_baseline,
    normalized_moments,
    video_folds,
)
from grounding.eval.iou import pairwise_temporal_iou


def _record(qid: int, duration: float, window: tuple[float, float] = (0.0, 1.0), video_id: str = "") -> QueryRecord:
    return QueryRecord(qid, video_id or f"v{qid}", duration, (window,), f"query {qid}")


@pytest.fixture
def test_records() -> list[QueryRecord]:
    return [_record(0, 30.0), _record(1, 12.5), _record(7, 100.0)]


@pytest.fixture
def concentrated_train() -> list[QueryRecord]:
    """30 queries whose moment is always the 2nd fifth of the video [0.2, 0.4], whatever its length."""
    return [_record(qid, duration, (0.2 * duration, 0.4 * duration)) for qid, duration in enumerate(range(10, 40))]


def test_full_video_predicts_the_whole_video_with_score_one(test_records: list[QueryRecord]) -> None:
    baseline = FullVideoBaseline().fit([])
    np.testing.assert_array_equal(baseline.predict(test_records[1]), [[0.0, 12.5, 1.0]])
    assert baseline.predict(test_records[2]).shape == (1, 3)
    assert repr(baseline) == "FullVideoBaseline()"


def test_uniform_random_is_reproducible_for_a_seed_and_changes_with_it(test_records: list[QueryRecord]) -> None:
    first = [UniformRandomBaseline(top_k=10, seed=3).predict(record) for record in test_records]
    again = [UniformRandomBaseline(top_k=10, seed=3).predict(record) for record in test_records]
    other_seed = [UniformRandomBaseline(top_k=10, seed=4).predict(record) for record in test_records]
    for a, b, c in zip(first, again, other_seed):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a[:, :2], c[:, :2])


def test_uniform_random_does_not_depend_on_query_order(test_records: list[QueryRecord]) -> None:
    baseline = UniformRandomBaseline(top_k=5, seed=0)
    forward = {record.qid: baseline.predict(record) for record in test_records}
    backward = {record.qid: baseline.predict(record) for record in reversed(test_records)}
    for qid in forward:
        np.testing.assert_array_equal(forward[qid], backward[qid])
    # two queries of equal duration still get different windows (the qid seeds them)
    a, b = baseline.predict(_record(0, 30.0)), baseline.predict(_record(1, 30.0))
    assert not np.allclose(a, b)


def test_uniform_random_windows_lie_inside_the_video(test_records: list[QueryRecord]) -> None:
    for record in test_records:
        windows = UniformRandomBaseline(top_k=50, seed=1).predict(record)
        assert windows.shape == (50, 3)
        assert (windows[:, 0] >= 0).all() and (windows[:, 1] <= record.duration).all()
        assert (windows[:, 0] <= windows[:, 1]).all()
        assert (np.diff(windows[:, 2]) < 0).all()  # descending scores


def test_moment_prior_predicts_the_training_moment_first_scaled_to_the_test_video(
    concentrated_train: list[QueryRecord], test_records: list[QueryRecord]
) -> None:
    baseline = MomentPriorBaseline(top_k=5, grid_size=10, bandwidth=0.05, nms_threshold=0.5).fit(concentrated_train)
    for record in test_records:
        windows = baseline.predict(record)
        np.testing.assert_allclose(windows[0, :2], [0.2 * record.duration, 0.4 * record.duration])
        assert (np.diff(windows[:, 2]) <= 0).all()
        assert (windows[:, 0] >= 0).all() and (windows[:, 1] <= record.duration + 1e-9).all()


@pytest.mark.parametrize("cls", [MomentPriorBaseline, IoUPriorBaseline])
def test_priors_are_deterministic(cls: type, concentrated_train: list[QueryRecord]) -> None:
    record = _record(0, 42.0)
    first = cls(top_k=10, grid_size=20).fit(concentrated_train).predict(record)
    second = cls(top_k=10, grid_size=20).fit(list(reversed(concentrated_train))).predict(record)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", ["moment-prior", "iou-prior"])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_priors_apply_nms(concentrated_train: list[QueryRecord], name: str, threshold: float) -> None:
    baseline = make_baseline(name, top_k=8, grid_size=20, nms_threshold=threshold)
    windows = baseline.fit(concentrated_train).predict(_record(0, 50.0))
    assert len(windows) == 8
    overlaps = pairwise_temporal_iou(windows[:, None, :2], windows[None, :, :2])  # (K, K)
    off_diagonal = overlaps[~np.eye(len(windows), dtype=bool)]
    assert off_diagonal.max() <= threshold + 1e-12


def test_moment_prior_without_smoothing_counts_moments_on_the_grid() -> None:
    # 3 moments at [0, 0.5] and 1 at [0.5, 1.0] of their video, grid step 0.25 -> counts 3 and 1
    train = [_record(i, 8.0, (0.0, 4.0)) for i in range(3)] + [_record(3, 4.0, (2.0, 4.0))]
    baseline = MomentPriorBaseline(top_k=3, grid_size=4, bandwidth=0.0, nms_threshold=1.0)
    points, durations = normalized_moments(train)
    np.testing.assert_allclose(points, [[0, 0.5]] * 3 + [[0.5, 1.0]])
    np.testing.assert_allclose(durations, [8, 8, 8, 4])
    density = baseline.prior_density(points)
    assert density[0, 2] == 3 and density[2, 4] == 1 and density.sum() == 4
    windows = baseline.fit(train).predict(_record(9, 20.0))
    np.testing.assert_allclose(windows[:2], [[0.0, 10.0, 0.75], [10.0, 20.0, 0.25]])


def test_moment_prior_duration_bins_learn_one_prior_per_video_length() -> None:
    short = [_record(i, 10.0, (0.0, 2.0)) for i in range(10)]  # short videos: the first fifth
    long = [_record(10 + i, 100.0, (80.0, 100.0)) for i in range(10)]  # long videos: the last fifth
    baseline = MomentPriorBaseline(top_k=1, grid_size=10, bandwidth=0.0, duration_bins=2).fit(short + long)
    np.testing.assert_allclose(baseline.predict(_record(0, 12.0))[0, :2], [0.0, 2.4])
    np.testing.assert_allclose(baseline.predict(_record(1, 90.0))[0, :2], [72.0, 90.0])


def test_iou_prior_scores_the_share_of_training_moments_matched() -> None:
    # halves [0, 0.5] and [0.5, 1]; at IoU >= 0.5 the whole video matches both (IoU 0.5 each): score
    # (2 matched + mean IoU 0.5) / 2 = 1.25; each half matches itself only: (1 + 0.5) / 2 = 0.75, row order
    train = [_record(0, 10.0, (0.0, 5.0)), _record(1, 40.0, (20.0, 40.0))]
    baseline = IoUPriorBaseline(top_k=3, grid_size=4, iou_threshold=0.5, nms_threshold=1.0).fit(train)
    np.testing.assert_allclose(
        baseline.predict(_record(5, 20.0)), [[0.0, 20.0, 1.25], [0.0, 10.0, 0.75], [10.0, 20.0, 0.75]]
    )


def test_iou_prior_breaks_ties_by_mean_iou(concentrated_train: list[QueryRecord]) -> None:
    # at IoU >= 0.7 many grid windows match every training moment [0.2, 0.4]; the exact one has mean IoU 1
    baseline = IoUPriorBaseline(top_k=4, grid_size=10, iou_threshold=0.7).fit(concentrated_train)
    np.testing.assert_allclose(baseline.predict(_record(0, 50.0))[0], [10.0, 20.0, 1.0 + 1.0 / 30])
    expected = "IoUPriorBaseline(top_k=4, grid_size=10, iou_threshold=0.7, nms_threshold=0.4, duration_bins=1)"
    assert repr(baseline) == expected


@pytest.mark.parametrize("cls", [MomentPriorBaseline, IoUPriorBaseline])
def test_priors_need_fit_and_training_windows(cls: type) -> None:
    with pytest.raises(ConfigError, match="call fit"):
        cls().predict(_record(0, 10.0))
    with pytest.raises(InputError, match="no windows"):
        cls().fit([])


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_registered_baseline_returns_sorted_windows_in_seconds(
    name: str, concentrated_train: list[QueryRecord], test_records: list[QueryRecord]
) -> None:
    baseline = make_baseline(name).fit(concentrated_train)
    for record in test_records:
        windows = baseline.predict(record)
        assert windows.ndim == 2 and windows.shape[1] == 3 and windows.dtype == np.float64
        assert (windows[:, 0] >= 0).all() and (windows[:, 1] <= record.duration + 1e-9).all()
        assert (np.diff(windows[:, 2]) <= 0).all()


def test_make_baseline_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ConfigError, match="unknown baseline 'oracle'; choose one of: full-video, uniform-random, mo"):
        make_baseline("oracle")
    with pytest.raises(ConfigError, match="baseline 'full-video' takes no option seed; it accepts: none"):
        make_baseline("full-video", seed=1)
    assert make_baseline("uniform-random", top_k=None, seed=5).top_k == 10  # None keeps the default
    assert baseline_options("uniform-random") == ["top_k", "seed"]
    assert repr(make_baseline("moment-prior", top_k=3)).startswith("MomentPriorBaseline(top_k=3, grid_size=50")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("uniform-random", {"top_k": 0}, "--top-k must be >= 1"),
        ("uniform-random", {"seed": -1}, "--seed must be >= 0"),
        ("moment-prior", {"nms_threshold": 0.0}, r"--nms must be in \(0, 1\]"),
        ("moment-prior", {"grid_size": 1}, "grid_size must be >= 2"),
        ("moment-prior", {"bandwidth": -0.1}, "bandwidth must be >= 0"),
        ("iou-prior", {"iou_threshold": 0.0}, r"iou_threshold must be in \(0, 1\]"),
        ("iou-prior", {"duration_bins": 0}, "duration_bins must be >= 1"),
    ],
)
def test_bad_options_raise_config_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_baseline(name, **options)


def test_video_folds_hold_out_each_video_once() -> None:
    records = [_record(qid, 10.0, video_id=f"vid{qid // 2}") for qid in range(40)]  # 2 queries per video
    folds = video_folds(records, num_folds=4)
    held_out_qids = sorted(record.qid for _, held_out in folds for record in held_out)
    assert held_out_qids == list(range(40))
    for fit, held_out in folds:
        assert len(fit) + len(held_out) == 40
        assert not {r.video_id for r in fit} & {r.video_id for r in held_out}
