"""benchmarks/gpu_check.py, the prepared GPU script, run on the CPU at toy sizes: every part it can run without a
GPU works and reports what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_its_training_and_timing_paths_on_the_cpu(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    environment = {**os.environ, "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
         "--json", str(report_path)],
        capture_output=True, text=True, env=environment, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "all checks passed" in completed.stdout
    report = json.loads(report_path.read_text())
    assert report["passed"] and "cuda_against_cpu" not in report  # the device comparison needs CUDA
    runs = report["training"]["runs"]
    assert set(runs) == {"fp32", "bf16", "fp16", "ddp1"}
    # One gloo process: DDP's gradient hooks reorder the accumulation of a parameter's gradient, float32 rounding
    # that AdamW amplifies (tests/training/test_distributed.py); the check's own limit is 1e-3.
    assert 0.0 <= runs["ddp1"]["max_weight_difference_to_fp32"] <= 1e-3
    assert any("DistributedDataParallel over 1 process" in note for note in runs["ddp1"]["notes"])
    assert all(run["losses"][-1] < run["losses"][0] for run in runs.values())
    timing = report["timing"]
    assert {row["measurement"] for row in timing} == {"infer-1", "infer-32", "train"}
    assert all(row["median_s"] > 0 and row["peak_cuda_gb"] is None for row in timing)
    assert "| Charades-like (16 clips, 1024-d) | none |" in completed.stdout
