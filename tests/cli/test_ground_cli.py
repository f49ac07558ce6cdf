"""``grounding ground`` flags that had no test: --no-nms, --nms, --duration (features without a recorded length)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from grounding.cli.main import main
from tests.training import single_thread, write_tiny_config, write_tiny_world  # noqa: F401 (autouse)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ground")
    world = write_tiny_world(folder / "world", num_videos=8, num_test=2)
    config = write_tiny_config(folder / "tiny.yaml", world, folder / "run", epochs=1)
    assert main(["train", "--config", str(config)]) == 0
    return world, folder / "run"


def _spans(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["ground", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["queries"][0]["spans"]


def _iou(a: dict, b: dict) -> float:
    inter = max(0.0, min(a["end"], b["end"]) - max(a["start"], b["start"]))
    return inter / (max(a["end"], b["end"]) - min(a["start"], b["start"]))


def test_no_nms_keeps_overlapping_spans_and_nms_removes_them(trained, capsys) -> None:
    world, run = trained
    base = ["--checkpoint", str(run), "--features", str(world / "features.h5"), "--video-id", "v06",
            "--query", "a red ball jumps", "--top-k", "12"]
    raw = _spans(capsys, *base, "--no-nms")
    assert len(raw) == 12 and any(_iou(a, b) > 0.5 for i, a in enumerate(raw) for b in raw[i + 1:])
    kept = _spans(capsys, *base, "--nms", "0.3")
    assert all(_iou(a, b) <= 0.3 for i, a in enumerate(kept) for b in kept[i + 1:])
    assert kept[0] == raw[0]  # NMS never drops the best span


def test_duration_is_required_without_a_recorded_length_and_scales_the_spans(trained, tmp_path: Path, capsys) -> None:
    world, run = trained
    folder = tmp_path / "npy"
    folder.mkdir()
    with h5py.File(world / "features.h5", "r") as handle:
        np.save(folder / "v06.npy", handle["v06"][()])  # a .npy folder records no duration
    base = ["--checkpoint", str(run), "--features", str(folder), "--video-id", "v06", "--query", "a red ball jumps"]
    assert main(["ground", *base]) == 2
    assert "has no recorded duration; pass --duration SECONDS" in capsys.readouterr().err
    short = _spans(capsys, *base, "--duration", "10")
    long = _spans(capsys, *base, "--duration", "40")
    assert all(0 <= span["end"] <= 10 for span in short) and max(span["end"] for span in long) > 10
    for a, b in zip(short, long):  # the same candidates, in seconds of the given length
        assert b["start"] == pytest.approx(4 * a["start"]) and b["end"] == pytest.approx(4 * a["end"])
