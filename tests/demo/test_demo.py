"""``grounding demo`` end to end on a tiny fresh world with the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.assets import SHIPPED_MODEL_WORLD_SEED, shipped_model_path
from grounding.cli.main import main

pytest.importorskip("av", reason="the demo renders its world with PyAV ('av')")
pytest.importorskip("decord", reason="the demo decodes its world with decord")


def test_the_shipped_model_loads_and_says_what_it_is() -> None:
    from grounding.inference import Grounder

    grounder = Grounder.from_pretrained(shipped_model_path())
    shipped = grounder.model.pretrained_metadata["shipped"]
    assert shipped["world_seed"] == SHIPPED_MODEL_WORLD_SEED and shipped["dtype"] == "float16"
    assert "ranking" in grounder.model.pretrained_metadata  # fitted: the demo can rank
    assert grounder.pipeline.extraction.backbone == "efficientnet-lite0-motion-flow"
    assert next(grounder.model.parameters()).dtype.is_floating_point


def test_the_demo_runs_every_step_and_writes_the_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--videos", "7", "--seed", "5", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "$ grounding synth" in printed and "$ grounding predict" in printed and "$ grounding index" in printed
    assert "shipped model" in printed and "moment-prior" in printed
    summary = json.loads((out / "summary.json").read_text())
    test = summary["metrics"]["test"]
    assert set(test) == {"model", "full-video", "moment-prior"}
    assert test["model"]["num_queries"] == test["moment-prior"]["num_queries"] > 0
    assert 1 <= len(summary["examples"]) <= 3
    for example in summary["examples"]:
        assert example["spans"] and len(example["curve_times"]) == len(example["curve_scores"]) == 200
    assert len(summary["rankings"]) >= 1 and all(len(rows) == 5 for _, rows in summary["rankings"])
    figures = summary["ranking_metrics"]
    assert figures["videos"] == 7 and figures["num_queries"] == test["model"]["num_queries"]
    assert 0 <= figures["VR@1"] <= figures["VR@5"] <= figures["VR@10"] == 100.0  # 7 videos: all within the top 10
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "data:video/mp4;base64," in page and "data-seek=" in page
    # a rerun resumes: the world and its features are there, nothing is rendered or extracted again
    assert main(["demo", "--out", str(out), "--videos", "7", "--seed", "5", "--no-progress"]) == 0
    assert "0 videos rendered, 7 already there" in (out / "logs" / "synth.log").read_text()
    assert "0 videos extracted, 7 already done" in (out / "logs" / "extract.log").read_text()


def test_the_shipped_model_s_own_world_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--seed", str(SHIPPED_MODEL_WORLD_SEED)]) == 2
    assert "the world the shipped model was trained on" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert main(["demo", "--out", str(tmp_path / "d"), "--videos", "2"]) == 2
    assert "--videos must be from 3" in capsys.readouterr().err


def test_train_trains_a_small_model_and_scores_the_shipped_one_beside_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--videos", "8", "--seed", "6", "--train", "--train-epochs", "1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "$ grounding train --config" in printed and "$ grounding fit-ranker" in printed
    assert "trained here" in printed and "shipped model" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trained"] and set(summary["metrics"]["test"]) == {"model", "shipped", "full-video", "moment-prior"}
    assert (out / "run" / "ranker" / "model.safetensors").is_file()
    assert "model trained by this demo" in (out / "report" / "index.html").read_text(encoding="utf-8")
