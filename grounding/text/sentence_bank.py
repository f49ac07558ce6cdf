"""Word features of many sentences, each encoded once: what training and batch prediction read queries from.

A frozen text encoder turns a sentence into token features and language-graph edges; a benchmark repeats
sentences (and a trainer reads each one every epoch), so :class:`SentenceBank` encodes each distinct sentence
once and keeps the results in two flat tensors with offsets.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from grounding.errors import InputError
from grounding.text.base import TextEncoder

ENCODE_CHUNK = 256  # sentences per text-encoder call while filling the bank


class SentenceBank:
    """Token features and language-graph edges of distinct sentences, each encoded once.

    Storage is one concatenated ``(sum L_i, D_text)`` float32 tensor plus offsets (no per-sentence Python
    objects to pickle into DataLoader workers), and the same for the edges.

    Args:
        encoder: a frozen :class:`~grounding.text.TextEncoder`.
        sentences: the sentences to encode; duplicates are encoded once.
        progress: show a tqdm bar on stderr.
    """

    def __init__(self, encoder: TextEncoder, sentences: Sequence[str] = (), progress: bool = False) -> None:
        self.encoder_name = encoder.name
        self.dim = encoder.dim
        self.index_of: dict[str, int] = {}
        self._feats: list[Tensor] = []
        self._edges: list[Tensor] = []
        self.word_feats = torch.zeros(0, encoder.dim)
        self.word_offsets = torch.zeros(1, dtype=torch.long)
        self.edges = torch.zeros(2, 0, dtype=torch.long)
        self.edge_offsets = torch.zeros(1, dtype=torch.long)
        self.num_truncated = 0
        self.add(encoder, sentences, progress)

    def add(self, encoder: TextEncoder, sentences: Sequence[str], progress: bool = False) -> None:
        """Encode the sentences not yet in the bank."""
        new = [sentence for sentence in dict.fromkeys(sentences) if sentence not in self.index_of]
        if not new:
            return
        if encoder.trainable:
            raise InputError(f"SentenceBank: text encoder {encoder.name!r} is trainable; the bank needs a frozen one")
        feats: list[Tensor] = [self.word_feats] if self.word_feats.shape[0] else []
        edges: list[Tensor] = [self.edges] if self.edges.shape[1] else []
        lengths = self.word_offsets.diff().tolist()
        edge_counts = self.edge_offsets.diff().tolist()
        bar = tqdm(total=len(new), desc="encoding sentences", unit="sent", disable=not progress, leave=False)
        for start in range(0, len(new), ENCODE_CHUNK):
            chunk = new[start : start + ENCODE_CHUNK]
            with torch.no_grad():
                encoded = encoder.encode(chunk, device="cpu")
            max_len = encoded.word_mask.shape[1]
            chunk_lengths = encoded.word_mask.sum(dim=1)
            feats.append(encoded.word_feats.float()[encoded.word_mask])  # (sum L_i, D)
            # Edges never cross sentences: sentence b owns nodes [b*L, (b+1)*L); sort them by sentence.
            owner = encoded.edge_index[0] // max_len
            order = torch.argsort(owner, stable=True)
            local = encoded.edge_index[:, order] - (owner[order] * max_len)[None, :]
            counts = torch.bincount(owner, minlength=len(chunk))
            edges.append(local)
            lengths.extend(chunk_lengths.tolist())
            edge_counts.extend(counts.tolist())
            self.num_truncated += sum(encoded.truncated)
            for sentence in chunk:
                self.index_of[sentence] = len(self.index_of)
            bar.update(len(chunk))
        bar.close()
        self.word_feats = torch.cat(feats, dim=0).contiguous()
        self.word_offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.tensor(lengths).cumsum(0)])
        self.edges = torch.cat(edges, dim=1).contiguous()
        self.edge_offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.tensor(edge_counts).cumsum(0)])

    def __len__(self) -> int:
        return len(self.index_of)

    def __contains__(self, sentence: object) -> bool:
        return sentence in self.index_of

    def get(self, sentence: str) -> tuple[Tensor, Tensor]:
        """``(word_feats (L_i, D_text) float32, edges (2, E_i) int64 with local token indices)``."""
        index = self.index_of.get(sentence)
        if index is None:
            raise InputError(f"sentence {sentence[:60]!r} was not encoded into this bank; add it first")
        return self.get_index(index)

    def get_index(self, index: int) -> tuple[Tensor, Tensor]:
        words = self.word_feats[self.word_offsets[index] : self.word_offsets[index + 1]]
        edges = self.edges[:, self.edge_offsets[index] : self.edge_offsets[index + 1]]
        return words, edges
