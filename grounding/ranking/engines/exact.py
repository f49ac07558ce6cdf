"""``exact``: every query against every row, straight from the index's memmap, a bounded chunk at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grounding.errors import InputError
from grounding.ranking.engines.base import VectorEngine, order_hits, register_engine

SCORE_BLOCK_ELEMENTS = 1 << 22  # at most 4 Mi scores (16 MiB of float32) per chunk, whatever Q is


@register_engine
class ExactEngine(VectorEngine):
    """Exhaustive inner-product search over the source array; the reference every other engine is tested against.

    The engine has no files: it holds the source array (the index's memmap) and a row count. On open it holds
    every row of that array (:func:`~grounding.ranking.engines.sync_engine` drops uncommitted ones for free).
    Rows added past the end of the source array (the index grew but the engine was not re-attached) are kept
    in memory until :meth:`attach` hands it a source array that covers them.

    Args:
        chunk_rows: rows scored per step (default 65,536: 64 MiB of float32 at H = 256, read from the memmap);
            lowered so that a step's (Q, rows) score block stays under 16 MiB (its top-k selection needs about
            three times that again). Peak memory is one chunk, never the corpus; the memmap pages a search reads
            count in the resident size but are the kernel's file cache, dropped under memory pressure.

    Search cost is O(count * H) per query (measured: docs/ranking-engines.md).
    Ties are broken by the lower row, exactly, across chunks.
    """

    name = "exact"
    exact = True

    def __init__(self, folder: Path, dim: int, vectors: np.ndarray, *, chunk_rows: int = 65_536) -> None:
        super().__init__(folder, dim, vectors)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InputError(f"engine 'exact': chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.chunk_rows = chunk_rows
        self._count = len(self.vectors)
        self._extra: list[np.ndarray] = []  # rows len(vectors).. that the source array does not cover yet

    @property
    def count(self) -> int:
        return self._count

    def add(self, vectors: np.ndarray, start: int) -> None:
        """Count rows ``start..start+n-1`` in; any of them past the source array's end are copied into memory."""
        checked = self._check_add(vectors, start)
        covered = max(0, min(len(self.vectors) - start, len(checked)))
        if covered < len(checked):
            self._extra.append(checked[covered:].copy())
        self._count += len(checked)

    def reset(self) -> None:
        self._count = 0
        self._extra = []

    def truncate(self, count: int) -> bool:
        if count < len(self.vectors):
            self._extra = []
        else:
            extra = np.concatenate(self._extra) if self._extra else np.empty((0, self.dim), np.float32)
            kept = extra[: count - len(self.vectors)]
            self._extra = [kept] if len(kept) else []
        self._count = min(self._count, count)
        return True

    def attach(self, vectors: np.ndarray) -> None:
        """Search ``vectors`` from now on; in-memory rows it covers are dropped, and rows neither covers are lost."""
        old_length = len(self.vectors)
        extra = np.concatenate(self._extra) if self._extra else np.empty((0, self.dim), np.float32)
        super().attach(vectors)
        if len(self.vectors) >= old_length:
            kept = extra[len(self.vectors) - old_length:]
            self._extra = [kept] if len(kept) else []
            self._count = min(self._count, len(self.vectors) + len(kept))
        else:  # a shorter source: the in-memory rows no longer follow it
            self._extra = []
            self._count = min(self._count, len(self.vectors))

    def _blocks(self) -> list[tuple[int, np.ndarray]]:
        """(first row, (n, H) array) for the rows 0..count-1: the source array's part, then the in-memory one."""
        blocks = [(0, self.vectors[: min(self._count, len(self.vectors))])]
        if self._extra:
            blocks.append((len(self.vectors), np.concatenate(self._extra)))
        return blocks

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        step = max(1, min(self.chunk_rows, SCORE_BLOCK_ELEMENTS // len(queries)))
        best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        best_rows = np.full((len(queries), 0), -1, dtype=np.int64)
        for first, block in self._blocks():
            for offset in range(0, len(block), step):
                chunk = np.asarray(block[offset: offset + step], dtype=np.float32)
                scores = queries @ chunk.T  # (Q, rows in chunk)
                top_scores, top_rows = top_k_lowest_row_first(scores, k)
                merged_scores = np.hstack([best_scores, top_scores])
                merged_rows = np.hstack([best_rows, top_rows + (first + offset)])
                best_scores, best_rows = order_hits(merged_scores, merged_rows, min(k, merged_rows.shape[1]))
        return best_scores, best_rows


def top_k_lowest_row_first(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row of ``scores`` (Q, n), unsorted; equal scores at the cut keep lower columns.

    Returns scores (Q, min(k, n)) float32 and columns (Q, min(k, n)) int64. Uses ``np.partition`` for the k-th
    best value, then takes every column above it and the first columns equal to it, so the choice does not
    depend on how the partition happened to order ties.
    """
    count = scores.shape[1]
    if count <= k:
        return scores.astype(np.float32, copy=False), np.broadcast_to(np.arange(count), scores.shape).copy()
    kth = np.partition(scores, count - k, axis=1)[:, count - k, None]  # (Q, 1): the k-th highest score
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(axis=1, keepdims=True)  # how many tied columns each query still takes
    if (tied.sum(axis=1, keepdims=True) > room).any():  # more ties than room somewhere: the first ones win
        take = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))
    else:  # the usual case: exactly the k-th score ties with nothing
        take = above | tied
    columns = np.nonzero(take)[1].reshape(len(scores), k)  # row-major: each query's k columns, ascending
    return np.take_along_axis(scores, columns, axis=1).astype(np.float32, copy=False), columns.astype(np.int64)
