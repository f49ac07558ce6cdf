from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from grounding.errors import InputError
from grounding.model.layers import (
    FeatureStandardizer,
    CrossModalMatching,
    GCNeXtBlock,
    GroupedLinear,
    ModalityGraphUpdate,
    OrderingConv,
    QueryTemporalFusion,
    SyntacticGraphConv,
    knn_edges,
)
from tests.model import single_thread

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


def _prefix_mask(lengths: list[int], size: int) -> torch.Tensor:
    return torch.arange(size)[None, :] < torch.tensor(lengths)[:, None]


# ------------------------------------------------------------------------------------------------- knn_edges
def test_knn_edges_hand_example():
    feats = torch.tensor([[0.0, 1.0, 3.0, 10.0], [5.0, 5.5, 100.0, -100.0]])[..., None]  # (B=2, N=4, 1)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    edges = knn_edges(feats, mask, k=2)
    # Sample 0: nearest two (itself first) of 0 -> {0, 1}, 1 -> {1, 0}, 2 -> {2, 1}, 3 -> {3, 2}.
    # Sample 1 (nodes 4..7): only 4 and 5 are real; the padded 100 and -100 are never anyone's neighbour.
    expected = torch.tensor(
        [
            [0, 1, 1, 0, 2, 1, 3, 2, 4, 5, 5, 4],
            [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
        ]
    )
    assert torch.equal(edges, expected)


def test_knn_edges_with_fewer_real_nodes_than_k():
    feats = torch.tensor([[[0.0], [1.0], [7.0]]])
    edges = knn_edges(feats, torch.tensor([[True, True, False]]), k=3)
    assert torch.equal(edges, torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]]))


def test_knn_edges_never_cross_samples_or_touch_padding():
    torch.manual_seed(0)
    lengths = [6, 1, 3, 9]
    feats = torch.randn(4, 9, 5)
    mask = _prefix_mask(lengths, 9)
    edges = knn_edges(feats, mask, k=4)
    assert torch.equal(edges[0] // 9, edges[1] // 9)
    flat_mask = mask.reshape(-1)
    assert bool(flat_mask[edges[0]].all()) and bool(flat_mask[edges[1]].all())
    assert edges.shape[1] == sum(length * min(4, length) for length in lengths)


# ------------------------------------------------------------------------------------------------ small parts
def test_grouped_linear_equals_a_grouped_1x1_convolution():
    torch.manual_seed(0)
    layer = GroupedLinear(8, 12, groups=4)
    assert str(layer) == "GroupedLinear(8, 12, groups=4)"
    conv = nn.Conv1d(8, 12, kernel_size=1, groups=4)
    with torch.no_grad():
        # conv weight (out, in/groups, 1): output channel o of group g reads inputs of group g.
        conv.weight.copy_(layer.weight.permute(0, 2, 1).reshape(12, 2, 1))
        conv.bias.copy_(layer.bias)
    x = torch.randn(5, 8)
    assert torch.allclose(layer(x), conv(x[..., None])[..., 0], atol=1e-6)


def test_ordering_conv_sees_zero_beyond_the_last_real_clip():
    torch.manual_seed(0)
    layer = OrderingConv(16, groups=4, width_per_group=2)
    assert str(layer) == "OrderingConv(16, groups=4, width_per_group=2)"
    feats = torch.randn(1, 6, 16)
    mask = _prefix_mask([4], 6)
    padded = layer(feats, mask)[:, :4]
    trimmed = layer(feats[:, :4], torch.ones(1, 4, dtype=torch.bool))
    assert torch.allclose(padded, trimmed, atol=1e-6)


# ----------------------------------------------------------------------------------------------------- GCNeXt
def test_gcnext_block_matches_a_naive_edgeconv():
    torch.manual_seed(0)
    block = GCNeXtBlock(8, knn_k=2, groups=2, width_per_group=2).eval()
    assert str(block) == "GCNeXtBlock(8, knn_k=2, groups=2, width_per_group=2)"
    feats = torch.randn(1, 5, 8)
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = block(feats, mask)
    assert out.shape == (1, 5, 8)

    x = feats[0]
    distances = torch.cdist(x, x)
    expected = []
    for i in range(5):
        neighbours = distances[i].topk(2, largest=False).indices
        messages = []
        for j in neighbours.tolist():
            first = block.semantic_neighbour(x[j]) + block.semantic_centre(x[i])
            hidden = torch.relu(block.semantic_grouped(torch.relu(first)))
            messages.append(block.semantic_out(hidden))
        semantic = torch.stack(messages).amax(dim=0)
        expected.append(semantic)
    ordering = block.ordering(feats, mask)[0]
    expected_out = torch.relu(x + ordering + torch.stack(expected))
    assert torch.allclose(out[0], expected_out, atol=1e-5)


def test_gcnext_block_batched_equals_one_at_a_time_and_ignores_padding():
    torch.manual_seed(0)
    block = GCNeXtBlock(16, knn_k=3, groups=4, width_per_group=2).eval()
    lengths = [7, 3, 5]
    feats = torch.randn(3, 7, 16)
    mask = _prefix_mask(lengths, 7)
    feats = feats * mask[..., None]  # the model zeroes padding before the first block
    out = block(feats, mask)
    for index, length in enumerate(lengths):
        single = block(feats[index : index + 1], mask[index : index + 1])
        assert torch.allclose(out[index : index + 1], single, atol=1e-6)
        assert torch.count_nonzero(out[index, length:]) == 0


# ---------------------------------------------------------------------------------------------------- fusion
def test_query_temporal_fusion_ignores_padding_and_sees_one_clip_either_side():
    torch.manual_seed(0)
    block = QueryTemporalFusion(8).eval()
    lengths = [6, 4]
    mask = _prefix_mask(lengths, 6)
    feats = torch.randn(2, 6, 8) * mask[..., None]
    sentence = torch.randn(2, 8)
    out = block(feats, mask, sentence)
    assert out.shape == (2, 6, 8)
    assert torch.count_nonzero(out[1, 4:]) == 0
    noisy = feats.clone()
    noisy[1, 4:] = 1e3  # whatever padding holds never reaches a real clip
    assert torch.allclose(block(noisy, mask, sentence)[1, :4], out[1, :4], atol=1e-5)
    for index, length in enumerate(lengths):
        single = block(feats[index : index + 1, :length], mask[index : index + 1, :length], sentence[index : index + 1])
        assert torch.allclose(single[0], out[index, :length], atol=1e-5)
    changed = feats.clone()
    changed[0, 2] += 1.0
    moved = (block(changed, mask, sentence) - out).detach().abs().sum(dim=-1)[0]  # (T,)
    assert bool((moved[1:4] > 0).all()) and float(moved[0] + moved[4:].sum()) == 0.0
    other_sentence = block(feats, mask, torch.randn(2, 8))
    assert not torch.allclose(other_sentence[:, :4], out[:, :4])
    with pytest.raises(ValueError, match="odd"):
        QueryTemporalFusion(8, kernel_size=2)
    with pytest.raises(ValueError, match="dilation"):
        QueryTemporalFusion(8, dilation=0)


def test_dilated_fusion_reads_clips_d_apart_and_never_padding():
    torch.manual_seed(0)
    block = QueryTemporalFusion(8, dilation=2).eval()
    assert str(block) == "QueryTemporalFusion(8, kernel_size=3, dilation=2)"
    mask = _prefix_mask([9, 6], 9)
    feats = torch.randn(2, 9, 8) * mask[..., None]
    sentence = torch.randn(2, 8)
    out = block(feats, mask, sentence)
    changed = feats.clone()
    changed[0, 4] += 1.0
    moved = (block(changed, mask, sentence) - out).abs().sum(dim=-1)[0]
    assert sorted(torch.nonzero(moved).flatten().tolist()) == [2, 4, 6]
    noisy = feats.clone()
    noisy[1, 6:] = 1e3
    assert torch.allclose(block(noisy, mask, sentence)[1, :6], out[1, :6], atol=1e-5)
    single = block(feats[1:, :6], mask[1:, :6], sentence[1:])
    assert torch.allclose(single[0], out[1, :6], atol=1e-5)


# ------------------------------------------------------------------------------------------------- syntactic
def test_syntactic_graph_conv_matches_dense_attention():
    torch.manual_seed(0)
    layer = SyntacticGraphConv(6).eval()
    assert str(layer) == "SyntacticGraphConv(6, 6)"
    x = torch.randn(4, 6)
    edges = torch.tensor([[1, 0, 2, 1, 3], [0, 1, 1, 2, 2]])  # word 3 informs word 2 only (one-way), 3 has none
    out = layer(x, edges)
    centre, neighbour, value = layer.projections(x).chunk(3, dim=-1)
    expected = torch.relu(x.clone())
    for i in range(4):
        sources = edges[0, edges[1] == i]
        if len(sources) == 0:
            continue
        scores = torch.stack([layer.score_out(torch.relu(centre[i] + neighbour[j]))[0] for j in sources])
        attention = scores.softmax(dim=0)
        expected[i] = torch.relu(x[i] + (attention[:, None] * value[sources]).sum(dim=0))
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(out[3], torch.relu(x[3]))


# -------------------------------------------------------------------------------------------------- matching
def test_cross_modal_matching_shapes_padding_and_batching():
    torch.manual_seed(0)
    layer = CrossModalMatching(16, knn_k=2, groups=4, width_per_group=2).eval()
    assert str(layer) == "CrossModalMatching(16, knn_k=2)"
    assert "edges=['ordering', 'semantic', 'matching']" in str(layer.clip_update)
    clip_mask = _prefix_mask([6, 4], 6)
    word_mask = _prefix_mask([3, 5], 5)
    clips = torch.randn(2, 6, 16) * clip_mask[..., None]
    words = torch.randn(2, 5, 16) * word_mask[..., None]
    clip_out, word_out = layer(clips, clip_mask, words, word_mask)
    assert clip_out.shape == (2, 6, 16) and word_out.shape == (2, 5, 16)
    assert torch.count_nonzero(clip_out[1, 4:]) == 0 and torch.count_nonzero(word_out[0, 3:]) == 0

    # Sample 0 alone, its words cut to their real length.
    single_clips, single_words = layer(clips[:1], clip_mask[:1], words[:1, :3], word_mask[:1, :3])
    assert torch.allclose(clip_out[:1], single_clips, atol=1e-6)
    assert torch.allclose(word_out[:1, :3], single_words, atol=1e-6)


def test_matching_switches_remove_their_branch():
    layer = ModalityGraphUpdate(8, use_ordering=False, use_semantic=True, use_matching=False)
    assert layer.ordering is None and layer.matching is None and layer.semantic is not None
    assert "edges=['semantic']" in str(layer)


def test_scatter_helpers_hand_example():
    from grounding.model.layers.gcnext import edge_softmax, scatter_max, scatter_sum

    messages = torch.tensor([[1.0, -5.0], [3.0, -7.0], [2.0, 4.0]])
    targets = torch.tensor([0, 0, 2])  # node 1 receives nothing
    assert scatter_max(messages, targets, 3).tolist() == [[3.0, -5.0], [0.0, 0.0], [2.0, 4.0]]
    assert scatter_sum(messages, targets, 3).tolist() == [[4.0, -12.0], [0.0, 0.0], [2.0, 4.0]]
    weights = edge_softmax(torch.tensor([0.0, math.log(3.0), 5.0]), targets, 3)
    assert torch.allclose(weights, torch.tensor([0.25, 0.75, 1.0]))


def test_feature_standardizer_fits_mean_and_spread_and_floors_dead_dimensions() -> None:
    standardizer = FeatureStandardizer(3)
    rows = torch.tensor([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0], [5.0, 50.0, 5.0]])
    assert torch.equal(standardizer(rows), rows)  # the identity until fitted
    standardizer.fit(rows)
    # By hand: means 3, 30, 5; sample stds 2, 20, 0 -> floored at 1 % of the mean spread (22 / 3 / 100).
    assert torch.allclose(standardizer.mean, torch.tensor([3.0, 30.0, 5.0]))
    assert torch.allclose(standardizer.std, torch.tensor([2.0, 20.0, 22.0 / 300.0]))
    assert torch.allclose(standardizer(rows)[:, :2], torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]))
    assert torch.allclose(standardizer(torch.tensor([[3.0, 30.0, 5.5]]))[0, 2], torch.tensor(0.5 * 300 / 22))
    assert set(standardizer.state_dict()) == {"mean", "std"}
    with pytest.raises(InputError, match=r"expected \(N, 3\)"):
        standardizer.fit(torch.zeros(4, 2))
    with pytest.raises(InputError, match="at least 2 rows"):
        standardizer.fit(torch.zeros(1, 3))
    with pytest.raises(InputError, match="NaN"):
        standardizer.fit(torch.tensor([[1.0, 2.0, float("nan")], [1.0, 2.0, 3.0]]))
