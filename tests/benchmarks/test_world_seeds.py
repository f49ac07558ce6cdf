"""benchmarks/world_seeds.py: the per-seed commands, and the mean and range it reports."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import world_seeds  # noqa: E402


def test_dry_run_prints_the_world_and_the_run_of_a_seed(capsys, tmp_path: Path) -> None:
    assert world_seeds.main(["--config", str(REPO_ROOT / "configs" / "rendered-world-1000-flow.yaml"),
                             "--seeds", "7", "--out", str(tmp_path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for seed in (7,):
        world = tmp_path / "worlds" / f"seed-{seed}"
        assert f"synth --out {world} --videos 1000 --seed {seed}" in printed
        assert (f"extract {world / 'videos'} --out {world / 'features-flow-05.h5'} --backbone "
                "efficientnet-lite0-motion-flow --size 160 --clip-seconds 0.5") in printed
        assert f"data.root={world} --output-dir {tmp_path / 'runs' / f'seed-{seed}'}" in printed
    assert not (tmp_path / "worlds").exists()  # a dry run writes nothing


def test_mean_and_range_over_seeds() -> None:
    best = {
        1: {"test": {"R1@0.5": 55.5, "R1@0.7": 44.2}, "test_novel": {"R1@0.5": 57.0, "R1@0.7": 42.6}},
        2: {"test": {"R1@0.5": 60.9, "R1@0.7": 45.2}, "test_novel": {"R1@0.5": 59.9, "R1@0.7": 45.3}},
        3: {"test": {"R1@0.5": 58.2, "R1@0.7": 40.0}, "test_novel": {"R1@0.5": 50.1, "R1@0.7": 40.1}},
    }
    summary = world_seeds.summarize(best, ["test", "test_novel"])
    assert summary["test"]["R1@0.5"] == {"mean": 58.2, "min": 55.5, "max": 60.9, "values": [55.5, 60.9, 58.2]}
    assert summary["test_novel"]["R1@0.7"]["mean"] == round((42.6 + 45.3 + 40.1) / 3, 2)
    rows = {seed: {"best": figures, "best_epoch": 9, "train_seconds": 600.0,
                   "prior": {"test": {"R1@0.5": 6.0}, "test_novel": {"R1@0.5": 5.7}}} for seed, figures in best.items()}
    table = world_seeds.format_table(rows, summary, ["test", "test_novel"])
    assert "| 1 | 55.50 | 44.20 | 57.00 | 42.60 | 9 | 6.00, 5.70 | 10.0 |" in table
    assert "| mean (range) | 58.20 (55.50-60.90) |" in table
