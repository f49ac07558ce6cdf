"""The text-encoder base: a query sentence -> padded token features, a mask, and the language graph's edges.

:class:`TextEncoder` holds what every encoder shares (checking the sentences, truncation with one warning per
batch, padding, the language graph, the LRU cache of :meth:`~TextEncoder.encode_cached`); a subclass only
tokenises (:class:`TokenizedQuery`) and embeds. The subclasses are
:class:`~grounding.text.transformer.TransformerTextEncoder` and :class:`~grounding.text.glove.GloVeTextEncoder`;
:func:`~grounding.text.encoders.create_text_encoder` builds them by name.

Token conventions (one choice, kept everywhere):

- Transformer encoders run on ``[CLS] tokens [SEP]`` (whatever special tokens the tokenizer adds) so the
  context is the one the model was trained with, then the special tokens are DROPPED: ``word_feats[b, l]``
  is the last hidden state of the query's l-th sub-word piece, and ``tokens`` are those pieces
  (``"un", "##bel", ...``).
- ``max_words`` counts the encoder's tokens without special tokens (sub-word pieces for transformers, words
  and punctuation marks for GloVe). A longer query keeps its first ``max_words`` tokens (a word cut at the
  boundary keeps only its first pieces), warns, and is flagged in ``EncodedText.truncated``.
- Padded positions hold zero features and ``word_mask`` False; no language-graph edge touches them.
"""

from __future__ import annotations

import abc
import collections
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

import grounding.text.language_graph as language_graph  # the module, so tests can stand in for spaCy
from grounding.errors import ConfigError, InputError, MissingDependencyError
from grounding.text.language_graph import (
    SYNTAX_MODES,
    batch_edge_index,
    build_language_graph,
)

DEFAULT_CACHE_SIZE = 50_000  # holds every distinct training sentence of Charades-STA, TACoS, ActivityNet


@dataclass
class EncodedText:
    """A batch of encoded queries.

    Attributes:
        word_feats: (B, L, D_text) float32 token features; zeros at padded positions.
        word_mask: (B, L) bool, True = real token, False = padding.
        tokens: per sentence, its tokens after truncation (``len(tokens[b]) == word_mask[b].sum()``).
        edge_index: (2, E) int64 language-graph edges over the flattened (B*L) token positions: sample b's
            token l is node ``b * L + l``. Directed, every edge present in both directions, no self-loops,
            none touching padding.
        truncated: per sentence, True when it was cut to ``max_words`` tokens.
    """

    word_feats: Tensor
    word_mask: Tensor
    tokens: list[list[str]]
    edge_index: Tensor
    truncated: list[bool]

    def to(self, device: torch.device | str) -> EncodedText:
        """The same batch with its tensors on ``device``."""
        return EncodedText(
            self.word_feats.to(device), self.word_mask.to(device), self.tokens, self.edge_index.to(device),
            self.truncated,
        )


@dataclass
class TokenizedQuery:
    """One query as an encoder sees it (before truncation, unless :meth:`truncate` made it).

    ``content_ids`` are the encoder's ids of the real tokens (vocabulary rows for GloVe); ``prefix_ids`` and
    ``suffix_ids`` are special tokens wrapped around them for the model (``[CLS]`` / ``[SEP]``), never output.
    ``char_spans`` are each token's ``(start, end)`` character offsets in the sentence.
    """

    tokens: list[str]
    char_spans: list[tuple[int, int]]
    content_ids: list[int]
    prefix_ids: list[int] = field(default_factory=list)
    suffix_ids: list[int] = field(default_factory=list)

    def truncate(self, max_words: int) -> TokenizedQuery:
        return TokenizedQuery(
            self.tokens[:max_words], self.char_spans[:max_words], self.content_ids[:max_words],
            self.prefix_ids, self.suffix_ids,
        )


@dataclass
class _CachedQuery:
    word_feats: Tensor  # (L_i, D) float32, CPU
    tokens: list[str]
    edges: Tensor  # (2, E_i) int64, local indices
    truncated: bool


class TextEncoder(nn.Module, abc.ABC):
    """Base class: sentences -> :class:`EncodedText`. Subclasses implement ``_tokenize`` and ``_embed``.

    Args:
        dim: D_text, the width of the token features.
        max_words: keep at most this many tokens per query (special tokens not counted); default 32.
        syntax: language-graph edges: ``"auto"`` (dependency edges when spaCy + en_core_web_sm are installed,
            else sequential, logged once), ``"dependency"`` (required) or ``"sequential"``.
        cache_size: how many distinct sentences :meth:`encode_cached` keeps (least recently used are dropped);
            0 disables the cache. Memory: about ``distinct_sentences * mean_tokens * dim * 4`` bytes, capped by
            ``cache_size``; see docs/text.md for the datasets' figures.
        name: the name :func:`create_text_encoder` accepts to rebuild this encoder (saved with checkpoints).
    """

    trainable: bool = False

    def __init__(
        self, dim: int, max_words: int = 32, syntax: str = "auto", cache_size: int = DEFAULT_CACHE_SIZE,
        name: str = "",
    ) -> None:
        super().__init__()
        if max_words < 1:
            raise ConfigError(f"text encoder: max_words must be >= 1, got {max_words}")
        if syntax not in SYNTAX_MODES:
            raise ConfigError(f"text encoder: syntax={syntax!r} is not one of {', '.join(SYNTAX_MODES)}")
        if cache_size < 0:
            raise ConfigError(f"text encoder: cache_size must be >= 0, got {cache_size}")
        if syntax == "dependency" and not language_graph.syntax_available():
            raise MissingDependencyError(
                f"text encoder: syntax='dependency' needs spaCy and {language_graph.SPACY_MODEL}; install them "
                f'with: pip install "grounding[syntax]" && python -m spacy download {language_graph.SPACY_MODEL}'
            )
        self.dim = dim
        self.max_words = max_words
        self.syntax = syntax
        self.cache_size = cache_size
        self.name = name
        self._cache: collections.OrderedDict[str, _CachedQuery] = collections.OrderedDict()
        self._cache_hits = 0
        self._cache_misses = 0

    # -- subclass hooks -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _tokenize(self, sentences: list[str]) -> list[TokenizedQuery]:
        """Untruncated tokenisation of each (non-empty) sentence."""

    @abc.abstractmethod
    def _embed(self, queries: list[TokenizedQuery], max_len: int) -> Tensor:
        """(B, max_len, D) float32 features on the encoder's device, zeros after each query's tokens."""

    @property
    def device(self) -> torch.device:
        """Where the encoder computes (its first parameter or buffer; CPU when it has none)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    # -- public API -----------------------------------------------------------------------------------------
    def encode(self, sentences: Sequence[str], device: torch.device | str | None = None) -> EncodedText:
        """Encode a batch of query sentences.

        Runs under ``torch.no_grad()`` unless the encoder is trainable. Deterministic (dropout is off when
        frozen).

        Args:
            sentences: B query strings.
            device: where the returned tensors go (default: the encoder's device). The encoder itself computes
                on its own device; move it with ``.to(...)``.

        Returns:
            :class:`EncodedText` with word_feats (B, L, D_text), word_mask (B, L), edge_index (2, E), where
            L is the longest query's token count (<= max_words).

        Raises:
            InputError: an empty or whitespace-only query, a query with no tokens, or not a list of strings.
        """
        sentences = self._check_sentences(sentences)
        word_feats, queries, edges, truncated = self._encode_parts(sentences)
        out_device = torch.device(device) if device is not None else word_feats.device
        return _batch(word_feats, [query.tokens for query in queries], edges, truncated, out_device)

    def encode_cached(self, sentences: Sequence[str], device: torch.device | str | None = None) -> EncodedText:
        """:meth:`encode`, but each distinct sentence is encoded once and kept in an LRU cache (CPU memory).

        For training with a frozen encoder: the features only depend on the sentence text. Same output as
        :meth:`encode` up to float rounding; a truncation warning is given when the sentence is first encoded.

        Raises:
            ConfigError: the encoder is trainable (cached features would be stale and carry no gradient).
        """
        if self.trainable:
            raise ConfigError(
                f"{type(self).__name__}: encode_cached needs a frozen encoder (trainable=False); call encode instead"
            )
        sentences = self._check_sentences(sentences)
        batch_entries: dict[str, _CachedQuery] = {}
        misses: list[str] = []
        miss_positions: list[int] = []
        first_positions: dict[str, int] = {}
        for index, sentence in enumerate(sentences):
            first_positions.setdefault(sentence, index)
        for sentence, index in first_positions.items():
            entry = self._cache.get(sentence)
            if entry is None:
                misses.append(sentence)
                miss_positions.append(index)
            else:
                self._cache.move_to_end(sentence)
                batch_entries[sentence] = entry
        self._cache_hits += len(sentences) - len(misses)
        self._cache_misses += len(misses)
        if misses:
            word_feats, queries, edges, truncated = self._encode_parts(misses, miss_positions)
            word_feats = word_feats.detach().to("cpu", torch.float32)
            for b, sentence in enumerate(misses):
                num_tokens = len(queries[b].tokens)
                entry = _CachedQuery(word_feats[b, :num_tokens].clone(), queries[b].tokens, edges[b], truncated[b])
                batch_entries[sentence] = entry
                if self.cache_size > 0:
                    self._cache[sentence] = entry
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

        entries = [batch_entries[sentence] for sentence in sentences]
        word_feats = nn.utils.rnn.pad_sequence([entry.word_feats for entry in entries], batch_first=True)
        out_device = torch.device(device) if device is not None else self.device
        return _batch(
            word_feats, [list(entry.tokens) for entry in entries], [entry.edges for entry in entries],
            [entry.truncated for entry in entries], out_device,
        )

    def cache_info(self) -> dict[str, int]:
        """``hits``, ``misses`` (sentences looked up), ``size`` (sentences held), ``max_size``, ``bytes`` held."""
        held = sum(entry.word_feats.nbytes + entry.edges.nbytes for entry in self._cache.values())
        return {
            "hits": self._cache_hits, "misses": self._cache_misses, "size": len(self._cache),
            "max_size": self.cache_size, "bytes": held,
        }

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cache_hits = self._cache_misses = 0

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, dim={self.dim}, max_words={self.max_words}, trainable={self.trainable}, "
            f"syntax={self.syntax!r}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    # -- shared steps ---------------------------------------------------------------------------------------
    @staticmethod
    def _check_sentences(sentences: Sequence[str]) -> list[str]:
        if isinstance(sentences, str):
            raise InputError(
                f"encode takes a list of sentences, got one string ({sentences[:40]!r}); wrap it: [sentence]"
            )
        sentences = list(sentences)
        if not sentences:
            raise InputError("encode got no sentences; pass at least one query")
        for index, sentence in enumerate(sentences):
            if not isinstance(sentence, str):
                raise InputError(f"query {index} is a {type(sentence).__name__}, not a string; pass query texts")
            if not sentence.strip():
                raise InputError(
                    f"query {index} is empty; every query needs at least one word (drop or fix it in the annotations)"
                )
        return sentences

    def _encode_parts(
        self, sentences: list[str], batch_positions: list[int] | None = None
    ) -> tuple[Tensor, list[TokenizedQuery], list[Tensor], list[bool]]:
        """Tokenise, truncate (with warnings), embed and build per-sentence edges.

        ``batch_positions`` are the sentences' indices in the caller's batch, for messages (default 0..B-1).
        Returns word_feats (B, L, D) on the encoder's device, the truncated queries, per-sentence edges
        (2, E_b) with local indices, and the truncation flags.
        """
        full_queries = self._tokenize(sentences)
        queries: list[TokenizedQuery] = []
        truncated: list[bool] = []
        cut_notes: list[str] = []
        positions = batch_positions if batch_positions is not None else list(range(len(sentences)))
        for index, sentence, query in zip(positions, sentences, full_queries):
            if not query.tokens:
                raise InputError(
                    f"query {index} ({sentence[:60]!r}) has no tokens after {self.name or type(self).__name__} "
                    f"tokenisation; give it at least one word"
                )
            cut = len(query.tokens) > self.max_words
            if cut:
                cut_notes.append(f"query {index} ({sentence[:60]!r}) has {len(query.tokens)} tokens")
                query = query.truncate(self.max_words)
            queries.append(query)
            truncated.append(cut)
        if cut_notes:
            # One warning per batch, naming up to five queries, so a long corpus does not flood stderr.
            more = f"; and {len(cut_notes) - 5} more" if len(cut_notes) > 5 else ""
            warnings.warn(
                f"{'; '.join(cut_notes[:5])}{more}: truncated to max_words={self.max_words} "
                f"(raise max_words to keep them all)",
                stacklevel=3,
            )
        max_len = max(len(query.tokens) for query in queries)
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            word_feats = self._embed(queries, max_len)
        edges = build_language_graph(
            [query.tokens for query in queries], [query.char_spans for query in queries], sentences, self.syntax
        )
        return word_feats, queries, edges, truncated


def _batch(
    word_feats: Tensor, tokens: list[list[str]], edges: list[Tensor], truncated: list[bool], device: torch.device
) -> EncodedText:
    """The :class:`EncodedText` of padded features: word_feats (B, L, D) float, zeros after each sentence's
    ``len(tokens[b])`` tokens; edges: per sentence (2, E_b) int64 with local indices. Tensors go to ``device``."""
    max_len = word_feats.shape[1]
    lengths = torch.tensor([len(sentence_tokens) for sentence_tokens in tokens], dtype=torch.long)
    word_mask = torch.arange(max_len)[None, :] < lengths[:, None]  # (B, L)
    return EncodedText(
        word_feats=word_feats.to(device),
        word_mask=word_mask.to(device),
        tokens=tokens,
        edge_index=batch_edge_index(edges, max_len, device),
        truncated=truncated,
    )
