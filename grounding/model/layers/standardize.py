"""Per-dimension standardisation of input features with statistics fitted once on the training set."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from grounding.errors import InputError


class FeatureStandardizer(nn.Module):
    r"""``x' = (x - mean) / std`` per feature dimension, with ``mean`` and ``std`` saved in the checkpoint.

    Frozen features share a large common component: pooled CNN activations are non-negative with a mean far
    from zero, and the token vectors of a sentence encoder all lean the same way. A linear projection followed by
    LayerNorm keeps that component, so at the start of training every clip (every word) looks alike to the
    matching layers and the model first learns only a position prior. Removing the training set's mean and
    dividing by its spread lets the differences between clips (between words) drive learning from the first
    step. Until :meth:`fit` is called the module is the identity.

    Args:
        dim: feature width D.

    Shapes:
        - input: (*, D)
        - output: (*, D)
    """

    mean: Tensor
    std: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, feats: Tensor | Iterable[Tensor], what: str = "features") -> None:
        """Set the statistics from training features: one (N, D) tensor, or chunks of (N_i, D) rows (one per
        video, say), accumulated in float64 so that no copy of the whole training set is ever built. At least 2
        rows in all.

        Dimensions that barely vary (a dead channel) get a floor of 1 % of the mean spread, so that a small
        deviation at test time is not blown up.
        """
        chunks = [feats] if isinstance(feats, Tensor) else feats
        count, total, total_squares = 0, None, None
        for chunk in chunks:
            if chunk.ndim != 2 or chunk.shape[1] != self.dim:
                raise InputError(f"{what}: expected (N, {self.dim}) rows to fit statistics on, got {tuple(chunk.shape)}")
            chunk = chunk.double()
            if not torch.isfinite(chunk).all():
                raise InputError(f"{what}: the training features hold NaN or infinite values; fix the feature file")
            count += chunk.shape[0]
            total = chunk.sum(dim=0) if total is None else total + chunk.sum(dim=0)
            squares = chunk.square().sum(dim=0)
            total_squares = squares if total_squares is None else total_squares + squares
        if count < 2 or total is None or total_squares is None:
            raise InputError(f"{what}: need at least 2 rows to fit statistics on, got {count}")
        mean = total / count
        std = ((total_squares - count * mean.square()).clamp_min(0.0) / (count - 1)).sqrt()  # sample std
        floor = max(float(std.mean()) * 1e-2, 1e-6)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.clamp_min(floor).to(self.std.dtype))

    def forward(self, feats: Tensor) -> Tensor:
        return (feats - self.mean.to(feats.dtype)) / self.std.to(feats.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}"
