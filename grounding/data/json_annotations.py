"""2D-TAN / MMN / Charades-CD json: ``{video: {timestamps, sentences, duration-or-equivalent}}``."""

from __future__ import annotations

from typing import Any

from grounding.data.annotation_fields import (
    PathLike,
    clean_sentence,
    finite_number,
    fit_window,
    parse_time_pair,
    strip_video_extension,
)
from grounding.data.records import AnnotationSet, QueryRecord, ReadReport
from grounding.errors import InputError


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
                start, end = parse_time_pair(f"{path}: {where}", timestamp)
                clean = clean_sentence(sentence, where, report)
                if clean is None:
                    continue
                window = fit_window(start / units_per_second, end / units_per_second, duration, where, report)
                if window is not None:
                    records.append(QueryRecord(qid - 1, video_id, duration, (window,), clean))
        return AnnotationSet(str(path), self.format_name, records, report)

    def _duration_and_time_unit(self, label: str, entry: dict[str, Any]) -> tuple[float, float]:
        """(duration in seconds, timestamp units per second: 1 for seconds, fps for frames) of one video entry."""
        if "duration" in entry:
            duration = finite_number(entry["duration"])
            if duration is None or duration <= 0:
                raise InputError(f"{label}: 'duration' is {entry['duration']!r}, expected seconds > 0.")
            return duration, 1.0
        if "fps" in entry and "num_frames" in entry:
            fps = finite_number(entry["fps"])
            num_frames = finite_number(entry["num_frames"])
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
        duration = finite_number(entry["video_duration"])
        if duration is None or duration <= 0:
            raise InputError(f"{label}: 'video_duration' is {entry['video_duration']!r}, expected seconds > 0.")
        return duration, 1.0
