"""The antonym benchmark: its figures worked out by hand on a tiny case, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.bench.antonyms import QueryOutcome, summarize
from grounding.cli.main import main
from grounding.errors import InputError


def test_the_figures_on_a_hand_made_case() -> None:
    outcomes = [
        QueryOutcome("k1", true_score=0.9, swapped_score=0.1, true_iou=0.8, swapped_iou=0.2, true_rank=1, swapped_rank=5),
        QueryOutcome("k1", true_score=0.3, swapped_score=0.3, true_iou=0.5, swapped_iou=0.5, true_rank=2, swapped_rank=2),
        QueryOutcome("k2", true_score=0.2, swapped_score=0.6, true_iou=0.0, swapped_iou=0.6, true_rank=3, swapped_rank=1),
    ]
    summary = summarize(outcomes)
    # preference: a win, a tie (one half), a loss; ranks: only the first query's true video drops for its swap
    assert summary["all"] == {"queries": 3, "preference": 50.0, "iou_true": 43.33, "iou_swapped": 43.33,
                              "mean_rank_true": 2.0, "mean_rank_swapped": 2.67, "rank_drops": 33.33}
    assert summary["by_kind"]["k1"] == {"queries": 2, "preference": 75.0, "iou_true": 65.0, "iou_swapped": 35.0,
                                        "mean_rank_true": 1.5, "mean_rank_swapped": 3.5, "rank_drops": 50.0}
    assert summary["by_kind"]["k2"]["preference"] == 0.0 and summary["by_kind"]["k2"]["iou_swapped"] == 60.0
    without_ranks = summarize([QueryOutcome("k", 1.0, 1.0, 0.5, 0.5)])["all"]
    assert without_ranks["preference"] == 50.0 and "mean_rank_true" not in without_ranks
    with pytest.raises(InputError, match="no query"):
        summarize([])


def test_the_command_on_a_small_rendered_world(tmp_path: Path, capsys) -> None:
    pytest.importorskip("av")
    pytest.importorskip("decord")
    from grounding.assets import shipped_model_path

    world = tmp_path / "world"
    assert main(["synth", "--out", str(world), "--videos", "6", "--seed", "3", "--no-progress"]) == 0
    assert main(["extract", str(world / "videos"), "--out", str(world / "features.h5"), "--backbone",
                 "efficientnet-lite0-motion-flow", "--size", "160", "--clip-seconds", "0.5", "--no-progress"]) == 0
    assert main(["index", "--checkpoint", str(shipped_model_path()), "--features", str(world / "features.h5"),
                 "--durations", str(world / "durations.csv"), "--out", str(tmp_path / "index"), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "antonyms.json"
    assert main(["bench", "antonyms", "--checkpoint", str(shipped_model_path()), "--annotations", str(world / "train.txt"),
                 "--durations", str(world / "durations.csv"), "--features", str(world / "features.h5"),
                 "--train", str(world / "train.txt"), "--index", str(tmp_path / "index"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(table rendered-world)" in printed and "text-only control" in printed
    report = json.loads(out.read_text())
    assert report["table"] == "rendered-world" and 0 < report["swapped"] <= report["queries"]
    rows = report["rows"]
    assert set(rows) == {"model", "text-only control", "moment prior"}
    assert rows["moment prior"]["all"]["preference"] == 50.0  # blind: the same spans for a sentence and its swap
    assert rows["moment prior"]["all"]["iou_true"] == rows["moment prior"]["all"]["iou_swapped"]
    model = rows["model"]["all"]
    assert model["queries"] == report["swapped"] and 1 <= model["mean_rank_true"] <= 6
    assert sum(kind["queries"] for kind in rows["model"]["by_kind"].values()) == model["queries"]
