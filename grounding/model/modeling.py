"""The grounding model: VLG-Net's video, language and matching graphs, scored over 2D-TAN's sparse spans.

Data path (B samples, T clips, L words, H hidden, M candidate spans)::

    clip_feats (B, T, D) -> VideoGraphEncoder (Linear + LayerNorm + positions, GCNeXt blocks) -> (B, T, H)
    word_feats (B, L, D_text) + language graph -> QueryGraphEncoder (Linear, LSTM?, syntactic layers) -> (B, L, H)
    CrossModalMatching layers -> SpanHead -> GroundingOutput (span scores over M candidates, start/end logits)

``encode_clips`` does not see the query and ``encode_query`` does not see the video, so a ranking pass can
encode each once and pair them with :meth:`GroundingModel.score_encoded`.

The model is tensors in, :class:`GroundingOutput` out, plus its own save/load
(:class:`~grounding.model.pretrained.PretrainedModel`). From video files and sentences to spans in seconds is
:class:`grounding.Grounder` (``grounding.inference``), which wraps a model with its text encoder and backbone.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from grounding.data.features import compress_ranges
from grounding.errors import ConfigError, InputError
from grounding.model.config import GroundingConfig
from grounding.model.layers import CrossModalMatching, FeatureStandardizer, GCNeXtBlock, SyntacticGraphConv
from grounding.model.outputs import GroundingOutput
from grounding.model.pretrained import PretrainedModel
from grounding.model.retrieval import RetrievalEmbeddings, retrieval_heads
from grounding.model.spans import SpanHead

MODEL_TYPE = "grounding-vlg"


def sinusoidal_positions(num_positions: int, dim: int) -> Tensor:
    """Transformer sinusoidal encodings: (num_positions, dim) float32, sines in even, cosines in odd columns."""
    positions = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies)
    return table


class VideoGraphEncoder(nn.Module):
    """Clip features to graph-contextualised clip states: ``Linear(D, H) -> LayerNorm -> + positions ->
    GCNeXtBlock x num_layers``.

    Args:
        input_dim: D.
        hidden_size: H.
        num_clips: T, the length of the positional table.
        num_layers: GCNeXt blocks (default 2).
        knn_k, groups, width_per_group: see :class:`GCNeXtBlock`.
        positional: ``"sinusoidal"``, ``"learned"`` or ``"none"``.
        dropout: dropout after the projection and in the blocks.
        share_layer_weights: one block applied ``num_layers`` times.

    Shapes:
        - input: clip_feats (B, T, D), clip_mask (B, T) bool True = real clip
        - output: (B, T, H), zero at padded clips
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int,
        num_clips: int,
        num_layers: int = 2,
        knn_k: int = 3,
        groups: int = 32,
        width_per_group: int = 4,
        positional: str = "sinusoidal",
        dropout: float = 0.0,
        share_layer_weights: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.positional = positional
        self.input_proj = nn.Linear(input_dim, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.position_embedding = nn.Embedding(num_clips, hidden_size) if positional == "learned" else None
        if positional == "sinusoidal":
            self.register_buffer("position_table", sinusoidal_positions(num_clips, hidden_size), persistent=False)
        else:
            self.register_buffer("position_table", None, persistent=False)
        num_distinct = min(1, num_layers) if share_layer_weights else num_layers
        self.layers = nn.ModuleList(
            GCNeXtBlock(hidden_size, knn_k, groups, width_per_group, dropout) for _ in range(num_distinct)
        )

    def forward(self, clip_feats: Tensor, clip_mask: Tensor) -> Tensor:
        states = self.input_norm(self.input_proj(clip_feats))
        if self.position_embedding is not None:
            states = states + self.position_embedding.weight[: states.shape[1]]
        elif self.position_table is not None:
            states = states + self.position_table[: states.shape[1]]
        states = self.dropout(states) * clip_mask[..., None]
        for depth in range(self.num_layers):
            states = self.layers[0 if len(self.layers) == 1 else depth](states, clip_mask)
        return states


class QueryGraphEncoder(nn.Module):
    """Word features to graph-contextualised word states: ``Linear(D_text, H) -> LayerNorm -> LSTM? ->
    SyntacticGraphConv x num_layers`` over the language graph.

    Args:
        input_dim: D_text.
        hidden_size: H.
        lstm_layers: unidirectional LSTM layers (0 = none), run on packed sequences so padding is unseen.
        num_layers: syntactic graph layers.
        dropout: dropout after the projection, between LSTM layers and on the attention messages.
        share_layer_weights: one syntactic layer applied ``num_layers`` times.

    Shapes:
        - input: word_feats (B, L, D_text), word_mask (B, L) bool True = real word (a prefix), edge_index
          (2, E) over the flattened B*L words
        - output: (B, L, H), zero at padded words
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int,
        lstm_layers: int = 0,
        num_layers: int = 2,
        dropout: float = 0.0,
        share_layer_weights: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.input_proj = nn.Linear(input_dim, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lstm = (
            nn.LSTM(hidden_size, hidden_size, lstm_layers, batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0)
            if lstm_layers
            else None
        )
        num_distinct = min(1, num_layers) if share_layer_weights else num_layers
        self.layers = nn.ModuleList(SyntacticGraphConv(hidden_size, dropout) for _ in range(num_distinct))

    def forward(self, word_feats: Tensor, word_mask: Tensor, edge_index: Tensor) -> Tensor:
        batch_size, num_words, _ = word_feats.shape
        states = self.dropout(self.input_norm(self.input_proj(word_feats))) * word_mask[..., None]
        if self.lstm is not None:
            lengths = word_mask.sum(dim=1).cpu()
            packed = pack_padded_sequence(states, lengths, batch_first=True, enforce_sorted=False)
            states = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=num_words)[0]
        flat = states.reshape(batch_size * num_words, -1)  # (B*L, H)
        for depth in range(self.num_layers):
            flat = self.layers[0 if len(self.layers) == 1 else depth](flat, edge_index)
        return flat.view(batch_size, num_words, -1) * word_mask[..., None]


def _check_prefix_mask(
    mask: Any, name: str, dims: str, shape: tuple[int, int], noun: str, *, empty: str, gap: str
) -> None:
    """InputError unless ``mask`` is a (B, N) bool tensor whose every row is a non-empty prefix of Trues."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
        found = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise InputError(f"{name} must be a bool tensor of shape {dims} = {shape}, True = real {noun}; got {found}")
    for problem, message in ((~mask.any(dim=1), empty), ((mask[:, 1:] & ~mask[:, :-1]).any(dim=1), gap)):
        if problem.any():
            raise InputError(f"{name}: sample {int(problem.nonzero()[0, 0])} {message}")


def _non_finite_rows(feats: Tensor, mask: Tensor) -> tuple[int, str] | None:
    """The first sample with NaN/inf in a real (masked-in) row of (B, N, D) ``feats``, and those rows as ranges."""
    if bool(torch.isfinite(feats.sum())):  # one reduction; the exact check runs only on failure
        return None
    bad = ~torch.isfinite(feats).all(dim=-1) & mask  # NaN in padding is ignored
    if not bad.any():
        return None
    sample = int(bad.any(dim=1).nonzero()[0, 0])
    return sample, compress_ranges(bad[sample].nonzero()[:, 0].tolist())


class GroundingModel(RetrievalEmbeddings, PretrainedModel):
    """Temporal grounding with VLG-Net's graphs (Soldelli et al., 2021), made batched and mask-exact.

    Args:
        config: a :class:`GroundingConfig`; the only argument, as in ``transformers``.

    Tensors in, :class:`GroundingOutput` out (features from ``grounding extract`` and ``grounding.text``)::

        >>> config = GroundingConfig.preset("charades-sta")
        >>> model = GroundingModel(config).eval()
        >>> output = model(clip_feats, clip_mask, word_feats, word_mask, word_edge_index)
        >>> decode_spans(output, durations=[30.5], top_k=5)[0][0]   # Span(start, end, score), seconds

    Save and load: ``model.save_pretrained(folder)``, ``GroundingModel.from_pretrained(folder)`` (a checkpoint
    folder or a ``grounding train`` run folder). For video files and sentences, use :class:`grounding.Grounder`.
    """

    config_class = GroundingConfig
    model_type = MODEL_TYPE

    def __init__(self, config: GroundingConfig) -> None:
        super().__init__()
        if not isinstance(config, GroundingConfig):
            raise ConfigError(f"GroundingModel takes a GroundingConfig, got {type(config).__name__}")
        self.config = config
        hidden = config.hidden_size
        video, text, matching, span = config.video_graph, config.text, config.matching, config.span
        self.clip_standardizer = FeatureStandardizer(config.input_dim)
        self.word_standardizer = FeatureStandardizer(text.input_dim)
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else nn.Identity()
        self.video_encoder = VideoGraphEncoder(
            config.input_dim,
            hidden,
            config.num_clips,
            num_layers=video.num_layers,
            knn_k=video.knn_k,
            groups=video.groups,
            width_per_group=video.width_per_group,
            positional=video.positional,
            dropout=video.dropout,
            share_layer_weights=video.share_layer_weights,
        )
        self.query_encoder = QueryGraphEncoder(
            text.input_dim,
            hidden,
            lstm_layers=text.lstm_layers,
            num_layers=text.num_syntactic_layers,
            dropout=text.dropout,
            share_layer_weights=text.share_layer_weights,
        )
        num_matching = min(1, matching.num_layers) if matching.share_layer_weights else matching.num_layers
        self.matching_layers = nn.ModuleList(
            CrossModalMatching(
                hidden,
                knn_k=matching.knn_k,
                groups=matching.groups,
                width_per_group=matching.width_per_group,
                dropout=matching.dropout,
                use_ordering_edges=matching.use_ordering_edges,
                use_semantic_edges=matching.use_semantic_edges,
                use_matching_edges=matching.use_matching_edges,
            )
            for _ in range(num_matching)
        )
        self.span_head = SpanHead(
            hidden,
            config.num_clips,
            span.pooling_counts,
            moment_size=span.moment_size,
            num_graph_layers=span.num_graph_layers,
            pool_logit_bound=span.pool_logit_bound,
            dropout=span.dropout,
            use_boundary_score=span.use_boundary_score,
            boundary_context=span.boundary_context,
            inside_score=span.inside_score,
            fusion_layers=span.fusion_layers,
            fusion_dilated=span.fusion_dilated,
            share_layer_weights=span.share_layer_weights,
        )
        for name, head in retrieval_heads(config).items():  # the stage-1 embeddings (grounding.model.retrieval)
            setattr(self, name, head)

    @property
    def candidates(self) -> Tensor:
        """(M, 2) int64 ``(start_clip, end_clip)`` inclusive, the spans every output scores."""
        return self.span_head.candidates

    # ----------------------------------------------------------------------------------------------------- checks
    def _check_video_inputs(self, clip_feats: Any, clip_mask: Any) -> None:
        config = self.config
        if not isinstance(clip_feats, Tensor) or not clip_feats.is_floating_point() or clip_feats.ndim != 3:
            shape = tuple(clip_feats.shape) if isinstance(clip_feats, Tensor) else type(clip_feats).__name__
            raise InputError(f"clip_feats must be a float tensor of shape (B, T, D), got {shape}")
        batch_size, num_clips, dim = clip_feats.shape
        if dim != config.input_dim:
            raise InputError(
                f"clip_feats has {dim} features per clip, but this model expects input_dim={config.input_dim}; "
                "extract features with the backbone the model was built for, or use a model with that input_dim"
            )
        if num_clips != config.num_clips:
            raise InputError(
                f"clip_feats has {num_clips} clips, but this model takes num_clips={config.num_clips}; resample "
                f"or pad the features to {config.num_clips} clips (grounding.data.resample.resample_clips / pad_clips)"
            )
        _check_prefix_mask(
            clip_mask, "clip_mask", "(B, T)", (batch_size, num_clips), "clip",
            empty="has no real clip; drop it from the batch",
            gap="has padding before a real clip; real clips must come first and padding last "
            "(grounding.data.resample.pad_clips)",
        )
        bad = _non_finite_rows(clip_feats, clip_mask)
        if bad is not None:
            raise InputError(f"clip_feats: sample {bad[0]} has NaN or inf in clips {bad[1]}; re-extract its features")

    def _check_query_inputs(self, word_feats: Any, word_mask: Any, word_edge_index: Any) -> None:
        config = self.config
        if not isinstance(word_feats, Tensor) or not word_feats.is_floating_point() or word_feats.ndim != 3:
            shape = tuple(word_feats.shape) if isinstance(word_feats, Tensor) else type(word_feats).__name__
            raise InputError(f"word_feats must be a float tensor of shape (B, L, D_text), got {shape}")
        batch_size, num_words, dim = word_feats.shape
        if dim != config.text.input_dim:
            raise InputError(
                f"word_feats has {dim} features per word, but this model expects text.input_dim={config.text.input_dim}; "
                "use the text encoder the model was built for"
            )
        _check_prefix_mask(
            word_mask, "word_mask", "(B, L)", (batch_size, num_words), "word",
            empty="has an empty query (no real word); every query needs a token",
            gap="has padding before a real word; pad at the end",
        )
        bad = _non_finite_rows(word_feats, word_mask)
        if bad is not None:
            raise InputError(f"word_feats: sample {bad[0]} has NaN or inf at words {bad[1]}")
        if (
            not isinstance(word_edge_index, Tensor)
            or word_edge_index.dtype not in (torch.int64, torch.int32)
            or word_edge_index.ndim != 2
            or word_edge_index.shape[0] != 2
        ):
            shape = tuple(word_edge_index.shape) if isinstance(word_edge_index, Tensor) else type(word_edge_index).__name__
            raise InputError(f"word_edge_index must be an integer tensor of shape (2, E), got {shape}")
        if word_edge_index.numel():
            low, high = int(word_edge_index.min()), int(word_edge_index.max())
            if low < 0 or high >= batch_size * num_words:
                raise InputError(
                    f"word_edge_index has node {low if low < 0 else high}, outside the {batch_size} x {num_words} "
                    "flattened words; offset each sample's edges by sample * L (grounding.text.language_graph.batch_edge_index)"
                )
            flat_mask = word_mask.reshape(-1)
            on_padding = ~(flat_mask[word_edge_index[0]] & flat_mask[word_edge_index[1]])
            crossing = (word_edge_index[0] // num_words) != (word_edge_index[1] // num_words)
            for problem, what in ((on_padding, "touches a padded word"), (crossing, "joins two samples")):
                if problem.any():
                    edge = word_edge_index[:, int(problem.nonzero()[0, 0])].tolist()
                    raise InputError(
                        f"word_edge_index: edge {edge[0]} -> {edge[1]} {what} (L = {num_words}); build the edges "
                        "with grounding.text.language_graph.batch_edge_index"
                    )

    def check_inputs(
        self, clip_feats: Tensor, clip_mask: Tensor, word_feats: Tensor, word_mask: Tensor, word_edge_index: Tensor
    ) -> None:
        """Raise :class:`InputError` naming the sample and the fix for any input :meth:`forward` cannot use:
        wrong shapes or widths, masks that are not bool prefixes, a sample without clips or words, NaN/inf in
        a real clip or word, edges outside their sample. Called by :meth:`forward`."""
        self._check_video_inputs(clip_feats, clip_mask)
        self._check_query_inputs(word_feats, word_mask, word_edge_index)
        if clip_feats.shape[0] != word_feats.shape[0]:
            raise InputError(
                f"clip_feats has {clip_feats.shape[0]} samples but word_feats has {word_feats.shape[0]}; pass one query per video"
            )

    # --------------------------------------------------------------------------------------------------- forward
    def encode_clips(self, clip_feats: Tensor, clip_mask: Tensor) -> Tensor:
        """Query-independent clip states (a video file goes through :class:`grounding.Grounder` instead).

        Args:
            clip_feats: (B, T, D) float, T = ``config.num_clips``.
            clip_mask: (B, T) bool, True = real clip, real clips first.

        Returns:
            (B, T, H) float, zero at padded clips.
        """
        self._check_video_inputs(clip_feats, clip_mask)
        return self._encode_clips(clip_feats, clip_mask)

    def encode_query(self, word_feats: Tensor, word_mask: Tensor, word_edge_index: Tensor) -> Tensor:
        """Video-independent word states.

        Args:
            word_feats: (B, L, D_text) float.
            word_mask: (B, L) bool, True = real word, real words first.
            word_edge_index: (2, E) int64 language-graph edges over the flattened B*L words.

        Returns:
            (B, L, H) float, zero at padded words.
        """
        self._check_query_inputs(word_feats, word_mask, word_edge_index)
        return self._encode_query(word_feats, word_mask, word_edge_index)

    @torch.no_grad()
    def fit_input_statistics(self, clip_feats: Tensor | Iterable[Tensor], word_feats: Tensor | Iterable[Tensor]) -> None:
        """Fit the input standardisation (when ``config.standardize_inputs``) on training features.

        Args:
            clip_feats: (N, D) real clips of the training videos (as the model sees them: resampled), or chunks
                of such rows (one per video).
            word_feats: (M, D_text) real word features of the training sentences, or chunks (one per sentence).
        """
        if not self.config.standardize_inputs:
            return
        self.clip_standardizer.fit(clip_feats, "training clip features")
        self.word_standardizer.fit(word_feats, "training word features")

    def _encode_clips(self, clip_feats: Tensor, clip_mask: Tensor) -> Tensor:
        clip_feats = self.clip_standardizer(clip_feats)
        clip_feats = clip_feats.masked_fill(~clip_mask[..., None], 0.0)  # padding may hold anything, even NaN
        return self.video_encoder(self.input_dropout(clip_feats), clip_mask)

    def _encode_query(self, word_feats: Tensor, word_mask: Tensor, word_edge_index: Tensor) -> Tensor:
        word_feats = self.word_standardizer(word_feats)
        word_feats = word_feats.masked_fill(~word_mask[..., None], 0.0)
        return self.query_encoder(word_feats, word_mask, word_edge_index.long())

    def score_encoded(self, clip_states: Tensor, clip_mask: Tensor, word_states: Tensor, word_mask: Tensor) -> GroundingOutput:
        """Match encoded videos with encoded queries, pair by pair, and score every candidate span.

        Args:
            clip_states: (B, T, H) from :meth:`encode_clips` (repeat a row to pair one video with many queries).
            clip_mask: (B, T) bool, True = real clip.
            word_states: (B, L, H) from :meth:`encode_query`.
            word_mask: (B, L) bool, True = real word.

        Returns:
            :class:`GroundingOutput` with the retrieval embeddings filled in (the video's only when it pools the
            clip states alone: with ``config.video_embedding_features`` it needs :meth:`embed_video` and the
            clip features).
        """
        video_embedding = None if self.config.video_embedding_features else self.embed_video(clip_states, clip_mask)
        query_embedding = self.embed_query(word_states, word_mask)
        for layer in self.matching_layers_in_order():
            clip_states, word_states = layer(clip_states, clip_mask, word_states, word_mask)
        output = self.span_head(clip_states, clip_mask, word_states, word_mask)
        return replace(output, video_embedding=video_embedding, query_embedding=query_embedding)

    def matching_layers_in_order(self) -> list[CrossModalMatching]:
        """The matching layer applied at each depth (the same one repeated when weights are shared)."""
        depth = self.config.matching.num_layers
        if len(self.matching_layers) == 1:
            return [self.matching_layers[0]] * depth
        return list(self.matching_layers)

    def forward(
        self, clip_feats: Tensor, clip_mask: Tensor, word_feats: Tensor, word_mask: Tensor, word_edge_index: Tensor
    ) -> GroundingOutput:
        """Score every candidate span of each (video, query) pair.

        Args:
            clip_feats: (B, T, D) float clip features, T = ``config.num_clips``, D = ``config.input_dim``.
            clip_mask: (B, T) bool, True = real clip; real clips first, padding last.
            word_feats: (B, L, D_text) float word features from ``grounding.text``.
            word_mask: (B, L) bool, True = real word; real words first.
            word_edge_index: (2, E) int64 language-graph edges over the flattened B*L words (both directions,
                none on padding).

        Returns:
            :class:`GroundingOutput`: span_logits / span_scores (B, M) over ``candidates`` (M, 2),
            start_logits / end_logits (B, T), masks, and video/query embeddings (B, H).
        """
        self.check_inputs(clip_feats, clip_mask, word_feats, word_mask, word_edge_index)
        clip_states = self._encode_clips(clip_feats, clip_mask)
        word_states = self._encode_query(word_feats, word_mask, word_edge_index)
        return self.score_encoded(clip_states, clip_mask, word_states, word_mask)
