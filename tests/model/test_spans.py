from __future__ import annotations

import math

import pytest
import torch

from grounding.errors import InputError
from grounding.model import (
    GroundingOutput,
    Span,
    SpanHead,
    candidate_adjacency,
    candidate_neighbours,
    candidate_windows,
    decode_spans,
    span_candidates,
    span_softmax_pool,
)
from grounding.model.layers.moment_graph import MomentGraphConv
from grounding.model.spans import prefix_difference_matrix, soft_span_iou
from tests.model import single_thread

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


# ------------------------------------------------------------------------------------------------- candidates
@pytest.mark.parametrize(
    ("num_clips", "pooling_counts", "expected"),
    [(16, [15], 136), (256, [5, 8, 8, 8], 3101), (64, [15, 8, 8], 1104), (32, [15, 8], 428), (256, [15, 8, 8, 8], 5492)],
)
def test_candidate_counts_of_known_settings(num_clips, pooling_counts, expected):
    assert span_candidates(num_clips, pooling_counts).shape == (expected, 2)


def test_candidates_hand_example():
    # 8 clips, [2, 2]: the diagonal; offsets 1, 2 at stride 1; offsets 4, 6 at stride 2 (starts 0, 2, ...).
    pairs = [tuple(pair) for pair in span_candidates(8, [2, 2]).tolist()]
    expected = [(t, t) for t in range(8)]
    expected += [(t, t + 1) for t in range(7)] + [(t, t + 2) for t in range(6)]
    expected += [(0, 4), (2, 6), (0, 6)]
    assert pairs == expected


def test_sixteen_clips_with_15_diagonals_is_every_pair():
    pairs = {tuple(pair) for pair in span_candidates(16, [15]).tolist()}
    assert pairs == {(i, j) for i in range(16) for j in range(i, 16)}


def test_neighbours_on_a_dense_grid_are_the_four_adjacent_cells():
    candidates = span_candidates(5, [4])
    index = {tuple(pair): position for position, pair in enumerate(candidates.tolist())}
    neighbours = candidate_neighbours(candidates)
    for (i, j), position in index.items():
        expected = [index.get((i, j - 1), -1), index.get((i, j + 1), -1), index.get((i - 1, j), -1), index.get((i + 1, j), -1)]
        assert neighbours[position].tolist() == expected
    adjacency = candidate_adjacency(candidates).to_dense()
    assert torch.equal(adjacency.sum(dim=1), (neighbours >= 0).sum(dim=1).float())


def test_neighbours_skip_to_the_nearest_existing_candidate():
    candidates = span_candidates(8, [2, 2])
    index = {tuple(pair): position for position, pair in enumerate(candidates.tolist())}
    neighbours = candidate_neighbours(candidates)
    # Same start 0: (0, 2) -> (0, 4) -> (0, 6), skipping the missing (0, 3) and (0, 5).
    assert neighbours[index[(0, 2)], 1] == index[(0, 4)] and neighbours[index[(0, 6)], 0] == index[(0, 4)]
    assert neighbours[index[(0, 6)], 1] == -1
    # Same end 6: (0, 6) -> (2, 6) -> (4, 6), skipping the missing (1, 6) and (3, 6).
    assert neighbours[index[(0, 6)], 2] == -1 and neighbours[index[(0, 6)], 3] == index[(2, 6)]
    assert neighbours[index[(2, 6)], 3] == index[(4, 6)]


# ---------------------------------------------------------------------------------------------------- pooling
def _naive_pool(values, logits, mask, candidates):
    batch_size = values.shape[0]
    out = torch.zeros(len(candidates), batch_size, values.shape[2], dtype=values.dtype)
    for m, (start, end) in enumerate(candidates.tolist()):
        for b in range(batch_size):
            inside = torch.zeros_like(mask[b])
            inside[start : end + 1] = True
            inside &= mask[b]
            if inside.any():
                weights = logits[b].masked_fill(~inside, -math.inf).softmax(dim=0)
                out[m, b] = weights @ values[b]
    return out


def test_prefix_sum_pooling_equals_a_naive_masked_softmax():
    torch.manual_seed(0)
    candidates = span_candidates(10, [4, 3])
    mask = torch.arange(10)[None, :] < torch.tensor([10, 7, 1])[:, None]
    values = torch.randn(3, 10, 6, requires_grad=True)
    # Logits spanning the full range allowed by the default bound (-10, 10): weights differ by e^20.
    logits = (torch.rand(3, 10) * 20 - 10).requires_grad_(True)
    pooled = span_softmax_pool(values, logits, mask, candidates)
    expected = _naive_pool(values, logits, mask, candidates)
    assert pooled.shape == (len(candidates), 3, 6)
    assert torch.allclose(pooled, expected, atol=1e-5, rtol=1e-4)

    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((pooled * weights).sum(), (values, logits))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (values, logits))
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_prefix_difference_matrix_takes_the_end_prefix_minus_the_start_prefix():
    difference = prefix_difference_matrix(torch.tensor([[0, 0], [1, 3], [2, 4]]), num_clips=5)
    assert difference.shape == (3, 6) and difference.dtype == torch.float64
    assert difference.to_dense().tolist() == [
        [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, -1.0, 0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, -1.0, 0.0, 0.0, 1.0],
    ]


def test_pooling_survives_a_tiny_span_after_huge_weights():
    # Clips 0-3 carry weight e^10 each, clip 4 weight e^-10: float32 prefix sums would lose clip 4 entirely.
    values = torch.arange(6, dtype=torch.float32).reshape(1, 6, 1)
    logits = torch.tensor([[10.0, 10.0, 10.0, 10.0, -10.0, -10.0]])
    pooled = span_softmax_pool(values, logits, torch.ones(1, 6, dtype=torch.bool), torch.tensor([[4, 4], [4, 5]]))
    assert torch.allclose(pooled[:, 0, 0], torch.tensor([4.0, 4.5]), atol=1e-5)


# ------------------------------------------------------------------------------------------------ moment graph
def test_moment_graph_masked_path_equals_normalised_path_when_all_valid():
    torch.manual_seed(0)
    candidates = span_candidates(6, [3])
    adjacency = candidate_adjacency(candidates)
    degree = adjacency.to_dense().sum(dim=1)
    normalised = (adjacency.to_dense() / degree.clamp_min(1)[:, None]).to_sparse()
    layer = MomentGraphConv(8).eval()
    assert str(layer) == "MomentGraphConv(8, 8)"
    feats = torch.randn(len(candidates), 2, 8)
    fast = layer(feats, normalised)
    slow = layer(feats, adjacency, (1.0 / degree.clamp_min(1))[:, None, None].expand(-1, 2, 1), torch.ones(len(candidates), 2, 1))
    assert torch.allclose(fast, slow, atol=1e-6)


# ------------------------------------------------------------------------------------------------------- head
def test_span_head_repr_shapes_and_masks():
    torch.manual_seed(0)
    head = SpanHead(16, num_clips=6, pooling_counts=[5], moment_size=8, num_graph_layers=1).eval()
    assert str(head) == "SpanHead(16, num_clips=6, candidates=21, moment_size=8, graph_layers=1)"
    clip_mask = torch.arange(6)[None, :] < torch.tensor([6, 3])[:, None]
    word_mask = torch.tensor([[True, True, True], [True, False, False]])
    output = head(torch.randn(2, 6, 16), clip_mask, torch.randn(2, 3, 16), word_mask)
    assert output.span_logits.shape == output.span_scores.shape == (2, 21)
    assert output.start_logits.shape == output.end_logits.shape == (2, 6)
    assert torch.equal(output.candidate_mask[1], output.candidates[:, 1] < 3)
    assert bool((output.span_scores[1][~output.candidate_mask[1]] == 0).all())
    assert bool((output.start_logits[1, 3:] == -1e4).all())
    assert bool(((output.span_scores >= 0) & (output.span_scores <= 1)).all())


def test_boundary_context_is_first_last_before_and_after_clip_with_zeros_outside_the_real_clips():
    torch.manual_seed(0)
    head = SpanHead(5, num_clips=6, pooling_counts=[5], moment_size=3, num_graph_layers=0, boundary_context=True).eval()
    clip_mask = torch.arange(6)[None, :] < torch.tensor([6, 4])[:, None]
    clip_feats = torch.randn(2, 6, 5) * clip_mask[..., None]
    got = head._boundary_context(clip_feats, clip_mask)  # (M, B, 3)
    weight, bias = head.context_value.weight.view(4, 3, 5), head.context_value.bias.view(4, 3)
    for sample in range(2):
        real = int(clip_mask[sample].sum())

        def value(part: int, clip: int) -> torch.Tensor:
            inside = 0 <= clip < real
            return weight[part] @ clip_feats[sample, clip] + bias[part] if inside else torch.zeros(3)

        for index, (start, end) in enumerate(head.candidates.tolist()):
            if end >= real:
                continue
            expected = value(0, start) + value(1, end) + value(2, start - 1) + value(3, end + 1)
            assert torch.allclose(got[index, sample], expected, atol=1e-6), (sample, start, end)


def test_boundary_context_tells_a_span_from_a_longer_one_around_it():
    torch.manual_seed(0)
    head = SpanHead(8, num_clips=8, pooling_counts=[7], moment_size=8, num_graph_layers=0, boundary_context=True).eval()
    clip_feats = torch.randn(1, 8, 8)
    clip_mask = torch.ones(1, 8, dtype=torch.bool)
    context = head._boundary_context(clip_feats, clip_mask)
    index = {tuple(pair): position for position, pair in enumerate(head.candidates.tolist())}
    assert not torch.allclose(context[index[(3, 4)], 0], context[index[(2, 5)], 0])
    without = SpanHead(8, num_clips=8, pooling_counts=[7], moment_size=8, num_graph_layers=0, boundary_context=False)
    assert without.context_value is None
    assert sum(p.numel() for p in head.parameters()) - sum(p.numel() for p in without.parameters()) == 8 * 32 + 32


def test_soft_span_iou_is_the_iou_with_a_hard_moment_and_prefers_the_tight_span():
    clip_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    inside = torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, 0.9, 0.9]])  # padding ignored
    candidates = span_candidates(6, [5])
    got = soft_span_iou(inside, clip_mask, candidates)
    index = {tuple(pair): position for position, pair in enumerate(candidates.tolist())}
    assert got[0, index[(1, 2)]] == pytest.approx(1.0)
    assert got[0, index[(0, 3)]] == pytest.approx(0.5)  # 2 inside of 4 clips
    assert got[0, index[(2, 4)]] == pytest.approx(1 / 4)  # 1 in common, union 4
    assert got[1, index[(2, 3)]] == pytest.approx(1.0)
    assert got[1, index[(1, 3)]] == pytest.approx(2 / 3)
    assert int(got[0].argmax()) == index[(1, 2)]


def test_inside_score_multiplies_the_ranking_score():
    torch.manual_seed(0)
    head = SpanHead(8, num_clips=6, pooling_counts=[5], num_graph_layers=1, inside_score=True).eval()
    clip_feats, clip_mask = torch.randn(2, 6, 8), torch.ones(2, 6, dtype=torch.bool)
    words, word_mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    output = head(clip_feats, clip_mask, words, word_mask)
    boundary = torch.sigmoid(output.start_logits[:, head.candidates[:, 0]] ) * torch.sigmoid(output.end_logits[:, head.candidates[:, 1]])
    expected = torch.sigmoid(output.span_logits) * boundary.sqrt() * soft_span_iou(torch.sigmoid(output.inside_logits), clip_mask, head.candidates)
    assert torch.allclose(output.span_scores, expected, atol=1e-6)
    assert SpanHead(8, num_clips=6, pooling_counts=[5])(clip_feats, clip_mask, words, word_mask).inside_logits is None


# ------------------------------------------------------------------------------------------------ decoding
def _output_with_scores(scores: torch.Tensor, clip_mask: torch.Tensor) -> GroundingOutput:
    candidates = span_candidates(clip_mask.shape[1], [clip_mask.shape[1] - 1])
    candidate_mask = candidates[None, :, 1] < clip_mask.sum(dim=1, keepdim=True)
    zeros = torch.zeros(clip_mask.shape, dtype=torch.float32)
    return GroundingOutput(
        span_logits=torch.logit(scores.clamp(1e-6, 1 - 1e-6)),
        candidates=candidates,
        span_scores=scores * candidate_mask,
        start_logits=zeros,
        end_logits=zeros,
        candidate_mask=candidate_mask,
        clip_mask=clip_mask,
    )


def test_candidate_windows_follow_each_videos_clip_grid():
    clip_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    windows = candidate_windows(torch.tensor([[1, 2], [0, 0]]), clip_mask, torch.tensor([8.0, 10.0]))
    assert windows.tolist() == [[[2.0, 6.0], [0.0, 2.0]], [[5.0, 15.0], [0.0, 5.0]]]


def test_decode_spans_returns_seconds_sorted_by_score_after_nms():
    clip_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    candidates = span_candidates(4, [3])  # (0,0) (1,1) (2,2) (3,3) (0,1) (1,2) (2,3) (0,2) (1,3) (0,3)
    index = {tuple(pair): position for position, pair in enumerate(candidates.tolist())}
    scores = torch.full((2, len(candidates)), 0.1)
    scores[0, index[(1, 2)]] = 0.9  # [2, 6] s
    scores[0, index[(1, 3)]] = 0.8  # [2, 8] s: IoU 4/6 with the best, suppressed at 0.5
    scores[0, index[(3, 3)]] = 0.7  # [6, 8] s: no overlap, kept
    scores[1, index[(0, 1)]] = 0.6  # [0, 10] s of a 2-clip, 10 s video
    scores[1, index[(3, 3)]] = 0.99  # beyond its real clips: never returned
    spans = decode_spans(_output_with_scores(scores, clip_mask), durations=[8.0, 10.0], top_k=2, nms_threshold=0.5)
    assert spans[0] == [Span(2.0, 6.0, pytest.approx(0.9)), Span(6.0, 8.0, pytest.approx(0.7))]
    assert spans[1][0] == Span(0.0, 10.0, pytest.approx(0.6))
    assert len(spans[1]) == 2 and spans[1][1].end <= 10.0
    start, end, score = spans[0][0]
    assert (start, end) == (2.0, 6.0)
    without_nms = decode_spans(_output_with_scores(scores, clip_mask), durations=[8.0, 10.0], top_k=2, nms_threshold=None)
    assert [span.end for span in without_nms[0]] == [6.0, 8.0] and without_nms[0][1].score == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("durations", "top_k", "message"),
    [([8.0], 1, r"expected one per sample \(2\), got 1"), ([8.0, 0.0], 1, r"sample 1 has duration 0.0"), ([8.0, 8.0], 0, r"top_k")],
)
def test_decode_spans_rejects_bad_arguments(durations, top_k, message):
    clip_mask = torch.ones(2, 4, dtype=torch.bool)
    output = _output_with_scores(torch.rand(2, 10), clip_mask)
    with pytest.raises(InputError, match=message):
        decode_spans(output, durations, top_k=top_k)
