"""Query-conditioned temporal fusion: clip features rewritten in the light of the sentence, with local context.

After cross-modal matching each clip has seen the words, but the span head then pools clips and scores
boundaries clip by clip. :class:`QueryTemporalFusion` adds, before that, a residual block whose update is a
function of the clip *and* the sentence (``[x ; x * U s]``, so the block can select the features the sentence
asks about) followed by a kernel-3 convolution along time (so a boundary clip sees whether its neighbours hold the
queried event). Stacked with dilations 1, 2, 4, ... the blocks see 2^n - 1 clips either side after n blocks
instead of n, at the same cost: enough to compare an object before and after a change of colour or size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class QueryTemporalFusion(nn.Module):
    r"""``x' = LayerNorm(x + Conv1d_3(Dropout(relu(W [x ; x \odot U s]))))`` over the real clips.

    Args:
        hidden_size: width H of the clip and sentence features.
        kernel_size: odd width of the temporal convolution (default 3).
        dropout: dropout on the update before the convolution (default 0.0).
        dilation: spacing of the convolution's taps in clips (default 1): clip t reads t - d, t, t + d.

    Shapes:
        - clip_feats: (B, T, H) float; clip_mask: (B, T) bool, True = real clip; sentence: (B, H) float
        - output: (B, T, H), zeros at padded clips (the convolution never reads them either)
    """

    def __init__(self, hidden_size: int, kernel_size: int = 3, dropout: float = 0.0, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        if dilation < 1:
            raise ValueError(f"dilation must be a positive integer, got {dilation}")
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.sentence = nn.Linear(hidden_size, hidden_size, bias=False)
        self.mix = nn.Linear(2 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.temporal = nn.Conv1d(
            hidden_size, hidden_size, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation
        )
        self.norm = nn.LayerNorm(hidden_size)

    def reset_parameters(self) -> None:
        for module in (self.sentence, self.mix, self.temporal, self.norm):
            module.reset_parameters()

    def forward(self, clip_feats: Tensor, clip_mask: Tensor, sentence: Tensor) -> Tensor:
        keep = clip_mask[..., None].to(clip_feats.dtype)
        gated = clip_feats * self.sentence(sentence)[:, None, :]
        update = self.dropout(torch.relu(self.mix(torch.cat([clip_feats, gated], dim=-1)))) * keep  # (B, T, H)
        update = self.temporal(update.transpose(1, 2)).transpose(1, 2)
        return self.norm(clip_feats + update) * keep

    def __repr__(self) -> str:
        dilation = f", dilation={self.dilation}" if self.dilation != 1 else ""
        return f"{self.__class__.__name__}({self.hidden_size}, kernel_size={self.kernel_size}{dilation})"
