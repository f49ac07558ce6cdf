"""``grounding app``: a local web app to ground a typed sentence in a picked or uploaded video, and to search an index.

FastAPI (with uvicorn) serves one small page (:mod:`grounding.app.page`) and a JSON API:

- ``GET /api/videos``: the videos of ``--videos DIR`` and those uploaded in this session;
- ``GET /media/{video_id}``: a video's file, for the page's player;
- ``POST /api/upload`` (multipart ``file``): a video, size-limited while it streams in, then opened with the same
  decoder and checks as ``grounding extract``; too long a video is refused before any frame is featurised;
- ``POST /api/ground`` (``{"video_id", "sentence", "top_k"}``): the top spans in seconds and the score curve;
- ``POST /api/rank`` (``{"sentence", "top_videos"}``): with ``--index``, the corpus ranked.

Every bad input gets HTTP 400 with ``{"error": "..."}``: one sentence naming what is wrong and what to do, which
the page shows as it is; no stack trace ever leaves the server. It binds to 127.0.0.1 unless told otherwise.
"""

# No "from __future__ import annotations": FastAPI reads the routes' annotations (UploadFile is imported
# inside create_app, so they must be evaluated where the routes are defined).
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grounding.errors import GroundingError, InputError

DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_SECONDS = 300.0
UPLOAD_CHUNK = 1 << 20


@dataclass
class AppSettings:
    """What the app serves and what it accepts.

    Attributes:
        checkpoint: the grounding checkpoint (default: the shipped model).
        videos: a folder of videos to pick from (ids as ``grounding extract`` names them), or None.
        index: an index from ``grounding index`` for the search box, or None.
        max_upload_mb: uploads larger than this are cut off and refused.
        max_seconds: videos longer than this are refused (features of a long video cost minutes on a CPU).
    """

    checkpoint: Path
    videos: Path | None = None
    index: Path | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_seconds: float = DEFAULT_MAX_SECONDS


@dataclass
class _State:
    grounder: Any
    ranker: Any
    paths: dict[str, Path]
    uploads: Path
    encoded: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one model call at a time


def _video_paths(folder: Path | None) -> dict[str, Path]:
    if folder is None:
        return {}
    from grounding.video import find_videos

    if not folder.is_dir():
        raise InputError(f"--videos {folder}: no such folder; pass a folder of video files")
    return {video.video_id: Path(video.path) for video in find_videos([folder])}


def check_duration(path: Path, max_seconds: float) -> float:
    """The video's duration in seconds from its container (no frame featurised); InputError when it cannot be
    opened or is longer than ``max_seconds``."""
    from grounding.video.decode import ClipFrameReader

    duration = float(ClipFrameReader(path, size=32).duration)
    if duration > max_seconds:
        raise InputError(
            f"the video is {duration / 60:.1f} minutes long; this app takes videos up to {max_seconds:g} s "
            "(cut it, or start the app with a larger --max-seconds)"
        )
    return duration


def create_app(settings: AppSettings) -> Any:
    """The FastAPI application (see the module doc); loads the checkpoint (and the index) once."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    from grounding.app.page import app_page
    from grounding.inference import Grounder
    from grounding.inference.grounder import time_profile

    ranker = None
    if settings.index is not None:
        from grounding.ranking import Ranker

        ranker = Ranker.from_index(settings.index)
    grounder = ranker.grounder if ranker is not None else Grounder.from_pretrained(settings.checkpoint)
    state = _State(grounder, ranker, _video_paths(settings.videos), Path(tempfile.mkdtemp(prefix="grounding-app-")))

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        yield
        shutil.rmtree(state.uploads, ignore_errors=True)  # the session's uploads go with it

    app = FastAPI(title="grounding", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "the request is not what this endpoint takes (JSON with a 'sentence', or a "
                                      "multipart 'file' upload)"}, status_code=400)

    @app.exception_handler(GroundingError)
    async def bad_input(_: Request, error: GroundingError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.exception_handler(Exception)
    async def failure(_: Request, error: Exception) -> JSONResponse:  # never a stack trace in the page
        return JSONResponse({"error": f"the server could not do that ({type(error).__name__}); see its log"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return app_page(search=ranker is not None, max_upload_mb=settings.max_upload_mb,
                        max_seconds=settings.max_seconds)

    @app.get("/api/videos")
    def videos() -> dict[str, Any]:
        return {"videos": sorted(state.paths)}

    @app.get("/media/{video_id}")
    def media(video_id: str) -> Any:
        path = state.paths.get(video_id)
        if path is None:
            raise InputError(f"no video '{video_id}' here; pick one from the list or upload it")
        return FileResponse(path)

    @app.post("/api/upload")
    async def upload(file: UploadFile) -> dict[str, Any]:
        name = Path(file.filename or "upload").name
        suffix = Path(name).suffix.lower() or ".mp4"
        limit = int(settings.max_upload_mb * (1 << 20))
        handle, temporary = tempfile.mkstemp(suffix=suffix, dir=state.uploads)
        size = 0
        with os.fdopen(handle, "wb") as sink:
            while chunk := await file.read(UPLOAD_CHUNK):
                size += len(chunk)
                if size > limit:
                    sink.close()
                    os.unlink(temporary)
                    raise InputError(f"'{name}' is over {settings.max_upload_mb:g} MB; upload a shorter or smaller video")
                sink.write(chunk)
        path = Path(temporary)
        try:
            duration = check_duration(path, settings.max_seconds)
            with state.lock:
                encoded = state.grounder.encode_video(path)
        except GroundingError as error:
            path.unlink(missing_ok=True)
            raise InputError(f"'{name}' is not a video this app can read: {error}") from None
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem)[:60]  # ids go into the page: plain characters only
        video_id = f"upload-{len(state.encoded) + 1}-{stem}"
        state.paths[video_id] = path
        state.encoded[video_id] = encoded
        return {"video_id": video_id, "duration": duration}

    @app.post("/api/ground")
    def ground(body: dict[str, Any]) -> dict[str, Any]:
        sentence = str(body.get("sentence") or "").strip()
        if not sentence:
            raise InputError("type a sentence describing the moment to find")
        video_id = str(body.get("video_id") or "")
        if video_id not in state.paths:
            raise InputError("pick a video from the list, or upload one")
        top_k = int(body.get("top_k") or 5)
        with state.lock:
            if video_id not in state.encoded:
                check_duration(state.paths[video_id], settings.max_seconds)
                state.encoded[video_id] = state.grounder.encode_video(state.paths[video_id])
            result = state.grounder.predict(state.encoded[video_id], [sentence], top_k=max(1, min(top_k, 20)))
        times, scores = time_profile(result, 0, num_points=200)
        return {
            "video_id": video_id, "sentence": sentence, "duration": result.video.duration,
            "spans": [{"start": span.start, "end": span.end, "score": span.score} for span in result.spans[0]],
            "curve": {"times": [round(float(t), 3) for t in times], "scores": [round(float(s), 4) for s in scores]},
        }

    @app.post("/api/rank")
    def rank(body: dict[str, Any]) -> dict[str, Any]:
        if ranker is None:
            raise InputError("this app has no index to search; start it with --index INDEX (from grounding index)")
        sentence = str(body.get("sentence") or "").strip()
        if not sentence:
            raise InputError("type a sentence to search the videos for")
        top_videos = max(1, min(int(body.get("top_videos") or 10), 100))
        with state.lock:
            ranked = ranker.rank(sentence, top_videos=top_videos, top_spans=1)
        return {"sentence": sentence, "videos": [
            {"video_id": video.video_id, "probability": video.probability if video.reranked else None,
             "playable": video.video_id in state.paths,
             "span": None if not video.spans else {"start": video.spans[0].start, "end": video.spans[0].end}}
            for video in ranked
        ]}

    return app


def serve(settings: AppSettings, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
