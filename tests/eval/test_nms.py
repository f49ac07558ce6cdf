import numpy as np
import pytest

from grounding.errors import InputError
from grounding.eval.nms import batched_nms, nms


def test_removal_needs_iou_strictly_greater_than_threshold() -> None:
    # [0, 10] and [0, 5] overlap with IoU exactly 0.5
    windows = np.array([[0.0, 10.0], [0.0, 5.0]])
    scores = np.array([0.9, 0.8])
    np.testing.assert_array_equal(nms(windows, scores, threshold=0.5), [0, 1])
    np.testing.assert_array_equal(nms(windows, scores, threshold=0.49), [0])


def test_kept_windows_come_in_descending_score_order() -> None:
    windows = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    kept = nms(windows, np.array([0.1, 0.9, 0.5]), threshold=0.5)
    assert kept.dtype == np.int64
    np.testing.assert_array_equal(kept, [1, 2, 0])


def test_ties_keep_file_order() -> None:
    windows = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0], [0.0, 1.0]])
    np.testing.assert_array_equal(nms(windows, np.full(4, 0.5), threshold=0.5), [0, 1, 2])
    np.testing.assert_array_equal(nms(windows, np.full(4, 0.5), threshold=1.0), [0, 1, 2, 3])


def test_duplicates_collapse_unless_threshold_is_one() -> None:
    windows = np.array([[2.0, 6.0]] * 3)
    scores = np.array([0.3, 0.9, 0.6])
    np.testing.assert_array_equal(nms(windows, scores, threshold=0.99), [1])
    np.testing.assert_array_equal(nms(windows, scores, threshold=1.0), [1, 2, 0])


def test_only_kept_windows_suppress() -> None:
    # A=[0,10] 0.9, B=[4,14] 0.8, C=[8,18] 0.7: IoU(A,B)=6/14, IoU(B,C)=6/14, IoU(A,C)=2/18.
    # At 0.4, A removes B; B is gone, so it cannot remove C (IoU(A,C)=0.11 <= 0.4).
    windows = np.array([[0.0, 10.0], [4.0, 14.0], [8.0, 18.0]])
    np.testing.assert_array_equal(nms(windows, np.array([0.9, 0.8, 0.7]), threshold=0.4), [0, 2])


def test_max_keep_stops_early() -> None:
    windows = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    np.testing.assert_array_equal(nms(windows, np.array([0.9, 0.8, 0.7]), 0.5, max_keep=2), [0, 1])
    np.testing.assert_array_equal(nms(windows, np.array([0.9, 0.8, 0.7]), 1.0, max_keep=1), [0])


def test_empty_input_keeps_nothing() -> None:
    assert nms(np.zeros((0, 2)), np.zeros(0), 0.5).shape == (0,)


@pytest.mark.parametrize("threshold", [float("nan"), -0.1, "high"])
def test_bad_threshold_is_an_input_error(threshold: object) -> None:
    with pytest.raises(InputError, match="NMS threshold"):
        nms(np.array([[0.0, 1.0]]), np.array([1.0]), threshold)  # type: ignore[arg-type]


def test_nan_score_is_an_input_error() -> None:
    with pytest.raises(InputError, match="finite"):
        nms(np.array([[0.0, 1.0], [0.0, 2.0]]), np.array([1.0, np.nan]), 0.5)


def test_batched_equals_one_query_at_a_time() -> None:
    rng = np.random.default_rng(0)
    num_queries, num_windows = 20, 30
    starts = rng.uniform(0, 30, size=(num_queries, num_windows))
    windows = np.stack([starts, starts + rng.uniform(0, 8, size=starts.shape)], axis=-1)
    scores = rng.integers(0, 5, size=starts.shape).astype(np.float64)  # many ties
    valid = rng.random(starts.shape) < 0.8
    for threshold, max_keep in [(0.5, None), (0.3, 5), (None, 10), (1.0, 7)]:
        batched = batched_nms(windows, scores, valid, threshold, max_keep=max_keep)
        for query in range(num_queries):
            real = np.flatnonzero(valid[query])
            single_threshold = 1.0 if threshold is None else threshold
            expected = real[nms(windows[query, real], scores[query, real], single_threshold, max_keep)]
            np.testing.assert_array_equal(batched[query][batched[query] >= 0], expected)


def test_batched_groups_never_suppress_each_other() -> None:
    windows = np.array([[[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]]])
    scores = np.array([[0.9, 0.8, 0.7]])
    valid = np.ones((1, 3), dtype=bool)
    groups = np.array([[0, 1, 0]])
    # the third window duplicates the first in the same group; the second is in another group
    np.testing.assert_array_equal(batched_nms(windows, scores, valid, 0.5, groups=groups), [[0, 1, -1]])
