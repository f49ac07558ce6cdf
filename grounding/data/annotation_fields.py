"""Field checks shared by every annotation reader: reading the file, numbers, windows, sentences, video ids.

The conventions they implement (seconds everywhere, clipping with a report line, dropping empty sentences and
empty windows, video ids without a video-file extension) are stated in :mod:`grounding.data.annotations`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

from grounding.data.records import ReadReport
from grounding.errors import InputError

ANNOTATION_FORMATS: tuple[str, ...] = ("charades-sta", "2dtan", "mmn", "charades-cd", "moment-detr")

VIDEO_FILE_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mkv", ".webm")

# Clips smaller than this (seconds) are float noise, e.g. an end of 70.29 in a video whose json duration is
# 70.28999999999999 (ActivityNet): they are still clipped, but not reported.
CLIP_REPORT_TOLERANCE_S = 1e-6

PathLike = str | os.PathLike


def strip_video_extension(video_key: str) -> str:
    """``'s13-d21.avi'`` -> ``'s13-d21'``; ids without a video-file extension are returned unchanged."""
    lowered = video_key.lower()
    for extension in VIDEO_FILE_EXTENSIONS:
        if lowered.endswith(extension) and len(video_key) > len(extension):
            return video_key[: -len(extension)]
    return video_key


def seconds_text(value: float) -> str:
    """Short, readable seconds for report lines: 30.96 -> '30.96', 4.795918 -> '4.79592'."""
    return f"{value:g}"


def read_annotation_text(path: PathLike) -> str:
    """The file's text; InputError when it is missing, unreadable, not UTF-8 or holds only whitespace."""
    file_path = Path(path)
    if not file_path.exists():
        raise InputError(f"{file_path}: annotation file not found; check the path.")
    if file_path.is_dir():
        raise InputError(f"{file_path}: is a directory; pass the annotation file itself.")
    try:
        text = file_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{file_path}: not UTF-8 text (byte {error.start}); annotation files are text or JSON."
        ) from error
    if not text.strip():
        raise InputError(f"{file_path}: the file is empty; expected annotations in one of {ANNOTATION_FORMATS}.")
    return text


def content_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line_index, stripped line)`` of every non-blank line, ``line_index`` 0-based.

    Lines are split on ``"\n"`` only, not ``splitlines()``: other tools count lines that way, and a
    Charades-STA qid is its line index.
    """
    for line_index, raw_line in enumerate(text.split("\n")):
        line = raw_line.strip()
        if line:
            yield line_index, line


def parse_json(path: PathLike, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg} at column {error.colno}); "
            "fix or re-download the file."
        ) from error


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fit_window(
    start: float, end: float, duration: float, where: str, report: ReadReport
) -> tuple[float, float] | None:
    """Clip ``[start, end]`` (seconds) to ``[0, duration]``; None (and a report line) when nothing is left.

    Clips are recorded in ``report.clipped`` only for windows that are kept and only when they move a bound by
    more than :data:`CLIP_REPORT_TOLERANCE_S`; a dropped window gets a single line in ``report.dropped`` that
    gives its raw values.
    """
    clipped_start = max(start, 0.0)
    clipped_end = min(end, duration)
    raw = f"[{seconds_text(start)}, {seconds_text(end)}] s"
    if clipped_start >= clipped_end:
        if start >= end:
            reason = "start >= end"
        else:
            reason = f"nothing left after clipping to the video [0, {seconds_text(duration)}] s"
        report.dropped.append(f"{where}: window {raw}: {reason}; dropped")
        return None
    notes = []
    if start < -CLIP_REPORT_TOLERANCE_S:
        notes.append(f"start {seconds_text(start)} s < 0, clipped to 0")
    if end > duration + CLIP_REPORT_TOLERANCE_S:
        notes.append(f"end {seconds_text(end)} s past duration {seconds_text(duration)} s, clipped to {seconds_text(duration)}")
    if notes:
        report.clipped.append(f"{where}: " + "; ".join(notes))
    return clipped_start, clipped_end


def parse_time_pair(label: str, pair: Any) -> tuple[float, float]:
    """(start, end) of a ``[start, end]`` pair, in the file's own unit; ``label`` prefixes the error."""
    if isinstance(pair, (list, tuple)) and len(pair) == 2:
        start, end = finite_number(pair[0]), finite_number(pair[1])
        if start is not None and end is not None:
            return start, end
    raise InputError(f"{label}: timestamp {pair!r} should be [start, end] with two finite numbers.")


def clean_sentence(sentence: Any, where: str, report: ReadReport) -> str | None:
    """Stripped sentence; None (and a dropped line) when it is empty. Non-strings are an InputError."""
    if not isinstance(sentence, str):
        raise InputError(f"{where}: sentence must be a string, got {type(sentence).__name__} {sentence!r}.")
    text = sentence.strip()
    if not text:
        report.dropped.append(f"{where}: empty sentence; dropped")
        return None
    return text
