"""``grounding ground``: find the moments a sentence describes in one video, with a trained checkpoint.

The video is either a file (decoded and encoded with the checkpoint's backbone and extraction settings) or a
video's clip features in a feature file (``--features FILE --video-id ID``). Prints each query's top spans in
seconds with their scores after NMS, best first; ``--json`` prints JSON instead; ``--plot`` draws, per query,
the best score covering each moment of the video, the top spans, and the 2D map of candidate scores.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from grounding.cli._checkpoint_flags import add_checkpoint_flags, chosen_nms
from grounding.cli._common import add_command
from grounding.errors import InputError
from grounding.files import atomic_path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "ground", "find the moment a sentence describes in a video",
        "Ground one or more queries in one video with a checkpoint written by 'grounding train' (a run folder\n"
        "uses its best/ checkpoint). Give the video as a file (--video) or as clip features (--features with\n"
        "--video-id). Spans are in seconds, best first, after non-maximum suppression.",
        'grounding ground --checkpoint runs/w300 --video worlds/w300/videos/syn00007.mp4 '
        '--query "the red circle spins" --top-k 5 --plot ground.png',
    )
    add_checkpoint_flags(parser, top_k=5, top_k_help="spans per query")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", metavar="PATH", help="video file (decoded with the checkpoint's backbone)")
    source.add_argument("--features", metavar="FILE", help="clip-feature file or folder holding --video-id")
    parser.add_argument("--video-id", metavar="ID", help="the video's id in --features")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="video length with --features when the file does not record it")
    parser.add_argument("--query", action="append", required=True, metavar="TEXT",
                        help="a sentence to ground (repeat for several)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of text")
    parser.add_argument("--plot", default=None, metavar="OUT.png",
                        help="write a figure: score over time, the top spans, and the 2D score map")
    return parser


def _load_features(args: argparse.Namespace, grounder: Any) -> Any:
    from grounding.data.features import open_feature_store

    if not args.video_id:
        raise InputError("--features needs --video-id ID to say which video of the file to ground in")
    store = open_feature_store(args.features)
    try:
        clip_feats = store.get(args.video_id)
        recorded = store.attrs(args.video_id).get("duration")
    finally:
        store.close()
    duration = args.duration if args.duration is not None else recorded
    if duration is None:
        raise InputError(
            f"{args.features}: video '{args.video_id}' has no recorded duration; pass --duration SECONDS"
        )
    return grounder.encode_features(clip_feats, float(duration), args.video_id)


def _payload(result: Any, checkpoint: str, source: str) -> dict[str, Any]:
    return {
        "checkpoint": checkpoint,
        "video": source,
        "video_id": result.video.video_id,
        "duration": result.video.duration,
        "queries": [
            {"query": query, "spans": [{"start": s.start, "end": s.end, "score": s.score} for s in spans]}
            for query, spans in zip(result.queries, result.spans)
        ],
    }


def plot_result(result: Any, path: str | os.PathLike[str]) -> None:
    """One row per query: the best candidate score covering each time with the top spans marked, and the
    sparse 2D map of candidate scores (start clip x end clip, blank where there is no candidate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grounding.inference import score_map, time_profile

    num_queries = len(result.queries)
    figure, axes = plt.subplots(num_queries, 2, figsize=(11, 3.2 * num_queries), squeeze=False,
                                gridspec_kw={"width_ratios": [2.2, 1]})
    duration = result.video.duration
    for row, query in enumerate(result.queries):
        timeline, grid = axes[row]
        times, scores = time_profile(result, row)
        timeline.plot(times, scores, color="tab:blue", linewidth=1, label="best score covering t")
        top = max([float(scores.max())] + [span.score for span in result.spans[row]])
        for rank, span in enumerate(result.spans[row], start=1):
            timeline.hlines(span.score, span.start, span.end, colors="tab:red" if rank == 1 else "tab:orange",
                            linewidth=4 if rank == 1 else 2, label="top span" if rank == 1 else None)
            timeline.text(span.end, span.score, f" #{rank} {span.score:.2f}", va="center", fontsize=7)
        timeline.set_xlim(0, duration)
        timeline.set_ylim(0, max(top * 1.15, 1e-3))
        timeline.legend(loc="lower right", fontsize=7)
        timeline.set_xlabel("time (s)")
        timeline.set_ylabel("score")
        title = query if len(query) <= 70 else query[:67] + "..."
        timeline.set_title(f'"{title}"', fontsize=9)
        image = score_map(result, row)
        shown = grid.imshow(image, origin="lower", cmap="viridis", extent=(0, duration, 0, duration),
                            interpolation="nearest")  # colour range = this query's scores; NaN cells stay blank
        grid.set_xlabel("end clip (s)")
        grid.set_ylabel("start clip (s)")
        grid.set_title("candidate scores", fontsize=9)
        figure.colorbar(shown, ax=grid, fraction=0.046)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from grounding.inference import Grounder
    from grounding.model import find_checkpoint

    nms = chosen_nms(args)
    if args.video_id and not args.features:
        raise InputError("--video-id goes with --features; with --video the id is the file name")
    checkpoint = find_checkpoint(args.checkpoint)
    grounder = Grounder.from_pretrained(checkpoint, device=args.device)
    if args.video is not None:
        video = grounder.encode_video(args.video)
        source = args.video
    else:
        video = _load_features(args, grounder)
        source = f"{args.features}:{args.video_id}"
    result = grounder.predict(video, args.query, top_k=args.top_k, nms_threshold=nms)
    if args.plot:
        plot_result(result, args.plot)
    if args.json:
        payload = _payload(result, str(checkpoint), source)
        if args.plot:
            payload["plot"] = args.plot
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{source} ({video.duration:.2f} s), checkpoint {checkpoint}")
    for query, spans in zip(result.queries, result.spans):
        print(f'"{query}"')
        for rank, span in enumerate(spans, start=1):
            print(f"  {rank}. {span.start:7.2f} s - {span.end:7.2f} s   score {span.score:.3f}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0
