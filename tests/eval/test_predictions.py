from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grounding.errors import InputError
from grounding.eval.predictions import (
    CorpusMoments,
    read_predictions,
    write_moment_predictions,
    write_predictions,
)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_all_three_kinds_and_keeps_file_order(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "preds.jsonl", [
        json.dumps({"qid": 4, "query": "ignored", "pred_relevant_windows": [[1, 2, 0.1], [0, 5.5, 0.9]]}),
        "",
        json.dumps({"qid": 2, "video_ranking": ["v1", 17], "pred_corpus_windows": [["v1", 0, 1, 0.3]]}),
    ])  # fmt: skip
    predictions = read_predictions(path)
    np.testing.assert_array_equal(predictions.moments[4], [[1, 2, 0.1], [0, 5.5, 0.9]])  # unsorted, as given
    assert predictions.moments[4].dtype == np.float64
    assert predictions.rankings == {2: ["v1", "17"]}  # integer video ids become strings
    assert predictions.corpus_moments[2].video_ids == ("v1",)
    np.testing.assert_array_equal(predictions.corpus_moments[2].windows, [[0, 1, 0.3]])
    assert predictions.lines == {4: 1, 2: 3}  # blank lines still count
    assert predictions.qids() == [4, 2]


def test_four_value_rows_are_corpus_windows(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"qid": 0, "pred_relevant_windows": [["a", 1, 2, 0.5]]})])
    predictions = read_predictions(path)
    assert predictions.moments == {} and predictions.corpus_moments[0].video_ids == ("a",)


def test_empty_list_means_predicted_nothing(tmp_path: Path) -> None:
    predictions = read_predictions(write_lines(tmp_path / "p.jsonl", ['{"qid": 0, "pred_relevant_windows": []}']))
    assert predictions.moments[0].shape == (0, 3)


def test_zero_length_window_is_allowed(tmp_path: Path) -> None:
    predictions = read_predictions(write_lines(tmp_path / "p.jsonl", ['{"qid": 0, "pred_relevant_windows": [[3, 3, 1]]}']))
    np.testing.assert_array_equal(predictions.moments[0], [[3, 3, 1]])


def test_repeated_qid_names_both_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [
        '{"qid": 1, "pred_relevant_windows": [[0, 1, 1]]}',
        '{"qid": 2, "pred_relevant_windows": [[0, 1, 1]]}',
        '{"qid": 1, "video_ranking": ["a"]}',
    ])  # fmt: skip
    with pytest.raises(InputError, match=r"p\.jsonl:3: qid 1 already appeared on line 1"):
        read_predictions(path)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"qid": 0, "pred_relevant_windows": [[0, NaN, 1]]}', r":2: qid 0: pred_relevant_windows\[0\].*NaN or inf"),
        ('{"qid": 0, "pred_relevant_windows": [[0, 1, 1], [0, 2, Infinity]]}', r":2: .*\[1\].*NaN or inf"),
        ('{"qid": 0, "pred_relevant_windows": [[5, 2, 1]]}', r":2: qid 0: .*start 5 > end 2"),
        ('{"qid": 0, "pred_relevant_windows": [[0, "1", 1]]}', r":2: qid 0: pred_relevant_windows\[0\] = \[0, '1', 1\]"),
        ('{"qid": 0, "pred_relevant_windows": [[0, 1]]}', r":2: .*expected \[start, end, score\]"),
        ('{"qid": 0, "pred_relevant_windows": [[0, 1, 1], ["a", 0, 1, 1]]}', r":2: .*mixes"),
        ('{"qid": 0, "pred_corpus_windows": [[null, 0, 1, 1]]}', r":2: .*video id None"),
        ('{"qid": 0, "video_ranking": "abc"}', r":2: qid 0: 'video_ranking' must be a list"),
        ('{"qid": "0", "pred_relevant_windows": []}', r":2: qid '0' must be an integer"),
        ('{"pred_relevant_windows": []}', r":2: no 'qid'"),
        ('{"qid": 0, "pred_windows": []}', r":2: qid 0 has none of the prediction keys"),
        ('{"qid": 0, "pred_relevant_windows": [[0, 1, 1]]', r":2: not valid JSON"),
        ("[1, 2]", r":2: expected a JSON object"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / "p.jsonl", ['{"qid": 9, "pred_relevant_windows": []}', line])
    with pytest.raises(InputError, match=message):
        read_predictions(path)


def test_missing_and_empty_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_predictions(tmp_path / "absent.jsonl")
    with pytest.raises(InputError, match="empty"):
        read_predictions(write_lines(tmp_path / "blank.jsonl", [""]))


def test_write_then_read_round_trip_sorts_by_score(tmp_path: Path) -> None:
    path = tmp_path / "out" / "preds.jsonl"
    write_moment_predictions(path, {3: np.array([[0, 1, 0.2], [2, 4, 0.7], [5, 6, 0.2]]), 1: np.zeros((0, 3))})
    assert sorted(path.parent.iterdir()) == [path]  # written through a temporary file (grounding.files), then renamed
    first_line = json.loads(path.read_text().splitlines()[0])
    assert first_line == {"qid": 3, "pred_relevant_windows": [[2.0, 4.0, 0.7], [0.0, 1.0, 0.2], [5.0, 6.0, 0.2]]}
    predictions = read_predictions(path)
    np.testing.assert_array_equal(predictions.moments[3], [[2, 4, 0.7], [0, 1, 0.2], [5, 6, 0.2]])
    assert predictions.moments[1].shape == (0, 3)


def test_write_predictions_puts_every_key_of_a_qid_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    write_predictions(
        path,
        moments={0: np.array([[0, 1, 1.0]])},
        rankings={0: ["a", "b"], 5: ["b"]},
        corpus_moments={0: CorpusMoments(("a", "b"), np.array([[0, 1, 0.1], [2, 3, 0.9]]))},
    )
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"qid": 0, "pred_relevant_windows": [[0.0, 1.0, 1.0]], "video_ranking": ["a", "b"],
         "pred_corpus_windows": [["b", 2.0, 3.0, 0.9], ["a", 0.0, 1.0, 0.1]]},
        {"qid": 5, "video_ranking": ["b"]},
    ]  # fmt: skip
    assert read_predictions(path).rankings == {0: ["a", "b"], 5: ["b"]}


def test_writer_refuses_what_the_reader_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    with pytest.raises(InputError, match="qid 2: .*start 3 > end 1"):
        write_moment_predictions(path, {2: np.array([[3.0, 1.0, 0.5]])})
    assert not path.exists()
    with pytest.raises(InputError, match="to match 2 video ids"):
        CorpusMoments(("a", "b"), np.array([[0.0, 1.0, 0.5]]))
