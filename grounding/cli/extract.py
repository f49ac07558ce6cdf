"""``grounding extract``: video files -> clip features in one HDF5 file (resumable, shardable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grounding.cli._common import add_command, write_json_atomic
from grounding.errors import InputError

_DESCRIPTION = """\
Decode each video at clip centres (real frame timestamps), encode the frames with an image backbone and
write one dataset [T clips, D] per video id (the file name without extension) into an HDF5 file.

VIDEOS are video files, folders (searched recursively for mp4/avi/mkv/webm/mov/mpg/mpeg/m4v/ts/wmv/flv/3gp;
a folder without any is an error) or text files listing one path per line. A killed run resumes where it
stopped when rerun with the same command (finished videos are kept in OUT.parts/ until OUT is rebuilt). A
video that cannot be decoded is reported in the failures JSON and the others go on; the exit status is 1 if
any video failed, 0 otherwise. Frames are placed at the container's timestamps, or at index / fps when those
cannot be trusted (the video's 'timestamps' attribute says which). See docs/extract.md."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "extract",
        "extract clip features from videos into an HDF5 file",
        _DESCRIPTION,
        "grounding extract videos/ --out features.h5 --backbone efficientnet-lite0 --clip-seconds 1.0",
    )
    parser.add_argument("videos", nargs="*", metavar="VIDEOS",
                        help="video files, folders of videos, or text files listing video paths")
    parser.add_argument("--out", help="output HDF5 file (with --shard, the shard's name is derived "
                        "from it: features.h5 -> features.shard-0-of-4.h5)")
    parser.add_argument("--backbone", default="efficientnet-lite0",
                        help="registered backbone name or hf:PATH to a local transformers vision model "
                        "(default: efficientnet-lite0; --list-backbones shows the names)")
    parser.add_argument("--list-backbones", action="store_true", help="print the registered backbones and exit")
    parser.add_argument("--clip-seconds", type=float, default=1.0, help="clip length in seconds (default: 1.0)")
    parser.add_argument("--frames-per-clip", type=int, default=None,
                        help="frames per clip, evenly spaced inside it, features averaged (default: 1; a video "
                        "backbone uses its own frame count)")
    parser.add_argument("--size", type=int, default=None,
                        help="decoded frame side in pixels (default: the backbone's input size, 224)")
    parser.add_argument("--resize", choices=("squash", "crop"), default="squash",
                        help="squash: resize the whole frame to size x size (default); crop: short side to "
                        "size, then the centre square")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per network call (default: 32)")
    parser.add_argument("--workers", type=int, default=2,
                        help="decoding threads running beside the network (default: 2; 0 = no overlap)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="process only shard I of N (0-based, round-robin over videos sorted by id) into its "
                        "own file; join the shards with `grounding features merge`")
    parser.add_argument("--device", default="cpu", help="torch device for the network: cpu or cuda (default: cpu)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch CPU threads for the network (default: torch's choice, one per core); on a busy "
                        "shared machine 1 can be faster")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="storage dtype of the features (default: float32; float16 halves the file)")
    parser.add_argument("--failures", default=None,
                        help="failures JSON to write (default: OUT.failures.json, OUT being the shard's file)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    from grounding.video.backbones import backbone_entry, list_backbones
    from grounding.video.extract import (
        ExtractionConfig,
        extract_features,
        find_videos,
        parse_shard,
        select_shard,
        shard_output_path,
    )
    from grounding.video.settings import ExtractionSettings

    if args.list_backbones:
        for name in list_backbones():
            print(f"{name:<28} D={backbone_entry(name).dim:<6} {backbone_entry(name).description}")
        print(f"{'hf:PATH':<28} {'':8} any local transformers vision model folder")
        return 0
    if not args.videos or not args.out:
        raise InputError("pass VIDEOS (files, folders or list files) and --out FILE.h5; see grounding extract --help.")
    settings = ExtractionSettings(
        backbone=args.backbone,
        clip_seconds=args.clip_seconds,
        frames_per_clip=args.frames_per_clip,
        frame_size=args.size,
        resize=args.resize,
    )
    config = ExtractionConfig(
        settings,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        dtype=args.dtype,
    )
    if args.torch_threads is not None:
        if args.torch_threads < 1:
            raise InputError(f"--torch-threads must be >= 1, got {args.torch_threads}.")
        import torch

        torch.set_num_threads(args.torch_threads)
    videos = find_videos(args.videos)
    out = Path(args.out)
    if args.shard is not None:
        index, count = parse_shard(args.shard)
        videos = select_shard(videos, index, count)
        out = shard_output_path(out, index, count)
    report = extract_features(videos, out, config, progress=not args.no_progress)
    failures_path = Path(args.failures) if args.failures else out.with_name(out.name + ".failures.json")
    payload = report.to_json()
    write_json_atomic(failures_path, {"output": str(out), "failed": len(report.failures),
                                      "failures": payload["failures"]})
    if args.json:
        print(json.dumps({**payload, "failures_file": str(failures_path)}, indent=2, ensure_ascii=False))
    else:
        failed = f", {len(report.failures)} failed (see {failures_path})" if report.failures else ", 0 failed"
        print(
            f"extract: {len(report.extracted)} videos extracted, {len(report.skipped)} already done{failed} -> "
            f"{out} ({report.num_videos} videos, D={report.dim}) in {report.seconds:.1f} s "
            f"[{payload['videos_per_second']:g} videos/s, {payload['frames_per_second']:g} frames/s]"
        )
        if report.frame_rate_timestamps:
            shown = ", ".join(report.frame_rate_timestamps[:5])
            print(f"  {len(report.frame_rate_timestamps)} videos had unusable container timestamps; their frames are "
                  f"placed at index / fps ({shown}{', ...' if len(report.frame_rate_timestamps) > 5 else ''})",
                  file=sys.stderr)
        for failure in report.failures[:5]:
            print(f"  failed: {failure.video_id} ({failure.path}): {failure.reason}", file=sys.stderr)
        if len(report.failures) > 5:
            print(f"  ... and {len(report.failures) - 5} more in {failures_path}", file=sys.stderr)
    return 1 if report.failures else 0
