"""Check the CUDA paths of training and inference on a GPU, and time the model there.

One prepared command for a session that has a GPU (figures go to docs/model.md, "On a GPU", with the card named)::

    python benchmarks/gpu_check.py --json gpu_check.json

It runs three parts and prints one line per check, then the timing table:

1. **CUDA against CPU.** The TACoS preset (256 clips, 4096-d, hidden 512) from the same weights and inputs on
   both devices, float32 with TF32 off: the span scores must agree to 1e-4 and every parameter's gradient of one
   loss to 1e-3 of its norm. Under bf16 autocast the largest score difference is reported, not checked.
2. **Training paths.** ``grounding train`` on a small generated world (random clip features with one raised
   event per video, GloVe-format word vectors written beside them; no download) with ``train.amp`` none, bf16
   and fp16 (gradient scaler), and under ``torchrun --nproc-per-node 1`` (DistributedDataParallel over NCCL).
   Each must finish with finite losses that fall from the first epoch to the last and reach R1@0.5 >= 80 on the
   world's held-out videos (float32 on the CPU reaches 100); the one-process DDP run must
   follow the plain float32 run's losses to 1e-3 and end on weights within 1e-3 of it (DDP's gradient hooks and CUDA's atomic
   additions reorder sums); the fp16 run must have kept a finite loss scale.
3. **Timing.** Every preset of ``benchmarks/bench_model.py`` (random inputs of the real shapes, 10-word
   queries): inference ms per query at batch 1 and 32 and one training step (AdamW) at its batch, plus TACoS's
   at batch 32, each in float32 and under bf16 autocast, with the peak GPU memory of each measurement.

The exit status is 0 when every check passed. ``--device cpu --quick`` runs the same code on the CPU (gloo,
``train.amp`` ignored, part 1 skipped) at toy sizes: that is how the script itself is tested without a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
# the package from this checkout even where it is not installed (a GPU machine gets a bare copy of the tree)
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "benchmarks")]
from bench_model import CONFIGS, batch_size_of, random_inputs, time_in_process  # noqa: E402

from grounding.training.checkpoint import load_training_state  # noqa: E402

ACTIONS = ("jumps", "spins", "falls", "grows")
OBJECTS = ("ball", "box", "cup", "star")
VOCABULARY = ("the", *ACTIONS, *OBJECTS)


# --- part 1: CUDA against CPU -----------------------------------------------------------------------------------
def compare_devices(preset: str, batch_size: int = 2) -> dict[str, Any]:
    """Scores and gradients of one model on the CPU and on CUDA, from the same weights and inputs."""
    from grounding.model import GroundingConfig, GroundingModel, compute_loss

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = GroundingConfig.preset(preset)
    torch.manual_seed(0)
    model = GroundingModel(config)
    inputs = random_inputs(config, batch_size, generator=torch.Generator().manual_seed(1))
    durations = torch.full((batch_size,), 30.0)
    targets = torch.tensor([[3.0, 9.0], [12.5, 20.0]])[:batch_size]

    def run(device: str, autocast: torch.dtype | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        moved = model.to(device).train()
        moved.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            output = moved(*(tensor.to(device) for tensor in inputs))
            loss, _ = compute_loss(output, targets.to(device), durations.to(device), config.loss)
        loss.backward()
        grads = {name: param.grad.detach().float().cpu() for name, param in moved.named_parameters()
                 if param.grad is not None}
        return output.span_scores.detach().float().cpu(), grads

    cpu_scores, cpu_grads = run("cpu")
    cuda_scores, cuda_grads = run("cuda")
    bf16_scores, _ = run("cuda", torch.bfloat16)
    model.to("cpu")
    worst_name, worst_gap = "", 0.0
    for name, grad in cpu_grads.items():
        gap = float((cuda_grads[name] - grad).norm() / grad.norm().clamp_min(1e-12))
        if gap > worst_gap:
            worst_name, worst_gap = name, gap
    score_gap = float((cuda_scores - cpu_scores).abs().max())
    return {
        "preset": preset,
        "max_score_difference": score_gap,
        "max_relative_gradient_difference": worst_gap,
        "worst_gradient": worst_name,
        "bf16_max_score_difference": float((bf16_scores - cpu_scores).abs().max()),
        "passed": score_gap <= 1e-4 and worst_gap <= 1e-3 and set(cuda_grads) == set(cpu_grads),
    }


# --- part 2: training paths -------------------------------------------------------------------------------------
def write_world(folder: Path, num_videos: int, num_test: int, num_clips: int, feature_dim: int, seed: int = 0) -> None:
    """Clip features where one (action, object) event raises two feature channels for 1/8 to 1/3 of each video;
    one sentence per video names the event. GloVe-format vectors for the sentences' words go to glove.txt."""
    rng = np.random.default_rng(seed)
    with open(folder / "glove.txt", "w", encoding="utf-8") as handle:
        for word in VOCABULARY:
            handle.write(word + " " + " ".join(f"{value:.5f}" for value in rng.normal(size=16)) + "\n")
    splits: dict[str, list[str]] = {"train": [], "test": []}
    with h5py.File(folder / "features.h5", "w") as features:
        features.attrs.update({"backbone": "gpu-check-random", "clip_seconds": 1.0, "frames_per_clip": 1,
                               "size": 32, "resize": "squash"})
        for index in range(num_videos):
            action, thing = int(rng.integers(len(ACTIONS))), int(rng.integers(len(OBJECTS)))
            clips = (0.1 * rng.normal(size=(num_clips, feature_dim))).astype(np.float32)
            length = int(rng.integers(num_clips // 8, num_clips // 3 + 1))
            start = int(rng.integers(0, num_clips - length + 1))
            end = start + length
            clips[start:end, action] += 1.0
            clips[start:end, len(ACTIONS) + thing] += 1.0
            video = f"video{index:04d}"
            features.create_dataset(video, data=clips).attrs["duration"] = float(num_clips)
            row = {"qid": index, "query": f"the {OBJECTS[thing]} {ACTIONS[action]}", "vid": video,
                   "duration": float(num_clips), "relevant_windows": [[float(start), float(end)]]}
            splits["train" if index >= num_test else "test"].append(json.dumps(row))
    for split, rows in splits.items():
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


def world_config(folder: Path, num_clips: int, feature_dim: int, device: str, epochs: int) -> dict[str, Any]:
    return {
        "model": {
            "input_dim": feature_dim, "num_clips": num_clips, "hidden_size": 64,
            "text": {"input_dim": 16},
            "span": {"pooling_counts": [num_clips - 1] if num_clips <= 16 else [15, 8]},
        },
        "data": {
            "root": str(folder), "train": "train.jsonl", "val": None, "val_fraction": 0.2, "test": "test.jsonl",
            "extra_eval": {},
            "format": "moment-detr", "durations": [], "features": "features.h5",
            "text_encoder": f"glove:{folder / 'glove.txt'}", "syntax": "sequential",
        },
        "train": {"epochs": epochs, "batch_size": 16, "eval_batch_size": 64, "lr": 1e-3, "progress": False,
                  "device": device},
    }


def train_run(config: Path, run_dir: Path, overrides: list[str], processes: int | None) -> dict[str, Any]:
    """``grounding train`` in a subprocess (under torchrun when ``processes`` is given); its losses and time."""
    launcher = [] if processes is None else ["-m", "torch.distributed.run", "--standalone",
                                            f"--nproc-per-node={processes}"]
    command = [sys.executable, *launcher, "-m", "grounding.cli.main", "train", "--config", str(config),
               "--output-dir", str(run_dir), *overrides]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {"command": " ".join(command[1:]), "seconds": seconds, "returncode": completed.returncode}
    if completed.returncode != 0:
        result["stderr"] = completed.stderr[-3000:]
        return result
    with open(run_dir / "log.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    result["losses"] = [float(row["loss_total"]) for row in rows]
    result["test_R1@0.5"] = float(rows[-1]["test/R1@0.5"])
    result["notes"] = [line for line in completed.stderr.splitlines() if line.startswith("grounding train:")]
    scale = load_training_state(run_dir / "last")["scaler"].get("scale")  # {} while the scaler is off
    result["loss_scale"] = None if scale is None else float(scale)
    return result


def check_training(device: str, quick: bool, work: Path) -> dict[str, Any]:
    # 400 videos, 20 epochs: ~400 steps, after which float32 training on the CPU reaches 100 R1@0.5 on the 80
    # held-out videos (the loss plateaus for the first ~6 epochs, while every candidate is pushed down)
    num_clips, feature_dim = (16, 16) if quick else (32, 256)
    num_videos, epochs = (48, 3) if quick else (400, 20)
    write_world(work, num_videos=num_videos, num_test=num_videos // 5, num_clips=num_clips, feature_dim=feature_dim)
    config = work / "world.yaml"
    config.write_text(yaml.safe_dump(world_config(work, num_clips, feature_dim, device, epochs)), encoding="utf-8")
    runs = {
        "fp32": train_run(config, work / "fp32", ["train.amp=none"], None),
        "bf16": train_run(config, work / "bf16", ["train.amp=bf16"], None),
        "fp16": train_run(config, work / "fp16", ["train.amp=fp16"], None),
        "ddp1": train_run(config, work / "ddp1", ["train.amp=none"], 1),
    }
    checks: dict[str, bool] = {}
    for name, run in runs.items():
        losses = run.get("losses", [])
        checks[f"{name} finished, finite losses falling"] = (
            run["returncode"] == 0 and all(math.isfinite(value) for value in losses) and losses[-1] < losses[0]
        )
        if not quick:
            checks[f"{name} learned the world (test R1@0.5 >= 80)"] = run.get("test_R1@0.5", 0.0) >= 80.0
    if runs["ddp1"]["returncode"] == 0 and runs["fp32"]["returncode"] == 0:
        checks["ddp1 went through DistributedDataParallel"] = any(
            "DistributedDataParallel over 1 process" in note for note in runs["ddp1"]["notes"])
        plain, ddp = runs["fp32"]["losses"], runs["ddp1"]["losses"]
        checks["ddp1 losses follow fp32 to 1e-3"] = len(plain) == len(ddp) and all(
            abs(a - b) <= 1e-3 * abs(a) for a, b in zip(plain, ddp))
        ours, reference = load_file(work / "ddp1" / "last" / "model.safetensors"), load_file(
            work / "fp32" / "last" / "model.safetensors")
        gap = max(float((ours[name] - reference[name]).abs().max()) for name in reference)
        runs["ddp1"]["max_weight_difference_to_fp32"] = gap
        checks["ddp1 weights within 1e-3 of fp32"] = gap <= 1e-3
    if device != "cpu" and runs["fp16"]["returncode"] == 0:
        scale = runs["fp16"]["loss_scale"]
        checks["fp16 kept a finite loss scale"] = scale is not None and math.isfinite(scale) and scale > 0
    return {"world": {"videos": num_videos, "clips": num_clips, "feature_dim": feature_dim, "epochs": epochs},
            "runs": runs, "checks": checks, "passed": all(checks.values())}


# --- part 3: timing -------------------------------------------------------------------------------------------------
def time_presets(device: str, quick: bool) -> list[dict[str, Any]]:
    rows = []
    presets = ["charades-sta"] if quick else [item.preset for item in CONFIGS]
    amps = ["none"] if device == "cpu" else ["none", "bf16"]
    for preset in presets:
        plan = [(measurement, batch_size_of(preset, measurement)) for measurement in ("infer-1", "infer-32", "train")]
        if preset == "tacos" and not quick:
            plan.append(("train", 32))
        for amp in amps:
            for measurement, batch_size in plan:
                repeats = 2 if quick else (10 if measurement == "train" else 30)
                figures = time_in_process(preset, measurement, batch_size, device=device, amp=amp, repeats=repeats)
                rows.append({"preset": preset, "measurement": measurement, "amp": amp, **figures})
                print(f"  {preset} {measurement} b{batch_size} amp={amp}: {figures['median_s'] * 1000:.2f} ms"
                      + (f", peak {figures['peak_cuda_gb']:.2f} GB" if figures["peak_cuda_gb"] is not None else ""),
                      flush=True)
    return rows


def timing_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| config | amp | batch 1 ms/query | batch 32 ms/query | train step | peak GPU memory GB (infer b32 / train) |",
             "| --- | --- | --- | --- | --- | --- |"]
    labels = {item.preset: item.label for item in CONFIGS}
    keys = sorted({(row["preset"], row["amp"]) for row in rows}, key=lambda key: ([item.preset for item in CONFIGS].index(key[0]), key[1]))
    for preset, amp in keys:
        mine = [row for row in rows if row["preset"] == preset and row["amp"] == amp]
        one = next(row for row in mine if row["measurement"] == "infer-1")
        many = next(row for row in mine if row["measurement"] == "infer-32")
        trains = [row for row in mine if row["measurement"] == "train"]
        steps = ", ".join(f"{row['median_s'] * 1000:.1f} ms at b{row['batch_size']}" for row in trains)
        memory = " / ".join(f"{row['peak_cuda_gb']:.2f}" if row["peak_cuda_gb"] is not None else "-"
                            for row in [many, *trains])
        lines.append(f"| {labels[preset]} | {amp} | {one['ms_per_query']:.2f} | {many['ms_per_query']:.3f} | {steps} | {memory} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cuda (default); cpu runs the same code paths without a GPU, for testing the script")
    parser.add_argument("--quick", action="store_true", help="toy sizes (how the tests run it)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    parser.add_argument("--skip", nargs="*", default=[], choices=("devices", "training", "timing"),
                        help="parts to leave out")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("torch sees no CUDA device here; run on a GPU machine, or pass --device cpu to test the script")

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
    }
    print(f"device: {report['device']}; torch {report['torch']}, CUDA {report['cuda']}", flush=True)
    passed = True
    if args.device == "cuda" and "devices" not in args.skip:
        comparison = compare_devices("charades-sta" if args.quick else "tacos")
        report["cuda_against_cpu"] = comparison
        passed &= comparison["passed"]
        print(f"[{'ok' if comparison['passed'] else 'FAILED'}] CUDA against CPU ({comparison['preset']}): scores "
              f"{comparison['max_score_difference']:.2e}, gradients {comparison['max_relative_gradient_difference']:.2e} "
              f"relative (worst {comparison['worst_gradient']}); bf16 autocast scores "
              f"{comparison['bf16_max_score_difference']:.2e}", flush=True)
    if "training" not in args.skip:
        with tempfile.TemporaryDirectory() as work:
            training = check_training(args.device, args.quick, Path(work))
        report["training"] = training
        passed &= training["passed"]
        for name, ok in training["checks"].items():
            print(f"[{'ok' if ok else 'FAILED'}] {name}", flush=True)
        for name, run in training["runs"].items():
            if run["returncode"] != 0:
                print(f"--- {name} failed: {run['command']}\n{run['stderr']}", flush=True)
            else:
                print(f"  {name}: {run['seconds']:.1f} s, losses {[round(value, 4) for value in run['losses']]}, "
                      f"test R1@0.5 {run['test_R1@0.5']:.1f}", flush=True)
    if "timing" not in args.skip:
        rows = time_presets(args.device, args.quick)
        report["timing"] = rows
        print(timing_table(rows), flush=True)
    report["passed"] = passed
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print("all checks passed" if passed else "SOME CHECKS FAILED", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
