"""``milvus``: a Milvus collection, through ``pymilvus.MilvusClient``; Milvus Lite (in process) by default.

The same client calls work against a Milvus server or cluster: pass ``uri="http://host:19530"`` (and ``token``
where the server needs one) instead of the local database in the engine's folder. How a corpus sharded over
several machines is queried and merged: docs/ranking-engines.md.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from grounding.checks import check_choice, check_int
from grounding.errors import InputError
from grounding.ranking.engines.base import VectorEngine, lazy_import, register_engine

logger = logging.getLogger(__name__)
_pymilvus = lazy_import("pymilvus", "milvus", "ranking")

DATABASE = "milvus.db"  # Milvus Lite's folder inside the engine folder
ROW_FIELD, VECTOR_FIELD = "row", "embedding"
INDEX_TYPES = ("HNSW", "FLAT")
MAX_K = 16_384  # Milvus's largest search limit

_local_users: dict[str, int] = {}  # Milvus Lite database path -> open engines using its in-process server
_local_lock = threading.Lock()


@register_engine
class MilvusEngine(VectorEngine):
    """Rows in a Milvus collection: primary key ``row`` (int64, the index row number), vector ``embedding``.

    Locally the data lives in ``<folder>/milvus.db`` (a folder of Parquet segments, FAISS index files and an
    Arrow write-ahead log; nothing pickled), served by Milvus Lite's in-process gRPC server on a loopback port,
    started on open and stopped when the last engine on that folder closes. Every add is durable when it
    returns (the write-ahead log); :meth:`flush` also seals the rows into segments and indexes them.

    Args:
        index_type: ``"HNSW"`` (default; approximate) or ``"FLAT"`` (exact).
        hnsw_m: HNSW neighbours per node (Milvus's ``M``; default 32).
        ef_construction: HNSW candidate list while building (default 80).
        ef_search: HNSW candidate list while searching (default 128); each search uses ``max(ef_search, 2 * k)``.
        collection: the collection's name (default ``"videos"``).
        insert_batch: rows per insert call (default 5,000; a call's message must stay under gRPC's 64 MiB).
        uri: a Milvus server's address instead of the local database (default None: Milvus Lite in ``folder``).
        token: the server's credentials ("user:password" or an API key), with ``uri`` only.

    ``k`` is at most 16,384 (Milvus's limit). The index settings are the collection's: reopening with other
    settings drops and rebuilds the collection (logged), as :func:`~grounding.ranking.engines.sync_engine` then
    re-adds the rows.
    """

    name = "milvus"
    exact = False

    def __init__(self, folder: Path, dim: int, vectors: np.ndarray, *, index_type: str = "HNSW",
                 hnsw_m: int = 32, ef_construction: int = 80, ef_search: int = 128, collection: str = "videos",
                 insert_batch: int = 5_000, uri: str | None = None, token: str | None = None) -> None:
        super().__init__(folder, dim, vectors)
        check_choice("milvus index_type", index_type, INDEX_TYPES)
        check_int("milvus hnsw_m", hnsw_m, 2, 2048)
        check_int("milvus ef_construction", ef_construction, 1)
        check_int("milvus ef_search", ef_search, 1)
        check_int("milvus insert_batch", insert_batch, 1)
        if not isinstance(collection, str) or not collection.replace("_", "").isalnum() or collection[0].isdigit():
            raise InputError(f"engine 'milvus': collection must be letters, digits and '_' (not starting with a "
                             f"digit), got {collection!r}")
        self.index_type, self.hnsw_m, self.ef_construction = index_type, hnsw_m, ef_construction
        self.ef_search, self.collection, self.insert_batch = ef_search, collection, insert_batch
        self.pymilvus = _pymilvus()
        self._local = None if uri else str((self.folder / DATABASE).resolve())
        self.client = self._connect(uri, token)
        self._closed = False
        self._count = self._open_collection()

    @property
    def count(self) -> int:
        return self._count

    def add(self, vectors: np.ndarray, start: int) -> None:
        checked = self._check_add(vectors, start)
        for offset in range(0, len(checked), self.insert_batch):
            block = checked[offset: offset + self.insert_batch]
            first = start + offset
            self.client.insert(self.collection, [{ROW_FIELD: first + i, VECTOR_FIELD: row}
                                                 for i, row in enumerate(block)])
            self._count = first + len(block)

    def reset(self) -> None:
        self.client.drop_collection(self.collection)
        self._create_collection()
        self._count = 0

    def truncate(self, count: int) -> bool:
        """Delete the rows ``count..`` by primary key (Milvus deletes in place)."""
        self.client.delete(self.collection, filter=f"{ROW_FIELD} >= {int(count)}")
        self._count = self._stored_count()
        return self._count == count

    def flush(self) -> None:
        if not self._closed:
            self.client.flush(self.collection)

    def close(self) -> None:
        """Flush, close the client and, for Milvus Lite, stop the in-process server once no engine uses it."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self.client.close()
            if self._local is not None:
                with _local_lock:
                    _local_users[self._local] -= 1
                    last = _local_users[self._local] == 0
                    if last:
                        del _local_users[self._local]
                if last:
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(self._local)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k > MAX_K:
            raise InputError(f"engine 'milvus': k={k}, but Milvus returns at most {MAX_K} rows per query; "
                             "ask for fewer, or use the 'exact' or 'faiss' engine")
        k = min(k, self._count)
        parameters: dict[str, Any] = {"metric_type": "IP", "params": {}}
        if self.index_type == "HNSW":
            parameters["params"]["ef"] = max(self.ef_search, 2 * k)
        results = self.client.search(self.collection, data=list(queries), limit=k, anns_field=VECTOR_FIELD,
                                     search_params=parameters, output_fields=[ROW_FIELD])
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for query, hits in enumerate(results):
            for position, hit in enumerate(hits[:k]):
                scores[query, position] = hit["distance"]  # for metric IP, Milvus's "distance" is the product
                rows[query, position] = hit[ROW_FIELD]
        return scores, rows

    # -- the collection -------------------------------------------------------------------------------------------

    def _connect(self, uri: str | None, token: str | None) -> Any:
        if uri is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _local_lock:
                _local_users[self._local] = _local_users.get(self._local, 0) + 1
            try:
                return self.pymilvus.MilvusClient(self._local)
            except self.pymilvus.exceptions.MilvusException as error:
                with _local_lock:
                    _local_users[self._local] -= 1
                raise InputError(
                    f"engine 'milvus': cannot open the Milvus Lite database {self._local} ({error.message}); "
                    "Milvus Lite serves one process at a time: close the other one, or run a Milvus server and "
                    "pass uri=..."
                ) from None
        return self.pymilvus.MilvusClient(uri=uri, token=token or "")

    def _index_params(self) -> Any:
        params = self.client.prepare_index_params()
        build = {"M": self.hnsw_m, "efConstruction": self.ef_construction} if self.index_type == "HNSW" else {}
        params.add_index(field_name=VECTOR_FIELD, index_type=self.index_type, metric_type="IP", params=build)
        return params

    def _create_collection(self) -> None:
        DataType = self.pymilvus.DataType
        schema = self.pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ROW_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
        self.client.create_collection(self.collection, schema=schema, consistency_level="Strong")
        # sync=False: pymilvus would wait through AllocTimestamp, which Milvus Lite does not implement (it logs
        # a server-side traceback and sleeps); Milvus Lite builds the index as segments are sealed anyway.
        self.client.create_index(self.collection, self._index_params(), sync=False)
        self.client.load_collection(self.collection)

    def _open_collection(self) -> int:
        """The collection's row count after loading it; created, or rebuilt when its settings differ."""
        if not self.client.has_collection(self.collection):
            self._create_collection()
            return 0
        problem = self._mismatch()
        if problem is not None:
            logger.warning("engine 'milvus': collection '%s' %s; dropping it, sync_engine rebuilds it",
                           self.collection, problem)
            self.client.drop_collection(self.collection)
            self._create_collection()
            return 0
        self.client.load_collection(self.collection)
        return self._stored_count()

    def _mismatch(self) -> str | None:
        fields = {field["name"]: field for field in self.client.describe_collection(self.collection)["fields"]}
        vector = fields.get(VECTOR_FIELD)
        if ROW_FIELD not in fields or vector is None:
            return f"lacks the fields '{ROW_FIELD}' and '{VECTOR_FIELD}'"
        width = int(vector.get("params", {}).get("dim", -1))
        if width != self.dim:
            return f"holds vectors of width {width}, not {self.dim}"
        index = self.client.describe_index(self.collection, VECTOR_FIELD)
        stored = (index.get("index_type"), index.get("metric_type"))
        if stored != (self.index_type, "IP"):
            return f"has index {stored}, not ({self.index_type!r}, 'IP')"
        if self.index_type == "HNSW":
            built = (int(index.get("M", self.hnsw_m)), int(index.get("efConstruction", self.ef_construction)))
            if built != (self.hnsw_m, self.ef_construction):
                return f"was built with M, efConstruction = {built}, not {(self.hnsw_m, self.ef_construction)}"
        return None

    def _stored_count(self) -> int:
        result = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])
