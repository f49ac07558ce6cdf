"""grounding.training.splits.pipeline_info: what a checkpoint records about its inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from grounding.data.features import open_feature_store
from grounding.errors import ConfigError
from grounding.training.config import ExperimentConfig
from grounding.training.splits import pipeline_info
from tests.training import tiny_config_tree, write_tiny_world


def test_pinned_settings_fill_the_files_and_a_contradiction_names_both_values(tmp_path: Path) -> None:
    world = write_tiny_world(tmp_path / "world", num_videos=4, num_test=1)
    tree = tiny_config_tree(world, tmp_path / "run")
    with open_feature_store(world / "features.h5") as store:
        from_file = pipeline_info(ExperimentConfig.from_dict(tree), store).extraction
        assert (from_file.backbone, from_file.clip_seconds, from_file.frame_size) == ("test-backbone", 1.0, 32)
        tree["data"]["extraction"] = {"frames_per_clip": 1, "frame_size": 64}
        with pytest.raises(ConfigError, match=r"data.extraction sets frame_size=64 \(the file: 32\) for .*features.h5"):
            pipeline_info(ExperimentConfig.from_dict(tree), store)
