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
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from grounding.data.records import AnnotationSet, QueryRecord, ReadReport
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


def _seconds(value: float) -> str:
    """Short, readable seconds for report lines: 30.96 -> '30.96', 4.795918 -> '4.79592'."""
    return f"{value:g}"


def _read_text(path: PathLike) -> str:
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


def _parse_json(path: PathLike, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg} at column {error.colno}); "
            "fix or re-download the file."
        ) from error


def _finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fit_window(
    start: float, end: float, duration: float, where: str, report: ReadReport
) -> tuple[float, float] | None:
    """Clip ``[start, end]`` (seconds) to ``[0, duration]``; None (and a report line) when nothing is left.

    Clips are recorded in ``report.clipped`` only for windows that are kept and only when they move a bound by
    more than :data:`CLIP_REPORT_TOLERANCE_S`; a dropped window gets a single line in ``report.dropped`` that
    gives its raw values.
    """
    clipped_start = max(start, 0.0)
    clipped_end = min(end, duration)
    raw = f"[{_seconds(start)}, {_seconds(end)}] s"
    if clipped_start >= clipped_end:
        if start >= end:
            reason = "start >= end"
        else:
            reason = f"nothing left after clipping to the video [0, {_seconds(duration)}] s"
        report.dropped.append(f"{where}: window {raw}: {reason}; dropped")
        return None
    notes = []
    if start < -CLIP_REPORT_TOLERANCE_S:
        notes.append(f"start {_seconds(start)} s < 0, clipped to 0")
    if end > duration + CLIP_REPORT_TOLERANCE_S:
        notes.append(f"end {_seconds(end)} s past duration {_seconds(duration)} s, clipped to {_seconds(duration)}")
    if notes:
        report.clipped.append(f"{where}: " + "; ".join(notes))
    return clipped_start, clipped_end


def _parse_time_pair(label: str, pair: Any) -> tuple[float, float]:
    """(start, end) of a ``[start, end]`` pair, in the file's own unit; ``label`` prefixes the error."""
    if isinstance(pair, (list, tuple)) and len(pair) == 2:
        start, end = _finite_number(pair[0]), _finite_number(pair[1])
        if start is not None and end is not None:
            return start, end
    raise InputError(f"{label}: timestamp {pair!r} should be [start, end] with two finite numbers.")


def _clean_sentence(sentence: Any, where: str, report: ReadReport) -> str | None:
    """Stripped sentence; None (and a dropped line) when it is empty. Non-strings are an InputError."""
    if not isinstance(sentence, str):
        raise InputError(f"{where}: sentence must be a string, got {type(sentence).__name__} {sentence!r}.")
    text = sentence.strip()
    if not text:
        report.dropped.append(f"{where}: empty sentence; dropped")
        return None
    return text


def read_durations(paths: Sequence[PathLike]) -> dict[str, float]:
    """Video durations in seconds from Charades metadata CSVs (``Charades_v1_train.csv``, ``..._test.csv``).

    Each CSV needs the columns ``id`` and ``length``; fields may hold quoted commas, so a real CSV parser is
    used. Several files are merged; one video listed twice with different lengths is an InputError.

    Returns:
        ``{video_id: duration_seconds}``, every duration finite and > 0.
    """
    durations: dict[str, float] = {}
    source_of: dict[str, str] = {}
    for path in paths:
        file_path = Path(path)
        if not file_path.is_file():
            raise InputError(f"{file_path}: durations CSV not found; pass a Charades_v1_*.csv file with --durations.")
        with open(file_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if "id" not in columns or "length" not in columns:
                raise InputError(
                    f"{file_path}: expected CSV columns 'id' and 'length' (Charades_v1_*.csv), found {columns}."
                )
            for row in reader:
                video_id = (row["id"] or "").strip()
                length_text = (row["length"] or "").strip()
                where = f"{file_path}:{reader.line_num}"
                if not video_id:
                    raise InputError(f"{where}: empty 'id'; every row needs a video id.")
                try:
                    duration = float(length_text)
                except ValueError:
                    raise InputError(
                        f"{where}: video '{video_id}' has length {length_text!r}, expected seconds as a number."
                    ) from None
                if not math.isfinite(duration) or duration <= 0:
                    raise InputError(f"{where}: video '{video_id}' has length {length_text}, expected > 0 seconds.")
                if video_id in durations and durations[video_id] != duration:
                    raise InputError(
                        f"{where}: video '{video_id}' has length {_seconds(duration)} s, but "
                        f"{source_of[video_id]} says {_seconds(durations[video_id])} s; pass only one of these CSVs."
                    )
                durations[video_id] = duration
                source_of[video_id] = where
    return durations


class CharadesSTAReader:
    """Charades-STA text: ``VIDEO START END##sentence`` per line, durations from Charades CSVs.

    Args:
        durations: ``{video_id: seconds}``, e.g. from :func:`read_durations`.
        duration_sources: names of the CSVs ``durations`` came from, quoted in error messages.
    """

    format_name = "charades-sta"

    def __init__(self, durations: Mapping[str, float], duration_sources: Sequence[str] = ()) -> None:
        self.durations = durations
        self.duration_sources = tuple(duration_sources)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(videos_with_duration={len(self.durations)})"

    def read(self, path: PathLike, text: str) -> AnnotationSet:
        """Parse ``text`` (the content of ``path``); ``path`` is only used in messages."""
        name = Path(path).name
        report = ReadReport()
        records: list[QueryRecord] = []
        missing: list[tuple[int, str]] = []  # (1-based line, video id) of videos without a duration
        # split("\n") rather than splitlines(): other tools count lines by "\n" only, and qid = line index.
        for line_index, raw_line in enumerate(text.split("\n")):
            line = raw_line.strip()
            if not line:
                continue
            line_number = line_index + 1
            report.num_read += 1
            video_id, start, end, sentence = self._parse_line(path, line_number, line)
            duration = self.durations.get(video_id)
            if duration is None:
                missing.append((line_number, video_id))
                continue
            where = f"{name}:{line_number}: video '{video_id}' (qid {line_index})"
            clean = _clean_sentence(sentence, where, report)
            if clean is None:
                continue
            window = _fit_window(start, end, duration, where, report)
            if window is not None:
                records.append(QueryRecord(line_index, video_id, duration, (window,), clean))
        if missing:
            raise InputError(self._missing_duration_message(path, missing))
        return AnnotationSet(str(path), self.format_name, records, report)

    @staticmethod
    def _parse_line(path: PathLike, line_number: int, line: str) -> tuple[str, float, float, str]:
        head, separator, sentence = line.partition("##")
        fields = head.split()
        if not separator or len(fields) != 3:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise InputError(
                f"{path}:{line_number}: expected 'VIDEO START END##sentence' (Charades-STA), got {shown!r}; "
                "check the file or pass the right --format."
            )
        video_id, start_text, end_text = fields
        times = []
        for label, value in (("start", start_text), ("end", end_text)):
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds):
                raise InputError(
                    f"{path}:{line_number}: {label} time {value!r} of video '{video_id}' is not a finite "
                    "number of seconds."
                )
            times.append(seconds)
        return video_id, times[0], times[1], sentence

    def _missing_duration_message(self, path: PathLike, missing: list[tuple[int, str]]) -> str:
        line_number, video_id = missing[0]
        sources = ", ".join(self.duration_sources) if self.duration_sources else "the durations given"
        lowered = Path(path).name.lower()
        if "test" in lowered:
            suggestion = "Charades_v1_test.csv"
        elif "train" in lowered:
            suggestion = "Charades_v1_train.csv"
        else:
            suggestion = "the Charades_v1_*.csv of this split"
        message = (
            f"{path}:{line_number}: video '{video_id}' has no duration in {sources}; "
            f"pass this split's CSV with --durations (probably {suggestion})."
        )
        others = len(missing) - 1
        if others:
            videos = len({video for _, video in missing})
            message += f" {others} more line(s) have the same problem ({videos} video(s) in all)."
        return message


class TwoDTANJsonReader:
    """2D-TAN / MMN json: ``{video: {"duration", "timestamps", "sentences"}}``, or TACoS' frame-based variant.

    An entry with ``duration`` has timestamps in seconds. An entry with ``fps`` and ``num_frames`` instead
    (TACoS) has timestamps in frames: seconds = frame / fps and duration = num_frames / fps.

    Args:
        format_name: the label put on the resulting :class:`AnnotationSet` (``"2dtan"`` or ``"mmn"``).
    """

    format_name = "2dtan"

    def __init__(self, format_name: str = "2dtan") -> None:
        self.format_name = format_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(format_name={self.format_name!r})"

    def read(self, path: PathLike, payload: Any) -> AnnotationSet:
        """Convert the parsed JSON ``payload`` of ``path``; ``path`` is only used in messages."""
        if not isinstance(payload, dict):
            raise InputError(
                f"{path}: expected a JSON object mapping video ids to their annotations ({self.format_name}), "
                f"got a JSON {type(payload).__name__}; check the file or pass the right --format."
            )
        if not payload:
            raise InputError(f"{path}: the JSON object holds no videos.")
        report = ReadReport()
        records: list[QueryRecord] = []
        key_of_video: dict[str, str] = {}
        qid = 0
        for video_key, entry in payload.items():
            label = f"{path}: video '{video_key}'"
            if not isinstance(entry, dict):
                raise InputError(f"{label}: expected an object with timestamps and sentences, got {entry!r:.60}.")
            video_id = strip_video_extension(video_key)
            if video_id in key_of_video:
                raise InputError(
                    f"{label}: same video id '{video_id}' as '{key_of_video[video_id]}' once the file "
                    "extension is dropped; keep only one of them."
                )
            key_of_video[video_id] = video_key
            duration, units_per_second = self._duration_and_time_unit(label, entry)
            timestamps = entry.get("timestamps")
            sentences = entry.get("sentences")
            if not isinstance(timestamps, list) or not isinstance(sentences, list):
                raise InputError(f"{label}: 'timestamps' and 'sentences' must both be lists.")
            if len(timestamps) != len(sentences):
                raise InputError(
                    f"{label}: {len(timestamps)} timestamps but {len(sentences)} sentences; they must pair up."
                )
            for sentence_index, (timestamp, sentence) in enumerate(zip(timestamps, sentences)):
                where = f"video '{video_key}' sentence {sentence_index} (qid {qid})"
                qid += 1
                report.num_read += 1
                start, end = _parse_time_pair(f"{path}: {where}", timestamp)
                clean = _clean_sentence(sentence, where, report)
                if clean is None:
                    continue
                window = _fit_window(start / units_per_second, end / units_per_second, duration, where, report)
                if window is not None:
                    records.append(QueryRecord(qid - 1, video_id, duration, (window,), clean))
        return AnnotationSet(str(path), self.format_name, records, report)

    def _duration_and_time_unit(self, label: str, entry: dict[str, Any]) -> tuple[float, float]:
        """(duration in seconds, timestamp units per second: 1 for seconds, fps for frames) of one video entry."""
        if "duration" in entry:
            duration = _finite_number(entry["duration"])
            if duration is None or duration <= 0:
                raise InputError(f"{label}: 'duration' is {entry['duration']!r}, expected seconds > 0.")
            return duration, 1.0
        if "fps" in entry and "num_frames" in entry:
            fps = _finite_number(entry["fps"])
            num_frames = _finite_number(entry["num_frames"])
            if fps is None or fps <= 0 or num_frames is None or num_frames <= 0:
                raise InputError(
                    f"{label}: fps {entry['fps']!r} and num_frames {entry['num_frames']!r} must both be > 0."
                )
            return num_frames / fps, fps
        hint = " (this looks like Charades-CD: pass --format charades-cd)" if "video_duration" in entry else ""
        raise InputError(
            f"{label}: no 'duration' (or TACoS 'fps' + 'num_frames'); keys are {sorted(entry)}{hint}."
        )


class CharadesCDJsonReader(TwoDTANJsonReader):
    """Charades-CD json: like 2D-TAN's, with the duration in ``video_duration`` and timestamps in seconds."""

    format_name = "charades-cd"

    def __init__(self) -> None:
        super().__init__("charades-cd")

    def _duration_and_time_unit(self, label: str, entry: dict[str, Any]) -> tuple[float, float]:
        if "video_duration" not in entry:
            raise InputError(f"{label}: no 'video_duration' (Charades-CD); keys are {sorted(entry)}.")
        duration = _finite_number(entry["video_duration"])
        if duration is None or duration <= 0:
            raise InputError(f"{label}: 'video_duration' is {entry['video_duration']!r}, expected seconds > 0.")
        return duration, 1.0


class MomentDETRJsonlReader:
    """Moment-DETR / QVHighlights jsonl: one query per line, several ground-truth windows each.

    Required keys: ``qid`` (int, unique), ``query``, ``vid``, ``duration`` (s), ``relevant_windows``
    (``[[start, end], ...]`` in seconds). Other keys (``relevant_clip_ids``, ``saliency_scores``) are ignored.
    A query whose windows are all dropped is dropped too.
    """

    format_name = "moment-detr"
    required_keys = ("qid", "query", "vid", "duration", "relevant_windows")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def read(self, path: PathLike, text: str) -> AnnotationSet:
        """Parse ``text`` (the content of ``path``); ``path`` is only used in messages."""
        name = Path(path).name
        report = ReadReport()
        records: list[QueryRecord] = []
        line_of_qid: dict[int, int] = {}
        for line_index, raw_line in enumerate(text.split("\n")):
            line = raw_line.strip()
            if not line:
                continue
            line_number = line_index + 1
            report.num_read += 1
            item = self._parse_object(path, line_number, line)
            qid = item["qid"]
            if qid in line_of_qid:
                raise InputError(
                    f"{path}:{line_number}: qid {qid} is already used on line {line_of_qid[qid]}; qids must be unique."
                )
            line_of_qid[qid] = line_number
            video_id = strip_video_extension(item["vid"])
            duration = item["duration"]
            where = f"{name}:{line_number}: qid {qid} video '{item['vid']}'"
            clean = _clean_sentence(item["query"], where, report)
            if clean is None:
                continue
            windows = []
            for window_index, window in enumerate(item["relevant_windows"]):
                label = f"{path}:{line_number}: qid {qid} window {window_index}"
                start, end = _parse_time_pair(label, window)
                fitted = _fit_window(start, end, duration, f"{where} window {window_index}", report)
                if fitted is not None:
                    windows.append(fitted)
            if not windows:
                report.dropped.append(f"{where}: no valid window left; query dropped")
                continue
            records.append(QueryRecord(qid, video_id, duration, tuple(windows), clean))
        return AnnotationSet(str(path), self.format_name, records, report)

    def _parse_object(self, path: PathLike, line_number: int, line: str) -> dict[str, Any]:
        """One line's object, with ``qid`` an int, ``vid`` a str and ``duration`` a float > 0 (seconds)."""
        where = f"{path}:{line_number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{where}: not valid JSON ({error.msg} at column {error.colno}).") from error
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected one JSON object per line (Moment-DETR jsonl), got {line[:60]!r}.")
        absent = [key for key in self.required_keys if key not in item]
        if absent:
            hint = (
                " (files without ground truth, such as QVHighlights' hidden test split, cannot be read)"
                if absent == ["relevant_windows"] else ""
            )
            raise InputError(
                f"{where}: missing key(s) {absent}; Moment-DETR lines need {list(self.required_keys)}{hint}."
            )
        qid = item["qid"]
        if isinstance(qid, bool) or not isinstance(qid, int):
            raise InputError(f"{where}: qid {qid!r} must be an integer.")
        if not isinstance(item["vid"], str) or not item["vid"].strip():
            raise InputError(f"{where}: qid {qid}: 'vid' {item['vid']!r} must be a non-empty string.")
        item["vid"] = item["vid"].strip()
        duration = _finite_number(item["duration"])
        if duration is None or duration <= 0:
            raise InputError(f"{where}: qid {qid}: duration {item['duration']!r} must be seconds > 0.")
        item["duration"] = duration
        if not isinstance(item["relevant_windows"], list):
            raise InputError(f"{where}: qid {qid}: 'relevant_windows' must be a list of [start, end].")
        return item


def _first_content_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def _detect(path: PathLike, text: str) -> tuple[str, Any]:
    """(format, parsed JSON payload or None) of a file's text; see :func:`detect_format`."""
    first_line = _first_content_line(text)
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
        payload = _parse_json(path, text)
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
    return _detect(path, _read_text(path))[0]


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
    text = _read_text(path)
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
        payload = _parse_json(path, text)
    if format == "charades-cd":
        return CharadesCDJsonReader().read(path, payload)
    return TwoDTANJsonReader(format).read(path, payload)
