"""``grounding train``: train a grounding model from a YAML config, with ``key.sub=value`` overrides.

Writes the run folder (``train.output_dir`` or ``--output-dir``): config.yaml, log.csv, metrics/epoch_NNN.json,
last/ and best/ checkpoints (see :mod:`grounding.training.loop`). ``--resume`` continues a stopped run from
last/ and reaches the same result as an uninterrupted run. Under ``torchrun`` each process trains on its share
of every batch (DistributedDataParallel); rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from grounding.cli._common import add_command


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "train", "train a grounding model from a YAML config",
        "Train on clip features and annotations described by a YAML config (configs/*.yaml). Override any key\n"
        "as KEY=VALUE after the flags (values are YAML: train.lr=3e-4 data.val=null\n"
        "model.span.pooling_counts=[15,8]); an unknown key names the closest known one.\n"
        "Multi-GPU: torchrun --nproc-per-node 4 -m grounding.cli.main train --config ...",
        "grounding train --config configs/rendered-world.yaml train.epochs=20 --output-dir runs/w300",
    )
    parser.add_argument("--config", default=None, metavar="CFG.yaml",
                        help="experiment config (default: the built-in rendered-world settings)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides such as train.lr=3e-4 or data.root=worlds/w300")
    parser.add_argument("--output-dir", default=None, metavar="DIR",
                        help="run folder (overrides train.output_dir)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder from its last/ checkpoint")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML and exit without training")
    parser.add_argument("--json", action="store_true", help="print a JSON summary of the run on stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    from grounding.training.config import config_to_yaml, load_config  # torch is imported only when run
    from grounding.training.loop import train

    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"train.output_dir={json.dumps(args.output_dir)}")
    config = load_config(args.config, overrides)
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    result = train(config, resume=args.resume)
    if result.rank != 0:  # under torchrun, rank 0 reports for everyone
        return 0
    summary = {
        "run_dir": str(result.run_dir),
        "epochs_done": result.epochs_done,
        "stopped_early": result.stopped_early,
        "best_metric": config.train.best_metric,
        "best_split": config.train.best_split,
        "best_value": result.best_value,
        "best_epoch": result.best_epoch,
        "metrics": result.metrics,
        "skipped_queries": len(result.skipped),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    metric = config.train.best_metric
    state = "stopped (resume with --resume)" if result.stopped_early else "finished"
    print(f"{state} after epoch {result.epochs_done}: {result.run_dir}")
    for split, metrics in result.metrics.items():
        shown = [key for key in ("R1@0.5", "R1@0.7", "R5@0.5", "mIoU") if key in metrics]
        figures = ", ".join(f"{key} {metrics[key]:.2f}" for key in shown)
        print(f"  {split}: {figures}")
    if result.best_epoch is not None:
        print(f"  best: {config.train.best_split} {metric} {result.best_value:.2f} at epoch {result.best_epoch} "
              f"-> {result.run_dir / 'best'}")
    return 0
