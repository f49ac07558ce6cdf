"""The grounding model: VLG-Net-style graphs over clips and words, cross-modal graph matching, and scores for
2D-TAN's sparse set of candidate spans.

    config = GroundingConfig.preset("charades-sta")        # or GroundingConfig() for the rendered world
    model = GroundingModel(config)
    output = model(clip_feats, clip_mask, word_feats, word_mask, word_edge_index)
    loss, parts = compute_loss(output, target_windows, durations, config.loss)
    spans = decode_spans(output, durations, top_k=5, nms_threshold=0.5)   # Span(start, end, score), seconds

Save and load (``grounding/model/pretrained.py``): ``model.save_pretrained(folder)``,
``GroundingModel.from_pretrained(folder)``. Video files and sentences to spans: :class:`grounding.Grounder`.

See docs/model.md for the architecture, the shapes and the measured speed.
"""

from grounding.model.config import (
    PRESET_NAMES,
    GroundingConfig,
    LossConfig,
    MatchingConfig,
    SpanConfig,
    TextConfig,
    VideoGraphConfig,
)
from grounding.model.losses import compute_loss
from grounding.model.modeling import GroundingModel, QueryGraphEncoder, VideoGraphEncoder
from grounding.model.outputs import GroundingOutput, Span
from grounding.model.pretrained import PretrainedModel, find_checkpoint
from grounding.model.spans import (
    SpanHead,
    candidate_adjacency,
    candidate_neighbours,
    candidate_windows,
    decode_spans,
    span_candidates,
    span_softmax_pool,
)

__all__ = [
    "PRESET_NAMES",
    "GroundingConfig",
    "GroundingModel",
    "GroundingOutput",
    "LossConfig",
    "MatchingConfig",
    "PretrainedModel",
    "QueryGraphEncoder",
    "Span",
    "SpanConfig",
    "SpanHead",
    "TextConfig",
    "VideoGraphConfig",
    "VideoGraphEncoder",
    "candidate_adjacency",
    "candidate_neighbours",
    "candidate_windows",
    "compute_loss",
    "decode_spans",
    "find_checkpoint",
    "span_candidates",
    "span_softmax_pool",
]
