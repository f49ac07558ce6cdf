"""``grounding features``: work with clip-feature files (``merge`` shards, ``info`` on one file)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from grounding.cli._common import add_command


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "features",
        "merge or inspect clip-feature HDF5 files",
        "Work with the HDF5 clip-feature files written by `grounding extract`:\n"
        "  merge  join files (e.g. the shards of one extraction) into one\n"
        "  info   print a file's settings, video count and feature width",
        "grounding features merge features.shard-*-of-4.h5 --out features.h5",
    )
    actions = parser.add_subparsers(dest="features_action", metavar="ACTION")
    merge = actions.add_parser(
        "merge",
        help="join feature files into one",
        description="Join HDF5 feature files into one. Settings (backbone, dim, clip_seconds, frames_per_clip, "
        "size, resize, dtype) must agree; a video in two files must have identical features there.\n\nexample:\n"
        "  grounding features merge features.shard-0-of-2.h5 features.shard-1-of-2.h5 --out features.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    merge.add_argument("inputs", nargs="+", metavar="PART.h5", help="feature files to join")
    merge.add_argument("--out", required=True, help="merged HDF5 file to write")
    merge.add_argument("--force", action="store_true", help="replace --out if it exists (and is not an input)")
    merge.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    info = actions.add_parser(
        "info",
        help="summarize a feature file",
        description="Print a feature file's attributes, number of videos, feature width and clip counts.\n\n"
        "example:\n  grounding features info features.h5 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    info.add_argument("path", metavar="FILE.h5", help="feature file to describe")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(_features_parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from grounding.video.feature_files import (
        merge_feature_files,
        summarize_feature_file,
    )

    if args.features_action == "merge":
        report = merge_feature_files(args.inputs, args.out, force=args.force)
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            duplicates = f" ({len(report.duplicates)} identical duplicates written once)" if report.duplicates else ""
            print(f"features merge: {len(args.inputs)} files -> {report.output} "
                  f"({report.num_videos} videos, D={report.dim}){duplicates}")
        return 0
    if args.features_action == "info":
        summary = summarize_feature_file(args.path)
        if args.json:
            print(json.dumps(summary, indent=2, ensure_ascii=False))
        else:
            dims = ", ".join(map(str, summary["dims"])) or "-"
            print(f"{summary['path']}: {summary['num_videos']} videos, D={dims}, "
                  f"{summary['total_clips']} clips ({summary['min_clips']}-{summary['max_clips']} per video)")
            for key, value in summary["attrs"].items():
                print(f"  {key}: {value}")
        return 0
    args._features_parser.print_help()
    return 1
