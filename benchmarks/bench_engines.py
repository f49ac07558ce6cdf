"""Stage-1 vector engines side by side: build time, one-query latency, recall against exact search, memory, disk.

For each corpus size the script writes a synthetic corpus of unit-norm float32 rows the way the corpus index
stores embeddings (a raw little-endian (N, H) file, opened with ``numpy.memmap``), computes the exact top k of
every query once, then measures each engine in a fresh process (so peak RSS is the engine's own):

- ``build_s``: ``open_engine`` + ``sync_engine`` over all N rows, flush included (Milvus: until every segment is
  indexed); ``reopen_s``: closing it and opening it again from its folder, plus its first query;
- ``p50_ms`` / ``p95_ms``: ``--queries`` searches of one query each, as a user asks them (after 5 untimed ones);
- ``recall@k``: the share of the exact top k that the engine returns, over all queries, for k = ``--k`` and each
  ``--recall-at``; scores of the returned rows are checked against exact ones (1e-4);
- ``rss_before_mb`` / ``peak_rss_mb``: resident memory after the imports and before the engine is opened, and
  the process's peak (``VmHWM``; the memmap's pages that a search touches count in it); ``disk_mb``: the engine
  folder.

Data (``--data``): ``uniform`` draws rows uniformly on the sphere (no structure: the worst case for every
approximate index); ``lowrank`` (default) draws ``unit(z A + e)``, z ~ N(0, I_r), A ~ N(0, 1)^(r x H),
e ~ N(0, 0.05 r I_H) with r = ``--rank`` (32): rows near an r-dimensional subspace, a stand-in for trained
embeddings, which concentrate near a low-dimensional set. Neither is a real corpus.

Engines: the registry's (``exact``, ``faiss``, ``milvus``), ``faiss-ivf`` (FAISS's inverted-file index, to compare
with the HNSW graph the ``faiss`` engine uses) and ``qdrant-local``, an adapter kept here only to
compare Qdrant's local mode (``qdrant-client``) with Milvus Lite (docs/ranking-engines.md says why the package
supports Milvus). Options: ``--option faiss.ef_search=256 milvus.index_type=FLAT``.

    OMP_NUM_THREADS=1 python benchmarks/bench_engines.py --corpus 1000 10000 100000 [--dim 256] [--queries 200] \\
        [--k 50] [--recall-at 10 100] [--engines exact faiss milvus qdrant-local] [--data lowrank] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procfs import status_kb  # noqa: E402

from grounding.ranking.engines import VectorEngine, open_engine, register_engine, sync_engine  # noqa: E402

WRITE_BATCH = 65_536
WARM_UP = 5


# -- data -----------------------------------------------------------------------------------------------------------

def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def draw(rng: np.random.Generator, rows: int, dim: int, data: str, mixing: np.ndarray | None) -> np.ndarray:
    """(rows, dim) unit-norm float32 rows of the ``data`` kind (``mixing`` is A for ``lowrank``)."""
    if data == "uniform":
        return _unit(rng.standard_normal((rows, dim), dtype=np.float32))
    rank = len(mixing)
    latent = rng.standard_normal((rows, rank), dtype=np.float32)
    noise = rng.standard_normal((rows, dim), dtype=np.float32) * np.float32(np.sqrt(0.05 * rank))
    return _unit(latent @ mixing + noise)


def write_corpus(path: Path, rows: int, dim: int, data: str, rank: int, seed: int) -> np.ndarray:
    """Write the corpus to ``path`` a batch at a time; return (``--queries`` draws later) the mixing matrix."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((rank, dim), dtype=np.float32) if data == "lowrank" else None
    with open(path, "wb") as handle:
        for start in range(0, rows, WRITE_BATCH):
            draw(rng, min(WRITE_BATCH, rows - start), dim, data, mixing).astype("<f4").tofile(handle)
    return mixing


# -- a Qdrant local-mode adapter, for the comparison only -----------------------------------------------------------

@register_engine
class QdrantLocalEngine(VectorEngine):
    """Qdrant's local mode (``QdrantClient(path=...)``): points in SQLite, searched by numpy in memory."""

    name = "qdrant-local"
    exact = True  # local mode has no HNSW: it scores every point

    def __init__(self, folder: Path, dim: int, vectors: np.ndarray, *, batch: int = 1024) -> None:
        super().__init__(folder, dim, vectors)
        from qdrant_client import QdrantClient, models

        self.models, self.batch = models, batch
        self.client = QdrantClient(path=str(self.folder / "qdrant"))
        if not self.client.collection_exists("videos"):
            self._create()

    def _create(self) -> None:
        params = self.models.VectorParams(size=self.dim, distance=self.models.Distance.DOT)
        self.client.create_collection("videos", vectors_config=params)

    @property
    def count(self) -> int:
        return int(self.client.count("videos", exact=True).count)

    def add(self, vectors: np.ndarray, start: int) -> None:
        checked = self._check_add(vectors, start)
        self.client.upload_collection("videos", vectors=checked, ids=list(range(start, start + len(checked))),
                                      batch_size=self.batch)

    def reset(self) -> None:
        self.client.delete_collection("videos")
        self._create()

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for index, query in enumerate(queries):
            points = self.client.query_points("videos", query=query, limit=k).points
            scores[index, : len(points)] = [point.score for point in points]
            rows[index, : len(points)] = [point.id for point in points]
        return scores, rows

    def close(self) -> None:
        self.client.close()


# -- FAISS's inverted-file index, the approximate kind the faiss engine does not use, for the comparison only ------

@register_engine
class FaissIVFEngine(VectorEngine):
    """``IndexIVFFlat`` (inner product): k-means cells trained on the first add, ``nprobe`` cells searched."""

    name = "faiss-ivf"
    exact = False

    def __init__(self, folder: Path, dim: int, vectors: np.ndarray, *, nlist: int = 0, nprobe: int = 64) -> None:
        super().__init__(folder, dim, vectors)
        import faiss

        self.faiss, self.nprobe = faiss, nprobe
        self.nlist = nlist or max(1, int(4 * np.sqrt(max(len(vectors), 1))))  # the usual 4 sqrt(N) cells
        self.path = self.folder / "faiss-ivf.index"
        self.index = faiss.read_index(str(self.path)) if self.path.exists() else None

    @property
    def count(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def add(self, vectors: np.ndarray, start: int) -> None:
        checked = self._check_add(vectors, start)
        if self.index is None:
            self.index = self.faiss.IndexIVFFlat(self.faiss.IndexFlatIP(self.dim), self.dim, self.nlist,
                                                 self.faiss.METRIC_INNER_PRODUCT)
            self.index.train(checked)
        self.index.add(checked)

    def reset(self) -> None:
        self.index = None

    def flush(self) -> None:
        if self.index is not None:
            self.faiss.write_index(self.index, str(self.path))

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, min(k, self.count), params=self.faiss.SearchParametersIVF(nprobe=self.nprobe))


# -- one engine on one corpus, in its own process ---------------------------------------------------------------------

def wait_until_indexed(engine: VectorEngine) -> None:
    """Milvus builds segment indexes in the background: wait until none is pending."""
    if engine.name != "milvus":
        return
    while engine.client.describe_index(engine.collection, "embedding").get("pending_index_rows", 0):
        time.sleep(0.2)


def folder_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def measure(engine_name: str, options: dict[str, Any], corpus_path: Path, rows: int, dim: int,
            queries_path: Path, truth_path: Path, ks: list[int], work: Path) -> dict[str, Any]:
    """Every figure of one engine on one corpus (run in a worker process)."""
    vectors = np.memmap(corpus_path, dtype="<f4", mode="r", shape=(rows, dim))
    queries = np.load(queries_path, allow_pickle=False)
    truth = np.load(truth_path, allow_pickle=False)  # (Q, max k) int64: the exact top rows
    folder = work / f"engine-{engine_name}"
    rss_before = status_kb("VmRSS") / 1024
    started = time.perf_counter()
    engine = open_engine(engine_name, folder, dim, vectors, **options)
    sync_engine(engine, vectors, rows)
    wait_until_indexed(engine)
    build_s = time.perf_counter() - started
    for query in queries[:WARM_UP]:
        engine.search(query[None], ks[0])
    latencies = []
    for query in queries:
        started = time.perf_counter()
        engine.search(query[None], ks[0])
        latencies.append(time.perf_counter() - started)
    recalls, worst_score_error = {}, 0.0
    for k in ks:
        scores, found = engine.search(queries, k)
        exact_rows = truth[:, :k]
        hits = sum(len(set(f[f >= 0]) & set(e)) for f, e in zip(found, exact_rows))
        recalls[f"recall@{k}"] = round(hits / exact_rows.size, 4)
        valid = found >= 0
        exact_scores = np.einsum("qh,qkh->qk", queries, np.asarray(vectors[np.where(valid, found, 0)]))
        worst_score_error = max(worst_score_error, float(np.abs(scores - exact_scores)[valid].max()))
    engine.close()
    started = time.perf_counter()
    reopened = open_engine(engine_name, folder, dim, vectors, **options)
    reopened.search(queries[:1], ks[0])
    reopen_s = time.perf_counter() - started
    reopened.close()
    if worst_score_error > 1e-4:
        raise SystemExit(f"{engine_name}: a returned score differs from the exact product by {worst_score_error}")
    milliseconds = sorted(latency * 1e3 for latency in latencies)
    return {
        "engine": engine_name, "options": options, "corpus": rows, "dim": dim, "queries": len(queries),
        "k": ks[0], "build_s": round(build_s, 2), "reopen_s": round(reopen_s, 3),
        "p50_ms": round(statistics.median(milliseconds), 3),
        "p95_ms": round(milliseconds[int(0.95 * (len(milliseconds) - 1))], 3), **recalls,
        "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(status_kb("VmHWM") / 1024, 1),
        "disk_mb": round(folder_mb(folder), 1),
    }


def parse_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``engine.key=value`` strings to {engine: {key: value}}; values are ints when they parse as one."""
    options: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        engine, _, option = key.partition(".")
        if not option or not _:
            raise SystemExit(f"--option {pair!r}: expected engine.key=value, e.g. faiss.ef_search=256")
        options.setdefault(engine, {})[option] = int(value) if value.lstrip("-").isdigit() else value
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--corpus", type=int, nargs="+", default=[1000, 10000, 100000], help="corpus sizes N")
    parser.add_argument("--dim", type=int, default=256, help="embedding width H")
    parser.add_argument("--queries", type=int, default=200, help="queries per engine and size")
    parser.add_argument("--k", type=int, default=50, help="rows per query for the latency figures (stage 1's M)")
    parser.add_argument("--recall-at", type=int, nargs="*", default=[10, 100], help="further k for recall@k")
    parser.add_argument("--engines", nargs="+", default=["exact", "faiss", "milvus"], help="engines to measure")
    parser.add_argument("--option", nargs="*", default=[], help="engine.key=value, e.g. faiss.ef_search=256")
    parser.add_argument("--data", choices=["lowrank", "uniform"], default="lowrank", help="synthetic corpus kind")
    parser.add_argument("--rank", type=int, default=32, help="latent dimension of --data lowrank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        name, options, corpus, rows, dim, queries, truth, work = args.worker
        ks = [args.k, *args.recall_at]
        result = measure(name, json.loads(options), Path(corpus), int(rows), int(dim), Path(queries), Path(truth),
                         ks, Path(work))
        print(json.dumps(result))
        return 0
    options = parse_options(args.option)
    ks = [args.k, *args.recall_at]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as scratch:
        work = Path(scratch)
        for rows in args.corpus:
            corpus = work / f"corpus-{rows}.f32"
            mixing = write_corpus(corpus, rows, args.dim, args.data, args.rank, args.seed)
            queries = draw(np.random.default_rng(args.seed + 1), args.queries, args.dim, args.data, mixing)
            np.save(work / "queries.npy", queries)
            exact = open_engine("exact", work / "reference", args.dim,
                                np.memmap(corpus, dtype="<f4", mode="r", shape=(rows, args.dim)))
            np.save(work / "truth.npy", exact.search(queries, max(ks))[1])
            for name in args.engines:
                shutil.rmtree(work / f"engine-{name}", ignore_errors=True)
                command = [sys.executable, __file__, "--k", str(args.k), "--recall-at", *map(str, args.recall_at),
                           "--worker", name, json.dumps(options.get(name, {})), str(corpus), str(rows),
                           str(args.dim), str(work / "queries.npy"), str(work / "truth.npy"), str(work)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{name} at {rows}: failed (exit code {done.returncode})\n{done.stderr[-3000:]}",
                          file=sys.stderr)
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["data"] = args.data if args.data == "uniform" else f"lowrank-{args.rank}"
                results.append(result)
                print(json.dumps(result), flush=True)
                shutil.rmtree(work / f"engine-{name}", ignore_errors=True)
            corpus.unlink()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
