"""The moment layers' lean backward passes against plain autograd, and the tensors they keep."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from grounding.model.layers import moment_graph
from grounding.model.layers.moment_graph import MomentGraphConv, gated_layer_norm_relu
from grounding.model.spans import candidate_adjacency, span_candidates


def _graph_inputs(masked: bool, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    candidates = span_candidates(7, [3, 2])
    adjacency = candidate_adjacency(candidates).to(dtype)
    num_candidates, batch_size, hidden_size = len(candidates), 3, 6
    feats = torch.randn(num_candidates, batch_size, hidden_size, dtype=dtype)
    if not masked:
        degree = adjacency.to_dense().sum(dim=1).clamp_min(1)
        normalised = (adjacency.to_dense() / degree[:, None]).to_sparse()
        return feats, normalised, None, None
    real_clips = torch.tensor([7, 4, 2])
    keep = (candidates[:, 1][:, None] < real_clips[None]).to(dtype)[..., None]  # (M, B, 1)
    count = torch.sparse.mm(adjacency, keep[..., 0])
    return feats * keep, adjacency, (1.0 / count.clamp_min(1.0))[..., None], keep


def _plain_graph_layer(layer: MomentGraphConv, feats, adjacency, inverse_count, keep):
    """The layer's formula in plain torch ops (autograd keeps every intermediate)."""
    num_candidates, batch_size, hidden_size = feats.shape
    neighbours = torch.sparse.mm(adjacency, feats.reshape(num_candidates, -1)).view_as(feats)
    scale = layer.neighbour_weight if inverse_count is None else layer.neighbour_weight * inverse_count
    out = layer.norm(feats + torch.relu(layer.linear(feats + scale * neighbours)))
    return out if keep is None else out * keep


@pytest.mark.parametrize("masked", [False, True])
def test_graph_layer_values_and_every_gradient_match_plain_autograd(masked: bool) -> None:
    feats, adjacency, inverse_count, keep = _graph_inputs(masked)
    layer = MomentGraphConv(6)
    with torch.no_grad():  # away from the defaults, so that every parameter matters
        layer.neighbour_weight.uniform_(0.5, 1.5)
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.5, 0.5)
    upstream = torch.randn_like(feats)
    results = []
    for forward in (layer.forward, lambda *args: _plain_graph_layer(layer, *args)):
        layer.zero_grad()
        inputs = feats.clone().requires_grad_()
        out = forward(inputs, adjacency, inverse_count, keep)
        (out * upstream).sum().backward()
        results.append([out.detach(), inputs.grad] + [parameter.grad.clone() for parameter in layer.parameters()])
    names = ["output", "input grad"] + [name for name, _ in layer.named_parameters()]
    for name, lean, plain in zip(names, *results):
        assert torch.allclose(lean, plain, rtol=1e-5, atol=1e-6), name
    if keep is not None:
        assert torch.equal(results[0][0] * (1 - keep), torch.zeros_like(feats))


@pytest.mark.parametrize("masked", [False, True])
def test_graph_layer_passes_gradcheck(masked: bool) -> None:
    feats, adjacency, inverse_count, keep = _graph_inputs(masked, torch.float64)
    layer = MomentGraphConv(6).double()
    feats.requires_grad_()
    parameters = (layer.neighbour_weight, layer.linear.weight, layer.linear.bias, layer.norm.weight, layer.norm.bias)

    def function(feats, neighbour_weight, weight, bias, norm_weight, norm_bias):
        return moment_graph._MomentGraphFunction.apply(
            feats, adjacency, neighbour_weight, inverse_count, keep, weight, bias, norm_weight, norm_bias, 1e-5
        )

    assert torch.autograd.gradcheck(function, (feats, *parameters), eps=1e-6, atol=1e-5)


def test_gated_norm_matches_plain_autograd_and_passes_gradcheck() -> None:
    torch.manual_seed(0)
    norm = nn.LayerNorm(5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    feats, gate, upstream = torch.randn(9, 3, 5), torch.randn(1, 3, 5), torch.randn(9, 3, 5)
    results = []
    for forward in (gated_layer_norm_relu, lambda x, g, n: torch.relu(n(x * g))):
        norm.zero_grad()
        x, g = feats.clone().requires_grad_(), gate.clone().requires_grad_()
        out = forward(x, g, norm)
        (out * upstream).sum().backward()
        results.append([out.detach(), x.grad, g.grad, norm.weight.grad.clone(), norm.bias.grad.clone()])
    for name, lean, plain in zip(["output", "feats", "gate", "weight", "bias"], *results):
        assert torch.allclose(lean, plain, rtol=1e-5, atol=1e-6), name

    norm64 = norm.double()
    inputs = (feats.double().requires_grad_(), gate.double().requires_grad_(), norm64.weight, norm64.bias)
    assert torch.autograd.gradcheck(
        lambda x, g, w, b: moment_graph._GatedNormFunction.apply(x, g, w, b, norm64.eps), inputs, eps=1e-6, atol=1e-5
    )


def _saved_float_elements(function) -> int:
    """Elements of the distinct float tensors autograd keeps for backward while ``function()`` runs."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_sparse and tensor.is_floating_point():
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes() // tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return sum(storages.values())


def test_lean_layers_keep_fewer_moment_sized_tensors_than_plain_autograd() -> None:
    candidates = span_candidates(16, [15])
    feats = torch.randn(len(candidates), 4, 64, requires_grad=True)
    adjacency = candidate_adjacency(candidates)
    layer, norm, gate = MomentGraphConv(64), nn.LayerNorm(64), torch.randn(1, 4, 64, requires_grad=True)
    moment_elements = feats.numel()

    def lean() -> None:
        layer(layer(gated_layer_norm_relu(feats, gate, norm), adjacency), adjacency)

    def plain() -> None:
        hidden = torch.relu(norm(feats * gate))
        _plain_graph_layer(layer, _plain_graph_layer(layer, hidden, adjacency, None, None), adjacency, None, None)

    # lean: the gate's input and output (the first layer's input), each layer's LayerNorm input, the second
    # layer's input, plus parameters and per-row statistics; plain: 3 for the gate and 4 per layer
    assert _saved_float_elements(lean) < 5.5 * moment_elements
    assert _saved_float_elements(plain) > 10.9 * moment_elements


def test_plain_path_runs_under_dropout_autocast_and_without_gradients() -> None:
    feats, adjacency, _, _ = _graph_inputs(masked=False)
    assert moment_graph._lean_backward_applies(feats, nn.Identity())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not moment_graph._lean_backward_applies(feats, nn.Identity())
    layer = MomentGraphConv(6, dropout=0.5).train()
    assert not moment_graph._lean_backward_applies(feats, layer.dropout)
    out = layer(feats.requires_grad_(), adjacency)
    assert out.grad_fn is not None and "MomentGraphFunction" not in type(out.grad_fn).__name__
    with torch.no_grad():
        assert torch.allclose(layer.eval()(feats, adjacency), _plain_graph_layer(layer, feats, adjacency, None, None),
                              atol=1e-6)
