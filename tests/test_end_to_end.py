"""The default pipeline end to end, with real weights and no stand-ins: a rendered world -> the motion-flow backbone
(real EfficientNet-Lite0 weights) -> real MiniLM-L6 word features -> training -> ``grounding ground`` on an mp4 and
``grounding predict`` from the videos themselves, which must give what the feature file gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.cli.main import main
from tests.training import single_thread  # noqa: F401 (autouse: one torch thread)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "rendered-world.yaml"
BACKBONE = "efficientnet-lite0-motion-flow"  # the backbone behind the README's headline figure


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e") / "world"
    assert main(["synth", "--out", str(folder), "--videos", "6", "--seed", "5", "--size", "64", "--no-progress"]) == 0
    assert main(["extract", str(folder / "videos"), "--out", str(folder / "flow.h5"), "--backbone", BACKBONE,
                 "--size", "64", "--clip-seconds", "3", "--no-progress"]) == 0
    return folder


@pytest.fixture(scope="module")
def run(world: Path) -> Path:
    output = world.parent / "run"
    overrides = [
        f"data.root={world}", "data.features=flow.h5", "data.text_encoder=minilm-l6", "model.input_dim=2577",
        "model.num_clips=8", "model.hidden_size=32", "model.span.pooling_counts=[7]", "model.span.moment_size=32",
        "model.video_graph.groups=4", "model.matching.groups=4", "train.epochs=2", "train.batch_size=8",
        "train.progress=false",
    ]
    assert main(["train", "--config", str(CONFIG), "--output-dir", str(output), *overrides]) == 0
    return output


def test_a_trained_checkpoint_grounds_a_video_file(run: Path, world: Path, capsys) -> None:
    pipeline = json.loads((run / "best" / "config.json").read_text())["metadata"]["pipeline"]
    assert pipeline["text_encoder"] == "minilm-l6"
    assert pipeline["extraction"] == {"backbone": BACKBONE, "clip_seconds": 3.0, "frames_per_clip": 4,
                                      "frame_size": 64, "resize": "squash"}
    video = world / "videos" / "syn00000.mp4"
    capsys.readouterr()
    assert main(["ground", "--checkpoint", str(run), "--video", str(video), "--query", "a white ball slides right",
                 "--top-k", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    duration = payload["duration"]
    assert duration == pytest.approx(39.5, abs=0.2)  # durations.csv: syn00000,39.50
    spans = payload["queries"][0]["spans"]
    assert len(spans) == 3 and all(0.0 <= span["start"] < span["end"] <= duration for span in spans)
    assert [span["score"] for span in spans] == sorted((span["score"] for span in spans), reverse=True)


def test_predict_from_the_videos_equals_predict_from_the_feature_file(run: Path, world: Path, tmp_path: Path) -> None:
    common = ["predict", "--checkpoint", str(run), "--annotations", str(world / "test.txt"), "--durations",
              str(world / "durations.csv"), "--no-progress"]
    assert main([*common, "--features", str(world / "flow.h5"), "--out", str(tmp_path / "from-file.jsonl")]) == 0
    assert main([*common, "--videos", str(world / "videos"), "--out", str(tmp_path / "from-videos.jsonl")]) == 0
    from_file = (tmp_path / "from-file.jsonl").read_text()
    assert from_file and from_file == (tmp_path / "from-videos.jsonl").read_text()  # bit-identical features
