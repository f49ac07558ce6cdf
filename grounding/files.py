"""Writing files so that a crash never leaves half of one: every output of the package goes through here.

A file is written under a temporary name in the same folder (``.<name>.<pid>.tmp<suffix>``: hidden, so folder
scans skip it, and ending in the target's own suffix, so writers that pick a format from the name still work),
then renamed over the target in one step (``os.replace``, atomic on POSIX and Windows). A reader sees the old
file or the new one, never a mix. ``durable=True`` also fsyncs the file and its folder, so the rename survives a
power cut, not only a killed process (extraction parts and feature files use it).

    with atomic_path("out/plot.png") as temporary:
        figure.savefig(temporary, format="png")
    write_json_atomic("scores.json", {"R1@0.5": 42.0})
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

TEMPORARY_MARK = ".tmp"


def temporary_name(target: str | os.PathLike[str]) -> Path:
    """The temporary path :func:`atomic_path` writes before renaming it to ``target``."""
    path = Path(target)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_MARK}{path.suffix}")


def stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Temporary files left beside ``target`` by writers that were killed (any process id)."""
    path = Path(target)
    return sorted(path.parent.glob(f".{path.name}.*{TEMPORARY_MARK}{path.suffix}"))


def fsync_directory(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on any error it is removed.

    The parent folder is created when missing. With ``durable``, the written file and the folder are fsynced
    around the rename.
    """
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        yield temporary
        if durable:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes, *, durable: bool = False) -> None:
    """Write ``payload`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, durable=durable) as temporary:
        temporary.write_bytes(payload)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, durable: bool = False) -> None:
    """Write UTF-8 ``text`` (newlines as given) to ``path`` through :func:`atomic_path`."""
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def write_json_atomic(path: str | os.PathLike[str], payload: Any, *, indent: int | None = 2) -> None:
    """Write ``payload`` as JSON (plus a final newline) to ``path`` through :func:`atomic_path`."""
    write_text_atomic(path, json.dumps(payload, indent=indent) + "\n")
