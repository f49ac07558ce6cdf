"""Clip-feature HDF5 files: the crash-safe parts folder, the atomic writer, merging and summaries.

Layout (read by :class:`grounding.data.features.HDF5FeatureStore`)::

    features.h5
      attrs: backbone, dim, clip_seconds, frames_per_clip, size, resize, dtype, format_version, grounding_version
      <video_id>    dataset [T, D] float32 (or float16)
        attrs: backbone, clip_seconds, frames_per_clip, size, resize, fps, duration, num_frames,
               clip_centres [T] (seconds), source (the video's absolute path), timestamps ("container" or
               "frame-rate"; absent in files written before it was recorded)

The extraction attributes (backbone ... resize) are :meth:`ExtractionSettings.to_attrs` of the resolved settings
(:mod:`grounding.video.settings`); ``dim`` and ``dtype`` describe the storage. HDF5 is not journaled, so a file
is never written in place: :class:`PartsFolder` commits each finished video on its own, and a whole file is
written under a temporary name and renamed (:mod:`grounding.files`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from grounding.data.features import plain_attr
from grounding.errors import InputError
from grounding.files import (
    TEMPORARY_MARK,
    atomic_path,
    stale_temporaries,
    write_bytes_atomic,
)
from grounding.version import __version__
from grounding.video.settings import ATTRIBUTE_NAMES, ExtractionSettings

FORMAT_VERSION = 1
FEATURE_DTYPES: tuple[str, ...] = ("float32", "float16")
# File attributes that must agree between a resumed run and its earlier output, and between merged files.
SETTING_KEYS: tuple[str, ...] = (*ATTRIBUTE_NAMES.values(), "dim", "dtype")
# Per-video metadata a part carries besides the settings (``timestamps`` is absent in parts of older runs).
_VIDEO_META_KEYS: tuple[str, ...] = ("fps", "duration", "num_frames", "source", "timestamps")
_PART_SUFFIX = ".npz"
_SETTINGS_FILE = "settings.json"
_LOCK_FILE = ".lock"
# grounding.files.temporary_name of a part: ".<video_id>.npz.<pid>.tmp.npz"
_PART_TEMPORARY = re.compile(rf"^\..*\.\d+{re.escape(TEMPORARY_MARK + _PART_SUFFIX)}$")


def file_settings(settings: ExtractionSettings, dim: int, dtype: str) -> dict[str, Any]:
    """The attributes that define a feature file: resolved extraction settings plus width ``dim`` and ``dtype``."""
    return {**settings.to_attrs(), "dim": int(dim), "dtype": dtype}


def settings_conflicts(expected: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """``"key=found (this run: expected)"`` for every :data:`SETTING_KEYS` entry that differs (missing = different)."""
    conflicts = []
    for key in SETTING_KEYS:
        if key in expected and plain_attr(found.get(key)) != plain_attr(expected[key]):
            conflicts.append(f"{key}={plain_attr(found.get(key))!r} (this run: {plain_attr(expected[key])!r})")
    return conflicts


class PartsFolder:
    """``<out>.parts/``: one committed ``<video_id>.npz`` per finished video, plus the run's settings.

    Each part holds ``features`` ``[T, D]`` (storage dtype), ``clip_centres`` ``[T]`` (seconds) and ``meta``
    (a JSON string: fps, duration, num_frames, source, timestamps). Parts are written under a temporary name,
    fsynced and renamed (:func:`grounding.files.write_bytes_atomic`), so a part file is always complete; the
    temporary files of a killed run are removed on open.

    Args:
        folder: the parts folder.
        settings: :func:`file_settings` of the run (recorded in ``settings.json``, checked on resume).
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
        payload = json.dumps(self.settings, indent=2).encode("utf-8")
        if settings_path.exists():
            recorded = json.loads(settings_path.read_text(encoding="utf-8"))
            conflicts = settings_conflicts(self.settings, recorded)
            if conflicts and not self.finished_ids():  # an earlier run stopped before finishing any video
                conflicts = []
                write_bytes_atomic(settings_path, payload, durable=True)
            if conflicts:
                self.close()
                raise InputError(
                    f"{self.folder}: unfinished parts from a run with other settings: {'; '.join(conflicts)}; "
                    "rerun with those settings to finish it, or delete the folder to start over."
                )
        else:
            write_bytes_atomic(settings_path, payload, durable=True)
        stale = [*stale_temporaries(settings_path), *self.folder.glob("*.tmp")]  # *.tmp: runs before grounding.files
        stale += [path for path in self.folder.glob(f".*{_PART_SUFFIX}") if _PART_TEMPORARY.match(path.name)]
        for path in stale:
            path.unlink(missing_ok=True)

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
        return {
            path.name[: -len(_PART_SUFFIX)]
            for path in self.folder.glob(f"*{_PART_SUFFIX}")
            if not _PART_TEMPORARY.match(path.name)
        }

    def write(self, video_id: str, clip_feats: np.ndarray, clip_centres: np.ndarray, meta: dict[str, Any]) -> None:
        """Commit one video: features ``[T, D]``, clip centres ``[T]`` seconds, and JSON-able metadata."""
        buffer = io.BytesIO()
        np.savez(buffer, features=clip_feats, clip_centres=clip_centres, meta=np.array(json.dumps(meta)))
        write_bytes_atomic(self._part_path(video_id), buffer.getvalue(), durable=True)

    def read(self, video_id: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        with np.load(self._part_path(video_id), allow_pickle=False) as part:
            return part["features"], part["clip_centres"], json.loads(str(part["meta"]))

    def remove(self) -> None:
        """Delete the folder (after its parts are safely in the output file)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class _HDF5Writer:
    """An open HDF5 file being written (see :func:`_atomic_hdf5`)."""

    def __init__(self, handle: Any) -> None:
        self.file = handle

    def add(self, video_id: str, clip_feats: np.ndarray, attrs: dict[str, Any]) -> None:
        dataset = self.file.create_dataset(video_id, data=clip_feats)
        dataset.attrs.update(attrs)

    def copy(self, source_dataset: Any, video_id: str) -> None:
        source_dataset.file.copy(source_dataset, self.file, name=video_id)


@contextlib.contextmanager
def _atomic_hdf5(target: Path, file_attrs: dict[str, Any]) -> Iterator[_HDF5Writer]:
    """Write the HDF5 file ``target`` under a temporary name; renamed over it (fsynced) only on success."""
    import h5py

    with atomic_path(target, durable=True) as temporary:
        handle = h5py.File(temporary, "w")
        try:
            handle.attrs.update(file_attrs)
            yield _HDF5Writer(handle)
        finally:
            handle.close()


def remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files a killed run left beside the output ``out``."""
    for stale in [*stale_temporaries(out), *out.parent.glob(f"{out.name}.*.tmp")]:  # and those of older versions
        stale.unlink(missing_ok=True)


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


def read_existing_output(out: Path, settings: dict[str, Any]) -> set[str]:
    """Ids already in an earlier output at ``out`` made with the same :func:`file_settings` (empty if none)."""
    if not out.exists():
        return set()
    with _open_hdf5(out) as handle:
        attrs = {key: plain_attr(value) for key, value in handle.attrs.items()}
        if "format_version" not in attrs:
            raise InputError(
                f"{out}: exists but was not written by `grounding extract` (no format_version attribute); pass "
                "another --out or delete it."
            )
        conflicts = settings_conflicts(settings, attrs)
        if conflicts:
            raise InputError(
                f"{out}: exists with other settings: {'; '.join(conflicts)}; pass another --out, or rerun with "
                "its settings to add videos to it."
            )
        return set(_root_datasets(handle))


def _video_attrs(settings: ExtractionSettings, clip_centres: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = settings.to_attrs()
    attrs.update(fps=float(meta["fps"]), duration=float(meta["duration"]), num_frames=int(meta["num_frames"]),
                 clip_centres=np.asarray(clip_centres, dtype=np.float64), source=str(meta["source"]))
    if "timestamps" in meta:
        attrs["timestamps"] = str(meta["timestamps"])
    return attrs


def part_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The per-video metadata a part records (fps, duration, num_frames, source, timestamps), as plain JSON."""
    return {key: plain_attr(meta[key]) for key in _VIDEO_META_KEYS if key in meta}


def build_output(out: Path, parts: PartsFolder, settings: ExtractionSettings) -> int:
    """Rewrite ``out`` as its earlier content plus every part; returns the number of videos in it."""
    part_ids = sorted(parts.finished_ids())
    file_attrs = {**parts.settings, "format_version": FORMAT_VERSION, "grounding_version": __version__}
    with contextlib.ExitStack() as stack:
        existing = stack.enter_context(_open_hdf5(out)) if out.exists() else None
        writer = stack.enter_context(_atomic_hdf5(out, file_attrs))
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
            attrs = {key: plain_attr(value) for key, value in handle.attrs.items()}
            ExtractionSettings.from_attrs(attrs, str(path))  # values no extraction could have written are refused
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
    value = plain_attr(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
