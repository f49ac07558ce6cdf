"""``grounding index``: encode a corpus of videos once, for ``grounding rank``.

The index stores, per video, the checkpoint's query-independent clip states and its coarse embedding (layout:
:mod:`grounding.ranking.index`), plus a copy of the checkpoint. Videos are committed a chunk at a time: rerunning
the same command after a kill continues where it stopped, and ``--add`` extends a finished index with new videos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grounding.cli._common import add_command, write_json_atomic
from grounding.errors import InputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "index", "encode a corpus of videos once, for ranking them with 'grounding rank'",
        "Encode every video of a feature file (or of a folder of videos, featurised in memory with the\n"
        "checkpoint's backbone) with a checkpoint's model, and store what ranking needs: each video's clip\n"
        "states (so a query never re-encodes a video) and its coarse embedding (stage 1's search vectors).\n"
        "Resumable: rerun the same command after a kill. --add extends an existing index with new videos.\n"
        "--bank ANN scores a bank of training sentences on every video, for the train-bank dual softmax.",
        "grounding index --checkpoint runs/rendered-world-1000-flow --features worlds/w1000/features-flow-05.h5 "
        "--bank worlds/w1000/train.txt --out indexes/w1000",
    )
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="checkpoint folder, or a run folder (its best/, else last/)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", metavar="FILE", help="clip-feature file (HDF5) or folder of .npy/.pt files")
    source.add_argument("--videos", metavar="DIR", help="folder of video files (ids = file names without extension)")
    parser.add_argument("--ids", metavar="ANN_OR_LIST", default=None,
                        help="only these videos: an annotation file (its videos, with its durations) or a text "
                        "file with one video id per line (default: every video of the source)")
    parser.add_argument("--durations", action="extend", nargs="+", default=None, metavar="CSV",
                        help="id,length CSV files giving video lengths (default: the feature file's duration "
                        "attribute); also read with charades-sta --ids / --bank files")
    parser.add_argument("--out", required=True, metavar="INDEX", help="the index folder")
    parser.add_argument("--add", action="store_true", help="extend the existing index in --out with new videos")
    parser.add_argument("--engine", "--backend", dest="engine", default="exact", metavar="NAME",
                        help="stage-1 vector engine: exact (default), faiss or milvus (docs/ranking-engines.md)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an engine setting, e.g. --engine-option kind=hnsw (repeatable)")
    parser.add_argument("--storage", choices=("float32", "float16"), default="float32",
                        help="dtype of the stored clip states (float16 halves the disk; default float32)")
    parser.add_argument("--bank", metavar="ANN", default=None,
                        help="training annotations whose sentences form the dual-softmax bank (never test queries)")
    parser.add_argument("--bank-size", type=int, default=64, metavar="B", help="bank sentences drawn (default 64)")
    parser.add_argument("--format", default=None, help="annotation format of --ids / --bank (default: detected)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the run's summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _option_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _engine_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--engine-option {pair!r}: expected KEY=VALUE, e.g. kind=hnsw")
        options[key.strip()] = _option_value(value)
    return options


def _chosen_ids(
    path: str | None, file_format: str | None, durations: list[str] | None
) -> tuple[list[str] | None, dict[str, float]]:
    """Ids (and durations) from an annotation file, or from a plain list of ids; (None, {}) without --ids."""
    if path is None:
        return None, {}
    from grounding.data.annotations import read_annotations

    try:
        records = read_annotations(path, format=file_format, durations=durations).records
        return list(dict.fromkeys(r.video_id for r in records)), {r.video_id: r.duration for r in records}
    except InputError as error:
        if file_format is not None:
            raise
        annotation_error = error
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--ids {path}: cannot read it ({error})") from None
    ids = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not ids or any(len(video_id.split()) > 1 for video_id in ids):
        # not a list of ids (one word per line): the annotation reader's complaint is the useful one
        raise InputError(f"--ids {path}: neither a list of video ids (one per line) nor a readable annotation file: "
                         f"{annotation_error}") from None
    return ids, {}


def run(args: argparse.Namespace) -> int:
    from grounding.data.annotations import read_annotations
    from grounding.data.charades_sta import read_durations
    from grounding.inference import Grounder
    from grounding.model import find_checkpoint
    from grounding.ranking.build import build_index, feature_source, sample_bank, video_file_source
    from grounding.ranking.index import INDEX_FILE, VideoIndex

    if args.bank_size < 1:
        raise InputError(f"--bank-size must be >= 1, got {args.bank_size}")
    checkpoint = find_checkpoint(args.checkpoint)
    grounder = Grounder.from_pretrained(checkpoint)
    config = grounder.model.config
    ids, durations = _chosen_ids(args.ids, args.format, args.durations)
    if args.durations:
        durations.update(read_durations(args.durations))
    if args.features is not None:
        source = feature_source(args.features, ids, durations)
    else:
        source = video_file_source(args.videos, grounder, ids)
    out = Path(args.out)
    exists = (out / INDEX_FILE).is_file()
    if exists:
        index = VideoIndex.open(out)
        if index.info.complete and not args.add:
            raise InputError(f"--out {out}: already holds a finished index; pass --add to extend it with new videos")
        if args.bank is not None and index.info.bank_size == 0:
            raise InputError(f"--out {out}: the index has no bank and one cannot be added later; build a new index")
        print(f"{'extending' if index.info.complete else 'resuming'} {out} ({len(index)} videos in it)", file=sys.stderr)
    else:
        if args.add:
            raise InputError(f"--add: {out} holds no index yet; build it first without --add")
        bank: list[str] = []
        if args.bank is not None:
            bank_set = read_annotations(args.bank, format=args.format, durations=args.durations)
            bank = sample_bank([r.sentence for r in bank_set.records], args.bank_size)
        index = VideoIndex.create(
            out, checkpoint, num_clips=config.num_clips, hidden_size=config.hidden_size, storage=args.storage,
            engine=args.engine, engine_options=_engine_options(args.engine_option), bank_sentences=bank,
            bank_pooling={"pooling": config.loss.ranking_pooling, "temperature": config.loss.ranking_pooling_temperature,
                          "annotations": str(args.bank)} if bank else None,
            source={**source.description, "checkpoint": str(checkpoint)},
        )
    try:
        index.set_complete(False)
        summary = build_index(index, grounder, source, progress=not args.no_progress)
        index.engine  # noqa: B018 (open and sync the engine now, so the first query does not pay for it)
        index.set_complete(True)
    finally:
        index.close()
    for video_id, reason in list(summary.failed.items())[:5]:
        print(f"failed: {video_id}: {reason}", file=sys.stderr)
    print(f"index {out}: {summary.added} videos added, {summary.already_there} already there, "
          f"{len(summary.failed)} failed; {summary.total} videos in all ({summary.seconds:.1f} s)")
    if args.json:
        write_json_atomic(args.json, {"index": str(out), "added": summary.added, "already_there": summary.already_there,
                                      "failed": summary.failed, "videos": summary.total, "seconds": summary.seconds})
    return 1 if summary.failed and not summary.added and not summary.already_there else 0
