"""`grounding extract` and `grounding features` in-process: exit codes, stdout, failures JSON, shards + merge."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from grounding.cli.main import main
from tests.video.test_decode import write_video
from tests.video.test_extract import assert_same_features  # also registers the test-pixel-stats backbone

FAST = ["--backbone", "test-pixel-stats", "--workers", "1", "--batch-size", "4", "--no-progress"]


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    write_video(folder / "a.mp4", seconds=2.0)
    write_video(folder / "b c.mp4", seconds=1.0)
    write_video(folder / "nested" / "d.mkv", codec="ffv1", pix_fmt="gray", seconds=1.0)
    return folder


def test_extract_success_exit_0_summary_and_empty_failures(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.h5"
    assert main(["extract", str(videos), "--out", str(out), *FAST]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("extract: 3 videos extracted, 0 already done, 0 failed -> ")
    assert "(3 videos, D=6)" in stdout and "frames/s" in stdout
    failures = json.loads((tmp_path / "f.h5.failures.json").read_text(encoding="utf-8"))
    assert failures == {"output": str(out), "failed": 0, "failures": []}
    with h5py.File(out, "r") as handle:
        assert sorted(handle) == ["a", "b c", "d"] and handle["a"].shape == (2, 6)
    # Rerun: everything is already done.
    assert main(["extract", str(videos), "--out", str(out), *FAST]) == 0
    assert "0 videos extracted, 3 already done" in capsys.readouterr().out


def test_failed_videos_exit_1_and_are_listed_in_the_failures_json(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (videos / "corrupt.mp4").write_bytes(bytes(range(256)) * 8)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{videos / 'a.mp4'}\n{videos / 'corrupt.mp4'}\nmissing.mp4\n", encoding="utf-8")
    failures_path = tmp_path / "bad.json"
    code = main(["extract", str(listing), "--out", str(tmp_path / "f.h5"), "--failures", str(failures_path),
                 "--json", *FAST])
    assert code == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["extracted"], summary["failed"], summary["failures_file"]) == (1, 2, str(failures_path))
    failures = json.loads(failures_path.read_text(encoding="utf-8"))
    assert failures["failed"] == 2
    by_id = {entry["video_id"]: entry for entry in failures["failures"]}
    assert by_id["corrupt"]["path"] == str(videos / "corrupt.mp4")
    assert by_id["corrupt"]["reason"].startswith("cannot open as a video")
    assert by_id["missing"] == {"video_id": "missing", "path": str(tmp_path / "missing.mp4"),
                                "reason": "file not found"}


def test_shards_and_features_merge_equal_a_single_run(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for shard in ("0/2", "1/2"):
        assert main(["extract", str(videos), "--out", str(tmp_path / "f.h5"), "--shard", shard, *FAST]) == 0
    shards = [tmp_path / "f.shard-0-of-2.h5", tmp_path / "f.shard-1-of-2.h5"]
    assert all(path.exists() for path in shards) and not (tmp_path / "f.h5").exists()
    assert (tmp_path / "f.shard-1-of-2.h5.failures.json").exists()
    assert main(["features", "merge", *map(str, shards), "--out", str(tmp_path / "all.h5")]) == 0
    assert "-> " in capsys.readouterr().out
    assert main(["extract", str(videos), "--out", str(tmp_path / "single.h5"), *FAST]) == 0
    assert_same_features(tmp_path / "all.h5", tmp_path / "single.h5")
    capsys.readouterr()
    assert main(["features", "info", str(tmp_path / "all.h5"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["num_videos"], info["dims"], info["total_clips"]) == (3, [6], 4)
    assert info["attrs"]["backbone"] == "test-pixel-stats"


def test_usage_errors_exit_2_with_one_line(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract", str(videos), "--out", str(tmp_path / "f.h5"), "--backbone", "nope"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("grounding extract: error: unknown backbone 'nope'; registered: ")
    assert "efficientnet-lite0" in error and "hf:PATH" in error and error.count("\n") == 1
    assert main(["extract", str(videos), "--out", str(tmp_path / "f.h5"), "--shard", "2/2", *FAST]) == 2
    assert "--shard '2/2'" in capsys.readouterr().err
    assert main(["extract", "--out", str(tmp_path / "f.h5")]) == 2
    assert "pass VIDEOS" in capsys.readouterr().err
    a = tmp_path / "a.h5"
    b = tmp_path / "b.h5"
    for path, width in ((a, 2), (b, 3)):
        with h5py.File(path, "w") as handle:
            handle.create_dataset("x" if width == 2 else "y", data=np.zeros((1, width), np.float32))
    assert main(["features", "merge", str(a), str(b), "--out", str(tmp_path / "m.h5")]) == 2
    assert "has D=3, but" in capsys.readouterr().err


def test_help_ends_with_an_example_and_lists_backbones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    assert "example:\n  grounding extract videos/ --out features.h5" in capsys.readouterr().out
    assert main(["extract", "--list-backbones"]) == 0
    listed = capsys.readouterr().out
    assert "efficientnet-lite0 " in listed and "D=5120" in listed and "hf:PATH" in listed
    assert main(["features"]) == 1


def test_a_folder_without_videos_exits_2_naming_it_and_the_extensions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "no-videos"
    folder.mkdir()
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    assert main(["extract", str(folder), "--out", str(tmp_path / "f.h5"), *FAST]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"grounding extract: error: {folder}: no video files") and error.count("\n") == 1
    for extension in (".mp4", ".mpg", ".mpeg", ".m4v", ".ts", ".wmv", ".flv", ".3gp"):
        assert extension in error
    assert not (tmp_path / "f.h5").exists()


def test_new_extensions_extract_and_record_where_frame_times_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.video.test_real_videos import write_with_b_frames

    write_with_b_frames(tmp_path / "v" / "broadcast.mpg", "mpeg2video")
    write_video(tmp_path / "v" / "phone.m4v", seconds=1.0)
    out = tmp_path / "f.h5"
    assert main(["extract", str(tmp_path / "v"), "--out", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert "extract: 2 videos extracted" in captured.out
    assert "1 videos had unusable container timestamps" in captured.err and "(broadcast)" in captured.err
    with h5py.File(out, "r") as handle:
        assert handle["broadcast"].attrs["timestamps"] == "frame-rate"
        assert handle["phone"].attrs["timestamps"] == "container"
