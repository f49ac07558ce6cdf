"""Stage-1 vector engines: each agrees with ``exact``, survives reopen and interrupted adds, pads, refuses bad input.

Approximate engines are checked for identical results at settings that make them exhaustive (HNSW with a candidate
list as large as the corpus) and for recall at their defaults on a larger corpus. The faiss and milvus cases skip,
naming the package, only when the ``ranking`` extra is not installed.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from grounding.errors import ConfigError, InputError, MissingDependencyError
from grounding.ranking.engines import (
    VectorEngine,
    engine_options,
    list_engines,
    open_engine,
    order_hits,
    sync_engine,
)
from grounding.ranking.engines.base import lazy_import
from grounding.ranking.engines.exact import top_k_lowest_row_first

DIM = 32
CORPUS = 400

needs_faiss = pytest.mark.skipif(find_spec("faiss") is None, reason="faiss-cpu is not installed (grounding[ranking])")
needs_milvus = pytest.mark.skipif(
    find_spec("pymilvus") is None or find_spec("milvus_lite") is None,
    reason="pymilvus / milvus-lite is not installed (grounding[ranking])",
)

# (engine, options that make it exhaustive on CORPUS rows): every case must equal `exact` on CORPUS rows.
EXHAUSTIVE = [
    pytest.param("exact", {"chunk_rows": 64}, id="exact-chunked"),
    pytest.param("faiss", {"kind": "flat"}, id="faiss-flat", marks=needs_faiss),
    pytest.param("faiss", {"kind": "hnsw", "ef_search": CORPUS}, id="faiss-hnsw", marks=needs_faiss),
    pytest.param("milvus", {"index_type": "FLAT"}, id="milvus-flat", marks=needs_milvus),
    pytest.param("milvus", {"ef_search": CORPUS}, id="milvus-hnsw", marks=needs_milvus),
]


def unit_rows(rows: int, seed: int, dim: int = DIM) -> np.ndarray:
    """(rows, dim) float32, each row unit-norm."""
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def memmap_of(path: Path, vectors: np.ndarray) -> np.memmap:
    """``vectors`` written as the index writes them (raw little-endian float32), opened read-only."""
    vectors.astype("<f4").tofile(path)
    return np.memmap(path, dtype="<f4", mode="r", shape=vectors.shape)


def brute_force(corpus: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: full sort by score descending, then row ascending."""
    scores = queries @ corpus.T
    order = np.lexsort((np.broadcast_to(np.arange(len(corpus)), scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture
def corpus(tmp_path: Path) -> np.memmap:
    return memmap_of(tmp_path / "embeddings.f32", unit_rows(CORPUS, seed=0))


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[VectorEngine]]:
    """Engines a test opens; closed after it, whatever happens."""
    engines: list[VectorEngine] = []
    yield engines
    for engine in engines:
        engine.close()


def build(opened: list[VectorEngine], name: str, folder: Path, vectors: np.ndarray, count: int,
          **options: Any) -> VectorEngine:
    engine = open_engine(name, folder, DIM, vectors, **options)
    opened.append(engine)
    sync_engine(engine, vectors, count)
    return engine


def test_the_registry_lists_every_engine_and_refuses_unknown_names_and_options(tmp_path: Path) -> None:
    assert list_engines() == ["exact", "faiss", "milvus"]
    assert engine_options("exact") == {"chunk_rows": 65_536}
    with pytest.raises(ConfigError, match=r"unknown vector engine 'fais' \(did you mean 'faiss'\?\); known engines: "
                                          r"exact, faiss, milvus"):
        open_engine("fais", tmp_path, DIM, unit_rows(3, 0))
    with pytest.raises(ConfigError, match=r"engine 'exact' has no option 'chunk_row' \(did you mean 'chunk_rows'"):
        open_engine("exact", tmp_path, DIM, unit_rows(3, 0), chunk_row=4)


@pytest.mark.parametrize(("name", "options"), EXHAUSTIVE)
def test_every_engine_returns_the_exact_top_10(name: str, options: dict, corpus: np.memmap, tmp_path: Path,
                                               opened: list[VectorEngine]) -> None:
    queries = unit_rows(12, seed=1)
    engine = build(opened, name, tmp_path / name, corpus, CORPUS, **options)
    scores, rows = engine.search(queries, 10)
    expected_scores, expected_rows = brute_force(np.asarray(corpus), queries, 10)
    assert scores.dtype == np.float32 and rows.dtype == np.int64 and scores.shape == rows.shape == (12, 10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


@pytest.mark.parametrize(("name", "options"), EXHAUSTIVE)
def test_adding_in_two_parts_equals_adding_at_once_and_reopening_keeps_the_rows(
        name: str, options: dict, corpus: np.memmap, tmp_path: Path, opened: list[VectorEngine]) -> None:
    queries = unit_rows(5, seed=2)
    whole = build(opened, name, tmp_path / "whole", corpus, CORPUS, **options)
    parts = open_engine(name, tmp_path / "parts", DIM, corpus, **options)
    opened.append(parts)
    parts.reset()  # `exact` opens holding its whole source array
    parts.add(corpus[:150], 0)
    parts.add(corpus[150:], 150)
    assert parts.count == whole.count == CORPUS
    expected = whole.search(queries, 10)
    np.testing.assert_array_equal(parts.search(queries, 10)[1], expected[1])
    parts.close()
    opened.remove(parts)
    reopened = open_engine(name, tmp_path / "parts", DIM, corpus, **options)
    opened.append(reopened)
    assert reopened.count == CORPUS
    scores, rows = reopened.search(queries, 10)
    np.testing.assert_array_equal(rows, expected[1])
    np.testing.assert_allclose(scores, expected[0], atol=1e-6)


@pytest.mark.parametrize(("name", "options"), EXHAUSTIVE)
def test_sync_drops_uncommitted_rows_and_adds_missing_ones(name: str, options: dict, corpus: np.memmap,
                                                           tmp_path: Path, opened: list[VectorEngine]) -> None:
    queries = unit_rows(5, seed=3)
    engine = build(opened, name, tmp_path / name, corpus, CORPUS, **options)
    committed = CORPUS - 37  # an add that reached the engine but not the index's commit
    sync_engine(engine, corpus, committed)
    assert engine.count == committed
    _, rows = engine.search(queries, 10)
    np.testing.assert_array_equal(rows, brute_force(np.asarray(corpus[:committed]), queries, 10)[1])
    sync_engine(engine, corpus, CORPUS)  # the index committed them after all
    assert engine.count == CORPUS
    np.testing.assert_array_equal(engine.search(queries, 10)[1], brute_force(np.asarray(corpus), queries, 10)[1])


@pytest.mark.parametrize(("name", "options"), EXHAUSTIVE)
def test_k_past_the_count_pads_and_an_empty_engine_returns_only_padding(
        name: str, options: dict, corpus: np.memmap, tmp_path: Path, opened: list[VectorEngine]) -> None:
    queries = unit_rows(3, seed=4)
    engine = build(opened, name, tmp_path / name, corpus, 6, **options)
    scores, rows = engine.search(queries, 9)
    assert scores.shape == rows.shape == (3, 9)
    assert (rows[:, 6:] == -1).all() and np.isneginf(scores[:, 6:]).all()
    assert sorted(rows[0, :6]) == list(range(6))
    sync_engine(engine, corpus, 0)
    assert engine.count == 0
    scores, rows = engine.search(queries, 4)
    assert (rows == -1).all() and np.isneginf(scores).all() and scores.dtype == np.float32
    assert engine.search(np.empty((0, DIM), np.float32), 4)[1].shape == (0, 4)


@pytest.mark.parametrize(("name", "options"), EXHAUSTIVE)
def test_bad_input_is_an_input_error_naming_it(name: str, options: dict, corpus: np.memmap, tmp_path: Path,
                                               opened: list[VectorEngine]) -> None:
    engine = build(opened, name, tmp_path / name, corpus, 20, **options)
    with pytest.raises(InputError, match=rf"queries: shape \(4, 16\), expected \(n, {DIM}\)"):
        engine.search(unit_rows(4, 0, dim=16), 3)
    with pytest.raises(InputError, match=r"queries: shape \(32,\).*one query: pass query\[None, :\]"):
        engine.search(unit_rows(1, 0)[0], 3)
    with pytest.raises(InputError, match="queries: dtype int64, expected float32"):
        engine.search(np.ones((2, DIM), dtype=np.int64), 3)
    with pytest.raises(InputError, match=r"queries: 1 row\(s\) hold NaN or inf \(first: row 1\)"):
        engine.search(np.vstack([unit_rows(1, 0), np.full((1, DIM), np.nan, np.float32)]), 3)
    with pytest.raises(InputError, match="k must be a positive integer, got 0"):
        engine.search(unit_rows(1, 0), 0)
    with pytest.raises(InputError, match=r"add\(start=5\), but the engine holds 20 rows.*start must be 20"):
        engine.add(corpus[20:25], 5)
    with pytest.raises(InputError, match=r"added vectors: shape \(5, 8\), expected \(n, 32\)"):
        engine.add(unit_rows(5, 0, dim=8), 20)
    assert engine.count == 20
    with pytest.raises(InputError, match=r"count must be an integer in \[0, 400\].*got 401"):
        sync_engine(engine, corpus, CORPUS + 1)
    with pytest.raises(InputError, match=r"source vectors are float64, expected float32"):
        open_engine(name, tmp_path / "other", DIM, np.zeros((3, DIM)), **options)
    with pytest.raises(InputError, match="dim must be a positive integer, got 0"):
        open_engine(name, tmp_path / "other", 0, corpus, **options)


@pytest.mark.parametrize("name", [pytest.param("faiss", marks=needs_faiss), pytest.param("milvus", marks=needs_milvus)])
def test_approximate_engines_at_their_defaults_find_most_of_the_exact_top_50(name: str, tmp_path: Path,
                                                                           opened: list[VectorEngine]) -> None:
    vectors = unit_rows(4000, seed=5)
    queries = unit_rows(20, seed=6)
    options = {"kind": "hnsw"} if name == "faiss" else {}
    engine = build(opened, name, tmp_path / name, vectors, len(vectors), **options)
    _, rows = engine.search(queries, 50)
    _, expected = brute_force(vectors, queries, 50)
    recall = np.mean([len(set(found) & set(truth)) / 50 for found, truth in zip(rows, expected)])
    assert recall >= 0.9, f"{name}: recall@50 {recall:.3f} on 4000 x {DIM} random unit rows"


def test_exact_breaks_ties_by_the_lower_row_across_chunks(tmp_path: Path, opened: list[VectorEngine]) -> None:
    base = unit_rows(5, seed=7)
    vectors = np.vstack([base, base, base])  # rows r, r+5, r+10 are equal
    engine = build(opened, "exact", tmp_path, vectors, len(vectors), chunk_rows=4)
    scores, rows = engine.search(base[:2], 4)
    assert rows[0, :3].tolist() == [0, 5, 10] and rows[1, :3].tolist() == [1, 6, 11]
    scores_k1, rows_k1 = engine.search(base[:1], 1)
    assert rows_k1.tolist() == [[0]] and scores_k1[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_top_k_keeps_the_lower_columns_among_ties_at_the_cut() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5, 0.5]], dtype=np.float32)
    top_scores, columns = top_k_lowest_row_first(scores, 3)
    assert columns.tolist() == [[0, 1, 2]] and top_scores[0].tolist() == pytest.approx([0.5, 0.9, 0.5])


def test_order_hits_sorts_by_score_then_row_and_puts_padding_last() -> None:
    scores = np.array([[0.2, 0.7, 0.7, 9.0]], dtype=np.float32)
    rows = np.array([[4, 8, 3, -1]])
    ordered_scores, ordered_rows = order_hits(scores, rows, 6)
    assert ordered_rows.tolist() == [[3, 8, 4, -1, -1, -1]]
    assert ordered_scores[0, :3].tolist() == pytest.approx([0.7, 0.7, 0.2]) and np.isneginf(ordered_scores[0, 3:]).all()


def test_exact_follows_a_longer_memmap_and_keeps_rows_added_past_its_end(tmp_path: Path,
                                                                         opened: list[VectorEngine]) -> None:
    vectors = unit_rows(60, seed=8)
    short = memmap_of(tmp_path / "short.f32", vectors[:40])
    engine = build(opened, "exact", tmp_path / "exact", short, 40, chunk_rows=16)
    engine.add(vectors[40:60], 40)  # the index appended, but the engine still holds the 40-row memmap
    queries = unit_rows(4, seed=9)
    expected = brute_force(vectors, queries, 10)[1]
    np.testing.assert_array_equal(engine.search(queries, 10)[1], expected)
    sync_engine(engine, memmap_of(tmp_path / "long.f32", vectors), 60)  # the index reopened its longer memmap
    assert engine.count == 60
    np.testing.assert_array_equal(engine.search(queries, 10)[1], expected)


@needs_faiss
def test_faiss_auto_turns_into_hnsw_at_the_threshold_and_rebuilds_for_other_settings(
        corpus: np.memmap, tmp_path: Path, opened: list[VectorEngine]) -> None:
    queries = unit_rows(5, seed=10)
    engine = build(opened, "faiss", tmp_path, corpus, 150, approximate_from=200, ef_search=CORPUS)
    assert not engine.is_hnsw
    sync_engine(engine, corpus, CORPUS)
    assert engine.is_hnsw and engine.count == CORPUS
    np.testing.assert_array_equal(engine.search(queries, 10)[1], brute_force(np.asarray(corpus), queries, 10)[1])
    engine.close()
    opened.remove(engine)
    rebuilt = open_engine("faiss", tmp_path, DIM, corpus, approximate_from=200, hnsw_m=8, ef_search=CORPUS)
    opened.append(rebuilt)
    assert rebuilt.is_hnsw and rebuilt.hnsw_m == 8 and rebuilt.count == CORPUS
    np.testing.assert_array_equal(rebuilt.search(queries, 10)[1], brute_force(np.asarray(corpus), queries, 10)[1])


def test_a_missing_optional_package_names_the_extra() -> None:
    load = lazy_import("no_such_engine_package", "imaginary", "ranking")
    with pytest.raises(MissingDependencyError, match=r"pip install \"grounding\[ranking\]\""):
        load()


@needs_milvus
def test_milvus_lite_busy_in_another_process_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pymilvus

    def refuse(*args: Any, **kwargs: Any) -> None:  # what pymilvus raises while another process holds the folder
        raise pymilvus.exceptions.ConnectionConfigException(message="Open local milvus failed")

    monkeypatch.setattr(pymilvus, "MilvusClient", refuse)
    with pytest.raises(InputError, match=r"cannot open the Milvus Lite database .*milvus\.db \(Open local milvus "
                                         r"failed\); Milvus Lite serves one process at a time"):
        open_engine("milvus", tmp_path, DIM, unit_rows(3, 0))


@needs_faiss
def test_sync_without_flush_leaves_the_file_to_the_callers_flush(corpus: np.memmap, tmp_path: Path,
                                                                 opened: list[VectorEngine]) -> None:
    engine = open_engine("faiss", tmp_path, DIM, corpus)
    opened.append(engine)
    sync_engine(engine, corpus, 100, flush=False)
    assert engine.count == 100 and not (tmp_path / "faiss.index").exists()
    engine.flush()
    assert (tmp_path / "faiss.index").exists()


def test_the_engine_benchmark_runs_on_a_tiny_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grounding.ranking.engines import base

    monkeypatch.setattr(base, "_ENGINES", dict(base._ENGINES))  # its comparison-only adapters stay out of the registry
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    monkeypatch.delitem(sys.modules, "bench_engines", raising=False)  # import afresh: it registers into the copy
    import bench_engines

    out = tmp_path / "bench.json"
    assert bench_engines.main(["--corpus", "300", "--dim", "16", "--queries", "6", "--k", "5", "--recall-at", "10",
                               "--engines", "exact", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    assert result["engine"] == "exact" and result["corpus"] == 300 and result["recall@5"] == result["recall@10"] == 1
    assert bench_engines.parse_options(["faiss.ef_search=256", "milvus.index_type=FLAT"]) == {
        "faiss": {"ef_search": 256}, "milvus": {"index_type": "FLAT"}}
