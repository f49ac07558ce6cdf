"""The report page on a hand-made result: every piece in place, spans where their seconds say."""

from __future__ import annotations

import re
from pathlib import Path

from grounding.demo.run import DemoResult, GroundedSentence, RankedRow
from grounding.report.page import TIMELINE_WIDTH, write_demo_report


def _result(tmp_path: Path) -> DemoResult:
    world = tmp_path / "world"
    (world / "videos").mkdir(parents=True)
    for name in ("syn00001", "syn00002"):  # the page inlines the bytes; it never decodes them
        (world / "videos" / f"{name}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + name.encode())
    figures = {"R1@0.3": 70.0, "R1@0.5": 55.5, "R1@0.7": 40.0, "R5@0.5": 80.0, "mIoU": 50.0, "num_queries": 12}
    prior = {**figures, "R1@0.5": 7.25}
    result = DemoResult(world=world, checkpoint="shipped", seed=5)
    result.metrics = {"test": {"model": figures, "full-video": prior, "moment-prior": prior}}
    result.example_video, result.example_duration = "syn00001", 20.0
    result.examples = [GroundedSentence("the red circle spins.", (5.0, 10.0), [(4.0, 11.0, 0.9), (12.0, 14.0, 0.2)],
                                        [0.0, 10.0, 20.0], [0.1, 0.9, 0.1])]
    result.rankings = [("the red circle spins.", [RankedRow("syn00001", 0.8, (4.0, 11.0), True),
                                                  RankedRow("syn00002", 0.1, None, False)])]
    result.ranking_metrics = {"VR@1": 41.03, "VR@5": 74.36, "VR@10": 87.18, "num_queries": 39, "videos": 60}
    result.seconds = {"world": 1.0}
    return result


def test_the_page_holds_the_table_the_playable_videos_and_clickable_spans(tmp_path: Path) -> None:
    page = write_demo_report(_result(tmp_path), tmp_path / "report")
    text = page.read_text(encoding="utf-8")
    assert (tmp_path / "report" / "r1-at-0.5.png").stat().st_size > 1000
    assert "<td>55.50</td>" in text and "<td>7.25</td>" in text  # the model and a blind baseline, side by side
    assert text.count("data:video/mp4;base64,") == 3  # the example video and both ranked videos, inlined
    assert 'id="example"' in text and 'id="rank0-1"' in text
    # the top span starts at 4 s of 20: x = 4 / 20 * width, and clicking it seeks to 4 s
    assert re.search(rf'<rect class="span" x="{4 / 20 * TIMELINE_WIDTH:g}" [^>]*data-seek="4.000" data-video="example"', text)
    assert f'x="{5 / 20 * TIMELINE_WIDTH:g}" y="2" width="{5 / 20 * TIMELINE_WIDTH:g}"' in text  # the truth, 5-10 s
    assert "VR@1 41.03" in text and "the world's 60 videos" in text
    assert "not true" in text and "http" not in text  # nothing fetched from anywhere


def test_sentences_are_escaped(tmp_path: Path) -> None:
    result = _result(tmp_path)
    result.examples[0].sentence = "<script>alert(1)</script>"
    text = write_demo_report(result, tmp_path / "report").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
