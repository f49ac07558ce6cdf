from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.cli.main import main

ALL_KEYS = [
    "R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.1", "R5@0.3", "R5@0.5", "R5@0.7",
    "mIoU", "mAP", "mAP@0.5", "mAP@0.75", "num_queries",
    "VR@1", "VR@5", "VR@10", "VR@100", "median_rank", "mean_rank",
    *[f"VCMR_R{n}@{m}" for n in (1, 5, 10, 100) for m in ("0.5", "0.7")],
]  # fmt: skip


def write_jsonl(path: Path, items: list[dict]) -> str:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return str(path)


@pytest.fixture
def annotations(tmp_path: Path) -> str:
    """Two Moment-DETR-style queries in two 30 s videos."""
    return write_jsonl(tmp_path / "test.jsonl", [
        {"qid": 0, "query": "a person opens a door", "vid": "vidA", "duration": 30, "relevant_windows": [[0, 10]]},
        {"qid": 1, "query": "a person sits down", "vid": "vidB", "duration": 30, "relevant_windows": [[10, 20], [24, 28]]},
    ])  # fmt: skip


def test_end_to_end_prints_a_table_and_writes_every_key(
    annotations: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = write_jsonl(tmp_path / "preds.jsonl", [
        # q0: top-1 [0, 8] has IoU 0.8 -> hit at 0.7
        {"qid": 0, "pred_relevant_windows": [[0, 8, 0.9], [20, 30, 0.1]], "video_ranking": ["vidA", "vidB"],
         "pred_corpus_windows": [["vidA", 0, 8, 0.9]]},
        # q1: top-1 [10, 13] has IoU 0.3 with [10, 20] -> a hit at 0.1 and 0.3 only
        {"qid": 1, "pred_relevant_windows": [[10, 13, 0.5]], "video_ranking": ["vidA", "vidB"]},
    ])  # fmt: skip
    out = tmp_path / "scores" / "metrics.json"
    code = main(["evaluate", "--annotations", annotations, "--predictions", predictions, "--nms", "0.5", "--json", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "moment retrieval (%)" in stdout and "video retrieval (%)" in stdout and "corpus moment retrieval" in stdout
    assert "2 queries" in stdout and "NMS IoU > 0.5" in stdout
    payload = json.loads(out.read_text())
    metrics = {key: value for key, value in payload.items() if key != "run"}
    assert list(metrics) == ALL_KEYS
    assert metrics["R1@0.3"] == pytest.approx(100.0) and metrics["R1@0.5"] == pytest.approx(50.0)
    assert metrics["mIoU"] == pytest.approx(100 * (0.8 + 0.3) / 2)
    assert metrics["VR@1"] == pytest.approx(50.0) and metrics["median_rank"] == pytest.approx(1.5)
    assert metrics["VCMR_R1@0.7"] == pytest.approx(50.0)
    run = payload["run"]
    assert run["nms_threshold"] == 0.5 and run["format"] == "moment-detr"
    assert run["predictions"] == predictions and run["queries_with_moment_predictions"] == 2


def test_unknown_qid_exits_2_with_one_line(annotations: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = write_jsonl(tmp_path / "preds.jsonl", [
        {"qid": 0, "pred_relevant_windows": [[0, 8, 0.9]]},
        {"qid": 42, "pred_relevant_windows": [[0, 8, 0.9]]},
    ])  # fmt: skip
    assert main(["evaluate", "--annotations", annotations, "--predictions", predictions]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "preds.jsonl:2: qid 42 is not in the annotation file" in err and "test.jsonl" in err


def test_nan_window_exits_2_naming_the_line(annotations: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(
        '{"qid": 0, "pred_relevant_windows": [[0, 8, 0.9]]}\n{"qid": 1, "pred_relevant_windows": [[NaN, 8, 0.9]]}\n'
    )
    assert main(["evaluate", "--annotations", annotations, "--predictions", str(predictions)]) == 2
    assert "preds.jsonl:2: qid 1: pred_relevant_windows[0]" in capsys.readouterr().err


def test_negative_nms_threshold_exits_2(annotations: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = write_jsonl(tmp_path / "preds.jsonl", [{"qid": 0, "pred_relevant_windows": []}])
    assert main(["evaluate", "--annotations", annotations, "--predictions", predictions, "--nms", "-1"]) == 2
    assert "NMS threshold" in capsys.readouterr().err


def test_help_ends_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    assert "example:\n  grounding evaluate --annotations" in capsys.readouterr().out


def test_relevant_counts_any_true_video_and_says_so(
    annotations: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relevant = write_jsonl(tmp_path / "test.relevant.jsonl", [
        {"qid": 0, "vid": "vidA", "query": "a person opens a door",
         "relevant": [{"vid": "vidA", "windows": [[0, 10]]}, {"vid": "vidC", "windows": [[5, 15]]}]},
        {"qid": 1, "vid": "vidB", "query": "a person sits down", "relevant": [{"vid": "vidB", "windows": [[10, 20], [24, 28]]}]},
    ])  # fmt: skip
    predictions = write_jsonl(tmp_path / "preds.jsonl", [
        # q0: vidC is true of it too -> rank 1 with --relevant (rank 2 without); its window [5, 14] has IoU 0.9
        {"qid": 0, "video_ranking": ["vidC", "vidA"], "pred_corpus_windows": [["vidC", 5, 14, 0.9]]},
        {"qid": 1, "video_ranking": ["vidA", "vidB"]},  # rank 2 either way
    ])  # fmt: skip
    out = tmp_path / "multi.json"
    argv = ["evaluate", "--annotations", annotations, "--predictions", predictions, "--json"]
    assert main([*argv, str(tmp_path / "single.json")]) == 0
    assert "multi-positive" not in capsys.readouterr().out
    assert main([*argv, str(out), "--relevant", relevant]) == 0
    stdout = capsys.readouterr().out
    assert f"relevant: {relevant}: multi-positive truth" in stdout
    assert f"video retrieval (%, any relevant video of {relevant})" in stdout
    single, multi = json.loads((tmp_path / "single.json").read_text()), json.loads(out.read_text())
    assert single["VR@1"] == 0.0 and multi["VR@1"] == pytest.approx(50.0)
    assert single["VCMR_R1@0.7"] == 0.0 and multi["VCMR_R1@0.7"] == pytest.approx(50.0)
    assert multi["R1@0.5"] == single["R1@0.5"] and [k for k in multi if k != "run"] == [k for k in single if k != "run"]
    assert multi["run"]["relevant"] == relevant and "relevant" not in single["run"]


def test_relevant_file_of_another_split_exits_2_with_one_line(
    annotations: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relevant = write_jsonl(tmp_path / "other.relevant.jsonl", [
        {"qid": 0, "vid": "vidA", "query": "a person opens a door", "relevant": [{"vid": "vidA", "windows": [[0, 10]]}]},
        {"qid": 1, "vid": "vidB", "query": "a person stands up", "relevant": [{"vid": "vidB", "windows": [[10, 20]]}]},
    ])  # fmt: skip
    predictions = write_jsonl(tmp_path / "preds.jsonl", [{"qid": 0, "video_ranking": ["vidA"]}])
    argv = ["evaluate", "--annotations", annotations, "--predictions", predictions, "--relevant", relevant]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "other.relevant.jsonl:2: qid 1 says 'a person stands up'" in err and "test.jsonl" in err
