"""benchmarks/bench_model.py: a measurement in a fresh worker reports its figures and the allocator it ran with."""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_model  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))


def test_a_worker_measures_one_training_step_with_glibc() -> None:
    figures = bench_model.measure("charades-sta", "train", threads=1, repeats=1, wait_policy="default")
    assert figures["allocator"] == "glibc" and figures["batch_size"] == 32 and figures["repeats"] == 1
    assert 0 < figures["median_s"] and 0 < figures["peak_rise_gb"] < figures["peak_rss_gb"]


def test_a_missing_allocator_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(SystemExit, match="apt install libtcmalloc-minimal4"):
        bench_model.allocator_library("tcmalloc")
    with pytest.raises(SystemExit, match="apt install libjemalloc2"):
        bench_model.main(["--configs", "charades-sta", "--allocator", "jemalloc"])


@pytest.mark.parametrize("allocator", sorted(bench_model.ALLOCATORS))
def test_a_preloaded_allocator_is_the_one_the_worker_runs_with(allocator: str) -> None:
    library = ctypes.util.find_library(bench_model.ALLOCATORS[allocator][0])
    if library is None:  # the machine lacks it: the worker must not start with glibc under its name
        with pytest.raises(SystemExit, match=f"--allocator {allocator}: "):
            bench_model.measure("charades-sta", "infer-1", 1, 1, "default", allocator=allocator)
        return
    figures = bench_model.measure("charades-sta", "infer-1", 1, 1, "default", allocator=allocator)
    assert figures["allocator"] == allocator and figures["ms_per_query"] > 0
