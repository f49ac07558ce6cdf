"""Extraction to HDF5: ids, failures, resume after kill -9, shards + merge. Uses a tiny pixel-statistics backbone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from grounding.errors import ConfigError, InputError
from grounding.video.backbones import register_backbone
from grounding.video.extract import (
    ExtractionConfig,
    PartsFolder,
    VideoSource,
    check_video_id,
    extract_features,
    find_videos,
    merge_feature_files,
    parse_shard,
    select_shard,
    shard_output_path,
    video_id_for,
)
from tests.video.test_decode import frames_seen, write_video

REPO_ROOT = Path(__file__).resolve().parents[2]
# The kill -9 test slows the backbone down in its subprocess so there is time to kill it mid-run.
_DELAY_ENV = "GROUNDING_TEST_BACKBONE_DELAY"


class PixelStats(nn.Module):
    """Per-channel mean of the frame, then per-channel (left half - right half) mean: (N, 3, H, W) -> (N, 6).

    With mean 0 and std 255 the inputs are pixel / 255, so a flat grey frame of level L gives L/255 three times
    and zeros.
    """

    def __init__(self) -> None:
        super().__init__()
        self.delay = float(os.environ.get(_DELAY_ENV, "0"))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        half = pixels.shape[-1] // 2
        left_minus_right = pixels[..., :half].mean(dim=(2, 3)) - pixels[..., half:].mean(dim=(2, 3))
        return torch.cat([pixels.mean(dim=(2, 3)), left_minus_right], dim=1)


class PairMean(nn.Module):
    """A 'video' backbone: each 2 consecutive frames -> their mean colour, (2N, 3, H, W) -> (N, 3)."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.reshape(-1, 2, *pixels.shape[1:]).mean(dim=(1, 3, 4))


@register_backbone("test-pixel-stats", dim=6, mean=0.0, std=255.0, input_size=32)
def pixel_stats(device: str) -> nn.Module:
    """Pixel statistics (mean, left-right difference) per channel: fast and exact, for extraction tests."""
    return PixelStats()


@register_backbone("test-pair-mean", dim=3, mean=0.0, std=255.0, input_size=32, frames_per_input=2)
def pair_mean(device: str) -> nn.Module:
    """Mean colour of 2 frames at a time: a stand-in for a video backbone."""
    return PairMean()


def fast_config(**overrides: object) -> ExtractionConfig:
    settings = {"backbone": "test-pixel-stats", "batch_size": 4, "workers": 1}
    settings.update(overrides)
    return ExtractionConfig(**settings)  # type: ignore[arg-type]


def read_h5(path: Path) -> dict[str, tuple[np.ndarray, dict]]:
    with h5py.File(path, "r") as handle:
        return {name: (dataset[()], dict(dataset.attrs)) for name, dataset in handle.items()}


def assert_same_features(first: Path, second: Path) -> None:
    """Same ids, identical arrays and identical attributes (except the decoded-file path)."""
    left, right = read_h5(first), read_h5(second)
    assert sorted(left) == sorted(right)
    for video_id in left:
        np.testing.assert_array_equal(left[video_id][0], right[video_id][0])
        for key in ("clip_centres", "duration", "fps", "num_frames", "backbone"):
            np.testing.assert_array_equal(left[video_id][1][key], right[video_id][1][key])


# --- ids and video lists ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["", ".", "..", "../x", "a/b", "a\\b", "tab\there"])
def test_unsafe_video_ids_are_refused(bad_id: str) -> None:
    with pytest.raises(InputError, match="could escape or break the output"):
        check_video_id(bad_id, "list.txt:3")


def test_video_ids_are_file_names_without_extension() -> None:
    assert video_id_for("data/AO8RW.mp4") == "AO8RW"
    assert video_id_for("../x.mp4") == "x"
    assert video_id_for("clips/vidéo 1.webm") == "vidéo 1"
    assert video_id_for("s13-d21.avi") == "s13-d21"
    with pytest.raises(InputError, match=r"'\.\.'"):
        video_id_for("folder/...mp4")


def test_find_videos_from_folder_list_and_file(tmp_path: Path) -> None:
    for relative in ["set/a.mp4", "set/sub/b.MKV", "set/notes.txt", "set/.hidden.mp4", "set/.cache/c.mp4", "d.webm"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    listing = tmp_path / "lists" / "videos.txt"
    listing.parent.mkdir()
    listing.write_text("# comment\n\n../d.webm\n/absent/e.mp4\n", encoding="utf-8")
    videos = find_videos([tmp_path / "set", listing])
    assert [video.video_id for video in videos] == ["a", "b", "d", "e"]
    assert videos[2].path == tmp_path / "d.webm"  # relative to the list's folder
    assert videos[3].path == Path("/absent/e.mp4")  # a missing listed file fails later, per video
    assert [video.video_id for video in find_videos([tmp_path / "d.webm", tmp_path / "d.webm"])] == ["d"]


def test_find_videos_errors(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "two" / "clip.avi").write_bytes(b"x")
    with pytest.raises(InputError, match=r"video id 'clip' comes from two files: .*one/clip.mp4 and .*two/clip.avi"):
        find_videos([tmp_path / "one", tmp_path / "two"])
    with pytest.raises(InputError, match="no such file or folder"):
        find_videos([tmp_path / "absent"])
    weird = tmp_path / "weird"
    weird.mkdir()
    (weird / "...mp4").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("weird/...mp4\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"list.txt:1: video id '\.\.'"):
        find_videos([listing])
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="not a UTF-8 text list"):
        find_videos([binary])


def test_shards_partition_videos_round_robin_by_id() -> None:
    videos = [VideoSource(video_id, Path(f"/v/{video_id}.mp4")) for video_id in ["e", "a", "d", "b", "c"]]
    assert [video.video_id for video in select_shard(videos, 0, 2)] == ["a", "c", "e"]
    assert [video.video_id for video in select_shard(videos, 1, 2)] == ["b", "d"]
    assert parse_shard("1/4") == (1, 4)
    assert shard_output_path("out/features.h5", 1, 4) == Path("out/features.shard-1-of-4.h5")
    for bad in ["4/4", "-1/2", "a/b", "1"]:
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_config_checks_its_values() -> None:
    with pytest.raises(ConfigError, match="clip_seconds"):
        ExtractionConfig(clip_seconds=0)
    with pytest.raises(ConfigError, match="dtype"):
        ExtractionConfig(dtype="int8")
    with pytest.raises(ConfigError, match="resize"):
        ExtractionConfig(resize="stretch")


# --- extraction ------------------------------------------------------------------------------------------------


def test_features_average_k_frames_per_clip_and_attrs_are_written(tmp_path: Path) -> None:
    write_video(tmp_path / "v" / "clip.mp4", fps=10, seconds=2.0)
    report = extract_features(find_videos([tmp_path / "v"]), tmp_path / "f.h5", fast_config(frames_per_clip=2),
                              progress=False)
    assert (report.extracted, report.failures, report.num_videos, report.dim) == (["clip"], [], 1, 6)
    features = read_h5(tmp_path / "f.h5")
    clip_feats, attrs = features["clip"]
    # K=2 samples clip 0 at 0.25 s and 0.75 s (frames 2 and 7), clip 1 at frames 12 and 17;
    # frame i is flat grey at level 4 + 8 i, so the mean channel value is the mean level / 255.
    expected = np.array([(20 + 60) / 2, (100 + 140) / 2]) / 255
    assert clip_feats.shape == (2, 6) and clip_feats.dtype == np.float32
    np.testing.assert_allclose(clip_feats[:, :3], np.repeat(expected[:, None], 3, axis=1), atol=3 / 255)
    np.testing.assert_allclose(clip_feats[:, 3:], 0, atol=1e-3)
    np.testing.assert_allclose(attrs["clip_centres"], [0.5, 1.5])
    assert (attrs["duration"], attrs["fps"], attrs["num_frames"], attrs["frames_per_clip"]) == (2.0, 10.0, 20, 2)
    assert attrs["backbone"] == "test-pixel-stats" and attrs["source"] == str(tmp_path / "v" / "clip.mp4")
    with h5py.File(tmp_path / "f.h5", "r") as handle:
        file_attrs = dict(handle.attrs)
    assert file_attrs["dim"] == 6 and file_attrs["clip_seconds"] == 1.0 and file_attrs["format_version"] == 1
    assert file_attrs["size"] == 32 and file_attrs["resize"] == "squash" and file_attrs["dtype"] == "float32"
    assert not (tmp_path / "f.h5.parts").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_awkward_videos_and_names_extract_and_bad_ones_fail_alone(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    write_video(folder / "one second.mp4", seconds=1.0)
    write_video(folder / "short.mp4", seconds=0.3)
    write_video(folder / "gray.mkv", codec="ffv1", pix_fmt="gray", seconds=1.0)
    write_video(folder / "odd.mp4", width=65, height=47, pix_fmt="yuv444p", seconds=1.5)
    write_video(folder / "vidéo_ñ 2.mp4", seconds=1.0)
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (folder / "empty.mp4").write_bytes(b"")
    report = extract_features(find_videos([folder]), tmp_path / "f.h5", fast_config(), progress=False)
    assert sorted(report.extracted) == ["gray", "odd", "one second", "short", "vidéo_ñ 2"]
    assert {(failure.video_id, failure.reason.split(":")[0]) for failure in report.failures} == {
        ("corrupt", "cannot open as a video"), ("empty", "empty file (0 bytes)")}
    features = read_h5(tmp_path / "f.h5")
    assert {video_id: len(value[0]) for video_id, value in features.items()} == {
        "gray": 1, "odd": 2, "one second": 1, "short": 1, "vidéo_ñ 2": 1}
    np.testing.assert_allclose(features["short"][1]["clip_centres"], [0.15])
    # The data layer reads our file: the other helper's HDF5FeatureStore with the same ids and attrs.
    from grounding.data.features import HDF5FeatureStore

    with HDF5FeatureStore(tmp_path / "f.h5", expected_dim=6) as store:
        assert store.video_ids() == sorted(features)
        assert store.get("vidéo_ñ 2").shape == (1, 6)
        assert store.attrs("odd")["backbone"] == "test-pixel-stats"


def test_float16_storage_and_workers_do_not_change_features(tmp_path: Path) -> None:
    for index in range(3):
        write_video(tmp_path / "v" / f"clip{index}.mp4", seconds=1.0 + index)
    videos = find_videos([tmp_path / "v"])
    extract_features(videos, tmp_path / "inline.h5", fast_config(workers=0, batch_size=3), progress=False)
    extract_features(videos, tmp_path / "threads.h5", fast_config(workers=3, batch_size=5), progress=False)
    assert_same_features(tmp_path / "inline.h5", tmp_path / "threads.h5")
    extract_features(videos, tmp_path / "half.h5", fast_config(dtype="float16"), progress=False)
    half, full = read_h5(tmp_path / "half.h5"), read_h5(tmp_path / "inline.h5")
    assert half["clip2"][0].dtype == np.float16
    np.testing.assert_allclose(half["clip2"][0], full["clip2"][0], atol=1e-3)


def test_video_backbone_takes_whole_clips(tmp_path: Path) -> None:
    write_video(tmp_path / "v" / "clip.mp4", fps=10, seconds=2.0)
    videos = find_videos([tmp_path / "v"])
    extract_features(videos, tmp_path / "f.h5", fast_config(backbone="test-pair-mean", batch_size=2), progress=False)
    clip_feats, attrs = read_h5(tmp_path / "f.h5")["clip"]
    assert attrs["frames_per_clip"] == 2  # the backbone's frames_per_input, by default
    np.testing.assert_allclose(clip_feats[:, 0], np.array([80 / 2, 240 / 2]) / 255, atol=3 / 255)
    with pytest.raises(ConfigError, match="pass a multiple of 2"):
        extract_features(videos, tmp_path / "g.h5", fast_config(backbone="test-pair-mean", frames_per_clip=3),
                         progress=False)


def test_rerun_skips_finished_videos_and_refuses_other_settings(tmp_path: Path) -> None:
    write_video(tmp_path / "v" / "a.mp4", seconds=1.0)
    out = tmp_path / "f.h5"
    extract_features(find_videos([tmp_path / "v"]), out, fast_config(), progress=False)
    write_video(tmp_path / "v" / "b.mp4", seconds=1.0)
    report = extract_features(find_videos([tmp_path / "v"]), out, fast_config(), progress=False)
    assert (report.extracted, report.skipped, report.num_videos) == (["b"], ["a"], 2)
    assert sorted(read_h5(out)) == ["a", "b"]
    with pytest.raises(InputError, match=r"exists with other settings: clip_seconds=1\.0 \(this run: 2\.0\)"):
        extract_features(find_videos([tmp_path / "v"]), out, fast_config(clip_seconds=2.0), progress=False)
    assert not (tmp_path / "f.h5.parts").exists()


def test_a_second_concurrent_run_on_the_same_output_is_refused(tmp_path: Path) -> None:
    settings = {"backbone": "test-pixel-stats", "dim": 6}
    holder = PartsFolder(tmp_path / "f.h5.parts", settings)
    holder.open()
    try:
        with pytest.raises(InputError, match="another `grounding extract` is writing this output"):
            PartsFolder(tmp_path / "f.h5.parts", settings).open()
    finally:
        holder.close()


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import tests.video.test_extract  # registers test-pixel-stats (slowed down by the environment variable)
from grounding.cli.main import main
sys.exit(main(["extract", {videos!r}, "--out", {out!r}, "--backbone", "test-pixel-stats", "--workers", "1",
               "--batch-size", "2", "--no-progress"]))
"""


def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    for index in range(4):
        write_video(tmp_path / "v" / f"clip{index}.mp4", seconds=1.0 + index % 2)
    out = tmp_path / "killed.h5"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(root=str(REPO_ROOT), videos=str(tmp_path / "v"), out=str(out)))
    env = {**os.environ, _DELAY_ENV: "0.4"}
    process = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    parts = tmp_path / "killed.h5.parts"
    deadline = time.monotonic() + 60
    try:
        # a finished part is <id>.npz; ".<id>.npz.<pid>.tmp.npz" is one being written (ids never start with a dot)
        while not list(parts.glob("[!.]*.npz")):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no part was written within 60 s"
            time.sleep(0.01)
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()  # the HDF5 file is only ever written whole, at the end
    finished = sorted(path.stem for path in parts.glob("[!.]*.npz"))
    assert 1 <= len(finished) < 4
    report = extract_features(find_videos([tmp_path / "v"]), out, fast_config(), progress=False)
    assert sorted(report.skipped) == finished
    assert sorted(report.extracted + report.skipped) == ["clip0", "clip1", "clip2", "clip3"]
    extract_features(find_videos([tmp_path / "v"]), tmp_path / "straight.h5", fast_config(), progress=False)
    assert_same_features(out, tmp_path / "straight.h5")
    assert not parts.exists() and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.parts/*.tmp"))


def test_shards_then_merge_equal_a_single_run(tmp_path: Path) -> None:
    for index in range(5):
        write_video(tmp_path / "v" / f"clip{index}.mp4", seconds=1.0 + index % 3)
    videos = find_videos([tmp_path / "v"])
    shard_files = []
    for index in range(2):
        shard_files.append(shard_output_path(tmp_path / "f.h5", index, 2))
        extract_features(select_shard(videos, index, 2), shard_files[-1], fast_config(), progress=False)
    assert sorted(read_h5(shard_files[0])) == ["clip0", "clip2", "clip4"]
    report = merge_feature_files(shard_files, tmp_path / "merged.h5")
    assert (report.num_videos, report.dim) == (5, 6)
    extract_features(videos, tmp_path / "single.h5", fast_config(), progress=False)
    assert_same_features(tmp_path / "merged.h5", tmp_path / "single.h5")
    with h5py.File(tmp_path / "merged.h5", "r") as merged, h5py.File(tmp_path / "single.h5", "r") as single:
        for key in ("backbone", "dim", "clip_seconds", "frames_per_clip", "size", "resize", "dtype"):
            assert merged.attrs[key] == single.attrs[key]


def _feature_file(path: Path, videos: dict[str, np.ndarray], **attrs: object) -> Path:
    with h5py.File(path, "w") as handle:
        handle.attrs.update({"backbone": "b", "dim": 2, "clip_seconds": 1.0, **attrs})
        for video_id, clip_feats in videos.items():
            handle.create_dataset(video_id, data=clip_feats)
    return path


def test_merge_refuses_conflicts_and_names_the_files(tmp_path: Path) -> None:
    ones, twos = np.ones((3, 2), np.float32), np.full((3, 2), 2, np.float32)
    first = _feature_file(tmp_path / "a.h5", {"x": ones, "y": ones})
    same = _feature_file(tmp_path / "b.h5", {"x": ones, "z": twos})
    report = merge_feature_files([first, same], tmp_path / "out.h5")
    assert (report.num_videos, report.duplicates) == (3, ["x"])
    clash = _feature_file(tmp_path / "c.h5", {"x": twos})
    with pytest.raises(InputError, match=r"video 'x' is in .*a\.h5 and .*c\.h5 with different features"):
        merge_feature_files([first, clash], tmp_path / "out2.h5")
    other_backbone = _feature_file(tmp_path / "d.h5", {"w": ones}, backbone="other")
    with pytest.raises(InputError, match=r"d\.h5: backbone='other', but .*a\.h5 has backbone='b'"):
        merge_feature_files([first, other_backbone], tmp_path / "out3.h5")
    wide = _feature_file(tmp_path / "e.h5", {"w": np.ones((3, 4), np.float32)}, dim=4)
    with pytest.raises(InputError, match=r"e\.h5: dim=4, but .*a\.h5 has dim=2"):
        merge_feature_files([first, wide], tmp_path / "out4.h5")
    with pytest.raises(InputError, match="exists; pass --force"):
        merge_feature_files([first, same], tmp_path / "out.h5")
    assert merge_feature_files([first, same], tmp_path / "out.h5", force=True).num_videos == 3
    assert not (tmp_path / "out2.h5").exists() and not list(tmp_path.glob("*.tmp"))


def test_frames_reach_the_backbone_at_clip_centres(tmp_path: Path) -> None:
    """End to end through the pipeline: the frame each clip sees is the one at its centre."""
    write_video(tmp_path / "v" / "vfr.mp4", pts_ms=[0, 100, 200, 1000, 1100, 1200, 2500, 2600])
    extract_features(find_videos([tmp_path / "v"]), tmp_path / "f.h5", fast_config(), progress=False)
    clip_feats, attrs = read_h5(tmp_path / "f.h5")["vfr"]
    levels = clip_feats[:, :3].mean(axis=1) * 255
    assert frames_seen(np.broadcast_to(levels[:, None], (3, 4))) == [2, 5, 5]
    np.testing.assert_allclose(attrs["clip_centres"], [0.5, 1.5, 2.35])
    assert attrs["duration"] == pytest.approx(2.7)


def test_outputs_and_parts_of_earlier_versions_resume(tmp_path: Path) -> None:
    """A file without the newer per-video attributes, and a parts folder with a part without ``timestamps`` plus
    temporaries of both namings (``x.npz.<pid>.tmp``, ``.x.npz.<pid>.tmp.npz``), resume as they are."""
    for video_id in ("a", "b", "c"):
        write_video(tmp_path / "v" / f"{video_id}.mp4", seconds=1.0)
    out = tmp_path / "f.h5"
    extract_features(find_videos([tmp_path / "v" / "a.mp4"]), out, fast_config(), progress=False)
    with h5py.File(out, "r+") as handle:
        for key in ("size", "resize", "timestamps"):
            del handle["a"].attrs[key]
    settings = {"backbone": "test-pixel-stats", "clip_seconds": 1.0, "frames_per_clip": 1, "size": 32,
                "resize": "squash", "dim": 6, "dtype": "float32"}
    parts = PartsFolder(tmp_path / "f.h5.parts", settings)
    parts.open()
    parts.write("b", np.ones((1, 6), np.float32), np.array([0.5]),
                {"fps": 10.0, "duration": 1.0, "num_frames": 10, "source": "/old/b.mp4"})
    parts.close()
    stale = [tmp_path / "f.h5.parts" / "c.npz.123.tmp", tmp_path / "f.h5.parts" / ".c.npz.123.tmp.npz",
             tmp_path / "f.h5.999.tmp", tmp_path / ".f.h5.999.tmp.h5"]
    for path in stale:
        path.write_bytes(b"half")
    report = extract_features(find_videos([tmp_path / "v"]), out, fast_config(), progress=False)
    assert (report.extracted, sorted(report.skipped), report.num_videos) == (["c"], ["a", "b"], 3)
    features = read_h5(out)
    np.testing.assert_array_equal(features["b"][0], np.ones((1, 6), np.float32))
    assert "timestamps" not in features["b"][1] and features["b"][1]["source"] == "/old/b.mp4"
    assert "size" not in features["a"][1] and features["c"][1]["timestamps"] == "container"
    assert not any(path.exists() for path in stale) and not (tmp_path / "f.h5.parts").exists()
