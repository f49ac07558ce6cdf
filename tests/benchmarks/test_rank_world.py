"""benchmarks/rank_world.py: the reliability of top-span scores it reports beside the ranking table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import rank_world  # noqa: E402


def test_reliability_counts_each_video_s_top_span_against_multi_positive_truth(tmp_path: Path) -> None:
    relevance = tmp_path / "test.relevant.jsonl"
    relevance.write_text(json.dumps({"qid": 0, "vid": "a", "query": "q", "relevant": [
        {"vid": "a", "windows": [[0.0, 4.0]]}, {"vid": "b", "windows": [[10.0, 12.0]]}]}) + "\n")
    ranking = tmp_path / "rank.jsonl"
    ranking.write_text(json.dumps({"qid": 0, "pred_corpus_windows": [
        ["b", 10.0, 12.0, 0.9],   # a relevant video that is not the annotated one, right window: right
        ["a", 6.0, 8.0, 0.6],     # the annotated video, wrong window: wrong
        ["b", 0.0, 1.0, 0.5],     # b's second span: not counted (top span only)
        ["c", 0.0, 4.0, 0.2],     # an irrelevant video: wrong
    ]}) + "\n")
    curve = rank_world.reliability(ranking, relevance, bins=3)
    assert curve["spans"] == 3
    assert [row["fraction_right"] for row in curve["bins"]] == [0.0, 0.0, 1.0]
    assert [row["mean_score"] for row in curve["bins"]] == pytest.approx([0.2, 0.6, 0.9])
    assert curve["ece"] == pytest.approx((0.2 + 0.6 + 0.1) / 3)
