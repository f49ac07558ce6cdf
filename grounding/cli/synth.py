"""`grounding synth` (being written; replaced by its owner before any commit)."""
import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    return subparsers.add_parser("synth", help="(in progress)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("grounding synth: not written yet")
