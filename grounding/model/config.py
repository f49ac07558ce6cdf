"""Configuration of :class:`grounding.model.GroundingModel`: one dataclass per part, checked on construction.

Defaults are the rendered world's settings (2560-d ``efficientnet-lite0-motion`` clip features, MiniLM word
features, 32 clips, hidden size 256). :meth:`GroundingConfig.preset` returns VLG-Net's published settings for Charades-STA,
ActivityNet Captions and TACoS (``configs/*.yml`` of Soldelli/VLG-Net), which the YAML files in ``configs/``
mirror.

Example::

    config = GroundingConfig()                      # rendered world
    config = GroundingConfig.preset("tacos")        # 256 clips of 4096-d C3D, VLG-Net's TACoS settings
    model = GroundingModel(config)
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from grounding.checks import check_bool, check_choice, check_int, check_number, closest
from grounding.errors import ConfigError

POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "none")
PRESET_NAMES = ("rendered-world", "charades-sta", "charades-sta-32", "activitynet", "tacos")


def _check_groups(path: str, groups: int, width_per_group: int) -> None:
    check_int(f"{path}.groups", groups, 1)
    check_int(f"{path}.width_per_group", width_per_group, 1)


@dataclass
class VideoGraphConfig:
    """The clip graph (GCNeXt blocks of G-TAD, as used by VLG-Net) over a video's clips.

    Args:
        num_layers: GCNeXt blocks (default 2). Every block has its own weights unless ``share_layer_weights``.
        knn_k: semantic neighbours per clip, found among the real clips of the same video, the clip itself
            included (default 3, VLG-Net's ``FEATPOOL.NUM_NEIGHBOURS``).
        groups: groups of the bottleneck convolutions (default 32).
        width_per_group: channels per group; the bottleneck width is ``groups * width_per_group`` (default 4).
        positional: ``"sinusoidal"``, ``"learned"`` or ``"none"``: the clip-order encoding added to the
            projected features (default ``"sinusoidal"``).
        dropout: dropout on the input projection and on each block's branches (default 0.1).
        share_layer_weights: reuse one block ``num_layers`` times, as the official code's ``[GCNeXt] * n``
            does by accident (default False).
    """

    num_layers: int = 2
    knn_k: int = 3
    groups: int = 32
    width_per_group: int = 4
    positional: str = "sinusoidal"
    dropout: float = 0.1
    share_layer_weights: bool = False

    def __post_init__(self) -> None:
        check_int("video_graph.num_layers", self.num_layers, 0)
        check_int("video_graph.knn_k", self.knn_k, 1)
        _check_groups("video_graph", self.groups, self.width_per_group)
        check_choice("video_graph.positional", self.positional, POSITIONAL_ENCODINGS)
        check_number("video_graph.dropout", self.dropout, 0.0, 0.9)
        check_bool("video_graph.share_layer_weights", self.share_layer_weights)


@dataclass
class TextConfig:
    """The query side: word-feature projection, an optional LSTM, and syntactic graph layers.

    Args:
        input_dim: width of the word features from ``grounding.text`` (default 384, MiniLM-L6).
        lstm_layers: unidirectional LSTM layers after the projection (default 0: transformer word features
            are already contextual; VLG-Net's GloVe setting uses 3-5).
        num_syntactic_layers: syntactic graph-attention layers over the language graph (default 2).
        dropout: dropout on the projection, the LSTM and the attention messages (default 0.1).
        share_layer_weights: reuse one syntactic layer ``num_syntactic_layers`` times (default False).
    """

    input_dim: int = 384
    lstm_layers: int = 0
    num_syntactic_layers: int = 2
    dropout: float = 0.1
    share_layer_weights: bool = False

    def __post_init__(self) -> None:
        check_int("text.input_dim", self.input_dim, 1)
        check_int("text.lstm_layers", self.lstm_layers, 0)
        check_int("text.num_syntactic_layers", self.num_syntactic_layers, 0)
        check_number("text.dropout", self.dropout, 0.0, 0.9)
        check_bool("text.share_layer_weights", self.share_layer_weights)


@dataclass
class MatchingConfig:
    """Cross-modal graph matching: clips and words of one sample as one graph.

    Args:
        num_layers: matching layers (default 1, as VLG-Net).
        knn_k: semantic neighbours per node within its own modality (default 3).
        groups, width_per_group: bottleneck of the ordering/semantic/matching updates (default 32 x 4).
        use_ordering_edges, use_semantic_edges, use_matching_edges: VLG-Net's ablation switches
            (``MATCH.ORDERING_EDGE`` etc.; default all True).
        dropout: dropout on the update branches (default 0.0).
        share_layer_weights: reuse one matching layer ``num_layers`` times (default False).
    """

    num_layers: int = 1
    knn_k: int = 3
    groups: int = 32
    width_per_group: int = 4
    use_ordering_edges: bool = True
    use_semantic_edges: bool = True
    use_matching_edges: bool = True
    dropout: float = 0.0
    share_layer_weights: bool = False

    def __post_init__(self) -> None:
        check_int("matching.num_layers", self.num_layers, 0)
        check_int("matching.knn_k", self.knn_k, 1)
        _check_groups("matching", self.groups, self.width_per_group)
        for name in ("use_ordering_edges", "use_semantic_edges", "use_matching_edges", "share_layer_weights"):
            check_bool(f"matching.{name}", getattr(self, name))
        check_number("matching.dropout", self.dropout, 0.0, 0.9)


@dataclass
class SpanConfig:
    """Candidate spans (2D-TAN's sparse set) and how they are scored.

    Args:
        pooling_counts: 2D-TAN's ``POOLING_COUNTS``: after the diagonal, ``c`` diagonals at stride 1, then
            ``c`` at stride 2, 4, ... (default ``(15, 8)``: with 32 clips every span up to 16 clips, longer
            ones every 2 clips; 428 candidates). See :func:`grounding.model.spans.span_candidates`.
        moment_size: width of the candidate (moment) features; None (default) = ``hidden_size``. The head
            works on B x M candidates, so on TACoS (M = 3,101) this width sets most of the cost.
        num_graph_layers: message-passing layers over the moment graph (neighbouring candidates on the
            sparse 2D map; default 2).
        pool_logit_bound: clip attention logits for moment pooling are squashed to ``(-b, b)`` with
            ``b * tanh(x / b)`` so the prefix-sum pooling stays exact (default 10.0).
        use_boundary_score: rank by ``sigmoid(span) * sqrt(sigmoid(start) * sigmoid(end))`` (True, default)
            or by ``sigmoid(span)`` alone.
        boundary_context: add to each candidate's features what its first and last clips hold and what the
            clips just before and just after it hold (default False). Attention pooling alone gives a span and
            a longer span around it nearly the same features, so the classifier cannot see whether the
            boundaries are tight.
        inside_score: a third per-clip logit, "this clip lies inside the moment", trained against the fraction
            of each clip the ground truth covers (``loss.inside_weight``); the ranking score is multiplied by
            each candidate's IoU with the moment those probabilities describe
            (:func:`grounding.model.spans.soft_span_iou`). Default False.
        fusion_layers: :class:`~grounding.model.layers.fusion.QueryTemporalFusion` blocks applied to the matched
            clips before pooling and boundary scoring: a residual update from ``[clip ; clip * U sentence]``
            followed by a kernel-3 convolution along time (default 0).
        fusion_dilated: give fusion block i the dilation 2^i (1, 2, 4, ...), so n blocks see 2^n - 1 clips
            either side instead of n (default False: every block dilation 1).
        dropout: dropout in the moment graph (default 0.1).
        share_layer_weights: reuse one moment-graph layer ``num_graph_layers`` times (default False).
    """

    pooling_counts: tuple[int, ...] = (15, 8)
    moment_size: int | None = None
    num_graph_layers: int = 2
    pool_logit_bound: float = 10.0
    use_boundary_score: bool = True
    boundary_context: bool = False
    inside_score: bool = False
    fusion_layers: int = 0
    fusion_dilated: bool = False
    dropout: float = 0.1
    share_layer_weights: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.pooling_counts, list):
            self.pooling_counts = tuple(self.pooling_counts)
        if not isinstance(self.pooling_counts, tuple):
            raise ConfigError(f"span.pooling_counts must be a list of integers, got {self.pooling_counts!r}")
        for position, count in enumerate(self.pooling_counts):
            check_int(f"span.pooling_counts[{position}]", count, 1)
        if self.moment_size is not None:
            check_int("span.moment_size", self.moment_size, 1)
        check_int("span.num_graph_layers", self.num_graph_layers, 0)
        check_number("span.pool_logit_bound", self.pool_logit_bound, 0.0, 30.0, low_open=True)
        check_bool("span.use_boundary_score", self.use_boundary_score)
        check_bool("span.boundary_context", self.boundary_context)
        check_bool("span.inside_score", self.inside_score)
        check_int("span.fusion_layers", self.fusion_layers, 0)
        check_bool("span.fusion_dilated", self.fusion_dilated)
        check_number("span.dropout", self.dropout, 0.0, 0.9)
        check_bool("span.share_layer_weights", self.share_layer_weights)


@dataclass
class LossConfig:
    """Weights and targets of :func:`grounding.model.losses.compute_loss`.

    Args:
        min_iou, max_iou: 2D-TAN's scaled-IoU targets ``clamp((iou - min_iou) / (max_iou - min_iou), 0, 1)``
            (default 0.5, 1.0).
        boundary_weight: weight of the start/end BCE (default 0.5).
        boundary_sigma: width in clips of the Gaussian start/end targets around the ground-truth clips
            (default 1.0).
        inside_weight: weight of the per-clip inside BCE when ``span.inside_score`` is on (default 0.5).
        contrastive_weight: weight of the in-batch video/query embedding term (default 0.0: off).
        contrastive_temperature: its softmax temperature (default 0.07).
        contrastive_alpha, contrastive_beta: HN-NCE's alpha in (0, 1] and beta >= 0 for both contrastive terms
            (defaults 1 and 0: InfoNCE).
        ranking_weight: weight of the pooled-span-score term over other videos of the batch (default 0.0: off).
        ranking_negatives: other videos of the batch each query is scored on for it (default 3; each costs
            one more matching + span-head pass per query).
        ranking_temperature: divides the pooled log-scores in that term (default 1.0).
        ranking_pooling: ``max`` or ``softmax``, how span scores become a video score (default ``max``); a
            ranker built on the checkpoint uses it by default.
        ranking_pooling_temperature: the softmax pooling's temperature in log-score units (default 1.0).
        ranking_positive: the own video's score in that term: ``target`` (its best right span, default) or
            ``pooled`` (pooled like the negatives).
        contrastive_detach: the embedding term trains only the embedding heads, not the encoders the grounding
            shares (default true: it cannot cost grounding accuracy).
    """

    min_iou: float = 0.5
    max_iou: float = 1.0
    boundary_weight: float = 0.5
    boundary_sigma: float = 1.0
    inside_weight: float = 0.5
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.07
    contrastive_alpha: float = 1.0
    contrastive_beta: float = 0.0
    ranking_weight: float = 0.0
    ranking_negatives: int = 3
    ranking_temperature: float = 1.0
    ranking_pooling: str = "max"
    ranking_pooling_temperature: float = 1.0
    ranking_positive: str = "target"
    contrastive_detach: bool = True

    def __post_init__(self) -> None:
        check_number("loss.min_iou", self.min_iou, 0.0, 1.0)
        check_number("loss.max_iou", self.max_iou, 0.0, 1.0)
        if self.max_iou <= self.min_iou:
            raise ConfigError(f"loss.max_iou ({self.max_iou}) must be greater than loss.min_iou ({self.min_iou})")
        check_number("loss.boundary_weight", self.boundary_weight, 0.0, 100.0)
        check_number("loss.boundary_sigma", self.boundary_sigma, 0.0, 100.0, low_open=True)
        check_number("loss.inside_weight", self.inside_weight, 0.0, 100.0)
        check_number("loss.contrastive_weight", self.contrastive_weight, 0.0, 100.0)
        check_number("loss.contrastive_temperature", self.contrastive_temperature, 0.0, 10.0, low_open=True)
        check_number("loss.contrastive_alpha", self.contrastive_alpha, 0.0, 1.0, low_open=True)
        check_number("loss.contrastive_beta", self.contrastive_beta, 0.0, 100.0)
        check_number("loss.ranking_weight", self.ranking_weight, 0.0, 100.0)
        check_int("loss.ranking_negatives", self.ranking_negatives, 1, 1024)
        check_number("loss.ranking_temperature", self.ranking_temperature, 0.0, 100.0, low_open=True)
        check_choice("loss.ranking_pooling", self.ranking_pooling, ("max", "softmax"))
        check_number("loss.ranking_pooling_temperature", self.ranking_pooling_temperature, 0.0, 100.0, low_open=True)
        check_choice("loss.ranking_positive", self.ranking_positive, ("target", "pooled"))
        check_bool("loss.contrastive_detach", self.contrastive_detach)


_SECTIONS: dict[str, type] = {
    "video_graph": VideoGraphConfig,
    "text": TextConfig,
    "matching": MatchingConfig,
    "span": SpanConfig,
    "loss": LossConfig,
}


def _unknown_key_error(path: str, key: str, known: list[str]) -> ConfigError:
    close = closest(key, known)
    hint = f"; did you mean '{close}'?" if close else f"; known keys: {', '.join(known)}"
    where = f"{path}.{key}" if path else key
    return ConfigError(f"unknown model config key '{where}'{hint}")


def _section_from_dict(path: str, section_type: type, values: Any) -> Any:
    if isinstance(values, section_type):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path} must be a mapping of settings, got {values!r}")
    known = [f.name for f in dataclasses.fields(section_type)]
    for key in values:
        if key not in known:
            raise _unknown_key_error(path, str(key), known)
    return section_type(**values)


VIDEO_EMBEDDING_POOLINGS = ("mean", "mean-max")


@dataclass
class GroundingConfig:
    """Everything that shapes a :class:`grounding.model.GroundingModel` (and its loss).

    Args:
        input_dim: width D of the clip features (default 2560: the ``efficientnet-lite0-motion`` backbone the
            rendered world is extracted with; 1280 for the plain ``efficientnet-lite0``, 5120 for
            ``efficientnet-lite0-grid``; 1024 I3D, 500 C3D-PCA, 4096 C3D).
        num_clips: clips T per video the model takes; features are resampled to this grid (default 32).
        hidden_size: width H of every graph layer (default 256).
        standardize_inputs: standardise clip and word features per dimension with the training set's mean and
            std, which ``grounding train`` fits before the first step and the checkpoint keeps (default True;
            see :class:`grounding.model.layers.FeatureStandardizer`). False: inputs go in unchanged.
        input_dropout: dropout on the (standardised) clip features before the video projection, in training
            only (default 0.0). Frozen features of few videos are easy to memorise; Moment-DETR drops 50 % of
            its input features for the same reason.
        video_embedding_pooling: how :meth:`GroundingModel.embed_video` pools the clip states into the coarse
            retrieval embedding (stage 1 of ranking): ``mean`` (default) or ``mean-max`` (the mean and the max over
            clips, concatenated before the projection: a short event is not averaged away). Grounding never uses it.
        video_embedding_features: also pool the model's (standardised) input clip features the same way, beside
            the clip states, into the video embedding (default False). The pooled vector is then standardised per
            dimension (statistics that ``grounding fit-ranker`` fits on the training videos) and
            :meth:`GroundingModel.embed_video` needs the clip features as well as the states.
        video_graph, text, matching, span, loss: the nested sections documented on their classes.

    Example::

        >>> config = GroundingConfig(hidden_size=128, video_graph=VideoGraphConfig(num_layers=1))
        >>> GroundingConfig.from_dict(config.to_dict()) == config
        True
    """

    input_dim: int = 2560
    num_clips: int = 32
    hidden_size: int = 256
    standardize_inputs: bool = True
    input_dropout: float = 0.0
    video_embedding_pooling: str = "mean"
    video_embedding_features: bool = False
    video_graph: VideoGraphConfig = field(default_factory=VideoGraphConfig)
    text: TextConfig = field(default_factory=TextConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    span: SpanConfig = field(default_factory=SpanConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        check_int("input_dim", self.input_dim, 1)
        check_int("num_clips", self.num_clips, 1)
        check_int("hidden_size", self.hidden_size, 2)
        check_bool("standardize_inputs", self.standardize_inputs)
        check_number("input_dropout", self.input_dropout, 0.0, 0.9)
        check_bool("video_embedding_features", self.video_embedding_features)
        if self.video_embedding_pooling not in VIDEO_EMBEDDING_POOLINGS:
            raise ConfigError(
                f"video_embedding_pooling must be one of {', '.join(VIDEO_EMBEDDING_POOLINGS)}, got "
                f"{self.video_embedding_pooling!r}"
            )
        if self.hidden_size % 2:
            raise ConfigError(f"hidden_size must be even (sinusoidal encodings split it in halves), got {self.hidden_size}")
        for name, section_type in _SECTIONS.items():
            setattr(self, name, _section_from_dict(name, section_type, getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it."""
        values = dataclasses.asdict(self)
        values["span"]["pooling_counts"] = list(self.span.pooling_counts)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "GroundingConfig":
        """Build and check a config from nested dicts; an unknown key raises :class:`ConfigError` naming the
        closest known key."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"a model config must be a mapping, got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise _unknown_key_error("", str(key), known)
        kwargs = dict(values)
        for name, section_type in _SECTIONS.items():
            if name in kwargs:
                kwargs[name] = _section_from_dict(name, section_type, kwargs[name])
        return cls(**kwargs)

    @classmethod
    def preset(cls, name: str) -> "GroundingConfig":
        """Named settings: ``"rendered-world"`` (the defaults) or VLG-Net's published settings for
        ``"charades-sta"`` (16 clips of 1024-d I3D), ``"charades-sta-32"`` (32 clips), ``"activitynet"``
        (64 clips of 500-d C3D) and ``"tacos"`` (256 clips of 4096-d C3D)."""
        if name not in _PRESETS:
            close = closest(name, PRESET_NAMES)
            hint = f"; did you mean '{close}'?" if close else ""
            raise ConfigError(f"unknown model preset '{name}'{hint} (known: {', '.join(PRESET_NAMES)})")
        return cls.from_dict(_PRESETS[name])


# VLG-Net's configs/*.yml (commit 08f985c): FEATPOOL -> video_graph, MATCH -> matching, INTEGRATOR -> text,
# FEAT2D.POOLING_COUNTS -> span.pooling_counts, LOSS -> loss. Charades has no published YAML there; its
# values are the repository defaults (lib/config/defaults.py) with 2D-TAN's Charades grid and IoU range.
# Two deliberate departures: no LSTM (VLG-Net's INTEGRATOR.LSTM contextualises GloVe vectors, while
# grounding.text gives contextual transformer features; set text.lstm_layers to VLG_NET_LSTM_LAYERS[name] for
# GloVe), and candidate features of width 256 (span.moment_size) instead of PREDICTOR.HIDDEN_SIZE 512.
VLG_NET_LSTM_LAYERS = {"charades-sta": 3, "charades-sta-32": 3, "activitynet": 4, "tacos": 5}


def _derived(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in section by section (a list replaces); neither input is changed."""
    merged = copy.deepcopy(dict(base))
    for key, value in changes.items():
        merged[key] = _derived(merged.get(key, {}), value) if isinstance(value, Mapping) else copy.deepcopy(value)
    return merged


_VLG_NET = {"hidden_size": 512, "span": {"moment_size": 256}}  # every VLG-Net preset
_CHARADES_STA = _derived(_VLG_NET, {
    "input_dim": 1024,
    "num_clips": 16,
    "video_graph": {"num_layers": 1, "knn_k": 3, "positional": "none", "dropout": 0.0},
    "text": {"num_syntactic_layers": 1, "dropout": 0.0},
    "matching": {"knn_k": 3},
    "span": {"pooling_counts": [15], "num_graph_layers": 2, "dropout": 0.0},
    "loss": {"min_iou": 0.5, "max_iou": 1.0},
})
_PRESETS: dict[str, dict[str, Any]] = {
    "rendered-world": {},
    "charades-sta": _CHARADES_STA,
    # 2D-TAN's finer Charades grid: 32 clips, every span up to 16 clips, longer ones every 2 clips.
    "charades-sta-32": _derived(_CHARADES_STA, {"num_clips": 32, "span": {"pooling_counts": [15, 8]}}),
    "activitynet": _derived(_VLG_NET, {
        "input_dim": 500,
        "num_clips": 64,
        "video_graph": {"num_layers": 1, "knn_k": 9, "positional": "sinusoidal", "dropout": 0.0},
        "text": {"num_syntactic_layers": 4, "dropout": 0.0},
        "matching": {"knn_k": 7, "groups": 4, "width_per_group": 32},
        "span": {"pooling_counts": [15, 8, 8], "num_graph_layers": 1, "dropout": 0.0},
        "loss": {"min_iou": 0.7, "max_iou": 0.71},
    }),
    "tacos": _derived(_VLG_NET, {
        "input_dim": 4096,
        "num_clips": 256,
        "video_graph": {"num_layers": 4, "knn_k": 3, "positional": "none", "dropout": 0.1},
        "text": {"num_syntactic_layers": 2, "dropout": 0.1},
        "matching": {"knn_k": 3},
        "span": {"pooling_counts": [5, 8, 8, 8], "num_graph_layers": 1, "dropout": 0.1},
        "loss": {"min_iou": 0.5, "max_iou": 0.7},
    }),
}
