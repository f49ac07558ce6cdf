"""Moment-DETR / QVHighlights jsonl: one query object per line, one or more ground-truth windows each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grounding.data.annotation_fields import (
    PathLike,
    clean_sentence,
    content_lines,
    finite_number,
    fit_window,
    parse_time_pair,
    strip_video_extension,
)
from grounding.data.records import AnnotationSet, QueryRecord, ReadReport
from grounding.errors import InputError


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
        for line_index, line in content_lines(text):
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
            clean = clean_sentence(item["query"], where, report)
            if clean is None:
                continue
            windows = []
            for window_index, window in enumerate(item["relevant_windows"]):
                label = f"{path}:{line_number}: qid {qid} window {window_index}"
                start, end = parse_time_pair(label, window)
                fitted = fit_window(start, end, duration, f"{where} window {window_index}", report)
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
        duration = finite_number(item["duration"])
        if duration is None or duration <= 0:
            raise InputError(f"{where}: qid {qid}: duration {item['duration']!r} must be seconds > 0.")
        item["duration"] = duration
        if not isinstance(item["relevant_windows"], list):
            raise InputError(f"{where}: qid {qid}: 'relevant_windows' must be a list of [start, end].")
        return item
