"""Time :func:`grounding.eval.evaluate` on a Charades-STA-sized test set: 3,720 queries x 100 random windows.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py [--queries 3720] [--windows 100] [--repeats 5]``

Prints the median wall time of ``evaluate`` without NMS and with NMS 0.5, and of reading the same
predictions back from a jsonl file, plus the moment-retrieval figures so a run can be sanity-checked
(random windows score low). Video retrieval and VCMR are left out: they are not what the target is about.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from grounding.data.records import QueryRecord
from grounding.eval import Predictions, evaluate, read_predictions, write_moment_predictions


def make_data(num_queries: int, num_windows: int, seed: int = 0) -> tuple[list[QueryRecord], dict[int, np.ndarray]]:
    """Queries in 30 s videos with one 2-12 s ground-truth window; windows of 0-12 s with uniform scores."""
    rng = np.random.default_rng(seed)
    duration = 30.0
    records = []
    for qid in range(num_queries):
        length = rng.uniform(2.0, 12.0)
        start = rng.uniform(0.0, duration - length)
        records.append(QueryRecord(qid, f"video{qid // 3}", duration, ((start, start + length),), "a query"))
    starts = rng.uniform(0.0, duration, size=(num_queries, num_windows))
    ends = starts + rng.uniform(0.0, 12.0, size=starts.shape)
    scores = rng.random(size=starts.shape)
    rows = np.stack([starts, ends, scores], axis=-1)
    return records, {qid: rows[qid] for qid in range(num_queries)}


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=3720, help="number of queries (Charades-STA test: 3720)")
    parser.add_argument("--windows", type=int, default=100, help="predicted windows per query")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is printed")
    args = parser.parse_args()

    records, moments = make_data(args.queries, args.windows)
    predictions = Predictions(moments=moments)
    print(f"{args.queries} queries x {args.windows} windows, median of {args.repeats} runs")
    for label, threshold in [("evaluate, no NMS", None), ("evaluate, NMS 0.5", 0.5)]:
        seconds = median_seconds(lambda: evaluate(records, predictions, nms_threshold=threshold), args.repeats)
        result = evaluate(records, predictions, nms_threshold=threshold)
        figures = "  ".join(f"{key} {result[key]:.2f}" for key in ("R1@0.5", "R5@0.5", "mAP"))
        print(f"  {label:<22} {seconds * 1000:8.1f} ms   {figures}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "preds.jsonl"
        write_moment_predictions(path, moments)
        seconds = median_seconds(lambda: read_predictions(path), args.repeats)
        print(f"  {'read_predictions':<22} {seconds * 1000:8.1f} ms   ({path.stat().st_size / 1e6:.1f} MB jsonl)")


if __name__ == "__main__":
    main()
