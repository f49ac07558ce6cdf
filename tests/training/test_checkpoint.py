"""Checkpoints: training state through safetensors + JSON (no pickle), RNG restore, folder swaps and lookup."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from grounding.errors import InputError
from grounding.inference import PipelineInfo
from grounding.model import find_checkpoint
from grounding.training.checkpoint import (
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    load_training_state,
    replace_directory,
    rng_state,
    save_training_state,
    set_rng_state,
    staging_directory,
)
from tests.training import single_thread  # noqa: F401 (single_thread: autouse)


def stepped_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
    optimizer = torch.optim.AdamW(
        [{"params": [model[0].weight, model[2].weight], "weight_decay": 0.1},
         {"params": [model[0].bias, model[1].weight, model[1].bias, model[2].bias], "weight_decay": 0.0}],
        lr=0.01, betas=(0.8, 0.99),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_optimizer_and_scheduler_state_round_trip_exactly(tmp_path: Path) -> None:
    model, optimizer, scheduler = stepped_optimizer()
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": 3,
             "best_value": float("-inf"), "best_epoch": None, "pair": (1, 2.5)}
    save_training_state(tmp_path, state)
    loaded = load_training_state(tmp_path)
    assert loaded["epoch"] == 3 and loaded["best_value"] == float("-inf") and loaded["best_epoch"] is None
    assert loaded["pair"] == (1, 2.5)
    assert loaded["scheduler"] == scheduler.state_dict()
    original = optimizer.state_dict()
    assert loaded["optimizer"]["param_groups"] == original["param_groups"]
    assert set(loaded["optimizer"]["state"]) == set(original["state"]) == set(range(6))  # int keys survive
    for index, values in original["state"].items():
        for name, tensor in values.items():
            assert torch.equal(loaded["optimizer"]["state"][index][name], tensor)
    # The restored optimizer takes the same next step as the original.
    twin, fresh, _ = stepped_optimizer()  # same seed: same weights, but its own optimizer state
    fresh.load_state_dict(loaded["optimizer"])
    batch = torch.randn(5, 3)
    for net, opt in ((model, optimizer), (twin, fresh)):
        opt.zero_grad()
        net(batch).square().mean().backward()
        opt.step()
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert torch.equal(mine, theirs)
    text = (tmp_path / STATE_JSON_FILE).read_text()
    assert json.loads(text)["format_version"] == 1 and "exp_avg_sq" in text
    assert (tmp_path / STATE_TENSORS_FILE).stat().st_size > 0


def test_rng_state_restores_every_generator(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_training_state(tmp_path, {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(load_training_state(tmp_path)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_missing_or_damaged_state_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no training state"):
        load_training_state(tmp_path)
    save_training_state(tmp_path, {"x": torch.ones(2)})
    (tmp_path / STATE_JSON_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_training_state(tmp_path)


def test_replace_directory_swaps_whole_folders(tmp_path: Path) -> None:
    target = tmp_path / "last"
    for version in ("one", "two"):
        staged = staging_directory(target)
        (staged / "marker.txt").write_text(version)
        replace_directory(staged, target)
    assert (target / "marker.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def make_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_find_checkpoint_prefers_best_and_falls_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_checkpoint(run / "last")
    assert find_checkpoint(run) == run / "last"
    make_checkpoint(run / "best")
    assert find_checkpoint(run) == run / "best"
    assert find_checkpoint(run / "last") == run / "last"
    make_checkpoint(tmp_path / "other" / "last.old")  # killed between the two renames of a swap
    assert find_checkpoint(tmp_path / "other" / "last") == tmp_path / "other" / "last.old"
    with pytest.raises(InputError, match="no such folder"):
        find_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no config.json \+ model.safetensors there"):
        find_checkpoint(tmp_path / "empty")


def test_pipeline_info_comes_from_model_metadata() -> None:
    old_style = {"pipeline": {"text_encoder": "glove:g.txt", "backbone": "my-net", "frame_size": 160, "nms": 0.3}}
    info = PipelineInfo.from_metadata(old_style)  # flat extraction keys, as checkpoints were written before
    assert (info.text_encoder, info.extraction.backbone, info.extraction.frame_size, info.nms, info.max_words) == (
        "glove:g.txt", "my-net", 160, 0.3, 32)
    assert PipelineInfo.from_json(info.to_json()) == info  # the nested form round-trips
    assert info.to_json()["extraction"]["backbone"] == "my-net"
    assert PipelineInfo.from_metadata({}) == PipelineInfo()
    with pytest.raises(InputError, match=r"unknown metadata.pipeline keys \['colour'\]"):
        PipelineInfo.from_json({"colour": "red"})
    with pytest.raises(InputError, match=r"metadata.pipeline.extraction.frame_size must be an integer >= 8"):
        PipelineInfo.from_json({"extraction": {"frame_size": 2}})
