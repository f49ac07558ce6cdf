"""The flags every command that reads a checkpoint shares: which checkpoint, how many spans, which NMS."""

from __future__ import annotations

import argparse

from grounding.errors import InputError

USE_CHECKPOINT_NMS = "default"  # Grounder.predict's marker for "the NMS the checkpoint was trained with"


def add_checkpoint_flags(parser: argparse.ArgumentParser, top_k: int, top_k_help: str) -> None:
    """``--checkpoint DIR``, ``--top-k K``, ``--nms IOU``, ``--no-nms`` and ``--device DEV``."""
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="checkpoint folder, or a run folder (its best/, else last/)")
    parser.add_argument("--top-k", type=int, default=top_k, metavar="K", help=f"{top_k_help} (default {top_k})")
    parser.add_argument("--nms", type=float, default=None, metavar="IOU",
                        help="NMS IoU threshold (default: the one the model was trained with)")
    parser.add_argument("--no-nms", action="store_true", help="keep overlapping spans")
    parser.add_argument("--device", default="cpu", metavar="DEV", help="torch device (default cpu)")


def chosen_nms(args: argparse.Namespace) -> float | None | str:
    """The NMS the flags ask for: a threshold, None (``--no-nms``) or :data:`USE_CHECKPOINT_NMS`.

    Raises:
        InputError: ``--top-k`` below 1, ``--nms`` outside [0, 1], or ``--nms`` with ``--no-nms``.
    """
    if args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    if args.nms is not None and args.no_nms:
        raise InputError("--nms and --no-nms contradict each other; pass one")
    if args.nms is not None and not 0.0 <= args.nms <= 1.0:
        raise InputError(f"--nms must be an IoU in [0, 1], got {args.nms}")
    if args.no_nms:
        return None
    return USE_CHECKPOINT_NMS if args.nms is None else args.nms
