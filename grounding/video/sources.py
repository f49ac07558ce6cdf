"""Which videos to extract: video files, folders and list files -> :class:`VideoSource` ids, and shards.

A video's id is its file name without the last extension (``AO8RW.mp4`` -> ``AO8RW``), as Charades-STA names
videos; an id that could escape or break an output file, or one id for two files, is refused rather than
rewritten (a rewritten id would silently stop matching the annotations). A folder is a video folder: one
that holds no video file (extensions :data:`~grounding.video.decode.VIDEO_EXTENSIONS`, any letter case) is
an error naming it and the extensions looked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from grounding.errors import InputError
from grounding.video.decode import VIDEO_EXTENSIONS


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


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True when the name ends in one of :data:`~grounding.video.decode.VIDEO_EXTENSIONS` (any letter case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _scan_folder(folder: Path) -> list[Path]:
    """Video files under ``folder``, recursively; hidden files and folders (``.*``, e.g. macOS ``._x.mp4``) skipped.

    Raises:
        InputError: the folder holds no video file (naming it and the extensions looked for).
    """
    found = []
    visited: set[str] = set()  # real paths, so a symlink loop is walked once
    for root, dirs, files in os.walk(folder, followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in visited:
            dirs[:] = []
            continue
        visited.add(real_root)
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        found.extend(Path(root) / name for name in sorted(files) if not name.startswith(".") and is_video_file(name))
    if not found:
        raise InputError(
            f"{folder}: no video files in this folder or below (looked for {' '.join(VIDEO_EXTENSIONS)}, any "
            "letter case; hidden files skipped); pass the folder that holds the videos."
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
    if not entries:
        raise InputError(f"{list_path}: lists no video paths (one path per line expected); pass a non-empty list.")
    return entries


def find_videos(inputs: Sequence[str | os.PathLike[str]]) -> list[VideoSource]:
    """Expand video files, folders (recursive) and text lists of paths into videos sorted by id.

    A path with a video extension (:data:`~grounding.video.decode.VIDEO_EXTENSIONS`) is a video; a folder is
    searched recursively for such files; any other file is read as a UTF-8 list with one path per line (blank
    lines and ``#`` comments skipped; relative paths are relative to the list's folder; a listed folder is
    searched too). Listed paths need not exist: a missing one becomes a per-video failure at extraction time.

    Raises:
        InputError: a missing command-line path, a folder without videos, an empty list, an unsafe id, or one
            id for two different files.
    """
    candidates: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            candidates.extend((found, str(found)) for found in _scan_folder(path))
        elif is_video_file(path):
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
