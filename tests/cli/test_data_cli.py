"""``grounding data stats``, run in-process on tiny files written into ``tmp_path``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.cli.main import main
from grounding.files import stale_temporaries

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def charades_files(tmp_path: Path) -> tuple[Path, Path]:
    """Four queries on two videos (20 s and 10 s): one clipped (22 -> 20), one dropped (start == end).

    Kept windows: (2, 6) in 20 s, (15, 20) in 20 s, (1, 4) in 10 s -> lengths 4, 5, 3 s; fractions 0.2, 0.25, 0.3.
    Words per kept query: 5, 3, 5.
    """
    csv_path = tmp_path / "Charades_v1_test.csv"
    csv_path.write_text(
        "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
        'AAAAA,P1,Kitchen,5,6,Yes,"A person cooks, then eats.",pan,"Someone cooks, eats.",c1 1 2,20.0\n'
        'BBBBB,P2,Hall,5,6,Yes,"A person waves, laughs.",none,"Waves, laughs.",c2 1 2,10.0\n',
        encoding="utf-8",
    )
    annotation_path = tmp_path / "charades_sta_test.txt"
    annotation_path.write_text(
        "AAAAA 2.0 6.0##a person opens the door.\n"
        "AAAAA 15.0 22.0##person sits down\n"
        "BBBBB 4.0 4.0##someone waves\n"
        "BBBBB 1.0 4.0##a man laughs loudly now\n",
        encoding="utf-8",
    )
    return annotation_path, csv_path


def test_stats_prints_counts_and_report(charades_files: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    annotation_path, csv_path = charades_files
    exit_code = main(["data", "stats", str(annotation_path), "--durations", str(csv_path)])
    out = capsys.readouterr().out
    assert exit_code == 0
    assert "(charades-sta)" in out
    assert "queries             3 kept of 4 read (1 dropped)" in out
    assert "videos              2" in out
    assert "video duration (s)  mean 15.00  median 15.00  min 10.00  max 20.00" in out
    assert "moment length (s)   mean 4.00  median 4.00  min 3.00  max 5.00" in out
    assert "moment / duration   mean 0.250  median 0.250  min 0.200  max 0.300" in out
    assert "clipped             1 window(s) clipped to the video" in out
    assert "charades_sta_test.txt:2: video 'AAAAA' (qid 1): end 22 s past duration 20 s, clipped to 20" in out
    assert "charades_sta_test.txt:3: video 'BBBBB' (qid 2): window [4, 4] s: start >= end; dropped" in out


def test_stats_json_holds_hand_computed_values(charades_files: tuple[Path, Path], tmp_path: Path) -> None:
    annotation_path, csv_path = charades_files
    json_path = tmp_path / "out" / "stats.json"
    assert main(["data", "stats", str(annotation_path), "--durations", str(csv_path), "--json", str(json_path)]) == 0
    stats = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(stats) == {
        "path", "format", "queries_read", "queries", "queries_dropped", "videos", "words_per_query",
        "video_duration_s", "moment_length_s", "moment_length_fraction", "windows_per_query", "clipped", "dropped",
    }
    assert (stats["format"], stats["queries_read"], stats["queries"], stats["videos"]) == ("charades-sta", 4, 3, 2)
    assert stats["words_per_query"]["mean"] == pytest.approx(13 / 3)
    assert stats["video_duration_s"] == {"mean": 15.0, "median": 15.0, "min": 10.0, "max": 20.0}
    assert stats["moment_length_s"] == {"mean": 4.0, "median": 4.0, "min": 3.0, "max": 5.0}
    assert stats["moment_length_fraction"]["mean"] == pytest.approx(0.25)
    assert stats["windows_per_query"]["histogram"] == {"1": 3}
    assert stats["clipped"]["count"] == 1 and stats["dropped"]["count"] == 1
    assert stats["dropped"]["lines"][0].startswith("charades_sta_test.txt:3:")


def test_stats_plot_writes_a_png(charades_files: tuple[Path, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    annotation_path, csv_path = charades_files
    plot_path = tmp_path / "moments.png"
    assert main(["data", "stats", str(annotation_path), "--durations", str(csv_path), "--plot", str(plot_path)]) == 0
    assert plot_path.read_bytes()[:8] == PNG_SIGNATURE
    assert not stale_temporaries(plot_path)  # written through a temporary file, then renamed
    assert f"plot written to {plot_path}" in capsys.readouterr().out


def test_stats_plot_format_follows_the_suffix_and_a_bad_one_leaves_nothing(
    charades_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    annotation_path, csv_path = charades_files
    svg_path = tmp_path / "plots" / "moments.svg"
    assert main(["data", "stats", str(annotation_path), "--durations", str(csv_path), "--plot", str(svg_path)]) == 0
    assert b"<svg" in svg_path.read_bytes()[:1000]
    bad_path = tmp_path / "moments.nope"
    assert main(["data", "stats", str(annotation_path), "--durations", str(csv_path), "--plot", str(bad_path)]) != 0
    assert "cannot save this image format" in capsys.readouterr().err
    assert not bad_path.exists() and not stale_temporaries(bad_path)


def test_stats_counts_several_windows_per_query(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "val.jsonl"
    lines = [
        {"qid": 5, "query": "a dog runs", "duration": 100, "vid": "v1", "relevant_windows": [[0, 10], [20, 40]]},
        {"qid": 6, "query": "a cat sleeps", "duration": 50, "vid": "v2", "relevant_windows": [[10, 15]]},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    json_path = tmp_path / "stats.json"
    assert main(["data", "stats", str(path), "--json", str(json_path)]) == 0
    stats = json.loads(json_path.read_text(encoding="utf-8"))
    assert stats["format"] == "moment-detr"
    assert stats["windows_per_query"]["histogram"] == {"1": 1, "2": 1}
    assert stats["windows_per_query"]["mean"] == 1.5
    assert stats["moment_length_s"]["mean"] == pytest.approx((10 + 20 + 5) / 3)
    assert stats["moment_length_fraction"]["mean"] == pytest.approx((0.1 + 0.2 + 0.1) / 3)
    assert "(1 window(s): 1, 2 window(s): 1)" in capsys.readouterr().out


def test_stats_durations_flag_is_repeatable(charades_files: tuple[Path, Path], tmp_path: Path) -> None:
    annotation_path, csv_path = charades_files
    empty_csv = tmp_path / "Charades_v1_train.csv"
    empty_csv.write_text("id,length\nCCCCC,30.0\n", encoding="utf-8")
    arguments = ["data", "stats", str(annotation_path), "--durations", str(empty_csv), "--durations", str(csv_path)]
    assert main(arguments) == 0


def test_stats_missing_durations_is_one_stderr_line(charades_files: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture) -> None:
    annotation_path, _ = charades_files
    assert main(["data", "stats", str(annotation_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("grounding data: error: ") and "--durations" in err


def test_data_without_subcommand_prints_help_and_exits_1(capsys: pytest.CaptureFixture) -> None:
    assert main(["data"]) == 1
    assert "stats" in capsys.readouterr().err


def test_data_help_lists_stats(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["data", "--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert "stats" in out and "example:" in out
