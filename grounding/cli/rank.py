"""``grounding rank``: the videos of an index that best show a sentence, each with its best spans.

With ``--query`` it prints the ranking (and ``--json`` writes it); with ``--queries ANN`` it ranks every query of
an annotation file and writes one jsonl line per query, numbered as ``grounding evaluate`` numbers that file::

    {"qid": 0, "query": "...", "video_ranking": ["vid", ...], "pred_corpus_windows": [["vid", start, end, score], ...]}

so ``grounding evaluate ANN PRED.jsonl [--relevant FILE]`` gives VR@k and VCMR directly. A corpus window's score
orders windows across videos: its span's score times the video's rescoring factor (1 without dual softmax).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from grounding.cli._common import add_command, write_json_atomic
from grounding.errors import InputError

TRANSDUCTIVE_NOTE = ("transductive: the dual-softmax bank was drawn from the queries being ranked (test queries), "
                     "which a deployed system does not have; do not compare with non-transductive figures")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "rank", "rank the videos of an index for a sentence (best videos, best spans)",
        "Rank every video of an index built by 'grounding index' for a sentence: stage 1 retrieves the --rerank\n"
        "videos whose coarse embedding is closest to the query's, stage 2 rescores them with the full span\n"
        "scorer from their stored clip states and pools each video's span scores (--pooling). --dual-softmax\n"
        "train rescores with the index's bank of training sentences (CAMoE's dual softmax);\n"
        "--dual-softmax transductive draws the bank from the --queries themselves and is labelled so.",
        'grounding rank --index indexes/w1000 --query "the red circle spins" --top-videos 5',
    )
    parser.add_argument("--index", required=True, metavar="INDEX", help="an index folder from grounding index")
    queries = parser.add_mutually_exclusive_group(required=True)
    queries.add_argument("--query", action="append", metavar="TEXT", help="a sentence (repeatable)")
    queries.add_argument("--queries", metavar="ANN", help="rank every query of an annotation file")
    parser.add_argument("--format", default=None, help="annotation format of --queries (default: detected)")
    parser.add_argument("--durations", action="extend", nargs="+", default=None, metavar="CSV",
                        help="Charades_v1_*.csv lengths, when --queries is a charades-sta file")
    parser.add_argument("--top-videos", type=int, default=None, metavar="N",
                        help="videos listed per query (default 10; 100 with --queries, what VR@100 reads)")
    parser.add_argument("--top-spans", type=int, default=3, metavar="K", help="spans per video (default 3)")
    parser.add_argument("--rerank", type=int, default=None, metavar="M",
                        help="stage 1's candidates that stage 2 rescores (default 20)")
    parser.add_argument("--stage1-only", action="store_true", help="rank by the coarse embeddings alone (no spans)")
    parser.add_argument("--pooling", choices=("max", "softmax"), default=None,
                        help="span scores -> video score (default: what the checkpoint was trained with)")
    parser.add_argument("--pooling-temperature", type=float, default=None, metavar="T",
                        help="softmax pooling temperature in log-score units (default: the checkpoint's)")
    parser.add_argument("--dual-softmax", choices=("train", "transductive"), default=None, metavar="BANK",
                        help="rescore with a query bank: train (the index's) or transductive (from --queries)")
    parser.add_argument("--dual-softmax-temperature", type=float, default=1.0, metavar="T",
                        help="the rescoring temperature (default 1.0)")
    parser.add_argument("--bank-size", type=int, default=64, metavar="B",
                        help="queries drawn for a transductive bank (default 64)")
    parser.add_argument("--out", default=None, metavar="PRED.jsonl", help="write the rankings as jsonl")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the rankings and settings as JSON")
    parser.add_argument("--device", default="cpu", metavar="DEV", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _video_payload(video: Any) -> dict[str, Any]:
    return {
        "video_id": video.video_id, "score": video.score, "stage1_score": video.stage1_score,
        "reranked": video.reranked, "probability": None if math.isnan(video.probability) else video.probability,
        "spans": [[span.start, span.end, span.score] for span in video.spans],
    }


def corpus_windows(videos: list[Any], by_probability: bool = True) -> list[list[Any]]:
    """``[vid, start, end, score]`` rows over the reranked videos, best first: a span's score is the video's weight
    times the span's score relative to the video's top span, so a video's top span scores its weight and windows
    of a better video come first. The weight is the video's probability, or (``by_probability`` False: a dual
    softmax reordered the videos, the probability did not follow) ``exp(score - best score)``."""
    rows = []
    best = max((video.score for video in videos if video.spans), default=0.0)
    for video in videos:
        if not video.spans:
            continue
        top = video.spans[0].score
        weight = video.probability if by_probability else math.exp(video.score - best)
        factor = weight / top if top > 0 else weight
        rows += [[video.video_id, span.start, span.end, span.score * factor] for span in video.spans]
    rows.sort(key=lambda row: -row[3])
    return rows


def run(args: argparse.Namespace) -> int:
    import json

    from grounding.data.annotations import read_annotations
    from grounding.files import write_text_atomic
    from grounding.ranking import Ranker, RankingSettings

    for name in ("top_videos", "rerank"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "rerank" else 1):
            raise InputError(f"--{name.replace('_', '-')} must be >= {0 if name == 'rerank' else 1}, got {value}")
    if args.stage1_only and args.rerank:
        raise InputError("--stage1-only and --rerank contradict each other; pass one")
    if args.dual_softmax == "transductive" and not args.queries:
        raise InputError("--dual-softmax transductive draws its bank from --queries ANN; pass an annotation file")
    started = time.perf_counter()
    ranker = Ranker.from_index(args.index, device=args.device)
    records = None
    if args.queries:
        annotations = read_annotations(args.queries, format=args.format, durations=args.durations)
        records = list(annotations.records)
        sentences = [record.sentence for record in records]
    else:
        sentences = list(args.query)
    settings = RankingSettings(
        top_videos=args.top_videos or (100 if records is not None else 10), top_spans=args.top_spans,
        rerank=0 if args.stage1_only else (args.rerank if args.rerank is not None else RankingSettings.rerank),
        pooling=args.pooling, pooling_temperature=args.pooling_temperature, dual_softmax=args.dual_softmax,
        dual_softmax_temperature=args.dual_softmax_temperature, bank_size=args.bank_size,
    )
    try:
        settings = ranker.resolved(settings)
        rankings = ranker.rank_many(sentences, settings, progress=not args.no_progress)
    finally:
        ranker.close()
    seconds = time.perf_counter() - started
    transductive = settings.transductive
    if transductive:
        print(TRANSDUCTIVE_NOTE)
    lines = []
    for position, (sentence, videos) in enumerate(zip(sentences, rankings)):
        qid = records[position].qid if records is not None else position
        lines.append({"qid": qid, "query": sentence, "video_ranking": [video.video_id for video in videos],
                      "pred_corpus_windows": corpus_windows(videos, settings.dual_softmax is None), "transductive": transductive})
    if records is None:
        for sentence, videos in zip(sentences, rankings):
            print(f"{sentence}")
            for place, video in enumerate(videos, start=1):
                best = f"{video.spans[0].start:.2f}-{video.spans[0].end:.2f} s ({video.spans[0].score:.3f})" \
                    if video.spans else "(not reranked)"
                what = f"score {video.score:.3f} (p {video.probability:.2f})" if video.reranked \
                    else f"stage-1 cosine {video.score:.3f}"
                print(f"  {place:>3}. {video.video_id}  {what}  best span {best}")
    if args.out:
        write_text_atomic(args.out, "".join(json.dumps(line) + "\n" for line in lines))
        print(f"wrote {args.out}: rankings of {len(lines)} queries over {len(ranker.index)} videos "
              f"in {seconds:.1f} s", file=sys.stderr)
    if args.json:
        write_json_atomic(args.json, {
            "index": args.index, "videos": len(ranker.index), "transductive": transductive, "seconds": seconds,
            "settings": {key: getattr(settings, key) for key in (
                "top_videos", "top_spans", "rerank", "pooling", "pooling_temperature", "dual_softmax",
                "dual_softmax_temperature", "bank_size")},
            "fusion": {"stage1_weight": ranker.fusion[0], "stage2_weight": ranker.fusion[1]},
            "rankings": [{"query": sentence, "videos": [_video_payload(video) for video in videos]}
                         for sentence, videos in zip(sentences, rankings)],
        })
    return 0
