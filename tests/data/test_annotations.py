"""Annotation readers: every format, its quirks, detection and the errors a user sees.

All files are written into ``tmp_path``; expected values are worked out by hand in each test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounding.data.annotations import (
    ANNOTATION_FORMATS,
    detect_format,
    read_annotations,
    read_durations,
    strip_video_extension,
)
from grounding.data.records import QueryRecord
from grounding.errors import InputError

CSV_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_csv(path: Path, lengths: dict[str, str]) -> Path:
    """A Charades-style CSV whose text fields hold quoted commas, like the real metadata files."""
    rows = [
        f'{video},P1,Kitchen,5,6,Yes,"A person opens a door, then sits.",door;chair,'
        f'"Someone walks in, sits down, and waves.",c001 1.0 2.0;c002 3.0 4.0,{length}\n'
        for video, length in lengths.items()
    ]
    return write(path, CSV_HEADER + "".join(rows))


def write_jsonl(path: Path, items: list[dict]) -> Path:
    return write(path, "".join(json.dumps(item) + "\n" for item in items))


@pytest.fixture
def test_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "Charades_v1_test.csv", {"AAAAA": "20.0", "BBBBB": "10.0"})


# ----------------------------------------------------------------------------------------------- durations CSV


def test_read_durations_handles_quoted_commas(test_csv: Path) -> None:
    assert read_durations([test_csv]) == {"AAAAA": 20.0, "BBBBB": 10.0}


def test_read_durations_merges_several_files(tmp_path: Path, test_csv: Path) -> None:
    train_csv = write_csv(tmp_path / "Charades_v1_train.csv", {"CCCCC": "31.5", "AAAAA": "20.0"})
    assert read_durations([test_csv, train_csv]) == {"AAAAA": 20.0, "BBBBB": 10.0, "CCCCC": 31.5}


def test_read_durations_rejects_conflicting_lengths(tmp_path: Path, test_csv: Path) -> None:
    other = write_csv(tmp_path / "other.csv", {"AAAAA": "21.0"})
    with pytest.raises(InputError, match=r"other\.csv:2: video 'AAAAA' has length 21 s, but .*test\.csv:2 says 20 s"):
        read_durations([test_csv, other])


def test_read_durations_needs_id_and_length_columns(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.csv", "video,seconds\nAAAAA,3.0\n")
    with pytest.raises(InputError, match=r"bad\.csv: expected CSV columns 'id' and 'length'"):
        read_durations([bad])


@pytest.mark.parametrize("length", ["abc", "0", "-3", ""])
def test_read_durations_rejects_bad_length_with_line(tmp_path: Path, length: str) -> None:
    bad = write_csv(tmp_path / "bad.csv", {"AAAAA": "20.0", "BBBBB": length})
    with pytest.raises(InputError, match=r"bad\.csv:3: video 'BBBBB' has length"):
        read_durations([bad])


# ----------------------------------------------------------------------------------------------- Charades-STA


def test_charades_sta_reads_lines_with_qid_equal_to_line_index(tmp_path: Path, test_csv: Path) -> None:
    path = write(tmp_path / "sta_test.txt",
                 "AAAAA 2.0 6.0##a person opens the door.\n"
                 "\n"
                 "BBBBB 1 4.5##  someone laughs  \r\n")
    annotations = read_annotations(path, durations=[test_csv])
    assert annotations.format == "charades-sta"
    assert annotations.records == [
        QueryRecord(0, "AAAAA", 20.0, ((2.0, 6.0),), "a person opens the door."),
        QueryRecord(2, "BBBBB", 10.0, ((1.0, 4.5),), "someone laughs"),
    ]
    assert annotations.report.num_read == 2
    assert annotations.report.clipped == [] and annotations.report.dropped == []


def test_charades_sta_clips_end_past_duration_and_reports_it(tmp_path: Path, test_csv: Path) -> None:
    path = write(tmp_path / "sta_test.txt", "AAAAA 2.0 6.0##first\nBBBBB 7.5 11.2##second\n")
    annotations = read_annotations(path, durations=[test_csv])
    assert annotations.records[1].windows == ((7.5, 10.0),)
    assert len(annotations.report.clipped) == 1
    line = annotations.report.clipped[0]
    assert line.startswith("sta_test.txt:2: video 'BBBBB' (qid 1)")
    assert "end 11.2 s past duration 10 s, clipped to 10" in line


def test_charades_sta_clips_negative_start_to_zero(tmp_path: Path, test_csv: Path) -> None:
    path = write(tmp_path / "sta_test.txt", "AAAAA -0.5 3.0##early\n")
    annotations = read_annotations(path, durations=[test_csv])
    assert annotations.records[0].windows == ((0.0, 3.0),)
    assert annotations.report.clipped == ["sta_test.txt:1: video 'AAAAA' (qid 0): start -0.5 s < 0, clipped to 0"]


def test_charades_sta_drops_start_not_before_end_and_keeps_later_qids(tmp_path: Path, test_csv: Path) -> None:
    path = write(tmp_path / "sta_test.txt",
                 "AAAAA 8.0 7.0##backwards\n"
                 "AAAAA 4.0 4.0##empty moment\n"
                 "BBBBB 12.0 14.0##starts after the video ends\n"
                 "BBBBB 1.0 2.0##fine\n")
    annotations = read_annotations(path, durations=[test_csv])
    assert [record.qid for record in annotations] == [3]
    assert annotations.report.num_read == 4
    dropped = annotations.report.dropped
    assert len(dropped) == 3
    assert dropped[0] == "sta_test.txt:1: video 'AAAAA' (qid 0): window [8, 7] s: start >= end; dropped"
    assert dropped[1].startswith("sta_test.txt:2:") and "start >= end" in dropped[1]
    assert dropped[2].startswith("sta_test.txt:3:")
    assert "nothing left after clipping to the video [0, 10] s" in dropped[2]
    assert annotations.report.clipped == []  # a dropped window is reported once, as dropped


def test_charades_sta_drops_empty_sentence(tmp_path: Path, test_csv: Path) -> None:
    path = write(tmp_path / "sta_test.txt", "AAAAA 1.0 2.0##   \nAAAAA 1.0 2.0##ok\n")
    annotations = read_annotations(path, durations=[test_csv])
    assert [record.qid for record in annotations] == [1]
    assert annotations.report.dropped == ["sta_test.txt:1: video 'AAAAA' (qid 0): empty sentence; dropped"]


def test_charades_sta_without_durations_says_pass_durations(tmp_path: Path) -> None:
    path = write(tmp_path / "sta_test.txt", "AAAAA 1.0 2.0##ok\n")
    with pytest.raises(InputError, match=r"sta_test\.txt: .*--durations"):
        read_annotations(path)


def test_charades_sta_unknown_video_names_line_and_suggests_csv(tmp_path: Path) -> None:
    train_csv = write_csv(tmp_path / "Charades_v1_train.csv", {"AAAAA": "20.0"})
    path = write(tmp_path / "charades_sta_test.txt",
                 "AAAAA 1.0 2.0##ok\nZZZZZ 1.0 2.0##unknown\nZZZZZ 3.0 4.0##unknown again\n")
    with pytest.raises(InputError) as raised:
        read_annotations(path, durations=[train_csv])
    message = str(raised.value)
    assert "charades_sta_test.txt:2: video 'ZZZZZ' has no duration in Charades_v1_train.csv" in message
    assert "--durations (probably Charades_v1_test.csv)" in message
    assert "1 more line(s) have the same problem (1 video(s) in all)" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("AAAAA 1.0 2.0 a person without separator", r"sta\.txt:2: expected 'VIDEO START END##sentence'"),
        ("AAAAA 1.0##two fields only", r"sta\.txt:2: expected 'VIDEO START END##sentence'"),
        ("AAAAA one 2.0##bad start", r"sta\.txt:2: start time 'one' of video 'AAAAA' is not a finite number"),
        ("AAAAA 1.0 nan##bad end", r"sta\.txt:2: end time 'nan' of video 'AAAAA'"),
    ],
)
def test_charades_sta_malformed_line_names_file_and_line(
    tmp_path: Path, test_csv: Path, line: str, expected: str
) -> None:
    path = write(tmp_path / "sta.txt", f"AAAAA 1.0 2.0##fine\n{line}\n")
    with pytest.raises(InputError, match=expected):
        read_annotations(path, durations=[test_csv])


# ----------------------------------------------------------------------------------------------- 2D-TAN / MMN json


def test_2dtan_json_running_qids_and_clipping_report(tmp_path: Path) -> None:
    payload = {
        "v_first": {"duration": 50.0, "timestamps": [[0, 10.5], [30.0, 52.0]],
                    "sentences": ["A dog runs.", " It jumps."]},
        "v_second": {"duration": 20.0, "timestamps": [[5.0, 5.0], [2.0, 9.0]], "sentences": ["Same time.", "Ok."]},
    }
    path = write(tmp_path / "train.json", json.dumps(payload))
    annotations = read_annotations(path)
    assert annotations.format == "2dtan"
    assert annotations.records == [
        QueryRecord(0, "v_first", 50.0, ((0.0, 10.5),), "A dog runs."),
        QueryRecord(1, "v_first", 50.0, ((30.0, 50.0),), "It jumps."),
        QueryRecord(3, "v_second", 20.0, ((2.0, 9.0),), "Ok."),
    ]
    assert annotations.report.num_read == 4
    assert annotations.report.clipped == [
        "video 'v_first' sentence 1 (qid 1): end 52 s past duration 50 s, clipped to 50"
    ]
    assert annotations.report.dropped == ["video 'v_second' sentence 0 (qid 2): window [5, 5] s: start >= end; dropped"]


def test_2dtan_float_noise_past_duration_is_clipped_without_a_report(tmp_path: Path) -> None:
    # ActivityNet stores durations such as 70.28999999999999 next to an end time of 70.29.
    payload = {"v_a": {"duration": 70.28999999999999, "timestamps": [[57.64, 70.29]], "sentences": ["talks"]}}
    annotations = read_annotations(write(tmp_path / "a.json", json.dumps(payload)))
    assert annotations.records[0].windows == ((57.64, 70.28999999999999),)
    assert annotations.report.clipped == []


def test_tacos_frames_become_seconds_and_avi_is_stripped(tmp_path: Path) -> None:
    payload = {"s13-d21.avi": {"timestamps": [[50, 100], [200, 260]], "sentences": ["He cuts.", "He eats."],
                               "fps": 25.0, "num_frames": 250}}
    annotations = read_annotations(write(tmp_path / "tacos_test.json", json.dumps(payload)))
    assert annotations.format == "2dtan"
    assert annotations.records == [
        QueryRecord(0, "s13-d21", 10.0, ((2.0, 4.0),), "He cuts."),
        QueryRecord(1, "s13-d21", 10.0, ((8.0, 10.0),), "He eats."),
    ]
    assert annotations.report.clipped == [
        "video 's13-d21.avi' sentence 1 (qid 1): end 10.4 s past duration 10 s, clipped to 10"
    ]


def test_video_keys_colliding_after_extension_strip_are_an_error(tmp_path: Path) -> None:
    entry = {"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["x"]}
    path = write(tmp_path / "a.json", json.dumps({"s1.avi": entry, "s1": entry}))
    with pytest.raises(InputError, match=r"video 's1': same video id 's1' as 's1\.avi'"):
        read_annotations(path)


def test_mmn_is_detected_as_2dtan_and_can_be_labelled_mmn(tmp_path: Path) -> None:
    payload = {"3MSZA": {"duration": 30.96, "timestamps": [[24.3, 31.4]], "sentences": ["person turn a light on."]}}
    path = write(tmp_path / "charades_test.json", json.dumps(payload))
    assert detect_format(path) == "2dtan"
    annotations = read_annotations(path, format="mmn")
    assert annotations.format == "mmn"
    assert annotations.records == [QueryRecord(0, "3MSZA", 30.96, ((24.3, 30.96),), "person turn a light on.")]
    assert len(annotations.report.clipped) == 1


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"duration": 10.0, "timestamps": [[1, 2], [3, 4]], "sentences": ["x"]}, "2 timestamps but 1 sentences"),
        ({"duration": -1, "timestamps": [], "sentences": []}, "'duration' is -1, expected seconds > 0"),
        ({"duration": 10.0, "timestamps": [[1, "b"]], "sentences": ["x"]}, r"timestamp \[1, 'b'\] should be"),
        ({"timestamps": [], "sentences": []}, r"no 'duration' \(or TACoS 'fps' \+ 'num_frames'\)"),
        ({"duration": 10.0, "timestamps": [[1, 2]], "sentences": [3]}, "sentence must be a string"),
    ],
)
def test_2dtan_malformed_entries_name_the_video(tmp_path: Path, entry: dict, expected: str) -> None:
    path = write(tmp_path / "a.json", json.dumps({"v_bad": entry}))
    with pytest.raises(InputError, match=rf"v_bad.*{expected}"):
        read_annotations(path, format="2dtan")


# ----------------------------------------------------------------------------------------------- Charades-CD


def test_charades_cd_uses_video_duration(tmp_path: Path) -> None:
    payload = {"WXXYY": {"framestamps": [[448, 576]], "decode_fps": 16.0, "encoded_sentences": [[1, 44]],
                         "sentences": ["person sits on the floor"], "video_fps": -1.0,
                         "timestamps": [[28.0, 36.0]], "video_duration": 35.4375}}
    path = write(tmp_path / "charades_test_ood.json", json.dumps(payload))
    annotations = read_annotations(path)
    assert annotations.format == "charades-cd"
    assert annotations.records == [QueryRecord(0, "WXXYY", 35.4375, ((28.0, 35.4375),), "person sits on the floor")]
    assert annotations.report.clipped[0].startswith("video 'WXXYY' sentence 0 (qid 0): end 36 s past duration")


def test_charades_cd_forced_as_2dtan_suggests_the_right_format(tmp_path: Path) -> None:
    payload = {"WXXYY": {"sentences": ["x"], "timestamps": [[1.0, 2.0]], "video_duration": 35.0}}
    path = write(tmp_path / "cd.json", json.dumps(payload))
    with pytest.raises(InputError, match="pass --format charades-cd"):
        read_annotations(path, format="2dtan")


# ----------------------------------------------------------------------------------------------- Moment-DETR


def test_moment_detr_keeps_several_windows_and_file_qids(tmp_path: Path) -> None:
    items = [
        {"qid": 9769, "query": "some military patriots takes us through their safety procedures",
         "duration": 150, "vid": "j7rJstUseKg_360.0_510.0", "relevant_clip_ids": [0, 1, 2],
         "saliency_scores": [[1, 2, 3]], "relevant_windows": [[72, 82], [84, 94], [140, 152]]},
        {"qid": 12, "query": "A man talks.", "duration": 126.0, "vid": "abc_60.0_210.0",
         "relevant_windows": [[0, 4.5]]},
    ]
    annotations = read_annotations(write_jsonl(tmp_path / "highlight_val_release.jsonl", items))
    assert annotations.format == "moment-detr"
    assert annotations.records == [
        QueryRecord(9769, "j7rJstUseKg_360.0_510.0", 150.0, ((72.0, 82.0), (84.0, 94.0), (140.0, 150.0)),
                    "some military patriots takes us through their safety procedures"),
        QueryRecord(12, "abc_60.0_210.0", 126.0, ((0.0, 4.5),), "A man talks."),
    ]
    assert annotations.report.clipped == [
        "highlight_val_release.jsonl:1: qid 9769 video 'j7rJstUseKg_360.0_510.0' window 2: "
        "end 152 s past duration 150 s, clipped to 150"
    ]


def test_moment_detr_drops_bad_windows_and_queries_left_without_any(tmp_path: Path) -> None:
    items = [
        {"qid": 1, "query": "kept", "duration": 10, "vid": "a", "relevant_windows": [[3, 3], [4, 6]]},
        {"qid": 2, "query": "gone", "duration": 10, "vid": "a", "relevant_windows": [[5, 2]]},
    ]
    annotations = read_annotations(write_jsonl(tmp_path / "m.jsonl", items))
    assert [(record.qid, record.windows) for record in annotations] == [(1, ((4.0, 6.0),))]
    assert annotations.report.num_read == 2
    assert annotations.report.dropped == [
        "m.jsonl:1: qid 1 video 'a' window 0: window [3, 3] s: start >= end; dropped",
        "m.jsonl:2: qid 2 video 'a' window 0: window [5, 2] s: start >= end; dropped",
        "m.jsonl:2: qid 2 video 'a': no valid window left; query dropped",
    ]


def test_moment_detr_duplicate_qid_names_both_lines(tmp_path: Path) -> None:
    item = {"qid": 7, "query": "q", "duration": 10, "vid": "a", "relevant_windows": [[1, 2]]}
    path = write_jsonl(tmp_path / "m.jsonl", [item, {**item, "qid": 8}, item])
    with pytest.raises(InputError, match=r"m\.jsonl:3: qid 7 is already used on line 1"):
        read_annotations(path)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"qid": 1, "query": "q", "duration": 10, "vid": "a"', r"m\.jsonl:2: not valid JSON"),
        ('{"qid": 1, "query": "q", "duration": 10, "vid": "a"}',
         r"m\.jsonl:2: missing key\(s\) \['relevant_windows'\]"),
        ('{"qid": "1", "query": "q", "duration": 10, "vid": "a", "relevant_windows": []}',
         r"m\.jsonl:2: qid '1' must be"),
        ('{"qid": 1, "query": "q", "duration": 0, "vid": "a", "relevant_windows": []}',
         r"m\.jsonl:2: qid 1: duration 0"),
        ('[1, 2]', r"m\.jsonl:2: expected one JSON object per line"),
    ],
)
def test_moment_detr_malformed_line_names_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    first = json.dumps({"qid": 0, "query": "q", "duration": 10, "vid": "a", "relevant_windows": [[1, 2]]})
    path = write(tmp_path / "m.jsonl", f"{first}\n{line}\n")
    with pytest.raises(InputError, match=expected):
        read_annotations(path)


# ----------------------------------------------------------------------------------------------- detection


def _same_two_queries(tmp_path: Path, fmt: str) -> tuple[Path, list[Path] | None]:
    """The same two queries (video 'vidA', 20 s) written in ``fmt``; returns (file, durations CSVs)."""
    sentences = ["a person opens a door", "the person sits down"]
    windows = [[2.0, 5.0], [5.0, 8.0]]
    if fmt == "charades-sta":
        csv_path = write_csv(tmp_path / "Charades_v1_test.csv", {"vidA": "20.0"})
        text = "".join(f"vidA {start} {end}##{sentence}\n" for (start, end), sentence in zip(windows, sentences))
        return write(tmp_path / "anno.txt", text), [csv_path]
    if fmt in ("2dtan", "mmn"):
        payload = {"vidA": {"duration": 20.0, "timestamps": windows, "sentences": sentences}}
        return write(tmp_path / "anno.json", json.dumps(payload)), None
    if fmt == "charades-cd":
        payload = {"vidA": {"timestamps": windows, "sentences": sentences, "video_duration": 20.0,
                            "framestamps": [[32, 80], [80, 128]], "decode_fps": 16.0,
                            "encoded_sentences": [[1, 2], [3, 4]], "video_fps": -1.0}}
        return write(tmp_path / "anno.json", json.dumps(payload)), None
    assert fmt == "moment-detr"
    items = [{"qid": qid, "query": sentence, "duration": 20.0, "vid": "vidA", "relevant_windows": [window]}
             for qid, (window, sentence) in enumerate(zip(windows, sentences))]
    return write_jsonl(tmp_path / "anno.jsonl", items), None


@pytest.mark.parametrize("fmt", ANNOTATION_FORMATS)
def test_every_format_reads_the_same_queries(tmp_path: Path, fmt: str) -> None:
    path, durations = _same_two_queries(tmp_path, fmt)
    annotations = read_annotations(path, format=fmt, durations=durations)
    assert annotations.format == fmt
    assert annotations.records == [
        QueryRecord(0, "vidA", 20.0, ((2.0, 5.0),), "a person opens a door"),
        QueryRecord(1, "vidA", 20.0, ((5.0, 8.0),), "the person sits down"),
    ]


@pytest.mark.parametrize("fmt", ANNOTATION_FORMATS)
def test_detect_format_from_content(tmp_path: Path, fmt: str) -> None:
    path, _ = _same_two_queries(tmp_path, fmt)
    assert detect_format(path) == ("2dtan" if fmt == "mmn" else fmt)


def test_moment_detr_is_detected_without_jsonl_extension(tmp_path: Path) -> None:
    item = {"qid": 3, "query": "q", "duration": 10, "vid": "a", "relevant_windows": [[1, 2]]}
    path = write_jsonl(tmp_path / "val.json", [item])
    assert detect_format(path) == "moment-detr"


def test_forced_format_overrides_detection(tmp_path: Path) -> None:
    path, _ = _same_two_queries(tmp_path, "charades-cd")
    with pytest.raises(InputError, match=r"anno\.json:1: expected 'VIDEO START END##sentence'"):
        read_annotations(path, format="charades-sta", durations=[write_csv(tmp_path / "d.csv", {"vidA": "20"})])


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "empty.txt", text)
    with pytest.raises(InputError, match=r"empty\.txt: the file is empty"):
        detect_format(path)
    with pytest.raises(InputError, match="the file is empty"):
        read_annotations(path, format="moment-detr")


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.json", '{"v_a": {"duration": 3.0,\n "timestamps": [[1, 2]]\n')
    with pytest.raises(InputError, match=r"broken\.json:3: not valid JSON"):
        read_annotations(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("video,start,end\n", "cannot tell the annotation format from its first line"),
        ('{"v_a": {"caption": "x"}}', r"first video's entry has \['caption'\]"),
        ("[1, 2, 3]", r"JSON of unknown layout \(a list\)"),
        ("{}", "with no entries"),
    ],
)
def test_unknown_content_is_an_error_that_suggests_format(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        detect_format(write(tmp_path / "mystery.dat", text))


def test_missing_file_and_unknown_format_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="annotation file not found"):
        read_annotations(tmp_path / "nope.txt")
    path, _ = _same_two_queries(tmp_path, "2dtan")
    with pytest.raises(InputError, match="unknown annotation format 'tacos'; choose one of charades-sta"):
        read_annotations(path, format="tacos")


def test_durations_are_refused_for_formats_that_carry_their_own(tmp_path: Path, test_csv: Path) -> None:
    path, _ = _same_two_queries(tmp_path, "2dtan")
    with pytest.raises(InputError, match="--durations is only used for charades-sta files; this file is 2dtan"):
        read_annotations(path, durations=[test_csv])


@pytest.mark.parametrize(
    ("key", "expected"),
    [("s13-d21.avi", "s13-d21"), ("clip.MP4", "clip"), ("a.webm", "a"), ("b.mkv", "b"),
     ("v_abc", "v_abc"), ("xyz_360.0_510.0", "xyz_360.0_510.0"), (".avi", ".avi")],
)
def test_strip_video_extension(key: str, expected: str) -> None:
    assert strip_video_extension(key) == expected
