"""``faiss``: FAISS's exact flat index for small corpora, its HNSW graph for large ones (extra ``ranking``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from grounding.checks import check_choice, check_int
from grounding.files import atomic_path
from grounding.ranking.engines.base import VectorEngine, lazy_import, register_engine

logger = logging.getLogger(__name__)
_faiss = lazy_import("faiss", "faiss", "ranking")

INDEX_FILE = "faiss.index"
KINDS = ("auto", "flat", "hnsw")
REBUILD_BATCH_ROWS = 65_536


@register_engine
class FaissEngine(VectorEngine):
    """Inner-product search with ``faiss-cpu``: ``IndexFlatIP`` (exact) or ``IndexHNSWFlat`` (approximate).

    The index lives in ``<folder>/faiss.index``, written with ``faiss.write_index`` (FAISS's own binary format,
    no pickle) through a temporary file and a rename, by :meth:`flush` and :meth:`close`; rows added since the
    last flush are lost by a crash and re-added by :func:`~grounding.ranking.engines.sync_engine`. Everything
    the engine needs on reopen (kind, width, rows, HNSW settings) is read back from that file.

    Args:
        kind: ``"flat"`` (always exact), ``"hnsw"`` (always the graph) or ``"auto"`` (default: flat below
            ``approximate_from`` rows, converted to HNSW by the add that reaches it; it stays HNSW after).
        approximate_from: the row count at which ``auto`` switches to HNSW (default 50,000; the measurements behind
            it: docs/ranking-engines.md).
        hnsw_m: HNSW neighbours per node (faiss's ``M``; default 32). Memory: about 8 * M bytes per row on top
            of the 4 * H bytes of the vector.
        ef_construction: HNSW candidate list while adding (default 80); higher builds slower and finds more.
        ef_search: HNSW candidate list while searching (default 128); each search uses ``max(ef_search, 2 * k)``.
            Recall and latency both rise with it; measure with ``benchmarks/bench_engines.py``.

    Scores are exact inner products of the returned rows (HNSW keeps the full vectors); only which rows come
    back is approximate. When the file's HNSW settings differ from the options, or its width from ``dim``, the
    engine rebuilds itself from the source array (logged as a warning).
    """

    name = "faiss"
    exact = False

    def __init__(self, folder: Path, dim: int, vectors: np.ndarray, *, kind: str = "auto",
                 approximate_from: int = 50_000, hnsw_m: int = 32, ef_construction: int = 80,
                 ef_search: int = 128) -> None:
        super().__init__(folder, dim, vectors)
        check_choice("faiss kind", kind, KINDS)
        check_int("faiss approximate_from", approximate_from, 1)
        check_int("faiss hnsw_m", hnsw_m, 2, 512)
        check_int("faiss ef_construction", ef_construction, 1)
        check_int("faiss ef_search", ef_search, 1)
        self.kind, self.approximate_from = kind, approximate_from
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.faiss = _faiss()
        self.path = self.folder / INDEX_FILE
        self._dirty = False
        self._index = self._load()

    @property
    def count(self) -> int:
        return int(self._index.ntotal)

    @property
    def is_hnsw(self) -> bool:
        """Whether the index is the HNSW graph (else the exact flat index)."""
        return isinstance(self._index, self.faiss.IndexHNSWFlat)

    def add(self, vectors: np.ndarray, start: int) -> None:
        checked = self._check_add(vectors, start)
        if not self.is_hnsw and self._wants_hnsw(self.count + len(checked)):
            self._index = self._converted_to_hnsw()
        self._index.add(checked)
        self._dirty = True

    def reset(self) -> None:
        self._index = self._empty(hnsw=self._wants_hnsw(0))
        self._dirty = True

    def truncate(self, count: int) -> bool:
        """Flat indexes drop rows in place; an HNSW graph cannot, so the caller rebuilds it."""
        if self.is_hnsw:
            return False
        self._index.remove_ids(self.faiss.IDSelectorRange(count, self.count))
        self._dirty = True
        return True

    def flush(self) -> None:
        if self._dirty:
            with atomic_path(self.path) as temporary:
                self.faiss.write_index(self._index, str(temporary))
            self._dirty = False

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.count)
        if self.is_hnsw:
            parameters = self.faiss.SearchParametersHNSW(efSearch=max(self.ef_search, 2 * k))
            return self._index.search(queries, k, params=parameters)
        return self._index.search(queries, k)

    # -- building ------------------------------------------------------------------------------------------------

    def _wants_hnsw(self, count: int) -> bool:
        return self.kind == "hnsw" or (self.kind == "auto" and count >= self.approximate_from)

    def _empty(self, hnsw: bool) -> Any:
        if not hnsw:
            return self.faiss.IndexFlatIP(self.dim)
        index = self.faiss.IndexHNSWFlat(self.dim, self.hnsw_m, self.faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _converted_to_hnsw(self) -> Any:
        """A new HNSW index holding the current rows, read from the flat index a batch at a time."""
        logger.info("engine 'faiss': building the HNSW graph over %d rows (kind=%s)", self.count, self.kind)
        index = self._empty(hnsw=True)
        for start in range(0, self.count, REBUILD_BATCH_ROWS):
            index.add(self._index.reconstruct_n(start, min(REBUILD_BATCH_ROWS, self.count - start)))
        return index

    def _load(self) -> Any:
        """The index in the folder, rebuilt when its settings differ from the options; a new one when none."""
        if not self.path.exists():
            return self._empty(hnsw=self._wants_hnsw(0))
        try:
            index = self.faiss.read_index(str(self.path))
        except RuntimeError as error:
            logger.warning("engine 'faiss': %s is unreadable (%s); starting empty, sync_engine rebuilds it",
                           self.path, str(error).splitlines()[0] if str(error) else type(error).__name__)
            self._dirty = True
            return self._empty(hnsw=self._wants_hnsw(0))
        problem = self._mismatch(index)
        if problem is None:
            return index
        logger.warning("engine 'faiss': %s %s; rebuilding it from the index's vectors", self.path, problem)
        self._dirty = True
        self._index = self._empty(hnsw=self._wants_hnsw(0))
        rows = min(int(index.ntotal), len(self.vectors)) if index.d == self.dim else 0
        for start in range(0, rows, REBUILD_BATCH_ROWS):
            block = np.ascontiguousarray(self.vectors[start: min(start + REBUILD_BATCH_ROWS, rows)])
            self.add(block, start)
        return self._index

    def _mismatch(self, index: Any) -> str | None:
        """Why the file's index cannot serve these options, or None when it can."""
        if index.d != self.dim:
            return f"holds vectors of width {index.d}, not {self.dim}"
        if index.metric_type != self.faiss.METRIC_INNER_PRODUCT:
            return "does not use the inner-product metric"
        if isinstance(index, self.faiss.IndexHNSWFlat):
            if self.kind == "flat":
                return "is an HNSW index, but kind='flat'"
            stored_m = int(index.hnsw.nb_neighbors(1))
            if (stored_m, int(index.hnsw.efConstruction)) != (self.hnsw_m, self.ef_construction):
                return (f"was built with hnsw_m={stored_m}, ef_construction={index.hnsw.efConstruction}, not "
                        f"{self.hnsw_m}, {self.ef_construction}")
            index.hnsw.efSearch = self.ef_search
            return None
        if isinstance(index, self.faiss.IndexFlatIP):
            if self._wants_hnsw(int(index.ntotal)):
                return f"is a flat index of {index.ntotal} rows, but kind='{self.kind}' asks for HNSW"
            return None
        return f"holds a {type(index).__name__}, which this engine does not build"
