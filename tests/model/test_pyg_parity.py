"""Our plain-torch graph aggregation against PyTorch Geometric's own layers and utilities, on the same edges.

The model's graph layers do their message passing with ``index_add`` / ``scatter_reduce`` instead of subclassing
``torch_geometric.nn.MessagePassing`` (importing torch_geometric costs seconds and ~115 MB of resident memory, more
than a Charades-STA training step). These tests pin them to PyG's semantics: same edge convention (row 0 the
source j, row 1 the target i), same results.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from grounding.model.layers import GCNeXtBlock, knn_edges
from grounding.model.layers.gcnext import edge_softmax, scatter_max, scatter_sum

torch_geometric = pytest.importorskip("torch_geometric", reason="parity tests need torch-geometric (the test extra)")
from torch_geometric.nn import EdgeConv  # noqa: E402
from torch_geometric.utils import scatter, softmax  # noqa: E402


def _random_edges(num_nodes: int, num_edges: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, num_nodes, (2, num_edges), generator=generator)


def test_scatter_helpers_equal_pyg() -> None:
    generator = torch.Generator().manual_seed(0)
    messages = torch.randn(40, 6, generator=generator)
    sources, targets = _random_edges(12, 40, generator)
    scores = torch.randn(40, generator=generator)
    assert torch.allclose(scatter_sum(messages, targets, 12), scatter(messages, targets, 0, 12, reduce="sum"))
    # PyG's max leaves nodes without incoming edges at 0, as ours does.
    assert torch.allclose(scatter_max(messages, targets, 12), scatter(messages, targets, 0, 12, reduce="max"))
    assert torch.allclose(edge_softmax(scores, targets, 12), softmax(scores, targets, num_nodes=12), atol=1e-6)


class _EdgeConvMLP(nn.Module):
    """GCNeXt's semantic ``h`` in EdgeConv's form: ``h([x_i ; x_j - x_i])`` with one (2H -> W) first layer."""

    def __init__(self, block: GCNeXtBlock) -> None:
        super().__init__()
        hidden, width = block.hidden_size, block.groups * block.width_per_group
        self.first = nn.Linear(2 * hidden, width)
        # Ours: A x_j + C x_i + b. EdgeConv's: W_i x_i + W_d (x_j - x_i) + b, so W_d = A and W_i = C + A.
        with torch.no_grad():
            neighbour, centre = block.semantic_neighbour.weight, block.semantic_centre.weight
            self.first.weight.copy_(torch.cat([centre + neighbour, neighbour], dim=1))
            self.first.bias.copy_(block.semantic_centre.bias)
        self.rest = nn.Sequential(nn.ReLU(), copy.deepcopy(block.semantic_grouped), nn.ReLU(),
                                  copy.deepcopy(block.semantic_out))

    def reset_parameters(self) -> None:
        """EdgeConv re-initialises its ``nn`` when built; this one carries the block's weights, so it keeps them."""

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first(pair))


def test_gcnext_block_equals_pyg_edgeconv_with_max_aggregation() -> None:
    torch.manual_seed(0)
    block = GCNeXtBlock(16, knn_k=3, groups=4, width_per_group=2).eval()
    clip_feats = torch.randn(2, 7, 16)
    clip_mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    clip_feats = clip_feats * clip_mask[..., None]
    edge_index = knn_edges(clip_feats, clip_mask, 3)
    with torch.no_grad():
        ours = block(clip_feats, clip_mask, edge_index)
        edge_conv = EdgeConv(_EdgeConvMLP(block), aggr="max")
        semantic = edge_conv(clip_feats.reshape(14, 16), edge_index).view(2, 7, 16)
        reference = torch.relu(clip_feats + block.ordering(clip_feats, clip_mask) + semantic) * clip_mask[..., None]
    assert torch.allclose(ours, reference, atol=1e-5)
    assert ours[1, 5:].abs().sum() == 0  # padded clips stay zero
