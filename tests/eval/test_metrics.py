"""Each metric convention has a named test with a hand-computed value (see grounding/eval/metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from grounding.data.records import AnnotationSet, QueryRecord
from grounding.errors import InputError
from grounding.eval.metrics import MAP_IOUS, evaluate, moment_retrieval_metrics
from grounding.eval.predictions import CorpusMoments, Predictions

MOMENT_KEYS = [
    "R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.1", "R5@0.3", "R5@0.5", "R5@0.7",
    "mIoU", "mAP", "mAP@0.5", "mAP@0.75", "num_queries",
]  # fmt: skip


def record(qid: int, windows: list[tuple[float, float]], video_id: str = "v0", duration: float = 100.0) -> QueryRecord:
    return QueryRecord(qid, video_id, duration, tuple(windows), f"sentence {qid}")


def moments(**rows_by_qid: list[list[float]]) -> Predictions:
    """Predictions(moments={qid: rows}) from keyword arguments q0=..., q1=..."""
    rows = {int(key[1:]): np.array(value, dtype=np.float64).reshape(-1, 3) for key, value in rows_by_qid.items()}
    return Predictions(moments=rows)


def test_keys_are_exactly_the_documented_ones() -> None:
    result = evaluate([record(0, [(0, 10)])], moments(q0=[[0, 10, 1.0]]))
    assert list(result) == MOMENT_KEYS
    assert result["num_queries"] == 1
    assert all(result[key] == 100.0 for key in MOMENT_KEYS if key != "num_queries")


def test_ties_keep_file_order() -> None:
    gt = [record(0, [(0, 10)])]
    miss_first = evaluate(gt, moments(q0=[[50, 60, 0.5], [0, 10, 0.5]]))
    hit_first = evaluate(gt, moments(q0=[[0, 10, 0.5], [50, 60, 0.5]]))
    assert miss_first["R1@0.5"] == 0.0 and miss_first["R5@0.5"] == 100.0
    assert hit_first["R1@0.5"] == 100.0


def test_top1_is_the_best_scored_window_not_the_first_listed() -> None:
    # Moment-DETR's R1 would take the first listed window (a hit); the best-scored one misses.
    result = evaluate([record(0, [(0, 10)])], moments(q0=[[0, 10, 0.1], [50, 60, 0.9]]))
    assert result["R1@0.5"] == 0.0 and result["mIoU"] == 0.0
    assert result["R5@0.5"] == 100.0


def test_duplicate_windows_each_take_a_rank_without_nms() -> None:
    # five copies of a miss, scored above the hit: the hit is 6th, outside R@5 ...
    rows = [[50, 60, 0.9]] * 5 + [[0, 10, 0.5]]
    gt = [record(0, [(0, 10)])]
    assert evaluate(gt, moments(q0=rows))["R5@0.5"] == 0.0
    # ... and NMS collapses the copies, so the hit becomes 2nd
    assert evaluate(gt, moments(q0=rows), nms_threshold=0.5)["R5@0.5"] == 100.0


def test_windows_past_the_duration_are_not_clipped() -> None:
    # 10 s video, prediction [5, 15]: IoU with [5, 10] is 5 / 10 = 0.5 (clipping to [5, 10] would give 1.0)
    result = evaluate([record(0, [(5, 10)], duration=10.0)], moments(q0=[[5, 15, 1.0]]))
    assert result["R1@0.5"] == 100.0 and result["R1@0.7"] == 0.0
    assert result["mIoU"] == pytest.approx(50.0)


def test_zero_length_window_is_never_a_hit() -> None:
    # a point inside the ground truth has intersection 0, so IoU 0 even at IoU >= 0.1
    result = evaluate([record(0, [(5, 10)])], moments(q0=[[6, 6, 1.0]]))
    assert result["R1@0.1"] == 0.0 and result["R5@0.1"] == 0.0 and result["mIoU"] == 0.0 and result["mAP"] == 0.0


def test_query_without_predictions_counts_as_miss() -> None:
    gt = [record(0, [(0, 10)]), record(1, [(0, 10)]), record(2, [(0, 10)])]
    # q0 perfect, q1 an empty list, q2 absent from the file: 1 hit in 3 queries
    result = evaluate(gt, moments(q0=[[0, 10, 1.0]], q1=[]))
    for key in MOMENT_KEYS[:-1]:
        assert result[key] == pytest.approx(100 / 3), key
    assert result["num_queries"] == 3


def test_any_ground_truth_window_can_be_hit() -> None:
    # [10, 19] vs the second window [10, 20]: IoU 9 / 10 = 0.9
    result = evaluate([record(0, [(0, 5), (10, 20)])], moments(q0=[[10, 19, 1.0]]))
    assert result["R1@0.7"] == 100.0 and result["mIoU"] == pytest.approx(90.0)


def test_threshold_is_inclusive_in_float64() -> None:
    # [0, 7] vs [0, 10]: 7.0 / 10.0 == 0.7 exactly in float64 -> a hit at IoU >= 0.7
    assert evaluate([record(0, [(0, 10)])], moments(q0=[[0, 7, 1.0]]))["R1@0.7"] == 100.0
    # [0, 5] vs [0, 10]: IoU 0.5 is a hit at 0.5, not at 0.7
    result = evaluate([record(0, [(0, 10)])], moments(q0=[[0, 5, 1.0]]))
    assert result["R1@0.5"] == 100.0 and result["R1@0.7"] == 0.0


def test_nms_removal_is_strict() -> None:
    # GT [0, 4]. A=[0, 10] (0.9) has IoU 0.4 with it; B=[0, 5] (0.8) has 0.8. IoU(A, B) = 0.5.
    gt = [record(0, [(0, 4)])]
    rows = moments(q0=[[0, 10, 0.9], [0, 5, 0.8]])
    assert evaluate(gt, rows, nms_threshold=0.5)["R5@0.7"] == 100.0  # 0.5 is not > 0.5: B survives
    assert evaluate(gt, rows, nms_threshold=0.45)["R5@0.7"] == 0.0  # B removed, A alone misses


def test_map_hand_worked_example() -> None:
    # GT g1=[0,10], g2=[20,30]. Predictions by score:
    #   p1 [0,10] .9  IoU(g1)=1.0        p2 [0,9] .8  IoU(g1)=0.9 (g1 already taken by p1)
    #   p3 [20,26] .7 IoU(g2)=0.6        p4 [40,50] .6 no overlap
    # thresholds 0.50, 0.55, 0.60: tp fp tp fp -> precision 1, 1/2, 2/3, 1/2; monotone precision at the
    #   true positives: 1 and 2/3 -> AP = (1 + 2/3) / 2 = 5/6
    # thresholds 0.65 ... 0.95 (7 of them): only p1 -> AP = 1 / 2
    # mAP = (3 * 5/6 + 7 * 1/2) / 10 = 0.6
    gt = [record(0, [(0, 10), (20, 30)])]
    preds = moments(q0=[[40, 50, 0.6], [0, 9, 0.8], [20, 26, 0.7], [0, 10, 0.9]])  # unsorted on purpose
    result = evaluate(gt, preds)
    assert result["mAP"] == pytest.approx(60.0)
    assert result["mAP@0.5"] == pytest.approx(500 / 6)
    assert result["mAP@0.75"] == pytest.approx(50.0)
    # a second query without predictions has AP 0 and halves every figure
    halved = evaluate([*gt, record(1, [(0, 10)])], preds)
    assert halved["mAP"] == pytest.approx(30.0) and halved["mAP@0.5"] == pytest.approx(250 / 6)


def test_map_uses_monotone_precision() -> None:
    # two GT windows; a miss first, then two hits: precision 0, 1/2, 2/3. The monotone precision at the
    # first hit is max(1/2, 2/3) = 2/3, so AP = (2/3 + 2/3) / 2 = 2/3 (without it: (1/2 + 2/3) / 2).
    gt = [record(0, [(0, 10), (20, 30)])]
    result = evaluate(gt, moments(q0=[[50, 60, 0.9], [0, 10, 0.8], [20, 30, 0.7]]))
    assert result["mAP"] == pytest.approx(200 / 3)


def test_map_equal_iou_goes_to_the_later_ground_truth_window() -> None:
    # g1=[0,10], g2=[5,15]. p1=[5,10] has IoU 0.5 with both and takes g2 (the later one); p2=[0,6] has
    # IoU 0.6 with g1, so it is a second true positive at thresholds 0.50-0.60.
    # 0.50: tp tp -> AP 1; 0.55 and 0.60: fp tp -> precision 1/2 at one of 2 GT -> AP 1/4; higher: 0.
    # mAP = (1 + 1/4 + 1/4) / 10 = 0.15
    gt = [record(0, [(0, 10), (5, 15)])]
    assert evaluate(gt, moments(q0=[[5, 10, 0.9], [0, 6, 0.8]]))["mAP"] == pytest.approx(15.0)


def test_map_uses_the_top_ten_windows_by_score() -> None:
    # the only hit is listed first but scored 11th: outside the top 10, so AP 0; it is 10th when one
    # miss is removed, giving precision 1/10 at the hit
    misses = [[50 + 2 * i, 51 + 2 * i, 0.9] for i in range(10)]
    gt = [record(0, [(0, 10)])]
    assert evaluate(gt, moments(q0=[[0, 10, 0.1], *misses]))["mAP"] == 0.0
    assert evaluate(gt, moments(q0=[[0, 10, 0.1], *misses[:9]]))["mAP"] == pytest.approx(10.0)


def _reference_ap(rows: np.ndarray, gt_windows: list[tuple[float, float]], threshold: float) -> float:
    """One query, one threshold, written as plainly as possible (loops, no padding)."""
    order = np.argsort(-rows[:, 2], kind="stable")[:10]
    taken = [False] * len(gt_windows)
    hits = []
    for start, end, _ in rows[order]:
        ious = []
        for gt_start, gt_end in gt_windows:
            inter = max(0.0, min(end, gt_end) - max(start, gt_start))
            union = (end - start) + (gt_end - gt_start) - inter
            ious.append(inter / union if union > 0 else 0.0)
        best, best_iou = None, -1.0
        for index, iou in enumerate(ious):
            if iou >= threshold and not taken[index] and iou >= best_iou:
                best, best_iou = index, iou
        if best is not None:
            taken[best] = True
        hits.append(best is not None)
    precision = [sum(hits[: i + 1]) / (i + 1) for i in range(len(hits))]
    return sum(max(precision[i:]) for i, hit in enumerate(hits) if hit) / len(gt_windows)


def test_map_matches_a_plain_loop_reference_on_random_data() -> None:
    rng = np.random.default_rng(0)
    records, rows = [], {}
    for qid in range(40):
        starts = rng.uniform(0, 20, size=rng.integers(1, 4))
        records.append(record(qid, [(float(s), float(s + rng.uniform(1, 8))) for s in starts]))
        pred_starts = rng.uniform(0, 25, size=rng.integers(0, 15))
        rows[qid] = np.stack(
            [pred_starts, pred_starts + rng.uniform(0, 8, size=len(pred_starts)),
             rng.integers(0, 4, size=len(pred_starts)).astype(float)], axis=1,
        )  # fmt: skip
    expected = np.mean(
        [[_reference_ap(rows[r.qid], list(r.windows), t) if len(rows[r.qid]) else 0.0 for t in MAP_IOUS] for r in records],
        axis=0,
    )
    result = moment_retrieval_metrics(records, rows)
    assert result["mAP"] == pytest.approx(100 * expected.mean(), abs=1e-9)
    assert result["mAP@0.5"] == pytest.approx(100 * expected[0], abs=1e-9)


def test_video_retrieval_ranks() -> None:
    # 4 queries over 3 distinct videos a, b, c
    gt = [record(0, [(0, 1)], "a"), record(1, [(0, 1)], "b"), record(2, [(0, 1)], "c"), record(3, [(0, 1)], "a")]
    preds = Predictions(
        moments={0: np.array([[0, 1, 1.0]])},
        rankings={
            0: ["b", "a", "c"],  # rank 2
            1: ["a", "c"],  # b missing from a 2-video list: rank 2 + 1 = 3
            2: ["c"],  # rank 1
        },  # q3 has no ranking line: rank = 3 distinct videos + 1 = 4
    )
    result = evaluate(gt, preds)
    assert result["VR@1"] == 25.0 and result["VR@5"] == 100.0 and result["VR@10"] == 100.0
    assert result["median_rank"] == 2.5 and result["mean_rank"] == 2.5
    assert list(result)[-6:] == ["VR@1", "VR@5", "VR@10", "VR@100", "median_rank", "mean_rank"]


def test_corpus_moment_retrieval() -> None:
    gt = [record(0, [(0, 10)], "a"), record(1, [(0, 10)], "b")]
    corpus = CorpusMoments(
        ("b", "a", "a"),
        np.array([[0, 10, 0.9],  # perfect window, wrong video
                  [0, 6, 0.8],  # right video, IoU 0.6
                  [0, 9, 0.7]]),  # right video, IoU 0.9
    )  # fmt: skip
    result = evaluate(gt, Predictions(corpus_moments={0: corpus}))  # q1 has none: a miss
    assert [key for key in result if key.startswith("VCMR")] == [
        f"VCMR_R{n}@{m}" for n in (1, 5, 10, 100) for m in ("0.5", "0.7")
    ]
    assert result["VCMR_R1@0.5"] == 0.0 and result["VCMR_R1@0.7"] == 0.0
    assert result["VCMR_R5@0.5"] == 50.0 and result["VCMR_R5@0.7"] == 50.0
    assert result["VCMR_R100@0.7"] == 50.0
    assert "VR@1" not in result


def test_corpus_nms_acts_within_each_video() -> None:
    # the same window in two videos: NMS at 0.5 keeps both (different videos), so the hit stays 2nd
    gt = [record(0, [(0, 10)], "a"), record(1, [(0, 10)], "b")]
    corpus = CorpusMoments(("b", "a"), np.array([[0, 10, 0.9], [0, 10, 0.8]]))
    assert evaluate(gt, Predictions(corpus_moments={0: corpus}), nms_threshold=0.5)["VCMR_R5@0.7"] == 50.0


def test_corpus_window_in_an_unknown_video_takes_a_rank() -> None:
    gt = [record(0, [(0, 10)], "a")]
    corpus = CorpusMoments(("elsewhere", "a"), np.array([[0, 10, 0.9], [0, 10, 0.8]]))
    result = evaluate(gt, Predictions(corpus_moments={0: corpus}))
    assert result["VCMR_R1@0.5"] == 0.0 and result["VCMR_R5@0.5"] == 100.0


def test_unknown_qid_names_the_line_and_the_annotation_file() -> None:
    annotations = AnnotationSet("test.jsonl", "moment-detr", [record(0, [(0, 10)])])
    preds = Predictions(moments={0: np.zeros((0, 3)), 7: np.array([[0, 1, 1.0]])}, lines={0: 1, 7: 2}, path="preds.jsonl")
    with pytest.raises(InputError, match=r"preds\.jsonl:2: qid 7 is not in the annotation file test\.jsonl"):
        evaluate(annotations, preds)


def test_nan_in_predictions_built_in_memory_is_an_input_error() -> None:
    with pytest.raises(InputError, match="qid 3.*NaN"):
        Predictions(moments={3: np.array([[0.0, np.nan, 1.0]])})


def test_annotations_with_repeated_qid_are_rejected() -> None:
    with pytest.raises(InputError, match="qid 0 appears twice"):
        evaluate([record(0, [(0, 1)]), record(0, [(2, 3)])], moments(q0=[[0, 1, 1.0]]))


def test_eval_package_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, grounding.eval, grounding.eval.metrics; print('torch' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"
