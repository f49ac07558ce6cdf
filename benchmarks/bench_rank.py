"""Ranking latency and memory from a thousand to a hundred thousand videos: stage 1 (a vector engine) + stage 2.

For each corpus size, an index of synthetic encodings with the real model's shapes (the flow recipe of
``configs/rendered-world-1000-flow.yaml``: 64 clip states of width 256 per video, random values; unit-norm
embeddings ``unit(z A + e)`` with z in 32 dimensions, the stand-in for trained embeddings that
benchmarks/bench_engines.py calls ``lowrank``: rows drawn uniformly on the sphere have no structure for an
approximate engine to use, and trained embeddings do) is written once, then a fresh process opens it
with each engine and ranks sentences one at a time, as a user would: MiniLM encodes the sentence, the engine
returns the top M, the span scorer (random weights, real shapes) rescores those M from the stored clip states.

Per corpus size and engine it prints query latency p50/p95 (whole ``Ranker.rank`` call, stage 2 included),
the query process's peak RSS, M, and stage 1's recall of the exact top M (``stage1_ann_recall``).

    python benchmarks/bench_rank.py --corpus 1000 10000 100000 --engines exact faiss milvus --json bench-rank.json

Needs the ``ranking`` extra for faiss and milvus; ``--work`` holds the indexes (about 6.6 GB at 100k with
float32 storage; ``--storage float16`` halves it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
ACTIONS = ("spins", "grows", "shrinks", "moves left", "moves right", "jumps", "appears", "disappears")
CHUNK = 5_000
LATENT_DIM = 32


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"the {COLOURS[rng.integers(6)]} {SHAPES[rng.integers(6)]} {ACTIONS[rng.integers(8)]}." for _ in range(count)]


def model_folder(work: Path) -> Path:
    """A checkpoint with the flow recipe's shapes and random weights, MiniLM as its text encoder."""
    import torch

    from grounding.inference import PIPELINE_KEY, PipelineInfo
    from grounding.model import GroundingModel
    from grounding.training.config import load_config

    folder = work / "model"
    if not (folder / "config.json").is_file():
        config = load_config(Path(__file__).resolve().parents[1] / "configs" / "rendered-world-1000-flow.yaml").model
        torch.manual_seed(0)
        model = GroundingModel(config)
        model.save_pretrained(folder, metadata={PIPELINE_KEY: PipelineInfo(text_encoder="minilm-l6").to_json()})
    return folder


def build(work: Path, videos: int, storage: str) -> Path:
    """An index of ``videos`` synthetic videos (written once, reused by every engine)."""
    from grounding.model import GroundingModel
    from grounding.ranking import VideoIndex

    folder = work / f"index-{videos}"
    if (folder / "index.json").is_file() and json.loads((folder / "index.json").read_text())["complete"]:
        return folder
    checkpoint = model_folder(work)
    config = GroundingModel.from_pretrained(checkpoint).config
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    index = VideoIndex.create(folder, checkpoint, num_clips=config.num_clips, hidden_size=config.hidden_size,
                              storage=storage)
    rng = np.random.default_rng(videos)
    basis = np.random.default_rng(0).standard_normal((LATENT_DIM, config.hidden_size)).astype(np.float32)
    for first in range(0, videos, CHUNK):
        n = min(CHUNK, videos - first)
        states = rng.standard_normal((n, config.num_clips, config.hidden_size), dtype=np.float32)
        latent = rng.standard_normal((n, LATENT_DIM), dtype=np.float32)
        embeddings = latent @ basis + 0.3 * rng.standard_normal((n, config.hidden_size), dtype=np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        durations = rng.uniform(15, 40, size=n)
        index.append([f"v{first + i:07d}" for i in range(n)], durations, states, embeddings)
    index.set_complete(True)
    return folder


def query_worker(folder: Path, engine: str, queries: int, rerank: int) -> dict[str, Any]:
    """Open the index with ``engine``, rank ``queries`` sentences one at a time; figures as a dict."""
    import torch

    from grounding.inference import Grounder
    from grounding.ranking import Ranker, VideoIndex
    from grounding.ranking.index import read_index_info
    from procfs import status_kb

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    info = read_index_info(folder)
    info.engine = engine
    info.engine_options = {}
    index = VideoIndex(folder, info)
    began = time.perf_counter()
    index.engine  # noqa: B018  (open and sync: builds the engine's structure on first use)
    engine_seconds = time.perf_counter() - began
    ranker = Ranker(Grounder.from_pretrained(index.model_folder), index)
    texts = sentences(queries + 1)
    ranker.rank(texts[0], top_videos=10, rerank=rerank)  # warm-up: loads MiniLM, faults the first pages in
    latencies = []
    for text in texts[1:]:
        began = time.perf_counter()
        ranker.rank(text, top_videos=10, rerank=rerank)
        latencies.append(1000 * (time.perf_counter() - began))
    # stage 1's recall of the exact top M, on the same query embeddings
    from grounding.ranking.scoring import encode_queries

    encoded = encode_queries(ranker.model, ranker.grounder.text_encoder, texts[1:]).embeddings.float().numpy()
    _, found = index.engine.search(encoded, rerank)
    exact = np.argsort(-(encoded @ np.asarray(index.embeddings).T), axis=1, kind="stable")[:, :rerank]
    recall = float(np.mean([len(set(f.tolist()) & set(e.tolist())) / rerank for f, e in zip(found, exact)]))
    index.close()
    return {
        "videos": len(index), "engine": engine, "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1), "peak_rss_gb": round(status_kb("VmHWM") / 2**20, 2),
        "rerank": rerank, "stage1_ann_recall": round(recall, 4), "engine_open_s": round(engine_seconds, 1),
        "queries": len(latencies),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=int, nargs="+", default=[1000, 10000, 100000], help="corpus sizes")
    parser.add_argument("--engines", nargs="+", default=["exact", "faiss"], help="stage-1 engines to compare")
    parser.add_argument("--queries", type=int, default=40, help="sentences ranked per size and engine (default 40)")
    parser.add_argument("--rerank", type=int, default=20, help="stage-2 depth M (default 20)")
    parser.add_argument("--storage", choices=("float32", "float16"), default="float32")
    parser.add_argument("--work", type=Path, default=None, help="folder for the indexes (default a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--worker", nargs=2, metavar=("INDEX", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(query_worker(Path(args.worker[0]), args.worker[1], args.queries, args.rerank)))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-rank-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for videos in args.corpus:
        began = time.perf_counter()
        folder = build(work, videos, args.storage)
        print(f"index of {videos} videos ready in {time.perf_counter() - began:.0f} s ({folder})", file=sys.stderr)
        for engine in args.engines:
            result = subprocess.run(
                [sys.executable, __file__, "--worker", str(folder), engine, "--queries", str(args.queries),
                 "--rerank", str(args.rerank)], check=True, capture_output=True, text=True,
            )
            row = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{videos:>7} videos  {engine:<6}  p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  "
                  f"peak RSS {row['peak_rss_gb']:.2f} GB  M {row['rerank']}  stage-1 recall {row['stage1_ann_recall']:.3f}"
                  f"  (engine opened in {row['engine_open_s']} s)", flush=True)
    for engine in args.engines:
        by_size = {row["videos"]: row["p50_ms"] for row in rows if row["engine"] == engine}
        if 10000 in by_size and 100000 in by_size:
            print(f"{engine}: p50 grows {by_size[100000] / by_size[10000]:.2f}x from 10k to 100k videos")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
