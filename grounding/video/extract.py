"""Turn video files into clip features in one HDF5 file: resumable, crash-safe, shardable.

Output layout (read by :class:`grounding.data.features.HDF5FeatureStore`)::

    features.h5
      attrs: backbone, dim, clip_seconds, frames_per_clip, size, resize, dtype, format_version, grounding_version
      <video_id>    dataset [T, D] float32 (or float16 with dtype="float16")
        attrs: backbone, clip_seconds, frames_per_clip, fps, duration, num_frames, clip_centres [T] (seconds),
               source (the video's absolute path)

Video ids are file names without their extension (``AO8RW.mp4`` -> ``AO8RW``), as Charades-STA names videos.

**Crash safety.** HDF5 is not journaled, so the file is never written in place. Each finished video is
committed on its own as ``<out>.parts/<video_id>.npz`` (written to a temporary name, flushed, fsynced and then
renamed: a part either exists whole or not at all). At the end, ``<out>`` is rebuilt from the earlier ``<out>``
(if any) plus the parts, again through a temporary file and a rename, and the parts folder is removed. A run
killed at any moment (``kill -9`` included) loses at most the videos in flight; running the same command again
skips every video already in ``<out>`` or in the parts folder. One process per output: a lock file refuses a
second concurrent run. Resuming with different settings (backbone, clip length, size, ...) is refused.

**Pipeline.** Worker threads decode videos (decord releases the GIL) into a bounded queue of frame chunks
while the main thread runs the network on batches gathered across videos, so extraction runs close to the
slower of decoding and the network. A video that cannot be decoded is recorded as a failure (id, path, reason)
and the others go on.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from grounding import __version__
from grounding.errors import ConfigError, InputError
from grounding.video.decode import RESIZE_MODES, VIDEO_EXTENSIONS, ClipFrameReader, VideoDecodeError

if TYPE_CHECKING:  # the backbones module imports torch; extraction imports it only when it runs
    from grounding.video.backbones import Backbone

FORMAT_VERSION = 1
FEATURE_DTYPES: tuple[str, ...] = ("float32", "float16")
# File attributes that must agree between a resumed run and its earlier output, and between merged files.
SETTING_KEYS: tuple[str, ...] = ("backbone", "dim", "clip_seconds", "frames_per_clip", "size", "resize", "dtype")
_PART_SUFFIX = ".npz"
_SETTINGS_FILE = "settings.json"
_LOCK_FILE = ".lock"


# --- video lists and ids ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSource:
    """One video to extract: its id (the dataset name in the output) and its file."""

    video_id: str
    path: Path


def check_video_id(video_id: str, source: str) -> str:
    """Return ``video_id`` if it is safe as an HDF5 dataset name and a file name; InputError otherwise.

    Refused: empty, ``.``, ``..``, anything with a path separator (``/``, ``\\``) or a control character.
    Spaces and non-ASCII letters are fine.

    Args:
        video_id: the candidate id.
        source: where it came from, for the message (a path or ``list.txt:3``).
    """
    problem = None
    if video_id in ("", ".", ".."):
        problem = "is empty or a relative-directory name"
    elif "/" in video_id or "\\" in video_id or (os.altsep and os.altsep in video_id):
        problem = "contains a path separator"
    elif any(ord(char) < 32 or ord(char) == 127 for char in video_id):
        problem = "contains a control character"
    if problem:
        raise InputError(
            f"{source}: video id {video_id!r} {problem}, so it could escape or break the output file; rename the "
            "video (ids are file names without their extension)."
        )
    return video_id


def video_id_for(path: str | os.PathLike[str]) -> str:
    """The video id of a file: its name without the last extension (``a/AO8RW.mp4`` -> ``AO8RW``), checked."""
    return check_video_id(_stem(Path(path)), os.fspath(path))


def _is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _scan_folder(folder: Path) -> list[Path]:
    """Video files under ``folder``, recursively; hidden files and folders (``.*``, e.g. macOS ``._x.mp4``) skipped."""
    found = []
    visited: set[str] = set()  # real paths, so a symlink loop is walked once
    for root, dirs, files in os.walk(folder, followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in visited:
            dirs[:] = []
            continue
        visited.add(real_root)
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        found.extend(
            Path(root) / name for name in sorted(files) if not name.startswith(".") and _is_video_file(Path(name))
        )
    return found


def _read_list_file(list_path: Path) -> list[tuple[Path, str]]:
    """(path, 'list.txt:line') for each path in a text list; relative paths are relative to the list's folder."""
    try:
        text = list_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{list_path}: not a video (extensions {', '.join(VIDEO_EXTENSIONS)}) and not a UTF-8 text list of "
            "paths; pass a video, a folder, or a text file with one path per line."
        ) from error
    entries = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        if not path.is_absolute():
            path = list_path.parent / path
        entries.append((path, f"{list_path}:{line_number}"))
    return entries


def find_videos(inputs: Sequence[str | os.PathLike[str]]) -> list[VideoSource]:
    """Expand video files, folders (recursive) and text lists of paths into videos sorted by id.

    A path with a video extension (mp4, avi, mkv, webm, mov) is a video; a folder is searched recursively for
    such files; any other file is read as a UTF-8 list with one path per line (blank lines and ``#`` comments
    skipped; relative paths are relative to the list's folder; a listed folder is searched too). Listed paths
    need not exist: a missing one becomes a per-video failure at extraction time.

    Raises:
        InputError: a missing command-line path, an unsafe id, or one id for two different files.
    """
    candidates: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            candidates.extend((found, str(found)) for found in _scan_folder(path))
        elif _is_video_file(path):
            if not path.exists():
                raise InputError(f"{path}: no such video file; check the path.")
            candidates.append((path, str(path)))
        elif path.is_file():
            for listed, where in _read_list_file(path):
                if listed.is_dir():
                    candidates.extend((found, str(found)) for found in _scan_folder(listed))
                else:
                    candidates.append((listed, where))
        else:
            raise InputError(f"{path}: no such file or folder; pass a video, a folder of videos or a list file.")
    by_id: dict[str, VideoSource] = {}
    for path, where in candidates:
        video_id = check_video_id(_stem(path), where)
        absolute = Path(os.path.abspath(path))
        known = by_id.get(video_id)
        if known is not None and known.path != absolute:
            raise InputError(
                f"video id {video_id!r} comes from two files: {known.path} and {absolute}; ids are file names "
                "without their extension (as Charades-STA names videos), so rename one or extract them into "
                "separate outputs."
            )
        by_id[video_id] = VideoSource(video_id, absolute)
    return [by_id[video_id] for video_id in sorted(by_id)]


def _stem(path: Path) -> str:
    suffix = path.suffix
    return path.name[: -len(suffix)] if suffix else path.name


# --- shards ---------------------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` -> ``(1, 4)``: shard index i (0-based, 0 <= i < n) and shard count n."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError as error:
        raise InputError(f"--shard {text!r}: expected i/n with integers, e.g. 0/4 (i is 0-based).") from error
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text!r}: need n >= 1 and 0 <= i < n (i is 0-based: 0/{max(count, 1)} is first).")
    return index, count


def select_shard(videos: Sequence[VideoSource], index: int, count: int) -> list[VideoSource]:
    """The ``index``-th of ``count`` round-robin parts of ``videos`` sorted by id (every video in exactly one)."""
    ordered = sorted(videos, key=lambda video: video.video_id)
    return ordered[index::count]


def shard_output_path(out: str | os.PathLike[str], index: int, count: int) -> Path:
    """``features.h5`` -> ``features.shard-1-of-4.h5`` for shard 1 of 4 (the file ``--shard 1/4`` writes)."""
    out_path = Path(out)
    return out_path.with_name(f"{out_path.stem}.shard-{index}-of-{count}{out_path.suffix or '.h5'}")


# --- settings and reports -------------------------------------------------------------------------------------


@dataclass
class ExtractionConfig:
    """How to turn videos into clip features.

    Attributes:
        backbone: registry name or ``hf:PATH`` (see :mod:`grounding.video.backbones`).
        clip_seconds: clip length in seconds.
        frames_per_clip: K frames per clip, evenly spaced inside it, features averaged; None = the backbone's
            frames_per_input (1 for image models; a video model needs exactly its own F).
        size: decoded frame side in pixels; None = the backbone's input size.
        resize: ``"squash"`` or ``"crop"`` (see :mod:`grounding.video.decode`).
        batch_size: frames per network call.
        workers: decoding threads (0 = decode in the main thread, no overlap).
        device: torch device for the network.
        dtype: storage dtype, ``"float32"`` or ``"float16"`` (half the disk; features are computed in float32).
    """

    backbone: str = "efficientnet-lite0"
    clip_seconds: float = 1.0
    frames_per_clip: int | None = None
    size: int | None = None
    resize: str = "squash"
    batch_size: int = 32
    workers: int = 2
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not (isinstance(self.clip_seconds, (int, float)) and 0 < self.clip_seconds < math.inf):
            raise ConfigError(f"clip_seconds must be a positive number of seconds, got {self.clip_seconds!r}.")
        if self.frames_per_clip is not None and self.frames_per_clip < 1:
            raise ConfigError(f"frames_per_clip must be >= 1, got {self.frames_per_clip!r}.")
        if self.size is not None and self.size < 8:
            raise ConfigError(f"size must be >= 8 pixels, got {self.size!r}.")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}.")
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
        num_videos: videos in the output file now.
        dim: feature width D.
        seconds: wall-clock time of the run.
        frames: frames decoded and encoded by this run.
    """

    output: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[VideoFailure] = field(default_factory=list)
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
            "num_videos": self.num_videos,
            "dim": self.dim,
            "seconds": round(self.seconds, 3),
            "videos_per_second": round(len(self.extracted) / seconds, 3),
            "frames_per_second": round(self.frames / seconds, 2),
            "failures": [asdict(failure) for failure in self.failures],
        }


# --- crash-safe writing: parts folder and HDF5 files -----------------------------------------------------------


def _fsync_directory(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _settings_conflict(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """'key: found vs expected' for every setting that differs (missing keys count as different)."""
    conflicts = []
    for key in SETTING_KEYS:
        if key in expected and _plain(found.get(key)) != _plain(expected[key]):
            conflicts.append(f"{key}={_plain(found.get(key))!r} (this run: {_plain(expected[key])!r})")
    return conflicts


def _plain(value: Any) -> Any:
    """HDF5/JSON attribute values compared as plain Python (bytes -> str, numpy scalars -> int/float)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


class PartsFolder:
    """``<out>.parts/``: one committed ``<video_id>.npz`` per finished video, plus the run's settings.

    Each part holds ``features`` ``[T, D]`` (storage dtype), ``clip_centres`` ``[T]`` (seconds) and ``meta``
    (a JSON string: fps, duration, num_frames, source). Parts are written to a temporary name, fsynced and
    renamed, so a part file is always complete. ``.tmp`` files left by a killed run are removed on open.
    """

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.folder = folder
        self.settings = settings
        self._lock_handle: Any = None

    def open(self) -> None:
        """Create the folder, take the lock, check (or record) the settings, clear stale temporary files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        settings_path = self.folder / _SETTINGS_FILE
        if settings_path.exists():
            recorded = json.loads(settings_path.read_text(encoding="utf-8"))
            conflicts = _settings_conflict(self.settings, recorded)
            if conflicts and not self.finished_ids():  # an earlier run stopped before finishing any video
                conflicts = []
                self._write_atomic(settings_path, json.dumps(self.settings, indent=2).encode("utf-8"))
            if conflicts:
                self.close()
                raise InputError(
                    f"{self.folder}: unfinished parts from a run with other settings: {'; '.join(conflicts)}; "
                    "rerun with those settings to finish it, or delete the folder to start over."
                )
        else:
            self._write_atomic(settings_path, json.dumps(self.settings, indent=2).encode("utf-8"))
        for stale in self.folder.glob("*.tmp"):
            stale.unlink(missing_ok=True)

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, documented as one process per output
            return
        handle = open(self.folder / _LOCK_FILE, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            raise InputError(
                f"{self.folder}: another `grounding extract` is writing this output now; wait for it, or pass "
                "another --out."
            ) from error
        self._lock_handle = handle

    def close(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _part_path(self, video_id: str) -> Path:
        return self.folder / f"{video_id}{_PART_SUFFIX}"

    def finished_ids(self) -> set[str]:
        return {path.name[: -len(_PART_SUFFIX)] for path in self.folder.glob(f"*{_PART_SUFFIX}")}

    def _write_atomic(self, target: Path, payload: bytes) -> None:
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_directory(target.parent)

    def write(self, video_id: str, clip_feats: np.ndarray, clip_centres: np.ndarray, meta: dict[str, Any]) -> None:
        """Commit one video: features ``[T, D]``, clip centres ``[T]`` seconds, and JSON-able metadata."""
        buffer = io.BytesIO()
        np.savez(buffer, features=clip_feats, clip_centres=clip_centres, meta=np.array(json.dumps(meta)))
        self._write_atomic(self._part_path(video_id), buffer.getvalue())

    def read(self, video_id: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        with np.load(self._part_path(video_id), allow_pickle=False) as part:
            return part["features"], part["clip_centres"], json.loads(str(part["meta"]))

    def remove(self) -> None:
        """Delete the folder (after its parts are safely in the output file)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class _AtomicHDF5Writer:
    """Write an HDF5 file under a temporary name; :meth:`commit` renames it over the target."""

    def __init__(self, target: Path, file_attrs: dict[str, Any]) -> None:
        import h5py

        self.target = target
        self.temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.temporary, "w")
        self.file.attrs.update(file_attrs)

    def add(self, video_id: str, clip_feats: np.ndarray, attrs: dict[str, Any]) -> None:
        dataset = self.file.create_dataset(video_id, data=clip_feats)
        dataset.attrs.update(attrs)

    def copy(self, source_dataset: Any, video_id: str) -> None:
        source_dataset.file.copy(source_dataset, self.file, name=video_id)

    def commit(self) -> None:
        self.file.close()
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temporary, self.target)
        _fsync_directory(self.target.parent)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
        self.temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _atomic_hdf5(target: Path, file_attrs: dict[str, Any]) -> Iterator[_AtomicHDF5Writer]:
    writer = _AtomicHDF5Writer(target, file_attrs)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def _open_hdf5(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(
            f"{path}: cannot be read as HDF5 ({error}); pass a file written by `grounding extract`."
        ) from error


def _root_datasets(handle: Any) -> dict[str, Any]:
    import h5py

    return {name: item for name, item in handle.items() if isinstance(item, h5py.Dataset)}


def _read_existing_output(out: Path, settings: dict[str, Any]) -> set[str]:
    """Ids already in an earlier output at ``out`` made with the same settings (empty if there is none)."""
    if not out.exists():
        return set()
    with _open_hdf5(out) as handle:
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
        if "format_version" not in attrs:
            raise InputError(
                f"{out}: exists but was not written by `grounding extract` (no format_version attribute); pass "
                "another --out or delete it."
            )
        conflicts = _settings_conflict(settings, attrs)
        if conflicts:
            raise InputError(
                f"{out}: exists with other settings: {'; '.join(conflicts)}; pass another --out, or rerun with "
                "its settings to add videos to it."
            )
        return set(_root_datasets(handle))


def _file_attrs(settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "format_version": FORMAT_VERSION, "grounding_version": __version__}


def _video_attrs(settings: dict[str, Any], clip_centres: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "backbone": settings["backbone"],
        "clip_seconds": settings["clip_seconds"],
        "frames_per_clip": settings["frames_per_clip"],
        "fps": float(meta["fps"]),
        "duration": float(meta["duration"]),
        "num_frames": int(meta["num_frames"]),
        "clip_centres": np.asarray(clip_centres, dtype=np.float64),
        "source": str(meta["source"]),
    }


def _build_output(out: Path, parts: PartsFolder, settings: dict[str, Any]) -> int:
    """Rewrite ``out`` as its earlier content plus every part; returns the number of videos in it."""
    part_ids = sorted(parts.finished_ids())
    with contextlib.ExitStack() as stack:
        existing = stack.enter_context(_open_hdf5(out)) if out.exists() else None
        writer = stack.enter_context(_atomic_hdf5(out, _file_attrs(settings)))
        count = 0
        if existing is not None:
            for video_id, dataset in sorted(_root_datasets(existing).items()):
                if video_id not in part_ids:
                    writer.copy(dataset, video_id)
                    count += 1
        for video_id in part_ids:
            clip_feats, clip_centres, meta = parts.read(video_id)
            writer.add(video_id, clip_feats, _video_attrs(settings, clip_centres, meta))
            count += 1
    return count


# --- the decode -> encode pipeline ----------------------------------------------------------------------------


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
    video: VideoSource,
    video_index: int,
    config: ExtractionConfig,
    size: int,
    frames_per_clip: int,
    clips_per_chunk: int,
) -> Iterator[_Chunk]:
    """Decode one video into chunks of whole clips; a failure ends it with one error chunk."""
    try:
        reader = ClipFrameReader(video.path, size=size, resize=config.resize, num_threads=1)
        with reader:
            plan = reader.plan(config.clip_seconds, frames_per_clip)
            meta = {
                "fps": reader.fps,
                "duration": plan.duration,
                "num_frames": reader.num_frames,
                "source": str(video.path),
                "clip_centres": plan.clip_centres,
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


class _DecodeWorkers:
    """Threads that decode videos into a bounded queue of chunks (decord releases the GIL while decoding).

    Each thread takes the next video, puts its chunks in order, then takes another. The queue holds at most
    ``2 * workers`` chunks, which bounds memory whatever the video lengths.
    """

    _DONE = object()

    def __init__(self, videos: Sequence[VideoSource], decode: Any, workers: int) -> None:
        self._videos = list(enumerate(videos))
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

    def _claim_video(self) -> tuple[int, VideoSource] | None:
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
    """workers=0: decode in the calling thread, one video after another (no overlap; for debugging)."""

    def __init__(self, videos: Sequence[VideoSource], decode: Any) -> None:
        self._videos = videos
        self._decode = decode

    def __iter__(self) -> Iterator[_Chunk]:
        for index, video in enumerate(self._videos):
            yield from self._decode(video, index)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _Encoder:
    """Main-thread side: batch chunks across videos, run the backbone, average the K frames of each clip."""

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


def _non_finite_reason(clip_feats: np.ndarray) -> str | None:
    finite = np.isfinite(clip_feats).all(axis=1)
    if finite.all():
        return None
    bad = np.flatnonzero(~finite)
    return f"the backbone returned NaN/inf in {len(bad)} of {len(finite)} clips (first: clip {int(bad[0])})"


def extract_features(
    videos: Sequence[VideoSource],
    out: str | os.PathLike[str],
    config: ExtractionConfig | None = None,
    *,
    backbone: Backbone | None = None,
    progress: bool = True,
) -> ExtractionReport:
    """Extract clip features for ``videos`` into the HDF5 file ``out`` (see the module docstring).

    Args:
        videos: from :func:`find_videos` (ids unique).
        out: output ``.h5`` path; an existing output made with the same settings is extended, its videos
            skipped.
        config: settings (defaults: :class:`ExtractionConfig`).
        backbone: an already built :class:`~grounding.video.backbones.Backbone` to use instead of creating
            ``config.backbone`` (its name must match ``config.backbone``).
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
        backbone = create_backbone(config.backbone, device=config.device)
    elif backbone.name != config.backbone:
        raise ConfigError(f"backbone {backbone.name!r} was passed but config.backbone is {config.backbone!r}.")
    size = config.size or backbone.input_size
    frames_per_clip = config.frames_per_clip or backbone.frames_per_input
    if frames_per_clip % backbone.frames_per_input:
        raise ConfigError(
            f"--frames-per-clip {frames_per_clip}: backbone {backbone.name!r} encodes {backbone.frames_per_input} "
            f"frames at a time; pass a multiple of {backbone.frames_per_input} (or leave it out)."
        )
    settings = {
        "backbone": backbone.name,
        "dim": backbone.dim,
        "clip_seconds": float(config.clip_seconds),
        "frames_per_clip": int(frames_per_clip),
        "size": int(size),
        "resize": config.resize,
        "dtype": config.dtype,
    }
    started = time.perf_counter()
    report = ExtractionReport(output=out_path, dim=backbone.dim)
    parts = PartsFolder(out_path.with_name(out_path.name + ".parts"), settings)
    existing_ids = _read_existing_output(out_path, settings)
    parts.open()
    try:
        for stale in out_path.parent.glob(f"{out_path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        done_ids = existing_ids | parts.finished_ids()
        todo = [video for video in videos if video.video_id not in done_ids]
        report.skipped = [video.video_id for video in videos if video.video_id in done_ids]
        _run_pipeline(todo, backbone, config, size, frames_per_clip, parts, report, progress)
        if parts.finished_ids() or not out_path.exists():
            report.num_videos = _build_output(out_path, parts, settings)
        else:
            report.num_videos = len(existing_ids)
        parts.remove()
    finally:
        parts.close()
    report.seconds = time.perf_counter() - started
    return report


def _run_pipeline(
    todo: Sequence[VideoSource],
    backbone: Backbone,
    config: ExtractionConfig,
    size: int,
    frames_per_clip: int,
    parts: PartsFolder,
    report: ExtractionReport,
    progress: bool,
) -> None:
    """Decode and encode ``todo``, committing each finished video to ``parts`` and recording failures."""
    from tqdm import tqdm

    if not todo:
        return
    clips_per_chunk = max(1, config.batch_size // frames_per_clip)

    def decode(video: VideoSource, index: int) -> Iterator[_Chunk]:
        return _decode_chunks(video, index, config, size, frames_per_clip, clips_per_chunk)

    source: _DecodeWorkers | _InlineDecoder = (
        _DecodeWorkers(todo, decode, config.workers) if config.workers > 0 else _InlineDecoder(todo, decode)
    )
    encoder = _Encoder(backbone, frames_per_clip, config.batch_size)
    in_progress: dict[int, dict[str, Any]] = {}  # video index -> {"meta", "feats": [(n, D) arrays]}
    bar = tqdm(total=len(todo), unit="video", desc="extract", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)

    def fail(index: int, reason: str) -> None:
        in_progress.pop(index, None)
        video = todo[index]
        report.failures.append(VideoFailure(video.video_id, str(video.path), reason))
        bar.set_postfix(failed=len(report.failures), refresh=False)
        bar.update(1)

    def finish(index: int) -> None:
        state = in_progress.pop(index)
        clip_feats = np.concatenate(state["feats"])
        reason = _non_finite_reason(clip_feats)
        if reason:
            fail(index, reason)
            return
        meta = dict(state["meta"])
        clip_centres = meta.pop("clip_centres")
        parts.write(todo[index].video_id, clip_feats.astype(config.dtype), clip_centres, meta)
        report.extracted.append(todo[index].video_id)
        bar.update(1)

    def flush() -> None:
        for chunk, clip_feats in encoder.flush():
            state = in_progress.get(chunk.video_index)
            if state is None:  # the video failed after this chunk was queued
                continue
            state["feats"].append(clip_feats)
            report.frames += len(chunk.frames)
            if chunk.is_last:
                finish(chunk.video_index)

    try:
        for chunk in source:
            if chunk.error is not None:
                fail(chunk.video_index, chunk.error)
                continue
            if chunk.meta is not None:
                in_progress[chunk.video_index] = {"meta": chunk.meta, "feats": []}
            if encoder.would_overflow(chunk):
                flush()
            if encoder.add(chunk) or not source.ready():
                flush()
        flush()
    finally:
        source.close()
        bar.close()


# --- merging shard files --------------------------------------------------------------------------------------


@dataclass
class MergeReport:
    """What :func:`merge_feature_files` wrote: the output, its video count and feature width, and duplicates."""

    output: Path
    num_videos: int
    dim: int
    duplicates: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "num_videos": self.num_videos, "dim": self.dim,
                "identical_duplicates": len(self.duplicates)}


def merge_feature_files(
    inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, force: bool = False
) -> MergeReport:
    """Join HDF5 feature files (e.g. the shards of one extraction) into ``out``.

    Settings (backbone, dim, clip_seconds, frames_per_clip, size, resize, dtype) must agree wherever two files
    record them, and every dataset must have the same width D. A video in several files must have identical
    features there (it is then written once); different features are an error naming the files.

    Args:
        inputs: HDF5 files, one dataset ``[T, D]`` per video id at the root.
        out: the merged file (written through a temporary file and a rename).
        force: replace ``out`` if it exists and is not one of the inputs.

    Raises:
        InputError: a missing/unreadable input, mismatched settings or width, or conflicting duplicates.
    """
    input_paths = [Path(path) for path in inputs]
    out_path = Path(out)
    if not input_paths:
        raise InputError("features merge: no input files; pass the shard files to join.")
    for path in input_paths:
        if not path.is_file():
            raise InputError(f"{path}: no such feature file; check the path.")
    resolved_inputs = {path.resolve() for path in input_paths}
    if out_path.exists() and out_path.resolve() not in resolved_inputs and not force:
        raise InputError(f"{out_path}: exists; pass --force to replace it, or another --out.")
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(_open_hdf5(path)) for path in input_paths]
        reference_attrs: dict[str, Any] = {}
        reference_source: dict[str, Path] = {}
        dim, dim_source = None, None
        owner: dict[str, tuple[Path, Any]] = {}
        duplicates: list[str] = []
        for path, handle in zip(input_paths, handles):
            attrs = {key: _plain(value) for key, value in handle.attrs.items()}
            for key in SETTING_KEYS:
                if key not in attrs:
                    continue
                if key in reference_attrs and reference_attrs[key] != attrs[key]:
                    raise InputError(
                        f"{path}: {key}={attrs[key]!r}, but {reference_source[key]} has {key}="
                        f"{reference_attrs[key]!r}; merge only files extracted with the same settings."
                    )
                reference_attrs.setdefault(key, attrs[key])
                reference_source.setdefault(key, path)
            for video_id, dataset in _root_datasets(handle).items():
                if dataset.ndim != 2:
                    raise InputError(f"{path}: video {video_id!r} has shape {dataset.shape}, expected [T, D].")
                if dim is None:
                    dim, dim_source = int(dataset.shape[1]), f"{path}: video {video_id!r}"
                elif dataset.shape[1] != dim:
                    raise InputError(
                        f"{path}: video {video_id!r} has D={dataset.shape[1]}, but {dim_source} has D={dim}; "
                        "merge only files from one backbone."
                    )
                if video_id in owner:
                    first_path, first_dataset = owner[video_id]
                    if not np.array_equal(first_dataset[()], dataset[()]):
                        raise InputError(
                            f"video {video_id!r} is in {first_path} and {path} with different features; keep one "
                            "(re-extract or drop it from one file) before merging."
                        )
                    duplicates.append(video_id)
                    continue
                owner[video_id] = (path, dataset)
        file_attrs = dict(reference_attrs)
        if dim is not None:
            file_attrs["dim"] = dim
        file_attrs.update(format_version=FORMAT_VERSION, grounding_version=__version__)
        with _atomic_hdf5(out_path, file_attrs) as writer:
            for video_id in sorted(owner):
                writer.copy(owner[video_id][1], video_id)
    return MergeReport(output=out_path, num_videos=len(owner), dim=dim or 0, duplicates=sorted(duplicates))


def summarize_feature_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """File attributes, video count, feature width and clip counts of an HDF5 feature file (for ``features info``)."""
    file_path = Path(path)
    if not file_path.is_file():
        raise InputError(f"{file_path}: no such feature file; check the path.")
    with _open_hdf5(file_path) as handle:
        datasets = _root_datasets(handle)
        clip_counts = [int(dataset.shape[0]) for dataset in datasets.values() if dataset.ndim == 2]
        widths = sorted({int(dataset.shape[1]) for dataset in datasets.values() if dataset.ndim == 2})
        return {
            "path": str(file_path),
            "attrs": {key: _json_value(value) for key, value in handle.attrs.items()},
            "num_videos": len(datasets),
            "dims": widths,
            "total_clips": int(sum(clip_counts)),
            "min_clips": min(clip_counts) if clip_counts else 0,
            "max_clips": max(clip_counts) if clip_counts else 0,
        }


def _json_value(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
