"""Cross-modal graph matching (VLG-Net): clips and words of a sample as one graph.

Each node is updated from three kinds of edges: ordering edges to its sequence neighbours, semantic edges to
its kNN within its own modality, and matching edges to every node of the other modality, weighted by a masked
bidirectional attention. The matching edges are dense (T x L per sample, batched matrix products); the
intra-modal edges go through message passing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from grounding.model.layers.gcnext import GroupedLinear, OrderingConv, edge_softmax, knn_edges, scatter_sum


class BottleneckMLP(nn.Module):
    r"""``Linear(in, W) -> relu -> GroupedLinear(W, W) -> relu -> Linear(W, out)`` with ``W = groups * width_per_group``.

    Shapes:
        - input: (*, in_features)
        - output: (*, out_features)
    """

    def __init__(self, in_features: int, out_features: int, groups: int, width_per_group: int) -> None:
        super().__init__()
        width = groups * width_per_group
        self.reduce = nn.Linear(in_features, width)
        self.grouped = GroupedLinear(width, width, groups)
        self.expand = nn.Linear(width, out_features)

    def reset_parameters(self) -> None:
        self.reduce.reset_parameters()
        self.grouped.reset_parameters()
        self.expand.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(torch.relu(self.grouped(torch.relu(self.reduce(x)))))


class ModalityGraphUpdate(nn.Module):
    r"""One modality's node update in graph matching.

    .. math::
        x_i' = \mathrm{LayerNorm}\Big(x_i + \mathrm{ordering}(x)_i
               + f_s\big([x_i ; \textstyle\sum_{j \in \mathrm{kNN}(i)} \alpha_{ij} x_j]\big)
               + f_m([x_i ; c_i])\Big), \qquad \alpha_{ij} = \mathrm{softmax}_j(-\lVert x_j - x_i \rVert)

    with ``c_i`` the cross-modal context from :class:`CrossModalMatching` and ``f_s``, ``f_m``
    :class:`BottleneckMLP` s. Each term can be switched off (VLG-Net's ablations).

    Args:
        hidden_size: width H.
        knn_k: semantic neighbours per node among the real nodes of its sample (itself included).
        groups, width_per_group: the bottlenecks' grouping.
        dropout: dropout on the summed update (default 0.0).
        use_ordering, use_semantic, use_matching: which edges to use (default all).

    Shapes:
        - input: feats (B, N, H); mask (B, N) bool True = real; context (B, N, H)
        - output: (B, N, H), zero at padded nodes
    """

    def __init__(
        self,
        hidden_size: int,
        knn_k: int = 3,
        groups: int = 32,
        width_per_group: int = 4,
        dropout: float = 0.0,
        use_ordering: bool = True,
        use_semantic: bool = True,
        use_matching: bool = True,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.knn_k = knn_k
        self.ordering = OrderingConv(hidden_size, groups, width_per_group) if use_ordering else None
        self.semantic = BottleneckMLP(2 * hidden_size, hidden_size, groups, width_per_group) if use_semantic else None
        self.matching = BottleneckMLP(2 * hidden_size, hidden_size, groups, width_per_group) if use_matching else None
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for part in (self.ordering, self.semantic, self.matching):
            if part is not None:
                part.reset_parameters()
        self.norm.reset_parameters()

    def forward(self, feats: Tensor, mask: Tensor, context: Tensor) -> Tensor:
        update = torch.zeros_like(feats)
        if self.ordering is not None:
            update = update + self.ordering(feats, mask)
        if self.semantic is not None:
            batch_size, num_nodes, hidden_size = feats.shape
            flat = feats.reshape(batch_size * num_nodes, hidden_size)  # (B*N, H)
            sources, targets = knn_edges(feats, mask, self.knn_k)
            neighbour_feats = flat.index_select(0, sources)
            # sqrt of a clamped square: the self-edge has distance 0, where the norm's gradient is undefined.
            distances = (neighbour_feats - flat.index_select(0, targets)).square().sum(dim=-1).clamp_min(1e-12).sqrt()
            weights = edge_softmax(-distances, targets, flat.shape[0])
            neighbours = scatter_sum(weights[:, None] * neighbour_feats, targets, flat.shape[0])
            update = update + self.semantic(torch.cat([feats, neighbours.view_as(feats)], dim=-1))
        if self.matching is not None:
            update = update + self.matching(torch.cat([feats, context], dim=-1))
        return self.norm(feats + self.dropout(update)) * mask[..., None]

    def __repr__(self) -> str:
        edges = [name for name in ("ordering", "semantic", "matching") if getattr(self, name) is not None]
        return f"{self.__class__.__name__}({self.hidden_size}, knn_k={self.knn_k}, edges={edges})"


class CrossModalMatching(nn.Module):
    r"""Bidirectional graph matching between the clips and the words of each sample (VLG-Net, Sec. 3.3).

    Matching-edge weights are a masked attention in both directions over the scaled similarity
    :math:`S = V Q^\top / \sqrt{H}`: each clip gathers ``softmax_l(S)`` of the real words, each word gathers
    ``softmax_t(S)`` of the real clips. Both modalities are then updated by :class:`ModalityGraphUpdate`.

    Args:
        hidden_size: width H of clip and word features.
        knn_k: semantic neighbours per node (default 3).
        groups, width_per_group: bottleneck grouping (default 32 x 4).
        dropout: dropout on the updates (default 0.0).
        use_ordering_edges, use_semantic_edges, use_matching_edges: edge switches (default all True).

    Shapes:
        - input: clip_feats (B, T, H), clip_mask (B, T) bool True = real clip,
          word_feats (B, L, H), word_mask (B, L) bool True = real word
        - output: (clip_feats (B, T, H), word_feats (B, L, H)), zero at padding
    """

    def __init__(
        self,
        hidden_size: int,
        knn_k: int = 3,
        groups: int = 32,
        width_per_group: int = 4,
        dropout: float = 0.0,
        use_ordering_edges: bool = True,
        use_semantic_edges: bool = True,
        use_matching_edges: bool = True,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.knn_k = knn_k
        self.use_matching_edges = use_matching_edges
        options = dict(
            knn_k=knn_k,
            groups=groups,
            width_per_group=width_per_group,
            dropout=dropout,
            use_ordering=use_ordering_edges,
            use_semantic=use_semantic_edges,
            use_matching=use_matching_edges,
        )
        self.clip_update = ModalityGraphUpdate(hidden_size, **options)
        self.word_update = ModalityGraphUpdate(hidden_size, **options)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.clip_update.reset_parameters()
        self.word_update.reset_parameters()

    def forward(self, clip_feats: Tensor, clip_mask: Tensor, word_feats: Tensor, word_mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.use_matching_edges:
            similarity = torch.bmm(clip_feats, word_feats.transpose(1, 2)) / math.sqrt(self.hidden_size)  # (B, T, L)
            clip_to_words = similarity.masked_fill(~word_mask[:, None, :], -math.inf).softmax(dim=2)
            words_to_clips = similarity.masked_fill(~clip_mask[:, :, None], -math.inf).softmax(dim=1)
            clip_context = torch.bmm(clip_to_words, word_feats)  # (B, T, H)
            word_context = torch.bmm(words_to_clips.transpose(1, 2), clip_feats)  # (B, L, H)
        else:
            clip_context, word_context = torch.zeros_like(clip_feats), torch.zeros_like(word_feats)
        return (
            self.clip_update(clip_feats, clip_mask, clip_context),
            self.word_update(word_feats, word_mask, word_context),
        )

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_size}, knn_k={self.knn_k})"
