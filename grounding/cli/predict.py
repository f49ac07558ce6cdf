"""``grounding predict``: a checkpoint's predictions for every query of an annotation file, as Moment-DETR jsonl.

Clip features come from a feature file (``--features``, as training read them) or are extracted in memory from a
folder of videos (``--videos``, with the checkpoint's backbone and extraction settings). Queries are numbered
exactly as ``grounding evaluate`` numbers the same annotation file, so its output scores directly; ``--evaluate``
prints those scores at once. The work is :func:`grounding.inference.predict_moments`, the function the trainer's
own evaluation calls; with the trainer's batches (``--batch-size`` defaults to the run's ``train.eval_batch_size``) and
thread count, a checkpoint's figures are the trainer's figures exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from grounding.cli._checkpoint_flags import USE_CHECKPOINT_NMS, add_checkpoint_flags, chosen_nms
from grounding.cli._common import add_annotation_options, add_command, write_json_atomic
from grounding.errors import InputError

SHOWN_MISSING = 5


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "predict", "a checkpoint's top moments for every query of an annotation file (jsonl)",
        "Predict the top moments of every query in an annotation file with a checkpoint written by 'grounding\n"
        "train' (a run folder uses its best/ checkpoint), and write them as Moment-DETR jsonl lines\n"
        '  {"qid": 0, "pred_relevant_windows": [[start, end, score], ...]}\n'
        "numbered as 'grounding evaluate' numbers the same file. Queries of one video share one video encoding.\n"
        "A query whose video is missing is an error, or with --skip-missing a miss (no line).",
        "grounding predict --checkpoint runs/rendered-world --annotations worlds/w300/test.txt "
        "--durations worlds/w300/durations.csv --features worlds/w300/features-motion.h5 --out test.jsonl --evaluate",
    )
    add_checkpoint_flags(parser, top_k=10, top_k_help="windows kept per query after NMS, what mAP reads")
    parser.add_argument("--annotations", required=True, metavar="ANN", help="annotation file (.txt, .json or .jsonl)")
    add_annotation_options(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", metavar="FILE", help="clip-feature file (HDF5) or folder of .npy/.pt files")
    source.add_argument("--videos", metavar="DIR",
                        help="folder of video files (ids = file names without extension), featurised in memory "
                        "with the checkpoint's backbone")
    parser.add_argument("--out", required=True, metavar="PRED.jsonl", help="where to write the predictions")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="queries per forward pass (default: the run's train.eval_batch_size, from the "
                        "config.yaml beside the checkpoint, else 64)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="leave out queries whose video has no features (they score as misses)")
    parser.add_argument("--evaluate", action="store_true", help="also score the predictions and print the table")
    parser.add_argument("--json", default=None, metavar="SCORES.json",
                        help="with --evaluate, also write the figures as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _check_args(args: argparse.Namespace) -> float | None | str:
    nms = chosen_nms(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.json and not args.evaluate:
        raise InputError("--json writes the scores of --evaluate; add --evaluate")
    return nms


def run_eval_batch_size(checkpoint: Path) -> int | None:
    """``train.eval_batch_size`` of the run a checkpoint belongs to (``<run>/config.yaml``), or None.

    Predicting with the trainer's batches gives its floating-point numbers exactly (word padding, and so the
    last bits of a score, depend on which sentences share a batch)."""
    import yaml

    config = checkpoint.resolve().parent / "config.yaml"
    try:
        value = yaml.safe_load(config.read_text(encoding="utf-8"))["train"]["eval_batch_size"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _drop_missing(records: list[Any], missing: list[str], source: str, skip: bool) -> list[Any]:
    """The records whose video is available; an error naming the first missing videos unless ``skip``."""
    if not missing:
        return records
    if not skip:
        shown = ", ".join(missing[:SHOWN_MISSING]) + (f" and {len(missing) - SHOWN_MISSING} more"
                                                     if len(missing) > SHOWN_MISSING else "")
        raise InputError(
            f"{source}: no features for {len(missing)} video(s) of the annotations ({shown}); extract them, or pass "
            "--skip-missing to score their queries as misses"
        )
    absent = set(missing)
    kept = [record for record in records if record.video_id not in absent]
    print(f"skipped {len(records) - len(kept)} queries of {len(missing)} videos without features (scored as misses)",
          file=sys.stderr)
    return kept


def _video_clips(args: argparse.Namespace, grounder: Any, records: list[Any]) -> tuple[list[Any], Callable]:
    """Records kept and ``video_id -> (T, D)`` features extracted in memory from the files of ``--videos``."""
    from tqdm.auto import tqdm

    from grounding.inference.predict import missing_videos
    from grounding.video import find_videos

    folder = Path(args.videos)
    if not folder.is_dir():
        raise InputError(f"--videos {folder}: no such folder; pass the folder holding the annotation's videos")
    paths = {video.video_id: video.path for video in find_videos([folder])}
    records = _drop_missing(records, missing_videos(records, paths.__contains__), str(folder), args.skip_missing)
    features = {}
    for video_id in tqdm(list(dict.fromkeys(r.video_id for r in records)), desc="extract", unit="video",
                         disable=args.no_progress, file=sys.stderr):
        features[video_id] = grounder.encode_video(paths[video_id]).clip_feats
    return records, features.__getitem__


def run(args: argparse.Namespace) -> int:
    from grounding.cli.evaluate import format_table
    from grounding.data.annotations import read_annotations
    from grounding.data.features import open_feature_store
    from grounding.eval.metrics import evaluate
    from grounding.eval.predictions import read_predictions, write_moment_predictions
    from grounding.inference import DEFAULT_BATCH_SIZE, Grounder, predict_moments
    from grounding.inference.predict import StoreClips, missing_videos
    from grounding.model import find_checkpoint
    from grounding.text.sentence_bank import SentenceBank

    chosen = _check_args(args)
    started = time.perf_counter()
    checkpoint = find_checkpoint(args.checkpoint)
    grounder = Grounder.from_pretrained(checkpoint, device=args.device)
    annotations = read_annotations(args.annotations, format=args.format, durations=args.durations)
    records = list(annotations.records)
    store = None
    try:
        if args.features is not None:
            store = open_feature_store(args.features)
            if store.dim != grounder.model.config.input_dim:
                raise InputError(
                    f"{args.features}: {store.dim}-d clip features, but the checkpoint's model takes "
                    f"{grounder.model.config.input_dim}-d ones; use features of the backbone it was trained on"
                )
            missing = missing_videos(records, store.__contains__)
            records = _drop_missing(records, missing, args.features, args.skip_missing)
            clip_features: Callable = StoreClips(store, grounder.model.config.num_clips)
        else:
            records, clip_features = _video_clips(args, grounder, records)
        bank = SentenceBank(grounder.text_encoder, [record.sentence for record in records],
                            progress=not args.no_progress)
        nms = grounder.pipeline.nms if chosen == USE_CHECKPOINT_NMS else chosen
        moments = predict_moments(
            grounder.model, records, clip_features, bank, top_k=args.top_k, nms=nms,
            batch_size=args.batch_size or run_eval_batch_size(checkpoint) or DEFAULT_BATCH_SIZE, device=grounder.device,
            progress=not args.no_progress,
        )
    finally:
        if store is not None:
            store.close()
    write_moment_predictions(args.out, moments)
    seconds = time.perf_counter() - started
    num_videos = len({record.video_id for record in records})
    print(f"wrote {args.out}: top {args.top_k} windows of {len(moments)} of {len(annotations.records)} queries "
          f"({num_videos} videos) in {seconds:.1f} s; NMS {'off' if nms is None else f'IoU > {nms:g}'}; "
          f"checkpoint {checkpoint}")
    if args.evaluate:
        metrics = evaluate(annotations, read_predictions(args.out), nms_threshold=None)
        print(format_table(metrics))
        if args.json:
            write_json_atomic(args.json, {**metrics, "run": {
                "checkpoint": str(checkpoint), "annotations": annotations.path, "predictions": args.out,
                "nms_threshold": nms, "top_k": args.top_k, "queries_with_moment_predictions": len(moments),
            }})
            print(f"wrote {args.json}")
    return 0
