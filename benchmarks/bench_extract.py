"""Throughput of `grounding extract`: the full pipeline beside decode-only and backbone-only.

Extraction overlaps decoding (worker threads) with the network (main thread), so its throughput should come
close to the slower of the two stages measured alone. Each stage is timed on the same videos:

- decode-only: the frames extraction would decode (clip plan, resize on decode), 1 thread, then ``--workers``
  threads over different videos, as the pipeline runs them;
- backbone-only: the network on frames decoded beforehand (preprocessing included), in ``--batch-size`` batches;
- extract: ``extract_features`` end to end into a temporary HDF5 file.

Usage::

    python benchmarks/bench_extract.py [FOLDER] [--videos 8] [--backbone efficientnet-lite0] [--workers 2]

Without FOLDER, ``grounding synth`` renders ``--videos`` synthetic videos into a temporary folder first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from grounding.video.backbones import create_backbone
from grounding.video.clips import resolve_settings
from grounding.video.decode import ClipFrameReader
from grounding.video.extract import (
    ExtractionConfig,
    VideoSource,
    extract_features,
    find_videos,
)
from grounding.video.settings import ExtractionSettings


def render_synthetic(folder: Path, count: int, seed: int) -> Path:
    """Render ``count`` videos with ``grounding synth``; returns the folder of mp4 files."""
    from grounding.cli.main import main

    code = main(["synth", "--out", str(folder), "--videos", str(count), "--seed", str(seed), "--no-progress"])
    if code != 0:
        raise SystemExit(f"grounding synth failed with exit status {code}")
    return folder / "videos"


def decode_video(video: VideoSource, settings: ExtractionSettings, batch_size: int) -> np.ndarray:
    """All frames extraction would decode for one video with resolved ``settings``: uint8 (T*K, size, size, 3)."""
    assert settings.frame_size and settings.resize and settings.clip_seconds and settings.frames_per_clip
    with ClipFrameReader(video.path, size=settings.frame_size, resize=settings.resize, num_threads=1) as reader:
        plan = reader.plan(settings.clip_seconds, settings.frames_per_clip)
        chunk = max(1, batch_size // settings.frames_per_clip)
        starts = range(0, plan.num_clips, chunk)
        return np.concatenate([reader.read(plan.frame_indices[first : first + chunk].ravel()) for first in starts])


def time_decode(
    videos: Sequence[VideoSource], settings: ExtractionSettings, batch_size: int, threads: int
) -> tuple[int, float]:
    """(frames, seconds) to decode every video with ``threads`` threads, each taking whole videos."""
    pending = list(videos)
    lock = threading.Lock()
    counts: list[int] = []

    def work() -> None:
        while True:
            with lock:
                if not pending:
                    return
                video = pending.pop(0)
            frames = decode_video(video, settings, batch_size)
            with lock:
                counts.append(len(frames))

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(max(1, threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts), time.perf_counter() - started


def time_backbone(backbone: Any, frames: np.ndarray, batch_size: int) -> tuple[int, float]:
    """(frames, seconds) to encode ``frames`` in batches, after one warm-up batch."""
    backbone.encode_frames(frames[:batch_size])
    started = time.perf_counter()
    for first in range(0, len(frames), batch_size):
        backbone.encode_frames(frames[first : first + batch_size])
    return len(frames), time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="folder of videos (default: render synthetic ones)")
    parser.add_argument("--videos", type=int, default=8, help="synthetic videos to render, or the first N of FOLDER")
    parser.add_argument("--seed", type=int, default=0, help="seed for the synthetic videos")
    parser.add_argument("--backbone", default="efficientnet-lite0", help="backbone name or hf:PATH")
    parser.add_argument("--clip-seconds", type=float, default=1.0, help="clip length in seconds")
    parser.add_argument("--frames-per-clip", type=int, default=None, help="frames per clip (default: backbone's)")
    parser.add_argument("--size", type=int, default=None, help="frame side (default: backbone's input size)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per network call")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads in the pipeline")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own choice, one per core)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    with tempfile.TemporaryDirectory(prefix="bench_extract_") as scratch:
        folder = Path(args.folder) if args.folder else render_synthetic(Path(scratch) / "synth", args.videos, args.seed)
        videos = find_videos([folder])[: args.videos]
        config = ExtractionConfig(
            ExtractionSettings(backbone=args.backbone, clip_seconds=args.clip_seconds,
                               frames_per_clip=args.frames_per_clip, frame_size=args.size),
            batch_size=args.batch_size, workers=args.workers, device=args.device,
        )
        backbone = create_backbone(args.backbone, device=args.device)
        settings = resolve_settings(config.settings, backbone)

        for video in videos:  # every stage then reads the files from the page cache
            video.path.read_bytes()
        decode_1 = time_decode(videos, settings, args.batch_size, threads=1)
        decode_w = time_decode(videos, settings, args.batch_size, threads=args.workers)
        decoded = np.concatenate([decode_video(video, settings, args.batch_size) for video in videos])
        encode = time_backbone(backbone, decoded, args.batch_size)
        report = extract_features(videos, Path(scratch) / "features.h5", config, backbone=backbone, progress=False)
        full = (report.frames, report.seconds)

    rows = {
        "decode-only, 1 thread": decode_1,
        f"decode-only, {args.workers} threads": decode_w,
        "backbone-only": encode,
        f"extract (workers={args.workers})": full,
    }
    summary = {
        "videos": len(videos),
        "backbone": args.backbone,
        "size": settings.frame_size,
        "frames_per_clip": settings.frames_per_clip,
        "batch_size": args.batch_size,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "frames_per_second": {name: round(frames / seconds, 1) for name, (frames, seconds) in rows.items()},
        "failed": len(report.failures),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(videos)} videos, {decoded.shape[0]} frames at {settings.frame_size}x{settings.frame_size}, backbone {args.backbone}, "
              f"batch {args.batch_size}, device {args.device}, torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs")
        for name, (frames, seconds) in rows.items():
            print(f"  {name:<28} {frames:>6} frames in {seconds:7.2f} s = {frames / seconds:8.1f} frames/s")
        limit = min(rows["decode-only, 1 thread"][0] / rows["decode-only, 1 thread"][1],
                    rows["backbone-only"][0] / rows["backbone-only"][1])
        print(f"  extract reaches {100 * full[0] / full[1] / limit:.0f}% of the slower stage alone (1 decode thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
