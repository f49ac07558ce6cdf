"""Clip planning from real timestamps and decoding with decord, on tiny videos written with PyAV."""

from __future__ import annotations

import fractions
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

from grounding.video.decode import ClipFrameReader, VideoDecodeError, crop_resize_shape, plan_clips

av = pytest.importorskip("av", reason="tests write their videos with PyAV ('av')")
pytest.importorskip("decord", reason="decoding needs the 'decord' package")


def level_frame(index: int, width: int, height: int) -> np.ndarray:
    """A flat frame whose grey level encodes its index (4, 12, 20, ... for frames 0, 1, 2, ...), uint8 (H, W, 3)."""
    return np.full((height, width, 3), (4 + 8 * index) % 256, dtype=np.uint8)


def write_video(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    fps: int = 10,
    seconds: float = 2.0,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    pts_ms: Sequence[int] | None = None,
    frame: Callable[[int, int, int], np.ndarray] = level_frame,
) -> Path:
    """Write a tiny test video. ``pts_ms`` gives explicit presentation times (variable frame rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(pts_ms) if pts_ms is not None else int(round(fps * seconds))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "1"}
        if pts_ms is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for index in range(count):
            video_frame = av.VideoFrame.from_ndarray(frame(index, width, height), format="rgb24")
            if pts_ms is not None:
                video_frame.pts, video_frame.time_base = pts_ms[index], fractions.Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frames_seen(frames: np.ndarray) -> list[int]:
    """The index ``level_frame`` encoded in each decoded frame (levels are 8 apart; codecs move them by ~2)."""
    return [int(round((value - 4) / 8)) for value in frames.reshape(len(frames), -1).mean(axis=1)]


# --- plan_clips: hand-computed ---------------------------------------------------------------------------------


def test_plan_clips_centres_and_frames_at_constant_rate() -> None:
    starts = np.arange(20) / 10.0  # 10 fps, 2 s
    plan = plan_clips(starts, duration=2.0, clip_seconds=1.0, frames_per_clip=1)
    np.testing.assert_allclose(plan.clip_centres, [0.5, 1.5])
    np.testing.assert_array_equal(plan.frame_indices, [[5], [15]])
    # K=2: times 0.25, 0.75 | 1.25, 1.75 -> the frames on screen then.
    plan = plan_clips(starts, duration=2.0, clip_seconds=1.0, frames_per_clip=2)
    np.testing.assert_array_equal(plan.frame_indices, [[2, 7], [12, 17]])


def test_video_shorter_than_one_clip_is_one_clip() -> None:
    plan = plan_clips(np.array([0.0, 0.1, 0.2]), duration=0.3, clip_seconds=1.0, frames_per_clip=1)
    assert plan.num_clips == 1
    np.testing.assert_allclose(plan.clip_centres, [0.15])
    np.testing.assert_array_equal(plan.frame_indices, [[1]])  # t=0.15 shows the frame that starts at 0.1


def test_partial_last_clip_is_kept_and_timestamp_noise_is_not() -> None:
    starts = np.arange(25) / 10.0
    plan = plan_clips(starts, duration=2.5, clip_seconds=1.0, frames_per_clip=1)
    np.testing.assert_allclose(plan.clip_centres, [0.5, 1.5, 2.25])
    noisy = plan_clips(np.arange(20) / 10.0, duration=2.0000001, clip_seconds=1.0, frames_per_clip=1)
    assert noisy.num_clips == 2


def test_variable_frame_rate_uses_real_timestamps() -> None:
    starts = np.array([0.0, 0.1, 0.2, 1.0, 1.1, 1.2, 2.5, 2.6])
    plan = plan_clips(starts, duration=2.7, clip_seconds=1.0, frames_per_clip=1)
    np.testing.assert_allclose(plan.clip_centres, [0.5, 1.5, 2.35])
    # t=0.5 -> frame 2 (0.2 s, on screen until 1.0); t=1.5 -> frame 5 (1.2 s); t=2.35 -> still frame 5.
    np.testing.assert_array_equal(plan.frame_indices, [[2], [5], [5]])


def test_plan_clips_rejects_bad_arguments() -> None:
    from grounding.errors import InputError

    with pytest.raises(InputError, match="clip_seconds"):
        plan_clips(np.zeros(3), duration=1.0, clip_seconds=0.0, frames_per_clip=1)
    with pytest.raises(InputError, match="frames_per_clip"):
        plan_clips(np.zeros(3), duration=1.0, clip_seconds=1.0, frames_per_clip=0)
    with pytest.raises(InputError, match="non-empty"):
        plan_clips(np.zeros(0), duration=1.0, clip_seconds=1.0, frames_per_clip=1)


def test_crop_resize_shape_keeps_aspect() -> None:
    assert crop_resize_shape(640, 480, 224) == (299, 224)
    assert crop_resize_shape(480, 640, 224) == (224, 299)


# --- ClipFrameReader on real files -----------------------------------------------------------------------------


def test_reader_samples_clip_centres_of_a_constant_rate_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", fps=10, seconds=2.0)
    with ClipFrameReader(path, size=32) as reader:
        assert (reader.num_frames, reader.fps, reader.duration) == (20, 10.0, 2.0)
        plan = reader.plan(clip_seconds=1.0, frames_per_clip=1)
        frames = reader.read(plan.frame_indices.ravel())
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8
    assert frames_seen(frames) == [5, 15]


def test_reader_variable_frame_rate_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "vfr.mp4", pts_ms=[0, 100, 200, 1000, 1100, 1200, 2500, 2600])
    with ClipFrameReader(path, size=32) as reader:
        np.testing.assert_allclose(reader.frame_starts, [0.0, 0.1, 0.2, 1.0, 1.1, 1.2, 2.5, 2.6], atol=1e-6)
        plan = reader.plan(clip_seconds=1.0, frames_per_clip=1)
        frames = reader.read(plan.frame_indices.ravel())
    assert plan.num_clips == 3
    assert frames_seen(frames) == [2, 5, 5]


def test_reader_grayscale_pixel_format_gives_rgb(tmp_path: Path) -> None:
    path = write_video(tmp_path / "gray.mkv", codec="ffv1", pix_fmt="gray", seconds=1.0)
    with ClipFrameReader(path, size=16) as reader:
        frames = reader.read(np.array([3]))
    assert frames.shape == (1, 16, 16, 3)
    assert np.abs(frames.astype(int) - 28).max() <= 2  # frame 3: level 28, same in R, G and B


def test_reader_odd_frame_size(tmp_path: Path) -> None:
    path = write_video(tmp_path / "odd.mp4", width=65, height=47, pix_fmt="yuv444p", seconds=1.0)
    with ClipFrameReader(path, size=33) as reader:
        frames = reader.read(np.array([0, 9]))
    assert frames.shape == (2, 33, 33, 3)
    assert frames_seen(frames) == [0, 9]


def _three_bands(index: int, width: int, height: int) -> np.ndarray:
    """Left quarter blue, middle half green, right quarter red."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 4, 2] = 255
    image[:, width // 4 : 3 * width // 4, 1] = 255
    image[:, 3 * width // 4 :, 0] = 255
    return image


def test_resize_crop_drops_the_sides_and_squash_keeps_them(tmp_path: Path) -> None:
    path = write_video(tmp_path / "wide.mp4", width=64, height=32, pix_fmt="yuv444p", seconds=1.0, frame=_three_bands)
    with ClipFrameReader(path, size=16, resize="crop") as reader:
        cropped = reader.read(np.array([0]))[0].astype(int)
    with ClipFrameReader(path, size=16, resize="squash") as reader:
        squashed = reader.read(np.array([0]))[0].astype(int)
    assert cropped[..., 1].min() > 200 and cropped[..., 0].max() < 60 and cropped[..., 2].max() < 60
    assert squashed[:, 0, 2].min() > 200 and squashed[:, -1, 0].min() > 200  # blue left edge, red right edge


def _corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


def _zero_frames(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("missing.mp4", lambda path: path, "file not found"),
        ("empty.mp4", lambda path: (path.write_bytes(b""), path)[1], "empty file"),
        ("corrupt.mp4", _corrupt, "cannot open as a video"),
        ("zero.avi", _zero_frames, "cannot open as a video"),
    ],
)
def test_unreadable_files_raise_with_a_reason(
    tmp_path: Path, name: str, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path / name)
    for resize in ("squash", "crop"):
        with pytest.raises(VideoDecodeError, match=reason) as caught:
            ClipFrameReader(path, size=16, resize=resize)
        assert caught.value.path == os.fspath(path) and str(path) not in caught.value.reason


def test_truncated_video_raises_on_open_or_read(tmp_path: Path) -> None:
    # faststart puts the index first, so the header survives and the cut shows up while decoding.
    full = tmp_path / "full.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(40):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = full.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.5)])
    with pytest.raises(VideoDecodeError, match="cannot open|truncated or corrupt"):
        with ClipFrameReader(truncated, size=16) as reader:
            reader.read(reader.plan(1.0, 1).frame_indices.ravel())


@pytest.mark.parametrize("size", [16, 48])
def test_widths_decord_cannot_produce_still_decode(tmp_path: Path, size: int) -> None:
    path = write_video(tmp_path / "a.mp4", seconds=1.0)
    with ClipFrameReader(path, size=size) as reader:
        frames = reader.read(np.array([2]))
    assert frames.shape == (1, size, size, 3)
    assert frames_seen(frames) == [2]
