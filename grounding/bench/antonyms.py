"""The antonym benchmark: does a checkpoint prefer the true sentence over its antonym at the true moment?

For every query whose sentence S has a swap S' (:mod:`grounding.text.antonyms`):

1. **preference**: the share of queries where the *true span* (the candidate with the highest IoU with the true
   moment) scores higher for S than for S' (a tie counts one half; chance is 50 %);
2. **localisation**: the mean IoU (%) with the true moment of the top span for S, and for S' (a model that
   understands moves away from the true moment for S');
3. **ranking** (with an index): the true video's rank among the index's videos for S and for S', and the share of
   queries where it drops for S'.

Each figure overall and per swap kind, for the checkpoint and for two floors: the **text-only control** (the same
model with every clip of the video replaced by the video's mean clip: it reads the sentence but sees no time) and
the **moment prior** (blind: the same spans for S and S', so its preference is exactly 50 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from grounding.errors import InputError
from grounding.eval.iou import temporal_iou


@dataclass
class QueryOutcome:
    """What one swapped query gave: scores of the true span, top-span IoUs, the true video's ranks (0 = none)."""

    kind: str
    true_score: float
    swapped_score: float
    true_iou: float
    swapped_iou: float
    true_rank: int = 0
    swapped_rank: int = 0


def summarize(outcomes: Sequence[QueryOutcome]) -> dict[str, Any]:
    """The figures of a set of outcomes (see the module doc), overall and by kind; percentages with 2 decimals."""

    def figures(rows: Sequence[QueryOutcome]) -> dict[str, float]:
        true = np.array([row.true_score for row in rows])
        swapped = np.array([row.swapped_score for row in rows])
        wins = (true > swapped).astype(float) + 0.5 * (true == swapped)
        result = {
            "queries": len(rows),
            "preference": round(100.0 * float(wins.mean()), 2),
            "iou_true": round(100.0 * float(np.mean([row.true_iou for row in rows])), 2),
            "iou_swapped": round(100.0 * float(np.mean([row.swapped_iou for row in rows])), 2),
        }
        if all(row.true_rank > 0 for row in rows):
            true_rank = np.array([row.true_rank for row in rows])
            swapped_rank = np.array([row.swapped_rank for row in rows])
            result.update(mean_rank_true=round(float(true_rank.mean()), 2),
                          mean_rank_swapped=round(float(swapped_rank.mean()), 2),
                          rank_drops=round(100.0 * float((swapped_rank > true_rank).mean()), 2))
        return result

    if not outcomes:
        raise InputError("no query of the annotations has an antonym swap; check --table")
    kinds = sorted({row.kind for row in outcomes})
    return {"all": figures(outcomes), "by_kind": {kind: figures([row for row in outcomes if row.kind == kind])
                                                   for kind in kinds}}


def _iou(window: Sequence[float], truth: Sequence[float]) -> float:
    """IoU of one window with one true window (:func:`grounding.eval.iou.temporal_iou`)."""
    return float(temporal_iou(np.asarray([window], dtype=np.float64), np.asarray([truth], dtype=np.float64))[0, 0])


def collect(grounder: Any, records: Sequence[Any], swaps: dict[int, Any], clip_features: Any,
            text_only: bool = False, ranks: dict[int, tuple[int, int]] | None = None) -> list[QueryOutcome]:
    """Score each swapped record's S and S' on its video (one encoding per video); ``clip_features(video_id)``
    gives ``(T, D)`` features; ``text_only`` replaces every clip by the video's mean clip."""
    by_video: dict[str, list[Any]] = {}
    for record in records:
        if record.qid in swaps:
            by_video.setdefault(record.video_id, []).append(record)
    outcomes = []
    for video_id, group in by_video.items():
        feats = np.asarray(clip_features(video_id), dtype=np.float32)
        if text_only:
            feats = np.repeat(feats.mean(axis=0, keepdims=True), len(feats), axis=0)
        encoded = grounder.encode_features(feats, group[0].duration, video_id)
        sentences = [text for record in group for text in (record.sentence, swaps[record.qid].sentence)]
        result = grounder.predict(encoded, sentences, top_k=1)
        windows = result.candidate_windows
        scores = result.output.span_scores.float().cpu().numpy()
        valid = result.output.candidate_mask.cpu().numpy()
        for position, record in enumerate(group):
            truth = record.windows[0]
            overlap = temporal_iou(np.asarray(windows, dtype=np.float64), np.asarray([truth], dtype=np.float64))[:, 0]
            overlap[~valid[2 * position]] = -1.0
            best = int(overlap.argmax())
            top_true, top_swapped = result.spans[2 * position], result.spans[2 * position + 1]
            rank_true, rank_swapped = (ranks or {}).get(record.qid, (0, 0))
            outcomes.append(QueryOutcome(
                kind=swaps[record.qid].kind,
                true_score=float(scores[2 * position, best]), swapped_score=float(scores[2 * position + 1, best]),
                true_iou=_iou((top_true[0].start, top_true[0].end), truth) if top_true else 0.0,
                swapped_iou=_iou((top_swapped[0].start, top_swapped[0].end), truth) if top_swapped else 0.0,
                true_rank=rank_true, swapped_rank=rank_swapped,
            ))
    return outcomes


def prior_outcomes(prior: Any, records: Sequence[Any], swaps: dict[int, Any]) -> list[QueryOutcome]:
    """The moment prior's outcomes: one prediction for S and S' alike (it never reads the sentence)."""
    outcomes = []
    for record in records:
        if record.qid not in swaps:
            continue
        top = prior.predict(record)[0]
        iou = _iou((float(top[0]), float(top[1])), record.windows[0])
        outcomes.append(QueryOutcome(swaps[record.qid].kind, 1.0, 1.0, iou, iou))
    return outcomes


def true_video_ranks(ranker: Any, records: Sequence[Any], swaps: dict[int, Any]) -> dict[int, tuple[int, int]]:
    """qid -> (rank of the query's own video for S, for S'), 1 = first, over every video of the index."""
    from grounding.ranking import RankingSettings

    chosen = [record for record in records if record.qid in swaps]
    sentences = [text for record in chosen for text in (record.sentence, swaps[record.qid].sentence)]
    rankings = ranker.rank_many(sentences, RankingSettings(top_videos=len(ranker.index), top_spans=1))
    ranks = {}
    for position, record in enumerate(chosen):
        found = []
        for ranking in (rankings[2 * position], rankings[2 * position + 1]):
            order = [video.video_id for video in ranking]
            found.append(order.index(record.video_id) + 1 if record.video_id in order else len(order) + 1)
        ranks[record.qid] = (found[0], found[1])
    return ranks
