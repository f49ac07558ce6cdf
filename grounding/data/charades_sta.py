"""Charades-STA: ``VIDEO START END##sentence`` text lines, with durations from the Charades metadata CSVs."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

from grounding.data.annotation_fields import PathLike, clean_sentence, content_lines, fit_window, seconds_text
from grounding.data.records import AnnotationSet, QueryRecord, ReadReport
from grounding.errors import InputError


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
                        f"{where}: video '{video_id}' has length {seconds_text(duration)} s, but "
                        f"{source_of[video_id]} says {seconds_text(durations[video_id])} s; pass only one of these CSVs."
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
        for line_index, line in content_lines(text):  # qid = line index
            line_number = line_index + 1
            report.num_read += 1
            video_id, start, end, sentence = self._parse_line(path, line_number, line)
            duration = self.durations.get(video_id)
            if duration is None:
                missing.append((line_number, video_id))
                continue
            where = f"{name}:{line_number}: video '{video_id}' (qid {line_index})"
            clean = clean_sentence(sentence, where, report)
            if clean is None:
                continue
            window = fit_window(start, end, duration, where, report)
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
