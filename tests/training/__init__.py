"""Shared builders for the training tests: a tiny world written into a tmp folder, and a tiny config for it.

The world: videos of T = 10..19 clips with 6-d features; each video has one "event" of 2-3 clips where
feature 0 (a red ball jumping) or feature 1 (a blue box spinning) is raised by 1. One query per video asks for
its event. Word features come from a 9-word GloVe file with 8-d vectors (fast, no model download).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pytest
import torch
import yaml

GLOVE_WORDS = ("a", "red", "ball", "jumps", "the", "blue", "box", "spins", "then")
SENTENCES = ("a red ball jumps", "the blue box spins")
FEATURE_DIM = 6
WORD_DIM = 8
NUM_CLIPS = 8

TINY_MODEL: dict[str, Any] = {
    "input_dim": FEATURE_DIM,
    "num_clips": NUM_CLIPS,
    "hidden_size": 16,
    "video_graph": {"num_layers": 1, "groups": 2, "width_per_group": 4},
    "text": {"input_dim": WORD_DIM, "num_syntactic_layers": 1},
    "matching": {"groups": 2, "width_per_group": 4},
    "span": {"pooling_counts": [7], "num_graph_layers": 1},
}


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """One torch thread while a test module runs: these models are tiny, and on a shared machine the
    intra-op thread pool's waiting costs 20x more than the arithmetic (0.5 s vs 14 s for a tiny training run
    measured here under load). Import it into a test module to use it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_tiny_world(folder: Path, num_videos: int = 16, num_test: int = 4, seed: int = 0) -> Path:
    """Write glove.txt, features.h5 (with extraction attributes), train.jsonl and test.jsonl into ``folder``.

    Video ``vNN`` lasts T seconds (1 clip per second); query qid NN asks for its event ``[s, e)`` seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "glove.txt", "w", encoding="utf-8") as handle:
        for word in GLOVE_WORDS:
            handle.write(word + " " + " ".join(f"{value:.5f}" for value in rng.normal(size=WORD_DIM)) + "\n")
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    with h5py.File(folder / "features.h5", "w") as handle:
        handle.attrs.update({"backbone": "test-backbone", "clip_seconds": 1.0, "frames_per_clip": 1, "size": 32,
                             "resize": "squash"})
        for index in range(num_videos):
            num_clips = int(rng.integers(10, 20))
            feats = (0.1 * rng.normal(size=(num_clips, FEATURE_DIM))).astype(np.float32)
            start = int(rng.integers(0, num_clips - 4))
            end = start + int(rng.integers(2, 4))
            kind = index % 2
            feats[start:end, kind] += 1.0
            video_id = f"v{index:02d}"
            dataset = handle.create_dataset(video_id, data=feats)
            dataset.attrs["duration"] = float(num_clips)
            split = "train" if index < num_videos - num_test else "test"
            rows[split].append({"qid": index, "query": SENTENCES[kind], "vid": video_id, "duration": float(num_clips),
                                "relevant_windows": [[float(start), float(end)]]})
    for split, split_rows in rows.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for row in split_rows:
                handle.write(json.dumps(row) + "\n")
    return folder


def tiny_config_tree(world: Path, output_dir: Path, **train: Any) -> dict[str, Any]:
    """A complete experiment config (nested dicts) for :func:`write_tiny_world`'s folder."""
    return {
        "model": TINY_MODEL,
        "data": {
            "root": str(world), "train": "train.jsonl", "val": None, "val_fraction": 0.25, "test": "test.jsonl",
            "extra_eval": {}, "format": "moment-detr", "durations": [], "features": "features.h5",
            "text_encoder": f"glove:{world / 'glove.txt'}", "syntax": "sequential",
        },
        "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8, "lr": 0.01, "warmup_epochs": 0.5,
                  "progress": False, "output_dir": str(output_dir), **train},
    }


def write_tiny_config(path: Path, world: Path, output_dir: Path, **train: Any) -> Path:
    """:func:`tiny_config_tree` as a YAML file."""
    path.write_text(yaml.safe_dump(tiny_config_tree(world, output_dir, **train), sort_keys=False), encoding="utf-8")
    return path
