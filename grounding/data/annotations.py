"""Readers for the temporal-grounding annotation formats in common use, all producing :class:`QueryRecord`.

Supported formats (names as accepted by ``format=`` and ``--format``):

``charades-sta``
    Text, one query per line: ``VIDEO START END##sentence`` (seconds). Durations are not in the file: they
    come from the Charades ``Charades_v1_*.csv`` metadata (``id``, ``length``) passed as ``durations``.
    qid = the 0-based line index in the file (blank and dropped lines keep their index).
``2dtan``
    2D-TAN json ``{video: {"duration": s, "timestamps": [[s, e], ...], "sentences": [...]}}`` (ActivityNet
    Captions). The TACoS variant has ``fps`` and ``num_frames`` instead of ``duration`` and its timestamps are
    in frames; they are converted to seconds (divided by ``fps``; duration = ``num_frames / fps``).
``mmn``
    MMN json: the same layout as ``2dtan`` and the same reader (MMN keeps raw end times past the duration;
    they are clipped). It cannot be told apart from ``2dtan`` by content, so :func:`detect_format` says
    ``2dtan``; ask for ``format="mmn"`` to have the set labelled ``mmn``.
``charades-cd``
    Charades-CD json ``{video: {"timestamps", "sentences", "video_duration", ...}}`` (seconds).
``moment-detr``
    Moment-DETR / QVHighlights jsonl, one object per line with ``qid``, ``query``, ``vid``, ``duration`` and
    ``relevant_windows`` (one or more ``[start, end]`` windows in seconds). Other keys are ignored.

Conventions shared by every reader:

* Every public value is in seconds.
* json formats number queries with a running 0-based index in file order (videos in json order, then their
  sentences in order); dropped queries keep their index, so qids are stable.
* A window ending past the video is clipped to the duration and a start below 0 is clipped to 0; each clip
  is reported in :attr:`ReadReport.clipped` (float noise under :data:`CLIP_REPORT_TOLERANCE_S` is clipped
  without a line). A window with ``start >= end`` (after clipping too) and a query with an empty sentence
  are dropped and reported in :attr:`ReadReport.dropped`. Nothing else changes.
* Video ids drop a trailing video-file extension (``.avi``, ``.mp4``, ``.mkv``, ``.webm``): TACoS names its
  videos ``s13-d21.avi`` while its feature files say ``s13-d21``.
* Malformed input raises :class:`~grounding.errors.InputError` naming ``file:line`` (or the video / qid).

This module detects the format and dispatches; the readers live one module per format family
(:mod:`~grounding.data.charades_sta`, :mod:`~grounding.data.json_annotations`, :mod:`~grounding.data.moment_detr`)
and share the field checks of :mod:`~grounding.data.annotation_fields`. Every name is importable from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from grounding.data.annotation_fields import (
    ANNOTATION_FORMATS,
    CLIP_REPORT_TOLERANCE_S,
    VIDEO_FILE_EXTENSIONS,
    PathLike,
    content_lines,
    parse_json,
    read_annotation_text,
    strip_video_extension,
)
from grounding.data.charades_sta import CharadesSTAReader, read_durations
from grounding.data.json_annotations import CharadesCDJsonReader, TwoDTANJsonReader
from grounding.data.moment_detr import MomentDETRJsonlReader
from grounding.data.records import AnnotationSet
from grounding.errors import InputError

__all__ = [
    "ANNOTATION_FORMATS",
    "CLIP_REPORT_TOLERANCE_S",
    "VIDEO_FILE_EXTENSIONS",
    "CharadesCDJsonReader",
    "CharadesSTAReader",
    "MomentDETRJsonlReader",
    "TwoDTANJsonReader",
    "detect_format",
    "read_annotations",
    "read_durations",
    "strip_video_extension",
]


def _detect(path: PathLike, text: str) -> tuple[str, Any]:
    """(format, parsed JSON payload or None) of a file's text; see :func:`detect_format`."""
    first_line = next((line for _, line in content_lines(text)), "")
    if Path(path).suffix.lower() == ".jsonl":
        return "moment-detr", None
    if first_line.startswith("{"):
        try:
            first_object = json.loads(first_line)
        except json.JSONDecodeError:
            first_object = None
        if isinstance(first_object, dict) and "relevant_windows" in first_object:
            return "moment-detr", None
    if first_line.startswith(("{", "[")):
        payload = parse_json(path, text)
        if isinstance(payload, dict) and payload:
            first_entry = next(iter(payload.values()))
            if isinstance(first_entry, dict):
                if "video_duration" in first_entry:
                    return "charades-cd", payload
                if "timestamps" in first_entry:
                    return "2dtan", payload
            shown = sorted(first_entry) if isinstance(first_entry, dict) else type(first_entry).__name__
            raise InputError(
                f"{path}: JSON of unknown layout: the first video's entry has {shown}; expected 'timestamps' "
                "(2dtan/mmn) or 'video_duration' (charades-cd). Pass --format if you know the format."
            )
        emptiness = " with no entries" if not payload else ""
        raise InputError(
            f"{path}: JSON of unknown layout (a {type(payload).__name__}{emptiness}); "
            f"expected one of {ANNOTATION_FORMATS}. Pass --format if you know the format."
        )
    if "##" in first_line:
        return "charades-sta", None
    shown = first_line if len(first_line) <= 80 else first_line[:77] + "..."
    raise InputError(
        f"{path}: cannot tell the annotation format from its first line {shown!r}; expected "
        f"'VIDEO START END##sentence' or JSON. Supported: {', '.join(ANNOTATION_FORMATS)}; pass --format."
    )


def detect_format(path: PathLike) -> str:
    """The annotation format of ``path``, one of :data:`ANNOTATION_FORMATS`, judged from its content.

    Rules: a ``.jsonl`` file, or one whose first non-blank line is a JSON object with ``relevant_windows``,
    is ``moment-detr``; a JSON object whose first entry has ``video_duration`` is ``charades-cd`` and one with
    ``timestamps`` is ``2dtan`` (MMN files look the same and read the same); a text line with ``##`` is
    ``charades-sta``. Anything else, an empty file or broken JSON raises InputError.
    """
    return _detect(path, read_annotation_text(path))[0]


def read_annotations(
    path: PathLike,
    format: str | None = None,
    durations: Sequence[PathLike] | None = None,
) -> AnnotationSet:
    """Read one annotation file into query records (seconds), with a report of what was clipped or dropped.

    Args:
        path: the annotation file.
        format: one of :data:`ANNOTATION_FORMATS`; None detects it (:func:`detect_format`).
        durations: Charades ``Charades_v1_*.csv`` files giving video lengths; required for ``charades-sta``
            and refused for the other formats, whose files carry their own durations.

    Returns:
        AnnotationSet whose ``report`` lists every clipped window and every dropped query or window.
    """
    if format is not None and format not in ANNOTATION_FORMATS:
        raise InputError(f"unknown annotation format {format!r}; choose one of {', '.join(ANNOTATION_FORMATS)}.")
    text = read_annotation_text(path)
    payload: Any = None
    if format is None:
        format, payload = _detect(path, text)
    if durations and format != "charades-sta":
        raise InputError(
            f"{path}: --durations is only used for charades-sta files; this file is {format} and carries "
            "its own durations. Drop --durations."
        )
    if format == "charades-sta":
        if not durations:
            raise InputError(
                f"{path}: Charades-STA lines carry no video durations; pass this split's Charades_v1_*.csv "
                "with --durations (durations=[...] in Python), e.g. --durations Charades_v1_test.csv."
            )
        reader = CharadesSTAReader(read_durations(durations), [Path(csv_path).name for csv_path in durations])
        return reader.read(path, text)
    if format == "moment-detr":
        return MomentDETRJsonlReader().read(path, text)
    if payload is None:
        payload = parse_json(path, text)
    if format == "charades-cd":
        return CharadesCDJsonReader().read(path, payload)
    return TwoDTANJsonReader(format).read(path, payload)
