"""Tests of grounding.model; shared builders for a tiny configuration (H=32, T=8, L=5)."""

from __future__ import annotations

import pytest
import torch

from grounding.model import GroundingConfig, MatchingConfig, SpanConfig, TextConfig, VideoGraphConfig
from grounding.text.language_graph import batch_edge_index, sequential_edges

TINY_INPUT_DIM = 12
TINY_TEXT_DIM = 10
TINY_CLIPS = 8
TINY_WORDS = 5


def tiny_config(**overrides) -> GroundingConfig:
    """H=32, T=8, 2 GCNeXt layers, 2 syntactic layers, 1 matching layer, 2 moment-graph layers, no dropout."""
    values = dict(
        input_dim=TINY_INPUT_DIM,
        num_clips=TINY_CLIPS,
        hidden_size=32,
        video_graph=VideoGraphConfig(num_layers=2, knn_k=3, groups=4, width_per_group=4, dropout=0.0),
        text=TextConfig(input_dim=TINY_TEXT_DIM, num_syntactic_layers=2, dropout=0.0),
        matching=MatchingConfig(num_layers=1, knn_k=2, groups=4, width_per_group=4, dropout=0.0),
        span=SpanConfig(pooling_counts=(4, 2), num_graph_layers=2, dropout=0.0),
    )
    values.update(overrides)
    return GroundingConfig(**values)


def make_batch(
    clip_lengths: list[int], word_lengths: list[int], num_clips: int = TINY_CLIPS, num_words: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (clip_feats, clip_mask, word_feats, word_mask, word_edge_index) with left-aligned padding.

    Padded positions hold large random values so that any leak shows.
    """
    generator = torch.Generator().manual_seed(seed)
    batch_size = len(clip_lengths)
    num_words = max(word_lengths) if num_words is None else num_words
    clip_feats = torch.randn(batch_size, num_clips, TINY_INPUT_DIM, generator=generator)
    word_feats = torch.randn(batch_size, num_words, TINY_TEXT_DIM, generator=generator)
    clip_mask = torch.arange(num_clips)[None, :] < torch.tensor(clip_lengths)[:, None]
    word_mask = torch.arange(num_words)[None, :] < torch.tensor(word_lengths)[:, None]
    clip_feats[~clip_mask] = 50.0 * torch.randn(int((~clip_mask).sum()), TINY_INPUT_DIM, generator=generator)
    word_feats[~word_mask] = 50.0 * torch.randn(int((~word_mask).sum()), TINY_TEXT_DIM, generator=generator)
    edges = batch_edge_index([sequential_edges(length) for length in word_lengths], num_words)
    return clip_feats, clip_mask, word_feats, word_mask, edges


def select_sample(batch, index: int):
    """Sample ``index`` of a batch from :func:`make_batch` as a batch of one, its words cut to its length."""
    clip_feats, clip_mask, word_feats, word_mask, _ = batch
    length = int(word_mask[index].sum())
    return (
        clip_feats[index : index + 1],
        clip_mask[index : index + 1],
        word_feats[index : index + 1, :length],
        word_mask[index : index + 1, :length],
        batch_edge_index([sequential_edges(length)], length),
    )


@pytest.fixture
def single_thread():
    """Run a test on one torch thread: tiny tensors gain nothing from two, and on a busy machine every
    parallel region can stall for a scheduler tick."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
