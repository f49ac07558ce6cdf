"""Stage-1 vector engines: the top M videos of a corpus for a query embedding, by inner product.

- ``exact``: exhaustive search over the index's memmap, a chunk at a time (numpy only; no files)
- ``faiss``: FAISS's flat index below 50k rows, its HNSW graph above (``pip install "grounding[ranking]"``)
- ``milvus``: a Milvus collection; Milvus Lite in the engine's folder, or a server (``grounding[ranking]``)

    engine = open_engine("faiss", folder, dim=256, vectors=memmap)
    sync_engine(engine, memmap, count)
    scores, rows = engine.search(queries, k=100)

Which to choose, their options and measured speed and recall: docs/ranking-engines.md.
"""

from grounding.ranking.engines.base import (
    VectorEngine,
    engine_options,
    list_engines,
    open_engine,
    order_hits,
    register_engine,
    sync_engine,
)
from grounding.ranking.engines.exact import ExactEngine
from grounding.ranking.engines.faiss_engine import FaissEngine
from grounding.ranking.engines.milvus_engine import MilvusEngine

__all__ = [
    "ExactEngine",
    "FaissEngine",
    "MilvusEngine",
    "VectorEngine",
    "engine_options",
    "list_engines",
    "open_engine",
    "order_hits",
    "register_engine",
    "sync_engine",
]
