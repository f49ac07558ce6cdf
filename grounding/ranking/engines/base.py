"""The stage-1 engine contract: a search structure over the index's (N, H) float32 video embeddings.

The corpus index keeps the video embeddings in a raw float32 file opened with ``numpy.memmap``; that array is the
source of truth. An engine is a search structure on top of it: it may keep files of its own in its folder, and
is rebuilt from the array whenever it disagrees with it (:func:`sync_engine`). Rows are numbered ``0..N-1`` in
index order and only ever appended.

    engine = open_engine("faiss", index_folder / "engine-faiss", dim=256, vectors=embeddings)
    sync_engine(engine, embeddings, count=committed_rows)   # add what is missing; rebuild if it holds more
    scores, rows = engine.search(query_embeddings, k=100)   # (Q, 100) float32 descending, (Q, 100) int64
    engine.close()

Scores are inner products (cosine similarities for the unit-norm embeddings the models produce). Within each
query's hits, equal scores are ordered by the lower row first; when the engine holds fewer than ``k`` rows the
tail is padded with row ``-1`` and score ``-inf``.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np

from grounding.checks import closest
from grounding.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

PAD_ROW = -1
PAD_SCORE = -np.inf
SYNC_BATCH_ROWS = 65_536  # rows per add() while syncing: 64 MiB of float32 at H = 256


class VectorEngine(ABC):
    """A top-k inner-product search over rows ``0..count-1`` of the index's embeddings.

    Args:
        folder: where the engine keeps its own files (inside the index folder); created when missing.
        dim: the embedding width H (256 for our models; any width >= 1 works).
        vectors: the index's (N, H) float32 array, usually a ``numpy.memmap``: read to build or rebuild, and
            searched directly by engines without a copy of their own (``exact``). It may hold more rows than
            the engine (rows the index has not committed yet); :func:`sync_engine` passes the current one.
        **options: the engine's own settings, each a keyword argument of its class with a default.

    Subclasses set ``name`` (the registry name) and ``exact`` (True when every search is exhaustive), and
    implement ``count``, ``add``, ``reset`` and ``_search``. ``flush`` (make added rows durable), ``truncate``
    (drop the rows past a count without a rebuild) and ``close`` have defaults.
    """

    name: ClassVar[str]
    exact: ClassVar[bool]

    def __init__(self, folder: Path, dim: int, vectors: np.ndarray) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InputError(f"engine '{self.name}': dim must be a positive integer, got {dim!r}")
        self.folder = Path(folder)
        self.dim = int(dim)
        self.vectors = check_source(vectors, self.dim, f"engine '{self.name}'")
        self.folder.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, count={self.count}, folder='{self.folder}')"

    def __enter__(self) -> VectorEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    @abstractmethod
    def count(self) -> int:
        """How many rows the engine holds (rows ``0..count-1``); read back from its files on reopen."""

    @abstractmethod
    def add(self, vectors: np.ndarray, start: int) -> None:
        """Append rows ``start..start+n-1``: ``vectors`` (n, H) float32. ``start`` must equal :attr:`count`."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row (``count`` becomes 0); :func:`sync_engine` then re-adds them from the source array."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The engine's hits for checked queries (Q, H) float32 C-contiguous, with 1 <= k and count >= 1.

        Returns scores (Q, k') float and rows (Q, k') int, k' <= k, padding as ``-inf`` / ``-1`` allowed in any
        position; :meth:`search` orders and pads them.
        """

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows with the highest inner product for each query.

        Args:
            queries: (Q, H) float array (converted to float32), finite; Q may be 0.
            k: how many rows per query, >= 1.

        Returns:
            scores (Q, k) float32, descending along each query; rows (Q, k) int64, equal scores by lower row
            first. Positions past ``count`` hold row ``-1`` and score ``-inf``.
        """
        checked = check_matrix(queries, self.dim, f"engine '{self.name}': queries")
        k = check_k(k, f"engine '{self.name}'")
        if self.count == 0 or len(checked) == 0:
            return padded(len(checked), k)
        scores, rows = self._search(checked, k)
        return order_hits(scores, rows, k)

    def attach(self, vectors: np.ndarray) -> None:
        """Use ``vectors`` (N, H) float32 as the source array from now on (the index reopened a longer memmap)."""
        self.vectors = check_source(vectors, self.dim, f"engine '{self.name}'")

    def truncate(self, count: int) -> bool:
        """Drop rows ``count..`` in place when the engine can; False means it cannot (the caller resets instead)."""
        return False

    def flush(self) -> None:
        """Make every added row durable in the engine's files (the default: they already are)."""

    def close(self) -> None:
        """Flush and release files, threads and servers; the engine is not used afterwards."""
        self.flush()

    def _check_add(self, vectors: np.ndarray, start: int) -> np.ndarray:
        """The checked (n, H) float32 block for :meth:`add`; ``start`` must be the current count."""
        checked = check_matrix(vectors, self.dim, f"engine '{self.name}': added vectors")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start != self.count:
            raise InputError(
                f"engine '{self.name}': add(start={start!r}), but the engine holds {self.count} rows; rows are "
                f"appended in order, so start must be {self.count} (sync_engine does this for you)"
            )
        return checked


def check_source(vectors: np.ndarray, dim: int, what: str) -> np.ndarray:
    """The index's (N, H) float32 source array, unchanged (no copy: it may be a large memmap)."""
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape[1] != dim:
        shape = getattr(vectors, "shape", type(vectors).__name__)
        raise InputError(f"{what}: the source vectors must be an (N, {dim}) array, got {shape}; open the index's "
                         "embedding file as numpy.memmap(path, dtype='<f4', mode='r', shape=(N, dim))")
    if vectors.dtype != np.float32:
        raise InputError(f"{what}: the source vectors are {vectors.dtype}, expected float32; the index stores "
                         "little-endian float32 (dtype='<f4')")
    return vectors


def check_matrix(array: Any, dim: int, what: str) -> np.ndarray:
    """``array`` as a C-contiguous (n, ``dim``) float32 ndarray, or InputError naming ``what``.

    Accepts any real floating dtype (float16/32/64; converted); refuses integers, bools, objects, other shapes
    and NaN or infinite values.
    """
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except (TypeError, ValueError) as error:
            raise InputError(f"{what}: expected an (n, {dim}) float32 array, got {type(array).__name__} ({error})")
    if array.dtype.kind != "f":
        raise InputError(f"{what}: dtype {array.dtype}, expected float32 embeddings; convert with "
                         ".astype(np.float32) if these really are embeddings")
    if array.ndim != 2 or array.shape[1] != dim:
        hint = " (one query: pass query[None, :])" if array.ndim == 1 else ""
        raise InputError(f"{what}: shape {array.shape}, expected (n, {dim}){hint}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(f"{what}: {len(bad)} row(s) hold NaN or inf (first: row {bad[0]}); re-encode them")
    return array


def check_k(k: Any, what: str) -> int:
    """``k`` as a positive int, or InputError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"{what}: k must be a positive integer, got {k!r}")
    return int(k)


def padded(num_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (Q, k) float32 all ``-inf`` and rows (Q, k) int64 all ``-1``: no hit at all."""
    return np.full((num_queries, k), PAD_SCORE, dtype=np.float32), np.full((num_queries, k), PAD_ROW, np.int64)


def order_hits(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's hits sorted by score descending then row ascending, padding last, cut or padded to ``k``.

    scores (Q, m) float, rows (Q, m) int (``-1`` marks padding, whatever its score). Returns scores (Q, k)
    float32 and rows (Q, k) int64.
    """
    scores = np.asarray(scores, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    scores = np.where(rows < 0, PAD_SCORE, scores)
    rows = np.where(rows < 0, np.iinfo(np.int64).max, rows)  # padding sorts after every real row of equal score
    order = np.lexsort((rows, -scores), axis=1)
    scores = np.take_along_axis(scores, order, axis=1)[:, :k]
    rows = np.take_along_axis(rows, order, axis=1)[:, :k]
    rows[rows == np.iinfo(np.int64).max] = PAD_ROW
    if scores.shape[1] < k:
        extra_scores, extra_rows = padded(len(scores), k - scores.shape[1])
        scores, rows = np.hstack([scores, extra_scores]), np.hstack([rows, extra_rows])
    return scores, rows


def sync_engine(engine: VectorEngine, vectors: np.ndarray, count: int, *, batch_rows: int = SYNC_BATCH_ROWS,
                flush: bool = True) -> None:
    """Make ``engine`` hold exactly rows ``0..count-1`` of ``vectors``, then (``flush``) make that durable.

    An interrupted add can leave the engine with fewer rows than the index committed (the missing ones are
    added) or more (the extra ones are dropped with :meth:`VectorEngine.truncate` where the engine can, else the
    engine is reset and rebuilt from ``vectors``). Rows are read ``batch_rows`` at a time, so a memmap is never
    loaded whole.

    Args:
        engine: an open engine.
        vectors: the index's (N, H) float32 array, N >= count; becomes the engine's source array.
        count: the rows the index has committed.
        batch_rows: rows per :meth:`VectorEngine.add` call.
        flush: call :meth:`VectorEngine.flush` at the end (default). The faiss engine rewrites its whole file on a
            flush, so a caller appending many small batches may pass False and flush once.
    """
    engine.attach(vectors)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= len(vectors):
        raise InputError(f"sync_engine: count must be an integer in [0, {len(vectors)}] (the rows of the source "
                         f"vectors), got {count!r}")
    if batch_rows < 1:
        raise InputError(f"sync_engine: batch_rows must be >= 1, got {batch_rows}")
    if engine.count > count:
        extra = engine.count - count
        if engine.truncate(int(count)):
            logger.info("engine '%s': dropped %d uncommitted row(s) past row %d", engine.name, extra, count)
        else:
            logger.warning("engine '%s' holds %d row(s) past the %d committed ones and cannot drop them; "
                           "rebuilding it from the index's vectors", engine.name, extra, count)
            engine.reset()
    for start in range(engine.count, int(count), batch_rows):
        stop = min(start + batch_rows, int(count))
        engine.add(vectors[start:stop], start)
    if flush:
        engine.flush()


# -- the registry -------------------------------------------------------------------------------------------------

EngineT = TypeVar("EngineT", bound=type[VectorEngine])
_ENGINES: dict[str, type[VectorEngine]] = {}


def register_engine(cls: EngineT) -> EngineT:
    """Class decorator: make ``cls`` openable by :func:`open_engine` under ``cls.name``."""
    _ENGINES[cls.name] = cls
    return cls


def list_engines() -> list[str]:
    """The registered engine names, sorted."""
    return sorted(_ENGINES)


def engine_options(name: str) -> dict[str, Any]:
    """An engine's options and their defaults (its constructor's keyword-only arguments)."""
    parameters = inspect.signature(_engine_class(name).__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def open_engine(name: str, folder: Path, dim: int, vectors: np.ndarray, **options: Any) -> VectorEngine:
    """Open (or create) the engine ``name`` in ``folder``; see :class:`VectorEngine` for the arguments.

    An unknown name, or an option the engine does not have, is a ConfigError listing what exists. The engine
    is not synced: call :func:`sync_engine` with the index's committed row count next.
    """
    cls = _engine_class(name)
    known = engine_options(name)
    for option in options:
        if option not in known:
            close = closest(option, list(known))
            hint = f" (did you mean '{close}'?)" if close else ""
            raise ConfigError(f"engine '{name}' has no option '{option}'{hint}; its options: "
                              f"{', '.join(f'{key}={value!r}' for key, value in known.items()) or 'none'}")
    return cls(Path(folder), dim, vectors, **options)


def _engine_class(name: str) -> type[VectorEngine]:
    if name not in _ENGINES:
        close = closest(str(name), list(_ENGINES))
        hint = f" (did you mean '{close}'?)" if close else ""
        raise ConfigError(f"unknown vector engine {name!r}{hint}; known engines: {', '.join(list_engines())}")
    return _ENGINES[name]


def lazy_import(module: str, engine: str, extra: str) -> Callable[[], Any]:
    """A function that imports the optional ``module`` on first call, or raises the error naming ``extra``."""
    loaded: list[Any] = []

    def load() -> Any:
        if not loaded:
            from importlib import import_module

            from grounding.errors import require_package

            require_package(module, f"the '{engine}' vector engine", extra)
            loaded.append(import_module(module))
        return loaded[0]

    return load
