"""The language graph over a query's tokens: syntactic dependency edges when spaCy can parse, else a chain.

VLG-Net passes messages over each query's dependency tree (Stanford CoreNLP there). Here the parse comes from
spaCy with its ``en_core_web_sm`` model (the optional extra ``pip install "grounding[syntax]"`` plus
``python -m spacy download en_core_web_sm``); without them every query gets sequential edges ``l <-> l+1``, and
the fallback logs one warning per process.

How a parse lands on the encoder's tokens (sub-word pieces for transformers, words for GloVe) -- by character
offsets, so it works whatever the two tokenizers disagree on:

- each encoder token belongs to the parsed word that contains its first character (else the first word it
  overlaps); consecutive tokens of one word (``un ##bel ##ie``) are chained ``l <-> l+1``;
- each parsed word is anchored at the first encoder token that overlaps it, and a dependency arc head -> child
  becomes the edge ``anchor(head) <-> anchor(child)`` (a word without tokens, e.g. one cut by truncation, loses
  its arcs).

Every edge is present in both directions; there are no self-loops (the graph layer adds them if it wants them),
and no duplicates. Edges are built per sentence in Python (tokenisation-time work), then
:func:`batch_edge_index` offsets all of them in one vectorised step.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any, Sequence

import torch
from torch import Tensor

from grounding.errors import InputError, MissingDependencyError

logger = logging.getLogger(__name__)

SPACY_MODEL = "en_core_web_sm"
SYNTAX_MODES = ("auto", "dependency", "sequential")

_fallback_logged = False


@functools.lru_cache(maxsize=1)
def syntax_available() -> bool:
    """True when spaCy and its ``en_core_web_sm`` model are installed (checked once per process, without
    loading the model)."""
    if importlib.util.find_spec("spacy") is None:
        return False
    import spacy.util

    return bool(spacy.util.is_package(SPACY_MODEL))


def _log_fallback_once(reason: str) -> None:
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        logger.warning(
            "language graph: %s; using sequential edges (l <-> l+1) instead of dependency edges. For VLG-Net's "
            'syntactic edges: pip install "grounding[syntax]" && python -m spacy download %s',
            reason,
            SPACY_MODEL,
        )


def _symmetric_unique(pairs: Tensor) -> Tensor:
    """pairs (E, 2) int64 -> (2, E') with both directions, self-loops dropped, columns unique and sorted."""
    if pairs.numel() == 0:
        return torch.zeros(2, 0, dtype=torch.long)
    both = torch.cat([pairs, pairs.flip(1)], dim=0)
    both = both[both[:, 0] != both[:, 1]]
    return torch.unique(both, dim=0).t().contiguous()


def sequential_edges(num_tokens: int) -> Tensor:
    """Chain edges ``l <-> l+1`` over ``num_tokens`` tokens.

    Returns:
        (2, 2 * (num_tokens - 1)) int64, local token indices, columns sorted by (source, target).
    """
    if num_tokens < 0:
        raise InputError(f"sequential_edges: num_tokens must be >= 0, got {num_tokens}")
    left = torch.arange(max(num_tokens - 1, 0), dtype=torch.long)
    return _symmetric_unique(torch.stack([left, left + 1], dim=1))


def dependency_edges(
    token_char_spans: Sequence[tuple[int, int]],
    word_char_spans: Sequence[tuple[int, int]],
    word_heads: Sequence[int],
) -> Tensor:
    """Map a dependency parse onto encoder tokens (see the module docstring for the rule).

    Args:
        token_char_spans: per encoder token, its ``(start, end)`` character offsets in the sentence.
        word_char_spans: per parsed word, its ``(start, end)`` character offsets in the same sentence.
        word_heads: per parsed word, the index of its head word (the root points at itself).

    Returns:
        (2, E) int64 over local token indices ``0 .. len(token_char_spans) - 1``; both directions, no self-loops.
    """
    if len(word_char_spans) != len(word_heads):
        raise InputError(
            f"dependency_edges: {len(word_char_spans)} word spans but {len(word_heads)} heads; pass one head per word"
        )
    owner: list[int | None] = []
    for token_start, token_end in token_char_spans:
        containing = [w for w, (s, e) in enumerate(word_char_spans) if s <= token_start < e]
        overlapping = [w for w, (s, e) in enumerate(word_char_spans) if token_start < e and s < token_end]
        owner.append(containing[0] if containing else (overlapping[0] if overlapping else None))
    anchor: list[int | None] = []
    for word_start, word_end in word_char_spans:
        tokens = [t for t, (s, e) in enumerate(token_char_spans) if s < word_end and word_start < e]
        anchor.append(tokens[0] if tokens else None)

    pairs: list[tuple[int, int]] = []
    for t in range(len(token_char_spans) - 1):
        if owner[t] is not None and owner[t] == owner[t + 1]:
            pairs.append((t, t + 1))
    for child, head in enumerate(word_heads):
        if not 0 <= head < len(word_heads):
            raise InputError(f"dependency_edges: word {child} has head {head}, outside 0..{len(word_heads) - 1}")
        head_token, child_token = anchor[head], anchor[child]
        if head_token is not None and child_token is not None:
            pairs.append((head_token, child_token))
    return _symmetric_unique(torch.tensor(pairs, dtype=torch.long).reshape(-1, 2))


@functools.lru_cache(maxsize=1)
def _load_spacy() -> Any:
    import spacy

    nlp = spacy.load(SPACY_MODEL)
    # Only the tokenizer, tagger and parser are needed; switch off what is present of the rest.
    nlp.select_pipes(disable=[name for name in ("ner", "lemmatizer", "textcat") if name in nlp.pipe_names])
    return nlp


def parse_dependencies(sentences: Sequence[str]) -> list[tuple[list[tuple[int, int]], list[int]]]:
    """Parse sentences with spaCy: per sentence, ``(word_char_spans, word_heads)`` for :func:`dependency_edges`.

    Raises:
        MissingDependencyError: spaCy or ``en_core_web_sm`` is not installed.
    """
    if not syntax_available():
        raise MissingDependencyError(
            f'dependency edges need spaCy and its {SPACY_MODEL} model; install them with: '
            f'pip install "grounding[syntax]" && python -m spacy download {SPACY_MODEL}'
        )
    parsed = []
    for doc in _load_spacy().pipe(list(sentences)):
        spans = [(word.idx, word.idx + len(word.text)) for word in doc]
        heads = [word.head.i for word in doc]
        parsed.append((spans, heads))
    return parsed


def build_language_graph(
    sentences_tokens: Sequence[Sequence[str]],
    token_char_spans: Sequence[Sequence[tuple[int, int]]] | None = None,
    sentences: Sequence[str] | None = None,
    syntax: str = "auto",
) -> list[Tensor]:
    """Per-sentence language-graph edges over the encoder's tokens.

    Args:
        sentences_tokens: per sentence, its encoder tokens (after any truncation).
        token_char_spans: per sentence and token, ``(start, end)`` character offsets into ``sentences``; needed
            for dependency edges.
        sentences: the raw sentence texts the offsets refer to; needed for dependency edges.
        syntax: ``"auto"`` (dependency edges when spaCy + ``en_core_web_sm`` are installed and texts and offsets
            are given, else sequential edges, logged once), ``"dependency"`` (required: raises when it cannot),
            or ``"sequential"``.

    Returns:
        One (2, E_i) int64 tensor per sentence, local token indices in ``0 .. len(tokens_i) - 1``; both
        directions present, no self-loops. Batch them with :func:`batch_edge_index`.
    """
    if syntax not in SYNTAX_MODES:
        raise InputError(f"syntax={syntax!r} is not one of {', '.join(SYNTAX_MODES)}")
    if syntax != "sequential":
        missing_text = token_char_spans is None or sentences is None
        if syntax == "dependency" and missing_text:
            raise InputError("syntax='dependency' needs the sentence texts and token_char_spans; pass both")
        if not missing_text and (syntax == "dependency" or syntax_available()):
            assert token_char_spans is not None and sentences is not None
            if not len(sentences_tokens) == len(token_char_spans) == len(sentences):
                raise InputError(
                    f"build_language_graph: {len(sentences_tokens)} token lists, {len(token_char_spans)} span "
                    f"lists and {len(sentences)} sentences; pass one of each per sentence"
                )
            parses = parse_dependencies(sentences)
            return [
                dependency_edges(spans, word_spans, heads)
                for spans, (word_spans, heads) in zip(token_char_spans, parses)
            ]
        if missing_text:
            _log_fallback_once("no sentence texts or character offsets were given")
        else:
            _log_fallback_once(f"spaCy with its {SPACY_MODEL} model is not installed")
    return [sequential_edges(len(tokens)) for tokens in sentences_tokens]


def batch_edge_index(
    edges_per_sentence: Sequence[Tensor], max_len: int, device: torch.device | str | None = None
) -> Tensor:
    """Offset per-sentence edges onto the flattened ``(B*L)`` token positions, in one vectorised step.

    Sample ``b``'s token ``l`` becomes node ``b * max_len + l``.

    Args:
        edges_per_sentence: B tensors of shape (2, E_b), int64, local indices ``< max_len``.
        max_len: L, the padded length of the batch.
        device: where the result goes (default: CPU).

    Returns:
        (2, sum_b E_b) int64.
    """
    if len(edges_per_sentence) == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=device)
    counts = torch.tensor([edges.shape[1] for edges in edges_per_sentence], dtype=torch.long)
    local = torch.cat([edges.to("cpu", torch.long) for edges in edges_per_sentence], dim=1)
    if local.numel() and int(local.max()) >= max_len:
        raise InputError(f"batch_edge_index: an edge points at token {int(local.max())}, but max_len is {max_len}")
    offsets = torch.repeat_interleave(torch.arange(len(edges_per_sentence), dtype=torch.long) * max_len, counts)
    return (local + offsets).to(device)
