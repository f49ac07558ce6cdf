"""The relevance file reader: the format, and a one-line InputError naming file:line for every misfit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grounding.data.records import AnnotationSet, QueryRecord
from grounding.errors import InputError
from grounding.eval.relevance import Relevance, read_relevance, relevance_line

RECORDS = [
    QueryRecord(0, "a", 30.0, ((0.0, 10.0),), "the red ball spins."),
    QueryRecord(1, "b", 30.0, ((5.0, 8.0),), "a blue box rises."),
]


def annotations() -> AnnotationSet:
    return AnnotationSet("test.txt", "charades-sta", list(RECORDS))


def line(qid: int, vid: str, query: str, relevant: list[dict]) -> dict:
    return {"qid": qid, "vid": vid, "query": query, "relevant": relevant}


GOOD = [
    line(0, "a", "the red ball spins.", [{"vid": "a", "windows": [[0.0, 10.0]]}, {"vid": "c", "windows": [[2, 4], [6, 9]]}]),
    line(1, "b", "a blue box rises.", [{"vid": "b", "windows": [[5.0, 8.0]]}]),
]  # fmt: skip


def write(path: Path, items: list) -> Path:
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items))
    return path


def test_reads_every_relevant_video_with_its_windows(tmp_path: Path) -> None:
    relevance = read_relevance(write(tmp_path / "test.relevant.jsonl", GOOD), annotations())
    assert set(relevance.truth(0)) == {"a", "c"} and set(relevance.truth(1)) == {"b"}
    np.testing.assert_array_equal(relevance.truth(0)["c"], [[2.0, 4.0], [6.0, 9.0]])
    assert relevance.where(1) == f"{tmp_path / 'test.relevant.jsonl'}:2"


def test_relevance_line_is_what_the_reader_reads(tmp_path: Path) -> None:
    text = relevance_line(0, "a", "the red ball spins.", {"a": [(0.0, 10.0)], "c": [(2.0, 4.0)]})
    assert json.loads(text) == line(
        0, "a", "the red ball spins.", [{"vid": "a", "windows": [[0.0, 10.0]]}, {"vid": "c", "windows": [[2.0, 4.0]]}]
    )
    path = write(tmp_path / "r.jsonl", [text, GOOD[1]])
    assert set(read_relevance(path, RECORDS).truth(0)) == {"a", "c"}


def test_lines_are_matched_by_qid_not_by_position(tmp_path: Path) -> None:
    relevance = read_relevance(write(tmp_path / "r.jsonl", [GOOD[1], GOOD[0]]), annotations())
    assert relevance.lines == {1: 1, 0: 2}


@pytest.mark.parametrize(
    "items, message",
    [
        ([GOOD[0]], r"r\.jsonl: no line for qid 1 \(video b\) of the annotation file test\.txt"),
        ([GOOD[0], {**GOOD[1], "vid": "z"}], r"r\.jsonl:2: qid 1 is about video z, but the annotation file"),
        ([{**GOOD[0], "query": "the red ball jumps."}, GOOD[1]], r"r\.jsonl:1: qid 0 says 'the red ball jumps\.'"),
        ([GOOD[0], {**GOOD[1], "relevant": [{"vid": "c", "windows": [[5, 8]]}]}],
         r"r\.jsonl:2: qid 1 does not list its own video in b"),
        ([GOOD[0], {**GOOD[1], "relevant": [{"vid": "b", "windows": [[5, 9]]}]}],
         r"r\.jsonl:2: qid 1 does not list its annotated window \[5\.00, 8\.00\] in b"),
        ([*GOOD, {**GOOD[1], "qid": 7}], r"r\.jsonl:3: qid 7 is not in the annotation file test\.txt"),
        ([GOOD[0], GOOD[1], GOOD[1]], r"r\.jsonl:3: qid 1 is also on line 2"),
        (["{not json", GOOD[1]], r"r\.jsonl:1: not valid JSON"),
        ([{"qid": 0, "vid": "a"}, GOOD[1]], r"r\.jsonl:1: expected an object"),
        ([{**GOOD[0], "qid": "0"}, GOOD[1]], r"r\.jsonl:1: qid must be an integer"),
        ([{**GOOD[0], "relevant": []}, GOOD[1]], r"r\.jsonl:1: 'relevant' must be a non-empty list"),
        ([{**GOOD[0], "relevant": [{"vid": "a", "windows": [[0, 10]]}, {"vid": "a", "windows": [[1, 2]]}]}, GOOD[1]],
         r"r\.jsonl:1: relevant\[1\]: video a is listed twice"),
        ([{**GOOD[0], "relevant": [{"vid": "a", "windows": [[10, 0]]}]}, GOOD[1]],
         r"r\.jsonl:1: relevant\[0\] \(a\): window \[10\.0, 0\.0\] needs finite seconds with start < end"),
        ([GOOD[0], '{"qid": 1, "vid": "b", "query": "a blue box rises.", "relevant": [{"vid": "b", "windows": [[NaN, 8]]}]}'],
         r"r\.jsonl:2: relevant\[0\] \(b\): window \[nan, 8\.0\] needs finite seconds"),
        ([{**GOOD[0], "relevant": [{"vid": "a", "windows": []}]}, GOOD[1]], r"windows must be a non-empty list"),
    ],
)  # fmt: skip
def test_every_misfit_is_one_line_naming_file_and_line(tmp_path: Path, items: list, message: str) -> None:
    with pytest.raises(InputError, match=message) as error:
        read_relevance(write(tmp_path / "r.jsonl", items), annotations())
    assert "\n" not in str(error.value)


def test_misfits_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"grounding synth --relevance-only"):
        read_relevance(write(tmp_path / "r.jsonl", [GOOD[0]]), annotations())
    with pytest.raises(InputError, match=r"gone\.jsonl: relevance file not found; write it with grounding synth"):
        read_relevance(tmp_path / "gone.jsonl", annotations())


def test_a_query_the_annotation_reader_dropped_is_named_in_the_hint(tmp_path: Path) -> None:
    dropped = AnnotationSet("test.txt", "charades-sta", list(RECORDS))
    dropped.report.dropped.append("test.txt:3: empty sentence; dropped")
    with pytest.raises(InputError, match=r"qid 7 is not in the annotation file test\.txt \(the reader dropped 1 query"):
        read_relevance(write(tmp_path / "r.jsonl", [*GOOD, {**GOOD[1], "qid": 7}]), dropped)


def test_relevance_built_in_memory_needs_only_the_videos() -> None:
    relevance = Relevance(videos={0: {"a": np.array([[0.0, 10.0]])}, 1: {"b": np.array([[5.0, 8.0]])}})
    relevance.check(RECORDS, "the records")
    with pytest.raises(InputError, match=r"<relevance in memory> \(qid 1\): qid 1 does not list its own video"):
        Relevance(videos={0: {"a": np.array([[0.0, 10.0]])}, 1: {"c": np.array([[5.0, 8.0]])}}).check(RECORDS, "x")


def test_relevance_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, grounding.eval.relevance; print('torch' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"
