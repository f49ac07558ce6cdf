"""``grounding index`` and ``grounding rank``: build, resume, extend, rank, and score with ``grounding evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grounding.cli.main import main
from grounding.ranking import VideoIndex
from tests.training import single_thread, write_tiny_config, write_tiny_world  # noqa: F401 (autouse)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rank")
    world = write_tiny_world(folder / "world", num_videos=10, num_test=3)
    config = write_tiny_config(folder / "tiny.yaml", world, folder / "run", epochs=1)
    assert main(["train", "--config", str(config)]) == 0
    return world, folder / "run"


def index_args(world: Path, run: Path, out: Path, *extra: str) -> list[str]:
    return ["index", "--checkpoint", str(run), "--features", str(world / "features.h5"), "--out", str(out),
            "--no-progress", *extra]


def test_an_interrupted_index_run_resumes_and_add_extends(trained, tmp_path: Path, monkeypatch, capsys) -> None:
    world, run = trained
    assert main(index_args(world, run, tmp_path / "whole")) == 0
    whole = VideoIndex.open(tmp_path / "whole")

    import grounding.ranking.build as build

    real = build.feature_source

    def dying_source(*args, **kwargs):
        source = real(*args, **kwargs)
        load, calls = source.load, []

        def load_until_killed(video_id: str):
            calls.append(video_id)
            if len(calls) == 40:  # inside the second chunk of 32
                raise KeyboardInterrupt
            return load(video_id)

        source.load = load_until_killed
        return source

    (tmp_path / "ids.txt").write_text("\n".join(whole.video_ids[:7]) + "\n")
    assert main(index_args(world, run, tmp_path / "parts", "--ids", str(tmp_path / "ids.txt"))) == 0
    capsys.readouterr()
    assert main(index_args(world, run, tmp_path / "parts")) == 2
    assert "already holds a finished index; pass --add" in capsys.readouterr().err
    assert main(index_args(world, run, tmp_path / "parts", "--add")) == 0
    capsys.readouterr()
    assert main(index_args(world, run, tmp_path / "parts", "--add")) == 0
    assert "0 videos added, 10 already there" in capsys.readouterr().out
    parts = VideoIndex.open(tmp_path / "parts")
    assert parts.video_ids == whole.video_ids[:7] + [v for v in whole.video_ids if v not in whole.video_ids[:7]]
    for video_id in whole.video_ids:
        a, b = whole.row_of[video_id], parts.row_of[video_id]
        assert np.array_equal(whole.embeddings[a], parts.embeddings[b])
        assert np.array_equal(whole.clip_states([a]), parts.clip_states([b]))

    monkeypatch.setattr(build, "feature_source", dying_source)
    big = write_tiny_world(tmp_path / "big", num_videos=70, num_test=3)
    # the tiny model takes 6-d features; the big world has them too, with other videos
    assert main(["index", "--checkpoint", str(run), "--features", str(big / "features.h5"), "--out",
                 str(tmp_path / "big-index"), "--no-progress"]) == 130
    interrupted = VideoIndex.open(tmp_path / "big-index")
    assert len(interrupted) == 32 and not interrupted.info.complete  # the first chunk was committed
    monkeypatch.setattr(build, "feature_source", real)
    capsys.readouterr()
    assert main(["index", "--checkpoint", str(run), "--features", str(big / "features.h5"), "--out",
                 str(tmp_path / "big-index"), "--no-progress"]) == 0
    assert "38 videos added, 32 already there" in capsys.readouterr().out
    assert VideoIndex.open(tmp_path / "big-index").info.complete


def test_rank_queries_writes_rankings_that_evaluate_scores(trained, tmp_path: Path, capsys) -> None:
    world, run = trained
    assert main(index_args(world, run, tmp_path / "index", "--bank", str(world / "train.jsonl"), "--bank-size", "4")) == 0
    out = tmp_path / "rank.jsonl"
    assert main(["rank", "--index", str(tmp_path / "index"), "--queries", str(world / "test.jsonl"), "--out", str(out),
                 "--rerank", "5", "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["qid"] for line in lines] == [7, 8, 9]
    assert all(len(line["video_ranking"]) == 10 and len(set(line["video_ranking"])) == 10 for line in lines)
    assert all(line["transductive"] is False for line in lines)
    windows = lines[0]["pred_corpus_windows"]
    assert windows and all(len(row) == 4 for row in windows)
    assert [row[3] for row in windows] == sorted((row[3] for row in windows), reverse=True)
    scores = tmp_path / "scores.json"
    capsys.readouterr()
    assert main(["evaluate", "--annotations", str(world / "test.jsonl"), "--predictions", str(out), "--json",
                 str(scores)]) == 0
    figures = json.loads(scores.read_text())
    assert {"VR@1", "VR@10", "VCMR_R1@0.5"} <= set(figures)
    assert figures["VR@10"] == 100.0  # 10 videos, all ranked

    capsys.readouterr()
    assert main(["rank", "--index", str(tmp_path / "index"), "--queries", str(world / "test.jsonl"), "--out",
                 str(tmp_path / "t.jsonl"), "--dual-softmax", "transductive", "--bank-size", "2", "--no-progress"]) == 0
    assert "transductive: the dual-softmax bank was drawn from the queries being ranked" in capsys.readouterr().out
    assert all(json.loads(line)["transductive"] for line in (tmp_path / "t.jsonl").read_text().splitlines())
    assert main(["rank", "--index", str(tmp_path / "index"), "--query", "a red ball jumps", "--dual-softmax", "train",
                 "--top-videos", "3", "--json", str(tmp_path / "one.json"), "--no-progress"]) == 0
    payload = json.loads((tmp_path / "one.json").read_text())
    assert payload["transductive"] is False and len(payload["rankings"][0]["videos"]) == 3
    assert "a red ball jumps" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--query", "   "], "is empty"),
        (["--query", "a red ball jumps", "--stage1-only", "--dual-softmax", "train"], "needs rerank >= 1"),
        (["--query", "a red ball jumps", "--dual-softmax", "transductive"], "draws its bank from --queries"),
        (["--query", "a red ball jumps", "--top-videos", "0"], "--top-videos must be >= 1"),
    ],
)
def test_rank_refuses_bad_input_in_one_line(trained, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    world, run = trained
    if not (tmp_path / "index").exists():
        assert main(index_args(world, run, tmp_path / "index")) == 0
    capsys.readouterr()
    assert main(["rank", "--index", str(tmp_path / "index"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_rank_on_a_folder_that_is_not_an_index(tmp_path: Path, capsys) -> None:
    assert main(["rank", "--index", str(tmp_path), "--query", "a red ball jumps"]) == 2
    assert "is not a grounding index" in capsys.readouterr().err


def test_index_ids_from_a_broken_annotation_file_reports_the_reader_error(trained, tmp_path: Path, capsys) -> None:
    world, run = trained
    broken = tmp_path / "broken.txt"
    broken.write_text("v00 1.0 2.0##a red ball jumps\nv01 not-a-number 3.0##the blue box spins\n")
    assert main(index_args(world, run, tmp_path / "index", "--ids", str(broken))) == 2
    err = capsys.readouterr().err
    assert "neither a list of video ids" in err and "broken.txt" in err and len(err.strip().splitlines()) == 1
