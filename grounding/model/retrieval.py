"""The coarse retrieval embeddings of :class:`~grounding.model.GroundingModel` (stage 1 of :mod:`grounding.ranking`).

A video's embedding pools what the model knows of the whole video without a query: its clip states (the output of
``encode_clips``) and, with ``config.video_embedding_features``, its input clip features too, each by
``config.video_embedding_pooling`` (the mean, or the mean and the max); the pooled vector is projected to the
hidden size and normalised. A query's embedding is an attention pool of its word states, projected and
normalised. Grounding never uses either: they exist so that a corpus can be searched with one matrix product
before the span scorer reranks the best videos.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from grounding.errors import InputError
from grounding.model.config import GroundingConfig
from grounding.model.layers import FeatureStandardizer
from grounding.model.spans import masked_attention_pool


def pooled_video_width(config: GroundingConfig) -> int:
    """Width of :meth:`RetrievalEmbeddings.pool_video`'s output for ``config``."""
    per_pooling = 2 if config.video_embedding_pooling == "mean-max" else 1
    features = config.input_dim if config.video_embedding_features else 0
    return per_pooling * (config.hidden_size + features)


def retrieval_heads(config: GroundingConfig) -> dict[str, nn.Module]:
    """The modules the embeddings need, by attribute name: ``video_projection``, ``query_pool``,
    ``query_projection`` and, with input features pooled, ``video_embedding_standardizer``."""
    hidden = config.hidden_size
    heads: dict[str, nn.Module] = {
        "video_projection": nn.Linear(pooled_video_width(config), hidden),
        "query_pool": nn.Linear(hidden, 1, bias=False),  # softmax logits: a bias would cancel
        "query_projection": nn.Linear(hidden, hidden),
    }
    if config.video_embedding_features:
        heads["video_embedding_standardizer"] = FeatureStandardizer(pooled_video_width(config))
    return heads


def _pool(values: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """(B, T, C) -> (B, C) masked mean, or (B, 2C) mean and max."""
    uniform = torch.zeros_like(mask, dtype=values.dtype)  # equal logits: a masked mean
    pooled = masked_attention_pool(values, mask, uniform)
    if pooling == "mean-max":
        peak = values.masked_fill(~mask[..., None], -torch.inf).amax(dim=1)
        pooled = torch.cat([pooled, peak], dim=-1)
    return pooled


class RetrievalEmbeddings:
    """Mixin of :class:`~grounding.model.GroundingModel`: the stage-1 embeddings (see the module doc)."""

    config: GroundingConfig
    clip_standardizer: FeatureStandardizer
    video_projection: nn.Linear
    query_pool: nn.Linear
    query_projection: nn.Linear

    def embed_video(self, clip_states: Tensor, clip_mask: Tensor, clip_feats: Tensor | None = None) -> Tensor:
        """The coarse retrieval embedding of encoded videos.

        Args:
            clip_states: (B, T, H) from :meth:`encode_clips`.
            clip_mask: (B, T) bool, True = real clip.
            clip_feats: (B, T, D) the input clip features the states were encoded from; needed (and only read)
                when ``config.video_embedding_features``.

        Returns:
            (B, H) float, unit-norm (stage 1 of :mod:`grounding.ranking` compares it with :meth:`embed_query`).

        Raises:
            InputError: ``clip_feats`` missing while the config pools them.
        """
        return self.project_video(self.pool_video(clip_states, clip_mask, clip_feats))

    def pool_video(self, clip_states: Tensor, clip_mask: Tensor, clip_feats: Tensor | None = None) -> Tensor:
        """The first half of :meth:`embed_video`, without parameters: (B, T, H) [+ (B, T, D)] ->
        (B, :func:`pooled_video_width`)."""
        pooling = self.config.video_embedding_pooling
        pooled = _pool(clip_states, clip_mask, pooling)
        if not self.config.video_embedding_features:
            return pooled
        if clip_feats is None:
            raise InputError(
                "this model's video embedding also pools its input clip features (video_embedding_features); pass "
                "clip_feats to embed_video"
            )
        standardized = self.clip_standardizer(clip_feats).masked_fill(~clip_mask[..., None], 0.0)
        return torch.cat([pooled, _pool(standardized, clip_mask, pooling)], dim=-1)

    def project_video(self, pooled: Tensor, dropout: float = 0.0) -> Tensor:
        """The second half of :meth:`embed_video`: pooled vectors -> (B, H) unit-norm embedding. ``dropout`` drops
        that share of the (standardised) pooled values first, as ``grounding fit-ranker`` trains the heads."""
        if self.config.video_embedding_features:
            pooled = self.video_embedding_standardizer(pooled)
        if dropout > 0:
            pooled = F.dropout(pooled, dropout, training=True)
        return F.normalize(self.video_projection(pooled), dim=-1)

    def embed_query(self, word_states: Tensor, word_mask: Tensor) -> Tensor:
        """The coarse retrieval embedding of encoded queries: an attention pool of the word states, projected.

        Args:
            word_states: (B, L, H) from :meth:`encode_query`.
            word_mask: (B, L) bool, True = real word.

        Returns:
            (B, H) float, unit-norm.
        """
        pooled = masked_attention_pool(word_states, word_mask, self.query_pool(word_states).squeeze(-1))
        return F.normalize(self.query_projection(pooled), dim=-1)
