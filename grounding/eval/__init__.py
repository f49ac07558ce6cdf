"""Scoring predictions: temporal IoU, NMS, the field's metrics and the prediction file format.

A numpy-only leaf: nothing here imports torch or reads annotation files. The conventions (stable ranking,
no clipping, every annotated query in every denominator, ``IoU >= m`` in float64) are stated in
:mod:`grounding.eval.metrics` and compared with other code bases in docs/metrics.md.

Three lines::

    annotations = read_annotations("test.jsonl")          # grounding.data.annotations
    predictions = read_predictions("preds.jsonl")
    scores = evaluate(annotations, predictions, nms_threshold=0.5)   # {"R1@0.5": 47.3, ...}

With ``relevant=read_relevance(path, annotations)`` video retrieval and VCMR count every video where a query is
true (multi-positive truth, :mod:`grounding.eval.relevance`).
"""

from grounding.eval.iou import temporal_iou
from grounding.eval.metrics import (
    average_precision,
    corpus_moment_metrics,
    evaluate,
    moment_retrieval_metrics,
    video_retrieval_metrics,
)
from grounding.eval.nms import batched_nms, nms
from grounding.eval.predictions import (
    CorpusMoments,
    Predictions,
    read_predictions,
    write_moment_predictions,
    write_predictions,
)
from grounding.eval.relevance import Relevance, read_relevance

__all__ = [
    "CorpusMoments",
    "Predictions",
    "Relevance",
    "average_precision",
    "batched_nms",
    "corpus_moment_metrics",
    "evaluate",
    "moment_retrieval_metrics",
    "nms",
    "read_predictions",
    "read_relevance",
    "temporal_iou",
    "video_retrieval_metrics",
    "write_moment_predictions",
    "write_predictions",
]
