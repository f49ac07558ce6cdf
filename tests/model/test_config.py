from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.errors import ConfigError
from grounding.model import PRESET_NAMES, GroundingConfig, SpanConfig, VideoGraphConfig, span_candidates


def test_defaults_are_the_rendered_world():
    config = GroundingConfig()
    assert (config.input_dim, config.num_clips, config.hidden_size) == (2560, 32, 256)
    assert config.text.input_dim == 384
    assert GroundingConfig.preset("rendered-world") == config


def test_dict_round_trip_is_json_ready():
    config = GroundingConfig.preset("tacos")
    values = json.loads(json.dumps(config.to_dict()))
    assert values["span"]["pooling_counts"] == [5, 8, 8, 8]
    assert GroundingConfig.from_dict(values) == config


# GroundingConfig.preset(name).to_dict() for every preset, dumped from the code before the presets were derived
# from one another (commit 87265c7), plus the loss keys added since with their defaults (the ranking terms);
# deriving them must not change a single value.
PINNED_PRESETS = json.loads((Path(__file__).with_name("preset_configs.json")).read_text(encoding="utf-8"))


def test_every_preset_is_pinned():
    assert sorted(PINNED_PRESETS) == sorted(PRESET_NAMES)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_give_exactly_the_pinned_configs(name):
    assert GroundingConfig.preset(name).to_dict() == PINNED_PRESETS[name]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_builds(name):
    config = GroundingConfig.preset(name)
    assert isinstance(config.video_graph, VideoGraphConfig)


def test_vlg_net_presets_follow_the_published_settings():
    tacos = GroundingConfig.preset("tacos")
    assert (tacos.input_dim, tacos.num_clips, tacos.hidden_size) == (4096, 256, 512)
    assert (tacos.video_graph.num_layers, tacos.video_graph.knn_k) == (4, 3)
    assert len(span_candidates(tacos.num_clips, tacos.span.pooling_counts)) == 3101
    activitynet = GroundingConfig.preset("activitynet")
    assert (activitynet.input_dim, activitynet.num_clips, activitynet.video_graph.knn_k) == (500, 64, 9)
    assert (activitynet.matching.knn_k, activitynet.loss.min_iou, activitynet.loss.max_iou) == (7, 0.7, 0.71)
    charades = GroundingConfig.preset("charades-sta")
    assert (charades.input_dim, charades.num_clips) == (1024, 16)
    assert len(span_candidates(charades.num_clips, charades.span.pooling_counts)) == 136


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"video_graph": {"knn_k": 0}}, r"video_graph\.knn_k must be >= 1, got 0"),
        ({"video_graph": {"positional": "rotary"}}, r"video_graph\.positional must be one of"),
        ({"text": {"dropout": 1.5}}, r"text\.dropout must be in \[0.0, 0.9\], got 1.5"),
        ({"matching": {"use_semantic_edges": 1}}, r"matching\.use_semantic_edges must be true or false"),
        ({"span": {"pooling_counts": [4, 0]}}, r"span\.pooling_counts\[1\] must be >= 1, got 0"),
        ({"span": {"pool_logit_bound": 0}}, r"span\.pool_logit_bound must be in \(0.0, 30.0\]"),
        ({"loss": {"min_iou": 0.7, "max_iou": 0.5}}, r"loss\.max_iou \(0.5\) must be greater than loss\.min_iou \(0.7\)"),
        ({"hidden_size": 33}, r"hidden_size must be even"),
        ({"num_clips": True}, r"num_clips must be an integer, got True"),
    ],
)
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        GroundingConfig.from_dict(values)


def test_unknown_keys_suggest_the_closest_known_key():
    with pytest.raises(ConfigError, match=r"unknown model config key 'hiden_size'; did you mean 'hidden_size'\?"):
        GroundingConfig.from_dict({"hiden_size": 64})
    with pytest.raises(ConfigError, match=r"'video_graph\.knn'; did you mean 'knn_k'\?"):
        GroundingConfig.from_dict({"video_graph": {"knn": 3}})


def test_unknown_preset_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown model preset 'taco'; did you mean 'tacos'\?"):
        GroundingConfig.preset("taco")


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match=r"span\.num_graph_layers must be >= 0"):
        SpanConfig(num_graph_layers=-1)
    with pytest.raises(ConfigError, match=r"span\.fusion_layers must be an integer, got 1.5"):
        SpanConfig(fusion_layers=1.5)
    with pytest.raises(ConfigError, match=r"video_graph must be a mapping"):
        GroundingConfig(video_graph=3)
