"""``grounding demo``: the newcomer's first command (:mod:`grounding.demo`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grounding.cli._common import add_command, write_json_atomic


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from grounding.demo.run import DEFAULT_SEED, DEFAULT_TRAIN_EPOCHS, DEFAULT_VIDEOS

    parser = add_command(
        subparsers, "demo", "the whole path on a fresh rendered world with the shipped model (a few minutes)",
        "Render a small world the shipped model never saw, extract its features, predict and score its test\n"
        "queries beside the blind baselines, ground three sentences of one video, rank the world's videos for two\n"
        "sentences, and write a report page (OUT/report/index.html: the videos play, clicking a span seeks).\n"
        "Each step is printed as the grounding command that runs it; a rerun resumes.",
        "grounding demo --out demo      (or --train: a small model trained here instead of the shipped one)",
    )
    parser.add_argument("--out", default="demo", metavar="DIR", help="the demo's folder (default: demo)")
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, metavar="N",
                        help=f"videos in the fresh world (default {DEFAULT_VIDEOS}; about 2 s each to render and extract)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"the world's seed (default {DEFAULT_SEED}; not 1, the shipped model's own world)")
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="use this checkpoint instead of the shipped model")
    parser.add_argument("--train", action="store_true",
                        help="train a small model on the world's training split instead of using the shipped one "
                        "(scored beside it; adds a minute or two)")
    parser.add_argument("--train-epochs", type=int, default=DEFAULT_TRAIN_EPOCHS, metavar="E",
                        help=f"epochs of --train (default {DEFAULT_TRAIN_EPOCHS})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from grounding.demo.run import DemoSettings, format_summary, run_demo

    settings = DemoSettings(out=Path(args.out), videos=args.videos, seed=args.seed,
                            checkpoint=None if args.checkpoint is None else Path(args.checkpoint),
                            train=args.train, train_epochs=args.train_epochs, progress=not args.no_progress)
    result = run_demo(settings)
    print(format_summary(result))
    summary = asdict(result)
    summary = json.loads(json.dumps(summary, default=str))
    write_json_atomic(Path(args.out) / "summary.json", summary)
    print(f"wrote {Path(args.out) / 'summary.json'}; open {result.report} in a browser")
    return 0
