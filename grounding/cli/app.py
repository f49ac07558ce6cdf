"""``grounding app``: a local web app to ground sentences in videos and search an index (:mod:`grounding.app`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from grounding.cli._common import add_command
from grounding.errors import InputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from grounding.app.server import DEFAULT_MAX_SECONDS, DEFAULT_MAX_UPLOAD_MB

    parser = add_command(
        subparsers, "app", "a local web app: type a sentence, see where it happens in a video; search an index",
        "Serve a page on http://HOST:PORT where you pick a video from --videos (or upload one), type a sentence\n"
        "and get the top spans on a timeline (click one to play the video from there); with --index, also search\n"
        "the indexed corpus. Binds to 127.0.0.1 (this machine only) unless --host says otherwise. Uploads are\n"
        "size- and length-limited and read with the same decoder and checks as grounding extract.",
        "grounding app --videos demo/world/videos --index demo/index --port 7860",
    )
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="grounding checkpoint (default: the shipped model; with --index, the index's own)")
    parser.add_argument("--videos", default=None, metavar="DIR", help="folder of videos to pick from")
    parser.add_argument("--index", default=None, metavar="INDEX", help="an index from grounding index, to search")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                        help=f"largest upload accepted (default {DEFAULT_MAX_UPLOAD_MB})")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                        help=f"longest video accepted (default {DEFAULT_MAX_SECONDS:g} s)")
    return parser


def run(args: argparse.Namespace) -> int:
    from grounding.assets import shipped_model_path
    from grounding.errors import require_package

    for module in ("fastapi", "uvicorn", "multipart"):
        require_package(module, "grounding app", "app")
    from grounding.app.server import AppSettings, serve

    if not 0 < args.port < 65536:
        raise InputError(f"--port must be from 1 to 65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_seconds <= 0:
        raise InputError("--max-upload-mb and --max-seconds must be > 0")
    settings = AppSettings(
        checkpoint=Path(args.checkpoint) if args.checkpoint else shipped_model_path(),
        videos=None if args.videos is None else Path(args.videos),
        index=None if args.index is None else Path(args.index),
        max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
    )
    print(f"grounding app on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    serve(settings, host=args.host, port=args.port)
    return 0
