"""The ranker's table on a rendered world: one checkpoint, the whole world as the corpus, the test queries.

Builds an index of every video of the world's feature file (with a bank of training sentences for the dual
softmax), then ranks the test queries once per row and scores each ranking with ``grounding evaluate
--relevant`` (multi-positive truth: any video where the sentence is true counts). Every step is a ``grounding``
command, printed before it runs, so each row of the table can be reproduced alone. Also draws the reliability of
the top-span scores (score against the chance that the span is right) for the ``max`` row.

    python benchmarks/rank_world.py --checkpoint runs/rendered-world-1000-flow --world worlds/w1000 \
        --features features-flow-05.h5 --relevant worlds/w1000/test.relevant.jsonl --out runs/rank-w1000 \
        --json rank-w1000.json --plot docs/images/ranking-reliability.png

Rows (``--rows`` picks some): ``stage1`` (coarse embeddings only), ``max`` / ``max-m10`` / ``max-m50`` (stage 2 on
the top 20 / 10 / 50, max pooling), ``softmax`` (softmax pooling), ``dual-train`` (dual softmax with the index's bank of
training sentences), ``dual-transductive`` (bank drawn from the test queries: labelled, not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROWS: dict[str, list[str]] = {
    "stage1": ["--stage1-only"],
    "max": ["--rerank", "20", "--pooling", "max"],
    "max-m10": ["--rerank", "10", "--pooling", "max"],
    "max-m50": ["--rerank", "50", "--pooling", "max"],
    "softmax": ["--rerank", "20", "--pooling", "softmax"],
    "dual-train": ["--rerank", "20", "--pooling", "max", "--dual-softmax", "train"],
    "dual-transductive": ["--rerank", "20", "--pooling", "max", "--dual-softmax", "transductive"],
}
SHOWN = ("VR@1", "VR@5", "VR@10", "VCMR_R1@0.5", "VCMR_R1@0.7", "VCMR_R10@0.5")


def grounding(*args: str) -> list[str]:
    return [sys.executable, "-m", "grounding.cli.main", *args]


def run(command: list[str]) -> float:
    print("$ grounding " + " ".join(command[3:]), flush=True)
    began = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - began


def reliability(ranking_path: Path, relevance_path: Path, bins: int = 10, level: str = "span") -> dict[str, Any]:
    """Each reranked video's top span: its score (the ranker's probability of the video) and whether it is right.
    ``level="span"``: a video where the query is true, and IoU >= 0.5 with one of that video's true windows;
    ``level="video"``: a video where the query is true. Bins of equal count by score."""
    truth = {}
    for line in relevance_path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        truth[item["qid"]] = {entry["vid"]: np.asarray(entry["windows"], dtype=np.float64) for entry in item["relevant"]}
    scores, right = [], []
    for line in ranking_path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        seen: set[str] = set()
        for video, start, end, score in item["pred_corpus_windows"]:
            if video in seen:
                continue  # the video's top span only
            seen.add(video)
            windows = truth[item["qid"]].get(video)
            hit = False
            if windows is not None and level == "video":
                hit = True
            elif windows is not None:
                inter = np.clip(np.minimum(end, windows[:, 1]) - np.maximum(start, windows[:, 0]), 0, None)
                union = (end - start) + (windows[:, 1] - windows[:, 0]) - inter
                hit = bool(np.any(inter / np.maximum(union, 1e-12) >= 0.5))
            scores.append(score)
            right.append(hit)
    order = np.argsort(scores)
    score_array, right_array = np.asarray(scores)[order], np.asarray(right, dtype=np.float64)[order]
    edges = np.linspace(0, len(order), bins + 1).astype(int)
    table = []
    for low, high in zip(edges[:-1], edges[1:]):
        if high > low:
            table.append({"mean_score": float(score_array[low:high].mean()), "fraction_right": float(right_array[low:high].mean()),
                          "count": int(high - low)})
    ece = sum(row["count"] * abs(row["mean_score"] - row["fraction_right"]) for row in table) / max(len(order), 1)
    return {"bins": table, "ece": float(ece), "spans": len(order)}


def plot_reliability(curves: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.8, 4.2), dpi=120)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, curve in curves.items():
        xs = [row["mean_score"] for row in curve["bins"]]
        ys = [row["fraction_right"] for row in curve["bins"]]
        axis.plot(xs, ys, marker="o", label=f"{name} (ECE {curve['ece']:.3f})")
    axis.set_xlabel("ranker's probability of the video (mean of a decile)")
    axis.set_ylabel("share right (video: a true video; span: also IoU >= 0.5)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title("Reliability of the reranked videos", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    parser.add_argument("--world", type=Path, required=True, help="the rendered world's folder")
    parser.add_argument("--features", default="features-flow-05.h5", help="feature file inside --world")
    parser.add_argument("--relevant", type=Path, required=True, help="the test split's relevance file")
    parser.add_argument("--split", default="test", help="annotation file <split>.txt of the queries (default test)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the index and the rankings")
    parser.add_argument("--bank-size", default="32",
                        help="queries in the dual-softmax banks: training sentences, and test ones for the transductive "
                        "row (default 32)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="rows to run (default all)")
    parser.add_argument("--json", type=Path, help="write every figure as JSON")
    parser.add_argument("--plot", type=Path, help="write the reliability plot (PNG)")
    parser.add_argument("--label", default="", help="a name for the checkpoint in the table")
    args = parser.parse_args(argv)

    world, out = args.world, args.out
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index"
    index_seconds = run(grounding(
        "index", "--checkpoint", args.checkpoint, "--features", str(world / args.features), "--durations",
        str(world / "durations.csv"), "--bank",
        str(world / "train.txt"), "--bank-size", args.bank_size, "--out", str(index), "--no-progress",
    )) if not (index / "index.json").is_file() or not json.loads((index / "index.json").read_text())["complete"] else 0.0
    queries = world / f"{args.split}.txt"
    num_queries = sum(1 for line in queries.read_text(encoding="utf-8").splitlines() if line.strip())
    results: dict[str, Any] = {}
    for row in args.rows:
        ranking, scores = out / f"{row}.jsonl", out / f"{row}.scores.json"
        bank = ["--bank-size", args.bank_size] if row == "dual-transductive" else []  # the train bank's size
        seconds = run(grounding(
            "rank", "--index", str(index), "--queries", str(queries), "--durations", str(world / "durations.csv"),
            *ROWS[row], *bank, "--out", str(ranking), "--no-progress",
        ))
        run(grounding(
            "evaluate", "--annotations", str(queries), "--durations", str(world / "durations.csv"), "--predictions",
            str(ranking), "--relevant", str(args.relevant), "--json", str(scores),
        ))
        figures = json.loads(scores.read_text(encoding="utf-8"))
        results[row] = {key: figures[key] for key in SHOWN} | {
            "seconds": round(seconds, 1), "ms_per_query": round(1000 * seconds / num_queries, 1),
            "transductive": row == "dual-transductive", "flags": " ".join(ROWS[row]),
        }
        if row in ("max", "dual-train", "softmax", "dual-transductive"):
            results[row]["reliability"] = reliability(ranking, args.relevant)
            results[row]["reliability_video"] = reliability(ranking, args.relevant, level="video")
    label = args.label or str(args.checkpoint)
    print(f"\n{label}: {num_queries} {args.split} queries, corpus {world / args.features} (index built in "
          f"{index_seconds:.0f} s)")
    print("| row | " + " | ".join(SHOWN) + " | s / query (whole CLI call) |")
    print("|---|" + "---|" * (len(SHOWN) + 1))
    for row, figures in results.items():
        note = " (transductive)" if figures["transductive"] else ""
        print(f"| {row}{note} | " + " | ".join(f"{figures[key]:.2f}" for key in SHOWN)
              + f" | {figures['ms_per_query'] / 1000:.2f} |")
    curves = {f"{row}, span": figures["reliability"] for row, figures in results.items() if "reliability" in figures}
    curves |= {f"{row}, video": figures["reliability_video"] for row, figures in results.items() if "reliability" in figures}
    for row, curve in curves.items():
        print(f"reliability of {row}: ECE {curve['ece']:.3f} over {curve['spans']} top spans")
    if args.plot and curves:
        plot_reliability({name: curve for name, curve in curves.items() if name.startswith("max,")} or curves, args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": args.checkpoint, "label": label, "queries": num_queries,
                                         "index_seconds": index_seconds, "rows": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
