"""The colour an object shows, the colour its sentences name it by, and no two objects that look alike.

Plans only (no video is rendered): the renderer's tracks (``object_tracks``, the colours it paints) are the
reference for what an object shows.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from grounding.errors import InputError
from grounding.video.synth.dataset import (
    GENERATOR,
    GENERATOR_VERSION,
    DatasetPlan,
    SynthConfig,
    build_dataset,
    plan_dataset,
)
from grounding.video.synth.language import COLOUR_WORDS, SHAPE_WORDS
from grounding.video.synth.render import object_tracks
from grounding.video.synth.world import (
    COLOURS,
    Event,
    SceneObject,
    VideoScript,
    _change_colour_target,
    colour_at,
    named_colour,
)

FPS = 100  # a frame every 0.01 s: every event boundary (2 decimals) is a frame
PALETTE = np.array(list(COLOURS.values()), dtype=np.float64)
COLOUR_OF_WORD = {word: colour for colour, words in COLOUR_WORDS.items() for word in words}
SHAPE_OF_WORD = {word: shape for shape, words in SHAPE_WORDS.items() for word in words}
LOOK = re.compile(rf"\b({'|'.join(COLOUR_OF_WORD)}) ({'|'.join(SHAPE_OF_WORD)})\b")


@lru_cache(maxsize=None)
def plan(seed: int, num_videos: int) -> DatasetPlan:
    return plan_dataset(SynthConfig(seed=seed, num_videos=num_videos))


def shown_colours(script: VideoScript) -> list[np.ndarray]:
    """Per object, (T,) index into COLOURS of the palette colour nearest to what the renderer paints."""
    tracks = object_tracks(script, 64, 64, FPS)
    return [np.abs(track.colour[:, None, :] - PALETTE[None]).sum(-1).argmin(-1) for track in tracks]


def test_colour_at_is_what_the_renderer_paints() -> None:
    """At every event's boundaries, just inside them and in its middle, for every object of 60 videos."""
    names = list(COLOURS)
    checked_inside = 0
    for script in plan(0, 60).scripts:
        tracks = object_tracks(script, 64, 64, FPS)
        moments = {0, len(tracks[0].colour) - 1}
        for event in script.events:
            start, end = round(event.start * FPS), round(event.end * FPS)
            moments |= {start, start + 1, (start + end) // 2, end - 1, end}
        for obj, track in enumerate(tracks):
            for frame in sorted(f for f in moments if 0 <= f < len(track.colour)):
                said = colour_at(script.objects, script.events, obj, frame / FPS)
                rgb = track.colour[frame]
                exact = [name for name, value in zip(names, PALETTE) if np.allclose(rgb, value, atol=1e-3)]
                if exact:  # a pure palette colour: the rule names it
                    assert exact == [said], (script.video_id, obj, frame)
                else:  # mid-ramp, which only happens inside a change-colour: the rule names the target
                    assert said != script.objects[obj].colour, (script.video_id, obj, frame)
                    checked_inside += 1
    assert checked_inside > 20


def test_a_changed_object_is_its_own_colour_again_after_the_change() -> None:
    objects = (SceneObject("red", "circle", 0.5, 0.5, 0.12),)
    events = (Event(0, "change-colour", 1.0, 3.0, "blue"), Event(0, "spin", 4.0, 6.0))
    assert [colour_at(objects, events, 0, t) for t in (0.5, 1.0, 2.0, 3.0, 5.0)] == ["red", "red", "blue", "red", "red"]
    assert named_colour(objects, events, events[0]) == "red"  # its start: before the change
    assert named_colour(objects, events, events[1]) == "red"  # after it: the renderer turned it back


def test_no_sentence_names_a_colour_its_object_does_not_show() -> None:
    """Over a whole 300-video plan: the (colour, shape) words of every sentence, both clauses of the ordered
    ones, are the colours the renderer paints the named objects in at their events' starts."""
    after_a_change = 0
    for script in plan(0, 300).scripts:
        shown = shown_colours(script)
        names = list(COLOURS)
        for query in plan(0, 300).queries[script.video_id]:
            named = [script.events[i] for i in (query.event, query.after) if i is not None]
            said = Counter((COLOUR_OF_WORD[c], SHAPE_OF_WORD[s]) for c, s in LOOK.findall(query.sentence))
            seen = Counter((names[shown[e.obj][round(e.start * FPS)]], script.objects[e.obj].shape) for e in named)
            assert said == seen, (script.video_id, query.sentence)
            after_a_change += any(
                f.obj == e.obj and f.action == "change-colour" and f.end <= e.start
                for e in named
                for f in script.events
            )
    assert after_a_change > 10  # the case the rule is about does occur


def test_held_out_compositions_use_the_colour_shown() -> None:
    for script in plan(0, 300).scripts:
        shown = shown_colours(script)
        for event in script.events:
            colour, shape, action = script.triple(event)
            assert colour == list(COLOURS)[shown[event.obj][round(event.start * FPS)]]
            assert (shape, action) == (script.objects[event.obj].shape, event.action)


def test_no_two_objects_of_a_video_ever_look_alike() -> None:
    """Every colour an object ever has (its own and its change-colour target) is unique among the objects of
    its shape, over two plans (1,300 videos)."""
    for seed, num_videos in ((0, 300), (1, 1000)):
        for script in plan(seed, num_videos).scripts:
            looks: list[tuple[str, str]] = []
            for index, obj in enumerate(script.objects):
                colours = {obj.colour} | {
                    e.target_colour for e in script.events if e.obj == index and e.action == "change-colour"
                }
                looks += [(colour, obj.shape) for colour in colours]
            assert len(set(looks)) == len(looks), script.video_id


def test_change_colour_target_avoids_every_look_of_its_shape() -> None:
    objects = (
        SceneObject("red", "circle", 0.2, 0.2, 0.12),
        SceneObject("blue", "circle", 0.5, 0.5, 0.12),
        SceneObject("green", "square", 0.8, 0.8, 0.12),
    )
    drawn = [Event(1, "change-colour", 0.0, 2.0, "yellow")]
    picks = Counter(_change_colour_target(np.random.default_rng(seed), objects, 0, drawn) for seed in range(300))
    assert set(picks) == {"green", "purple", "white"}  # not red (own), blue (the other circle), yellow (its target)
    four_circles = tuple(SceneObject(c, "circle", 0.5, 0.5, 0.12) for c in ("red", "green", "blue", "yellow"))
    taken = [Event(1, "change-colour", 0.0, 2.0, "purple"), Event(2, "change-colour", 0.0, 2.0, "white")]
    assert _change_colour_target(np.random.default_rng(0), four_circles, 0, taken) is None


def test_change_colour_target_keeps_the_first_draw_when_it_is_allowed() -> None:
    """The first draw is version 1's (uniform over the other colours), so only look-alike videos changed."""
    objects = (SceneObject("red", "circle", 0.5, 0.5, 0.12), SceneObject("blue", "star", 0.2, 0.2, 0.12))
    others = [c for c in COLOURS if c != "red"]
    for seed in range(50):
        expected = others[int(np.random.default_rng(seed).integers(len(others)))]
        assert _change_colour_target(np.random.default_rng(seed), objects, 0, []) == expected


def test_a_version_1_folder_is_refused_with_the_versions_named(tmp_path: Path) -> None:
    config = SynthConfig(seed=0, num_videos=2)
    manifest = {"generator": GENERATOR, "generator_version": 1, "config": config.__dict__, "complete": True}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert GENERATOR_VERSION == 2
    with pytest.raises(InputError, match=r"version 1 there vs 'grounding.video.synth' version 2 here.*--overwrite"):
        build_dataset(tmp_path, config, workers=1, progress=False)
