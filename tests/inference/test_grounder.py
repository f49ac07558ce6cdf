"""grounding.inference.Grounder: checkpoint + text encoder + backbone -> spans in seconds (tiny world, test backbone)."""

from __future__ import annotations

from pathlib import Path

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from grounding.data.features import open_feature_store
from grounding.errors import InputError
from grounding.inference import PIPELINE_KEY, EncodedVideo, Grounder, PipelineInfo, score_map, time_profile
from grounding.model import GroundingConfig, GroundingModel, Span
from grounding.video.backbones import register_backbone
from grounding.video.settings import ExtractionSettings
from tests.training import NUM_CLIPS, TINY_MODEL, single_thread, write_tiny_world  # noqa: F401 (single_thread: autouse)


class ChannelStats(nn.Module):
    """(N, 3, H, W) -> (N, 6): per-channel mean, then per-channel (left half - right half) mean."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        half = pixels.shape[-1] // 2
        left_minus_right = pixels[..., :half].mean(dim=(2, 3)) - pixels[..., half:].mean(dim=(2, 3))
        return torch.cat([pixels.mean(dim=(2, 3)), left_minus_right], dim=1)


@register_backbone("test-inference-stats", dim=6, mean=0.0, std=255.0, input_size=32)
def channel_stats(device: str) -> nn.Module:
    """Channel statistics: fast and exact, for inference tests."""
    return ChannelStats()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"), num_videos=4, num_test=1)


@pytest.fixture(scope="module")
def checkpoint(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = GroundingModel(GroundingConfig.from_dict(TINY_MODEL))
    extraction = ExtractionSettings(backbone="test-inference-stats", clip_seconds=1.0, frames_per_clip=1,
                                    frame_size=32, resize="squash")
    pipeline = PipelineInfo(text_encoder=f"glove:{world / 'glove.txt'}", syntax="sequential",
                            extraction=extraction, nms=0.5, top_k=3)
    folder = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(folder, metadata={PIPELINE_KEY: pipeline.to_json()})
    return folder


def write_video(path: Path, seconds: int = 4, fps: int = 4, size: int = 32) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for index in range(seconds * fps):
            frame = np.full((size, size, 3), 20 + 12 * index, dtype=np.uint8)
            frame[:, : size // 2, 0] = 200  # a red left half
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_ground_one_query_gives_sorted_spans_in_seconds(world: Path, checkpoint: Path) -> None:
    grounder = Grounder.from_pretrained(checkpoint)
    with open_feature_store(world / "features.h5") as store:
        video = grounder.encode_features(store.get("v00"), duration=12.5, video_id="v00")
    spans = grounder.ground(video, "a red ball jumps")
    assert len(spans) == 3 and all(isinstance(span, Span) for span in spans)  # the checkpoint's top_k
    assert [span.score for span in spans] == sorted((span.score for span in spans), reverse=True)
    assert all(0.0 <= span.start < span.end <= 12.5 for span in spans)
    clip = 12.5 / NUM_CLIPS
    assert all(abs(span.start / clip - round(span.start / clip)) < 1e-9 for span in spans)  # on the clip grid


def test_batched_queries_equal_one_at_a_time_and_reuse_the_video_encoding(world: Path, checkpoint: Path) -> None:
    grounder = Grounder.from_pretrained(checkpoint)
    with open_feature_store(world / "features.h5") as store:
        video = grounder.encode_features(store.get("v01"), duration=14.0)
    queries = ["a red ball jumps", "the blue box spins then the red ball jumps"]
    together = grounder.ground(video, queries, top_k=5, nms_threshold=None)
    states = video.clip_states
    assert states is not None
    alone = [grounder.ground(video, query, top_k=5, nms_threshold=None) for query in queries]
    assert video.clip_states is states  # computed once
    for batched, single in zip(together, alone):
        assert [(s.start, s.end) for s in batched] == [(s.start, s.end) for s in single]
        np.testing.assert_allclose([s.score for s in batched], [s.score for s in single], atol=1e-6)


def test_plot_helpers_cover_the_video_and_scatter_candidates(world: Path, checkpoint: Path) -> None:
    grounder = Grounder.from_pretrained(checkpoint)
    with open_feature_store(world / "features.h5") as store:
        video = grounder.encode_features(store.get("v02"), duration=8.0)
    result = grounder.predict(video, ["a red ball jumps"])
    times, scores = time_profile(result, 0, num_points=50)
    assert times[0] == 0.0 and times[-1] == 8.0 and scores.shape == (50,)
    best = float(result.output.span_scores[0].max())
    assert scores.max() == pytest.approx(best)
    image = score_map(result, 0)
    candidates = result.output.candidates
    assert image.shape == (NUM_CLIPS, NUM_CLIPS) and np.isnan(image[1, 0])  # end before start: no candidate
    assert np.count_nonzero(~np.isnan(image)) == candidates.shape[0]
    start, end = candidates[0].tolist()
    assert image[start, end] == pytest.approx(float(result.output.span_scores[0, 0]))


def test_video_file_is_encoded_like_grounding_extract(tmp_path: Path, checkpoint: Path) -> None:
    from grounding.video.extract import ExtractionConfig, VideoSource, extract_features

    video = write_video(tmp_path / "clip.mp4")
    grounder = Grounder.from_pretrained(checkpoint)
    encoded = grounder.encode_video(video)
    extract_features([VideoSource("clip", video)], tmp_path / "f.h5",
                     ExtractionConfig(backbone="test-inference-stats", clip_seconds=1.0, workers=0), progress=False)
    with open_feature_store(tmp_path / "f.h5") as store:
        from_file = grounder.encode_features(store.get("clip"), store.attrs("clip")["duration"], "clip")
    assert encoded.video_id == "clip" and encoded.duration == pytest.approx(4.0)
    assert torch.equal(encoded.clip_feats, from_file.clip_feats)
    assert grounder.ground(video, "a red ball jumps") == grounder.ground(from_file, "a red ball jumps")


def test_bad_inputs_are_input_errors(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    grounder = Grounder.from_pretrained(checkpoint)
    with pytest.raises(InputError, match="has feature width D=5, but the model's input_dim gives D=6"):
        grounder.encode_features(np.zeros((4, 5)), duration=3.0)
    with pytest.raises(InputError, match="duration must be seconds > 0"):
        grounder.encode_features(np.zeros((4, 6)), duration=0.0)
    with pytest.raises(InputError, match="no such video file"):
        grounder.encode_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="video must be a file path or an EncodedVideo"):
        grounder.ground(np.zeros((4, 6)), "a red ball jumps")
    video = grounder.encode_features(np.zeros((4, 6)), duration=3.0)
    with pytest.raises(InputError, match="query 0 is empty"):
        grounder.ground(video, "  ")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(InputError, match="broken.mp4: cannot extract clip features"):
        grounder.encode_video(broken)


def test_a_checkpoint_without_a_backbone_cannot_take_videos(tmp_path: Path, world: Path) -> None:
    model = GroundingModel(GroundingConfig.from_dict(TINY_MODEL))
    grounder = Grounder(model, PipelineInfo(text_encoder=f"glove:{world / 'glove.txt'}"))
    assert isinstance(grounder.encode_features(np.ones((3, 6)), 3.0), EncodedVideo)
    with pytest.raises(InputError, match="records no frame backbone .* --features FILE --video-id ID"):
        grounder.encode_video(write_video(tmp_path / "v.mp4"))


def test_a_checkpoint_with_the_old_flat_pipeline_keys_still_loads(tmp_path: Path, checkpoint: Path) -> None:
    import json

    shutil.copytree(checkpoint, tmp_path / "old")
    payload = json.loads((tmp_path / "old" / "config.json").read_text())
    pipeline = payload["metadata"][PIPELINE_KEY]
    extraction = pipeline.pop("extraction")
    pipeline.update(extraction)  # how checkpoints were written before ExtractionSettings: flat keys
    (tmp_path / "old" / "config.json").write_text(json.dumps(payload))
    old = Grounder.from_pretrained(tmp_path / "old")
    assert old.pipeline == Grounder.from_pretrained(checkpoint).pipeline
    assert old.pipeline.extraction.backbone == "test-inference-stats"


def test_three_lines_on_a_run_folder(tmp_path: Path, checkpoint: Path) -> None:
    from grounding import Grounder as TopLevelGrounder

    shutil.copytree(checkpoint, tmp_path / "run" / "best")
    grounder = TopLevelGrounder.from_pretrained(tmp_path / "run")  # a run folder: its best/ checkpoint
    spans = grounder.ground(write_video(tmp_path / "clip.mp4"), "a red ball jumps")
    assert len(spans) == 3 and all(isinstance(span, Span) for span in spans)  # the checkpoint's top_k
    assert [span.score for span in spans] == sorted((span.score for span in spans), reverse=True)
    assert all(0.0 <= span.start < span.end <= 4.0 for span in spans)  # the video lasts 4 s
    assert spans == Grounder.from_pretrained(checkpoint).ground(tmp_path / "clip.mp4", "a red ball jumps")


def test_ground_batches_queries_on_one_video_encoding(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone_calls, clip_encodings = [], []
    original_forward = ChannelStats.forward
    monkeypatch.setattr(ChannelStats, "forward",
                        lambda self, pixels: backbone_calls.append(1) or original_forward(self, pixels))
    model = Grounder.from_pretrained(checkpoint)
    original_encode_clips = model.model.encode_clips
    monkeypatch.setattr(model.model, "encode_clips",
                        lambda feats, mask: clip_encodings.append(1) or original_encode_clips(feats, mask))
    video = model.encode_video(write_video(tmp_path / "clip.mp4"))
    assert isinstance(video, EncodedVideo) and video.duration == pytest.approx(4.0)
    decoded_calls = len(backbone_calls)
    assert decoded_calls >= 1
    queries = ["a red ball jumps", "the blue box spins then the red ball jumps"]
    together = model.ground(video, queries, top_k=4, nms_threshold=None)
    alone = [model.ground(video, query, top_k=4, nms_threshold=None) for query in queries]
    assert len(backbone_calls) == decoded_calls and len(clip_encodings) == 1  # decoded once, clip states once
    assert len(together) == 2 and all(len(spans) == 4 for spans in together)
    for batched, single in zip(together, alone):
        assert [(s.start, s.end) for s in batched] == [(s.start, s.end) for s in single]
        np.testing.assert_allclose([s.score for s in batched], [s.score for s in single], atol=1e-6)
        assert all(0.0 <= s.start < s.end <= 4.0 for s in batched)


def test_the_model_is_only_a_model() -> None:
    import subprocess
    import sys

    code = ("import sys, grounding.model; print(sorted({name.split('.')[1] for name in sys.modules "
            "if name.startswith('grounding.') and name.count('.') >= 1}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the model sits on data (a helper for messages) and the leaves; never on inference, training, video or text
    assert result.stdout.strip() == "['checks', 'data', 'errors', 'eval', 'files', 'model', 'version']"
    assert not hasattr(GroundingModel, "ground") and not hasattr(GroundingModel, "encode_video")
