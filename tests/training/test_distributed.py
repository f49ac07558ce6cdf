"""torchrun on the CPU (gloo): one process trains through DistributedDataParallel and gives exactly the weights
of a plain run; two processes split every batch between them and end close to it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training import write_tiny_config, write_tiny_world

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
    assert all(torch.equal(ours[name], plain[name]) for name in ours)
    assert losses(tmp_path / "run") == losses(plain_run)
    best, plain_best = (json.loads((run / "best" / "metrics.json").read_text()) for run in (tmp_path / "run", plain_run))
    assert best["epoch"] == plain_best["epoch"] and best["metrics"] == plain_best["metrics"]


def test_torchrun_with_two_processes_shares_the_batches_and_ends_close_to_a_plain_run(world: Path, plain_run: Path,
                                                                                        tmp_path: Path) -> None:
    completed = run_training(write_tiny_config(tmp_path / "tiny.yaml", world, tmp_path / "unused"), tmp_path / "run", 2)
    assert completed.stderr.count("DistributedDataParallel over 2 process(es), gloo on cpu") == 1  # rank 0 reports
    ours, plain = load_file(tmp_path / "run" / "last" / "model.safetensors"), load_file(plain_run / "last" / "model.safetensors")
    assert ours.keys() == plain.keys()
    # The same global batches (rank r takes every other query of the shared order), summed in another order,
    # except the last batch of each epoch, which the sampler pads to an even count with a repeated query.
    assert losses(tmp_path / "run") == pytest.approx(losses(plain_run), rel=0.1)
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == sorted(path.name for path in plain_run.iterdir())
