"""Small helpers shared by the command modules.

``write_json_atomic`` is :func:`grounding.files.write_json_atomic` (every output of the package is written
through :mod:`grounding.files`), re-exported here for the command modules that import it from this one.
"""

from __future__ import annotations

import argparse
from typing import Any

from grounding.files import write_json_atomic

__all__ = ["add_command", "write_json_atomic"]


def add_command(subparsers: Any, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    """Register a sub-command whose ``--help`` ends with a worked example."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=f"{description}\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
