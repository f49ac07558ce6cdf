"""What each query of the rendered world means, and every video of the world where it is true.

A query's meaning comes from the script, never from its words. A clause names one event as a :class:`Phrase`:
its object's colour at the event's start (:func:`~grounding.video.synth.world.named_colour`), its shape, the
action and, for ``change-colour``, the target colour. A plain query is one phrase; an ordered query ("after A,
B") is the phrase of B (the answer) and the phrase of A.

Truth over the world (every split: the ranking corpus is the whole world):

- a plain query is true of a video when one of its events has the query's phrase; its windows are those
  events' ``[start, end]``;
- an ordered query is true of a video when an event with B's phrase starts at or after the end of an event
  with A's phrase (the rule that picks the pairs ordered queries are written about); its windows are those
  B events.

No two objects of a video look alike (colour and shape), and an object does each action at most once per
video, so a phrase matches at most one event per video; the files still allow several windows. The query's
own video is always true, with its annotated window (the tests check this on whole plans).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from grounding.errors import InputError
from grounding.eval.relevance import relevance_line
from grounding.video.synth.language import SynthQuery
from grounding.video.synth.world import ACTIONS, COLOURS, SHAPES, Event, SceneObject, VideoScript, named_colour

Window = tuple[float, float]


@dataclass(frozen=True)
class Phrase:
    """What one clause names: an object by its look at the event's start, and what it does.

    ``target_colour`` is the colour of a ``change-colour`` (None for the other actions).
    """

    colour: str
    shape: str
    action: str
    target_colour: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, item: Any, where: str) -> Phrase:
        """A phrase from its manifest form ``{"colour", "shape", "action", "target_colour"}``; InputError if bad."""
        if not isinstance(item, dict) or set(item) != {"colour", "shape", "action", "target_colour"}:
            raise InputError(f"{where}: expected {{'colour', 'shape', 'action', 'target_colour'}}, got {item!r}.")
        phrase = cls(item["colour"], item["shape"], item["action"], item["target_colour"])
        known = phrase.colour in COLOURS and phrase.shape in SHAPES and phrase.action in ACTIONS
        if not known or (phrase.target_colour is None) != (phrase.action != "change-colour"):
            raise InputError(f"{where}: {item!r} is not a phrase of the rendered world's vocabulary.")
        return phrase


@dataclass(frozen=True)
class QueryMeaning:
    """What a query says: ``event`` is the phrase of the event it is grounded at; ``after`` that of the
    earlier event of an ordered query (None for a plain query)."""

    event: Phrase
    after: Phrase | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest form: ``{"event": phrase, "after": phrase or null}``."""
        return {"event": self.event.to_json(), "after": None if self.after is None else self.after.to_json()}


def event_phrase(objects: Sequence[SceneObject], events: Sequence[Event], event: Event) -> Phrase:
    """The phrase a sentence uses for ``event``: its object's colour at the event's start, shape, action, target."""
    shape = objects[event.obj].shape
    return Phrase(named_colour(objects, events, event), shape, event.action, event.target_colour)


def query_meaning(script: VideoScript, query: SynthQuery) -> QueryMeaning:
    """The meaning of one of ``script``'s queries, from ``query.event`` and ``query.after``."""
    after = None if query.after is None else event_phrase(script.objects, script.events, script.events[query.after])
    return QueryMeaning(event_phrase(script.objects, script.events, script.events[query.event]), after)


@dataclass(frozen=True)
class WorldQuery:
    """One annotation line of the world: its split, video, sentence, annotated window and meaning."""

    split: str
    video_id: str
    sentence: str
    window: Window
    meaning: QueryMeaning


@dataclass
class World:
    """The facts relevance needs: every video's events as (phrase, start, end), every query in file order.

    ``queries`` holds each split's queries in the order of its annotation file (videos by index, then the
    video's queries), so the n-th query of a split is the annotation file's qid n.
    """

    events: dict[str, list[tuple[Phrase, float, float]]]
    queries: list[WorldQuery]
    _index: dict[Phrase, dict[str, list[Window]]] = field(default_factory=dict, repr=False)

    def split_queries(self, split: str) -> list[WorldQuery]:
        return [query for query in self.queries if query.split == split]

    def windows_of(self, phrase: Phrase) -> dict[str, list[Window]]:
        """{video id: [(start, end), ...]} of every event of the world with ``phrase``, videos in world order."""
        if not self._index:
            for video_id, events in self.events.items():
                for event_phrase_, start, end in events:
                    self._index.setdefault(event_phrase_, {}).setdefault(video_id, []).append((start, end))
        return self._index.get(phrase, {})

    def relevant(self, meaning: QueryMeaning) -> dict[str, list[Window]]:
        """{video id: windows} of every video where a query with ``meaning`` is true (rules in the module
        docstring), in world order; videos without a true window are left out."""
        answers = self.windows_of(meaning.event)
        if meaning.after is None:
            return answers
        firsts = self.windows_of(meaning.after)
        result: dict[str, list[Window]] = {}
        for video_id, windows in answers.items():
            earliest_end = min((end for _, end in firsts.get(video_id, [])), default=None)
            kept = [(start, end) for start, end in windows if earliest_end is not None and earliest_end <= start]
            if kept:
                result[video_id] = kept
        return result


def world_from_scripts(scripts: Sequence[VideoScript], queries: Mapping[str, Sequence[SynthQuery]]) -> World:
    """The world of a plan (``DatasetPlan.scripts`` and ``.queries``), queries split by split in file order."""
    events = {
        script.video_id: [(event_phrase(script.objects, script.events, e), e.start, e.end) for e in script.events]
        for script in scripts
    }
    world_queries = [
        WorldQuery(
            script.split, script.video_id, query.sentence, (query.start, query.end), query_meaning(script, query)
        )
        for split in _splits_in_order(script.split for script in scripts)
        for script in scripts
        if script.split == split
        for query in queries[script.video_id]
    ]
    return World(events, world_queries)


def _splits_in_order(splits: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(sorted(splits, key=lambda s: (s != "train", s != "test", s))))


def world_from_manifest(manifest: Mapping[str, Any], where: str) -> World:
    """The world a ``manifest.json`` describes (generator version 1 or 2), without its videos.

    Each event's phrase comes from the manifest's objects and events through the colour rule (version 1's
    sentences named an object by its own colour, which is what the rule gives: its renderer turned a
    change-colour back at the event's end, as version 2's does). A query's meaning is the ``meaning`` the
    manifest stores (version 2), which must agree with its ``event``/``after``, or, in version 1, derived from
    them. ``where`` names the manifest in messages.
    """
    videos = manifest.get("videos")
    if not isinstance(videos, dict) or not videos:
        raise InputError(f"{where}: no 'videos' object; pass the manifest.json that grounding synth wrote.")
    events: dict[str, list[tuple[Phrase, float, float]]] = {}
    queries: list[WorldQuery] = []
    for video_id in sorted(videos):  # syn00000, syn00001, ...: the annotation files' video order
        video = videos[video_id]
        try:
            objects = tuple(SceneObject(**item) for item in video["objects"])
            script_events = tuple(Event(**item) for item in video["events"])
            split = str(video["split"])
            video_queries = [(item, SynthQuery(**{k: item[k] for k in ("sentence", "start", "end", "event", "after")}))
                             for item in video["queries"]]
            phrases = [event_phrase(objects, script_events, event) for event in script_events]
        except (KeyError, TypeError, IndexError) as error:
            raise InputError(f"{where}: video {video_id} is malformed ({error!r}); regenerate the world.") from None
        events[video_id] = [(phrase, e.start, e.end) for phrase, e in zip(phrases, script_events)]
        for number, (item, query) in enumerate(video_queries):
            here = f"{where}: video {video_id} query {number}"
            if not 0 <= query.event < len(phrases) or not (query.after is None or 0 <= query.after < len(phrases)):
                raise InputError(f"{here}: event {query.event} / after {query.after} is not an event of the video.")
            answer = script_events[query.event]
            if (query.start, query.end) != (answer.start, answer.end):
                raise InputError(
                    f"{here}: window [{query.start}, {query.end}] is not its event's [{answer.start}, {answer.end}]; "
                    "the manifest was edited or damaged: regenerate the world."
                )
            meaning = QueryMeaning(phrases[query.event], None if query.after is None else phrases[query.after])
            if "meaning" in item:
                said = _stored_meaning(item["meaning"], here)
                if said != meaning:
                    raise InputError(
                        f"{here}: its stored meaning {said} is not what its events say ({meaning}); "
                        "the manifest was edited or damaged: regenerate the world."
                    )
            queries.append(WorldQuery(split, video_id, query.sentence, (query.start, query.end), meaning))
    order = {split: rank for rank, split in enumerate(_splits_in_order(q.split for q in queries))}
    queries.sort(key=lambda query: order[query.split])  # stable: video order, then query order, within a split
    return World(events, queries)


def _stored_meaning(item: Any, where: str) -> QueryMeaning:
    """A manifest's ``{"event": phrase, "after": phrase or null}``; InputError if malformed."""
    if not isinstance(item, dict) or set(item) != {"event", "after"}:
        raise InputError(f"{where}: meaning must be {{'event': phrase, 'after': phrase or null}}, got {item!r}.")
    after = None if item["after"] is None else Phrase.from_json(item["after"], f"{where} meaning.after")
    return QueryMeaning(Phrase.from_json(item["event"], f"{where} meaning.event"), after)


def relevance_lines(world: World, split: str) -> list[str]:
    """The relevance file of ``split`` (format: :mod:`grounding.eval.relevance`), one line per query in the
    split's annotation order (line i = qid i), relevant videos in world order."""
    lines = []
    for qid, query in enumerate(world.split_queries(split)):
        relevant = world.relevant(query.meaning)
        own = relevant.get(query.video_id, [])
        if query.window not in own:  # the generator's own rule; a failure here is a bug, not bad input
            raise AssertionError(f"{query.video_id}: {query.sentence!r} is not true at its own window {query.window}")
        lines.append(relevance_line(qid, query.video_id, query.sentence, relevant))
    return lines


@dataclass(frozen=True)
class RelevanceSummary:
    """How many videos each query of a split is true of: ``queries``, ``multi`` (true of more than one video),
    and the minimum, median and maximum number of relevant videos per query."""

    split: str
    queries: int
    multi: int
    minimum: int
    median: float
    maximum: int

    def line(self) -> str:
        if not self.queries:
            return f"{self.split}: no queries"
        return (
            f"{self.split}: {self.queries} queries, {self.multi} ({100 * self.multi / self.queries:.1f} %) true of "
            f"more than one video; relevant videos per query min {self.minimum} / median {self.median:g} / "
            f"max {self.maximum}"
        )


def summarize(world: World, split: str) -> RelevanceSummary:
    """Counts of relevant videos per query of ``split``."""
    counts = sorted(len(world.relevant(query.meaning)) for query in world.split_queries(split))
    if not counts:
        return RelevanceSummary(split, 0, 0, 0, 0.0, 0)
    middle = len(counts) // 2
    median = float(counts[middle]) if len(counts) % 2 else (counts[middle - 1] + counts[middle]) / 2
    return RelevanceSummary(split, len(counts), sum(c > 1 for c in counts), counts[0], median, counts[-1])
