"""Turn video files into clip features in one HDF5 file: resumable, crash-safe, shardable.

The work is split by job; this module runs the whole of it (``grounding extract``):

- :mod:`grounding.video.sources`: which videos (files, folders, list files), their ids, shards;
- :mod:`grounding.video.clips`: the decode -> backbone loop, one video's clip features at a time, in memory
  (:func:`~grounding.video.clips.extract_clip_features` for one file);
- :mod:`grounding.video.feature_files`: the parts folder, the atomic HDF5 writer, merging and summaries (the
  file layout is described there).

**Crash safety.** HDF5 is not journaled, so the file is never written in place. Each finished video is
committed on its own as ``<out>.parts/<video_id>.npz`` (written to a temporary name, fsynced and then renamed:
a part either exists whole or not at all). At the end, ``<out>`` is rebuilt from the earlier ``<out>`` (if any)
plus the parts, again through a temporary file and a rename, and the parts folder is removed. A run killed at
any moment (``kill -9`` included) loses at most the videos in flight; running the same command again skips
every video already in ``<out>`` or in the parts folder. One process per output: a lock file refuses a second
concurrent run. Resuming with different settings (backbone, clip length, size, ...) is refused.

**Pipeline.** Worker threads decode videos (decord releases the GIL) into a bounded queue of frame chunks
while the main thread runs the network on batches gathered across videos, so extraction runs close to the
slower of decoding and the network. A video that cannot be decoded is recorded as a failure (id, path, reason)
and the others go on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from grounding.errors import ConfigError
from grounding.video.clips import (
    VideoClipFeatures,
    extract_clip_features,
    iter_clip_features,
    resolve_settings,
)
from grounding.video.feature_files import (
    FEATURE_DTYPES,
    FORMAT_VERSION,
    SETTING_KEYS,
    MergeReport,
    PartsFolder,
    build_output,
    file_settings,
    merge_feature_files,
    part_meta,
    read_existing_output,
    remove_stale_temporaries,
    summarize_feature_file,
)
from grounding.video.settings import DEFAULT_BACKBONE, ExtractionSettings
from grounding.video.sources import (
    VideoSource,
    check_video_id,
    find_videos,
    parse_shard,
    select_shard,
    shard_output_path,
    video_id_for,
)

if TYPE_CHECKING:  # the backbones module imports torch; extraction imports it only when it runs
    from grounding.video.backbones import Backbone

__all__ = [
    "FEATURE_DTYPES", "FORMAT_VERSION", "SETTING_KEYS", "ExtractionConfig", "ExtractionReport", "MergeReport",
    "PartsFolder", "VideoClipFeatures", "VideoFailure", "VideoSource", "check_video_id", "extract_clip_features",
    "extract_features", "find_videos", "merge_feature_files", "parse_shard", "select_shard", "shard_output_path",
    "summarize_feature_file", "video_id_for",
]


@dataclass(init=False)
class ExtractionConfig:
    """How to turn videos into clip features: the extraction settings plus how to run.

    Args:
        settings: what the features are (:class:`~grounding.video.settings.ExtractionSettings`: backbone, clip
            length, frames per clip, frame size, resize mode); unpinned fields take the defaults
            (``efficientnet-lite0``, 1 s clips, ``squash``, the backbone's input size and frames per input).
        batch_size: frames per network call.
        workers: decoding threads (0 = decode in the main thread, no overlap).
        device: torch device for the network.
        dtype: storage dtype, ``"float32"`` or ``"float16"`` (half the disk; features are computed in float32).
        backbone, clip_seconds, frames_per_clip, size, resize: shorthand for the fields of ``settings``
            (``size`` is ``frame_size``), for callers that do not build an ``ExtractionSettings``; not
            together with ``settings``.

    Raises:
        ConfigError: a value out of range.
    """

    settings: ExtractionSettings
    batch_size: int = 32
    workers: int = 2
    device: str = "cpu"
    dtype: str = "float32"

    def __init__(
        self,
        settings: ExtractionSettings | None = None,
        *,
        batch_size: int = 32,
        workers: int = 2,
        device: str = "cpu",
        dtype: str = "float32",
        backbone: str | None = None,
        clip_seconds: float | None = None,
        frames_per_clip: int | None = None,
        size: int | None = None,
        resize: str | None = None,
    ) -> None:
        shorthand = {"backbone": backbone, "clip_seconds": clip_seconds, "frames_per_clip": frames_per_clip,
                     "frame_size": size, "resize": resize}
        pinned = {key: value for key, value in shorthand.items() if value is not None}
        if settings is not None and not isinstance(settings, ExtractionSettings):
            raise ConfigError(f"settings must be an ExtractionSettings, got {type(settings).__name__}.")
        if settings is not None and pinned:
            raise ConfigError(f"pass either settings or {', '.join(pinned)}, not both.")
        self.settings = settings if settings is not None else ExtractionSettings(**pinned)
        self.batch_size, self.workers, self.device, self.dtype = batch_size, workers, device, dtype
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size!r}.")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 decodes in the main thread), got {self.workers!r}.")
        if self.dtype not in FEATURE_DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(FEATURE_DTYPES)}, got {self.dtype!r}.")


@dataclass(frozen=True)
class VideoFailure:
    """A video that produced no features: its id, file and the reason, in one line."""

    video_id: str
    path: str
    reason: str


@dataclass
class ExtractionReport:
    """What one :func:`extract_features` call did.

    Attributes:
        output: the HDF5 file written.
        extracted: ids extracted by this run.
        skipped: ids found already done (in the earlier output or its parts folder) and not re-extracted.
        failures: videos that failed in this run.
        frame_rate_timestamps: ids extracted by this run whose container timestamps could not be trusted, so
            their frames were placed at ``index / fps`` (their ``timestamps`` attribute says ``"frame-rate"``).
        num_videos: videos in the output file now.
        dim: feature width D.
        seconds: wall-clock time of the run.
        frames: frames decoded and encoded by this run.
    """

    output: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[VideoFailure] = field(default_factory=list)
    frame_rate_timestamps: list[str] = field(default_factory=list)
    num_videos: int = 0
    dim: int = 0
    seconds: float = 0.0
    frames: int = 0

    def to_json(self) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-9)
        return {
            "output": str(self.output),
            "extracted": len(self.extracted),
            "skipped": len(self.skipped),
            "failed": len(self.failures),
            "frame_rate_timestamps": len(self.frame_rate_timestamps),
            "num_videos": self.num_videos,
            "dim": self.dim,
            "seconds": round(self.seconds, 3),
            "videos_per_second": round(len(self.extracted) / seconds, 3),
            "frames_per_second": round(self.frames / seconds, 2),
            "failures": [asdict(failure) for failure in self.failures],
        }


def extract_features(
    videos: Sequence[VideoSource],
    out: str | os.PathLike[str],
    config: ExtractionConfig | None = None,
    *,
    backbone: Backbone | None = None,
    progress: bool = True,
) -> ExtractionReport:
    """Extract clip features for ``videos`` into the HDF5 file ``out`` (see the module docstring).

    Each video's features are those :func:`~grounding.video.clips.extract_clip_features` returns for it, stored
    as ``config.dtype``, with the resolved settings as attributes (:mod:`grounding.video.feature_files`).

    Args:
        videos: from :func:`find_videos` (ids unique).
        out: output ``.h5`` path; an existing output made with the same settings is extended, its videos
            skipped.
        config: settings (defaults: :class:`ExtractionConfig`).
        backbone: an already built :class:`~grounding.video.backbones.Backbone` to use instead of creating
            ``config.settings.backbone`` (its name must match that when it is set).
        progress: show a tqdm bar on stderr.

    Returns:
        An :class:`ExtractionReport`; failed videos are in ``report.failures``, not raised.

    Raises:
        InputError / ConfigError: unusable settings, an output made with other settings, a concurrent run.
    """
    from grounding.video.backbones import create_backbone

    config = config or ExtractionConfig()
    out_path = Path(out)
    if backbone is None:
        backbone = create_backbone(config.settings.backbone or DEFAULT_BACKBONE, device=config.device)
    settings = resolve_settings(config.settings, backbone)
    attrs = file_settings(settings, backbone.dim, config.dtype)
    started = time.perf_counter()
    report = ExtractionReport(output=out_path, dim=backbone.dim)
    parts = PartsFolder(out_path.with_name(out_path.name + ".parts"), attrs)
    existing_ids = read_existing_output(out_path, attrs)
    parts.open()
    try:
        remove_stale_temporaries(out_path)
        done_ids = existing_ids | parts.finished_ids()
        todo = [video for video in videos if video.video_id not in done_ids]
        report.skipped = [video.video_id for video in videos if video.video_id in done_ids]
        _extract_into_parts(todo, backbone, settings, config, parts, report, progress)
        if parts.finished_ids() or not out_path.exists():
            report.num_videos = build_output(out_path, parts, settings)
        else:
            report.num_videos = len(existing_ids)
        parts.remove()
    finally:
        parts.close()
    report.seconds = time.perf_counter() - started
    return report


def _extract_into_parts(
    todo: Sequence[VideoSource],
    backbone: Backbone,
    settings: ExtractionSettings,
    config: ExtractionConfig,
    parts: PartsFolder,
    report: ExtractionReport,
    progress: bool,
) -> None:
    """Run the decode -> backbone loop on ``todo``, committing each finished video to ``parts``."""
    from tqdm import tqdm

    if not todo:
        return
    bar = tqdm(total=len(todo), unit="video", desc="extract", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    outcomes = iter_clip_features([video.path for video in todo], backbone, settings,
                                  batch_size=config.batch_size, workers=config.workers)
    try:
        with contextlib.closing(outcomes):
            for outcome in outcomes:
                video = todo[outcome.index]
                report.frames += outcome.frames
                features = outcome.features
                if features is None:
                    report.failures.append(VideoFailure(video.video_id, str(video.path), str(outcome.error)))
                    bar.set_postfix(failed=len(report.failures), refresh=False)
                else:
                    meta = part_meta(vars(features))
                    parts.write(video.video_id, features.clip_feats.astype(config.dtype), features.clip_centres, meta)
                    report.extracted.append(video.video_id)
                    if features.timestamps != "container":
                        report.frame_rate_timestamps.append(video.video_id)
                bar.update(1)
    finally:
        bar.close()
