"""Tests of the rendered world (`grounding synth`): determinism, file formats, splits, query design, resume."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from grounding.cli.main import main
from grounding.errors import InputError
from grounding.video.synth.dataset import (
    SynthConfig,
    assign_splits,
    build_dataset,
    plan_dataset,
)
from grounding.video.synth.render import (
    JUMP_HEIGHT,
    MOVE_SPEED,
    SHAKE_AMPLITUDE,
    SIZE_FACTOR,
    SPIN_SPEED,
    object_tracks,
    render_frames,
    write_mp4,
)
from grounding.video.synth.world import (
    ACTIONS,
    COLOURS,
    Background,
    Event,
    SceneObject,
    VideoScript,
    choose_held_out_triples,
)

LINE = re.compile(r"^(syn\d{5}) (\d+\.\d{2}) (\d+\.\d{2})##(.+)$")


def tiny_config(seed: int = 3, num_videos: int = 4) -> SynthConfig:
    """Small frames, 4 fps and 3-5 s videos: a whole tiny world renders in a fraction of a second."""
    return SynthConfig(
        seed=seed, num_videos=num_videos, width=64, height=64, fps=4, min_duration=3.0, max_duration=5.0
    )


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    build_dataset(out, tiny_config(), workers=1, progress=False)
    return out


def read_durations(folder: Path) -> dict[str, float]:
    with open(folder / "durations.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "length"]
    return {vid: float(length) for vid, length in rows[1:]}


def decode_all(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def simple_script(events: tuple[Event, ...], duration: float = 4.0) -> VideoScript:
    """One red circle in the middle of a flat grey frame; no clutter, flicker or noise."""
    return VideoScript(
        video_id="syn00000",
        index=0,
        split="train",
        duration=duration,
        objects=(SceneObject(colour="red", shape="circle", x=0.5, y=0.5, radius=0.15),),
        events=events,
        distractors=(),
        background=Background("gradient", (60, 60, 60), (60, 60, 60), 0.1, 0.0, 0.0, 0.0, 7),
        flicker=0.0,
        noise=0.0,
    )


# --- the folder and its files ---------------------------------------------------------------------------------


def test_folder_layout_and_annotation_format(tiny_world: Path) -> None:
    durations = read_durations(tiny_world)
    assert sorted(durations) == [f"syn{i:05d}" for i in range(4)]
    assert sorted(p.name for p in (tiny_world / "videos").iterdir()) == [f"syn{i:05d}.mp4" for i in range(4)]
    seen_videos = set()
    for split in ("train", "test", "test_novel"):
        for line in (tiny_world / f"{split}.txt").read_text().splitlines():
            match = LINE.match(line)
            assert match, f"{split}.txt: bad line {line!r}"
            vid, start, end, sentence = match.group(1), float(match.group(2)), float(match.group(3)), match.group(4)
            assert 0.0 <= start < end <= durations[vid], line
            assert sentence.endswith(".") and sentence == sentence.lower()
            seen_videos.add(vid)
    assert seen_videos == set(durations)  # every video has queries
    for duration in durations.values():  # 3..5 s on the 0.25 s grid of 4 fps
        assert 3.0 <= duration <= 5.0 and duration * 4 == int(duration * 4)


def test_manifest_records_splits_counts_and_vocabulary(tiny_world: Path) -> None:
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["config"]["seed"] == 3 and manifest["config"]["num_videos"] == 4
    assert manifest["counts"]["videos"] == {"train": 2, "test": 1, "test_novel": 1}
    for split in ("train", "test", "test_novel"):
        lines = (tiny_world / f"{split}.txt").read_text().splitlines()
        assert manifest["counts"]["queries"][split] == len(lines)
        assert {line.split()[0] for line in lines} <= set(manifest["splits"][split])
    assert manifest["vocabulary"]["actions"] == list(ACTIONS)
    assert manifest["vocabulary"]["colours"] == list(COLOURS)
    words = set(manifest["vocabulary"]["words"])
    for split in ("train", "test", "test_novel"):
        for line in (tiny_world / f"{split}.txt").read_text().splitlines():
            assert set(re.findall(r"[a-z]+", line.split("##")[1])) <= words


def test_relevance_files_are_written_beside_the_annotations(tiny_world: Path) -> None:
    for split in ("train", "test", "test_novel"):
        annotated = (tiny_world / f"{split}.txt").read_text().splitlines()
        relevant = [json.loads(line) for line in (tiny_world / f"{split}.relevant.jsonl").read_text().splitlines()]
        assert [(item["qid"], item["vid"], item["query"]) for item in relevant] == [
            (qid, line.split()[0], line.split("##")[1]) for qid, line in enumerate(annotated)
        ]


def test_mp4_decodes_with_decord_at_expected_size_count_and_fps(tiny_world: Path) -> None:
    decord = pytest.importorskip("decord")
    durations = read_durations(tiny_world)
    for vid in ("syn00000", "syn00003"):
        reader = decord.VideoReader(str(tiny_world / "videos" / f"{vid}.mp4"))
        assert len(reader) == round(durations[vid] * 4)
        assert reader.get_avg_fps() == pytest.approx(4.0)
        assert reader[0].shape == (64, 64, 3)


# --- determinism ----------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_annotations_and_frames(tiny_world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_dataset(again, tiny_config(), workers=1, progress=False)
    for name in ("train.txt", "test.txt", "test_novel.txt", "durations.csv", "manifest.json"):
        assert (again / name).read_bytes() == (tiny_world / name).read_bytes(), name
    first, second = decode_all(tiny_world / "videos/syn00001.mp4"), decode_all(again / "videos/syn00001.mp4")
    assert first.shape == second.shape and np.array_equal(first, second)
    for index in range(4):  # byte-identical files, too
        name = f"videos/syn{index:05d}.mp4"
        assert (again / name).read_bytes() == (tiny_world / name).read_bytes(), name


def test_workers_do_not_change_the_videos(tiny_world: Path, tmp_path: Path) -> None:
    parallel = tmp_path / "parallel"
    build_dataset(parallel, tiny_config(), workers=2, progress=False)
    for index in range(4):
        name = f"videos/syn{index:05d}.mp4"
        assert (parallel / name).read_bytes() == (tiny_world / name).read_bytes(), name
    assert (parallel / "train.txt").read_bytes() == (tiny_world / "train.txt").read_bytes()


def test_different_seed_gives_different_world(tiny_world: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    build_dataset(other, tiny_config(seed=4), workers=1, progress=False)
    assert (other / "train.txt").read_text() != (tiny_world / "train.txt").read_text()
    assert (other / "durations.csv").read_text() != (tiny_world / "durations.csv").read_text()
    first, second = decode_all(tiny_world / "videos/syn00000.mp4"), decode_all(other / "videos/syn00000.mp4")
    assert first.shape != second.shape or not np.array_equal(first, second)


# --- splits and query design (plans only: no pixels needed) ----------------------------------------------------


def test_split_rule_counts() -> None:
    assert Counter(assign_splits(300, 0)) == {"train": 210, "test": 45, "test_novel": 45}
    assert Counter(assign_splits(3, 0)) == {"train": 1, "test": 1, "test_novel": 1}
    assert assign_splits(1, 0) == ["train"]
    assert Counter(assign_splits(2, 5)) == {"train": 1, "test": 1}


def test_held_out_compositions_only_in_test_novel() -> None:
    plan = plan_dataset(SynthConfig(seed=11, num_videos=80))
    assert plan.held_out == choose_held_out_triples(11, 0.1) and len(plan.held_out) == 43
    novel_queries = 0
    for script in plan.scripts:
        triples = [script.triple(event) for event in script.events]
        if script.split == "test_novel":
            asked = [script.triple(script.events[q.event]) for q in plan.queries[script.video_id]]
            assert asked and all(triple in plan.held_out for triple in asked)
            novel_queries += len(asked)
        else:
            assert not any(triple in plan.held_out for triple in triples), script.video_id
    assert novel_queries >= 12


def test_every_query_has_a_confounder_in_its_video() -> None:
    plan = plan_dataset(SynthConfig(seed=5, num_videos=60))
    both = 0
    for script in plan.scripts:
        objects_and_actions = [(event.obj, event.action) for event in script.events]
        assert len(set(objects_and_actions)) == len(objects_and_actions)  # no (object, action) twice
        for query in plan.queries[script.video_id]:
            event = script.events[query.event]
            others = [e for i, e in enumerate(script.events) if i != query.event]
            same_object = any(e.obj == event.obj for e in others)
            same_action = any(e.action == event.action for e in others)
            assert same_object or same_action, (script.video_id, query)
            both += same_object and same_action
        names = [obj.name for obj in script.objects]
        assert len(set(names)) == len(names)  # an object's colour + shape names it uniquely
    assert both > 60  # three or more events: both kinds of confounder


def test_ordered_queries_point_at_the_later_event() -> None:
    plan = plan_dataset(SynthConfig(seed=2, num_videos=40))
    ordered = 0
    for script in plan.scripts:
        for query in plan.queries[script.video_id]:
            event = script.events[query.event]
            assert (query.start, query.end) == (event.start, event.end)
            if query.after is not None:
                first = script.events[query.after]
                assert first.end <= event.start
                assert re.search(r"\bafter\b|\bthen\b|\bonce\b", query.sentence)
                ordered += 1
    assert ordered >= 10


def test_events_respect_durations_and_one_action_at_a_time() -> None:
    plan = plan_dataset(SynthConfig(seed=9, num_videos=60))
    lengths = []
    for script in plan.scripts:
        assert 15.0 <= script.duration <= 40.0 and 2 <= len(script.events) <= 5
        for event in script.events:
            assert 0.0 <= event.start < event.end <= script.duration
            lengths.append((event.end - event.start) / script.duration)
        for obj in range(len(script.objects)):
            own = [e for e in script.events if e.obj == obj]
            assert all(a.end <= b.start for a, b in zip(own, own[1:]))
            actions = [e.action for e in own]
            if "appear" in actions:
                assert actions[0] == "appear"
            if "disappear" in actions:
                assert actions[-1] == "disappear"
    assert min(lengths) < 0.1 and max(lengths) > 0.5  # from about a second to more than half the video


# --- rendering semantics ---------------------------------------------------------------------------------------


def test_move_left_and_grow_change_the_track_by_the_documented_amount() -> None:
    script = simple_script(
        (Event(obj=0, action="move-left", start=1.0, end=2.0), Event(obj=0, action="grow", start=2.0, end=3.0))
    )
    (track,) = object_tracks(script, width=100, height=100, fps=4)
    # frames at 0, 0.25, ..., 3.75 s; the move ends at frame 8 (2.0 s), the growth at frame 12 (3.0 s).
    assert track.cx[0] == pytest.approx(50.0)
    assert track.cx[8] == pytest.approx(50.0 - MOVE_SPEED * 100 * 1.0)
    assert track.radius[12] == pytest.approx(15.0 * SIZE_FACTOR)
    assert track.radius[4] == pytest.approx(15.0)


def test_appear_hides_the_object_before_its_event() -> None:
    script = simple_script((Event(obj=0, action="appear", start=2.0, end=3.0),))
    (track,) = object_tracks(script, width=64, height=64, fps=4)
    assert np.all(track.alpha[:8] == 0.0) and track.alpha[12] == 1.0
    frames = list(render_frames(script, 64, 64, 4))
    assert np.abs(frames[0][32, 32].astype(int) - 60).max() <= 12  # background grain only
    assert np.abs(frames[14][32, 32].astype(int) - np.array(COLOURS["red"])).max() <= 2


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_renders_and_changes_the_frames(action: str) -> None:
    target = "blue" if action == "change-colour" else None
    script = simple_script((Event(obj=0, action=action, start=1.0, end=3.0, target_colour=target),))
    frames = np.stack(list(render_frames(script, 64, 64, 4)))
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    still = simple_script(())
    assert not np.array_equal(frames[4:12], np.stack(list(render_frames(still, 64, 64, 4)))[4:12])


# --- what each action means, measured on the pixels ----------------------------------------------------------
# One red circle (the marker dot near its top included) on a flat grey frame, one event over [1.0, 2.5) s of a
# 4 s video at 8 fps, 96x96. The object is every pixel more than 40 grey levels from the background (its grain
# has a standard deviation of 4); each frame gives the object's centre, area, colour and marker direction, and
# each action is checked before, during and after its annotated window, on the rendered frames and on the same
# frames through the H.264 mp4 a user gets.

SIZE, FPS, START, END, GREY = 96, 8, 1.0, 2.5, 60
BEFORE = slice(0, int(START * FPS) + 1)  # frames at t <= start (no effect yet)
DURING = slice(int(START * FPS), int(END * FPS))  # t in [start, end)
AFTER = slice(int(END * FPS), None)  # t >= end (the effect is complete and held, or undone)


def action_frames(action: str, source: str, tmp_path: Path) -> np.ndarray:
    target = "blue" if action == "change-colour" else None
    script = simple_script((Event(obj=0, action=action, start=START, end=END, target_colour=target),))
    frames = np.stack(list(render_frames(script, SIZE, SIZE, FPS)))
    if source == "mp4":
        path = tmp_path / f"{action}.mp4"
        write_mp4(iter(frames), path, SIZE, SIZE, FPS)
        frames = decode_all(path)
    return frames


def object_measures(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame: area (pixels), centre x and y (pixels, y down; NaN when invisible), median colour (RGB) and
    the marker's direction from the centre (degrees counter-clockwise from "right", y up)."""
    pixels = frames.astype(np.float64)
    mask = np.abs(pixels - GREY).max(axis=-1) > 40  # (T, H, W)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mask * xs).sum(axis=(1, 2)) / area
        cy = (mask * ys).sum(axis=(1, 2)) / area
    colour = np.full((len(frames), 3), np.nan)
    marker_angle = np.full(len(frames), np.nan)
    for t in range(len(frames)):
        if area[t] == 0:
            continue
        colour[t] = np.median(pixels[t][mask[t]], axis=0)
        brightness = pixels[t].sum(axis=-1)
        dark = mask[t] & (brightness < 0.6 * np.median(brightness[mask[t]]))  # the marker dot (60 % darker)
        if dark.any():
            marker_angle[t] = np.degrees(np.arctan2(cy[t] - ys[dark].mean(), xs[dark].mean() - cx[t]))
    return {"area": area, "cx": cx, "cy": cy, "colour": colour, "marker_angle": marker_angle}


def angle_gap(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)


SHIFT = MOVE_SPEED * SIZE * (END - START)  # pixels a move covers over the event: 28.8
BOB = 2 * 0.01 * SIZE + 1  # every object bobs by +-1 % of the height (peak to peak), plus a pixel of mask edge


@pytest.mark.parametrize("source", ["frames", "mp4"])
@pytest.mark.parametrize("action", ACTIONS)
def test_each_action_does_what_its_words_say_on_the_pixels(action: str, source: str, tmp_path: Path) -> None:
    measures = object_measures(action_frames(action, source, tmp_path))
    area, cx, cy = measures["area"], measures["cx"], measures["cy"]
    colour, marker = measures["colour"], measures["marker_angle"]
    red, blue = np.array(COLOURS["red"]), np.array(COLOURS["blue"])
    centre = SIZE / 2 - 0.5  # pixel centres are at integer coordinates
    if action != "appear":  # in the middle of the frame, visible, from the first frame
        assert abs(cx[0] - centre) < 1 and abs(cy[0] - centre) < BOB and area[0] > 200
    if action.startswith("move-"):
        axis, sign = {"move-left": (cx, -1), "move-right": (cx, 1), "move-up": (cy, -1), "move-down": (cy, 1)}[action]
        other = cy if axis is cx else cx
        assert np.ptp(axis[BEFORE]) < BOB and np.ptp(axis[AFTER]) < BOB  # still before and after the window
        assert sign * (axis[AFTER].mean() - axis[BEFORE].mean()) == pytest.approx(SHIFT, abs=BOB)
        assert np.all(sign * np.diff(axis[DURING]) > 0)  # one way, every frame of the window
        assert np.ptp(other) < BOB  # and only along its own axis
        assert np.ptp(area) / area.mean() < 0.1
    elif action in ("grow", "shrink"):
        factor = SIZE_FACTOR**2 if action == "grow" else SIZE_FACTOR**-2
        assert area[AFTER].mean() / area[BEFORE].mean() == pytest.approx(factor, rel=0.1)
        assert np.all(np.sign(factor - 1) * np.diff(area[DURING]) > 0)
        assert np.ptp(area[BEFORE]) / area[0] < 0.05 and np.ptp(area[AFTER]) / area[-1] < 0.05
        assert np.ptp(cx) < 1.5 and np.ptp(cy) < BOB  # it grows in place
    elif action == "change-colour":
        middle = slice(int((START + 0.5) * FPS), int((END - 0.5) * FPS))  # after the 0.4 s ramp in, before the ramp out
        assert np.abs(colour[middle] - blue).max() < 25  # the colour the sentence names
        assert np.abs(colour[BEFORE] - red).max() < 25 and np.abs(colour[AFTER] - red).max() < 25  # and back
        assert np.ptp(area) / area.mean() < 0.1 and np.ptp(cx) < 1
    elif action == "appear":
        assert np.all(area[: int(START * FPS) + 1] == 0)  # invisible until the window opens
        assert area[AFTER].min() > 200 and np.ptp(area[AFTER]) / area[-1] < 0.05
        assert area[DURING][-1] > area[DURING][len(area[DURING]) // 2] > 0  # fades and grows in
        assert np.abs(colour[AFTER] - red).max() < 25
    elif action == "disappear":
        assert np.ptp(area[BEFORE]) / area[0] < 0.05
        assert np.all(area[AFTER] == 0)  # gone when the window closes, and stays gone
        assert 0 < area[DURING][len(area[DURING]) // 2] < area[0]
    elif action == "spin":
        assert angle_gap(marker[BEFORE], 90.0).max() < 12  # the dot sits on top while the object is still
        times = np.arange(len(area)) / FPS
        expected = 90.0 + np.degrees(SPIN_SPEED) * np.clip(times - START, 0.0, END - START)  # counter-clockwise
        assert angle_gap(marker, expected).max() < 12
        assert angle_gap(marker[AFTER], 90.0 + np.degrees(SPIN_SPEED) * (END - START)).max() < 12  # held after
        assert np.ptp(cx) < 1.5 and np.ptp(cy) < BOB  # turning in place
    elif action == "jump":
        rest = cy[BEFORE].mean()
        assert rest - cy[DURING].min() == pytest.approx(JUMP_HEIGHT * SIZE, abs=2.5)  # up by the jump height
        assert abs(cy[AFTER].mean() - rest) < BOB and np.ptp(cx) < 1  # and back down, straight up
        assert np.all(cy[DURING] <= rest + BOB)  # never below where it stood
    elif action == "shake":
        rest = cx[BEFORE].mean()
        swing = cx[DURING] - rest
        assert swing.max() > 0.8 * SHAKE_AMPLITUDE * SIZE and swing.min() < -0.8 * SHAKE_AMPLITUDE * SIZE
        assert np.sum(np.diff(np.sign(swing[np.abs(swing) > 1])) != 0) >= 4  # side to side, several times
        assert abs(cx[AFTER].mean() - rest) < 1 and np.ptp(cx[AFTER]) < 1  # and still again
        assert np.ptp(cy) < BOB
    else:  # pragma: no cover - a new action needs its meaning checked here
        pytest.fail(f"no pixel check for action {action!r}")


# --- command line, resume, errors ------------------------------------------------------------------------------


def test_cli_renders_three_videos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    summary = tmp_path / "summary.json"
    code = main(["synth", "--out", str(out), "--videos", "3", "--seed", "1", "--no-progress", "--json", str(summary)])
    assert code == 0
    assert "3 videos rendered" in capsys.readouterr().out
    assert len(list((out / "videos").glob("syn*.mp4"))) == 3
    frames = decode_all(out / "videos/syn00000.mp4")  # defaults: 160x160 at 8 fps
    assert frames.shape[1:] == (160, 160, 3) and len(frames) == round(read_durations(out)["syn00000"] * 8)
    payload = json.loads(summary.read_text())
    assert payload["rendered"] == 3 and payload["videos"] == {"train": 1, "test": 1, "test_novel": 1}
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 1


def test_resume_renders_only_missing_videos(tmp_path: Path) -> None:
    out = tmp_path / "resume"
    build_dataset(out, tiny_config(num_videos=3), workers=1, progress=False)
    kept = out / "videos/syn00000.mp4"
    kept_stamp = kept.stat().st_mtime_ns
    removed = out / "videos/syn00002.mp4"
    original = removed.read_bytes()
    removed.unlink()
    (out / "videos/.syn00001.partial.mp4").write_bytes(b"half a video")  # a crash's leftover
    summary = build_dataset(out, tiny_config(num_videos=3), workers=1, progress=False)
    assert (summary.rendered, summary.skipped) == (1, 2)
    assert kept.stat().st_mtime_ns == kept_stamp
    assert removed.read_bytes() == original
    assert not (out / "videos/.syn00001.partial.mp4").exists()


def test_other_config_in_out_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken"
    build_dataset(out, tiny_config(seed=1, num_videos=1), workers=1, progress=False)
    with pytest.raises(InputError, match="another config.*--overwrite"):
        build_dataset(out, tiny_config(seed=2, num_videos=1), workers=1, progress=False)
    code = main(["synth", "--out", str(out), "--videos", "1", "--seed", "2", "--no-progress"])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    summary = build_dataset(out, tiny_config(seed=2, num_videos=1), workers=1, overwrite=True, progress=False)
    assert summary.rendered == 1
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 2


def test_non_empty_folder_without_manifest_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="no manifest.json"):
        build_dataset(tmp_path, tiny_config(num_videos=1), workers=1, progress=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--videos", "0"], "--videos must be at least 1, got 0"),
        (["--videos", "2", "--size", "65"], "even number"),
        (["--videos", "2", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = main(["synth", "--out", str(tmp_path / "x"), *argv, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
