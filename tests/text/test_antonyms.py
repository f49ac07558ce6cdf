"""Antonym swaps: whole phrases only, reversible where the table says so, nothing altered without a swap."""

from __future__ import annotations

import pytest

from grounding.text.antonyms import (
    ENGLISH_SWAPS,
    RENDERED_WORLD_NO_SWAP,
    RENDERED_WORLD_SWAPS,
    swap_antonyms,
    swap_table,
)
from grounding.video.synth.language import ACTION_PHRASES


@pytest.mark.parametrize("sentence, expected, kinds", [
    ("A person opens the door.", "A person closes the door.", ("open/close",)),
    ("Person sits down, then stands up.", "Person stands up, then sits down.", ("sit down/stand up",) * 2),
    ("Person turning off the light", "Person turning on the light", ("turn on/turn off",)),
    ("Quickly, a person starts laughing", "Slowly, a person stops laughing", ("quickly/slowly", "start/stop")),
])
def test_english_swaps(sentence: str, expected: str, kinds: tuple[str, ...]) -> None:
    swap = swap_antonyms(sentence, ENGLISH_SWAPS)
    assert swap is not None and swap.sentence == expected and swap.kinds == kinds


def test_only_whole_words_match_and_unswappable_sentences_are_untouched() -> None:
    for sentence in ("a person reopens the opener", "person puts a cup on the table", "Person eats a sandwich."):
        assert swap_antonyms(sentence, ENGLISH_SWAPS) is None
    assert swap_antonyms("the yellow star spins.", RENDERED_WORLD_SWAPS) is None


def test_every_reversible_rule_swaps_back() -> None:
    for table in (ENGLISH_SWAPS, RENDERED_WORLD_SWAPS):
        for rule in table.values():
            sentence = f"then {rule.phrase} now"
            once = swap_antonyms(sentence, table)
            assert once is not None and once.sentence == f"then {rule.replacement} now"
            if rule.reversible:
                assert swap_antonyms(once.sentence, table).sentence == sentence


def test_the_rendered_world_table_covers_its_phrases() -> None:
    for action, phrases in ACTION_PHRASES.items():
        for present, gerund in phrases:
            swappable = all(tuple(form.split()) in RENDERED_WORLD_SWAPS for form in (present, gerund))
            assert swappable == (action not in RENDERED_WORLD_NO_SWAP), action
    rule = RENDERED_WORLD_SWAPS[("swells",)]  # grow has four phrases, shrink three: this one wraps around
    assert rule.replacement == "shrinks" and not rule.reversible
    assert swap_antonyms("the red ball slides to the left.", RENDERED_WORLD_SWAPS).sentence == \
        "the red ball slides to the right."


def test_a_hand_made_table() -> None:
    table = swap_table([("a/b", ("x y", "z"), ("w", ""))])
    assert set(table) == {("x", "y"), ("w",)} and all(rule.reversible for rule in table.values())
    assert swap_antonyms("X y and x yy", table).sentence == "W and x yy"
