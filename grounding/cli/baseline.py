"""`grounding baseline`: write the predictions of a blind baseline (one that never looks at video or text)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from grounding.cli._common import add_command, write_json_atomic
from grounding.data.annotations import ANNOTATION_FORMATS, detect_format, read_annotations
from grounding.data.records import AnnotationSet
from grounding.errors import InputError
from grounding.eval.baselines import BASELINES, baseline_options, make_baseline
from grounding.eval.predictions import write_moment_predictions

# keyword argument of the baseline classes -> its flag; a flag is passed only to methods that take it
OPTION_FLAGS: dict[str, str] = {
    "top_k": "--top-k",
    "seed": "--seed",
    "nms_threshold": "--nms",
    "grid_size": "--grid-size",
    "bandwidth": "--bandwidth",
    "iou_threshold": "--match-iou",
    "duration_bins": "--duration-bins",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "baseline",
        summary="predict moments with a blind baseline (no video, no sentence)",
        description=(
            "Predict moments for every query of --test without looking at the video or the sentence, and write "
            "them as Moment-DETR jsonl for `grounding evaluate`.\n"
            "  full-video      one window [0, duration], score 1\n"
            "  uniform-random  --top-k windows drawn uniformly in the video, seeded by --seed and the qid\n"
            "  moment-prior    the --top-k most frequent training moments (as fractions of the video, smoothed,\n"
            "                  after NMS), scaled to each test video; needs --train\n"
            "  iou-prior       like moment-prior, but a candidate scores the share of training moments it matches\n"
            "                  at IoU >= --match-iou (stronger when moment lengths vary); needs --train"
        ),
        example=(
            "grounding baseline --method moment-prior --train charades_sta_train.txt --test charades_sta_test.txt "
            "--durations Charades_v1_train.csv Charades_v1_test.csv --out prior.jsonl"
        ),
    )
    parser.add_argument("--method", required=True, choices=list(BASELINES), help="which baseline to run")
    parser.add_argument("--test", required=True, metavar="ANN", help="annotations of the split to predict")
    parser.add_argument("--train", metavar="ANN", help="training annotations (required by the two priors)")
    parser.add_argument(
        "--format",
        choices=ANNOTATION_FORMATS,
        help="annotation format of --train and --test (default: detected from each file's content)",
    )
    parser.add_argument(
        "--durations",
        action="extend",
        nargs="+",
        default=[],
        metavar="CSV",
        help="Charades_v1_*.csv files giving video lengths (charades-sta only); repeatable, the union serves "
        "both splits",
    )
    parser.add_argument("--out", required=True, metavar="PRED.jsonl", help="predictions file to write")
    parser.add_argument("--top-k", type=int, help="windows per query (uniform-random and the priors; default 10)")
    parser.add_argument("--seed", type=int, help="random seed (uniform-random; default 0)")
    parser.add_argument(
        "--nms", type=float, help="NMS IoU threshold over prior candidates (moment-prior 0.3, iou-prior 0.4)"
    )
    parser.add_argument(
        "--grid-size", type=int, help="candidate grid steps per video (moment-prior, iou-prior; default 50)"
    )
    parser.add_argument(
        "--bandwidth", type=float, help="smoothing std as a fraction of the video (moment-prior; default 0.08)"
    )
    parser.add_argument(
        "--match-iou", type=float, help="IoU at which a training moment counts as matched (iou-prior; default 0.7)"
    )
    parser.add_argument(
        "--duration-bins", type=int, help="one prior per video-length bin (moment-prior, iou-prior; default 1)"
    )
    parser.add_argument("--json", metavar="OUT.json", help="also write a JSON summary of the run here")
    return parser


def _read_split(path: str, format_name: str | None, durations: list[str]) -> AnnotationSet:
    """Read one split, giving it the duration CSVs only when it is a charades-sta file."""
    resolved = format_name or detect_format(path)
    return read_annotations(path, format=resolved, durations=durations if resolved == "charades-sta" else None)


def run(args: argparse.Namespace) -> int:
    accepted = baseline_options(args.method)
    options: dict[str, Any] = {}
    for option, flag in OPTION_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:
            continue
        if option in accepted:
            options[option] = value
        else:
            print(f"grounding baseline: note: {flag} is not used by {args.method}", file=sys.stderr)
    baseline = make_baseline(args.method, **options)

    learns = BASELINES[args.method].learns_from_training
    if learns and not args.train:
        raise InputError(f"--method {args.method} learns from training annotations; pass them with --train")
    if args.train and not learns:
        print(f"grounding baseline: note: --train is not used by {args.method}", file=sys.stderr)

    test_set = _read_split(args.test, args.format, args.durations)
    train_set = _read_split(args.train, args.format, args.durations) if learns else None
    if args.durations and "charades-sta" not in {test_set.format, train_set.format if train_set else None}:
        raise InputError(
            f"--durations is only used for charades-sta files; --test is {test_set.format}, which carries its "
            "own durations. Drop --durations."
        )
    if train_set is not None:
        baseline.fit(train_set.records)

    moments = {record.qid: baseline.predict(record) for record in test_set}
    write_moment_predictions(args.out, moments)

    print(f"baseline {args.method}: {len(moments)} queries of {args.test} -> {args.out}")
    if args.json:
        write_json_atomic(
            args.json,
            {
                "method": args.method,
                "baseline": repr(baseline),
                "test": args.test,
                "test_format": test_set.format,
                "num_queries": len(moments),
                "train": args.train if train_set is not None else None,
                "num_train_queries": len(train_set) if train_set is not None else None,
                "predictions": args.out,
            },
        )
    return 0
