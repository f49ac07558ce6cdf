"""Rank a corpus of videos for a sentence: which videos show it, and where.

- ``fit.py``: fit a checkpoint for ranking (train the retrieval heads, fit how stage 2 fuses the two stages)
- ``index.py``: the corpus index on disk (per-video clip states and coarse embeddings, appended and committed)
- ``build.py``: fill an index from a feature file or video files with a checkpoint's model
- ``scoring.py``: (query, stored video) pairs through the span scorer; the dual-softmax rescoring
- ``ranker.py``: :class:`Ranker`, stage 1 (a vector engine) then stage 2 (the span scorer on the top M)
- ``engines/``: stage 1's vector engines (exact, FAISS, Milvus)

    ranker = Ranker.from_index("indexes/world")
    ranker.rank("the red circle spins", top_videos=5)     # [RankedVideo(video_id, score, spans, ...), ...]

Measured accuracy and speed: docs/ranking.md.
"""

from typing import Any

__all__ = ["RankedVideo", "Ranker", "RankerFitSettings", "RankingSettings", "VideoIndex", "fit_ranker"]


def __getattr__(name: str) -> Any:
    # Lazy, so `grounding.ranking.engines` (numpy only) does not pay for torch.
    if name == "VideoIndex":
        from grounding.ranking.index import VideoIndex

        return VideoIndex
    if name in ("RankedVideo", "Ranker", "RankingSettings"):
        from grounding.ranking import ranker

        return getattr(ranker, name)
    if name in ("RankerFitSettings", "fit_ranker"):
        from grounding.ranking import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'grounding.ranking' has no attribute {name!r}")
