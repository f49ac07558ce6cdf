"""Make the checkpoint shipped in ``grounding/assets/rendered-world-flow`` and measure it, float32 against float16.

Every step is a ``grounding`` command, printed before it runs, and each resumes or is skipped when its output is
already there:

1. ``grounding synth`` renders the 1000-video world of ``--seed`` (1: a world the recipe was not tuned on);
2. ``grounding extract`` makes its 0.5-s coarse-flow features;
3. ``grounding train --config configs/rendered-world-1000-flow.yaml`` trains the recipe on it;
4. ``grounding fit-ranker`` (its defaults) fits the checkpoint for ranking;
5. the fitted weights are written in float16, with ``metadata.shipped`` saying what they are;
6. ``grounding predict --evaluate`` scores the float32 and the float16 checkpoints on ``test`` and
   ``test_novel``, and ``grounding baseline --method moment-prior`` the blind prior beside them.

    python benchmarks/shipped_model.py --work runs/shipped --out grounding/assets/rendered-world-flow --json shipped.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

RECIPE = "configs/rendered-world-1000-flow.yaml"
FEATURES = "features-flow-05.h5"
SPLITS = ("test", "test_novel")


def grounding(*args: str) -> list[str]:
    return [sys.executable, "-m", "grounding.cli.main", *args]


def run(command: list[str]) -> float:
    print("$ " + " ".join(["grounding", *command[3:]] if command[:3] == grounding()[:3] else command), flush=True)
    began = time.perf_counter()
    subprocess.run(command, check=True)
    return round(time.perf_counter() - began, 1)


def write_float16(source: Path, out: Path, seed: int, videos: int) -> None:
    """The fitted checkpoint's parameters in float16 (the input standardisations' statistics stay float32: they
    are few, and feature means need the precision), its config, and ``metadata.shipped``."""
    from grounding.model import GroundingModel

    model = GroundingModel.from_pretrained(source)
    for parameter in model.parameters():
        parameter.data = parameter.data.half()
    metadata = dict(model.pretrained_metadata)
    metadata["shipped"] = {
        "recipe": RECIPE, "world_seed": seed, "world_videos": videos, "dtype": "float16",
        "made_by": "benchmarks/shipped_model.py",
    }
    model.save_pretrained(out, metadata)


def scores(checkpoint: Path, world: Path, split: str, work: Path, name: str) -> dict[str, float]:
    target = work / f"{name}-{split}.json"
    run(grounding("predict", "--checkpoint", str(checkpoint), "--annotations", str(world / f"{split}.txt"),
                  "--durations", str(world / "durations.csv"), "--features", str(world / FEATURES),
                  "--out", str(work / f"{name}-{split}.jsonl"), "--evaluate", "--json", str(target), "--no-progress"))
    return json.loads(target.read_text())


def prior(world: Path, split: str, work: Path) -> dict[str, float]:
    target = work / f"prior-{split}.json"
    run(grounding("baseline", "--method", "moment-prior", "--train", str(world / "train.txt"),
                  "--test", str(world / f"{split}.txt"), "--durations", str(world / "durations.csv"),
                  "--out", str(work / f"prior-{split}.jsonl")))
    run(grounding("evaluate", "--annotations", str(world / f"{split}.txt"), "--durations", str(world / "durations.csv"),
                  "--predictions", str(work / f"prior-{split}.jsonl"), "--json", str(target)))
    return json.loads(target.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path, help="folder for the world, the run and the scores")
    parser.add_argument("--out", required=True, type=Path, help="where the float16 checkpoint goes")
    parser.add_argument("--seed", type=int, default=1, help="world seed (default 1)")
    parser.add_argument("--videos", type=int, default=1000, help="videos in the world (default 1000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    work, world = args.work, args.work / f"world-seed-{args.seed}"
    run_dir, fitted = work / "run", work / "run" / "ranker"
    seconds: dict[str, float] = {}
    work.mkdir(parents=True, exist_ok=True)
    manifest = world / "manifest.json"
    if not (manifest.is_file() and json.loads(manifest.read_text()).get("complete")):  # a finished world of any version
        seconds["synth"] = run(grounding("synth", "--out", str(world), "--videos", str(args.videos), "--seed", str(args.seed)))
    seconds["extract"] = run(grounding("extract", str(world / "videos"), "--out", str(world / FEATURES), "--backbone",
                                       "efficientnet-lite0-motion-flow", "--size", "160", "--clip-seconds", "0.5"))
    if not (run_dir / "best" / "model.safetensors").is_file():
        seconds["train"] = run(grounding("train", "--config", RECIPE, f"data.root={world}", "--output-dir", str(run_dir),
                                         *(["--resume"] if (run_dir / "last").is_dir() else [])))
    if not (fitted / "model.safetensors").is_file():
        seconds["fit_ranker"] = run(grounding(
            "fit-ranker", "--checkpoint", str(run_dir), "--features", str(world / FEATURES), "--annotations",
            str(world / "train.txt"), "--durations", str(world / "durations.csv"), "--relevant",
            str(world / "train.relevant.jsonl"), "--out", str(fitted), "--no-progress"))
    write_float16(fitted, args.out, args.seed, args.videos)
    figures: dict[str, Any] = {"seconds": seconds, "bytes": (args.out / "model.safetensors").stat().st_size}
    for split in SPLITS:
        figures[split] = {"float32": scores(fitted, world, split, work, "float32"),
                          "float16": scores(args.out, world, split, work, "float16"),
                          "moment_prior": prior(world, split, work)}
    for split in SPLITS:
        row = figures[split]
        print(f"{split}: R1@0.5 float32 {row['float32']['R1@0.5']:.2f}, float16 {row['float16']['R1@0.5']:.2f}, "
              f"moment prior {row['moment_prior']['R1@0.5']:.2f}; R1@0.7 {row['float32']['R1@0.7']:.2f} / "
              f"{row['float16']['R1@0.7']:.2f}")
    print(f"float16 weights: {figures['bytes'] / 2**20:.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
