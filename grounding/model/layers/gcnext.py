"""GCNeXt (G-TAD, Xu et al. 2020) over the clips of a video, plus the pieces the other graph layers share.

- :func:`knn_edges`: semantic kNN edges among the real nodes of each sample, one batched ``cdist`` + ``topk``
  with per-sample offsets (``torch_geometric.nn.knn_graph`` would need pyg-lib).
- :func:`scatter_max`, :func:`edge_softmax`: aggregation over an ``edge_index`` (PyG's conventions: row 0
  the source j, row 1 the target i), in plain torch. The graph layers follow PyG's layer style but do not
  subclass ``MessagePassing``: importing ``torch_geometric`` loads ``torch._dynamo``, seconds of start-up and
  more resident memory than a Charades-STA training step's own tensors. ``tests/model/test_pyg_parity.py``
  checks them against PyG: these helpers against ``torch_geometric.utils``, :class:`GCNeXtBlock` against
  ``EdgeConv(aggr="max")`` on the same edges.
- :class:`GroupedLinear`: a block-diagonal linear map, the 1x1 grouped convolution of ResNeXt bottlenecks.
- :class:`OrderingConv`: the bottleneck with a grouped kernel-3 convolution along the order (edges i <-> i+1).
- :class:`GCNeXtBlock`: ``x' = relu(x + ordering(x) + max_{j in kNN(i)} h([x_j - x_i ; x_i]))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


@torch.no_grad()
def knn_edges(feats: Tensor, mask: Tensor, k: int) -> Tensor:
    """Edges from each real node to its ``k`` nearest real nodes (Euclidean) of the same sample.

    The node itself is among its neighbours (distance 0), as in G-TAD; a sample with ``n < k`` real nodes
    gives each of them ``n`` neighbours. Padded nodes have no edges, and no edge crosses samples.

    Args:
        feats: (B, N, H) float node features.
        mask: (B, N) bool, True = real node.
        k: neighbours per node, >= 1.

    Returns:
        (2, E) int64 ``edge_index`` over the flattened ``B * N`` nodes (node ``b * N + n``): row 0 is the
        neighbour (message source), row 1 the node it is a neighbour of (target). Edges are ordered by target,
        then by distance.
    """
    batch_size, num_nodes, _ = feats.shape
    k = min(k, num_nodes)
    distances = torch.cdist(feats, feats)  # (B, N, N)
    distances.masked_fill_(~mask[:, None, :], math.inf)
    neighbours = distances.topk(k, dim=-1, largest=False).indices  # (B, N, k)
    num_real = mask.sum(dim=1)
    rank = torch.arange(k, device=feats.device)
    valid = mask[:, :, None] & (rank[None, None, :] < num_real[:, None, None])  # (B, N, k)
    offsets = (torch.arange(batch_size, device=feats.device) * num_nodes)[:, None, None]
    sources = neighbours + offsets
    targets = (torch.arange(num_nodes, device=feats.device)[None, :, None] + offsets).expand_as(sources)
    return torch.stack([sources[valid], targets[valid]])


def scatter_max(messages: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Per node, the element-wise maximum of the messages sent to it; 0 for a node that receives none.

    Args:
        messages: (E, H) float, one per edge.
        index: (E,) int64 target node of each edge.
        num_nodes: N.

    Returns:
        (N, H).
    """
    out = messages.new_zeros(num_nodes, messages.shape[1])
    return out.scatter_reduce(0, index[:, None].expand_as(messages), messages, "amax", include_self=False)


def edge_softmax(scores: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Softmax of edge scores over the edges that share a target node.

    Args:
        scores: (E,) float.
        index: (E,) int64 target node of each edge.
        num_nodes: N.

    Returns:
        (E,) float, summing to 1 over each target's incoming edges.
    """
    maxima = scores.new_full((num_nodes,), -math.inf).scatter_reduce(0, index, scores.detach(), "amax")
    weights = torch.exp(scores - maxima.index_select(0, index))  # the shift cancels; detached above
    totals = weights.new_zeros(num_nodes).index_add(0, index, weights)
    return weights / totals.index_select(0, index)


def scatter_sum(messages: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Per node, the sum of the messages sent to it (0 for none). messages (E, H), index (E,) -> (N, H)."""
    return messages.new_zeros(num_nodes, messages.shape[1]).index_add(0, index, messages)


class GroupedLinear(nn.Module):
    r"""Block-diagonal linear map: the input is split into ``groups`` chunks, each mapped by its own weight.

    Equal to a 1x1 ``Conv1d`` with ``groups`` (ResNeXt's grouped bottleneck), without the layout changes.

    Args:
        in_features: input width, a multiple of ``groups``.
        out_features: output width, a multiple of ``groups``.
        groups: number of blocks.
        bias: learn an additive bias (default True).

    Shapes:
        - input: (*, in_features)
        - output: (*, out_features)
    """

    def __init__(self, in_features: int, out_features: int, groups: int, bias: bool = True) -> None:
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ValueError(
                f"GroupedLinear: in_features ({in_features}) and out_features ({out_features}) must be "
                f"multiples of groups ({groups})"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(groups, in_features // groups, out_features // groups))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features // self.groups)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        leading = x.shape[:-1]
        chunks = x.reshape(-1, self.groups, self.in_features // self.groups).transpose(0, 1)  # (G, N, in/G)
        out = torch.bmm(chunks, self.weight).transpose(0, 1).reshape(*leading, self.out_features)
        return out if self.bias is None else out + self.bias

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_features}, {self.out_features}, groups={self.groups})"


class OrderingConv(nn.Module):
    r"""Bottleneck message passing along the order of a sequence (edges ``i <-> i+1``), as G-TAD's temporal branch.

    .. math::
        y = W_3 \, \mathrm{relu}(\mathrm{GConv}_3(\mathrm{relu}(W_1 x)))

    where :math:`\mathrm{GConv}_3` is a grouped convolution of kernel 3 along the sequence. Padded positions
    are zeroed before the convolution, so the last real node sees the same zero a shorter, unpadded sequence
    would.

    Args:
        hidden_size: input and output width H.
        groups: groups of the kernel-3 convolution.
        width_per_group: channels per group; bottleneck width ``groups * width_per_group``.

    Shapes:
        - input: feats (B, N, H), mask (B, N) bool True = real
        - output: (B, N, H); values at padded positions are meaningless (callers mask them)
    """

    def __init__(self, hidden_size: int, groups: int, width_per_group: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.groups = groups
        self.width_per_group = width_per_group
        width = groups * width_per_group
        self.reduce = nn.Linear(hidden_size, width)
        self.conv = nn.Conv1d(width, width, kernel_size=3, padding=1, groups=groups)
        self.expand = nn.Linear(width, hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reduce.reset_parameters()
        self.conv.reset_parameters()
        self.expand.reset_parameters()

    def forward(self, feats: Tensor, mask: Tensor) -> Tensor:
        hidden = torch.relu(self.reduce(feats)) * mask[..., None]
        hidden = torch.relu(self.conv(hidden.transpose(1, 2))).transpose(1, 2)  # (B, N, W)
        return self.expand(hidden)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.hidden_size}, groups={self.groups}, "
            f"width_per_group={self.width_per_group})"
        )


class GCNeXtBlock(nn.Module):
    r"""GCNeXt block of G-TAD (https://arxiv.org/abs/1911.11462), VLG-Net's clip-graph layer.

    .. math::
        x_i' = \mathrm{relu}\Big(x_i + \mathrm{ordering}(x)_i
               + \max_{j \in \mathrm{kNN}(i)} h\big([x_j - x_i \,;\, x_i]\big)\Big)

    ``ordering`` is :class:`OrderingConv` (the temporal edges), and ``h`` is the bottleneck
    ``Linear(2H, W) -> relu -> GroupedLinear(W, W) -> relu -> Linear(W, H)`` of the semantic (EdgeConv)
    branch, applied to each kNN edge and max-reduced. The first linear map of ``h`` is computed per node, not
    per edge: ``W_1 [x_j - x_i ; x_i] = A x_j + C x_i`` with ``A`` and ``C`` free matrices (an exact
    reparametrisation), which saves a factor ``k`` on the widest product.

    Args:
        hidden_size: width H of the clip features.
        knn_k: semantic neighbours per clip (the clip included) when no ``edge_index`` is passed (default 3).
        groups: groups of the bottleneck (default 32).
        width_per_group: channels per group (default 4).
        dropout: dropout on both branches before the sum (default 0.0).

    Shapes:
        - input: clip_feats (B, T, H); clip_mask (B, T) bool True = real clip; optional edge_index (2, E)
          over the flattened B*T clips (:func:`knn_edges` of ``clip_feats`` when omitted)
        - output: (B, T, H), zero at padded clips
    """

    def __init__(
        self, hidden_size: int, knn_k: int = 3, groups: int = 32, width_per_group: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.knn_k = knn_k
        self.groups = groups
        self.width_per_group = width_per_group
        width = groups * width_per_group
        self.ordering = OrderingConv(hidden_size, groups, width_per_group)
        self.semantic_neighbour = nn.Linear(hidden_size, width, bias=False)
        self.semantic_centre = nn.Linear(hidden_size, width)
        self.semantic_grouped = GroupedLinear(width, width, groups)
        self.semantic_out = nn.Linear(width, hidden_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.ordering.reset_parameters()
        self.semantic_neighbour.reset_parameters()
        self.semantic_centre.reset_parameters()
        self.semantic_grouped.reset_parameters()
        self.semantic_out.reset_parameters()

    def forward(self, clip_feats: Tensor, clip_mask: Tensor, edge_index: Tensor | None = None) -> Tensor:
        batch_size, num_clips, hidden_size = clip_feats.shape
        if edge_index is None:
            edge_index = knn_edges(clip_feats, clip_mask, self.knn_k)
        flat = clip_feats.reshape(batch_size * num_clips, hidden_size)  # (B*T, H)
        sources, targets = edge_index
        first = self.semantic_neighbour(flat).index_select(0, sources) + self.semantic_centre(flat).index_select(0, targets)
        messages = self.semantic_out(torch.relu(self.semantic_grouped(torch.relu(first))))  # (E, H)
        semantic = scatter_max(messages, targets, flat.shape[0]).view(batch_size, num_clips, hidden_size)
        ordering = self.ordering(clip_feats, clip_mask)
        out = torch.relu(clip_feats + self.dropout(ordering) + self.dropout(semantic))
        return out * clip_mask[..., None]

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.hidden_size}, knn_k={self.knn_k}, groups={self.groups}, "
            f"width_per_group={self.width_per_group})"
        )
