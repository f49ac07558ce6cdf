"""Experiment configs: base files, overrides, unknown-key suggestions, value checks, the shipped configs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from grounding.errors import ConfigError, InputError
from grounding.files import stale_temporaries
from grounding.model import GroundingConfig
from grounding.training.config import (
    RESUME_MUTABLE_KEYS,
    DataConfig,
    ExperimentConfig,
    config_differences,
    config_to_yaml,
    load_config,
    parse_overrides,
    parse_yaml_value,
    save_config,
)
from grounding.video.settings import ExtractionSettings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FIXTURES = Path(__file__).resolve().parent / "config_fixtures"
EXTRACTION_KEYS = ("backbone", "clip_seconds", "frames_per_clip", "frame_size", "resize")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_rendered_world() -> None:
    config = load_config(None)
    assert config.data.root == "worlds/w300"
    assert config.data.format == "charades-sta"
    assert config.data.durations == ["durations.csv"]
    assert config.data.extra_eval == {"test_novel": "test_novel.txt"}
    assert config.model == GroundingConfig()
    assert config.train.best_split == "val" and config.data.val_fraction == 0.1


def test_base_file_then_file_then_overrides(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "model:\n  hidden_size: 64\n  span: {dropout: 0.2}\ntrain: {lr: 1e-3, epochs: 7}\n")
    child_text = "base: base.yaml\nmodel:\n  span: {num_graph_layers: 1}\ntrain: {lr: 2e-3}\n"
    child = write(tmp_path / "child.yaml", child_text)
    config = load_config(child, ["train.epochs=3", "model.span.pooling_counts=[15, 8]", "data.val=null"])
    assert config.model.hidden_size == 64  # from the base
    assert config.model.span.dropout == 0.2  # base, merged key by key with the child's span section
    assert config.model.span.num_graph_layers == 1  # child
    assert config.train.lr == 2e-3  # child beats base; "1e-3" without a dot is read as a float
    assert config.train.epochs == 3  # override beats both
    assert config.model.span.pooling_counts == (15, 8)


def test_bases_chain_and_loops_are_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "train: {epochs: 4}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\ntrain: {batch_size: 8}\n")
    config = load_config(write(tmp_path / "c.yaml", "base: [b.yaml]\n"))
    assert (config.train.epochs, config.train.batch_size) == (4, 8)
    write(tmp_path / "x.yaml", "base: y.yaml\n")
    write(tmp_path / "y.yaml", "base: x.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="base file 'missing.yaml' not found"):
        load_config(write(tmp_path / "z.yaml", "base: missing.yaml\n"))


def test_unknown_override_key_suggests_the_closest_known_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'; did you mean 'train\.lr'\?"):
        load_config(None, ["train.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"did you mean 'model\.span\.dropout'"):
        load_config(None, ["model.span.droput=0.1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'; did you mean 'train'"):
        load_config(None, ["trian.lr=0.1"])


def test_unknown_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "data:\n  featurs: f.h5\n")
    message = r"bad\.yaml: unknown config key 'data\.featurs'; did you mean 'data\.features'"
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_malformed_overrides_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_overrides(["train.lr"])
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_overrides(["train..lr=1"])
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_config(write(tmp_path / "broken.yaml", "train:\n  lr: [1, 2\n"))
    with pytest.raises(ConfigError, match="train must be a mapping"):
        load_config(write(tmp_path / "flat.yaml", "train: 3\n"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=0", r"train\.lr must be in \(0\.0, 10\.0\]"),
        ("train.schedule=cosin", r"must be one of cosine, step, constant; got 'cosin' \(did you mean 'cosine'\?\)"),
        ("train.epochs=two", "train.epochs must be an integer"),
        ("train.best_metric=R1@0.6", "train.best_metric must be one of"),
        ("train.amp=fp8", "train.amp must be one of none, bf16, fp16"),
        ("data.format=charades_sta", r"data\.format must be one of .*did you mean 'charades-sta'"),
        ("model.hidden_size=15", "hidden_size must be even"),
        ("data.val=v.json", "data.val_fraction=0.1 carves a val split out of train, but data.val is set"),
        ("data.extra_eval.val=x.txt", "'val' is a reserved split name"),
    ],
)
def test_values_are_checked(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_best_split_must_be_evaluated() -> None:
    with pytest.raises(ConfigError, match="train.best_split is 'val', but the evaluated splits are: test, test_novel"):
        load_config(None, ["data.val_fraction=0"])
    config = load_config(None, ["data.val_fraction=0", "train.best_split=test"])
    assert config.train.best_split == "test"


def test_extra_eval_is_an_open_mapping() -> None:
    added = load_config(None, ["data.extra_eval.hard=hard.txt"])
    assert added.data.extra_eval == {"test_novel": "test_novel.txt", "hard": "hard.txt"}
    assert load_config(None, ["data.extra_eval.test_novel=null"]).data.extra_eval == {}
    assert load_config(None, ["data.extra_eval={}"]).data.extra_eval == {}
    assert added.data.eval_splits() == {
        "test": "worlds/w300/test.txt", "test_novel": "worlds/w300/test_novel.txt", "hard": "worlds/w300/hard.txt",
    }


def test_yaml_values_in_overrides() -> None:
    assert parse_yaml_value("3e-4") == pytest.approx(3e-4)
    assert parse_yaml_value("null") is None
    assert parse_yaml_value("[15, 8]") == [15, 8]
    assert parse_yaml_value("worlds/w300") == "worlds/w300"
    assert parse_overrides(["train.lr=3e-4", "model.span.pooling_counts=[15,8]"]) == {
        "train": {"lr": 3e-4}, "model": {"span": {"pooling_counts": [15, 8]}},
    }
    with pytest.raises(ConfigError, match="unknown config key 'a'"):
        parse_overrides(["a.b.c=1"])


def test_saved_yaml_loads_back_to_the_same_config(tmp_path: Path) -> None:
    config = load_config(None, ["train.lr=3e-4", "model.span.pooling_counts=[7]", "data.durations=[a.csv, b.csv]"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert "betas: [0.9, 0.999]" in config_to_yaml(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    assert not stale_temporaries(tmp_path / "config.yaml")


def test_config_differences_lists_changed_keys() -> None:
    first = load_config(None)
    second = load_config(None, ["train.lr=0.5", "train.num_workers=2", "model.hidden_size=128"])
    assert config_differences(first, second, ignore={"train.num_workers"}) == [
        "model.hidden_size: 256 -> 128", "train.lr: 0.001 -> 0.5",
    ]


def test_data_paths_resolve_against_root() -> None:
    config = load_config(None, ["data.root=/data/w", "data.features=/abs/f.h5", "data.train=t.txt"])
    assert config.data.resolve(config.data.train) == "/data/w/t.txt"
    assert config.data.resolve(config.data.features) == "/abs/f.h5"
    assert load_config(None, ["data.root=''"]).data.resolve("t.txt") == "t.txt"


@pytest.mark.parametrize("name", ["rendered-world", "charades-sta", "charades-sta-32", "tacos", "activitynet"])
def test_shipped_configs_load_and_use_the_model_presets(name: str) -> None:
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.model == GroundingConfig.preset(name)


def test_model_preset_is_the_base_of_the_model_section(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", "model:\n  preset: tacos\n  hidden_size: 256\n")
    config = load_config(path, ["model.span.dropout=0.0"])
    expected = GroundingConfig.preset("tacos").to_dict()
    expected["hidden_size"], expected["span"]["dropout"] = 256, 0.0
    assert config.model == GroundingConfig.from_dict(expected)
    assert load_config(None, ["model.preset=activitynet"]).model == GroundingConfig.preset("activitynet")
    with pytest.raises(ConfigError, match="unknown model preset 'taco'; did you mean 'tacos'"):
        load_config(None, ["model.preset=taco"])
    save_config(config, tmp_path / "resolved.yaml")  # written resolved: no preset key, same config back
    assert "preset" not in (tmp_path / "resolved.yaml").read_text()
    assert load_config(tmp_path / "resolved.yaml") == config


def test_shipped_configs_carry_vlg_nets_solver_settings() -> None:
    tacos = load_config(CONFIGS / "tacos.yaml")
    solver = (tacos.train.lr, tacos.train.schedule, tacos.train.step_size, tacos.train.step_gamma)
    assert solver == (1e-3, "step", 20, 0.1)
    assert (tacos.train.nms, tacos.train.batch_size, tacos.train.epochs) == (0.3, 32, 50)
    assert tacos.model.num_clips == 256 and tacos.model.video_graph.num_layers == 4
    anet = load_config(CONFIGS / "activitynet.yaml")
    assert (anet.train.lr, anet.train.step_size, anet.train.step_gamma, anet.train.nms) == (2e-4, 10, 0.5, 0.5)
    assert load_config(CONFIGS / "rendered-world.yaml") == load_config(None)
    for path in CONFIGS.glob("*.yaml"):
        assert set(yaml.safe_load(path.read_text())) <= {"base", "model", "data", "train"}, path


def test_experiment_config_round_trips_through_dicts() -> None:
    config = load_config(CONFIGS / "charades-sta.yaml")
    assert ExperimentConfig.from_dict(config.to_dict()) == config


# --- the extraction settings: data.extraction, and the old flat data.backbone etc. ----------------------------------
def test_extraction_is_a_nested_section_of_data() -> None:
    config = load_config(None, ["data.extraction.backbone=efficientnet-lite0-motion", "data.extraction.frame_size=160"])
    extraction = config.data.extraction
    assert isinstance(extraction, ExtractionSettings)
    assert extraction == ExtractionSettings(backbone="efficientnet-lite0-motion", frame_size=160)
    assert config.to_dict()["data"]["extraction"] == {
        "backbone": "efficientnet-lite0-motion", "clip_seconds": None, "frames_per_clip": None, "frame_size": 160,
        "resize": None,
    }
    assert "  extraction:\n    backbone: efficientnet-lite0-motion\n" in config_to_yaml(config)
    assert load_config(None).data.extraction == ExtractionSettings()  # default: everything from the feature file
    assert DataConfig(extraction=None).extraction == ExtractionSettings()
    assert DataConfig(extraction={"resize": "crop"}).extraction == ExtractionSettings(resize="crop")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.extraction.frame_size=4", r"data\.extraction\.frame_size must be an integer >= 8, got 4"),
        ("data.extraction.clip_seconds=0", r"data\.extraction\.clip_seconds must be a positive number"),
        ("data.extraction.resize=pad", r"data\.extraction\.resize must be one of squash, crop"),
        ("data.extraction.backbon=x", r"unknown config key 'data\.extraction\.backbon'; did you mean 'data\.extraction\.backbone'"),
        ("data.extraction=3", r"data\.extraction must be a mapping of settings, got 3"),
        ("data.frame_size=4", r"data\.extraction\.frame_size must be an integer >= 8, got 4"),  # old key, new check
    ],
)
def test_extraction_values_are_checked_under_their_new_name(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("key", EXTRACTION_KEYS)
def test_old_flat_extraction_overrides_move_into_data_extraction(key: str) -> None:
    value = {"backbone": "b", "clip_seconds": 0.5, "frames_per_clip": 2, "frame_size": 96, "resize": "crop"}[key]
    old = load_config(None, [f"data.{key}={value}"])
    new = load_config(None, [f"data.extraction.{key}={value}"])
    assert old == new and getattr(old.data.extraction, key) == value
    assert parse_overrides([f"data.{key}={value}"]) == {"data": {"extraction": {key: value}}}


def test_an_old_run_config_yaml_loads_and_equals_the_new_form(tmp_path: Path) -> None:
    # config.yaml as the trainer wrote it before data.extraction existed (flat data.backbone ... data.resize).
    old_text = (FIXTURES / "old_run_config.yaml").read_text(encoding="utf-8")
    assert "\n  backbone: efficientnet-lite0-motion\n" in old_text and "extraction" not in old_text
    old = load_config(FIXTURES / "old_run_config.yaml")
    assert old.data.extraction == ExtractionSettings(
        backbone="efficientnet-lite0-motion", clip_seconds=0.5, frames_per_clip=2, frame_size=160, resize="crop"
    )
    save_config(old, tmp_path / "config.yaml")  # the same config, written the new way
    new = load_config(tmp_path / "config.yaml")
    assert "extraction:" in (tmp_path / "config.yaml").read_text() and new == old
    assert config_differences(old, new) == [] and config_differences(new, old) == []
    # what --resume compares: an old run folder against the config given again, written the new way
    given = load_config(CONFIGS / "rendered-world.yaml", [f"data.extraction.{key}={value}" for key, value in (
        ("backbone", "efficientnet-lite0-motion"), ("clip_seconds", 0.5), ("frames_per_clip", 2),
        ("frame_size", 160), ("resize", "crop"))])
    assert config_differences(old, given, ignore=RESUME_MUTABLE_KEYS) == []
    changed = load_config(CONFIGS / "rendered-world.yaml", ["data.extraction.frame_size=128"])
    assert "data.extraction.frame_size: 160 -> 128" in config_differences(old, changed)


def test_old_keys_in_files_bases_and_dicts(tmp_path: Path) -> None:
    write(tmp_path / "old.yaml", "data:\n  backbone: b0\n  frame_size: 96\n")
    child = write(tmp_path / "child.yaml", "base: old.yaml\ndata:\n  extraction: {frame_size: 128}\n")
    config = load_config(child)
    assert config.data.extraction == ExtractionSettings(backbone="b0", frame_size=128)  # child beats its base
    assert ExperimentConfig.from_dict({"data": {"resize": "crop"}}).data.extraction == ExtractionSettings(resize="crop")
    both = write(tmp_path / "both.yaml", "data:\n  backbone: b0\n  extraction: {backbone: b1}\n")
    with pytest.raises(ConfigError, match=r"both\.yaml: both 'data\.backbone' and 'data\.extraction\.backbone' are set"):
        load_config(both)


# ExperimentConfig.to_dict() of every shipped config, dumped before data.extraction existed (commit 87265c7). The
# configs now say data.extraction.backbone; apart from that move and the keys added since (with their defaults:
# the ranking terms, data.train_relevant), nothing may change.
LOSS_KEYS_ADDED = {
    "contrastive_alpha": 1.0, "contrastive_beta": 0.0, "ranking_weight": 0.0, "ranking_negatives": 3,
    "ranking_temperature": 1.0, "ranking_pooling": "max", "ranking_pooling_temperature": 1.0,
    "ranking_positive": "target", "contrastive_detach": True,
}
SHIPPED_BEFORE = json.loads((FIXTURES / "shipped_configs_flat_extraction.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(SHIPPED_BEFORE))
def test_shipped_configs_resolve_as_before(name: str) -> None:
    expected = SHIPPED_BEFORE[name]
    expected["data"]["extraction"] = {key: expected["data"].pop(key) for key in EXTRACTION_KEYS}
    expected["model"]["loss"].update(LOSS_KEYS_ADDED)
    expected["data"].setdefault("train_relevant", None)
    expected["model"].setdefault("video_embedding_pooling", "mean")  # added with grounding fit-ranker
    expected["model"].setdefault("video_embedding_features", False)
    assert load_config(CONFIGS / f"{name}.yaml").to_dict() == expected
    assert "backbone" not in yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()).get("data", {})
