"""Each metric convention has a named test with a hand-computed value (see grounding/eval/metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from grounding.data.records import AnnotationSet, QueryRecord
from grounding.errors import InputError
from grounding.eval.metrics import MAP_IOUS, evaluate, moment_retrieval_metrics
from grounding.eval.predictions import CorpusMoments, Predictions
from grounding.eval.relevance import Relevance

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


def test_corpus_nms_never_merges_two_videos_outside_the_annotation_set() -> None:
    # five copies of one window, each in its own unannotated video, then the hit: NMS at 0.5 keeps all five
    # (they are five videos), so the hit is 6th: a miss at R@5, a hit at R@10
    gt = [record(0, [(0, 10)], "a")]
    corpus = CorpusMoments(("x1", "x2", "x3", "x4", "x5", "a"), np.array([[0, 10, 0.9 - 0.1 * i] for i in range(6)]))
    result = evaluate(gt, Predictions(corpus_moments={0: corpus}), nms_threshold=0.5)
    assert result["VCMR_R5@0.5"] == 0.0 and result["VCMR_R10@0.5"] == 100.0


# --- multi-positive truth (relevant=): any video where the query is true counts for VR and VCMR ---------------


def relevance(**videos_by_qid: dict[str, list[tuple[float, float]]]) -> Relevance:
    """Relevance(videos={qid: {vid: windows}}) from keyword arguments q0=..., q1=..."""
    return Relevance(videos={
        int(key[1:]): {vid: np.array(windows, dtype=np.float64).reshape(-1, 2) for vid, windows in videos.items()}
        for key, videos in videos_by_qid.items()
    })  # fmt: skip


def test_video_retrieval_rank_is_the_first_relevant_video() -> None:
    gt = [record(0, [(0, 1)], "a"), record(1, [(0, 1)], "c"), record(2, [(0, 1)], "a")]
    truth = relevance(q0={"a": [(0, 1)], "b": [(5, 6)]}, q1={"c": [(0, 1)]}, q2={"a": [(0, 1)], "d": [(0, 1)]})
    rankings = {
        0: ["b", "a", "c"],  # b is relevant though not annotated: rank 1 (rank 2 with the own video only)
        1: ["a", "b"],  # its only relevant video, c, is missing: rank 2 + 1 = 3
    }  # q2 has no ranking line: rank = 2 distinct annotated videos + 1 = 3
    single = evaluate(gt, Predictions(rankings=rankings))
    multi = evaluate(gt, Predictions(rankings=rankings), relevant=truth)
    assert single["VR@1"] == 0.0 and single["median_rank"] == 3.0 and single["mean_rank"] == pytest.approx(8 / 3)
    assert multi["VR@1"] == pytest.approx(100 / 3) and multi["VR@5"] == 100.0
    assert multi["median_rank"] == 3.0 and multi["mean_rank"] == pytest.approx(7 / 3)


def test_video_retrieval_a_relevant_video_further_down_does_not_help() -> None:
    gt = [record(0, [(0, 1)], "a")]
    truth = relevance(q0={"a": [(0, 1)], "b": [(0, 1)]})
    result = evaluate(gt, Predictions(rankings={0: ["x", "y", "a", "b"]}), relevant=truth)
    assert result["median_rank"] == 3.0 and result["VR@1"] == 0.0


def test_corpus_moments_hit_only_with_that_videos_windows() -> None:
    gt = [record(0, [(0, 10)], "a")]
    truth = relevance(q0={"a": [(0, 10)], "b": [(20, 30)]})
    corpus = CorpusMoments(
        ("b", "b", "c", "a"),
        np.array([[0, 10, 0.9],  # in relevant b, but a's window: IoU 0 with b's [20, 30] -> no hit
                  [20, 26, 0.8],  # in relevant b, IoU 0.6 with [20, 30]: a hit at 0.5, not at 0.7
                  [0, 10, 0.7],  # perfect window in c, which is not relevant -> no hit
                  [0, 10, 0.6]]),  # the annotated moment itself, 4th
    )  # fmt: skip
    multi = evaluate(gt, Predictions(corpus_moments={0: corpus}), relevant=truth)
    assert multi["VCMR_R1@0.5"] == 0.0 and multi["VCMR_R5@0.5"] == 100.0 and multi["VCMR_R5@0.7"] == 100.0
    top2 = CorpusMoments(corpus.video_ids[:2], corpus.windows[:2])
    multi_top2 = evaluate(gt, Predictions(corpus_moments={0: top2}), relevant=truth)
    assert multi_top2["VCMR_R5@0.5"] == 100.0 and multi_top2["VCMR_R5@0.7"] == 0.0  # IoU 0.6 < 0.7
    single_top2 = evaluate(gt, Predictions(corpus_moments={0: top2}))
    assert single_top2["VCMR_R100@0.5"] == 0.0  # b is not the annotated video


def test_relevant_changes_no_moment_metric_and_equals_own_video_truth() -> None:
    rng = np.random.default_rng(3)
    gt = [record(q, [tuple(sorted(rng.uniform(0, 50, 2)))], f"v{q % 4}") for q in range(12)]
    preds = Predictions(
        moments={q: np.column_stack([np.sort(rng.uniform(0, 50, (6, 2))), rng.random(6)]) for q in range(12)},
        rankings={q: list(rng.permutation([f"v{i}" for i in range(4)])) for q in range(12)},
        corpus_moments={
            q: CorpusMoments(tuple(f"v{i}" for i in rng.integers(0, 4, 20)),
                             np.column_stack([np.sort(rng.uniform(0, 50, (20, 2))), rng.random(20)]))
            for q in range(12)
        },
    )  # fmt: skip
    own_only = Relevance(videos={r.qid: {r.video_id: np.array(r.windows)} for r in gt})
    assert evaluate(gt, preds, nms_threshold=0.5, relevant=own_only) == evaluate(gt, preds, nms_threshold=0.5)
    wider = Relevance(videos={r.qid: {f"v{i}": np.array(r.windows) for i in range(4)} for r in gt})
    plain, multi = evaluate(gt, preds), evaluate(gt, preds, relevant=wider)
    assert {k: multi[k] for k in MOMENT_KEYS} == {k: plain[k] for k in MOMENT_KEYS}
    assert multi["VR@1"] == 100.0 and multi["VCMR_R100@0.5"] >= plain["VCMR_R100@0.5"]


def test_multi_positive_vcmr_matches_a_plain_loop_reference_on_random_data() -> None:
    rng = np.random.default_rng(11)
    videos = [f"v{i}" for i in range(6)]
    gt, truth, corpus = [], {}, {}
    for q in range(40):
        gt.append(record(q, [(10.0, 20.0)], videos[q % 6]))
        true_videos = {videos[q % 6], *rng.choice(videos, size=int(rng.integers(0, 4)))}
        truth[q] = {vid: np.sort(rng.uniform(0, 40, (int(rng.integers(1, 3)), 2)), axis=1) for vid in true_videos}
        truth[q][videos[q % 6]] = np.vstack([[10.0, 20.0], truth[q][videos[q % 6]]])
        count = int(rng.integers(0, 30))
        corpus[q] = CorpusMoments(tuple(rng.choice(videos + ["elsewhere"], size=count)),
                                  np.column_stack([np.sort(rng.uniform(0, 40, (count, 2)), axis=1), rng.random(count)]))
    result = evaluate(gt, Predictions(corpus_moments=corpus), relevant=Relevance(videos=truth))

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = max(a[1], b[1]) - min(a[0], b[0])
        return inter / union if union > 0 else 0.0

    for top_n in (1, 5, 10, 100):
        for m in (0.5, 0.7):
            hits = 0
            for q in range(40):
                order = np.argsort(-corpus[q].windows[:, 2], kind="stable")[:top_n]
                hits += any(
                    corpus[q].video_ids[i] in truth[q]
                    and max(iou(corpus[q].windows[i, :2], w) for w in truth[q][corpus[q].video_ids[i]]) >= m
                    for i in order
                )
            assert result[f"VCMR_R{top_n}@{m:g}"] == pytest.approx(100 * hits / 40), (top_n, m)


def test_relevant_must_cover_every_annotated_query() -> None:
    annotations = AnnotationSet("test.txt", "charades-sta", [record(0, [(0, 10)], "a"), record(1, [(0, 10)], "b")])
    with pytest.raises(InputError, match=r"no line for qid 1 \(video b\) of the annotation file test\.txt"):
        evaluate(annotations, Predictions(rankings={0: ["a"]}), relevant=relevance(q0={"a": [(0, 10)]}))


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
