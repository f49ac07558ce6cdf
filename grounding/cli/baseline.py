"""`grounding baseline` (being written; replaced by its owner before any commit)."""
import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    return subparsers.add_parser("baseline", help="(in progress)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("grounding baseline: not written yet")
