"""Prediction files: one JSON object per line (jsonl), one line per query.

Each line has an integer ``qid`` and one or more of these keys (all times in seconds)::

    {"qid": 7, "pred_relevant_windows": [[start, end, score], ...]}         # moments in the query's video
    {"qid": 7, "video_ranking": ["vidA", "vidB", ...]}                      # videos, best first
    {"qid": 7, "pred_corpus_windows": [[vid, start, end, score], ...]}      # moments in a corpus (VCMR)

Rules the reader enforces (each violation raises :class:`~grounding.errors.InputError` naming ``file:line``):

- Window rows may come in any order; the evaluator sorts them by score (stable, so ties keep file order).
- ``pred_relevant_windows`` rows of 4 values ``[vid, start, end, score]`` are read as corpus windows, the same
  as ``pred_corpus_windows``; a line may not give corpus windows both ways, nor mix 3- and 4-value rows.
- start, end and score must be finite numbers (no NaN/inf) with ``start <= end``; zero-length windows are
  allowed (they score IoU 0). Windows are not clipped to the video.
- Video ids are strings; integer ids are read as their decimal string (``12`` -> ``"12"``).
- A qid may appear on one line only; a second line for it is an error naming both lines.
- Other keys (``query``, ``vid``, ``pred_saliency_scores`` in Moment-DETR files) are ignored, but a line
  must carry at least one of the three prediction keys. Blank lines are skipped.
- An empty list is allowed and means "predicted nothing": the query counts as a miss.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from grounding.errors import InputError
from grounding.files import write_text_atomic

MOMENTS_KEY = "pred_relevant_windows"
RANKING_KEY = "video_ranking"
CORPUS_KEY = "pred_corpus_windows"
PREDICTION_KEYS: tuple[str, ...] = (MOMENTS_KEY, RANKING_KEY, CORPUS_KEY)

PathLike = str | os.PathLike


@dataclass(frozen=True)
class CorpusMoments:
    """One query's corpus-level moment predictions (video corpus moment retrieval).

    Attributes:
        video_ids: (K,) the video of each window.
        windows: (K, 3) float64 rows ``[start, end, score]`` in seconds, in the file's order.
    """

    video_ids: tuple[str, ...]
    windows: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_ids", tuple(str(vid) for vid in self.video_ids))
        windows = np.asarray(self.windows, dtype=np.float64)
        if windows.size == 0 and not self.video_ids:
            windows = np.zeros((0, 3), dtype=np.float64)
        if windows.shape != (len(self.video_ids), 3):
            raise InputError(
                f"CorpusMoments: windows must be ({len(self.video_ids)}, 3) rows of [start, end, score] to match "
                f"{len(self.video_ids)} video ids, got shape {windows.shape}."
            )
        _check_finite_and_ordered(windows, "CorpusMoments", CORPUS_KEY)
        object.__setattr__(self, "windows", windows)

    def __len__(self) -> int:
        return len(self.video_ids)


@dataclass
class Predictions:
    """Everything one prediction file holds, keyed by qid.

    Attributes:
        moments: qid -> (K, 3) float64 ``[start, end, score]`` rows in seconds, file order.
        rankings: qid -> video ids, best first.
        corpus_moments: qid -> :class:`CorpusMoments`.
        lines: qid -> 1-based line number in ``path`` (empty for predictions built in memory).
        path: where they were read from, for error messages.
    """

    moments: dict[int, np.ndarray] = field(default_factory=dict)
    rankings: dict[int, list[str]] = field(default_factory=dict)
    corpus_moments: dict[int, CorpusMoments] = field(default_factory=dict)
    lines: dict[int, int] = field(default_factory=dict)
    path: str = "<predictions in memory>"

    def __post_init__(self) -> None:
        self.moments = {qid: _checked_rows(rows, f"{self.path}: qid {qid}") for qid, rows in self.moments.items()}

    def qids(self) -> list[int]:
        """Every qid with any prediction, in first-seen order."""
        return list(dict.fromkeys([*self.moments, *self.rankings, *self.corpus_moments]))

    def where(self, qid: int) -> str:
        """``file:line`` of a qid's line, or the source name when built in memory."""
        line = self.lines.get(qid)
        return f"{self.path}:{line}" if line is not None else f"{self.path} (qid {qid})"


def _checked_rows(rows: Any, where: str) -> np.ndarray:
    """``rows`` as a (K, 3) float64 array of finite ``[start, end, score]`` with start <= end, else InputError."""
    array = np.asarray(rows, dtype=np.float64) if not isinstance(rows, np.ndarray) else rows.astype(np.float64)
    if array.size == 0:
        return np.zeros((0, 3), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{where}: windows must be rows of [start, end, score], got an array of shape {array.shape}.")
    _check_finite_and_ordered(array, where, MOMENTS_KEY)
    return array


def _check_finite_and_ordered(array: np.ndarray, where: str, key: str) -> None:
    """Raise InputError at the first row of (K, 3) ``array`` with a non-finite value or start > end."""
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InputError(
            f"{where}: {key}[{row}] = {array[row].tolist()} has NaN or inf; every start, end and score must be "
            "a finite number."
        )
    reversed_rows = array[:, 0] > array[:, 1]
    if reversed_rows.any():
        row = int(np.flatnonzero(reversed_rows)[0])
        raise InputError(
            f"{where}: {key}[{row}] has start {array[row, 0]:g} > end {array[row, 1]:g}; windows are "
            "[start, end, score] in seconds with start <= end."
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _video_id(value: Any, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{where}: video id {value!r} must be a non-empty string (or an integer).")


def _parse_moment_rows(rows: list[Any], where: str, key: str) -> np.ndarray:
    """(K, 3) float64 from a JSON list of ``[start, end, score]``; InputError naming the first bad row."""
    if not rows:
        return np.zeros((0, 3), dtype=np.float64)
    try:
        raw = np.array(rows)
    except ValueError:  # ragged rows
        raw = None
    if raw is None or raw.dtype.kind not in "iuf" or raw.ndim != 2 or raw.shape[1] != 3:
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != 3 or not all(_is_number(value) for value in row):
                raise InputError(f"{where}: {key}[{index}] = {row!r}; expected [start, end, score] numbers in seconds.")
        try:
            raw = np.array(rows, dtype=np.float64)  # integers beyond int64 made an object array above
        except OverflowError:
            raise InputError(f"{where}: {key} has a number too large for a float; times are in seconds.") from None
    array = raw.astype(np.float64, copy=False)
    _check_finite_and_ordered(array, where, key)
    return array


def _parse_corpus_rows(rows: list[Any], where: str, key: str) -> CorpusMoments:
    """:class:`CorpusMoments` from a JSON list of ``[vid, start, end, score]``; InputError naming the bad row."""
    video_ids: list[str] = []
    numbers: list[list[float]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 4 or not all(_is_number(value) for value in row[1:]):
            raise InputError(
                f"{where}: {key}[{index}] = {row!r}; expected [vid, start, end, score] (times in seconds)."
            )
        video_ids.append(_video_id(row[0], f"{where}: {key}[{index}]"))
        numbers.append(row[1:])
    array = np.array(numbers, dtype=np.float64).reshape(len(numbers), 3)
    _check_finite_and_ordered(array, where, key)
    return CorpusMoments(tuple(video_ids), array)


def _parse_line(path: str, line_number: int, line: str) -> tuple[int, dict[str, Any]]:
    """(qid, {key: parsed value}) for one non-blank line."""
    where = f"{path}:{line_number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{where}: not valid JSON ({error.msg} at column {error.colno}); each line must be one JSON object."
        ) from None
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a JSON object with 'qid' and predictions, got {line[:60]!r}.")
    if "qid" not in item:
        raise InputError(f"{where}: no 'qid'; every line needs an integer qid matching the annotation file.")
    qid = item["qid"]
    if isinstance(qid, bool) or not isinstance(qid, int):
        raise InputError(f"{where}: qid {qid!r} must be an integer (the annotation file's qid).")
    present = [key for key in PREDICTION_KEYS if key in item]
    if not present:
        raise InputError(
            f"{where}: qid {qid} has none of the prediction keys {list(PREDICTION_KEYS)}; found {sorted(item)}."
        )
    where = f"{where}: qid {qid}"
    parsed: dict[str, Any] = {}
    for key in present:
        value = item[key]
        if not isinstance(value, list):
            raise InputError(f"{where}: '{key}' must be a list, got {type(value).__name__}.")
    if RANKING_KEY in item:
        parsed[RANKING_KEY] = [
            _video_id(vid, f"{where}: {RANKING_KEY}[{index}]") for index, vid in enumerate(item[RANKING_KEY])
        ]
    if CORPUS_KEY in item:
        parsed[CORPUS_KEY] = _parse_corpus_rows(item[CORPUS_KEY], where, CORPUS_KEY)
    if MOMENTS_KEY in item:
        rows = item[MOMENTS_KEY]
        lengths = {len(row) if isinstance(row, list) else -1 for row in rows}
        if lengths == {4}:
            if CORPUS_KEY in parsed:
                raise InputError(
                    f"{where}: corpus windows are given twice ('{CORPUS_KEY}' and 4-value '{MOMENTS_KEY}' rows); "
                    "keep one."
                )
            parsed[CORPUS_KEY] = _parse_corpus_rows(rows, where, MOMENTS_KEY)
        elif len(lengths) > 1 and lengths <= {3, 4}:
            raise InputError(
                f"{where}: '{MOMENTS_KEY}' mixes [start, end, score] and [vid, start, end, score] rows; use one "
                f"form per list (corpus windows can go under '{CORPUS_KEY}')."
            )
        else:
            parsed[MOMENTS_KEY] = _parse_moment_rows(rows, where, MOMENTS_KEY)
    return qid, parsed


def read_predictions(path: PathLike) -> Predictions:
    """Read a jsonl prediction file (format in this module's docstring).

    Returns:
        :class:`Predictions` with moments as (K, 3) float64 ``[start, end, score]`` in seconds, in file order.

    Raises:
        InputError: unreadable file, malformed line, bad value or repeated qid, naming ``file:line``.
    """
    name = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise InputError(f"{name}: prediction file not found; pass the jsonl written by your model.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{name}: cannot read the prediction file ({error}).") from None
    predictions = Predictions(path=name)
    for line_index, raw_line in enumerate(text.split("\n")):
        line = raw_line.strip()
        if not line:
            continue
        line_number = line_index + 1
        qid, parsed = _parse_line(name, line_number, line)
        if qid in predictions.lines:
            raise InputError(
                f"{name}:{line_number}: qid {qid} already appeared on line {predictions.lines[qid]}; put all of a "
                "query's predictions on one line."
            )
        predictions.lines[qid] = line_number
        if MOMENTS_KEY in parsed:
            predictions.moments[qid] = parsed[MOMENTS_KEY]
        if RANKING_KEY in parsed:
            predictions.rankings[qid] = parsed[RANKING_KEY]
        if CORPUS_KEY in parsed:
            predictions.corpus_moments[qid] = parsed[CORPUS_KEY]
    if not predictions.lines:
        raise InputError(f"{name}: no predictions (the file is empty); expected one JSON line per query.")
    return predictions


def _sorted_rows(array: np.ndarray) -> np.ndarray:
    """Rows of (K, >=1) ``array`` sorted by the last column (score), descending, ties in given order."""
    return array[np.argsort(-array[:, -1], kind="stable")]


def write_predictions(
    path: PathLike,
    moments: Mapping[int, np.ndarray] | None = None,
    rankings: Mapping[int, Sequence[str]] | None = None,
    corpus_moments: Mapping[int, CorpusMoments] | None = None,
) -> None:
    """Write predictions as jsonl that :func:`read_predictions` reads back, through a temp file and a rename.

    Moment rows are written sorted by descending score (stable), so the first listed window is the top-1 one
    (what Moment-DETR's evaluator assumes). One line per qid, in first-seen order over the three mappings.

    Args:
        path: output ``.jsonl``.
        moments: qid -> (K, 3) ``[start, end, score]`` in seconds.
        rankings: qid -> video ids, best first.
        corpus_moments: qid -> :class:`CorpusMoments`.

    Raises:
        InputError: a non-finite value or a window with start > end (naming the qid); nothing is written then.
    """
    moments = dict(moments or {})
    rankings = dict(rankings or {})
    corpus_moments = dict(corpus_moments or {})
    lines: list[str] = []
    for qid in dict.fromkeys([*moments, *rankings, *corpus_moments]):
        if isinstance(qid, bool) or not isinstance(qid, (int, np.integer)):
            raise InputError(f"write_predictions: qid {qid!r} must be an integer.")
        item: dict[str, Any] = {"qid": int(qid)}
        if qid in moments:
            rows = _checked_rows(moments[qid], f"write_predictions: qid {qid}")
            item[MOMENTS_KEY] = _sorted_rows(rows).tolist()
        if qid in rankings:
            item[RANKING_KEY] = [str(vid) for vid in rankings[qid]]
        if qid in corpus_moments:
            corpus = corpus_moments[qid]  # CorpusMoments checks its own values
            order = np.argsort(-corpus.windows[:, 2], kind="stable")
            item[CORPUS_KEY] = [[corpus.video_ids[i], *corpus.windows[i].tolist()] for i in order]
        lines.append(json.dumps(item))
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))


def write_moment_predictions(path: PathLike, moments: Mapping[int, np.ndarray]) -> None:
    """Write ``{qid: (K, 3) [start, end, score]}`` as ``pred_relevant_windows`` lines; see :func:`write_predictions`."""
    write_predictions(path, moments=moments)
