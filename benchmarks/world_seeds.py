"""A rendered-world recipe on several worlds: render, extract, train and score one world per seed; print the mean
and the range.

One world is one draw: a recipe chosen on seed 0's ``val`` split scores a few points higher on seed 0's test splits
than on a world it never saw. This script gives the figure to report: for each seed, ``grounding synth`` renders
a world, ``grounding extract`` makes its features with the recipe's backbone, ``grounding train`` trains the
recipe (unchanged but for ``data.root`` and the output folder) and the test splits are scored for the best-val
checkpoint (``best/``), beside the blind moment prior fitted on that world. Every step resumes: rerunning after a
kill only does what is left (synth and extract resume their folders, a finished run is read back, an interrupted
one continues from ``last/``).

    python benchmarks/world_seeds.py --config configs/rendered-world-1000-flow.yaml --seeds 1 2 3 \\
        --videos 1000 --backbone efficientnet-lite0-motion-flow --size 160 --clip-seconds 0.5 \\
        --out runs/world-seeds --json world-seeds.json

``--dry-run`` prints the commands without running them. Overrides after ``--`` go to every training run. In the
JSON, ``world_seconds`` is what this call spent rendering and extracting (less than a whole world's cost when it
resumed one); ``train_seconds`` sums the run's epoch times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablate_world import grounding_command, prior_metrics, read_run, resolved_config, train_variant  # noqa: E402

METRICS = ("R1@0.5", "R1@0.7")


def world_commands(world: Path, seed: int, args: argparse.Namespace, features: str) -> list[list[str]]:
    """The synth and extract commands that make one seed's world and its features."""
    extract = [*grounding_command(), "extract", str(world / "videos"), "--out", str(world / features),
               "--backbone", args.backbone, "--size", str(args.size), "--clip-seconds", str(args.clip_seconds)]
    return [[*grounding_command(), "synth", "--out", str(world), "--videos", str(args.videos), "--seed", str(seed)],
            extract]


def summarize(per_seed: dict[int, dict[str, dict[str, float]]], splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{split: {metric: {"mean", "min", "max", "values"}}}`` over the seeds, rounded to 2 decimals."""
    summary: dict[str, dict[str, Any]] = {}
    for split in splits:
        summary[split] = {}
        for metric in METRICS:
            values = [per_seed[seed][split][metric] for seed in sorted(per_seed)]
            summary[split][metric] = {"mean": round(statistics.fmean(values), 2), "min": min(values),
                                      "max": max(values), "values": values}
    return summary


def format_table(rows: dict[int, dict[str, Any]], summary: dict[str, dict[str, Any]], splits: Sequence[str]) -> str:
    """A Markdown table: one row per seed (model, then prior), then the mean and range of the model's rows."""
    header = ["seed"] + [f"{split} {metric}" for split in splits for metric in METRICS]
    lines = ["| " + " | ".join(header + ["best epoch", "prior " + ", ".join(f"{s} R1@0.5" for s in splits),
                                         "train min"]) + " |", "|" + "---|" * (len(header) + 3)]
    for seed, row in rows.items():
        figures = " | ".join(f"{row['best'][s][m]:.2f}" for s in splits for m in METRICS)
        prior = ", ".join(f"{row['prior'][s]['R1@0.5']:.2f}" for s in splits)
        lines.append(f"| {seed} | {figures} | {row['best_epoch']} | {prior} | {row['train_seconds'] / 60:.1f} |")
    mean = " | ".join(
        f"{summary[s][m]['mean']:.2f} ({summary[s][m]['min']:.2f}-{summary[s][m]['max']:.2f})"
        for s in splits for m in METRICS
    )
    lines.append(f"| mean (range) | {mean} | | | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the recipe's experiment YAML")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="world seeds (0 is the tuning world)")
    parser.add_argument("--videos", type=int, default=1000, help="videos per world (default 1000)")
    parser.add_argument("--backbone", default="efficientnet-lite0-motion-flow", help="grounding extract --backbone")
    parser.add_argument("--size", type=int, default=160, help="grounding extract --size")
    parser.add_argument("--clip-seconds", type=float, default=0.5, help="grounding extract --clip-seconds")
    parser.add_argument("--out", type=Path, required=True, help="folder for the worlds and runs")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for every training run (after --)")
    args = parser.parse_args(argv)

    rows: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        world = args.out / "worlds" / f"seed-{seed}"
        overrides = [*args.overrides, f"data.root={world}"]
        resolved = resolved_config(args.config, overrides)
        data = resolved["data"]
        splits = {"test": str(world / data["test"])} if data.get("test") else {}
        splits.update({name: str(world / path) for name, path in (data.get("extra_eval") or {}).items()})
        run_dir = args.out / "runs" / f"seed-{seed}"
        commands = world_commands(world, seed, args, data["features"])
        print(f"== seed {seed}", flush=True)
        for command in commands:
            print("  " + " ".join(command[2:]), flush=True)
        print(f"  train --config {args.config} {' '.join(overrides)} --output-dir {run_dir}", flush=True)
        if args.dry_run:
            continue
        started = time.perf_counter()
        for command in commands:
            subprocess.run(command, check=True)
        world_seconds = time.perf_counter() - started
        train_variant(args.config, run_dir, overrides, int(resolved["train"]["epochs"]))
        with tempfile.TemporaryDirectory() as work:
            prior = prior_metrics(resolved, splits, Path(work))
        rows[seed] = {"world": str(world), "world_seconds": world_seconds, "prior": prior, **read_run(run_dir)}
    if args.dry_run or not rows:
        return 0
    split_names = list(next(iter(rows.values()))["best"])
    split_names = [name for name in split_names if name != "val"]
    summary = summarize({seed: row["best"] for seed, row in rows.items()}, split_names)
    print()
    print(format_table(rows, summary, split_names))
    if args.json:
        payload = {"config": str(args.config), "seeds": args.seeds, "videos": args.videos, "overrides": args.overrides,
                   "summary": summary, "runs": {str(seed): row for seed, row in rows.items()},
                   "load_average": os.getloadavg()}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
