"""The one typed record every annotation reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator


@dataclass(frozen=True)
class QueryRecord:
    """One sentence query with its ground-truth moment(s).

    Attributes:
        qid: query id, unique within its file. Charades-STA: the 0-based line index; 2D-TAN/MMN/Charades-CD
            json: the 0-based running index in file order (video order, then sentence order); Moment-DETR
            jsonl: the file's own ``qid``.
        video_id: the video's id as the feature files name it (e.g. ``3MSZA``, ``v_abc``, ``s13-d21``).
        duration: video length in seconds (> 0).
        windows: ground-truth windows ``((start, end), ...)`` in seconds, each with 0 <= start < end <= duration.
        sentence: the query text.
    """

    qid: int
    video_id: str
    duration: float
    windows: tuple[tuple[float, float], ...]
    sentence: str


@dataclass
class ReadReport:
    """What a reader changed or skipped, so nothing is lost silently.

    ``clipped`` and ``dropped`` hold one human-readable line each, starting with ``file:line`` (or the video
    id for json formats) and saying what was done and why.
    """

    num_read: int = 0
    clipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


@dataclass
class AnnotationSet:
    """Queries read from one annotation file, with the reader's report."""

    path: str
    format: str
    records: list[QueryRecord]
    report: ReadReport = field(default_factory=ReadReport)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[QueryRecord]:
        return iter(self.records)

    def by_qid(self) -> dict[int, QueryRecord]:
        return {record.qid: record for record in self.records}

    def video_ids(self) -> list[str]:
        """Distinct video ids in first-seen order."""
        return list(dict.fromkeys(record.video_id for record in self.records))
