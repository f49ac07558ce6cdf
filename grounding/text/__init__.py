"""Query text -> token features, a token mask, and the language graph's edges (VLG-Net's language side).

Three lines::

    encoder = create_text_encoder("minilm-l6", max_words=32)      # or "hf:DIR", "glove:FILE"
    text = encoder.encode(["a person opens the door."])           # EncodedText
    text.word_feats, text.word_mask, text.edge_index              # (B, L, D), (B, L) bool, (2, E) over B*L nodes

See ``docs/text.md`` for the token conventions, the graph mapping and measured costs.
"""

from grounding.text.encoders import (
    EncodedText,
    GloVeTextEncoder,
    TextEncoder,
    TokenizedQuery,
    TransformerTextEncoder,
    create_text_encoder,
    list_text_encoders,
    minilm_l6_path,
)
from grounding.text.language_graph import (
    batch_edge_index,
    build_language_graph,
    dependency_edges,
    parse_dependencies,
    sequential_edges,
    syntax_available,
)

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
