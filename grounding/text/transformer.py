"""Token features from a local Hugging Face encoder folder (MiniLM-L6 is one): ``hf:DIR`` and ``minilm-l6``.

The folder is loaded with ``AutoTokenizer`` + ``AutoModel`` and ``local_files_only=True``: never the network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from grounding.errors import ConfigError, InputError
from grounding.text.base import DEFAULT_CACHE_SIZE, TextEncoder, TokenizedQuery


class TransformerTextEncoder(TextEncoder):
    """Token features from a local Hugging Face encoder: the last hidden state of each sub-word piece.

    The model runs on the tokenizer's full input (``[CLS] ... [SEP]``); the special tokens' states are dropped
    (see :mod:`grounding.text.base`). Frozen by default: no parameter needs a gradient, the model stays in eval
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
