"""Layers over the candidate moments, with backward passes that keep few (M, B, H) tensors.

The span head's widest tensors are its moment features: one H-vector per candidate and sample, (M, B, H), e.g.
13 MB each for Charades-STA at 32 clips and batch 32, 35 MB for ActivityNet. Autograd would keep four of them
per :class:`MomentGraphConv` layer for the backward pass (the neighbour mean, the linear input, the ReLU output,
the LayerNorm input) and three for the sentence gate (its input, the LayerNorm input, the ReLU output). The
functions here keep only what cannot be recomputed cheaply: the layer input, the LayerNorm input and a one-byte
ReLU mask per layer; the gate's input and output. The neighbour mean and the linear input are recomputed in
backward from the layer input (a sparse product with four entries per row and an elementwise op); the linear
map itself is never recomputed. They are used while gradients are recorded, outside autocast and without active
dropout; otherwise the layers run plain torch ops (the tests check the two paths agree).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has one function per device type
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _lean_backward_applies(feats: Tensor, dropout: nn.Module) -> bool:
    return (
        torch.is_grad_enabled()
        and not _autocast_enabled(feats.device.type)
        and not (isinstance(dropout, nn.Dropout) and dropout.training and dropout.p > 0)
    )


def _neighbour_input(feats: Tensor, adjacency: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """``(n, z)``: the neighbour mean ``n = A x`` and the linear input ``z = x + scale * n``."""
    num_candidates, batch_size, hidden_size = feats.shape
    neighbour_mean = torch.sparse.mm(adjacency, feats.reshape(num_candidates, batch_size * hidden_size))
    neighbour_mean = neighbour_mean.view_as(feats)
    return neighbour_mean, torch.addcmul(feats, neighbour_mean, scale)


class _MomentGraphFunction(torch.autograd.Function):
    """``LayerNorm(x + relu(W (x + scale * A x) + b)) * keep`` with a lean backward (see the module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        feats: Tensor,
        adjacency: Tensor,
        neighbour_weight: Tensor,
        inverse_count: Tensor | None,
        keep: Tensor | None,
        weight: Tensor,
        bias: Tensor,
        norm_weight: Tensor,
        norm_bias: Tensor,
        eps: float,
    ) -> Tensor:
        scale = neighbour_weight if inverse_count is None else neighbour_weight * inverse_count
        _, linear_input = _neighbour_input(feats, adjacency, scale)
        update = torch.relu_(nn.functional.linear(linear_input, weight, bias))
        del linear_input
        active = update > 0
        summed = update.add_(feats)  # x + relu(.), in place: the ReLU output itself is not kept
        out, mean, rstd = torch.native_layer_norm(summed, (feats.shape[-1],), norm_weight, norm_bias, eps)
        if keep is not None:
            out = out.mul_(keep)
        ctx.save_for_backward(feats, summed, active, mean, rstd, neighbour_weight, inverse_count, keep, weight,
                              norm_weight, norm_bias)
        ctx.adjacency = adjacency
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        feats, summed, active, mean, rstd, neighbour_weight, inverse_count, keep, weight, norm_weight, norm_bias = (
            ctx.saved_tensors
        )
        adjacency = ctx.adjacency
        num_candidates, batch_size, hidden_size = feats.shape
        if keep is not None:
            grad_out = grad_out * keep
        grad_summed, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
            grad_out, summed, [hidden_size], mean, rstd, norm_weight, norm_bias, [True, True, True]
        )
        grad_pre = grad_summed * active  # through the ReLU
        scale = neighbour_weight if inverse_count is None else neighbour_weight * inverse_count
        neighbour_mean, linear_input = _neighbour_input(feats, adjacency, scale)
        grad_weight = grad_pre.reshape(-1, hidden_size).T @ linear_input.reshape(-1, hidden_size)
        del linear_input
        grad_bias = grad_pre.sum(dim=(0, 1))
        grad_linear_input = nn.functional.linear(grad_pre, weight.T)  # (M, B, H) @ W
        del grad_pre
        scaled_neighbours = neighbour_mean.mul_(grad_linear_input)  # grad of scale, elementwise
        if inverse_count is not None:
            scaled_neighbours.mul_(inverse_count)
        grad_neighbour_weight = scaled_neighbours.sum(dim=(0, 1))
        del scaled_neighbours, neighbour_mean
        grad_neighbour_mean = (grad_linear_input * scale).reshape(num_candidates, batch_size * hidden_size)
        grad_feats = grad_summed.add_(grad_linear_input)
        grad_feats += torch.sparse.mm(adjacency.t(), grad_neighbour_mean).view_as(feats)
        return (grad_feats, None, grad_neighbour_weight, None, None, grad_weight, grad_bias, grad_norm_weight,
                grad_norm_bias, None)


class MomentGraphConv(nn.Module):
    r"""Message passing between neighbouring candidates of the sparse 2D map
    (:func:`~grounding.model.spans.candidate_neighbours`).

    .. math::
        h_m' = \mathrm{LayerNorm}\Big(h_m + \mathrm{relu}\big(W (h_m + \alpha \odot
               \tfrac{1}{|N(m)|} \textstyle\sum_{n \in N(m)} h_n) + b\big)\Big)

    over the neighbours that lie within the sample's real clips, with a learned per-channel neighbour
    weight :math:`\alpha` (GIN-style: one weight matrix for the node and its neighbourhood, which halves the
    cost of the widest product). It replaces the stack of 2D convolutions that 2D-TAN and VLG-Net run over
    every cell of the T x T map. Features are candidate-major so that the neighbour sum is one sparse-dense
    product for the whole batch. While gradients are recorded, the backward pass keeps the input, the
    LayerNorm input and a one-byte ReLU mask instead of four float tensors (see the module docstring).

    Args:
        hidden_size: width H.
        dropout: dropout on the update (default 0.0).

    Shapes:
        - input: moment_feats (M, B, H), zero at invalid candidates; adjacency (M, M) sparse;
          inverse_count (M, B, 1) or None; keep (M, B, 1) float or None. With every candidate valid, pass
          the row-normalised adjacency and None, None; otherwise the 0/1 adjacency, one over each
          candidate's count of valid neighbours (0 neighbours -> 1), and the validity mask.
        - output: (M, B, H), zero at invalid candidates
    """

    def __init__(self, hidden_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(hidden_size, hidden_size)
        self.neighbour_weight = nn.Parameter(torch.empty(hidden_size))
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        nn.init.ones_(self.neighbour_weight)
        self.norm.reset_parameters()

    def forward(
        self, moment_feats: Tensor, adjacency: Tensor, inverse_count: Tensor | None = None, keep: Tensor | None = None
    ) -> Tensor:
        if _lean_backward_applies(moment_feats, self.dropout):
            return _MomentGraphFunction.apply(
                moment_feats, adjacency, self.neighbour_weight, inverse_count, keep, self.linear.weight,
                self.linear.bias, self.norm.weight, self.norm.bias, self.norm.eps,
            )
        weight = self.neighbour_weight if inverse_count is None else self.neighbour_weight * inverse_count
        _, linear_input = _neighbour_input(moment_feats, adjacency, weight)
        update = torch.relu_(self.linear(linear_input))
        out = self.norm(moment_feats + self.dropout(update))
        return out if keep is None else out * keep

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden_size}, {self.hidden_size})"


class _GatedNormFunction(torch.autograd.Function):
    """``relu(LayerNorm(x * gate))`` keeping only ``x``, ``gate`` and the output for backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, feats: Tensor, gate: Tensor, norm_weight: Tensor, norm_bias: Tensor, eps: float
    ) -> Tensor:
        out, mean, rstd = torch.native_layer_norm(feats * gate, (feats.shape[-1],), norm_weight, norm_bias, eps)
        out = torch.relu_(out)
        ctx.save_for_backward(feats, gate, mean, rstd, out, norm_weight, norm_bias)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        feats, gate, mean, rstd, out, norm_weight, norm_bias = ctx.saved_tensors
        grad_normed = grad_out.masked_fill(out <= 0, 0.0)
        grad_gated, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
            grad_normed, feats * gate, [feats.shape[-1]], mean, rstd, norm_weight, norm_bias, [True, True, True]
        )
        del grad_normed
        grad_gate = (grad_gated * feats).sum_to_size(gate.shape)
        return grad_gated.mul_(gate), grad_gate, grad_norm_weight, grad_norm_bias, None


def gated_layer_norm_relu(feats: Tensor, gate: Tensor, norm: nn.LayerNorm) -> Tensor:
    """``relu(norm(feats * gate))``; while gradients are recorded, backward keeps only ``feats``, ``gate`` and the
    output (autograd alone would also keep the product).

    Args:
        feats: (M, B, H) moment features.
        gate: broadcastable to ``feats``, e.g. (1, B, H) per-sample sentence gates.
        norm: a LayerNorm over H with affine parameters.

    Returns:
        (M, B, H).
    """
    if _lean_backward_applies(feats, nn.Identity()) and norm.weight is not None and norm.bias is not None:
        return _GatedNormFunction.apply(feats, gate, norm.weight, norm.bias, norm.eps)
    return torch.relu_(norm(feats * gate))
