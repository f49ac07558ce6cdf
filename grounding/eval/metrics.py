"""The field's metrics for moment retrieval, video retrieval and video corpus moment retrieval (VCMR).

Every figure is vectorized over queries: predictions are padded into ``(Q, K, 2)`` arrays with a ``(Q, K)``
validity mask, and ground truth into ``(Q, G, 2)`` with a ``(Q, G)`` mask. Percentages are in [0, 100].

Conventions (each has a named test in ``tests/eval/test_metrics.py``; docs/metrics.md compares them with
2D-TAN, MMN and Moment-DETR):

- **Every annotated query counts.** The denominator is the number of annotated queries; a query without
  predictions (no line, or an empty list) is a miss for R@n, has IoU 0 for mIoU and AP 0 for mAP.
- **Windows are scored as given**: not clipped to the video, not rounded. A window past the video's end
  keeps its length (and its union with the ground truth).
- **Ranking is by score, descending, with a stable sort** (``np.argsort(-scores, kind="stable")``): ties keep
  file order. R@1 uses the best-scored window, not the first listed one.
- **Thresholds compare in float64 with >=**: a hit is ``IoU >= m``. No epsilon is added, so an IoU that is
  0.7 on paper but 0.69999... in float64 misses, as in any plain float64 evaluator.
- **Several ground-truth windows**: a prediction's IoU for R@n and mIoU is its best IoU over the query's
  windows (a hit with any of them).
- **NMS** (``nms_threshold``, default None = off) runs before every moment metric: greedy, removes a window
  whose IoU with a kept higher-scored one is strictly greater than the threshold. For VCMR it runs within
  each video (windows of different videos never suppress each other).
- **mAP** follows Moment-DETR's standalone evaluator (``standalone_eval/eval.py``): per query, per IoU
  threshold in 0.50:0.05:0.95, the query's top 10 windows by score are matched greedily, best-scored first,
  each to the unmatched ground-truth window of highest IoU among those with IoU >= threshold (ties between
  equal-IoU ground-truth windows go to the later-listed one); AP is the area under the precision-recall
  curve with precision made monotone (the VOC all-points rule): ``AP = sum over true positives i of
  max_{j >= i} precision_j / G``. AP is averaged over queries, then over thresholds. Unlike Moment-DETR we
  take the top 10 by score rather than the first 10 listed, and a query without predictions has AP 0 and
  stays in the mean.
- **Video retrieval**: the rank of the query's video in its ranking (1 = first). A video missing from the
  ranking gets ``len(ranking) + 1``; a query with no ranking line gets ``V + 1``, V = the number of distinct
  videos in the annotation set. ``median_rank``/``mean_rank`` are ranks, not percentages.
- **VCMR**: a hit at (n, m) if among the query's top n corpus windows (score order, stable) one lies in the
  query's video and has IoU >= m with one of its ground-truth windows.
- **Multi-positive truth** (``relevant=``, a :class:`~grounding.eval.relevance.Relevance`): a query is true of
  several videos. Its rank is the position of the first of them in its ranking (``len(ranking) + 1`` when none
  is there), and a VCMR window hits when its video is one of them and its IoU with one of *that* video's
  windows is >= m. Without it, the query's own video and annotated windows are the only truth. Moment
  retrieval never uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from grounding.errors import InputError
from grounding.eval.iou import pairwise_temporal_iou
from grounding.eval.nms import batched_nms, check_nms_threshold
from grounding.eval.predictions import CorpusMoments, Predictions

if TYPE_CHECKING:
    from grounding.data.records import AnnotationSet, QueryRecord
    from grounding.eval.relevance import Relevance

RECALL_AT: tuple[int, ...] = (1, 5)
RECALL_IOUS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
MAP_IOUS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
MAP_TOP_K = 10
VIDEO_RECALL_AT: tuple[int, ...] = (1, 5, 10, 100)
CORPUS_RECALL_AT: tuple[int, ...] = (1, 5, 10, 100)
CORPUS_IOUS: tuple[float, ...] = (0.5, 0.7)


def moment_metric_keys() -> list[str]:
    """Keys of :func:`moment_retrieval_metrics`, in output order."""
    recall = [f"R{n}@{m:g}" for n in RECALL_AT for m in RECALL_IOUS]
    return [*recall, "mIoU", "mAP", "mAP@0.5", "mAP@0.75"]


def pad_rows(rows_per_query: Sequence[np.ndarray | None], num_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged per-query rows into one padded array.

    Args:
        rows_per_query: Q arrays of shape (K_q, num_columns); None = no rows.
        num_columns: C, the row width.

    Returns:
        padded (Q, K, C) float64 (zeros where padded) and valid (Q, K) bool with True = a real row;
        K = max K_q, at least 1 so that empty inputs still have a K axis.
    """
    counts = np.array([0 if rows is None else len(rows) for rows in rows_per_query], dtype=np.int64)
    num_queries, width = len(counts), max(int(counts.max(initial=0)), 1)
    padded = np.zeros((num_queries, width, num_columns), dtype=np.float64)
    valid = np.zeros((num_queries, width), dtype=bool)
    present = [np.asarray(rows, dtype=np.float64) for rows in rows_per_query if rows is not None and len(rows)]
    if present:
        stacked = np.concatenate(present, axis=0)  # (sum K_q, C)
        query_index = np.repeat(np.arange(num_queries), counts)
        slot_index = np.arange(len(stacked)) - np.repeat(np.cumsum(counts) - counts, counts)
        padded[query_index, slot_index] = stacked
        valid[query_index, slot_index] = True
    return padded, valid


def pad_windows(rows_per_query: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad per-query ``[start, end, score]`` rows (each (K_q, 3), or None).

    Returns:
        windows (Q, K, 2) float64 seconds, scores (Q, K) float64, valid (Q, K) bool (True = real window).
    """
    padded, valid = pad_rows(rows_per_query, 3)
    return padded[..., :2], padded[..., 2], valid


def gather_windows(windows: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k, 2) windows picked by (Q, k) ``index`` (-1 = none) and the (Q, k) bool mask of real picks."""
    picked = np.take_along_axis(windows, np.maximum(index, 0)[..., None], axis=1)
    return picked, index >= 0


def window_gt_iou(pred_windows: np.ndarray, gt_windows: np.ndarray, gt_valid: np.ndarray) -> np.ndarray:
    """IoU of every predicted window with every ground-truth window of its own query.

    Args:
        pred_windows: (Q, K, 2) seconds.
        gt_windows: (Q, G, 2) seconds; gt_valid: (Q, G) bool, True = a real ground-truth window.

    Returns:
        (Q, K, G) float64 IoU, 0 against padded ground truth.
    """
    ious = pairwise_temporal_iou(pred_windows[:, :, None, :], gt_windows[:, None, :, :])
    return np.where(gt_valid[:, None, :], ious, 0.0)


def recall_at(best_iou: np.ndarray, valid: np.ndarray, top_n: int, iou_threshold: float) -> float:
    """Percent of queries with a window among their first ``top_n`` whose IoU >= ``iou_threshold``.

    Args:
        best_iou: (Q, K) float64, each ranked window's best IoU over the query's ground truth.
        valid: (Q, K) bool, True = a real window (padding never hits).
    """
    if len(best_iou) == 0:
        return 0.0
    hits = ((best_iou[:, :top_n] >= iou_threshold) & valid[:, :top_n]).any(axis=1)
    return 100.0 * float(hits.mean())


def average_precision(
    ious: np.ndarray, pred_valid: np.ndarray, gt_valid: np.ndarray, iou_thresholds: Sequence[float] = MAP_IOUS
) -> np.ndarray:
    """Per-query, per-threshold average precision with greedy matching (Moment-DETR's definition).

    Args:
        ious: (Q, K, G) float64 IoU of the ranked windows (best score first) with the ground truth.
        pred_valid: (Q, K) bool, True = real window; real windows come first in each row.
        gt_valid: (Q, G) bool, True = real ground-truth window.
        iou_thresholds: T thresholds; a match needs IoU >= threshold.

    Returns:
        (Q, T) float64 AP in [0, 1]; 0 for a query with no windows or no ground truth.
    """
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    num_queries, num_windows, num_gt = ious.shape
    gt_index = np.arange(num_gt)
    matched = np.zeros((num_queries, len(thresholds), num_gt), dtype=bool)  # (Q, T, G) "locked" gt
    true_positive = np.zeros((num_queries, len(thresholds), num_windows), dtype=bool)
    for position in range(num_windows):
        iou_here = ious[:, position, None, :]  # (Q, 1, G)
        eligible = (iou_here >= thresholds[None, :, None]) & ~matched & gt_valid[:, None, :]
        eligible &= pred_valid[:, position, None, None]
        # Highest IoU wins; among equal IoUs the later-listed window (argmax over the reversed axis).
        candidate_iou = np.where(eligible, iou_here, -np.inf)[..., ::-1]
        choice = num_gt - 1 - np.argmax(candidate_iou, axis=-1)  # (Q, T)
        hit = eligible.any(axis=-1)
        true_positive[:, :, position] = hit
        matched |= hit[..., None] & (gt_index == choice[..., None])
    ranks = np.arange(1, num_windows + 1, dtype=np.float64)
    precision = np.cumsum(true_positive, axis=-1) / ranks  # real windows come first, so rank = #predictions
    precision = np.where(pred_valid[:, None, :], precision, 0.0)
    # Monotone ("interpolated") precision: the best precision at this rank or any later one.
    interpolated = np.flip(np.maximum.accumulate(np.flip(precision, axis=-1), axis=-1), axis=-1)
    num_positive = gt_valid.sum(axis=1).astype(np.float64)[:, None]  # (Q, 1)
    area = (true_positive * interpolated).sum(axis=-1)
    return np.divide(area, num_positive, out=np.zeros_like(area), where=num_positive > 0)


def _gt_arrays(records: Sequence[QueryRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth as (Q, G, 2) windows in seconds and a (Q, G) bool mask (True = real window)."""
    return pad_rows([np.asarray(record.windows, dtype=np.float64).reshape(-1, 2) for record in records], 2)


def moment_retrieval_metrics(
    records: Sequence[QueryRecord], moments: Mapping[int, np.ndarray], nms_threshold: float | None = None
) -> dict[str, float]:
    """R@{1,5} at IoU {0.1,0.3,0.5,0.7}, mIoU and mAP (percent) over every record.

    Args:
        records: the annotated queries (the denominator).
        moments: qid -> (K, 3) ``[start, end, score]`` in seconds, any order; missing qids are misses.
        nms_threshold: NMS before ranking; None = no NMS.

    Returns:
        ``{"R1@0.1": ..., ..., "R5@0.7": ..., "mIoU": ..., "mAP": ..., "mAP@0.5": ..., "mAP@0.75": ...}``.
    """
    pred_windows, pred_scores, pred_valid = pad_windows([moments.get(record.qid) for record in records])
    top_k = max(max(RECALL_AT), MAP_TOP_K)
    ranked = batched_nms(pred_windows, pred_scores, pred_valid, nms_threshold, max_keep=top_k)  # (Q, k), best first
    ranked_windows, ranked_valid = gather_windows(pred_windows, ranked)
    gt_windows, gt_valid = _gt_arrays(records)
    ious = window_gt_iou(ranked_windows, gt_windows, gt_valid)  # (Q, k, G)
    best_iou = np.where(ranked_valid, ious.max(axis=-1), 0.0)  # (Q, k)

    result: dict[str, float] = {}
    for top_n in RECALL_AT:
        for iou_threshold in RECALL_IOUS:
            result[f"R{top_n}@{iou_threshold:g}"] = recall_at(best_iou, ranked_valid, top_n, iou_threshold)
    result["mIoU"] = 100.0 * float(best_iou[:, 0].mean()) if len(records) else 0.0
    map_window_count = min(MAP_TOP_K, ious.shape[1])
    ap = average_precision(ious[:, :map_window_count], ranked_valid[:, :map_window_count], gt_valid, MAP_IOUS)
    ap_per_threshold = 100.0 * ap.mean(axis=0) if len(records) else np.zeros(len(MAP_IOUS))
    result["mAP"] = float(ap_per_threshold.mean())
    result["mAP@0.5"] = float(ap_per_threshold[MAP_IOUS.index(0.5)])
    result["mAP@0.75"] = float(ap_per_threshold[MAP_IOUS.index(0.75)])
    return result


def _truth(records: Sequence[QueryRecord], relevant: Relevance | None) -> list[dict[str, np.ndarray]]:
    """Per record, {video id: (G, 2) windows} of the videos where it is true: its own video and windows
    unless ``relevant`` says more."""
    if relevant is None:
        return [{record.video_id: np.asarray(record.windows, dtype=np.float64).reshape(-1, 2)} for record in records]
    return [relevant.truth(record.qid) for record in records]


def video_ranks(
    records: Sequence[QueryRecord],
    rankings: Mapping[int, Sequence[str]],
    num_videos: int,
    relevant: Relevance | None = None,
) -> np.ndarray:
    """(Q,) int64 rank of each record's first true video in its ranking (1 = first).

    The true videos are the record's own, or every video ``relevant`` lists for it. None of them in the
    ranking gives ``len(ranking) + 1``; a record without a ranking gets ``num_videos + 1``.
    """
    truth = _truth(records, relevant)
    ranks = np.empty(len(records), dtype=np.int64)
    for row, record in enumerate(records):
        ranking = rankings.get(record.qid)
        if ranking is None:
            ranks[row] = num_videos + 1
            continue
        listed = ranking if isinstance(ranking, list) else list(ranking)
        rank = len(listed) + 1
        for vid in truth[row]:  # list.index scans in C: a few true videos cost less than one Python loop
            try:
                rank = min(rank, listed.index(vid) + 1)
            except ValueError:
                continue
        ranks[row] = rank
    return ranks


def video_retrieval_metrics(
    records: Sequence[QueryRecord],
    rankings: Mapping[int, Sequence[str]],
    num_videos: int | None = None,
    relevant: Relevance | None = None,
) -> dict[str, float]:
    """VR@{1,5,10,100} (percent), median and mean rank of each query's first true video.

    Args:
        records: the annotated queries (the denominator).
        rankings: qid -> video ids, best first.
        num_videos: size of the corpus, for queries without a ranking (rank = num_videos + 1); default the
            number of distinct video ids in ``records``.
        relevant: every video where each query is true (multi-positive truth); None = the query's own video.
    """
    if num_videos is None:
        num_videos = len({record.video_id for record in records})
    ranks = video_ranks(records, rankings, num_videos, relevant)
    result: dict[str, float] = {}
    for top_n in VIDEO_RECALL_AT:
        result[f"VR@{top_n}"] = 100.0 * float((ranks <= top_n).mean()) if len(ranks) else 0.0
    result["median_rank"] = float(np.median(ranks)) if len(ranks) else 0.0
    result["mean_rank"] = float(ranks.mean()) if len(ranks) else 0.0
    return result


def corpus_moment_metrics(
    records: Sequence[QueryRecord],
    corpus_moments: Mapping[int, CorpusMoments],
    nms_threshold: float | None = None,
    relevant: Relevance | None = None,
) -> dict[str, float]:
    """VCMR R@{1,5,10,100} at IoU {0.5,0.7} (percent): a hit is a top-n window in a true video with IoU >= m
    with one of that video's windows.

    Args:
        records: the annotated queries (the denominator).
        corpus_moments: qid -> :class:`CorpusMoments` (video id + ``[start, end, score]`` per window).
        nms_threshold: NMS within each video before ranking; None = no NMS.
        relevant: every video where each query is true, with its windows; None = the query's own video and
            its annotated windows.
    """
    truth = _truth(records, relevant)
    predicted = [corpus_moments.get(record.qid) for record in records]
    names = sorted({vid for corpus in predicted if corpus is not None for vid in corpus.video_ids})
    code_of = {vid: code for code, vid in enumerate(names)}  # every predicted video, so NMS groups are exact
    rows: list[np.ndarray | None] = []
    for corpus in predicted:
        if corpus is None:
            rows.append(None)
            continue
        codes = np.fromiter((code_of[vid] for vid in corpus.video_ids), dtype=np.float64, count=len(corpus))
        rows.append(np.concatenate([corpus.windows, codes[:, None]], axis=1))  # (K, 4): start, end, score, video
    padded, pred_valid = pad_rows(rows, 4)
    pred_windows, pred_scores = padded[..., :2], padded[..., 2]
    video_codes = padded[..., 3].astype(np.int64)  # (Q, K)
    ranked = batched_nms(
        pred_windows, pred_scores, pred_valid, nms_threshold, max_keep=max(CORPUS_RECALL_AT), groups=video_codes
    )  # (Q, k), best first; NMS only within a video
    ranked_windows, ranked_valid = gather_windows(pred_windows, ranked)
    ranked_codes = np.take_along_axis(video_codes, np.maximum(ranked, 0), axis=1)  # (Q, k)

    # (query row, video) pairs where the query is true and the video was predicted: their windows, and a sorted
    # key row * len(names) + code to find the pair of each ranked window
    pair_keys: list[int] = []
    true_windows: list[np.ndarray] = []
    for row, videos in enumerate(truth):
        for vid, windows in videos.items():
            if vid in code_of:
                pair_keys.append(row * len(names) + code_of[vid])
                true_windows.append(windows)
    if not true_windows:
        best_iou = np.zeros(ranked_codes.shape)
        in_true_video = np.zeros(ranked_codes.shape, dtype=bool)
    else:
        keys = np.asarray(pair_keys, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        window_keys = np.arange(len(records))[:, None] * len(names) + ranked_codes  # (Q, k)
        slot = np.minimum(np.searchsorted(keys[order], window_keys), len(keys) - 1)
        in_true_video = ranked_valid & (keys[order][slot] == window_keys)
        pair = order[slot]  # (Q, k) index into true_windows (meaningful where in_true_video)
        gt_windows, gt_valid = pad_rows(true_windows, 2)  # (P, G, 2), (P, G)
        ious = pairwise_temporal_iou(ranked_windows[..., None, :], gt_windows[pair])  # (Q, k, G)
        best_iou = np.where(in_true_video, np.where(gt_valid[pair], ious, 0.0).max(axis=-1), 0.0)
    return {
        f"VCMR_R{top_n}@{iou_threshold:g}": recall_at(best_iou, in_true_video, top_n, iou_threshold)
        for top_n in CORPUS_RECALL_AT
        for iou_threshold in CORPUS_IOUS
    }


def _records_and_source(annotations: AnnotationSet | Sequence[QueryRecord]) -> tuple[list[QueryRecord], str, int]:
    """(records, a name for messages, number of queries the reader dropped)."""
    if hasattr(annotations, "records") and hasattr(annotations, "path"):
        report = getattr(annotations, "report", None)
        dropped = len(getattr(report, "dropped", []) or [])
        return list(annotations.records), f"the annotation file {annotations.path}", dropped
    return list(annotations), "the annotation records given", 0


def evaluate(
    annotations: AnnotationSet | Sequence[QueryRecord],
    predictions: Predictions,
    nms_threshold: float | None = None,
    relevant: Relevance | None = None,
) -> dict[str, Any]:
    """Score a prediction set against annotations; every figure in percent except ranks and counts.

    Args:
        annotations: an :class:`~grounding.data.records.AnnotationSet` or a sequence of QueryRecords; every
            record is a query in every denominator.
        predictions: from :func:`grounding.eval.predictions.read_predictions` (or built in memory).
        nms_threshold: NMS before the moment and VCMR metrics; None = no NMS.
        relevant: multi-positive truth for video retrieval and VCMR, e.g. from
            :func:`grounding.eval.relevance.read_relevance`; it must cover every annotated query. None = the
            query's own video and windows only. The moment metrics never use it.

    Returns:
        ``R1@{0.1,0.3,0.5,0.7}``, ``R5@...``, ``mIoU``, ``mAP``, ``mAP@0.5``, ``mAP@0.75``, ``num_queries``;
        plus ``VR@{1,5,10,100}``, ``median_rank``, ``mean_rank`` when the predictions hold video rankings;
        plus ``VCMR_R{1,5,10,100}@{0.5,0.7}`` when they hold corpus windows.

    Raises:
        InputError: no annotated queries, a qid annotated twice, a predicted qid not in the annotations, or a
            ``relevant`` that does not fit the annotations.
    """
    if nms_threshold is not None:
        nms_threshold = check_nms_threshold(nms_threshold)
    records, source, num_dropped = _records_and_source(annotations)
    if not records:
        raise InputError(f"{source} has no queries to evaluate against.")
    seen: set[int] = set()
    for record in records:
        if record.qid in seen:
            raise InputError(f"{source}: qid {record.qid} appears twice; qids must be unique.")
        seen.add(record.qid)
    unknown = [qid for qid in predictions.qids() if qid not in seen]
    if unknown:
        hint = (
            f" The reader dropped {num_dropped} quer{'y' if num_dropped == 1 else 'ies'} from that file"
            " (see its report); if this is one, remove it from the predictions."
            if num_dropped else ""
        )
        others = f" ({len(unknown) - 1} more unknown qids)" if len(unknown) > 1 else ""
        raise InputError(
            f"{predictions.where(unknown[0])}: qid {unknown[0]} is not in {source}{others}; predictions and "
            f"annotations must come from the same split.{hint}"
        )
    if relevant is not None:
        relevant.check(records, source, num_dropped)
    result: dict[str, Any] = dict(moment_retrieval_metrics(records, predictions.moments, nms_threshold))
    result["num_queries"] = len(records)
    if predictions.rankings:
        result.update(video_retrieval_metrics(records, predictions.rankings, relevant=relevant))
    if predictions.corpus_moments:
        result.update(corpus_moment_metrics(records, predictions.corpus_moments, nms_threshold, relevant))
    return result
