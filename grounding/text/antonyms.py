"""Antonym swaps: a sentence with its action (or adverb) replaced by the opposite one, for the antonym benchmark.

After ReGaDa (Hummel et al., BMVC 2023): a model that understands "the door opens" should prefer it over "the door
closes" at the moment the door opens. :func:`swap_antonyms` makes the second sentence from the first.

Swaps are applied to whole phrases of whole words: the sentence is split into word and punctuation tokens, a
phrase matches only a run of whole tokens (case-insensitive; "open" never matches inside "reopen" or "opener"),
the longest phrase wins where several start at the same token, and every non-overlapping match is swapped (a
two-event sentence gets both events swapped). The replacement keeps the matched text's leading capital.
Nothing else in the sentence changes; a sentence with no swappable phrase gets no swap (``None``), never an edit.

Two tables:

- :data:`RENDERED_WORLD_SWAPS`, from the rendered world's own phrase list (:mod:`grounding.video.synth.language`):
  appear <-> disappear, grow <-> shrink, move-left <-> move-right, move-up <-> move-down, each phrase with the
  partner's phrase of the same position and tense ("slides to the left" <-> "slides to the right"). ``spin``,
  ``jump``, ``shake`` and ``change-colour`` have no swap: the world has no opposite event for them, and a
  contrast partner (spin for shake, say) would test telling two actions apart, not understanding a reversal.
- :data:`ENGLISH_SWAPS`, verb-particle pairs and adverbs aimed at Charades-STA's vocabulary (open/close, sit
  down/stand up, turn on/turn off, pick up/put down, put on/take off, walk in/walk out, start/stop, dress/undress,
  awaken/fall asleep, enter/leave, sit/stand, quickly/slowly), each in its base, third-person, gerund and past form.

A rule is *reversible* when swapping its output gives the input back. Rules whose partner phrase is also the
partner of another phrase are not (grow has four phrases, shrink three: "swells" -> "shrinks" -> "grows"; and
"put down" is both a base and a past form); :func:`swap_table` marks them.
Known limits of whole-phrase matching: a particle split from its verb ("turns the light on") is not found, and a
phrase used in another sense ("puts a cup on the table" contains no "put on"; "put on the shelf" does) is swapped
all the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

TOKEN = re.compile(r"[A-Za-z]+|[^\sA-Za-z]")

RENDERED_WORLD_PARTNERS = (("appear", "disappear"), ("grow", "shrink"), ("move-left", "move-right"),
                           ("move-up", "move-down"))
RENDERED_WORLD_NO_SWAP = ("spin", "jump", "shake", "change-colour")

# (kind, forms, partner forms): forms aligned as base, third person, gerund, past ("" where a form is left out).
ENGLISH_PAIRS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("open/close", ("open", "opens", "opening", "opened"), ("close", "closes", "closing", "closed")),
    ("sit down/stand up", ("sit down", "sits down", "sitting down", "sat down"),
     ("stand up", "stands up", "standing up", "stood up")),
    ("turn on/turn off", ("turn on", "turns on", "turning on", "turned on"),
     ("turn off", "turns off", "turning off", "turned off")),
    ("pick up/put down", ("pick up", "picks up", "picking up", "picked up"), ("put down", "puts down", "putting down", "")),
    ("put on/take off", ("put on", "puts on", "putting on", ""), ("take off", "takes off", "taking off", "took off")),
    ("walk in/walk out", ("walk in", "walks in", "walking in", "walked in"),
     ("walk out", "walks out", "walking out", "walked out")),
    ("start/stop", ("start", "starts", "starting", "started"), ("stop", "stops", "stopping", "stopped")),
    ("dress/undress", ("dress", "dresses", "dressing", "dressed"), ("undress", "undresses", "undressing", "undressed")),
    ("awaken/fall asleep", ("awaken", "awakens", "awakening", "awakened"),
     ("fall asleep", "falls asleep", "falling asleep", "fell asleep")),
    ("enter/leave", ("enter", "enters", "entering", "entered"), ("leave", "leaves", "leaving", "")),
    ("sit/stand", ("sit", "sits", "sitting", "sat"), ("stand", "stands", "standing", "stood")),
    ("quickly/slowly", ("quickly",), ("slowly",)),
)


@dataclass(frozen=True)
class SwapRule:
    """One phrase and its replacement.

    Attributes:
        phrase: lower-case words, space-separated.
        replacement: what replaces it (lower case).
        kind: the pair it belongs to, for per-type figures ("open/close", "appear/disappear", ...).
        reversible: swapping the replacement gives the phrase back.
    """

    phrase: str
    replacement: str
    kind: str
    reversible: bool


@dataclass(frozen=True)
class Swap:
    """A swapped sentence: the new text, the kinds of the swaps made (in order) and how many."""

    sentence: str
    kinds: tuple[str, ...]

    @property
    def kind(self) -> str:
        """The one kind of swap, or ``"mixed"`` when the sentence got swaps of several kinds."""
        return self.kinds[0] if len(set(self.kinds)) == 1 else "mixed"


def swap_table(pairs: Iterable[tuple[str, Sequence[str], Sequence[str]]]) -> dict[tuple[str, ...], SwapRule]:
    """Rules keyed by their phrase's tokens, both directions of every aligned pair of forms (empty forms skipped;
    where a phrase already has a rule, the first one stays)."""
    rules: dict[tuple[str, ...], SwapRule] = {}
    for kind, forms, partners in pairs:
        for form, partner in zip(forms, partners):
            for phrase, replacement in ((form, partner), (partner, form)):
                if phrase and replacement:
                    rules.setdefault(tuple(phrase.lower().split()), SwapRule(phrase.lower(), replacement.lower(), kind, True))
    return {key: SwapRule(rule.phrase, rule.replacement, rule.kind,
                          (back := rules.get(tuple(rule.replacement.split()))) is not None and back.replacement == rule.phrase)
            for key, rule in rules.items()}


def _rendered_world_pairs() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    from grounding.video.synth.language import ACTION_PHRASES

    pairs = []
    for action, partner in RENDERED_WORLD_PARTNERS:
        mine, theirs = ACTION_PHRASES[action], ACTION_PHRASES[partner]
        for position, phrase in enumerate(mine):  # a longer list wraps around: those rules are not reversible
            pairs.append((f"{action}/{partner}", phrase, theirs[position % len(theirs)]))
        for position in range(len(mine), len(theirs)):
            pairs.append((f"{action}/{partner}", mine[position % len(mine)], theirs[position]))
    return pairs


RENDERED_WORLD_SWAPS = swap_table(_rendered_world_pairs())
ENGLISH_SWAPS = swap_table(ENGLISH_PAIRS)
TABLES = {"rendered-world": RENDERED_WORLD_SWAPS, "english": ENGLISH_SWAPS}


def swap_antonyms(sentence: str, table: dict[tuple[str, ...], SwapRule]) -> Swap | None:
    """``sentence`` with every swappable phrase replaced (see the module doc), or None when it has none."""
    tokens = [(match.group(0).lower(), match.start(), match.end()) for match in TOKEN.finditer(sentence)]
    longest = max((len(key) for key in table), default=0)
    pieces, kinds, cursor, position = [], [], 0, 0
    while position < len(tokens):
        for length in range(min(longest, len(tokens) - position), 0, -1):
            key = tuple(token for token, _, _ in tokens[position : position + length])
            rule = table.get(key)
            if rule is not None:
                start, end = tokens[position][1], tokens[position + length - 1][2]
                original = sentence[start:end]
                replacement = rule.replacement
                if original[:1].isupper():
                    replacement = replacement[:1].upper() + replacement[1:]
                pieces += [sentence[cursor:start], replacement]
                kinds.append(rule.kind)
                cursor, position = end, position + length
                break
        else:
            position += 1
    if not kinds:
        return None
    pieces.append(sentence[cursor:])
    return Swap("".join(pieces), tuple(kinds))
