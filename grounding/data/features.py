"""Clip-feature stores: read one video's ``[T, D]`` clip features from an HDF5 file or a folder of arrays.

Two on-disk layouts are read (docs/features.md describes them and how to convert common releases):

- :class:`HDF5FeatureStore`: one HDF5 file, one dataset of shape ``[T, D]`` per video id at the root
  (or a group per video id holding exactly one such dataset, as ActivityNet's ``f[vid]["c3d_features"]``).
- :class:`FolderFeatureStore`: a folder of ``<video_id>.npy`` or ``<video_id>.pt`` files, each ``[T, D]``.

Both read lazily (only the requested video) and validate what they return: rank 2, T >= 1, one feature width D
for the whole store, every value finite. Values come back as float32 numpy arrays. Video ids are the dataset or
file names with a trailing video-file extension dropped (``s13-d21.avi`` -> ``s13-d21``), as the annotation
readers in :mod:`grounding.data.annotations` name videos.

Example::

    with open_feature_store("features/charades_i3d.h5", expected_dim=1024) as store:
        clip_feats = store.get("3MSZA")        # float32 [T, 1024]
"""

from __future__ import annotations

import difflib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from grounding.data.annotation_fields import strip_video_extension
from grounding.errors import GroundingError, InputError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
FOLDER_SUFFIXES = (".npy", ".pt")
_MAX_RANGES_SHOWN = 8


def compress_ranges(indices: Iterable[int]) -> str:
    """Write sorted integer indices as compact ranges: ``[12, 13, 14, 40]`` -> ``"12-14, 40"``.

    More than a few ranges are cut short with ``", ..."`` so a message stays one readable line.
    """
    sorted_indices = sorted(set(int(index) for index in indices))
    ranges: list[tuple[int, int]] = []
    for index in sorted_indices:
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
    parts = [str(first) if first == last else f"{first}-{last}" for first, last in ranges]
    if len(parts) > _MAX_RANGES_SHOWN:
        parts = parts[:_MAX_RANGES_SHOWN] + ["..."]
    return ", ".join(parts)


def validate_clip_feats(
    raw: Any,
    where: str,
    expected_dim: int | None = None,
    dim_source: str = "expected_dim",
) -> np.ndarray:
    """Check one video's clip features and return them as a float32 ``[T, D]`` array.

    Args:
        raw: array-like read from disk, expected shape ``[T, D]`` with a real (not bool/complex) numeric dtype.
        where: how to name the input in messages, e.g. ``"features.h5: video '3MSZA'"``.
        expected_dim: the feature width D the caller needs, or None to accept any width.
        dim_source: what ``expected_dim`` came from, for the message (``"expected_dim"`` or another video's id).

    Raises:
        InputError: wrong rank, non-numeric dtype, T == 0, D != expected_dim, or NaN/inf values (naming the
            clip indices as ranges).
    """
    array = np.asarray(raw)
    if array.dtype.kind not in "fiu":
        raise InputError(
            f"{where} has dtype {array.dtype}, expected real numbers (float or int); re-extract it as float32."
        )
    if array.ndim != 2:
        raise InputError(
            f"{where} has shape {tuple(array.shape)} (rank {array.ndim}), expected rank 2 [T clips, D features]; "
            "store one 2-D array per video (squeeze or reshape it when converting)."
        )
    num_clips, width = array.shape
    if num_clips == 0:
        raise InputError(f"{where} has no clips (shape {tuple(array.shape)}); re-extract it or drop the video.")
    if expected_dim is not None and width != expected_dim:
        raise InputError(
            f"{where} has feature width D={width}, but {dim_source} gives D={expected_dim}; "
            "use features from one backbone for the whole store (or change expected_dim)."
        )
    clip_feats = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(clip_feats)
    if not finite.all():
        bad_clips = np.flatnonzero(~finite.all(axis=1))
        has_nan = bool(np.isnan(clip_feats[bad_clips]).any())
        has_inf = bool(np.isinf(clip_feats[bad_clips]).any())
        kind = "NaN and inf" if has_nan and has_inf else ("NaN" if has_nan else "inf")
        noun = "clip" if len(bad_clips) == 1 else "clips"
        raise InputError(
            f"{where} has {kind} in {noun} {compress_ranges(bad_clips)} (of T={num_clips}); re-extract it."
        )
    return clip_feats


def plain_attr(value: Any) -> Any:
    """HDF5 attribute values as plain Python: bytes -> str, numpy scalars -> int/float/bool; arrays stay arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return [plain_attr(item) for item in value.tolist()]
    return value


class FeatureStore(ABC):
    """Read-only mapping from video id to that video's clip features ``[T, D]`` (float32).

    Subclasses list their ids once when opened and read one video per :meth:`get`. The feature width D is
    ``expected_dim`` when given, otherwise the width of the first video read (or of the first id, for :attr:`dim`);
    every later video must match it.

    Attributes:
        path: the file or folder the store reads, as given.
    """

    path: str

    def __init__(self, path: str | os.PathLike[str], expected_dim: int | None = None) -> None:
        if expected_dim is not None and (
            isinstance(expected_dim, bool) or not isinstance(expected_dim, int) or expected_dim < 1
        ):
            raise InputError(f"{os.fspath(path)}: expected_dim must be a positive int or None, got {expected_dim!r}.")
        self.path = os.fspath(path)
        self.expected_dim = expected_dim
        self._dim: int | None = expected_dim
        self._dim_source = "expected_dim"
        self._ids: list[str] = []
        self._id_set: frozenset[str] = frozenset()

    # --- what subclasses provide -------------------------------------------------------------------------------
    @abstractmethod
    def _read(self, video_id: str) -> Any:
        """The raw array-like stored for a known ``video_id`` (validated by :meth:`get`)."""

    @abstractmethod
    def _shape(self, video_id: str) -> tuple[int, ...]:
        """The stored shape for a known ``video_id``, reading as little as the format allows."""

    def _video_attrs(self, video_id: str) -> dict[str, Any]:
        """Metadata stored with ``video_id``; none by default."""
        return {}

    # --- public interface --------------------------------------------------------------------------------------
    def video_ids(self) -> list[str]:
        """Every video id in the store, sorted."""
        return list(self._ids)

    def __contains__(self, video_id: object) -> bool:
        return isinstance(video_id, str) and video_id in self._id_set

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, videos={len(self)})"

    @property
    def dim(self) -> int:
        """Feature width D shared by every video: ``expected_dim`` if given, else the first video's width.

        Reads only the first id's shape (HDF5 and .npy headers; a .pt file is loaded whole). Each :meth:`get`
        checks its own video against this width.
        """
        if self._dim is None:
            first_id = self._ids[0]
            shape = self._shape(first_id)
            if len(shape) != 2:
                raise InputError(
                    f"{self._where(first_id)} has shape {tuple(shape)} (rank {len(shape)}), expected rank 2 "
                    "[T clips, D features]; store one 2-D array per video."
                )
            self._dim, self._dim_source = int(shape[1]), f"video '{first_id}'"
        return self._dim

    def get(self, video_id: str) -> np.ndarray:
        """Read one video's clip features.

        Returns:
            float32 array ``[T, D]``, T >= 1, all finite.

        Raises:
            InputError: unknown id (with close ids), or features that fail :func:`validate_clip_feats`.
        """
        self._require_known(video_id)
        clip_feats = validate_clip_feats(
            self._read(video_id), self._where(video_id), expected_dim=self._dim, dim_source=self._dim_source
        )
        if self._dim is None:
            self._dim, self._dim_source = clip_feats.shape[1], f"video '{video_id}'"
        return clip_feats

    def attrs(self, video_id: str) -> dict[str, Any]:
        """Metadata for one video (e.g. ``backbone``, ``clip_seconds``, ``fps``, ``duration``), if the store has any.

        HDF5: the file's attributes, overridden by the group's and then the dataset's. Folders: ``{}``.
        """
        self._require_known(video_id)
        return self._video_attrs(video_id)

    def close(self) -> None:
        """Release any open file; the store cannot be read afterwards."""

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- helpers -----------------------------------------------------------------------------------------------
    def _index_keys(self, keys: Iterable[str], kind: str) -> dict[str, str]:
        """Map video id -> stored key (dataset name or file path) and set the store's ids.

        Ids drop a trailing video-file extension, as the annotation readers do: 2D-TAN's TACoS file names its
        datasets ``s13-d21.avi`` while the readers say ``s13-d21``. Two keys with one id are an error.
        """
        key_by_id: dict[str, str] = {}
        clashes: list[str] = []
        for key in keys:
            video_id = strip_video_extension(os.path.splitext(os.path.basename(key))[0] if kind == "file" else key)
            if video_id in key_by_id:
                clashes.append(f"'{video_id}' ({os.path.basename(key_by_id[video_id])}, {os.path.basename(key)})")
            key_by_id[video_id] = key
        if clashes:
            raise InputError(
                f"{self.path}: {len(clashes)} video ids have more than one {kind}, e.g. {clashes[0]}; "
                f"keep one {kind} per video."
            )
        self._ids = sorted(key_by_id)
        self._id_set = frozenset(self._ids)
        if not self._ids:
            raise InputError(f"{self.path}: the feature store holds no videos; {self._layout_hint()}")
        return key_by_id

    def _layout_hint(self) -> str:
        return "see docs/features.md for the layouts we read."

    def _where(self, video_id: str) -> str:
        return f"{self.path}: video '{video_id}'"

    def _require_known(self, video_id: str) -> None:
        if not isinstance(video_id, str):
            raise InputError(f"{self.path}: video ids are strings, got {type(video_id).__name__} {video_id!r}.")
        if video_id in self._id_set:
            return
        close = difflib.get_close_matches(video_id, self._ids, n=3, cutoff=0.6)
        if close:
            hint = "close ids: " + ", ".join(repr(match) for match in close)
        else:
            hint = "no close id; the first ids are " + ", ".join(repr(known) for known in self._ids[:3])
        raise InputError(
            f"{self.path}: no video '{video_id}' among its {len(self._ids)} videos ({hint}); check that the "
            "annotation's video ids match the feature keys (e.g. a '.avi' suffix or 'v_' prefix)."
        )


class HDF5FeatureStore(FeatureStore):
    """Clip features in one HDF5 file: one dataset ``[T, D]`` per video id at the root.

    A root entry may instead be a group holding the video's dataset (ActivityNet C3D releases store
    ``f[vid]["c3d_features"]``): the group's only dataset is read, or the one named ``member`` when the group
    holds several. Only one level of nesting is followed.

    The file is opened read-only once and its handle kept; :meth:`get` reads one dataset. After a fork
    (DataLoader workers) the file is reopened in the child, and a pickled store reopens it on first use.

    Args:
        path: the ``.h5`` / ``.hdf5`` file.
        expected_dim: feature width D every video must have, or None to take it from the first video.
        member: dataset name inside per-video groups, for groups that hold several datasets.
    """

    def __init__(
        self, path: str | os.PathLike[str], expected_dim: int | None = None, member: str | None = None
    ) -> None:
        super().__init__(path, expected_dim)
        self.member = member
        self._closed = False
        self._file: Any = None
        self._file_pid: int | None = None
        handle = self._handle()
        try:
            self._keys = self._index_keys(handle.keys(), kind="dataset")
        except InputError:
            self.close()
            raise

    def _layout_hint(self) -> str:
        return "expected one dataset [T, D] per video id at the root (see docs/features.md)."

    def _handle(self) -> Any:
        if self._closed:
            raise GroundingError(f"{self.path}: the feature store was closed; open it again with open_feature_store.")
        if self._file is None or self._file_pid != os.getpid():
            import h5py

            if not os.path.isfile(self.path):
                raise InputError(f"{self.path}: no such HDF5 file; check the path.")
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as error:
                raise InputError(
                    f"{self.path}: cannot be read as HDF5 ({error}); pass an .h5 file or a folder of .npy/.pt files."
                ) from error
            self._file_pid = os.getpid()
        return self._file

    def _dataset(self, video_id: str) -> Any:
        import h5py

        entry = self._handle()[self._keys[video_id]]
        if isinstance(entry, h5py.Dataset):
            return entry
        if not isinstance(entry, h5py.Group):
            raise InputError(f"{self._where(video_id)} is a {type(entry).__name__}, expected a dataset [T, D].")
        names = [name for name, item in entry.items() if isinstance(item, h5py.Dataset)]
        if self.member is not None:
            if self.member in names:
                return entry[self.member]
            raise InputError(
                f"{self._where(video_id)} is a group without a dataset named member={self.member!r} "
                f"(it holds {names}); pass one of those as member."
            )
        if len(names) == 1:
            return entry[names[0]]
        raise InputError(
            f"{self._where(video_id)} is a group holding {len(names)} datasets {names}, expected exactly one; "
            "pass HDF5FeatureStore(..., member=NAME) to pick one."
        )

    def _read(self, video_id: str) -> np.ndarray:
        return self._dataset(video_id)[()]

    def _shape(self, video_id: str) -> tuple[int, ...]:
        return tuple(self._dataset(video_id).shape)

    def _video_attrs(self, video_id: str) -> dict[str, Any]:
        handle = self._handle()
        dataset = self._dataset(video_id)
        merged: dict[str, Any] = {}
        sources = [handle.attrs]
        if dataset.parent.name != "/":
            sources.append(dataset.parent.attrs)
        sources.append(dataset.attrs)
        for source in sources:
            merged.update({name: plain_attr(value) for name, value in source.items()})
        return merged

    def close(self) -> None:
        if self._file is not None and self._file_pid == os.getpid():
            self._file.close()
        self._file = None
        self._closed = True

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_file_pid"] = None
        return state


class FolderFeatureStore(FeatureStore):
    """Clip features in a folder: one ``<video_id>.npy`` or ``<video_id>.pt`` file per video, each ``[T, D]``.

    ``.npy`` files are read with ``allow_pickle=False``; ``.pt`` files with ``torch.load(weights_only=True)``
    and must hold a single tensor. Other files (and hidden ``.*`` files) in the folder are ignored; a video id with
    two files (``vid.npy`` and ``vid.pt``, or ``vid.npy`` and ``vid.avi.npy``) is an error. Nothing is unpickled.

    Args:
        path: the folder.
        expected_dim: feature width D every video must have, or None to take it from the first video.
    """

    def __init__(self, path: str | os.PathLike[str], expected_dim: int | None = None) -> None:
        super().__init__(path, expected_dim)
        if not os.path.isdir(self.path):
            raise InputError(f"{self.path}: no such folder; check the path.")
        feature_files = sorted(
            entry.path
            for entry in os.scandir(self.path)
            if os.path.splitext(entry.name)[1] in FOLDER_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
        )
        self._files = self._index_keys(feature_files, kind="file")

    def _layout_hint(self) -> str:
        return "expected <video_id>.npy or <video_id>.pt files, each [T, D] (see docs/features.md)."

    def _require_known(self, video_id: str) -> None:
        if isinstance(video_id, str) and _escapes_folder(video_id):
            raise InputError(
                f"{self.path}: video id {video_id!r} is not a plain file name (it has a path separator, '..', or "
                "is absolute); video ids must name a file inside the folder."
            )
        super()._require_known(video_id)

    def _read(self, video_id: str) -> Any:
        file_path = self._files[video_id]
        if file_path.endswith(".npy"):
            return self._load_npy(video_id, file_path, mmap_mode=None)
        return self._load_pt(video_id, file_path)

    def _shape(self, video_id: str) -> tuple[int, ...]:
        file_path = self._files[video_id]
        if file_path.endswith(".npy"):
            return tuple(self._load_npy(video_id, file_path, mmap_mode="r").shape)
        return tuple(self._load_pt(video_id, file_path).shape)

    def _load_npy(self, video_id: str, file_path: str, mmap_mode: str | None) -> np.ndarray:
        try:
            return np.load(file_path, mmap_mode=mmap_mode, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InputError(
                f"{self._where(video_id)}: {file_path} is not a plain numeric .npy array ({error}); "
                "save it with np.save(path, float32_array)."
            ) from error

    def _load_pt(self, video_id: str, file_path: str) -> np.ndarray:
        import torch

        try:
            loaded = torch.load(file_path, weights_only=True, map_location="cpu")
        except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for unreadable files
            raise InputError(
                f"{self._where(video_id)}: {file_path} cannot be loaded safely ({type(error).__name__}: {error}); "
                "save only the [T, D] tensor with torch.save(tensor, path)."
            ) from error
        if not isinstance(loaded, torch.Tensor):
            raise InputError(
                f"{self._where(video_id)}: {file_path} holds a {type(loaded).__name__}, expected one tensor [T, D]; "
                "save only the tensor with torch.save(tensor, path)."
            )
        if loaded.is_complex() or loaded.dtype == torch.bool:
            raise InputError(
                f"{self._where(video_id)} has dtype {loaded.dtype}, expected real numbers; re-extract it as float32."
            )
        # float32 first: numpy has no bfloat16, and float64 would round to the same float32 values anyway.
        return loaded.detach().to(torch.float32).numpy()


def _escapes_folder(video_id: str) -> bool:
    """True when ``video_id`` is not a plain file name inside a folder (separators, '.', '..', absolute, NUL)."""
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        video_id in ("", ".", "..")
        or any(separator in video_id for separator in separators)
        or "\x00" in video_id
        or os.path.isabs(video_id)
    )


def open_feature_store(path: str | os.PathLike[str], expected_dim: int | None = None) -> FeatureStore:
    """Open clip features from ``path``: a folder -> :class:`FolderFeatureStore`, a file ->
    :class:`HDF5FeatureStore`.

    Args:
        path: an HDF5 file (``.h5``/``.hdf5``/``.hdf``, or any file with the HDF5 signature) or a folder of
            ``<video_id>.npy`` / ``<video_id>.pt`` files.
        expected_dim: feature width D the caller needs (e.g. the backbone's width), or None.

    Raises:
        InputError: the path does not exist, or is a file that is not HDF5.
    """
    path_str = os.fspath(path)
    if os.path.isdir(path_str):
        return FolderFeatureStore(path_str, expected_dim=expected_dim)
    if not os.path.exists(path_str):
        raise InputError(f"{path_str}: no such feature file or folder; check the path.")
    suffix = Path(path_str).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return HDF5FeatureStore(path_str, expected_dim=expected_dim)
    import h5py

    if h5py.is_hdf5(path_str):
        return HDF5FeatureStore(path_str, expected_dim=expected_dim)
    hint = " (a single array file holds no video ids)" if suffix in FOLDER_SUFFIXES else ""
    raise InputError(
        f"{path_str}: not an HDF5 file{hint}; pass an .h5 file with one dataset per video, or a folder of "
        "<video_id>.npy / <video_id>.pt files (see docs/features.md)."
    )
