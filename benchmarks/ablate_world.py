"""Train the grounding model and its ablations on a rendered world; print one table with the blind prior beside.

Each variant is one ``grounding train`` run with a few config overrides (the full model first), into
``OUT/<variant>``; a finished run is read back, not retrained, and an interrupted one is resumed, so rerunning the
same command after a kill only does what is left. For every run the table gives the evaluation splits' R1@0.5 and
R1@0.7 at the epoch with the best validation R1@0.5 (what ``best/`` holds), the last epoch's, and the training
wall time. The moment prior (``grounding baseline --method moment-prior``, fitted on the world's train.txt) is the
row every variant has to beat.

    python benchmarks/ablate_world.py --config configs/rendered-world.yaml --out runs/ablation \\
        [--variants full no-video-graph ...] [--json ablation.json] [-- KEY=VALUE ...]

Overrides after ``--`` go to every run (e.g. ``-- data.root=worlds/w1000 train.epochs=20``).

The variants (the ablations of VLG-Net's paper, Table 4, in our config keys):

======================  =============================================================================
full                    the model as configured
no-video-graph          ``model.video_graph.num_layers=0``: no GCNeXt blocks over the clips
no-semantic-edges       ``model.video_graph.knn_k=1`` (each clip's only semantic neighbour is itself) and
                        ``model.matching.use_semantic_edges=false``
no-matching             ``model.matching.use_matching_edges=false``: clips and words never exchange messages
                        before the span head
no-language-graph       ``model.text.num_syntactic_layers=0``: word features only projected
no-boundary             ``model.loss.boundary_weight=0`` and ``model.span.use_boundary_score=false``: no
                        boundary loss, spans ranked by the span classifier alone
======================  =============================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from grounding.training.checkpoint import load_training_state

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no-video-graph": ["model.video_graph.num_layers=0"],
    "no-semantic-edges": ["model.video_graph.knn_k=1", "model.matching.use_semantic_edges=false"],
    "no-matching": ["model.matching.use_matching_edges=false"],
    "no-language-graph": ["model.text.num_syntactic_layers=0"],
    "no-boundary": ["model.loss.boundary_weight=0", "model.span.use_boundary_score=false"],
}
METRICS = ("R1@0.5", "R1@0.7")


def grounding_command() -> list[str]:
    """The ``grounding`` CLI of this interpreter's environment."""
    return [sys.executable, "-m", "grounding.cli.main"]


def train_command(config: Path, run_dir: Path, overrides: list[str], resume: bool) -> list[str]:
    return [*grounding_command(), "train", "--config", str(config), *overrides, "--output-dir", str(run_dir),
            *(["--resume"] if resume else [])]


def run_finished(run_dir: Path, epochs: int) -> bool:
    """True when the run's last checkpoint is at its final epoch."""
    last = run_dir / "last"
    return (last / "training_state.json").is_file() and int(load_training_state(last)["epoch"]) >= epochs


def resolved_config(config: Path, overrides: list[str]) -> dict[str, Any]:
    """The experiment config after overrides, as ``grounding train --print-config`` resolves it."""
    printed = subprocess.run([*grounding_command(), "train", "--config", str(config), *overrides, "--print-config"],
                             check=True, capture_output=True, text=True)
    return yaml.safe_load(printed.stdout)


def train_variant(config: Path, run_dir: Path, overrides: list[str], epochs: int) -> float:
    """Train (or resume, or skip) one variant; returns the wall seconds this call spent training."""
    if run_finished(run_dir, epochs):
        return 0.0
    resume = (run_dir / "last").is_dir() or (run_dir / "last.old").is_dir()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # a run killed before its first checkpoint: start it again
    started = time.perf_counter()
    subprocess.run(train_command(config, run_dir, overrides, resume), check=True)
    return time.perf_counter() - started


def read_run(run_dir: Path) -> dict[str, Any]:
    """Best-validation-epoch and last-epoch metrics of a finished run, and its summed epoch times."""
    best = json.loads((run_dir / "best" / "metrics.json").read_text())
    epochs = sorted((run_dir / "metrics").glob("epoch_*.json"))
    records = [json.loads(path.read_text()) for path in epochs]
    return {
        "best_epoch": best["epoch"],
        "best": best["metrics"],
        "last_epoch": records[-1]["epoch"],
        "last": records[-1]["metrics"],
        "train_seconds": sum(float(record["seconds"]) for record in records),
    }


def prior_metrics(resolved: dict[str, Any], splits: dict[str, str], work: Path) -> dict[str, dict[str, float]]:
    """The moment prior's metrics on each evaluation split (fitted on the world's train annotations)."""
    data = resolved["data"]
    root = Path(data["root"])
    durations = [str(root / path) for path in data["durations"]]
    results = {}
    for split, annotations in splits.items():
        predictions, scores = work / f"prior-{split}.jsonl", work / f"prior-{split}.json"
        subprocess.run([*grounding_command(), "baseline", "--method", "moment-prior", "--train",
                        str(root / data["train"]), "--test", annotations, "--durations", *durations,
                        "--out", str(predictions)], check=True, capture_output=True)
        subprocess.run([*grounding_command(), "evaluate", "--annotations", annotations, "--durations", *durations,
                        "--predictions", str(predictions), "--json", str(scores)], check=True, capture_output=True)
        results[split] = json.loads(scores.read_text())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/rendered-world.yaml"), help="experiment YAML")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs (one subfolder per variant)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which variants to run (default: all, full model first)")
    parser.add_argument("--json", type=Path, help="also write the table's numbers as JSON")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for every run (after --)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    resolved = resolved_config(args.config, args.overrides)
    data = resolved["data"]
    root = Path(data["root"])
    splits = {"test": str(root / data["test"])} if data.get("test") else {}
    splits.update({name: str(root / path) for name, path in (data.get("extra_eval") or {}).items()})
    epochs = int(resolved["train"]["epochs"])

    rows: dict[str, dict[str, Any]] = {}
    for variant in args.variants:
        overrides = [*args.overrides, *VARIANTS[variant]]
        run_dir = args.out / variant
        print(f"== {variant}: {' '.join(train_command(args.config, run_dir, overrides, False)[2:])}", flush=True)
        train_variant(args.config, run_dir, overrides, epochs)
        rows[variant] = {"overrides": overrides, **read_run(run_dir)}
    with tempfile.TemporaryDirectory() as work:
        prior = prior_metrics(resolved, splits, Path(work))

    header = ["run"] + [f"{split} {metric}" for split in splits for metric in METRICS]
    print()
    print("| " + " | ".join(header + ["best epoch", "last epoch: " + ", ".join(f"{s} R1@0.5" for s in splits),
                                      "train min"]) + " |")
    print("|" + "---|" * (len(header) + 3))
    print("| moment prior | " + " | ".join(f"{prior[s][m]:.2f}" for s in splits for m in METRICS) + " | | | |")
    for variant, row in rows.items():
        best = " | ".join(f"{row['best'][s][m]:.2f}" for s in splits for m in METRICS)
        last = ", ".join(f"{row['last'][s]['R1@0.5']:.2f}" for s in splits)
        print(f"| {variant} | {best} | {row['best_epoch']} | {last} | {row['train_seconds'] / 60:.1f} |")
    if args.json:
        payload = {"config": str(args.config), "overrides": args.overrides, "prior": prior, "runs": rows,
                   "load_average": os.getloadavg()}
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
