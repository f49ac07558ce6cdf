"""Small helpers shared by the command modules.

``write_json_atomic`` is :func:`grounding.files.write_json_atomic` (every output of the package is written
through :mod:`grounding.files`), re-exported here for the command modules that import it from this one.
"""

from __future__ import annotations

import argparse
from typing import Any

from grounding.data.annotation_fields import ANNOTATION_FORMATS
from grounding.files import write_json_atomic

__all__ = ["add_annotation_options", "add_command", "write_json_atomic"]


def add_command(subparsers: Any, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    """Register a sub-command whose ``--help`` ends with a worked example."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=f"{description}\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )


def add_annotation_options(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--durations``, as every command that reads one annotation file takes them."""
    parser.add_argument("--format", choices=ANNOTATION_FORMATS, default=None,
                        help="annotation format; detected from the content when left out")
    parser.add_argument("--durations", action="extend", nargs="+", default=None, metavar="CSV",
                        help="Charades_v1_*.csv giving video lengths (needed for charades-sta; repeatable)")
