"""The rendered world's vocabulary and its event scripts.

A video shows two to four *actor* objects (a colour and a shape each, never two alike) on a textured
background with drifting background shapes. Two to five *events* happen, each one object doing one action
over ``[start, end)`` seconds. Events of different objects may overlap; one object does one thing at a time.

The events of a video are laid out on a small object x action grid so that a query always needs both its
words and the video: every event shares its object with another event or its action with another event
(from three events on, both), so neither the object words nor the action words alone find the moment.

Everything is drawn from a ``numpy.random.Generator`` that the caller derives from ``(seed, video index)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Saturated colours that ImageNet features separate well; background colours stay dull (see render.py).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 200, 60),
    "blue": (45, 95, 240),
    "yellow": (245, 225, 40),
    "purple": (160, 60, 215),
    "white": (245, 245, 245),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
ACTIONS: tuple[str, ...] = (
    "appear",
    "disappear",
    "move-left",
    "move-right",
    "move-up",
    "move-down",
    "grow",
    "shrink",
    "spin",
    "change-colour",
    "jump",
    "shake",
)
# An object that appears is invisible before its appear event, so appear is its first event; disappear its last.
_FIRST_ACTIONS = ("appear",)
_LAST_ACTIONS = ("disappear",)

Triple = tuple[str, str, str]  # (colour, shape, action)

# Streams of the seed sequence: [seed, stream, index] keeps each random decision independent of the others.
_STREAM_HOLDOUT = 1
_STREAM_SPLIT = 2
_STREAM_VIDEO = 3
_STREAM_LANGUAGE = 4


@dataclass(frozen=True)
class SceneObject:
    """One object of a video.

    Attributes:
        colour: a key of :data:`COLOURS`.
        shape: one of :data:`SHAPES`.
        x, y: starting centre as a fraction of frame width / height (0..1).
        radius: half the object's size as a fraction of frame height (0.13 = 26 % of the height).
        actor: False for an idle object that never acts (a visual distractor for the queries).
    """

    colour: str
    shape: str
    x: float
    y: float
    radius: float
    actor: bool = True

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Event:
    """One object doing one action over ``[start, end)`` seconds (2 decimals).

    ``target_colour`` is the colour a ``change-colour`` event turns to (``None`` for other actions).
    """

    obj: int
    action: str
    start: float
    end: float
    target_colour: str | None = None


@dataclass(frozen=True)
class Distractor:
    """A faint background shape that drifts (and wraps around) for the whole video, upright.

    Positions and radius are fractions of the frame; velocities are in frame widths / heights per second;
    ``grey`` is the 0..255 level it is drawn in, ``alpha`` its opacity.
    """

    shape: str
    x: float
    y: float
    radius: float
    vx: float
    vy: float
    grey: float
    alpha: float


@dataclass(frozen=True)
class Background:
    """A per-video background: ``kind`` in {gradient, stripes, checker, blotches}, two dull RGB colours,
    a pattern period (fraction of frame width) and angle (radians), and a slow drift in pixels per second."""

    kind: str
    colour_a: tuple[int, int, int]
    colour_b: tuple[int, int, int]
    period: float
    angle: float
    drift_x: float
    drift_y: float
    texture_seed: int


@dataclass(frozen=True)
class VideoScript:
    """Everything that happens in one video; rendering is a pure function of it.

    Attributes:
        video_id: e.g. ``syn00042``.
        index: the video's 0-based index in the dataset.
        split: ``train``, ``test`` or ``test_novel``.
        duration: length in seconds (``num_frames / fps``, exact to 2 decimals).
        objects: the actor and idle objects; ``Event.obj`` indexes this tuple.
        events: sorted by start time.
        distractors, background: the per-video clutter.
        flicker: relative amplitude of the global brightness flicker; ``noise``: std of pixel noise (0..255).
    """

    video_id: str
    index: int
    split: str
    duration: float
    objects: tuple[SceneObject, ...]
    events: tuple[Event, ...]
    distractors: tuple[Distractor, ...]
    background: Background
    flicker: float
    noise: float

    def triple(self, event: Event) -> Triple:
        """The (colour, shape, action) composition ``event`` shows: its object's colour at the event's start
        (:func:`named_colour`, the colour its sentence names it by), shape and action."""
        return (named_colour(self.objects, self.events, event), self.objects[event.obj].shape, event.action)


def colour_at(objects: Sequence[SceneObject], events: Sequence[Event], obj: int, time: float) -> str:
    """The colour object ``obj`` shows at ``time`` seconds, as ``render.py`` draws it.

    A ``change-colour`` event ramps the object to its target colour and back within ``[start, end)``, so the
    object shows the target strictly inside one of its change-colour events (``start < time < end``; mid-ramp
    counts as the target) and its own colour at every other time, before and after the change alike.
    ``tests/video/test_synth_colour.py`` checks this rule against the renderer's tracks.
    """
    for event in events:
        if event.obj == obj and event.action == "change-colour" and event.start < time < event.end:
            assert event.target_colour is not None
            return event.target_colour
    return objects[obj].colour


def named_colour(objects: Sequence[SceneObject], events: Sequence[Event], event: Event) -> str:
    """The colour a sentence names ``event``'s object by: the colour it shows at the event's start.

    Sentences (both clauses of an ordered one), the held-out compositions and the relevance files all take an
    object's colour from here. With the renderer's rule (:func:`colour_at`) and one action at a time per
    object, this is the object's own colour: an earlier change-colour has turned back by the time it ends.
    """
    return colour_at(objects, events, event.obj, event.start)


def all_triples() -> list[Triple]:
    """Every (colour, shape, action) composition, in a fixed order."""
    return [(c, s, a) for c in COLOURS for s in SHAPES for a in ACTIONS]


def choose_held_out_triples(seed: int, fraction: float) -> frozenset[Triple]:
    """The seeded set of compositions kept out of ``train`` and ``test``; ``test_novel`` asks only about them.

    The draw is repeated until each held-out triple's colour-shape, colour-action and shape-action pairs still
    occur in some kept triple, so every part of a novel composition can be learned from training videos.
    """
    triples = all_triples()
    count = max(1, round(fraction * len(triples)))
    rng = np.random.default_rng([seed, _STREAM_HOLDOUT])
    while True:
        picked = [triples[i] for i in sorted(rng.choice(len(triples), size=count, replace=False))]
        if _pairs_still_seen(picked, triples):
            return frozenset(picked)


def _pairs_still_seen(held_out: list[Triple], triples: list[Triple]) -> bool:
    kept = set(triples) - set(held_out)
    seen_cs = {(c, s) for c, s, _ in kept}
    seen_ca = {(c, a) for c, _, a in kept}
    seen_sa = {(s, a) for _, s, a in kept}
    return all((c, s) in seen_cs and (c, a) in seen_ca and (s, a) in seen_sa for c, s, a in held_out)


def video_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for video ``index``'s script: independent of --workers and of the other videos."""
    return np.random.default_rng([seed, _STREAM_VIDEO, index])


def language_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for video ``index``'s sentences."""
    return np.random.default_rng([seed, _STREAM_LANGUAGE, index])


def split_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM_SPLIT])


# Event layouts on an object x action grid, by number of events: each cell is (object slot, action slot).
# Every layout gives each event a partner with the same object or the same action.
_LAYOUTS: dict[int, tuple[tuple[tuple[int, int], ...], ...]] = {
    2: (((0, 0), (1, 0)), ((0, 0), (0, 1))),
    3: (((0, 0), (0, 1), (1, 0)),),
    4: (((0, 0), (0, 1), (1, 0), (1, 1)),),
    5: (((0, 0), (0, 1), (1, 0), (1, 1), (2, 0)), ((0, 0), (0, 1), (1, 0), (1, 1), (0, 2))),
}


@dataclass(frozen=True)
class WorldSettings:
    """The knobs of script generation (seconds and fractions). ``fps`` sets the duration grid."""

    fps: int = 8
    min_duration: float = 15.0
    max_duration: float = 40.0
    min_events: int = 2
    max_events: int = 5
    min_event_length: float = 1.0
    max_event_fraction: float = 0.7  # longest event, as a fraction of the video


def generate_script(
    rng: np.random.Generator,
    video_id: str,
    index: int,
    split: str,
    settings: WorldSettings,
    held_out: frozenset[Triple],
) -> VideoScript:
    """Draw one video's script.

    ``train``/``test`` videos contain no held-out composition at all; a ``test_novel`` video is built around one
    held-out composition (its other events may be anything). No two objects ever look alike, not even while
    one changes colour (see :func:`_change_colour_target`). The drawing repeats until those rules hold.
    """
    duration = _draw_duration(rng, settings)
    num_events = int(rng.integers(settings.min_events, settings.max_events + 1))
    layouts = _LAYOUTS[num_events]
    layout = layouts[int(rng.integers(len(layouts)))]
    num_obj_slots = 1 + max(o for o, _ in layout)
    num_action_slots = 1 + max(a for _, a in layout)
    held_list = sorted(held_out)
    for _attempt in range(1000):
        # One spare look, so a held-out look put first still leaves num_obj_slots + 1 (actors + an idle one).
        looks = _draw_looks(rng, num_obj_slots + 2)
        actions = [ACTIONS[i] for i in rng.choice(len(ACTIONS), size=num_action_slots + 1, replace=False)]
        if split == "test_novel":
            colour, shape, action = held_list[int(rng.integers(len(held_list)))]
            looks = [(colour, shape)] + [look for look in looks if look != (colour, shape)]
            actions = [action] + [a for a in actions if a != action]
        looks = looks[: num_obj_slots + 1]
        actions = actions[:num_action_slots]
        cells = [(looks[o][0], looks[o][1], actions[a]) for o, a in layout]
        if split != "test_novel" and any(cell in held_out for cell in cells):
            continue
        num_idle = int(rng.random() < 0.5)
        objects = _place_objects(rng, looks[: num_obj_slots + num_idle], num_actors=num_obj_slots)
        events = _schedule_events(rng, layout, actions, objects, duration, settings)
        if events is not None:
            break
    else:  # pragma: no cover - held-out fractions near 1 make this reachable; the config forbids them
        raise AssertionError(f"{video_id}: could not draw events avoiding held-out compositions and look-alikes")
    return VideoScript(
        video_id=video_id,
        index=index,
        split=split,
        duration=duration,
        objects=objects,
        events=events,
        distractors=_draw_distractors(rng),
        background=_draw_background(rng),
        flicker=float(rng.uniform(0.02, 0.08)),
        noise=float(rng.uniform(1.5, 4.0)),
    )


def duration_step(fps: int) -> float:
    """Smallest duration step (seconds) that is a whole number of frames and has at most 2 decimals."""
    from math import gcd

    frames_per_step = fps // gcd(fps, 100)
    return frames_per_step / fps


def _draw_duration(rng: np.random.Generator, settings: WorldSettings) -> float:
    step = duration_step(settings.fps)
    low = int(np.ceil(settings.min_duration / step - 1e-9))
    high = int(np.floor(settings.max_duration / step + 1e-9))
    return float(round(int(rng.integers(low, high + 1)) * step, 2))


def _draw_looks(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """``count`` distinct (colour, shape) pairs. Two objects may share a colour or a shape (then the query needs
    both words to name one), never both."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    return [pairs[i] for i in rng.choice(len(pairs), size=count, replace=False)]


def _place_objects(
    rng: np.random.Generator, looks: list[tuple[str, str]], num_actors: int
) -> tuple[SceneObject, ...]:
    """Starting positions at least 0.3 frame apart (up to 200 draws; then the last draw), away from the border."""
    for _attempt in range(200):
        centres = rng.uniform(0.2, 0.8, size=(len(looks), 2))
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(looks))
        if gaps.min() >= 0.3:
            break
    radii = rng.uniform(0.11, 0.14, size=len(looks))
    return tuple(
        SceneObject(
            colour=colour,
            shape=shape,
            x=round(float(cx), 4),
            y=round(float(cy), 4),
            radius=round(float(r), 4),
            actor=i < num_actors,
        )
        for i, ((colour, shape), (cx, cy), r) in enumerate(zip(looks, centres, radii))
    )


def _schedule_events(
    rng: np.random.Generator,
    layout: tuple[tuple[int, int], ...],
    actions: list[str],
    objects: tuple[SceneObject, ...],
    duration: float,
    settings: WorldSettings,
) -> tuple[Event, ...] | None:
    """Give each event a time: lengths log-uniform in [min_event_length, max_event_fraction * duration], placed
    uniformly at random; one object's events keep their order (appear first, disappear last) and never overlap.
    None when a change-colour has no colour left to turn to (the caller draws the script again)."""
    by_object: dict[int, list[str]] = {}
    for obj, action_slot in layout:
        by_object.setdefault(obj, []).append(actions[action_slot])
    events: list[Event] = []
    for obj, obj_actions in sorted(by_object.items()):
        order = list(rng.permutation(len(obj_actions)))
        ordered = [obj_actions[i] for i in order]
        ordered.sort(key=lambda a: (a in _LAST_ACTIONS) - (a in _FIRST_ACTIONS))
        for (start, end), action in zip(_place_intervals(rng, len(ordered), duration, settings), ordered):
            target = None
            if action == "change-colour":
                target = _change_colour_target(rng, objects, obj, events)
                if target is None:
                    return None
            events.append(Event(obj=obj, action=action, start=start, end=end, target_colour=target))
    events.sort(key=lambda e: (e.start, e.end, e.obj))
    return tuple(events)


def _change_colour_target(
    rng: np.random.Generator, objects: tuple[SceneObject, ...], obj: int, drawn: list[Event]
) -> str | None:
    """The colour object ``obj`` turns to: never its own, nor one that another object of its shape has or turns
    to (in the events ``drawn`` so far), so two objects of a video never look alike, and a sentence's colour and
    shape always name one object. None when no colour is left (four objects of one shape, three changing).

    The first draw is uniform over the colours other than its own (generator version 1's only draw, so a
    video without a look-alike keeps its version-1 script); a forbidden pick is drawn again from the allowed
    colours, so the result is uniform over those.
    """
    shape = objects[obj].shape
    taken = {other.colour for other in objects if other.shape == shape}
    taken |= {
        event.target_colour
        for event in drawn
        if event.action == "change-colour" and event.obj != obj and objects[event.obj].shape == shape
    }
    choices = [colour for colour in COLOURS if colour != objects[obj].colour]
    target = choices[int(rng.integers(len(choices)))]
    if target not in taken:
        return target
    allowed = [colour for colour in COLOURS if colour not in taken]
    return allowed[int(rng.integers(len(allowed)))] if allowed else None


def _place_intervals(
    rng: np.random.Generator, count: int, duration: float, settings: WorldSettings
) -> list[tuple[float, float]]:
    """``count`` ordered, disjoint intervals in [0, duration], rounded to 0.01 s."""
    low = np.log(settings.min_event_length)
    high = np.log(max(settings.min_event_length, settings.max_event_fraction * duration))
    for _attempt in range(100):
        lengths = np.exp(rng.uniform(low, high, size=count))
        if lengths.sum() <= 0.95 * duration:
            break
    else:
        lengths = lengths * (0.95 * duration / lengths.sum())
    free = duration - lengths.sum()
    gaps = rng.dirichlet(np.ones(count + 1)) * free
    intervals = []
    cursor = 0.0
    for gap, length in zip(gaps[:-1], lengths):
        start = cursor + gap
        end = start + length
        intervals.append((start, end))
        cursor = end
    rounded = []
    for start, end in intervals:
        start_r = round(min(max(start, 0.0), duration), 2)
        end_r = round(min(end, duration), 2)
        if end_r - start_r < 0.5:  # rounding never shrinks an event this much; kept as a guard
            end_r = round(min(start_r + settings.min_event_length, duration), 2)
        rounded.append((float(start_r), float(end_r)))
    return rounded


def _draw_distractors(rng: np.random.Generator) -> tuple[Distractor, ...]:
    count = int(rng.integers(2, 5))
    items = []
    for _ in range(count):
        speed = rng.uniform(0.03, 0.08)
        heading = rng.uniform(0, 2 * np.pi)
        items.append(
            Distractor(
                shape=SHAPES[int(rng.integers(len(SHAPES)))],
                x=float(rng.random()),
                y=float(rng.random()),
                radius=float(rng.uniform(0.05, 0.08)),
                vx=float(speed * np.cos(heading)),
                vy=float(speed * np.sin(heading)),
                grey=float(rng.uniform(90, 170)),
                alpha=float(rng.uniform(0.3, 0.5)),
            )
        )
    return tuple(items)


def _dull_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    import colorsys

    hue, sat, val = rng.random(), rng.uniform(0.1, 0.4), rng.uniform(0.18, 0.45)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (int(r * 255), int(g * 255), int(b * 255))


def _draw_background(rng: np.random.Generator) -> Background:
    kinds = ("gradient", "stripes", "checker", "blotches")
    drift = rng.uniform(-1.5, 1.5, size=2) * (rng.random() < 0.5)
    return Background(
        kind=kinds[int(rng.integers(len(kinds)))],
        colour_a=_dull_colour(rng),
        colour_b=_dull_colour(rng),
        period=float(rng.uniform(0.08, 0.3)),
        angle=float(rng.uniform(0, np.pi)),
        drift_x=float(drift[0]),
        drift_y=float(drift[1]),
        texture_seed=int(rng.integers(2**31)),
    )
