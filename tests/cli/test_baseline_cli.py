"""`grounding baseline`, run in-process on a tiny Charades-STA split written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.cli.main import main

TRAIN_LINES = [
    "AAAAA 0.0 6.0##a person opens a door.",
    "AAAAA 0.0 6.0##someone opens the door.",
    "BBBBB 0.0 12.0##a person sits down.",
    "CCCCC 0.0 3.0##person takes a cup.",
]
TEST_LINES = [
    "DDDDD 0.0 5.0##a person eats.",
    "EEEEE 10.0 20.0##person drinks from a cup.",
]
# Charades_v1_*.csv style: an id column, other columns, the duration in `length` last
CSV_ROWS = {"AAAAA": 20.0, "BBBBB": 40.0, "CCCCC": 10.0, "DDDDD": 25.0, "EEEEE": 50.0}


@pytest.fixture
def charades(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "train.txt").write_text("\n".join(TRAIN_LINES) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(TEST_LINES) + "\n")
    header = "id,subject,scene,script,length\n"
    train_ids, test_ids = ["AAAAA", "BBBBB", "CCCCC"], ["DDDDD", "EEEEE"]
    for name, ids in (("train.csv", train_ids), ("test.csv", test_ids)):
        rows = "".join(f'{vid},S1,Kitchen,"opens, then sits",{CSV_ROWS[vid]}\n' for vid in ids)
        (tmp_path / name).write_text(header + rows)
    return {name: str(tmp_path / name) for name in ("train.txt", "test.txt", "train.csv", "test.csv")}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_moment_prior_end_to_end_then_evaluate(
    charades: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prior.jsonl"
    summary = tmp_path / "summary.json"
    code = main(
        [
            "baseline", "--method", "moment-prior",
            "--train", charades["train.txt"], "--test", charades["test.txt"],
            "--durations", charades["train.csv"], "--durations", charades["test.csv"],
            "--top-k", "3", "--grid-size", "10", "--bandwidth", "0", "--out", str(out), "--json", str(summary),
        ]
    )  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.strip() == f"baseline moment-prior: 2 queries of {charades['test.txt']} -> {out}"
    lines = _read_jsonl(out)
    assert [line["qid"] for line in lines] == [0, 1]
    # every training moment is [0, 0.3] of its video: the top window is that fraction of each test video
    assert lines[0]["pred_relevant_windows"][0] == pytest.approx([0.0, 7.5, 1.0])
    assert lines[1]["pred_relevant_windows"][0] == pytest.approx([0.0, 15.0, 1.0])
    assert json.loads(summary.read_text())["num_train_queries"] == 4

    metrics_path = tmp_path / "metrics.json"
    code = main(
        [
            "evaluate", "--annotations", charades["test.txt"], "--durations", charades["test.csv"],
            "--predictions", str(out), "--json", str(metrics_path),
        ]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads(metrics_path.read_text())  # metric keys at the top level
    # qid 0: [0, 7.5] vs [0, 5] -> IoU 0.667, a hit at 0.5; qid 1: [0, 15] vs [10, 20] -> IoU 0.25, a miss
    assert metrics["R1@0.5"] == pytest.approx(50.0)
    assert metrics["R1@0.7"] == pytest.approx(0.0)
    assert metrics["mIoU"] == pytest.approx(100 * (5 / 7.5 + 5 / 20) / 2)


def test_iou_prior_cli_takes_its_own_options_and_notes_others(
    charades: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "iou.jsonl"
    code = main(
        [
            "baseline", "--method", "iou-prior", "--train", charades["train.txt"], "--test", charades["test.txt"],
            "--durations", charades["train.csv"], charades["test.csv"],
            "--grid-size", "10", "--match-iou", "0.7", "--bandwidth", "0.1", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert "--bandwidth is not used by iou-prior" in capsys.readouterr().err
    lines = _read_jsonl(out)
    # every training moment is [0, 0.3] of its video: that exact candidate matches all 4 with mean IoU 1
    assert lines[0]["pred_relevant_windows"][0] == pytest.approx([0.0, 7.5, 1.25])
    assert len(lines[1]["pred_relevant_windows"]) == 10


@pytest.mark.parametrize("method, expected_rows", [("full-video", 1), ("uniform-random", 4)])
def test_blind_methods_need_no_training_split(
    charades: dict[str, str], tmp_path: Path, method: str, expected_rows: int, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"{method}.jsonl"
    code = main(
        [
            "baseline", "--method", method, "--test", charades["test.txt"], "--durations", charades["test.csv"],
            "--top-k", "4", "--seed", "3", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    lines = _read_jsonl(out)
    assert [len(line["pred_relevant_windows"]) for line in lines] == [expected_rows, expected_rows]
    for line, duration in zip(lines, (25.0, 50.0)):
        for start, end, _ in line["pred_relevant_windows"]:
            assert 0.0 <= start <= end <= duration
    if method == "full-video":
        assert lines[1]["pred_relevant_windows"] == [[0.0, 50.0, 1.0]]
        assert "--top-k is not used by full-video" in capsys.readouterr().err


def test_uniform_random_cli_is_reproducible(charades: dict[str, str], tmp_path: Path) -> None:
    outputs = []
    for run_index in range(2):
        out = tmp_path / f"random{run_index}.jsonl"
        args = ["baseline", "--method", "uniform-random", "--test", charades["test.txt"]]
        assert main([*args, "--durations", charades["test.csv"], "--seed", "7", "--out", str(out)]) == 0
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]


def test_moment_prior_without_train_is_a_one_line_error(
    charades: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prior.jsonl"
    code = main(
        ["baseline", "--method", "moment-prior", "--test", charades["test.txt"],
         "--durations", charades["test.csv"], "--out", str(out)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass them with --train" in err
    assert not out.exists()


def test_unknown_method_lists_the_choices(charades: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["baseline", "--method", "oracle", "--test", charades["test.txt"], "--out", "x.jsonl"])
    assert stopped.value.code == 2
    assert "'full-video', 'uniform-random', 'moment-prior', 'iou-prior'" in capsys.readouterr().err


def test_help_ends_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["baseline", "--help"])
    assert stopped.value.code == 0
    assert "example:\n  grounding baseline --method moment-prior" in capsys.readouterr().out
