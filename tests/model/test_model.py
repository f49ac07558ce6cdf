from __future__ import annotations

import json

import pytest
import torch

from grounding.errors import ConfigError, InputError
from grounding.model import (
    GroundingConfig,
    GroundingModel,
    LossConfig,
    MatchingConfig,
    SpanConfig,
    TextConfig,
    VideoGraphConfig,
    compute_loss,
    decode_spans,
)
from tests.model import TINY_CLIPS, make_batch, select_sample, single_thread, tiny_config

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


def _model(seed: int = 0, **overrides) -> GroundingModel:
    torch.manual_seed(seed)
    return GroundingModel(tiny_config(**overrides)).eval()


def test_output_shapes_and_ranges():
    model = _model()
    batch = make_batch([8, 5], [5, 3])
    output = model(*batch)
    num_candidates = model.candidates.shape[0]
    # The diagonal, offsets 1-4, then offset 6 at stride 2 (start 0 only); offset 8 does not fit in 8 clips.
    assert num_candidates == 8 + (7 + 6 + 5 + 4) + 1
    assert output.span_logits.shape == output.span_scores.shape == output.candidate_mask.shape == (2, num_candidates)
    assert output.candidates.dtype == torch.int64 and output.candidates.shape == (num_candidates, 2)
    assert output.start_logits.shape == output.end_logits.shape == (2, TINY_CLIPS)
    assert output.video_embedding.shape == output.query_embedding.shape == (2, 32)
    assert torch.allclose(output.video_embedding.norm(dim=-1), torch.ones(2))
    assert bool(((output.span_scores >= 0) & (output.span_scores <= 1)).all())
    assert torch.equal(output.candidate_mask[1], output.candidates[:, 1] < 5)


def test_layer_reprs():
    model = _model()
    assert str(model.video_encoder.layers[0]) == "GCNeXtBlock(32, knn_k=3, groups=4, width_per_group=4)"
    assert str(model.query_encoder.layers[0]) == "SyntacticGraphConv(32, 32)"
    assert str(model.matching_layers[0]) == "CrossModalMatching(32, knn_k=2)"
    assert str(model.span_head) == "SpanHead(32, num_clips=8, candidates=31, moment_size=32, graph_layers=2)"


def test_batched_equals_one_at_a_time():
    model = _model()
    batch = make_batch([8, 5, 2], [5, 3, 1])
    output = model(*batch)
    for index in range(3):
        single = model(*select_sample(batch, index))
        for name in ("span_logits", "span_scores", "start_logits", "end_logits", "video_embedding", "query_embedding"):
            assert torch.allclose(getattr(output, name)[index], getattr(single, name)[0], atol=1e-5), name


def test_padded_values_do_not_matter():
    model = _model()
    batch = make_batch([8, 5], [5, 3])
    clip_feats, clip_mask, word_feats, word_mask, edges = batch
    output = model(*batch)
    other_clips = clip_feats.clone()
    other_clips[~clip_mask] = float("nan")
    other_words = word_feats.clone()
    other_words[~word_mask] = -1e6
    changed = model(other_clips, clip_mask, other_words, word_mask, edges)
    for name in ("span_logits", "span_scores", "start_logits", "end_logits", "video_embedding", "query_embedding"):
        assert torch.equal(getattr(output, name), getattr(changed, name)), name


def test_encode_then_score_equals_forward():
    model = _model()
    clip_feats, clip_mask, word_feats, word_mask, edges = make_batch([8, 6], [5, 4])
    clip_states = model.encode_clips(clip_feats, clip_mask)
    word_states = model.encode_query(word_feats, word_mask, edges)
    output = model.score_encoded(clip_states, clip_mask, word_states, word_mask)
    assert torch.equal(output.span_scores, model(clip_feats, clip_mask, word_feats, word_mask, edges).span_scores)


@pytest.mark.parametrize(
    ("lstm_layers", "input_dropout", "fusion_layers", "fusion_dilated"),
    [(0, 0.0, 0, False), (2, 0.2, 2, False), (0, 0.0, 3, True)],
)
def test_every_parameter_gets_a_gradient(lstm_layers, input_dropout, fusion_layers, fusion_dilated):
    torch.manual_seed(0)
    config = tiny_config(
        span=SpanConfig(pooling_counts=(4, 2), num_graph_layers=2, dropout=0.0, fusion_layers=fusion_layers,
                         fusion_dilated=fusion_dilated),
        text=TextConfig(input_dim=10, lstm_layers=lstm_layers, num_syntactic_layers=2, dropout=0.0),
        video_graph=VideoGraphConfig(num_layers=2, knn_k=3, groups=4, width_per_group=4, positional="learned", dropout=0.0),
        input_dropout=input_dropout,
        loss=LossConfig(contrastive_weight=0.5),
    )
    model = GroundingModel(config).train()
    batch = make_batch([8, 5, 7], [5, 3, 4])
    loss, _ = compute_loss(model(*batch), torch.tensor([[1.0, 4.0], [0.0, 2.0], [3.0, 9.0]]), [8.0, 5.0, 10.0], config.loss)
    loss.backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert missing == []
    dead = [name for name, parameter in model.named_parameters() if not bool(parameter.grad.abs().sum() > 0)]
    assert dead == []


def test_stacked_layers_hold_distinct_parameters():
    model = _model()
    stacks = [model.video_encoder.layers, model.query_encoder.layers, model.span_head.graph_layers]
    for stack in stacks:
        assert len(stack) == 2
        first, second = (dict(layer.named_parameters()) for layer in stack)
        for name in first:
            assert first[name].data_ptr() != second[name].data_ptr(), name
    two_matching = _model(matching=MatchingConfig(num_layers=2, groups=4, width_per_group=4))
    assert len(two_matching.matching_layers) == 2
    assert two_matching.matching_layers[0].clip_update.norm.weight is not two_matching.matching_layers[1].clip_update.norm.weight


def test_shared_layer_weights_is_a_flag():
    shared = _model(
        video_graph=VideoGraphConfig(num_layers=3, groups=4, width_per_group=4, dropout=0.0, share_layer_weights=True),
        text=TextConfig(input_dim=10, num_syntactic_layers=2, dropout=0.0, share_layer_weights=True),
        matching=MatchingConfig(num_layers=2, groups=4, width_per_group=4, share_layer_weights=True),
        span=SpanConfig(pooling_counts=(4, 2), num_graph_layers=2, dropout=0.0, share_layer_weights=True),
    )
    assert len(shared.video_encoder.layers) == len(shared.query_encoder.layers) == 1
    assert len(shared.matching_layers) == len(shared.span_head.graph_layers) == 1
    assert len(shared.matching_layers_in_order()) == 2
    # Applying the one block three times is not the same as applying it once.
    once = _model(video_graph=VideoGraphConfig(num_layers=1, groups=4, width_per_group=4, dropout=0.0))
    once.video_encoder.load_state_dict(shared.video_encoder.state_dict())
    clip_feats, clip_mask, *_ = make_batch([8], [3])
    assert not torch.allclose(shared.encode_clips(clip_feats, clip_mask), once.encode_clips(clip_feats, clip_mask))


def test_a_tiny_batch_overfits():
    torch.manual_seed(0)
    config = tiny_config()
    model = GroundingModel(config).train()
    batch = make_batch([8, 8, 6, 8], [5, 4, 3, 5], seed=1)
    targets = torch.tensor([[0.0, 2.0], [4.0, 8.0], [1.0, 5.0], [2.0, 6.0]])
    durations = [8.0, 8.0, 6.0, 8.0]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss, parts = compute_loss(model(*batch), targets, durations, config.loss)
        loss.backward()
        optimizer.step()
        losses.append(float(parts["total"]))
    assert losses[-1] < 0.35 * losses[0]
    model.eval()
    best = [spans[0] for spans in decode_spans(model(*batch), durations, top_k=1)]
    hits = sum(abs(span.start - float(t[0])) < 1e-6 and abs(span.end - float(t[1])) < 1e-6 for span, t in zip(best, targets))
    assert hits >= 3


def test_save_and_load_round_trip(tmp_path):
    model = _model()
    batch = make_batch([8, 5], [5, 3])
    model.save_pretrained(tmp_path / "ckpt", metadata={"backbone": "efficientnet-lite0", "text_encoder": "minilm"})
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = GroundingModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    assert loaded.pretrained_metadata == {"backbone": "efficientnet-lite0", "text_encoder": "minilm"}
    assert torch.equal(loaded(*batch).span_scores, model(*batch).span_scores)


def test_loading_weights_of_another_config_is_refused(tmp_path):
    _model().save_pretrained(tmp_path)
    wider = tiny_config(hidden_size=48)
    with pytest.raises(ConfigError, match=r"weight 'video_encoder\.input_proj\.weight' has shape \(32, 12\), but the config builds \(48, 12\)"):
        GroundingModel.from_pretrained(tmp_path, config=wider)
    deeper = tiny_config(video_graph=VideoGraphConfig(num_layers=3, groups=4, width_per_group=4))
    with pytest.raises(ConfigError, match=r"weight 'video_encoder\.layers\.2\..*' .* is missing from model\.safetensors"):
        GroundingModel.from_pretrained(tmp_path, config=deeper)
    payload = json.loads((tmp_path / "config.json").read_text())
    payload["config"]["video_graph"]["num_layers"] = 1
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match=r"weight 'video_encoder\.layers\.1\..*' is not part of a model built from this config"):
        GroundingModel.from_pretrained(tmp_path)


def test_loading_a_missing_or_broken_checkpoint_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"config\.json not found"):
        GroundingModel.from_pretrained(tmp_path)
    _model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match=r"model\.safetensors is not readable"):
        GroundingModel.from_pretrained(tmp_path)


def test_nan_in_a_real_clip_names_the_sample_and_clips():
    model = _model()
    clip_feats, clip_mask, word_feats, word_mask, edges = make_batch([8, 6], [5, 3])
    clip_feats[1, 2:4, 0] = float("nan")
    with pytest.raises(InputError, match=r"clip_feats: sample 1 has NaN or inf in clips 2-3; re-extract"):
        model(clip_feats, clip_mask, word_feats, word_mask, edges)
    word_feats[0, 1, 3] = float("inf")
    with pytest.raises(InputError, match=r"word_feats: sample 0 has NaN or inf at words 1"):
        model.encode_query(word_feats, word_mask, edges)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("clip_dim", r"clip_feats has 7 features per clip, but this model expects input_dim=12"),
        ("clip_count", r"clip_feats has 6 clips, but this model takes num_clips=8; resample or pad"),
        ("word_dim", r"word_feats has 4 features per word, but this model expects text\.input_dim=10"),
        ("empty_query", r"word_mask: sample 1 has an empty query"),
        ("no_clips", r"clip_mask: sample 0 has no real clip"),
        ("gap", r"clip_mask: sample 1 has padding before a real clip"),
        ("float_mask", r"clip_mask must be a bool tensor"),
        ("crossing_edge", r"word_edge_index: edge 4 -> 5 joins two samples"),
        ("padding_edge", r"word_edge_index: edge 7 -> 8 touches a padded word"),
        ("batch", r"clip_feats has 2 samples but word_feats has 1"),
    ],
)
def test_bad_inputs_raise_input_errors(change, message):
    model = _model()
    clip_feats, clip_mask, word_feats, word_mask, edges = make_batch([8, 6], [5, 3])
    if change == "clip_dim":
        clip_feats = clip_feats[..., :7]
    elif change == "clip_count":
        clip_feats, clip_mask = clip_feats[:, :6], clip_mask[:, :6]
    elif change == "word_dim":
        word_feats = word_feats[..., :4]
    elif change == "empty_query":
        word_mask[1] = False
        edges = edges[:, edges[0] < 5]
    elif change == "no_clips":
        clip_mask[0] = False
    elif change == "gap":
        clip_mask[1, 0] = False
    elif change == "float_mask":
        clip_mask = clip_mask.float()
    elif change == "crossing_edge":
        edges = torch.cat([edges, torch.tensor([[4], [5]])], dim=1)
    elif change == "padding_edge":
        edges = torch.cat([edges, torch.tensor([[7], [8]])], dim=1)
    elif change == "batch":
        word_feats, word_mask = word_feats[:1], word_mask[:1]
        edges = edges[:, edges[0] < 5]
    with pytest.raises(InputError, match=message):
        model(clip_feats, clip_mask, word_feats, word_mask, edges)


def test_the_config_must_be_a_grounding_config():
    with pytest.raises(ConfigError, match=r"takes a GroundingConfig, got dict"):
        GroundingModel({"hidden_size": 32})


def test_tacos_preset_scores_the_3101_candidates_of_vlg_net():
    config = GroundingConfig.preset("tacos")
    model = GroundingModel(config)
    assert model.candidates.shape == (3101, 2)

