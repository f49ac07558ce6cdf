"""Syntactic graph attention over a query's language graph (VLG-Net's SyntacGCN, batched)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from grounding.model.layers.gcnext import edge_softmax, scatter_sum


class SyntacticGraphConv(nn.Module):
    r"""Attention over each word's neighbours on the language graph, plus a residual (VLG-Net, eq. 6-7).

    .. math::
        \beta_{ij} = \mathrm{softmax}_{j \in \mathcal{N}(i)}\big(w^\top \mathrm{relu}(A h_i + B h_j)\big),
        \qquad h_i' = \mathrm{relu}\Big(h_i + \sum_{j \in \mathcal{N}(i)} \beta_{ij} W h_j\Big)

    ``w^T relu(A h_i + B h_j)`` is the official ``Linear(2H, H) -> relu -> Linear(H, 1)`` on ``[h_i ; h_j]``
    with the first map split per node. Every edge of the batch is scored and aggregated at once (the
    official layer loops over samples with a dense L x L scatter each). A word without neighbours keeps
    ``relu(h_i)``.

    Args:
        hidden_size: width H of the word features.
        dropout: dropout on the messages (default 0.0).

    Shapes:
        - input: word_feats (N, H) over the flattened B*L words; edge_index (2, E), row 0 the neighbour j,
          row 1 the word i it informs (the language graph lists both directions)
        - output: (N, H)
    """

    def __init__(self, hidden_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        # A, B and W of the docstring, stacked into one product: rows [0, H) A, [H, 2H) B, [2H, 3H) W.
        self.projections = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.score_out = nn.Linear(hidden_size, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.projections.reset_parameters()
        self.score_out.reset_parameters()

    def forward(self, word_feats: Tensor, edge_index: Tensor) -> Tensor:
        centre, neighbour, value = self.projections(word_feats).chunk(3, dim=-1)
        sources, targets = edge_index
        scores = self.score_out(torch.relu(centre.index_select(0, targets) + neighbour.index_select(0, sources))).squeeze(-1)
        attention = edge_softmax(scores, targets, word_feats.shape[0])  # (E,)
        messages = self.dropout(attention[:, None] * value.index_select(0, sources))
        return torch.relu(word_feats + scatter_sum(messages, targets, word_feats.shape[0]))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_size}, {self.hidden_size})"
