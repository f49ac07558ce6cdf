"""Small helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def add_command(subparsers: Any, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    """Register a sub-command whose ``--help`` ends with a worked example."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=f"{description}\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename, so a crash never leaves half a file."""
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, target)
