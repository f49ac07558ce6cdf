"""Token features from GloVe-format word vectors (``glove:FILE``), as VLG-Net uses."""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from grounding.errors import InputError
from grounding.text.base import DEFAULT_CACHE_SIZE, TextEncoder, TokenizedQuery

# A GloVe-style tokenizer: words (with inner apostrophes or hyphens: "don't", "t-shirt") or one punctuation mark.
_WORD_PATTERN = re.compile(r"\w+(?:['\-]\w+)*|[^\w\s]")


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
