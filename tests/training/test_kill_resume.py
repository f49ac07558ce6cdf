"""``grounding train --resume`` after a real SIGKILL, driven from outside through the command line only.

A run folder is written so that a kill at any moment leaves a complete ``last/`` or, killed between the two
renames of a checkpoint swap (``last -> last.old``, then the staged ``.last.tmp -> last``), a complete
``last.old/`` and no ``last/``. Either way ``--resume`` must end with the weights, the per-epoch metrics, the
``best/`` record and the ``log.csv`` of a run that was never interrupted, bit for bit (the same process count and
one thread, so the same floating-point sums).

Only the runs that are killed run in a subprocess; the uninterrupted reference and the resumes call the same
command in this process (``main([...])``, one torch thread like the subprocesses), which saves the 2-3 s
start-up of a fresh interpreter each.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from grounding.cli.main import main
from tests.training import single_thread, write_tiny_config, write_tiny_world  # noqa: F401 (single_thread: autouse)

REPO_ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 6

# `grounding train`, with os.replace wrapped so that the process SIGKILLs itself right after the first rename
# of the KILL_AT_SWAP-th swap of last/ (last -> last.old), before the staged folder is renamed to last: exactly
# the state a kill between the two renames of grounding.training.checkpoint.replace_directory leaves.
KILL_MID_SWAP = """
import os, signal, sys
from pathlib import Path

real_replace = os.replace
swaps = 0

def replace(src, dst, *args, **kwargs):
    global swaps
    real_replace(src, dst, *args, **kwargs)
    if Path(dst).name == "last.old":
        swaps += 1
        if swaps == int(os.environ["KILL_AT_SWAP"]):
            os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
from grounding.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def train_command(config: Path, run: Path, *extra: str, program: list[str] | None = None) -> list[str]:
    program = program or ["-m", "grounding.cli.main"]
    return [sys.executable, *program, "train", "--config", str(config), "--output-dir", str(run), *extra]


def run_to_end(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(command, capture_output=True, text=True, env=environment(**env), timeout=300,
                               check=False)
    return completed


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def config(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("config")
    return write_tiny_config(folder / "tiny.yaml", world, folder / "unused", epochs=EPOCHS)


def train_here(config: Path, run: Path, *extra: str) -> None:
    assert main(["train", "--config", str(config), "--output-dir", str(run), *extra]) == 0


@pytest.fixture(scope="module")
def uninterrupted(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    train_here(config, run)
    return run


def log_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="", encoding="utf-8") as handle:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(handle)]


def epoch_record(path: Path) -> dict:
    record = json.loads(path.read_text(encoding="utf-8"))
    record.pop("seconds", None)
    return record


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Final weights, every epoch's metrics, best/ and log.csv equal the uninterrupted run's (wall times aside)."""
    ours, theirs = load_file(resumed / "last" / "model.safetensors"), load_file(reference / "last" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    best, reference_best = (load_file(run / "best" / "model.safetensors") for run in (resumed, reference))
    assert all(torch.equal(best[name], reference_best[name]) for name in best)
    assert epoch_record(resumed / "best" / "metrics.json") == epoch_record(reference / "best" / "metrics.json")
    names = sorted(path.name for path in (reference / "metrics").iterdir())
    assert names == [f"epoch_{epoch:03d}.json" for epoch in range(1, EPOCHS + 1)]
    assert sorted(path.name for path in (resumed / "metrics").iterdir()) == names
    for name in names:
        assert epoch_record(resumed / "metrics" / name) == epoch_record(reference / "metrics" / name), name
    assert log_rows(resumed) == log_rows(reference)
    # the swap's leftovers are gone once a later checkpoint is written
    assert sorted(path.name for path in resumed.iterdir()) == sorted(path.name for path in reference.iterdir())


def test_kill_between_the_two_renames_of_last_resumes_from_last_old(
    config: Path, uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    program = ["-c", KILL_MID_SWAP]
    killed = run_to_end(train_command(config, run, program=program), KILL_AT_SWAP="2")  # while saving epoch 3
    assert killed.returncode == -signal.SIGKILL, (
        f"the run was not killed mid-swap (exit {killed.returncode}): does the checkpoint swap still rename "
        f"last -> last.old with os.replace?\n{killed.stderr[-2000:]}"
    )
    assert not (run / "last").exists() and (run / "last.old").is_dir() and (run / ".last.tmp").is_dir()
    assert json.loads((run / "last.old" / "metrics.json").read_text())["epoch"] == 2
    assert (run / "metrics" / "epoch_003.json").exists()  # logged before the kill, trained again on resume

    capsys.readouterr()
    train_here(config, run, "--resume")
    assert f"resuming {run} after epoch 2" in capsys.readouterr().err
    assert_same_run(run, uninterrupted)


def test_sigkill_at_a_random_moment_then_resume_ends_as_the_uninterrupted_run(config: Path, uninterrupted: Path,
                                                                              tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    after_epoch = int(rng.integers(1, EPOCHS - 2))  # 1..3 of 6: some epochs are left to run when the kill lands
    extra_delay = float(rng.uniform(0.0, 0.05))  # somewhere in the next save or the next epoch's steps
    run = tmp_path / "run"
    process = subprocess.Popen(train_command(config, run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=environment())
    marker = run / "metrics" / f"epoch_{after_epoch:03d}.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(extra_delay)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, (
        f"the run ended before the kill (exit {process.returncode}); give it more epochs\n{stderr[-2000:]}"
    )
    assert (run / "last").is_dir() or (run / "last.old").is_dir(), sorted(p.name for p in run.iterdir())

    train_here(config, run, "--resume")
    assert_same_run(run, uninterrupted)
