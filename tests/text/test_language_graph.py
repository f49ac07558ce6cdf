"""Language graph: sequential and dependency edges over encoder tokens, and their batching with offsets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from grounding.errors import InputError, MissingDependencyError
from grounding.text import (
    GloVeTextEncoder,
    batch_edge_index,
    build_language_graph,
    dependency_edges,
    sequential_edges,
    syntax_available,
)
from grounding.text import language_graph as language_graph_module

SPACY_READY = syntax_available()


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(s), int(t)) for s, t in edge_index.t().tolist()}


@pytest.fixture
def glove_encoder(tmp_path: Path) -> GloVeTextEncoder:
    path = tmp_path / "glove.txt"
    path.write_text("the 1 0\nperson 0 1\nopens 1 1\ndoor 2 2\na 3 3\n", encoding="utf-8")
    return GloVeTextEncoder(path, max_words=8, syntax="sequential")


def test_sequential_edges_exact_for_three_tokens() -> None:
    edges = sequential_edges(3)
    assert edges.dtype == torch.long
    assert edges.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert sequential_edges(1).shape == (2, 0)
    assert sequential_edges(0).shape == (2, 0)


def test_batch_edge_index_offsets_each_sample_by_its_row() -> None:
    edges = batch_edge_index([sequential_edges(3), sequential_edges(2)], max_len=4)
    assert edges.tolist() == [[0, 1, 1, 2, 4, 5], [1, 0, 2, 1, 5, 4]]
    assert batch_edge_index([], max_len=4).shape == (2, 0)
    with pytest.raises(InputError, match="points at token 4, but max_len is 4"):
        batch_edge_index([sequential_edges(5)], max_len=4)


def test_encoded_batch_edges_offsets_padding_and_directions(glove_encoder: GloVeTextEncoder) -> None:
    out = glove_encoder.encode(["the person opens the door", "a door", "door"])
    max_len = out.word_mask.shape[1]
    assert max_len == 5
    expected = [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3), (5, 6), (6, 5)]
    assert [tuple(pair) for pair in out.edge_index.t().tolist()] == expected
    sample_of_source = out.edge_index[0] // max_len
    assert int(out.edge_index[0, sample_of_source == 1].min()) == max_len  # sample 1's edges start at L
    flat_mask = out.word_mask.reshape(-1)
    assert flat_mask[out.edge_index].all()  # no edge touches padding
    assert edge_set(out.edge_index) == edge_set(out.edge_index.flip(0))  # both directions present
    assert (out.edge_index[0] != out.edge_index[1]).all()  # no self-loops: the layer adds them


def test_dependency_arcs_join_first_pieces_and_pieces_of_a_word_are_chained() -> None:
    # "short dogs bark." parsed as short <-amod- dogs <-nsubj- bark (root) -punct-> "."
    words = [(0, 5), (6, 10), (11, 15), (15, 16)]
    heads = [1, 2, 2, 2]
    tokens = [(0, 5), (6, 9), (9, 10), (11, 15), (15, 16)]  # short dog ##s bark .
    edges = dependency_edges(tokens, words, heads)
    assert edges.tolist() == [[0, 1, 1, 1, 2, 3, 3, 4], [1, 0, 2, 3, 1, 1, 4, 3]]


def test_dependency_token_spanning_two_words_takes_both_arcs() -> None:
    # "I cannot go": the parser splits "can" + "not", the encoder keeps "cannot" whole.
    words = [(0, 1), (2, 5), (5, 8), (9, 11)]
    heads = [3, 3, 3, 3]
    tokens = [(0, 1), (2, 8), (9, 11)]
    assert edge_set(dependency_edges(tokens, words, heads)) == {(0, 2), (2, 0), (1, 2), (2, 1)}


def test_dependency_arcs_to_truncated_words_are_dropped() -> None:
    words = [(0, 5), (6, 10), (11, 15), (15, 16)]
    heads = [1, 2, 2, 2]
    assert dependency_edges([(0, 5), (6, 9)], words, heads).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(InputError, match="word 0 has head 7"):
        dependency_edges([(0, 5)], [(0, 5)], [7])


def test_fallback_to_sequential_logs_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(language_graph_module, "syntax_available", lambda: False)
    monkeypatch.setattr(language_graph_module, "_fallback_logged", False)
    with caplog.at_level(logging.INFO, logger="grounding.text.language_graph"):
        first = build_language_graph([["a", "door"]], [[(0, 1), (2, 6)]], ["a door"])
        build_language_graph([["a", "door"]], [[(0, 1), (2, 6)]], ["a door"])
    assert [edges.tolist() for edges in first] == [[[0, 1], [1, 0]]]
    assert len(caplog.records) == 1
    assert "using sequential edges" in caplog.records[0].getMessage()
    assert 'pip install "grounding[syntax]"' in caplog.records[0].getMessage()


def test_required_dependency_edges_without_spacy_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(language_graph_module, "syntax_available", lambda: False)
    with pytest.raises(MissingDependencyError, match=r'pip install "grounding\[syntax\]"'):
        build_language_graph([["a", "door"]], [[(0, 1), (2, 6)]], ["a door"], syntax="dependency")
    with pytest.raises(InputError, match="syntax='tree' is not one of auto, dependency, sequential"):
        build_language_graph([["a"]], syntax="tree")
    glove = tmp_path / "glove.txt"
    glove.write_text("a 1\n", encoding="utf-8")
    with pytest.raises(MissingDependencyError, match=r"syntax='dependency' needs spaCy"):
        GloVeTextEncoder(glove, syntax="dependency")  # refused when built, not at the first batch


class FakeWord:
    """Just the spaCy Token attributes parse_dependencies reads: text, idx, i, head."""

    def __init__(self, text: str, idx: int, i: int) -> None:
        self.text, self.idx, self.i = text, idx, i
        self.head = self


class FakeParser:
    """Parses "short dogs bark." as short <- dogs <- bark -> "." (stands in for spaCy's en_core_web_sm)."""

    def pipe(self, texts: list[str]):  # type: ignore[no-untyped-def]
        for text in texts:
            assert text == "short dogs bark."
            words = [FakeWord("short", 0, 0), FakeWord("dogs", 6, 1), FakeWord("bark", 11, 2), FakeWord(".", 15, 3)]
            for word, head in zip(words, [1, 2, 2, 2]):
                word.head = words[head]
            yield words


def test_auto_mode_uses_the_parser_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(language_graph_module, "syntax_available", lambda: True)
    monkeypatch.setattr(language_graph_module, "_load_spacy", lambda: FakeParser())
    tokens = [["short", "dog", "##s", "bark", "."]]
    spans = [[(0, 5), (6, 9), (9, 10), (11, 15), (15, 16)]]
    (edges,) = build_language_graph(tokens, spans, ["short dogs bark."])
    assert edges.tolist() == [[0, 1, 1, 1, 2, 3, 3, 4], [1, 0, 2, 3, 1, 1, 4, 3]]


@pytest.mark.skipif(
    not SPACY_READY,
    reason='needs the optional extra "syntax": spaCy + en_core_web_sm (pip install "grounding[syntax]")'
)
def test_spacy_dependency_tree_on_word_tokens(tmp_path: Path) -> None:
    path = tmp_path / "glove.txt"
    path.write_text("a 1\nperson 2\nopens 3\nthe 4\ndoor 5\n. 6\n", encoding="utf-8")
    encoder = GloVeTextEncoder(path, syntax="dependency")
    out = encoder.encode(["a person opens the door."])
    undirected = {tuple(sorted(pair)) for pair in edge_set(out.edge_index)}
    # a <- person <- opens -> door -> the, opens -> "."
    assert undirected == {(0, 1), (1, 2), (2, 4), (3, 4), (2, 5)}
    assert edge_set(out.edge_index) == edge_set(out.edge_index.flip(0))
