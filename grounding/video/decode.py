"""Decode the frames each clip needs, at their real timestamps, with decord.

A video is cut into clips of ``clip_seconds`` (the last one may be shorter; a video shorter than one clip is one
clip). Clip ``i`` spans ``[i * clip_seconds, min((i + 1) * clip_seconds, duration))`` seconds and is described
by ``K = frames_per_clip`` frames at evenly spaced times inside it: ``start + (k + 0.5) / K * length`` for
``k = 0..K-1`` (K = 1 is the clip centre). Each time is mapped to the frame on screen at that moment, i.e. the
last frame whose presentation time is ``<=`` t, using the container's real per-frame timestamps
(``VideoReader.get_frame_timestamp``), so variable-frame-rate videos are sampled at the right moments.
Times are measured from the first frame (a stream whose first timestamp is 2.0 s starts at 0.0 here), and
the duration is the end time of the last frame.

**Timestamps that cannot be trusted.** A container may have no timestamp for some frames; decord then reports a
placeholder (FFmpeg's "no value", about -3e17 s at 30 fps) that is finite but meaningless. The container's
timestamps are used only when every frame has a finite, non-negative start, the starts never decrease, no frame
ends before it starts, and they span more than 0 and at most :data:`MAX_VIDEO_SECONDS` (24 h). Otherwise every
frame is placed at ``index / fps`` (the container's average frame rate) and the duration is ``N / fps``;
:attr:`ClipFrameReader.timestamps` says which (``"container"`` or ``"frame-rate"``) and extraction records it in
each video's ``timestamps`` attribute. A duration over 24 h, either way, is a :class:`VideoDecodeError` naming the
file: nothing is allocated from an untrusted duration.

Resizing happens inside the decoder (decord/FFmpeg's swscale), so full-size frames never reach Python:

- ``"squash"`` (default): every frame is resized straight to ``size x size``. Nothing at the edges of the
  picture is lost (an action at the border of a 16:9 frame is still seen); the price is an aspect-ratio change
  (4:3 Charades frames are squeezed by 25%), which ImageNet CNNs tolerate well.
- ``"crop"``: the short side is resized to ``size`` (aspect kept), then the centre ``size x size`` square is
  cut out, as CLIP-style preprocessing does. Undistorted, but up to 44% of a 16:9 frame is dropped.

decord 0.6.0 cannot produce frames 2, 3, 4, 6, 8, 12, 16, 24, 48 or 72 pixels wide; for those sizes the frame
is decoded one pixel wider and the centre columns kept.

Grayscale and other pixel formats come out as RGB (decord converts), and odd frame sizes are fine.
decord calls into its C library through ctypes, which releases the GIL, so several decoding threads run in
parallel with each other and with the network (see :mod:`grounding.video.extract`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounding.errors import InputError, require_package
from grounding.video.settings import RESIZE_MODES

__all__ = [
    "MAX_VIDEO_SECONDS", "RESIZE_MODES", "TIMESTAMP_SOURCES", "UNRELIABLE_CONTAINERS", "VIDEO_EXTENSIONS", "ClipFrameReader", "ClipPlan",
    "FrameTimes", "VideoDecodeError", "crop_resize_shape", "frame_times", "plan_clips",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".ts", ".wmv", ".flv", ".3gp"
)
# Containers that are found as videos but refused at decoding, with the reason and the fix: decord 0.6.0 returns
# frames shifted by many positions from MPEG-TS, without an error, so its clip features would be silently wrong.
UNRELIABLE_CONTAINERS: dict[str, str] = {
    ".ts": "MPEG-TS (.ts) is not decoded reliably by decord 0.6.0 (it returns wrong frames without an error); remux "
    "it to mp4 first, without re-encoding: ffmpeg -i VIDEO.ts -c copy VIDEO.mp4",
}
# The longest video decoded (seconds): a longer duration is refused before anything is sized from it.
MAX_VIDEO_SECONDS = 24 * 3600.0
# Where ClipFrameReader.frame_starts come from (the video's ``timestamps`` attribute in a feature file).
TIMESTAMP_SOURCES: tuple[str, ...] = ("container", "frame-rate")

# A tail shorter than this fraction of a clip is float noise in the timestamps (a 2.0 s video whose last frame
# ends at 2.0000001 s), not a clip of its own.
_TAIL_TOLERANCE = 1e-3
# decord 0.6.0 fails ("The size must exactly match") for these output widths whatever the source; such a
# width is decoded one or more pixels wider and the extra columns are cropped off (see _safe_decode_width).
_DECORD_BAD_WIDTHS = frozenset({2, 3, 4, 6, 8, 12, 16, 24, 48, 72})
# decord's C++ log lines start with "[21:10:14] /path/to/video_reader.cc:151: "; the reason starts after it.
_DECORD_LOG_PREFIX = re.compile(r"^\[[0-9:]+\]\s+\S+:\d+:\s*")
# FFmpeg error codes decord reports as bare numbers ("av_read_frame failed with 1094995529").
_FFMPEG_ERRORS = {1094995529: "invalid data (truncated or corrupt file)", 541478725: "unexpected end of file"}
_FFMPEG_CODE = re.compile(r"failed with (-?\d+)")


class VideoDecodeError(InputError):
    """One video cannot be decoded (unreadable, empty, truncated or corrupt); ``reason`` says why, in one line."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ClipPlan:
    """Which frames describe which clip.

    Attributes:
        clip_centres: float64 ``(T,)``, the centre of each clip in seconds from the video's start.
        frame_indices: int64 ``(T, K)``, the decoded frame index for each of the K sample times of each clip
            (non-decreasing in reading order; the same frame may repeat when frames are sparse).
        duration: the video's length in seconds (end of its last frame).
    """

    clip_centres: np.ndarray
    frame_indices: np.ndarray
    duration: float

    @property
    def num_clips(self) -> int:
        return int(self.frame_indices.shape[0])

    @property
    def frames_per_clip(self) -> int:
        return int(self.frame_indices.shape[1])


def plan_clips(
    frame_starts: np.ndarray, duration: float, clip_seconds: float, frames_per_clip: int
) -> ClipPlan:
    """Cut ``[0, duration)`` into clips and pick K frames per clip from real frame timestamps.

    Args:
        frame_starts: float ``(N,)``, each frame's presentation time in seconds from the video's start,
            in decoding order (non-decreasing for every container decord reads).
        duration: seconds, the end of the last frame; > 0.
        clip_seconds: clip length in seconds; > 0.
        frames_per_clip: K >= 1 sample times per clip, evenly spaced inside it.

    Returns:
        A :class:`ClipPlan` with ``T = max(1, ceil(duration / clip_seconds))`` clips (a tail shorter than
        0.1% of a clip is dropped as timestamp noise).

    Raises:
        InputError: an empty ``frame_starts``, or a clip length, K or duration out of range (a duration over
            :data:`MAX_VIDEO_SECONDS` included).
    """
    starts = np.asarray(frame_starts, dtype=np.float64)
    if starts.ndim != 1 or starts.size == 0:
        raise InputError(f"plan_clips: frame_starts must be a non-empty 1-D array, got shape {starts.shape}.")
    if not (clip_seconds > 0 and math.isfinite(clip_seconds)):
        raise InputError(f"plan_clips: clip_seconds must be a positive number of seconds, got {clip_seconds!r}.")
    if frames_per_clip < 1:
        raise InputError(f"plan_clips: frames_per_clip must be >= 1, got {frames_per_clip!r}.")
    if not (duration > 0 and math.isfinite(duration)):
        raise InputError(f"plan_clips: duration must be a positive number of seconds, got {duration!r}.")
    if duration > MAX_VIDEO_SECONDS:
        raise InputError(
            f"plan_clips: duration {duration:.6g} s is over the {MAX_VIDEO_SECONDS / 3600:g} h limit of one video."
        )
    num_clips = max(1, math.ceil(duration / clip_seconds - _TAIL_TOLERANCE))
    clip_starts = np.arange(num_clips, dtype=np.float64) * clip_seconds
    clip_ends = np.minimum(clip_starts + clip_seconds, duration)
    clip_ends[-1] = duration  # the last clip absorbs a dropped sub-tolerance tail
    fractions = (np.arange(frames_per_clip, dtype=np.float64) + 0.5) / frames_per_clip
    sample_times = clip_starts[:, None] + fractions[None, :] * (clip_ends - clip_starts)[:, None]  # (T, K)
    # Frames can arrive slightly out of order in broken files; search in sorted order, map back to indices.
    order = np.argsort(starts, kind="stable")
    positions = np.searchsorted(starts[order], sample_times.ravel(), side="right") - 1
    positions = np.clip(positions, 0, starts.size - 1)
    frame_indices = order[positions].reshape(num_clips, frames_per_clip).astype(np.int64)
    return ClipPlan(clip_centres=(clip_starts + clip_ends) / 2.0, frame_indices=frame_indices, duration=duration)


@dataclass(frozen=True)
class FrameTimes:
    """When each frame of a video is shown.

    Attributes:
        starts: float64 ``(N,)``, each frame's start in seconds from the first frame, non-decreasing.
        duration: seconds, the end of the last frame; in ``(0, MAX_VIDEO_SECONDS]``.
        source: ``"container"`` (the container's per-frame timestamps) or ``"frame-rate"`` (``index / fps``).
        problem: why the container's timestamps were not used (None when they were).
    """

    starts: np.ndarray
    duration: float
    source: str
    problem: str | None = None


def _timestamp_problem(timestamps: np.ndarray, num_frames: int) -> str | None:
    """Why decord's ``(N, 2)`` start/end seconds cannot be trusted, in a few words; None when they can."""
    if timestamps.shape != (num_frames, 2):
        return f"timestamp array of shape {timestamps.shape} for {num_frames} frames"
    if not np.isfinite(timestamps).all():
        return "non-finite timestamps"
    starts, ends = timestamps[:, 0], timestamps[:, 1]
    if starts.min() < 0:  # FFmpeg's "no timestamp" placeholder comes out hugely negative
        return f"negative timestamps (as low as {starts.min():.6g} s: frames without one)"
    if np.any(np.diff(starts) < 0):
        return "timestamps that go backwards"
    if np.any(ends < starts):
        return "frames that end before they start"
    span = float(ends.max() - starts.min())
    if not span > 0:
        return "every frame at the same time"
    if span > MAX_VIDEO_SECONDS:
        return f"timestamps spanning {span:.6g} s"
    return None


def frame_times(timestamps: np.ndarray, num_frames: int, fps: float, path: str | os.PathLike[str]) -> FrameTimes:
    """Frame start times and the duration, from the container's timestamps when they can be trusted.

    Args:
        timestamps: float ``(N, 2)``, each frame's start and end in seconds as the container reports them
            (decord's ``get_frame_timestamp``).
        num_frames: N.
        fps: the container's average frame rate, for the fallback.
        path: the video, for messages.

    Returns:
        :class:`FrameTimes`: the container's times from the first frame (rounded to microseconds: decord reports
        float32 seconds) when they pass the checks of the module docstring, else ``index / fps`` with
        ``source="frame-rate"`` and the reason in ``problem``.

    Raises:
        VideoDecodeError: unusable timestamps and no usable frame rate, or a duration over
            :data:`MAX_VIDEO_SECONDS`.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    problem = _timestamp_problem(timestamps, num_frames)
    if problem is None:
        origin = timestamps[0, 0]
        duration = float(np.round(timestamps[:, 1].max() - origin, 6))
        return FrameTimes(np.round(timestamps[:, 0] - origin, 6), duration, "container")
    if not (fps > 0 and math.isfinite(fps)):
        raise VideoDecodeError(path, f"no usable frame timestamps ({problem}) and no frame rate; re-encode the file")
    duration = num_frames / fps
    if duration > MAX_VIDEO_SECONDS:
        raise VideoDecodeError(
            path,
            f"{num_frames} frames at {fps:.6g} fps last {duration / 3600:.1f} h (its frame timestamps are unusable: "
            f"{problem}), over the {MAX_VIDEO_SECONDS / 3600:g} h limit of one video; cut it or re-encode it",
        )
    return FrameTimes(np.arange(num_frames, dtype=np.float64) / fps, duration, "frame-rate", problem)


def _clean_decord_message(error: BaseException, path: str) -> str:
    """decord's exception text as one readable line, without its C++ log prefix or the file's path."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if text.startswith("Error reading "):  # decord's Python-side message when FFmpeg cannot open the file
        return "unknown format or corrupt header"
    text = _DECORD_LOG_PREFIX.sub("", text).replace("Check failed: ", "")
    known = _FFMPEG_CODE.search(text)
    if known and abs(int(known.group(1))) in _FFMPEG_ERRORS:
        text = text.replace(known.group(0), "failed: " + _FFMPEG_ERRORS[abs(int(known.group(1)))])
    return text.replace(f"[{path}] ", "").replace(path, "<file>")


def _silence_ffmpeg_logs() -> None:
    """FFmpeg's own warnings would break the progress bar; failures are reported per video instead."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)


def _probe_frame_size(path: str) -> tuple[int, int]:
    """(width, height) of the first video stream from the container header (no decoding), via PyAV."""
    require_package("av", "reading a video's frame size for --resize crop", "video")
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "cannot open as a video: the file has no video stream")
            stream = container.streams.video[0]
            return int(stream.codec_context.width), int(stream.codec_context.height)
    except (av.error.FFmpegError, OSError) as error:
        raise VideoDecodeError(
            path, f"cannot open as a video: unknown format or corrupt header ({type(error).__name__} from PyAV)"
        ) from error


def _safe_decode_width(width: int) -> int:
    """The smallest width >= ``width`` that decord can decode to (see ``_DECORD_BAD_WIDTHS``)."""
    while width in _DECORD_BAD_WIDTHS:
        width += 1
    return width


def crop_resize_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """Decoded (width, height) whose short side is ``size``, aspect kept (each side >= size)."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


class ClipFrameReader:
    """Open one video with decord, resized on decode, and read the frames a :class:`ClipPlan` asks for.

    Args:
        path: the video file.
        size: output frames are ``size x size`` pixels.
        resize: ``"squash"`` (resize straight to the square) or ``"crop"`` (short side to ``size``, then the
            centre square); see the module docstring.
        num_threads: FFmpeg decoding threads for this reader (0 = FFmpeg's choice). Extraction runs one reader
            per worker with 1 thread, which scales better across many videos than threads inside one decoder.

    Attributes:
        num_frames: N frames in the stream.
        fps: the container's average frame rate (frames per second), as reported.
        frame_starts: float64 ``(N,)``, each frame's presentation time in seconds from the first frame.
        duration: seconds, end of the last frame (at most :data:`MAX_VIDEO_SECONDS`).
        timestamps: ``"container"`` (the container's per-frame times) or ``"frame-rate"`` (``index / fps``,
            when those cannot be trusted; see the module docstring).

    Raises:
        VideoDecodeError: missing, empty, unreadable or frameless file, unusable timestamps and no frame rate,
            or a duration over 24 h.
    """

    def __init__(self, path: str | os.PathLike[str], size: int, resize: str = "squash", num_threads: int = 1) -> None:
        require_package("decord", "decoding videos", "video")
        if resize not in RESIZE_MODES:
            raise InputError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}.")
        if size < 1:
            raise InputError(f"size must be a positive number of pixels, got {size!r}.")
        self.path = os.fspath(path)
        self.size = int(size)
        self.resize = resize
        if not os.path.exists(self.path):
            raise VideoDecodeError(self.path, "file not found")
        if not os.path.isfile(self.path):
            raise VideoDecodeError(self.path, "not a regular file")
        if os.path.getsize(self.path) == 0:
            raise VideoDecodeError(self.path, "empty file (0 bytes)")
        unreliable = UNRELIABLE_CONTAINERS.get(Path(self.path).suffix.lower())
        if unreliable is not None:
            raise VideoDecodeError(self.path, unreliable)
        import decord

        _silence_ffmpeg_logs()
        if resize == "squash":
            decode_width = decode_height = self.size
        else:
            decode_width, decode_height = crop_resize_shape(*_probe_frame_size(self.path), self.size)
        decode_width = _safe_decode_width(decode_width)
        try:
            self._reader = decord.VideoReader(
                self.path, width=decode_width, height=decode_height, num_threads=num_threads
            )
            self.num_frames = len(self._reader)
            timestamps = np.asarray(
                self._reader.get_frame_timestamp(np.arange(self.num_frames)), dtype=np.float64
            )  # (N, 2) start, end
            self.fps = float(self._reader.get_avg_fps())
        except AssertionError as error:  # decord asserts a positive frame count
            raise VideoDecodeError(self.path, "no video frames (zero-frame stream)") from error
        except Exception as error:  # decord raises RuntimeError or its DECORDError for any unreadable input
            raise VideoDecodeError(
                self.path, f"cannot open as a video: {_clean_decord_message(error, self.path)}"
            ) from error
        if self.num_frames < 1:
            raise VideoDecodeError(self.path, "no video frames (zero-frame stream)")
        times = frame_times(timestamps, self.num_frames, self.fps, self.path)
        self.frame_starts, self.duration, self.timestamps = times.starts, times.duration, times.source

    def plan(self, clip_seconds: float, frames_per_clip: int) -> ClipPlan:
        """The :class:`ClipPlan` for this video (see :func:`plan_clips`)."""
        return plan_clips(self.frame_starts, self.duration, clip_seconds, frames_per_clip)

    def read(self, frame_indices: np.ndarray) -> np.ndarray:
        """Decode frames by index (non-decreasing order is fastest).

        Args:
            frame_indices: int ``(n,)``.

        Returns:
            uint8 ``(n, size, size, 3)`` RGB frames.

        Raises:
            VideoDecodeError: the stream is truncated or corrupt where these frames are.
        """
        try:
            frames = self._reader.get_batch(np.asarray(frame_indices, dtype=np.int64).tolist()).asnumpy()
        except Exception as error:  # DECORDError for truncated/corrupt data; decord has no finer exception types
            first, last = int(np.min(frame_indices)), int(np.max(frame_indices))
            raise VideoDecodeError(
                self.path, f"decoding frames {first}-{last} of {self.num_frames} failed (truncated or corrupt "
                f"stream?): {_clean_decord_message(error, self.path)}"
            ) from error
        if frames.ndim == 3:  # a single-channel frame layout; give the network RGB
            frames = np.repeat(frames[..., None], 3, axis=-1)
        if frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, axis=-1)
        if frames.shape[1:3] != (self.size, self.size):  # crop mode, or a width decord cannot produce
            frames = _centre_crop(frames, self.size)
        if frames.shape[1:] != (self.size, self.size, 3):
            raise VideoDecodeError(
                self.path, f"decoder returned frames of shape {frames.shape[1:]}, expected {(self.size, self.size, 3)}"
            )
        return np.ascontiguousarray(frames)

    def close(self) -> None:
        """Free the decoder (also done when the object is garbage-collected)."""
        self._reader = None

    def __enter__(self) -> ClipFrameReader:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ClipFrameReader({Path(self.path).name!r}, frames={self.num_frames}, fps={self.fps:.3g}, "
            f"duration={self.duration:.3f}s, size={self.size}, resize={self.resize!r})"
        )


def _centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` square of uint8 ``(n, H, W, 3)`` frames with H, W >= size."""
    height, width = frames.shape[1:3]
    top, left = (height - size) // 2, (width - size) // 2
    return frames[:, top : top + size, left : left + size]
