"""torchrun on the CPU (gloo): one process trains through DistributedDataParallel and gives exactly the weights
of a plain run; two processes split every batch between them and end with the plain run's weights, up to
floating-point summation order."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from grounding.cli.main import main
from tests.training import (  # noqa: F401
    single_thread,
    tiny_config_tree,
    write_tiny_config,
    write_tiny_world,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"))


def run_training(config: Path, output_dir: Path, processes: int | None) -> subprocess.CompletedProcess[str]:
    """``grounding train`` in a subprocess, under ``torchrun --nproc-per-node processes`` unless None."""
    launcher = [] if processes is None else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [sys.executable, *launcher, "-m", "grounding.cli.main", "train", "--config", str(config),
               "--output-dir", str(output_dir)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def losses(run: Path) -> list[float]:
    with open(run / "log.csv", newline="", encoding="utf-8") as handle:
        return [float(row["loss_total"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def plain_run(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plain")
    run_training(write_tiny_config(folder / "tiny.yaml", world, folder / "unused"), folder / "run", None)
    return folder / "run"


def test_torchrun_with_one_process_trains_through_ddp_and_matches_a_plain_run(world: Path, plain_run: Path,
                                                                                tmp_path: Path) -> None:
    completed = run_training(write_tiny_config(tmp_path / "tiny.yaml", world, tmp_path / "unused"), tmp_path / "run", 1)
    assert "DistributedDataParallel over 1 process(es), gloo on cpu" in completed.stderr
    ours, plain = load_file(tmp_path / "run" / "last" / "model.safetensors"), load_file(plain_run / "last" / "model.safetensors")
    assert ours.keys() == plain.keys()
    # Not bit-identical: DDP's gradient hooks change the order in which a parameter used on several paths
    # accumulates its gradient, so first-step gradients differ by float32 rounding (<= 1e-8 here), which AdamW
    # then amplifies for entries whose gradient is ~0 (see the two-process test). Measured on this run: worst
    # entry 2.9e-5, worst tensor ||difference|| / ||weights|| 1.5e-5; the limits are ~30x that, far below what a
    # process that skipped the all-reduce or double-counted a gradient would give.
    worst_entry = max(float((ours[name].double() - plain[name].double()).abs().max()) for name in ours)
    worst_tensor = max(
        float((ours[name].double() - plain[name].double()).norm() / plain[name].double().norm().clamp_min(1e-12))
        for name in ours
    )
    assert worst_entry <= 1e-3 and worst_tensor <= 5e-4, (worst_entry, worst_tensor)
    assert losses(tmp_path / "run") == pytest.approx(losses(plain_run), rel=1e-6)
    best, plain_best = (json.loads((run / "best" / "metrics.json").read_text()) for run in (tmp_path / "run", plain_run))
    assert best["epoch"] == plain_best["epoch"] and best["metrics"] == plain_best["metrics"]


@pytest.fixture(scope="module")
def even_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 videos: 16 train queries, 4 of them held out for val, 12 trained on, 3 full batches of 4 an epoch.
    With a count that the global batch divides, the sampler never pads a batch with a repeated query, so two
    processes see exactly the global batches of one process."""
    return write_tiny_world(tmp_path_factory.mktemp("even-world"), num_videos=20)


def write_dropout_free_config(path: Path, world: Path) -> Path:
    """The tiny config without dropout: each rank would draw its own dropout masks, another sample of the noise
    than one process draws, and the two runs would differ for that reason alone."""
    tree = tiny_config_tree(world, path.parent / "unused")
    tree["model"] = {**tree["model"], **{section: {**tree["model"][section], "dropout": 0.0}
                                         for section in ("video_graph", "text", "span")}}
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def test_torchrun_with_two_processes_ends_with_the_weights_of_one_process_at_the_same_global_batch(
    even_world: Path, tmp_path: Path
) -> None:
    config = write_dropout_free_config(tmp_path / "tiny.yaml", even_world)
    assert main(["train", "--config", str(config), "--output-dir", str(tmp_path / "plain")]) == 0
    completed = run_training(config, tmp_path / "ddp", 2)
    assert completed.stderr.count("DistributedDataParallel over 2 process(es), gloo on cpu") == 1  # rank 0 reports
    ours, plain = (load_file(tmp_path / run / "last" / "model.safetensors") for run in ("ddp", "plain"))
    assert ours.keys() == plain.keys()
    # Tolerance. Rank r averages the gradient over its half of each global batch and gloo's float32 all-reduce
    # averages the two halves: the same mean as one process's, summed in another order. Measured on this tiny run
    # (2 epochs, 6 AdamW steps at lr 0.01, torch 2.13 CPU): the first step's gradients agree to 4e-7 of each
    # tensor's largest entry. AdamW then divides every entry by its own running RMS, so an entry whose true
    # gradient is ~0 turns that rounding noise into a step of a sizeable fraction of lr: after 6 steps the
    # largest difference was 2.8e-4 (in the syntactic layer's centre projection; 87 of 7,440 entries above
    # 1e-5, the rest within 3e-7) and the worst tensor's ||difference|| / ||weights|| was 2.4e-4. Both limits
    # below are 2e-3, about 7x those; two ranks that do not share gradients (each stepping on its own half
    # batch) differ by 0.05 and 0.35, and per-epoch losses by 1e-4 relative against 1e-7 here.
    worst_entry = max(float((ours[name].double() - plain[name].double()).abs().max()) for name in ours)
    worst_tensor = max(
        float((ours[name].double() - plain[name].double()).norm() / plain[name].double().norm().clamp_min(1e-12))
        for name in ours
    )
    assert worst_entry <= 2e-3 and worst_tensor <= 2e-3, (worst_entry, worst_tensor)
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "plain"), rel=1e-5)
    assert sorted(path.name for path in (tmp_path / "ddp").iterdir()) == sorted(
        path.name for path in (tmp_path / "plain").iterdir()
    )
