"""``grounding evaluate``: score a prediction file against an annotation file.

Prints R@{1,5} at IoU {0.1,0.3,0.5,0.7}, mIoU and Moment-DETR's mAP, plus video retrieval and VCMR figures
when the predictions carry them (see :mod:`grounding.eval.metrics` and docs/metrics.md for the conventions).
``--json`` writes the metric keys (``R1@0.1`` ... ``mAP``, ``num_queries``, ...) at the top level, plus a ``run``
object saying which files and settings produced them. ``--relevant FILE`` (a relevance file, see
:mod:`grounding.eval.relevance`) makes video retrieval and VCMR count every video where a query is true; ``run``
then names it under ``relevant`` and the table says so.
"""

from __future__ import annotations

import argparse
from typing import Any

from grounding.cli._common import add_annotation_options, add_command, write_json_atomic
from grounding.data.annotations import ANNOTATION_FORMATS, read_annotations
from grounding.eval.metrics import (
    CORPUS_IOUS,
    CORPUS_RECALL_AT,
    RECALL_AT,
    RECALL_IOUS,
    VIDEO_RECALL_AT,
    evaluate,
)
from grounding.eval.nms import check_nms_threshold
from grounding.eval.predictions import read_predictions
from grounding.eval.relevance import read_relevance


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "evaluate", "score predictions (R@n IoU>=m, mIoU, mAP, video retrieval, VCMR)",
        "Score a jsonl prediction file against an annotation file. Prediction lines look like\n"
        '  {"qid": 0, "pred_relevant_windows": [[start, end, score], ...]}\n'
        '  {"qid": 0, "video_ranking": ["vid", ...]}\n'
        '  {"qid": 0, "pred_corpus_windows": [[vid, start, end, score], ...]}\n'
        "(seconds; any order; a query may carry several keys on its one line).\n"
        "Every annotated query counts: one without predictions is a miss. Ties keep file order.\n"
        "--relevant FILE: multi-positive truth for video retrieval and VCMR (any video where the query is true\n"
        "counts; grounding synth writes SPLIT.relevant.jsonl); moment retrieval is unchanged.\n"
        f"Annotation formats: {', '.join(ANNOTATION_FORMATS)} (detected from the content unless --format).",
        "grounding evaluate --annotations charades_sta_test.txt --durations Charades_v1_test.csv "
        "--predictions preds.jsonl --nms 0.5 --json scores.json",
    )
    parser.add_argument("--annotations", required=True, metavar="ANN", help="annotation file (.txt, .json or .jsonl)")
    add_annotation_options(parser)
    parser.add_argument("--predictions", required=True, metavar="PRED.jsonl",
                        help="prediction file (jsonl, one line per qid)")
    parser.add_argument("--nms", type=float, default=None, metavar="IOU",
                        help="greedy NMS before scoring: drop a window whose IoU with a better one is > IOU "
                        "(default: no NMS)")
    parser.add_argument("--relevant", default=None, metavar="FILE.jsonl",
                        help="relevance file: every video where each query is true, with its windows; VR@k and "
                        "VCMR then count any of them (default: only the query's own video)")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the figures as JSON")
    return parser


def _row(label: str, values: list[str], width: int = 9) -> str:
    return f"  {label:<10}" + "".join(f"{value:>{width}}" for value in values)


def format_table(metrics: dict[str, Any], relevant: str | None = None) -> str:
    """The figures of :func:`grounding.eval.metrics.evaluate` as a plain-text table (percent, 2 decimals);
    ``relevant`` names the relevance file the retrieval figures counted (None: the query's own video only)."""
    truth = "" if relevant is None else f", any relevant video of {relevant}"
    lines = ["moment retrieval (%)", _row("", [f"IoU>={iou:g}" for iou in RECALL_IOUS], width=10)]
    for top_n in RECALL_AT:
        lines.append(_row(f"R@{top_n}", [f"{metrics[f'R{top_n}@{iou:g}']:.2f}" for iou in RECALL_IOUS], width=10))
    lines.append(
        f"  mIoU {metrics['mIoU']:.2f}   mAP {metrics['mAP']:.2f}   mAP@0.5 {metrics['mAP@0.5']:.2f}   "
        f"mAP@0.75 {metrics['mAP@0.75']:.2f}"
    )
    if "VR@1" in metrics:
        lines.append(f"video retrieval (%{truth})")
        lines.append(_row("", [f"VR@{n}" for n in VIDEO_RECALL_AT]))
        lines.append(_row("", [f"{metrics[f'VR@{n}']:.2f}" for n in VIDEO_RECALL_AT]))
        lines.append(f"  median rank {metrics['median_rank']:g}   mean rank {metrics['mean_rank']:.2f}")
    if "VCMR_R1@0.5" in metrics:
        lines.append(f"video corpus moment retrieval (%{truth})")
        lines.append(_row("", [f"IoU>={iou:g}" for iou in CORPUS_IOUS], width=10))
        for top_n in CORPUS_RECALL_AT:
            values = [f"{metrics[f'VCMR_R{top_n}@{iou:g}']:.2f}" for iou in CORPUS_IOUS]
            lines.append(_row(f"R@{top_n}", values, width=10))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    nms_threshold = None if args.nms is None else check_nms_threshold(args.nms)
    annotations = read_annotations(args.annotations, format=args.format, durations=args.durations)
    predictions = read_predictions(args.predictions)
    relevant = None if args.relevant is None else read_relevance(args.relevant, annotations)
    metrics = evaluate(annotations, predictions, nms_threshold=nms_threshold, relevant=relevant)

    annotated = {record.qid for record in annotations.records}
    covered = len(annotated.intersection(predictions.moments))
    report = annotations.report
    print(
        f"annotations: {annotations.path} ({annotations.format}), {metrics['num_queries']} queries"
        f"; the reader clipped {len(report.clipped)} and dropped {len(report.dropped)} items"
    )
    print(
        f"predictions: {predictions.path}, moment windows for {covered} of {metrics['num_queries']} queries"
        f" (the others count as misses); NMS {'off' if nms_threshold is None else f'IoU > {nms_threshold:g}'}"
    )
    if relevant is not None:
        print(f"relevant: {relevant.path}: multi-positive truth for video retrieval and VCMR")
    print(format_table(metrics, None if relevant is None else relevant.path))
    if args.json:
        write_json_atomic(args.json, {
            **metrics,
            "run": {
                "annotations": annotations.path,
                "format": annotations.format,
                "predictions": predictions.path,
                "nms_threshold": nms_threshold,
                "queries_with_moment_predictions": covered,
                **({} if relevant is None else {"relevant": relevant.path}),
            },
        })
        print(f"wrote {args.json}")
    return 0
