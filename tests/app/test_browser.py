"""The app in headless Chromium: started on a free local port, a typed sentence gives spans that seek the video,
and bad input shows a message in the page."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("fastapi", reason="grounding app needs the 'app' extra")
uvicorn = pytest.importorskip("uvicorn", reason="grounding app needs the 'app' extra")

from grounding.app import AppSettings, create_app  # noqa: E402
from grounding.assets import shipped_model_path  # noqa: E402
from tests.demo.browser import chromium_driver, console_errors, wait_for  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(video_folder: Path) -> Iterator[str]:
    port = _free_port()
    app = create_app(AppSettings(checkpoint=shipped_model_path(), videos=video_folder, max_upload_mb=5, max_seconds=60))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive(), "the app did not stop"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from chromium_driver()



def test_a_typed_sentence_gives_spans_that_seek_the_video(driver: Any, app_url: str) -> None:
    driver.get(app_url)
    wait_for(driver, "return document.getElementById('video-select').value === 'carphone'")
    wait_for(driver, "return document.getElementById('player').readyState >= 2")
    driver.find_element("id", "sentence").send_keys("a man talks on the phone")
    driver.find_element("css selector", "#ground-form button").click()
    wait_for(driver, "return document.querySelectorAll('#spans button').length > 0")
    assert driver.execute_script("return document.querySelectorAll('#timeline rect.span').length") >= 1
    button = driver.find_elements("css selector", "#spans button")[0]
    start = float(button.get_attribute("data-seek"))
    button.click()
    wait_for(driver, f"const v = document.getElementById('player'); return !v.paused && v.currentTime >= {start} - 0.05")
    assert driver.find_element("id", "message").text == ""
    assert console_errors(driver) == []


def test_bad_input_gets_a_message_in_the_page(driver: Any, app_url: str, tmp_path: Path) -> None:
    driver.get(app_url)
    wait_for(driver, "return document.getElementById('video-select').value === 'carphone'")
    driver.find_element("css selector", "#ground-form button").click()  # no sentence typed
    wait_for(driver, "return document.getElementById('message').textContent.includes('type a sentence')")
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is not a video")
    driver.find_element("id", "upload").send_keys(str(notes))
    wait_for(driver, "return document.getElementById('message').textContent.includes('is not a video this app can read')")
    assert "Traceback" not in driver.page_source
