"""The decode -> backbone loop: video files in, one video's clip features at a time out, nothing written.

:func:`iter_clip_features` is the one implementation of "video file -> clip features": decoding threads
(decord releases the GIL) fill a bounded queue with chunks of whole clips while the calling thread runs the
backbone on batches gathered across videos and averages the K frames of each clip. :func:`extract_clip_features`
runs it on one file and returns the result in memory (for :class:`grounding.Grounder`);
:func:`grounding.video.extract.extract_features` runs it on many and adds the crash-safe parts folder and the
HDF5 writer around it. Both give the same features for a video decoded with the same settings and batch size.

    features = extract_clip_features("clip.mp4", ExtractionSettings(backbone="efficientnet-lite0", frame_size=160))
    features.clip_feats.shape   # (T, 1280) float32; features.clip_centres (T,) seconds; features.duration
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from grounding.errors import ConfigError
from grounding.video.decode import ClipFrameReader, VideoDecodeError
from grounding.video.settings import DEFAULT_BACKBONE, ExtractionSettings

if TYPE_CHECKING:  # the backbones module imports torch; this module imports it only when it runs
    from grounding.video.backbones import Backbone


@dataclass
class VideoClipFeatures:
    """One video's clip features, as :func:`extract_clip_features` returns them (and extraction stores them).

    Attributes:
        clip_feats: float32 ``(T, D)``, one row per clip, the backbone's features averaged over the clip's K frames.
        clip_centres: float64 ``(T,)``, each clip's centre in seconds from the video's start.
        duration: the video's length in seconds (end of its last frame).
        fps: the container's average frame rate, as reported.
        num_frames: N frames in the stream.
        timestamps: ``"container"`` or ``"frame-rate"``: where the frame times came from
            (:mod:`grounding.video.decode`).
        settings: the extraction settings used, every field filled in (:meth:`ExtractionSettings.resolved`).
        source: the decoded file's path.
    """

    clip_feats: np.ndarray
    clip_centres: np.ndarray
    duration: float
    fps: float
    num_frames: int
    timestamps: str
    settings: ExtractionSettings
    source: str

    @property
    def num_clips(self) -> int:
        return int(self.clip_feats.shape[0])


@dataclass
class VideoOutcome:
    """What :func:`iter_clip_features` yields for each video: its features, or why it has none.

    Attributes:
        index: the video's position in the sequence given to :func:`iter_clip_features`.
        features: the features, or None when the video failed.
        error: the one-line reason the video failed (None on success).
        frames: frames decoded and encoded for this video (also those of a video that failed midway).
    """

    index: int
    features: VideoClipFeatures | None = None
    error: str | None = None
    frames: int = 0


def resolve_settings(settings: ExtractionSettings, backbone: Backbone) -> ExtractionSettings:
    """``settings`` for ``backbone`` with every field filled in (its input size and frames per input by default).

    Raises:
        ConfigError: ``settings.backbone`` names another backbone, or K is not a multiple of the backbone's
            frames per input.
    """
    if settings.backbone is not None and settings.backbone != backbone.name:
        raise ConfigError(f"backbone {backbone.name!r} was passed but the settings say {settings.backbone!r}.")
    resolved = dataclasses.replace(settings, backbone=backbone.name).resolved(
        backbone.input_size, backbone.frames_per_input
    )
    assert resolved.frames_per_clip is not None  # resolved() fills every field
    if resolved.frames_per_clip % backbone.frames_per_input:
        raise ConfigError(
            f"--frames-per-clip {resolved.frames_per_clip}: backbone {backbone.name!r} encodes "
            f"{backbone.frames_per_input} frames at a time; pass a multiple of {backbone.frames_per_input} (or "
            "leave it out)."
        )
    return resolved


def extract_clip_features(
    path: str | os.PathLike[str],
    settings: ExtractionSettings | None = None,
    backbone: Backbone | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 32,
) -> VideoClipFeatures:
    """Decode one video and return its clip features in memory (no file is written).

    The same loop as ``grounding extract`` (:func:`iter_clip_features`): with the same settings and
    ``batch_size`` the features equal what :func:`grounding.video.extract.extract_features` stores for the
    file, to float32 rounding (``extract_features`` may put frames of two videos in one network batch, and the
    backbone's kernels can round a frame differently in a batch of another size: about 1e-5 at most).

    Args:
        path: the video file.
        settings: the extraction settings (unpinned fields take the backbone's defaults; default: all unpinned,
            i.e. ``efficientnet-lite0`` with 1 s clips).
        backbone: an already built backbone to use (its name must match ``settings.backbone`` when that is
            set); default: ``create_backbone(settings.backbone, device)``.
        device: torch device for a backbone built here (ignored when ``backbone`` is given).
        batch_size: frames per network call (>= 1).

    Returns:
        :class:`VideoClipFeatures`: ``clip_feats`` float32 ``(T, D)``, ``clip_centres`` float64 ``(T,)``, the
        duration in seconds and the resolved settings.

    Raises:
        VideoDecodeError: the video cannot be decoded, or the backbone returned NaN/inf (one-line reason).
        ConfigError: unusable settings or ``batch_size``.
    """
    settings = settings or ExtractionSettings()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    if backbone is None:
        from grounding.video.backbones import create_backbone

        backbone = create_backbone(settings.backbone or DEFAULT_BACKBONE, device=device)
    resolved = resolve_settings(settings, backbone)
    source = Path(os.path.abspath(path))
    with contextlib.closing(iter_clip_features([source], backbone, resolved, batch_size=batch_size, workers=0)) as run:
        outcome = next(run)
    if outcome.features is None:
        raise VideoDecodeError(source, f"cannot extract clip features: {outcome.error}")
    return outcome.features


def iter_clip_features(
    paths: Sequence[str | os.PathLike[str]],
    backbone: Backbone,
    settings: ExtractionSettings,
    *,
    batch_size: int = 32,
    workers: int = 0,
) -> Iterator[VideoOutcome]:
    """Decode and encode ``paths``; yield one :class:`VideoOutcome` per video as soon as it is done.

    Videos finish in about the order given (with ``workers > 1`` a short video may overtake a long one). A video
    that cannot be decoded, or whose features hold NaN/inf, is an outcome with ``error`` set; the others go on.
    Close the generator (``contextlib.closing``) to stop the decoding threads early.

    Args:
        paths: video files.
        backbone: the frame encoder.
        settings: resolved settings (:func:`resolve_settings`).
        batch_size: frames per network call.
        workers: decoding threads (0 = decode in the calling thread, one video after another).
    """
    assert settings.frames_per_clip is not None and settings.frame_size is not None, "pass resolved settings"
    clips_per_chunk = max(1, batch_size // settings.frames_per_clip)
    decode = functools.partial(_decode_chunks, settings=settings, clips_per_chunk=clips_per_chunk)
    source: _DecodeWorkers | _InlineDecoder = (
        _DecodeWorkers(paths, decode, workers) if workers > 0 else _InlineDecoder(paths, decode)
    )
    encoder = _BatchEncoder(backbone, settings.frames_per_clip, batch_size)
    in_progress: dict[int, _VideoState] = {}

    def flush() -> list[VideoOutcome]:
        finished = []
        for chunk, clip_feats in encoder.flush():
            state = in_progress.get(chunk.video_index)
            if state is None:  # the video failed after this chunk was queued
                continue
            state.feats.append(clip_feats)
            state.frames += len(chunk.frames)
            if chunk.is_last:
                finished.append(_finish(chunk.video_index, in_progress.pop(chunk.video_index), settings))
        return finished

    try:
        for chunk in source:
            if chunk.error is not None:
                state = in_progress.pop(chunk.video_index, None)
                yield VideoOutcome(chunk.video_index, error=chunk.error, frames=state.frames if state else 0)
                continue
            if chunk.meta is not None:
                in_progress[chunk.video_index] = _VideoState(chunk.meta)
            if encoder.would_overflow(chunk):
                yield from flush()
            if encoder.add(chunk) or not source.ready():
                yield from flush()
        yield from flush()
    finally:
        source.close()


@dataclass
class _VideoState:
    meta: dict[str, Any]
    feats: list[np.ndarray] = field(default_factory=list)  # (n, D) float32 per encoded chunk
    frames: int = 0


def _finish(index: int, state: _VideoState, settings: ExtractionSettings) -> VideoOutcome:
    clip_feats = np.concatenate(state.feats)  # (T, D)
    finite = np.isfinite(clip_feats).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        reason = f"the backbone returned NaN/inf in {len(bad)} of {len(finite)} clips (first: clip {int(bad[0])})"
        return VideoOutcome(index, error=reason, frames=state.frames)
    features = VideoClipFeatures(clip_feats=clip_feats, settings=settings, **state.meta)
    return VideoOutcome(index, features=features, frames=state.frames)


@dataclass
class _Chunk:
    """Frames for whole clips of one video, or that video's failure.

    ``frames`` is uint8 ``(num_clips * K, S, S, 3)``; ``meta`` comes with the first chunk of a video;
    ``is_last`` marks its last chunk; ``error`` (with no frames) says the video failed.
    """

    video_index: int
    frames: np.ndarray | None = None
    num_clips: int = 0
    meta: dict[str, Any] | None = None
    is_last: bool = False
    error: str | None = None


def _decode_chunks(
    path: str | os.PathLike[str], video_index: int, settings: ExtractionSettings, clips_per_chunk: int
) -> Iterator[_Chunk]:
    """Decode one video into chunks of whole clips; a failure ends it with one error chunk."""
    assert settings.frame_size is not None and settings.resize is not None
    assert settings.clip_seconds is not None and settings.frames_per_clip is not None
    try:
        reader = ClipFrameReader(path, size=settings.frame_size, resize=settings.resize, num_threads=1)
        with reader:
            plan = reader.plan(settings.clip_seconds, settings.frames_per_clip)
            meta = {
                "clip_centres": plan.clip_centres,
                "duration": plan.duration,
                "fps": reader.fps,
                "num_frames": reader.num_frames,
                "timestamps": reader.timestamps,
                "source": str(path),
            }
            for first in range(0, plan.num_clips, clips_per_chunk):
                indices = plan.frame_indices[first : first + clips_per_chunk]  # (n, K)
                frames = reader.read(indices.ravel())
                yield _Chunk(
                    video_index,
                    frames=frames,
                    num_clips=indices.shape[0],
                    meta=meta if first == 0 else None,
                    is_last=first + clips_per_chunk >= plan.num_clips,
                )
    except VideoDecodeError as error:
        yield _Chunk(video_index, error=error.reason)
    except Exception as error:  # anything else about one file (e.g. a decoder bug) must not stop the others
        yield _Chunk(video_index, error=f"{type(error).__name__}: {error}")


_Decode = Callable[[Any, int], Iterator[_Chunk]]


class _DecodeWorkers:
    """Threads that decode videos into a bounded queue of chunks (decord releases the GIL while decoding).

    Each thread takes the next video, puts its chunks in order, then takes another. The queue holds at most
    ``2 * workers`` chunks, which bounds memory whatever the video lengths.
    """

    _DONE = object()

    def __init__(self, paths: Sequence[Any], decode: _Decode, workers: int) -> None:
        self._videos = list(enumerate(paths))
        self._next = 0
        self._decode = decode
        self._claim = threading.Lock()
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2 * workers)
        self._threads = [
            threading.Thread(target=self._work, name=f"grounding-decode-{number}", daemon=True)
            for number in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _claim_video(self) -> tuple[int, Any] | None:
        with self._claim:
            if self._next >= len(self._videos):
                return None
            claimed = self._videos[self._next]
            self._next += 1
            return claimed

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                claimed = self._claim_video()
                if claimed is None:
                    break
                for chunk in self._decode(claimed[1], claimed[0]):
                    if not self._put(chunk):
                        return
        finally:  # always tell the consumer this thread is done, or it would wait forever
            self._put(self._DONE)

    def __iter__(self) -> Iterator[_Chunk]:
        running = len(self._threads)
        while running:
            item = self._queue.get()
            if item is self._DONE:
                running -= 1
            else:
                yield item

    def ready(self) -> bool:
        """True when a chunk is waiting, so a batch can grow without making the network wait."""
        return not self._queue.empty()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        for thread in self._threads:
            thread.join(timeout=10)


class _InlineDecoder:
    """workers=0: decode in the calling thread, one video after another (no overlap)."""

    def __init__(self, paths: Sequence[Any], decode: _Decode) -> None:
        self._paths = paths
        self._decode = decode

    def __iter__(self) -> Iterator[_Chunk]:
        for index, path in enumerate(self._paths):
            yield from self._decode(path, index)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _BatchEncoder:
    """Calling-thread side: batch chunks across videos, run the backbone, average the K frames of each clip."""

    def __init__(self, backbone: Backbone, frames_per_clip: int, batch_size: int) -> None:
        self.backbone = backbone
        self.groups_per_clip = frames_per_clip // backbone.frames_per_input
        self.batch_size = batch_size
        self.pending: list[_Chunk] = []
        self.pending_frames = 0

    def add(self, chunk: _Chunk) -> bool:
        """Queue a chunk; True when the batch is full and should be flushed before adding more."""
        assert chunk.frames is not None
        self.pending.append(chunk)
        self.pending_frames += len(chunk.frames)
        return self.pending_frames >= self.batch_size

    def would_overflow(self, chunk: _Chunk) -> bool:
        assert chunk.frames is not None
        return bool(self.pending) and self.pending_frames + len(chunk.frames) > self.batch_size

    def flush(self) -> list[tuple[_Chunk, np.ndarray]]:
        """Encode the pending chunks; returns (chunk, clip features float32 ``(num_clips, D)``) in order."""
        if not self.pending:
            return []
        chunks = [chunk.frames for chunk in self.pending]
        frames = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        feats = self.backbone.encode_frames(frames)  # (n_frames / frames_per_input, D)
        results = []
        offset = 0
        for chunk in self.pending:
            rows = chunk.num_clips * self.groups_per_clip
            clip_feats = feats[offset : offset + rows].reshape(chunk.num_clips, self.groups_per_clip, -1).mean(dim=1)
            results.append((chunk, clip_feats.cpu().numpy().astype(np.float32)))
            offset += rows
        self.pending, self.pending_frames = [], 0
        return results
