"""Sentences for the rendered world: templates and synonyms, so the words vary while the meaning stays exact.

A *plain* query names one event ("the red circle slides to the left."); an *ordered* query names two events
of different times and asks for the later one ("after the blue square appears, the red ball grows.").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np

from grounding.video.synth.world import ACTIONS, COLOURS, SHAPES, Event, Triple, VideoScript, named_colour

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "white": ("white",),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "star": ("star",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
}
# (present tense, gerund) pairs; "{target}" is the new colour of change-colour.
ACTION_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "appear": (("appears", "appearing"), ("fades in", "fading in"), ("shows up", "showing up"),
               ("comes into view", "coming into view")),
    "disappear": (("disappears", "disappearing"), ("fades out", "fading out"), ("vanishes", "vanishing"),
                  ("fades away", "fading away")),
    "move-left": (("moves left", "moving left"), ("slides to the left", "sliding to the left"),
                  ("drifts leftward", "drifting leftward"), ("travels to the left", "travelling to the left")),
    "move-right": (("moves right", "moving right"), ("slides to the right", "sliding to the right"),
                   ("drifts rightward", "drifting rightward"), ("travels to the right", "travelling to the right")),
    "move-up": (("moves up", "moving up"), ("rises", "rising"), ("slides upward", "sliding upward"),
                ("floats up", "floating up")),
    "move-down": (("moves down", "moving down"), ("sinks", "sinking"), ("slides downward", "sliding downward"),
                  ("drops down", "dropping down")),
    "grow": (("grows", "growing"), ("gets bigger", "getting bigger"), ("expands", "expanding"),
             ("swells", "swelling")),
    "shrink": (("shrinks", "shrinking"), ("gets smaller", "getting smaller"), ("contracts", "contracting")),
    "spin": (("spins", "spinning"), ("rotates", "rotating"), ("turns around", "turning around"),
             ("twirls", "twirling")),
    "change-colour": (("turns {target}", "turning {target}"), ("changes colour to {target}",
                      "changing colour to {target}"), ("becomes {target}", "becoming {target}")),
    "jump": (("jumps", "jumping"), ("bounces", "bouncing"), ("hops up and down", "hopping up and down")),
    "shake": (("shakes", "shaking"), ("wiggles", "wiggling"), ("trembles", "trembling")),
}
assert set(COLOUR_WORDS) == set(COLOURS) and set(SHAPE_WORDS) == set(SHAPES) and set(ACTION_PHRASES) == set(ACTIONS)

# Plain templates: {det} is "the" or "a"; {pres}/{ger} the action phrase.
_PLAIN_TEMPLATES = (
    "{det} {obj} {pres}",
    "{det} {obj} {pres}",
    "{det} {obj} is {ger}",
    "we see a {obj} {ger}",
    "there is a {obj} {ger}",
)
# Ordered templates: {first} and {second} are "the {obj} {pres}" clauses; the answer is always {second}.
_ORDERED_TEMPLATES = (
    "after {first}, {second}",
    "{second} after {first}",
    "{first}, then {second}",
    "once {first}, {second}",
)
ORDERED_QUERY_PROBABILITY = 0.6


@dataclass(frozen=True)
class SynthQuery:
    """One annotation line: ``sentence`` grounded at ``[start, end]`` seconds, which is ``event``'s time.

    ``after`` is the index of the earlier event an ordered query mentions (``None`` for a plain query);
    ``event`` and ``after`` index ``VideoScript.events``.
    """

    sentence: str
    start: float
    end: float
    event: int
    after: int | None = None


_Option = TypeVar("_Option")


def _pick(rng: np.random.Generator, options: Sequence[_Option]) -> _Option:
    return options[int(rng.integers(len(options)))]


def describe_object(rng: np.random.Generator, colour: str, shape: str) -> str:
    """E.g. ``red ball`` for (red, circle)."""
    return f"{_pick(rng, COLOUR_WORDS[colour])} {_pick(rng, SHAPE_WORDS[shape])}"


def _action_phrase(rng: np.random.Generator, event: Event) -> tuple[str, str]:
    present, gerund = _pick(rng, ACTION_PHRASES[event.action])
    target = _pick(rng, COLOUR_WORDS[event.target_colour]) if event.target_colour else ""
    return present.format(target=target), gerund.format(target=target)


def _name_object(rng: np.random.Generator, script: VideoScript, event: Event) -> str:
    """``event``'s object in words, by the colour it shows at the event's start (:func:`named_colour`)."""
    colour = named_colour(script.objects, script.events, event)
    return describe_object(rng, colour, script.objects[event.obj].shape)


def plain_sentence(rng: np.random.Generator, script: VideoScript, event: Event) -> str:
    """One event in words, e.g. ``the red ball is spinning.``"""
    present, gerund = _action_phrase(rng, event)
    template = _pick(rng, _PLAIN_TEMPLATES)
    det = _pick(rng, ("the", "a"))
    return template.format(det=det, obj=_name_object(rng, script, event), pres=present, ger=gerund) + "."


def ordered_sentence(rng: np.random.Generator, script: VideoScript, first: Event, second: Event) -> str:
    """Two events in words, the answer being ``second``, e.g. ``after the blue box rises, the red ball spins.``"""
    clauses = []
    for event in (first, second):
        present, _ = _action_phrase(rng, event)
        clauses.append(f"the {_name_object(rng, script, event)} {present}")
    template = _pick(rng, _ORDERED_TEMPLATES)
    return template.format(first=clauses[0], second=clauses[1]) + "."


def make_queries(
    rng: np.random.Generator, script: VideoScript, held_out: frozenset[Triple]
) -> list[SynthQuery]:
    """The queries of one video.

    ``train``/``test``: one plain query per event, plus (with probability 0.6, when two events follow each
    other without overlap) one ordered query. ``test_novel``: only events whose (colour, shape, action) is
    held out are asked about, plainly and, likewise, as the later event of an ordered query.
    """
    asked = [
        i for i, event in enumerate(script.events)
        if script.split != "test_novel" or script.triple(event) in held_out
    ]
    queries = [
        SynthQuery(plain_sentence(rng, script, script.events[i]), script.events[i].start, script.events[i].end, i)
        for i in asked
    ]
    pairs = [
        (i, j)
        for j in asked
        for i in range(len(script.events))
        if script.events[i].end <= script.events[j].start
    ]
    if pairs and rng.random() < ORDERED_QUERY_PROBABILITY:
        i, j = pairs[int(rng.integers(len(pairs)))]
        first, second = script.events[i], script.events[j]
        queries.append(SynthQuery(ordered_sentence(rng, script, first, second), second.start, second.end, j, i))
    return queries


def vocabulary_words() -> list[str]:
    """Every word a sentence can contain, sorted (punctuation split off)."""
    texts: list[str] = list(_PLAIN_TEMPLATES) + list(_ORDERED_TEMPLATES) + ["the a ."]
    texts += [w for words in COLOUR_WORDS.values() for w in words]
    texts += [w for words in SHAPE_WORDS.values() for w in words]
    texts += [p for phrases in ACTION_PHRASES.values() for pair in phrases for p in pair]
    words: set[str] = set()
    for text in texts:
        text = re.sub(r"\{[a-z]+\}", " ", text)
        words.update(re.findall(r"[a-z]+|[.,]", text))
    return sorted(words)
