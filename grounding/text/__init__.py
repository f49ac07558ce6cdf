"""Query text -> token features, a token mask, and the language graph's edges (VLG-Net's language side).

Three lines::

    encoder = create_text_encoder("minilm-l6", max_words=32)      # or "hf:DIR", "glove:FILE"
    text = encoder.encode(["a person opens the door."])           # EncodedText
    text.word_feats, text.word_mask, text.edge_index              # (B, L, D), (B, L) bool, (2, E) over B*L nodes

Modules, imports pointing one way (``encoders -> {transformer, glove} -> base -> language_graph``):
``base`` (the shared encoder: checks, truncation, padding, cache), ``transformer`` (local Hugging Face folders,
MiniLM-L6), ``glove`` (word vectors), ``encoders`` (names -> encoders), ``language_graph`` (edges),
``sentence_bank`` (each distinct sentence encoded once). See ``docs/text.md`` for the token conventions, the
graph mapping and measured costs.
"""

from grounding.text.base import EncodedText, TextEncoder, TokenizedQuery
from grounding.text.encoders import (
    create_text_encoder,
    list_text_encoders,
    minilm_l6_path,
)
from grounding.text.glove import GloVeTextEncoder
from grounding.text.language_graph import (
    batch_edge_index,
    build_language_graph,
    dependency_edges,
    parse_dependencies,
    sequential_edges,
    syntax_available,
)
from grounding.text.transformer import TransformerTextEncoder

__all__ = [
    "EncodedText",
    "GloVeTextEncoder",
    "TextEncoder",
    "TokenizedQuery",
    "TransformerTextEncoder",
    "batch_edge_index",
    "build_language_graph",
    "create_text_encoder",
    "dependency_edges",
    "list_text_encoders",
    "minilm_l6_path",
    "parse_dependencies",
    "sequential_edges",
    "syntax_available",
]
