"""Multi-positive truth: every video of a corpus where a query is true, with its windows.

In a corpus where one sentence is often true of several videos (the rendered world: the same coloured shape
doing the same action), counting only the query's own video as a hit understates video retrieval (VR@k) and
video corpus moment retrieval (VCMR). A relevance file lists, per query, every video where it is true;
``evaluate(..., relevant=...)`` and ``grounding evaluate --relevant FILE`` then count any of them. Moment
retrieval inside the query's own video (R@n, mIoU, mAP) does not use it.

File format: jsonl, one line per query (``grounding synth`` writes them in the annotation file's order, but
the reader matches lines by ``qid``), times in seconds::

    {"qid": 0, "vid": "syn00000", "query": "the red rhombus wiggles.",
     "relevant": [{"vid": "syn00000", "windows": [[5.29, 13.62]]}, {"vid": "syn00417", "windows": [[2.5, 9.0]]}]}

- ``qid``, ``vid`` and ``query`` repeat the annotated query: its qid, its own video and its sentence.
- ``relevant`` lists each video where the sentence is true once, with one or more ``[start, end]`` windows
  (finite, ``start < end``). The query's own video must be there, with every annotated window (to 0.01 s).

:func:`read_relevance` checks a file against the annotations it is meant for; every problem is an
:class:`~grounding.errors.InputError` naming ``file:line`` and what to do. numpy and json only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from grounding.errors import InputError

if TYPE_CHECKING:
    from grounding.data.records import AnnotationSet, QueryRecord

WINDOW_TOLERANCE_S = 0.01  # an annotated window matches a relevance window when both ends are this close
_FIX = "pass the relevance file written for this annotation file (grounding synth --relevance-only rewrites it)"


@dataclass
class Relevance:
    """Per query, every video where it is true.

    Attributes:
        videos: qid -> {video id: (G, 2) float64 windows ``[start, end]`` in seconds}; the query's own video
            is one of the keys.
        video_ids: qid -> the query's own video id, as the file gives it (optional for relevance built in memory).
        sentences: qid -> the query's sentence, as the file gives it (optional likewise).
        lines: qid -> 1-based line number in ``path`` (empty in memory).
        path: where it was read from, for messages.
    """

    videos: dict[int, dict[str, np.ndarray]]
    video_ids: dict[int, str] = field(default_factory=dict)
    sentences: dict[int, str] = field(default_factory=dict)
    lines: dict[int, int] = field(default_factory=dict)
    path: str = "<relevance in memory>"

    def where(self, qid: int) -> str:
        """``file:line`` of a qid's line, or the source name and qid when built in memory."""
        line = self.lines.get(qid)
        return f"{self.path}:{line}" if line is not None else f"{self.path} (qid {qid})"

    def check(self, records: Sequence[QueryRecord], source: str, num_dropped: int = 0) -> None:
        """Raise InputError unless this relevance fits ``records`` (the annotated queries, named ``source``).

        Each record's qid needs an entry whose own video id and sentence (when given) are the record's, and
        whose relevant videos include the record's video with each of its windows; an entry for a qid that is
        not annotated is an error too (the hint mentions the ``num_dropped`` queries the reader dropped).
        """
        annotated = {record.qid for record in records}
        for record in records:
            qid = record.qid
            if qid not in self.videos:
                raise InputError(
                    f"{self.path}: no line for qid {qid} (video {record.video_id}) of {source}; "
                    f"every annotated query needs one: {_FIX}."
                )
            where = f"{self.where(qid)}: qid {qid}"
            own = self.video_ids.get(qid, record.video_id)
            if own != record.video_id:
                raise InputError(f"{where} is about video {own}, but {source} says {record.video_id}; {_FIX}.")
            sentence = self.sentences.get(qid, record.sentence)
            if sentence.strip() != record.sentence:
                raise InputError(
                    f"{where} says {sentence!r}, but {source} says {record.sentence!r}; {_FIX}."
                )
            windows = self.videos[qid].get(record.video_id)
            missing = [w for w in record.windows if windows is None or not _has_window(windows, w)]
            if missing:
                shown = f"[{missing[0][0]:.2f}, {missing[0][1]:.2f}]"
                what = "its own video" if windows is None else f"its annotated window {shown}"
                raise InputError(
                    f"{where} does not list {what} in {record.video_id} among its relevant videos; "
                    f"a query is always true of its own moment: {_FIX}."
                )
        unknown = [qid for qid in self.videos if qid not in annotated]
        if unknown:
            plural = "y" if num_dropped == 1 else "ies"
            hint = f" (the reader dropped {num_dropped} quer{plural} there)" if num_dropped else ""
            raise InputError(f"{self.where(unknown[0])}: qid {unknown[0]} is not in {source}{hint}; {_FIX}.")

    def truth(self, qid: int) -> dict[str, np.ndarray]:
        """{video id: (G, 2) windows} of the videos where query ``qid`` is true."""
        return self.videos[qid]


def _has_window(windows: np.ndarray, window: tuple[float, float]) -> bool:
    close = np.abs(windows - np.asarray(window, dtype=np.float64)) <= WINDOW_TOLERANCE_S  # (G, 2)
    return bool(close.all(axis=1).any())


def read_relevance(path: str | os.PathLike[str], annotations: AnnotationSet | Sequence[QueryRecord]) -> Relevance:
    """Read a relevance file (format in the module docstring) and check it against ``annotations``.

    Raises:
        InputError: a missing or unreadable file, a malformed line, a qid given twice, a line whose qid, video
            or sentence is not the annotated one, a query whose own video or window is not relevant, or an
            annotated query without a line; each names ``file:line`` and what to do.
    """
    shown = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise InputError(
            f"{shown}: relevance file not found; write it with grounding synth --relevance-only --out WORLD."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{shown}: cannot read the relevance file ({error}).") from None
    relevance = Relevance(videos={}, path=shown)
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        qid, video_id, sentence, videos = _parse_line(f"{shown}:{line_number}", line)
        if qid in relevance.lines:
            raise InputError(
                f"{shown}:{line_number}: qid {qid} is also on line {relevance.lines[qid]}; give each query one line."
            )
        relevance.videos[qid] = videos
        relevance.video_ids[qid] = video_id
        relevance.sentences[qid] = sentence
        relevance.lines[qid] = line_number
    if hasattr(annotations, "records") and hasattr(annotations, "path"):
        dropped = len(getattr(getattr(annotations, "report", None), "dropped", []) or [])
        relevance.check(list(annotations.records), f"the annotation file {annotations.path}", dropped)
    else:
        relevance.check(list(annotations), "the annotation records given")
    return relevance


def _parse_line(where: str, line: str) -> tuple[int, str, str, dict[str, np.ndarray]]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON ({error.msg}); each line is one query's JSON object.") from None
    expected = "{'qid': int, 'vid': str, 'query': str, 'relevant': [{'vid': str, 'windows': [[start, end], ...]}, ...]}"
    if not isinstance(item, dict) or not {"qid", "vid", "query", "relevant"} <= set(item):
        raise InputError(f"{where}: expected an object {expected}.")
    qid, video_id, sentence, relevant = item["qid"], item["vid"], item["query"], item["relevant"]
    if not isinstance(qid, int) or isinstance(qid, bool):
        raise InputError(f"{where}: qid must be an integer, got {qid!r}.")
    if not isinstance(video_id, str) or not isinstance(sentence, str):
        raise InputError(f"{where}: 'vid' and 'query' must be strings; expected {expected}.")
    if not isinstance(relevant, list) or not relevant:
        raise InputError(f"{where}: 'relevant' must be a non-empty list (the query's own video at least).")
    videos: dict[str, np.ndarray] = {}
    for index, entry in enumerate(relevant):
        here = f"{where}: relevant[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("vid"), str) or "windows" not in entry:
            raise InputError(f"{here}: expected {{'vid': str, 'windows': [[start, end], ...]}}, got {entry!r}.")
        vid = entry["vid"]
        if vid in videos:
            raise InputError(f"{here}: video {vid} is listed twice; list each video once with all its windows.")
        videos[vid] = _windows(entry["windows"], f"{here} ({vid})")
    return qid, video_id, sentence, videos


def _windows(rows: Any, where: str) -> np.ndarray:
    """(G, 2) float64 windows from ``[[start, end], ...]``: at least one, finite, start < end."""
    ok = isinstance(rows, list) and rows and all(
        isinstance(row, list) and len(row) == 2 and all(_is_number(value) for value in row) for row in rows
    )
    if not ok:
        raise InputError(f"{where}: windows must be a non-empty list of [start, end] numbers (seconds), got {rows!r}.")
    windows = np.asarray(rows, dtype=np.float64)
    for start, end in windows:
        if not (math.isfinite(start) and math.isfinite(end) and start < end):
            raise InputError(f"{where}: window [{start}, {end}] needs finite seconds with start < end.")
    return windows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def relevance_line(qid: int, video_id: str, sentence: str, relevant: Mapping[str, Sequence[Sequence[float]]]) -> str:
    """One line of a relevance file (no newline): the query and ``{video id: [[start, end], ...]}``, videos
    in the mapping's order, windows as given (seconds)."""
    entries = [{"vid": vid, "windows": [[float(start), float(end)] for start, end in windows]}
               for vid, windows in relevant.items()]
    return json.dumps({"qid": qid, "vid": video_id, "query": sentence, "relevant": entries})
