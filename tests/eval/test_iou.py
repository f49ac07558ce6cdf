import warnings

import numpy as np
import pytest

from grounding.eval.iou import pairwise_temporal_iou, temporal_iou


def test_partial_overlap_is_intersection_over_union() -> None:
    # [0, 10] and [5, 15]: intersection 5, union 15
    assert temporal_iou(np.array([[0.0, 10.0]]), np.array([[5.0, 15.0]]))[0, 0] == pytest.approx(1 / 3)


def test_shape_is_predictions_by_ground_truth() -> None:
    pred = np.array([[0.0, 10.0], [20.0, 30.0]])
    gt = np.array([[0.0, 10.0], [0.0, 5.0], [25.0, 35.0]])
    expected = np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 5 / 15]])
    iou = temporal_iou(pred, gt)
    assert iou.shape == (2, 3) and iou.dtype == np.float64
    np.testing.assert_allclose(iou, expected, atol=1e-12)
    np.testing.assert_allclose(temporal_iou(gt, pred), expected.T, atol=1e-12)


def test_disjoint_and_touching_windows_have_zero_iou() -> None:
    iou = temporal_iou(np.array([[0.0, 5.0]]), np.array([[5.0, 10.0], [7.0, 9.0]]))
    np.testing.assert_array_equal(iou, [[0.0, 0.0]])


def test_zero_length_windows_have_zero_iou_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value in divide"
        # a point inside the ground truth: intersection 0 -> IoU 0
        inside = temporal_iou(np.array([[6.0, 6.0]]), np.array([[5.0, 10.0]]))
        # two identical points: union 0 -> defined as 0, not NaN
        identical = temporal_iou(np.array([[6.0, 6.0]]), np.array([[6.0, 6.0]]))
    assert inside[0, 0] == 0.0
    assert identical[0, 0] == 0.0 and not np.isnan(identical).any()


def test_windows_are_not_clipped() -> None:
    # a window running past a 10 s video keeps its full length: [0, 20] vs [0, 10] is 0.5, not 1.0
    assert temporal_iou(np.array([[0.0, 20.0]]), np.array([[0.0, 10.0]]))[0, 0] == 0.5


def test_reversed_window_counts_as_empty() -> None:
    assert temporal_iou(np.array([[8.0, 2.0]]), np.array([[0.0, 10.0]]))[0, 0] == 0.0


def test_empty_inputs_give_empty_matrices() -> None:
    assert temporal_iou(np.zeros((0, 2)), np.array([[0.0, 1.0]])).shape == (0, 1)
    assert temporal_iou(np.array([[0.0, 1.0]]), np.zeros((0, 2))).shape == (1, 0)


def test_bad_shape_names_the_argument() -> None:
    with pytest.raises(ValueError, match="gt_windows must have shape"):
        temporal_iou(np.array([[0.0, 1.0]]), np.array([0.0, 1.0, 2.0]))


def test_pairwise_broadcasts_like_the_cross_matrix() -> None:
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 20, size=(6, 1))
    windows = np.concatenate([starts, starts + rng.uniform(0, 5, size=(6, 1))], axis=1)
    np.testing.assert_allclose(
        pairwise_temporal_iou(windows[:, None, :], windows[None, :, :]), temporal_iou(windows, windows), atol=1e-12
    )
