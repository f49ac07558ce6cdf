"""``grounding synth``: render the scripted video world and write Charades-STA annotations for it."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict
from typing import Any

from grounding.cli._common import add_command, write_json_atomic


def _frame_size(text: str) -> tuple[int, int]:
    """``160`` or ``160x120`` (width x height) -> (width, height); the sizes are checked by SynthConfig."""
    match = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected SIZE or WIDTHxHEIGHT in pixels (e.g. 160 or 192x128), got {text!r}"
        )
    width = int(match.group(1))
    height = int(match.group(2) or width)
    return width, height


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "synth",
        summary="render the scripted video world (H.264 mp4) with Charades-STA annotations",
        description=(
            "Render N videos of coloured shapes doing scripted actions (appear, move left, grow, spin, ...) on\n"
            "textured, cluttered backgrounds, and write train.txt, test.txt, test_novel.txt (Charades-STA lines\n"
            "'VID START END##sentence', seconds), durations.csv (id,length) and manifest.json into --out.\n"
            "test_novel asks only about colour-shape-action compositions that train and test never show.\n"
            "SPLIT.relevant.jsonl lists, per query, every video of the world where it is true (for\n"
            "grounding evaluate --relevant). The same --seed gives the same files; rerunning into a\n"
            "half-finished folder resumes it. --relevance-only writes the relevance files of an already\n"
            "rendered world (generator version 1 or 2) from its manifest.json, rendering nothing."
        ),
        example="grounding synth --out data/synth --videos 300 --seed 0 --workers 2",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--videos", type=int, default=None, metavar="N", help="number of videos (default 300)")
    parser.add_argument("--seed", type=int, default=None,
                        help="master seed (default 0); the same seed gives the same dataset")
    parser.add_argument(
        "--workers", type=int, default=None, metavar="W",
        help="rendering processes (default min(2, CPU count)); results do not depend on it",
    )
    parser.add_argument(
        "--size", type=_frame_size, default=None, metavar="WxH",
        help="frame size in pixels, 'S' or 'WxH', even numbers >= 64 (default 160)",
    )
    parser.add_argument("--fps", type=int, default=None, help="frames per second (default 8)")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="write into --out even though it holds another dataset (its videos are deleted)",
    )
    parser.add_argument(
        "--relevance-only", action="store_true",
        help="render nothing: write SPLIT.relevant.jsonl for the world already in --out, from its manifest.json",
    )
    parser.add_argument(
        "--relevance-dir", metavar="DIR", default=None,
        help="with --relevance-only: write the relevance files here instead of into --out",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the run's summary as JSON to OUT")
    return parser


def _write_relevance(args: argparse.Namespace) -> int:
    from grounding.errors import InputError
    from grounding.video.synth.dataset import relevance_path, write_world_relevance

    given = [flag for flag, value in (("--videos", args.videos), ("--seed", args.seed), ("--size", args.size),
                                      ("--fps", args.fps), ("--workers", args.workers)) if value is not None]
    if given or args.overwrite:
        flags = ", ".join(given + ["--overwrite"] * args.overwrite)
        raise InputError(f"--relevance-only reads the world from --out's manifest.json; drop {flags}.")
    summaries = write_world_relevance(args.out, args.relevance_dir)
    target = args.out if args.relevance_dir is None else args.relevance_dir
    print(f"synth: relevance files of {args.out} -> {relevance_path(target, '<split>')}")
    for summary in summaries:
        print(f"  {summary.line()}")
    if args.json:
        write_json_atomic(args.json, {"relevance": [asdict(summary) for summary in summaries]})
    return 0


def run(args: argparse.Namespace) -> int:
    from grounding.errors import InputError
    from grounding.video.synth.dataset import SynthConfig, build_dataset

    if args.relevance_only:
        return _write_relevance(args)
    if args.relevance_dir is not None:
        raise InputError(
            "--relevance-dir goes with --relevance-only; a full run writes the relevance files into --out."
        )
    width, height = args.size or (160, 160)
    config = SynthConfig(
        seed=0 if args.seed is None else args.seed,
        num_videos=300 if args.videos is None else args.videos,
        width=width,
        height=height,
        fps=8 if args.fps is None else args.fps,
    )
    summary = build_dataset(
        args.out, config, workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress
    )
    splits = ", ".join(
        f"{name} {summary.videos[name]} videos/{summary.queries[name]} queries" for name in summary.videos
    )
    print(
        f"synth: {summary.rendered} videos rendered, {summary.skipped} already there, in {summary.seconds:.1f} s "
        f"-> {summary.out_dir} ({splits})"
    )
    if args.json:
        write_json_atomic(args.json, summary.to_json())
    return 0
