"""Entry point of the ``grounding`` command.

Each command lives in its own module of this package with two functions:
``add_parser(subparsers) -> argparse.ArgumentParser`` registers its flags (every flag has ``help=`` and the
description ends with an example), and ``run(args) -> int`` does the work and returns the exit status.
``main`` only registers, parses and dispatches; it is also the place that turns a
:class:`~grounding.errors.GroundingError` into one line on stderr instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from grounding.errors import GroundingError
from grounding.version import __version__

# Order shown in `grounding --help`; the data's path, from files to results.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "synth",
    "extract",
    "features",
    "train",
    "ground",
    "predict",
    "fit-ranker",
    "index",
    "rank",
    "baseline",
    "evaluate",
    "bench",
    "app",
    "env",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grounding",
        description="Temporal moment grounding: read annotations, extract clip features, "
        "score predictions, run baselines.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"grounding {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"grounding.cli.{name.replace('-', '_')}")
        command_parser = module.add_parser(subparsers)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 1
    try:
        return int(run(args) or 0)
    except GroundingError as error:
        print(f"grounding {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grounding {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
