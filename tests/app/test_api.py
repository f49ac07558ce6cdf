"""The app's JSON API through FastAPI's test client: answers, and one clear message for every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="grounding app needs the 'app' extra")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from grounding.app import AppSettings, create_app  # noqa: E402
from grounding.assets import shipped_model_path  # noqa: E402


@pytest.fixture(scope="module")
def client(video_folder: Path) -> TestClient:
    app = create_app(AppSettings(checkpoint=shipped_model_path(), videos=video_folder, max_upload_mb=1, max_seconds=60))
    with TestClient(app) as test_client:
        yield test_client


def test_the_page_and_the_video_list(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="ground-form"' in page.text and '<form id="search-form"' not in page.text
    assert client.get("/api/videos").json() == {"videos": ["carphone"]}
    assert client.get("/media/carphone").headers["content-type"] == "video/mp4"


def test_grounding_a_sentence_gives_spans_inside_the_video(client: TestClient) -> None:
    answer = client.post("/api/ground", json={"video_id": "carphone", "sentence": "a man talks on the phone", "top_k": 3})
    assert answer.status_code == 200
    body = answer.json()
    assert 1 <= len(body["spans"]) <= 3 and body["duration"] > 0
    assert all(0 <= span["start"] < span["end"] <= body["duration"] for span in body["spans"])
    assert len(body["curve"]["times"]) == len(body["curve"]["scores"]) == 200


@pytest.mark.parametrize("request_body, message", [
    ({"video_id": "carphone", "sentence": "   "}, "type a sentence"),
    ({"video_id": "nowhere", "sentence": "a man talks"}, "pick a video"),
])
def test_bad_grounding_requests_get_one_line(client: TestClient, request_body: dict, message: str) -> None:
    answer = client.post("/api/ground", json=request_body)
    assert answer.status_code == 400 and message in answer.json()["error"]
    assert "Traceback" not in answer.text


def test_uploads_are_checked(client: TestClient, ten_minute_video: Path, video_folder: Path) -> None:
    not_a_video = client.post("/api/upload", files={"file": ("notes.mp4", b"this is not a video", "video/mp4")})
    assert not_a_video.status_code == 400 and "'notes.mp4' is not a video this app can read" in not_a_video.json()["error"]
    too_big = client.post("/api/upload", files={"file": ("big.mp4", b"\0" * (2 << 20), "video/mp4")})
    assert too_big.status_code == 400 and "over 1 MB" in too_big.json()["error"]
    too_long = client.post("/api/upload", files={"file": ("long.mp4", ten_minute_video.read_bytes(), "video/mp4")})
    assert too_long.status_code == 400 and "10.0 minutes long" in too_long.json()["error"]
    good = client.post("/api/upload", files={"file": ("<i>mine.mp4", (video_folder / "carphone.mp4").read_bytes(),
                                                      "video/mp4")})
    assert good.status_code == 200
    video_id = good.json()["video_id"]
    assert "<" not in video_id and video_id.endswith("--i-mine")  # ids go into the page: plain characters only
    assert video_id in client.get("/api/videos").json()["videos"]
    assert client.post("/api/ground", json={"video_id": video_id, "sentence": "a man"}).status_code == 200


def test_search_without_an_index_says_how_to_get_one(client: TestClient) -> None:
    answer = client.post("/api/rank", json={"sentence": "a man"})
    assert answer.status_code == 400 and "--index" in answer.json()["error"]
    assert client.post("/api/ground", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
