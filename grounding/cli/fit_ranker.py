"""``grounding fit-ranker``: make a grounding checkpoint rank videos (:mod:`grounding.ranking.fit`).

Trains the checkpoint's coarse-embedding heads on the training sentences against every training video (the
grounding model itself stays frozen, so grounding figures do not move), fits how stage 2 combines the stage-1
cosine with the pooled span score on held-out training videos, and saves the result as a new checkpoint for
``grounding index``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grounding.cli._common import add_annotation_options, add_command, write_json_atomic
from grounding.errors import InputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "fit-ranker", "fit a checkpoint for ranking videos (before 'grounding index')",
        "Train a checkpoint's retrieval embeddings (stage 1 of 'grounding rank') on the training sentences against\n"
        "every training video, with InfoNCE (or HN-NCE with --beta > 0); the rest of the model is frozen, so\n"
        "its grounding is unchanged. Then fit, on the sentences of held-out training videos, how the reranked\n"
        "score combines the stage-1 cosine with the pooled span score (a calibrated softmax over the top M).\n"
        "--relevant (multi-positive truth, as grounding synth writes it) keeps true matches out of the negatives.\n"
        "Writes a checkpoint folder to --out; build the index from it.",
        "grounding fit-ranker --checkpoint runs/rendered-world-1000-flow --features worlds/w1000/features-flow-05.h5 "
        "--annotations worlds/w1000/train.txt --durations worlds/w1000/durations.csv "
        "--relevant worlds/w1000/train.relevant.jsonl --out runs/rendered-world-1000-flow/ranker",
    )
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="checkpoint folder, or a run folder (its best/, else last/)")
    parser.add_argument("--features", required=True, metavar="FILE",
                        help="clip-feature file (HDF5) or folder of .npy/.pt files holding the training videos")
    parser.add_argument("--annotations", required=True, metavar="ANN",
                        help="the training annotations (never test ones: the fit learns from them)")
    add_annotation_options(parser)
    parser.add_argument("--relevant", default=None, metavar="FILE",
                        help="relevance file of --annotations (every video each sentence is true of)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the fitted checkpoint goes")
    parser.add_argument("--alpha", type=float, default=1.0, help="HN-NCE alpha in (0, 1] (default 1)")
    parser.add_argument("--beta", type=float, default=0.0,
                        help="HN-NCE beta >= 0: weights harder negatives up; 0 = InfoNCE (default 0)")
    parser.add_argument("--temperature", type=float, default=0.05, help="contrastive temperature (default 0.05)")
    parser.add_argument("--epochs", type=int, default=30,
                        help="passes over the training sentences (default 30; 0 keeps the heads of an already fitted "
                        "checkpoint and refits only the fusion and the calibration)")
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per step (default 128)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--rerank", type=int, default=20, metavar="M",
                        help="stage-2 depth the fusion is fitted at (default 20, grounding rank's default)")
    parser.add_argument("--calibration-fraction", type=float, default=0.1, metavar="F",
                        help="share of training videos held out to fit the fusion (default 0.1)")
    parser.add_argument("--own-video-only", action="store_true",
                        help="only a sentence's own video is its positive (other true videos are left out of the "
                        "loss); default: every video --relevant lists is a positive")
    parser.add_argument("--video-pooling", choices=("mean", "mean-max"), default="mean-max",
                        help="pooling of the video embedding: mean-max (default: mean and max over clips) or mean; "
                        "a change from the checkpoint's trains a new video projection")
    parser.add_argument("--video-features", action=argparse.BooleanOptionalAction, default=True,
                        help="also pool the input clip features into the video embedding (default: yes; "
                        "--no-video-features pools the clip states alone); a change from the checkpoint's trains "
                        "a new video projection")
    parser.add_argument("--embedding-dropout", type=float, default=0.5, metavar="P",
                        help="share of the pooled video vector dropped in each training step (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the batches (default 0)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the fit's report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from grounding.data.annotations import read_annotations
    from grounding.inference import Grounder
    from grounding.model import find_checkpoint
    from grounding.ranking.build import feature_source
    from grounding.ranking.fit import RankerFitSettings, fit_ranker, save_fitted

    settings = RankerFitSettings(
        alpha=args.alpha, beta=args.beta, temperature=args.temperature, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, calibration_fraction=args.calibration_fraction, rerank=args.rerank, multi_positive=not args.own_video_only,
        video_pooling=args.video_pooling, video_features=args.video_features,
        embedding_dropout=args.embedding_dropout, seed=args.seed,
    )
    settings.check()
    out = Path(args.out)
    checkpoint = find_checkpoint(args.checkpoint)
    if out.resolve() == checkpoint.resolve():
        raise InputError(f"--out {out}: is the checkpoint being fitted; write the fitted one to a new folder")
    annotations = read_annotations(args.annotations, format=args.format, durations=args.durations)
    records = list(annotations.records)
    relevant = None
    if args.relevant is not None:
        from grounding.eval.relevance import read_relevance

        truth = read_relevance(args.relevant, annotations)
        relevant = {qid: tuple(videos) for qid, videos in truth.videos.items()}
    durations = {record.video_id: record.duration for record in records}  # the reader took --durations into account
    source = feature_source(args.features, list(dict.fromkeys(record.video_id for record in records)), durations)
    torch.manual_seed(args.seed)
    grounder = Grounder.from_pretrained(checkpoint)
    report = fit_ranker(grounder, source, [(r.qid, r.video_id, r.sentence) for r in records], relevant, settings,
                        progress=not args.no_progress)
    save_fitted(grounder.model, out, report, str(checkpoint))
    figures = report.calibration
    print(f"fitted {out} in {report.seconds:.1f} s: heads on {report.train_queries} sentences x {report.videos} videos; "
          f"fusion {report.fusion['stage1_weight']:.3f} x cosine + {report.fusion['stage2_weight']:.3f} x pooled")
    print(f"held-out sentences ({report.calibration_queries}): VR@1 stage 1 {figures['stage1_vr1']:.1f}, "
          f"stage 2 alone {figures['stage2_vr1']:.1f}, fused {figures['fused_vr1']:.1f} (top {settings.rerank} of "
          f"stage 1 hold a right video for {figures['stage1_recall_at_rerank']:.1f} %)", file=sys.stderr)
    if args.json:
        write_json_atomic(args.json, {"checkpoint": str(out), **report.to_json()})
    return 0
