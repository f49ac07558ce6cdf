"""Shared helpers of the ranking tests: the tiny world's sentences and an untrained tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from grounding.inference import PIPELINE_KEY, PipelineInfo
from grounding.model import GroundingConfig, GroundingModel
from tests.training import TINY_MODEL

SENTENCES = ["a red ball jumps", "the blue box spins"]  # even videos of the tiny world show the first, odd the second


def save_tiny_checkpoint(world: Path, folder: Path) -> Path:
    """An untrained tiny model (seed 0) with the tiny world's GloVe words as its text encoder, saved in ``folder``."""
    torch.manual_seed(0)
    model = GroundingModel(GroundingConfig.from_dict(TINY_MODEL))
    pipeline = PipelineInfo(text_encoder=f"glove:{world / 'glove.txt'}", syntax="sequential", nms=0.5, top_k=3)
    model.save_pretrained(folder, metadata={PIPELINE_KEY: pipeline.to_json()})
    return folder
