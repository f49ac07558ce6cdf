from __future__ import annotations

import math

import pytest
import torch

from grounding.errors import InputError
from grounding.model import GroundingModel, GroundingOutput, LossConfig, compute_loss, span_candidates
from grounding.model.losses import boundary_targets, contrastive_loss, inside_targets, scaled_iou_targets
from tests.model import make_batch, single_thread, tiny_config

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


def _output(clip_mask: torch.Tensor, span_logits: torch.Tensor | None = None) -> GroundingOutput:
    candidates = span_candidates(clip_mask.shape[1], [clip_mask.shape[1] - 1])
    candidate_mask = candidates[None, :, 1] < clip_mask.sum(dim=1, keepdim=True)
    batch_size, num_clips = clip_mask.shape
    logits = torch.zeros(batch_size, len(candidates)) if span_logits is None else span_logits
    return GroundingOutput(
        span_logits=logits,
        candidates=candidates,
        span_scores=torch.sigmoid(logits),
        start_logits=torch.zeros(batch_size, num_clips),
        end_logits=torch.zeros(batch_size, num_clips),
        candidate_mask=candidate_mask,
        clip_mask=clip_mask,
    )


def test_scaled_iou_targets_hand_example():
    # 4 clips over 8 s (2 s each); ground truth [2, 6] s = clips 1-2.
    output = _output(torch.ones(1, 4, dtype=torch.bool))
    index = {tuple(pair): position for position, pair in enumerate(output.candidates.tolist())}
    target = torch.tensor([[2.0, 6.0]], dtype=torch.float64)
    durations = torch.tensor([8.0], dtype=torch.float64)
    strict = scaled_iou_targets(output, target, durations, LossConfig(min_iou=0.5, max_iou=1.0))[0]
    assert strict[index[(1, 2)]] == 1.0  # IoU 1
    assert strict[index[(0, 3)]] == 0.0  # [0, 8]: IoU 0.5 -> (0.5 - 0.5) / 0.5
    assert strict[index[(1, 3)]] == pytest.approx((4 / 6 - 0.5) / 0.5)  # [2, 8]: IoU 2/3
    loose = scaled_iou_targets(output, target, durations, LossConfig(min_iou=0.3, max_iou=0.7))[0]
    assert loose[index[(1, 1)]] == pytest.approx(0.5)  # [2, 4]: IoU 0.5 -> (0.5 - 0.3) / 0.4
    assert loose[index[(3, 3)]] == 0.0  # [6, 8]: no overlap


def test_boundary_targets_peak_on_the_ground_truth_clips():
    clip_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    targets = torch.tensor([[2.0, 6.0], [0.5, 9.0]], dtype=torch.float64)
    start, end = boundary_targets(clip_mask, targets, torch.tensor([8.0, 10.0], dtype=torch.float64), sigma=1.0)
    # Sample 0: start 2 s is in clip 1; end 6 s is on the border of clips 2 and 3 and belongs to clip 2.
    assert start[0].tolist() == pytest.approx([math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2.0)])
    assert end[0].tolist() == pytest.approx([math.exp(-2.0), math.exp(-0.5), 1.0, math.exp(-0.5)])
    # Sample 1: 2 clips of 5 s; start 0.5 s -> clip 0, end 9 s -> clip 1.
    assert start[1, :2].tolist() == pytest.approx([1.0, math.exp(-0.5)])
    assert end[1, :2].tolist() == pytest.approx([math.exp(-0.5), 1.0])


def test_invalid_candidates_and_padded_clips_do_not_count():
    clip_mask = torch.tensor([[True, True, False, False]])
    config = LossConfig()
    base = _output(clip_mask)
    loss, parts = compute_loss(base, torch.tensor([[0.0, 5.0]]), [10.0], config)
    changed_logits = base.span_logits.clone()
    changed_logits[~base.candidate_mask] = 7.0
    changed = _output(clip_mask, changed_logits)
    changed.start_logits[0, 2:] = -3.0
    loss_changed, _ = compute_loss(changed, torch.tensor([[0.0, 5.0]]), [10.0], config)
    assert torch.equal(loss, loss_changed)
    # All logits 0 -> span BCE is log 2 whatever the targets; the boundary BCE is log 2 too.
    assert float(parts["span"]) == pytest.approx(math.log(2))
    assert float(parts["boundary"]) == pytest.approx(math.log(2))
    assert float(parts["total"]) == pytest.approx(math.log(2) * (1 + config.boundary_weight))
    assert float(parts["contrastive"]) == 0.0


def test_contrastive_term_excludes_other_queries_of_the_same_video():
    videos = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), dim=-1)
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.1, 1.0], [1.0, -0.1]]), dim=-1)
    loss = contrastive_loss(videos, queries, temperature=0.5, video_ids=["a", "b", "a"])
    logits = queries @ videos.T / 0.5
    same = torch.tensor([[False, False, True], [False, False, False], [True, False, False]])
    logits = logits.masked_fill(same, -math.inf)
    labels = torch.arange(3)
    expected = 0.5 * (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels))
    assert torch.allclose(loss, expected)
    assert float(contrastive_loss(videos[:1], queries[:1], 0.5)) == 0.0


def test_compute_loss_on_the_model_with_every_term():
    torch.manual_seed(0)
    config = tiny_config()
    model = GroundingModel(config)
    output = model(*make_batch([8, 6], [5, 3]))
    loss, parts = compute_loss(
        output, torch.tensor([[1.0, 3.0], [0.0, 6.0]]), torch.tensor([8.0, 6.0]), LossConfig(contrastive_weight=1.0), ["v1", "v2"]
    )
    assert loss.requires_grad and math.isfinite(float(loss.detach()))
    assert float(parts["contrastive"]) > 0
    assert float(parts["total"]) == pytest.approx(float(parts["span"] + 0.5 * parts["boundary"] + parts["contrastive"]))


def test_inside_targets_are_the_covered_fraction_of_each_clip():
    clip_mask = torch.tensor([[True] * 4, [True, True, False, False]])
    # 8 s over 4 clips (2 s each): 1-5 s covers half of clip 0, all of clip 1, half of clip 2.
    # 6 s over 2 real clips (3 s each): 0-1.5 s covers half of clip 0.
    targets = inside_targets(clip_mask, torch.tensor([[1.0, 5.0], [0.0, 1.5]], dtype=torch.float64), torch.tensor([8.0, 6.0], dtype=torch.float64))
    assert targets.tolist() == [[0.5, 1.0, 0.5, 0.0], [0.5, 0.0, 0.0, 0.0]]


def test_inside_term_is_added_with_its_weight_when_the_head_is_on():
    torch.manual_seed(0)
    config = tiny_config()
    config.span.inside_score = True
    model = GroundingModel(config)
    output = model(*make_batch([8, 6], [5, 3]))
    assert output.inside_logits.shape == (2, 8)
    loss, parts = compute_loss(output, torch.tensor([[1.0, 3.0], [0.0, 6.0]]), torch.tensor([8.0, 6.0]), LossConfig(inside_weight=2.0))
    assert float(parts["inside"]) > 0
    assert float(parts["total"]) == pytest.approx(float(parts["span"] + 0.5 * parts["boundary"] + 2.0 * parts["inside"]))
    loss.backward()
    assert model.span_head.boundary_out.weight.grad[2].abs().sum() > 0  # the inside row learns


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([[3.0, 1.0]], r"sample 0 has window \(3.0, 1.0\) s; a target needs finite start <= end"),
        ([[float("nan"), 1.0]], r"sample 0 has window \(nan, 1.0\)"),
        ([[1.0, 2.0, 3.0]], r"target_windows must have shape \(B, 2\) = \(1, 2\)"),
    ],
)
def test_bad_targets_are_input_errors(targets, message):
    with pytest.raises(InputError, match=message):
        compute_loss(_output(torch.ones(1, 4, dtype=torch.bool)), torch.tensor(targets), [8.0], LossConfig())
