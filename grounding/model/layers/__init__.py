"""Layers of the grounding model: input standardisation, GCNeXt over clips, syntactic attention over words,
cross-modal matching, query-conditioned temporal fusion, message passing between candidate moments."""

from grounding.model.layers.fusion import QueryTemporalFusion
from grounding.model.layers.gcnext import GCNeXtBlock, GroupedLinear, OrderingConv, knn_edges
from grounding.model.layers.matching import BottleneckMLP, CrossModalMatching, ModalityGraphUpdate
from grounding.model.layers.moment_graph import MomentGraphConv, gated_layer_norm_relu
from grounding.model.layers.standardize import FeatureStandardizer
from grounding.model.layers.syntactic import SyntacticGraphConv

__all__ = [
    "BottleneckMLP",
    "CrossModalMatching",
    "FeatureStandardizer",
    "GCNeXtBlock",
    "GroupedLinear",
    "ModalityGraphUpdate",
    "MomentGraphConv",
    "OrderingConv",
    "QueryTemporalFusion",
    "SyntacticGraphConv",
    "gated_layer_norm_relu",
    "knn_edges",
]
