"""The ranking side of the model: span-score pooling, HN-NCE, the ranking term and its negative pairs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from grounding.errors import ConfigError, InputError
from grounding.model import GroundingModel, LossConfig, compute_loss
from grounding.model.losses import (
    RankingNegatives,
    contrastive_loss,
    hn_nce_loss,
    negative_video_index,
    ranking_loss,
    target_span_log_scores,
)
from grounding.model.pooling import pool_log_scores, pool_span_scores, span_log_scores
from tests.model import make_batch, single_thread, tiny_config

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


# ---- pooling ----
def test_max_pooling_is_the_best_valid_log_score():
    log_scores = torch.tensor([[-1.0, -0.5, -3.0], [-2.0, 9.0, -4.0]])
    mask = torch.tensor([[True, True, True], [True, False, True]])
    assert pool_log_scores(log_scores, mask, "max").tolist() == [-0.5, -2.0]  # 9.0 is masked out


def test_softmax_pooling_goes_from_max_to_mean_with_the_temperature():
    log_scores = torch.tensor([[-1.0, -0.5, -3.0, 100.0]])
    mask = torch.tensor([[True, True, True, False]])
    cold = pool_log_scores(log_scores, mask, "softmax", temperature=1e-3)
    hot = pool_log_scores(log_scores, mask, "softmax", temperature=1e6)
    assert float(cold) == pytest.approx(-0.5, abs=1e-6)
    assert float(hot) == pytest.approx((-1.0 - 0.5 - 3.0) / 3, abs=1e-4)
    middle = float(pool_log_scores(log_scores, mask, "softmax", temperature=1.0))
    weights = torch.softmax(torch.tensor([-1.0, -0.5, -3.0]), dim=0)
    assert middle == pytest.approx(float((weights * torch.tensor([-1.0, -0.5, -3.0])).sum()), abs=1e-6)


def test_pooling_rejects_bad_settings_and_empty_rows():
    scores, mask = torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(InputError, match="unknown pooling 'mean'"):
        pool_log_scores(scores, mask, "mean")
    with pytest.raises(InputError, match="temperature must be a number > 0"):
        pool_log_scores(scores, mask, "softmax", 0.0)
    with pytest.raises(InputError, match="no valid candidate"):
        pool_log_scores(scores, torch.zeros(1, 2, dtype=torch.bool))


def test_pooled_max_of_a_model_output_is_the_log_of_the_top_span_score():
    torch.manual_seed(0)
    model = GroundingModel(tiny_config()).eval()
    with torch.no_grad():
        output = model(*make_batch([8, 6], [5, 3]))
    pooled = pool_span_scores(output, "max")
    top = output.span_scores.max(dim=1).values
    assert torch.allclose(pooled.exp(), top, rtol=1e-5)
    assert torch.isinf(span_log_scores(output)[~output.candidate_mask]).all()


# ---- HN-NCE ----
def test_hn_nce_at_alpha_one_beta_zero_is_infonce():
    torch.manual_seed(1)
    logits = torch.randn(5, 7)
    positive = torch.tensor([0, 3, 6, 2, 2])
    mask = torch.rand(5, 7) > 0.3
    mask[:, 1] = True  # every row keeps a negative
    expected_rows = []
    for row in range(5):
        keep = mask[row].clone()
        keep[positive[row]] = True
        expected_rows.append(torch.logsumexp(logits[row][keep], 0) - logits[row, positive[row]])
    expected = torch.stack(expected_rows).mean()
    assert torch.allclose(hn_nce_loss(logits, positive, mask, alpha=1.0, beta=0.0), expected, atol=1e-6)
    labels = torch.arange(5)
    square = torch.randn(5, 5)
    assert torch.allclose(
        hn_nce_loss(square, labels, torch.ones(5, 5, dtype=torch.bool)), F.cross_entropy(square, labels), atol=1e-6
    )


def test_hn_nce_weights_hard_negatives_by_hand():
    logits = torch.tensor([[2.0, 1.0, -1.0]])
    alpha, beta = 0.5, 2.0
    weights = 2 * torch.softmax(beta * torch.tensor([1.0, -1.0]), dim=0)  # n = 2 negatives
    denominator = alpha * math.exp(2.0) + float(weights[0]) * math.exp(1.0) + float(weights[1]) * math.exp(-1.0)
    expected = -math.log(math.exp(2.0) / denominator)
    loss = hn_nce_loss(logits, torch.tensor([0]), torch.ones(1, 3, dtype=torch.bool), alpha, beta)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # harder negatives weigh more: raising beta raises the loss when the hardest negative is close to the positive
    assert float(hn_nce_loss(logits, torch.tensor([0]), torch.ones(1, 3, dtype=torch.bool), 1.0, 2.0)) > float(
        hn_nce_loss(logits, torch.tensor([0]), torch.ones(1, 3, dtype=torch.bool), 1.0, 0.0)
    )


def test_multi_positive_hn_nce_sums_the_positives_by_hand():
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.5], [0.0, 3.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    positive = torch.tensor([[True, True, False, False], [False, True, False, False], [False, False, False, False]])
    everything = torch.ones(3, 4, dtype=torch.bool)
    loss = hn_nce_loss(logits, positive, everything)  # row 2 has no positive: left out
    row0 = -math.log((math.exp(2.0) + math.exp(1.0)) / sum(math.exp(v) for v in (2.0, 1.0, -1.0, 0.5)))
    row1 = -math.log(math.exp(3.0) / sum(math.exp(v) for v in (0.0, 3.0, 1.0, 0.0)))
    assert float(loss.detach()) == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # one positive per row as a mask is the index form exactly, at any alpha and beta
    single = torch.tensor([0, 1])
    mask = torch.nn.functional.one_hot(single, 4).bool()
    for alpha, beta in ((1.0, 0.0), (0.5, 2.0)):
        assert float(hn_nce_loss(logits[:2].detach(), mask, everything[:2], alpha, beta)) == pytest.approx(
            float(hn_nce_loss(logits[:2].detach(), single, everything[:2], alpha, beta)), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and not logits.grad[2].any()


def test_rows_without_negatives_carry_no_loss():
    logits = torch.tensor([[1.0, 5.0], [0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[False, False], [True, True]])
    loss = hn_nce_loss(logits, torch.tensor([0, 0]), mask)
    assert float(loss.detach()) == pytest.approx(math.log(2))  # only row 1
    none = hn_nce_loss(logits, torch.tensor([0, 0]), torch.zeros(2, 2, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_contrastive_loss_drops_known_true_matches_both_ways():
    torch.manual_seed(2)
    videos = F.normalize(torch.randn(3, 4), dim=-1)
    queries = F.normalize(torch.randn(3, 4), dim=-1)
    known = torch.tensor([[False, True, False], [False, False, False], [False, False, False]])  # query 0 true of video 1
    loss = contrastive_loss(videos, queries, 0.5, false_negatives=known)
    logits = queries @ videos.T / 0.5
    allowed = ~known
    labels = torch.arange(3)
    by_query = torch.stack([torch.logsumexp(logits[i][allowed[i] | (labels == i)], 0) - logits[i, i] for i in range(3)])
    by_video = torch.stack([torch.logsumexp(logits[:, j][allowed[:, j] | (labels == j)], 0) - logits[j, j] for j in range(3)])
    assert torch.allclose(loss, 0.5 * (by_query.mean() + by_video.mean()), atol=1e-6)


# ---- the ranking term ----
def test_negative_video_index_never_pairs_a_query_with_its_own_slot():
    index = negative_video_index(4, 3)
    assert index.tolist() == [[1, 2, 3], [2, 3, 0], [3, 0, 1], [0, 1, 2]]
    assert negative_video_index(3, 10).shape == (3, 2)  # capped at B - 1
    assert negative_video_index(1, 3).shape == (1, 0)


def test_ranking_loss_is_infonce_over_own_video_and_negatives():
    positive = torch.tensor([-0.5, -2.0])
    negative = torch.tensor([[-1.0, -3.0], [-0.1, -9.0]])
    valid = torch.tensor([[True, False], [True, True]])
    loss = ranking_loss(positive, negative, valid, temperature=0.5)
    row0 = torch.logsumexp(torch.tensor([-0.5, -1.0]) / 0.5, 0) + 1.0
    row1 = torch.logsumexp(torch.tensor([-2.0, -0.1, -9.0]) / 0.5, 0) + 4.0
    assert float(loss) == pytest.approx(float((row0 + row1) / 2), rel=1e-6)


def test_compute_loss_with_the_ranking_term_on_the_model():
    torch.manual_seed(3)
    config = tiny_config()
    model = GroundingModel(config)
    inputs = make_batch([8, 6, 7], [5, 3, 4])
    output = model(*inputs)
    index = negative_video_index(3, 2)
    videos, queries = index.T.reshape(-1), torch.arange(3).repeat(2)
    clip_states = model.encode_clips(inputs[0], inputs[1])
    word_states = model.encode_query(inputs[2], inputs[3], inputs[4])
    negative = model.score_encoded(clip_states[videos], inputs[1][videos], word_states[queries], inputs[3][queries])
    valid = torch.ones(3, 2, dtype=torch.bool)
    loss_config = LossConfig(ranking_weight=0.7, ranking_negatives=2, ranking_positive="pooled")
    targets, durations = torch.tensor([[1.0, 3.0], [0.0, 6.0], [2.0, 4.0]]), torch.tensor([8.0, 6.0, 7.0])
    loss, parts = compute_loss(output, targets, durations, loss_config, negatives=RankingNegatives(negative, valid))
    assert float(parts["ranking"]) > 0
    assert float(parts["total"]) == pytest.approx(
        float(parts["span"] + 0.5 * parts["boundary"] + 0.7 * parts["ranking"]), rel=1e-6
    )
    loss.backward()
    assert model.video_encoder.input_proj.weight.grad is not None
    with pytest.raises(InputError, match="needs the batch's negative pairs"):
        compute_loss(output, targets, durations, loss_config)


def test_ranking_settings_are_checked():
    with pytest.raises(ConfigError, match="loss.ranking_pooling"):
        LossConfig(ranking_pooling="mean")
    with pytest.raises(ConfigError, match="loss.contrastive_alpha"):
        LossConfig(contrastive_alpha=0.0)
    with pytest.raises(ConfigError, match="loss.ranking_negatives"):
        LossConfig(ranking_negatives=0)


def test_the_target_positive_is_the_best_right_span():
    torch.manual_seed(4)
    model = GroundingModel(tiny_config()).eval()
    with torch.no_grad():
        output = model(*make_batch([8, 6], [5, 3]))
    targets = torch.zeros_like(output.span_scores)
    targets[0, 3] = targets[0, 5] = 0.5  # two right candidates in sample 0
    targets[1, 2] = 0.0  # none in sample 1: the candidate of highest target (all 0 -> the first valid one)
    scores = target_span_log_scores(output, targets)
    log_scores = span_log_scores(output)
    assert float(scores[0]) == pytest.approx(float(torch.maximum(log_scores[0, 3], log_scores[0, 5])))
    assert float(scores[1]) == pytest.approx(float(log_scores[1, 0]))
