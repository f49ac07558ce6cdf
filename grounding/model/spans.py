"""Candidate spans: 2D-TAN's sparse set, prefix-sum moment pooling, the moment graph, scoring and decoding.

Only the M candidates are ever materialised, never the dense T x T map the official VLG-Net code convolves
(256 x 256 cells for TACoS, of which 3,101 are candidates).

Moment pooling is a softmax attention over the clips of each candidate ``[i, j]``. With one attention logit
``a_t`` per clip (conditioned on the sentence, not on the span), every candidate's pooled feature comes from
two prefix sums::

    w_t = exp(a_t - max_t a_t),  P_k = sum_{t<k} w_t v_t,  Z_k = sum_{t<k} w_t
    pooled[i, j] = (P_{j+1} - P_i) / (Z_{j+1} - Z_i)

which costs O(B * (T + M) * H) instead of the O(B * M * T * H) of a dense (M, T) mask. The differences of
prefix sums lose precision when a span's weights are tiny next to those before it; the sums are therefore
kept in float64 and the logits squashed to ``(-b, b)`` (``span.pool_logit_bound``, 10 by default), so every
weight is at least ``exp(-2b)`` of the largest and the result matches a direct masked softmax to float32
precision (see ``tests/model/test_spans.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from grounding.errors import InputError
from grounding.eval.nms import batched_nms
from grounding.model.layers.fusion import QueryTemporalFusion
from grounding.model.layers.moment_graph import MomentGraphConv, gated_layer_norm_relu
from grounding.model.outputs import GroundingOutput, Span

MASKED_LOGIT = -1e4  # logit written where a candidate or clip does not exist; sigmoid() of it is exactly 0


def span_candidates(num_clips: int, pooling_counts: Sequence[int]) -> Tensor:
    """2D-TAN's sparse candidate set of ``(start_clip, end_clip)`` pairs (both inclusive).

    Every single clip ``(t, t)``; then, for each entry ``c`` of ``pooling_counts`` at stride ``s`` (1, 2, 4,
    ... for successive entries), ``c`` more diagonals: the offset grows by ``s`` and the starts are
    ``0, s, 2s, ...``. With 16 clips and ``[15]`` that is all 136 pairs; with 256 clips and TACoS's
    ``[5, 8, 8, 8]`` it is 3,101.

    Args:
        num_clips: T, >= 1.
        pooling_counts: diagonals per stride level, each >= 1.

    Returns:
        (M, 2) int64, diagonal first, then by growing offset.
    """
    if num_clips < 1:
        raise InputError(f"span_candidates: num_clips must be >= 1, got {num_clips}")
    pairs = [np.stack([np.arange(num_clips), np.arange(num_clips)], axis=1)]
    stride, offset = 1, 0
    for count in pooling_counts:
        if count < 1:
            raise InputError(f"span_candidates: pooling counts must be >= 1, got {list(pooling_counts)}")
        for _ in range(count):
            offset += stride
            starts = np.arange(0, num_clips - offset, stride)
            pairs.append(np.stack([starts, starts + offset], axis=1))
        stride *= 2
    return torch.from_numpy(np.concatenate(pairs).astype(np.int64))


def candidate_neighbours(candidates: Tensor) -> Tensor:
    """Neighbours of each candidate on the sparse 2D map: the next shorter and longer candidate with the same
    start, and the nearest candidate with the same end starting earlier and later.

    On a dense grid these are ``(i, j-1), (i, j+1), (i-1, j), (i+1, j)``; on 2D-TAN's strided diagonals
    they skip to the nearest candidate that exists.

    Args:
        candidates: (M, 2) int64 ``(start_clip, end_clip)``.

    Returns:
        (M, 4) int64 indices into ``candidates``, -1 where there is no such neighbour; columns are
        (same start, shorter), (same start, longer), (same end, earlier start), (same end, later start).
    """
    starts = candidates[:, 0].cpu().numpy()
    ends = candidates[:, 1].cpu().numpy()
    neighbours = np.full((len(starts), 4), -1, dtype=np.int64)
    for shared, varying, column in ((starts, ends, 0), (ends, starts, 2)):
        order = np.lexsort((varying, shared))
        same_line = shared[order[1:]] == shared[order[:-1]]
        lower, upper = order[:-1][same_line], order[1:][same_line]
        neighbours[upper, column] = lower
        neighbours[lower, column + 1] = upper
    return torch.from_numpy(neighbours)


def candidate_adjacency(candidates: Tensor) -> Tensor:
    """The moment graph as a sparse 0/1 matrix: entry ``(m, n)`` is 1 when ``n`` is one of ``m``'s
    :func:`candidate_neighbours`.

    Args:
        candidates: (M, 2) int64.

    Returns:
        (M, M) float32 sparse COO tensor, coalesced.
    """
    neighbours = candidate_neighbours(candidates)
    exists = neighbours >= 0
    rows = torch.arange(neighbours.shape[0])[:, None].expand_as(neighbours)
    indices = torch.stack([rows[exists], neighbours[exists]])
    size = (neighbours.shape[0], neighbours.shape[0])
    return torch.sparse_coo_tensor(indices, torch.ones(indices.shape[1]), size, check_invariants=True).coalesce()


def span_softmax_pool(
    values: Tensor, logits: Tensor, mask: Tensor, candidates: Tensor, difference: Tensor | None = None
) -> Tensor:
    """Softmax attention pooling of the clips inside each candidate span, by prefix sums.

    ``pooled[m, b] = sum_{t in [i, j], real} softmax(logits[b, i..j]) values[b, t]`` for candidate
    ``m = (i, j)``; padded clips get no weight. Keep the logits' range within ~40 (the caller squashes them)
    for full precision; see the module docstring.

    Args:
        values: (B, T, H) float clip values.
        logits: (B, T) float attention logits.
        mask: (B, T) bool, True = real clip; every sample needs one.
        candidates: (M, 2) int64 ``(start_clip, end_clip)`` inclusive.
        difference: ``prefix_difference_matrix(candidates, T)`` on ``values``' device, for callers that pool
            over the same candidates every time (built here when None).

    Returns:
        (M, B, H) candidate-major, in ``values``' dtype; 0 for a candidate without a real clip.
    """
    logits = logits.masked_fill(~mask, -math.inf)
    shift = logits.amax(dim=1, keepdim=True).detach()  # the ratio does not depend on it
    weights = torch.exp((logits - shift).double()).T  # (T, B), 0 at padding
    weighted = weights[..., None] * values.transpose(0, 1).double()  # (T, B, H)
    prefix_values = nn.functional.pad(weighted.cumsum(dim=0), (0, 0, 0, 0, 1, 0))  # (T+1, B, H)
    prefix_weights = nn.functional.pad(weights.cumsum(dim=0), (0, 0, 1, 0))  # (T+1, B)
    # P_{j+1} - P_i for every candidate as one sparse (M, T+1) x (T+1, B*H) product: gathering both ends
    # and subtracting would allocate (2M, B, H) float64 tensors forward and twice that in backward
    if difference is None:
        difference = prefix_difference_matrix(candidates, values.shape[1])
    difference = difference.double()  # a no-op unless the module was cast with .half() or .to(dtype)
    num_candidates, (num_prefixes, batch_size, hidden_size) = candidates.shape[0], prefix_values.shape
    flat_values = prefix_values.reshape(num_prefixes, batch_size * hidden_size)
    numerators = torch.sparse.mm(difference, flat_values).view(num_candidates, batch_size, hidden_size)
    denominators = torch.sparse.mm(difference, prefix_weights)  # (M, B)
    inverse = torch.where(denominators > 0, 1.0 / denominators.clamp_min(1e-300), 0.0).to(values.dtype)
    return numerators.to(values.dtype) * inverse[..., None]


def prefix_difference_matrix(candidates: Tensor, num_clips: int) -> Tensor:
    """The sparse (M, T + 1) float64 matrix with +1 at ``(m, j + 1)`` and -1 at ``(m, i)`` for candidate
    ``m = (i, j)``: times the prefix sums ``P`` (T + 1 rows) it gives every ``P_{j+1} - P_i``.

    Args:
        candidates: (M, 2) int64 ``(start_clip, end_clip)`` inclusive, within ``[0, num_clips)``.
        num_clips: T.

    Returns:
        (M, T + 1) float64 sparse COO tensor, coalesced.
    """
    num_candidates = candidates.shape[0]
    rows = torch.arange(num_candidates, device=candidates.device).repeat(2)
    columns = torch.cat([candidates[:, 1] + 1, candidates[:, 0]])
    signs = torch.cat([torch.ones(num_candidates), -torch.ones(num_candidates)]).to(candidates.device, torch.float64)
    size = (num_candidates, num_clips + 1)
    return torch.sparse_coo_tensor(torch.stack([rows, columns]), signs, size, check_invariants=True).coalesce()


def masked_attention_pool(feats: Tensor, mask: Tensor, logits: Tensor) -> Tensor:
    """``sum_n softmax(logits)_n feats_n`` over the real positions of each sample.

    Args:
        feats: (B, N, H) float.
        mask: (B, N) bool, True = real; every sample needs one.
        logits: (B, N) float.

    Returns:
        (B, H).
    """
    weights = logits.masked_fill(~mask, -math.inf).softmax(dim=1)
    return torch.bmm(weights[:, None, :], feats).squeeze(1)


class SpanHead(nn.Module):
    r"""Scores every candidate span and every clip boundary from matched clip and word features.

    1. Sentence: attention pooling of the words; then, with ``fusion_layers``, that many
       :class:`~grounding.model.layers.fusion.QueryTemporalFusion` blocks rewrite the clips in its light.
    2. Moments: per clip, an attention logit ``b tanh(w^T tanh(W_c v_t + W_s s) / b)``; each candidate pools
       the values ``W_v v_t`` of its clips with it (:func:`span_softmax_pool`; the linear map commutes with
       the weighted mean, so it runs on T clips, not M spans), plus learned start and end embeddings, plus
       (``boundary_context``) ``A v_i + B v_j + C v_{i-1} + D v_{j+1}``: the content at the span's first and last
       clips and just outside them (0 outside the real clips), so that a span and a longer one around it differ.
    3. Fusion: ``relu(LayerNorm(moment * W_g s))``, then :class:`MomentGraphConv` layers, then a linear
       span logit.
    4. Boundaries: ``Linear(relu(W_b v_t + U_b s))`` gives a start and an end logit per clip (and, with
       ``inside_score``, an inside logit).
    5. Ranking score: ``sigmoid(span) * sqrt(sigmoid(start_i) * sigmoid(end_j))``: the span classifier,
       discounted by the geometric mean of its boundary probabilities (or ``sigmoid(span)`` alone when
       ``use_boundary_score`` is False); with ``inside_score`` also times :func:`soft_span_iou` of the inside
       probabilities.

    Args:
        hidden_size: width H of the clip and word features.
        num_clips: T; the candidate set and boundary embeddings are built for it.
        pooling_counts: see :func:`span_candidates`.
        moment_size: width of the candidate features (default: ``hidden_size``).
        num_graph_layers: :class:`MomentGraphConv` layers (default 2).
        pool_logit_bound: ``b`` above (default 10.0).
        dropout: dropout in the moment graph (default 0.0).
        use_boundary_score: see step 5 (default True).
        boundary_context: add the boundary content of step 2 (default False).
        inside_score: the inside logit of step 4 and its factor in step 5 (default False).
        fusion_layers: query-conditioned temporal fusion blocks of step 1 (default 0).
        fusion_dilated: block i of step 1 convolves with dilation 2^i (default False: all 1).
        share_layer_weights: reuse one moment-graph layer ``num_graph_layers`` times (default False).

    Shapes:
        - input: clip_feats (B, T, H), clip_mask (B, T) bool True = real (a prefix), word_feats (B, L, H),
          word_mask (B, L) bool True = real
        - output: :class:`GroundingOutput` without the retrieval embeddings
    """

    def __init__(
        self,
        hidden_size: int,
        num_clips: int,
        pooling_counts: Sequence[int],
        moment_size: int | None = None,
        num_graph_layers: int = 2,
        pool_logit_bound: float = 10.0,
        dropout: float = 0.0,
        use_boundary_score: bool = True,
        boundary_context: bool = False,
        inside_score: bool = False,
        fusion_layers: int = 0,
        fusion_dilated: bool = False,
        share_layer_weights: bool = False,
    ) -> None:
        super().__init__()
        moment_size = hidden_size if moment_size is None else moment_size
        self.hidden_size = hidden_size
        self.moment_size = moment_size
        self.num_clips = num_clips
        self.pooling_counts = tuple(pooling_counts)
        self.num_graph_layers = num_graph_layers
        self.pool_logit_bound = pool_logit_bound
        self.use_boundary_score = use_boundary_score
        self.boundary_context = boundary_context
        candidates = span_candidates(num_clips, pooling_counts)
        adjacency = candidate_adjacency(candidates)
        degree = torch.sparse.sum(adjacency, dim=1).to_dense().clamp_min(1)
        normalized = torch.sparse_coo_tensor(
            adjacency.indices(),
            adjacency.values() / degree[adjacency.indices()[0]],
            adjacency.shape,
            check_invariants=True,
        ).coalesce()
        self.register_buffer("candidates", candidates, persistent=False)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.register_buffer("normalized_adjacency", normalized, persistent=False)
        self.register_buffer("prefix_difference", prefix_difference_matrix(candidates, num_clips), persistent=False)
        self.sentence_pool = nn.Linear(hidden_size, 1, bias=False)  # softmax logits: a bias would cancel
        self.fusion_layers = nn.ModuleList(
            QueryTemporalFusion(hidden_size, dropout=dropout, dilation=2**depth if fusion_dilated else 1)
            for depth in range(fusion_layers)
        )
        self.pool_clip = nn.Linear(hidden_size, hidden_size)
        self.pool_sentence = nn.Linear(hidden_size, hidden_size, bias=False)
        self.pool_score = nn.Linear(hidden_size, 1)
        self.moment_value = nn.Linear(hidden_size, moment_size)
        self.start_embedding = nn.Embedding(num_clips, moment_size)
        self.end_embedding = nn.Embedding(num_clips, moment_size)
        # first clip, last clip, the clip before, the clip after
        self.context_value = nn.Linear(hidden_size, 4 * moment_size) if boundary_context else None
        self.sentence_gate = nn.Linear(hidden_size, moment_size)
        self.fuse_norm = nn.LayerNorm(moment_size)
        num_distinct = min(1, num_graph_layers) if share_layer_weights else num_graph_layers
        self.graph_layers = nn.ModuleList(MomentGraphConv(moment_size, dropout) for _ in range(num_distinct))
        self.span_out = nn.Linear(moment_size, 1)
        self.boundary_clip = nn.Linear(hidden_size, hidden_size)
        self.boundary_sentence = nn.Linear(hidden_size, hidden_size, bias=False)
        self.boundary_out = nn.Linear(hidden_size, 3 if inside_score else 2)
        self.inside_score = inside_score
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.children():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for layer in [*self.graph_layers, *self.fusion_layers]:
            layer.reset_parameters()
        nn.init.normal_(self.start_embedding.weight, std=0.02)
        nn.init.normal_(self.end_embedding.weight, std=0.02)

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.shape[0])

    def forward(self, clip_feats: Tensor, clip_mask: Tensor, word_feats: Tensor, word_mask: Tensor) -> GroundingOutput:
        sentence = masked_attention_pool(word_feats, word_mask, self.sentence_pool(word_feats).squeeze(-1))  # (B, H)
        for layer in self.fusion_layers:
            clip_feats = layer(clip_feats, clip_mask, sentence)

        attention = self.pool_score(torch.tanh(self.pool_clip(clip_feats) + self.pool_sentence(sentence)[:, None]))
        bound = self.pool_logit_bound
        attention = bound * torch.tanh(attention.squeeze(-1) / bound)  # (B, T)
        starts, ends = self.candidates[:, 0], self.candidates[:, 1]
        moments = span_softmax_pool(
            self.moment_value(clip_feats), attention, clip_mask, self.candidates, self.prefix_difference
        )  # (M, B, Hm)
        positions = (self.start_embedding(starts) + self.end_embedding(ends))[:, None, :]  # (M, 1, Hm)
        moments = moments + positions
        if self.context_value is not None:
            moments = moments + self._boundary_context(clip_feats, clip_mask)
        hidden = gated_layer_norm_relu(moments, self.sentence_gate(sentence)[None], self.fuse_norm)

        candidate_mask = ends[None, :] < clip_mask.sum(dim=1, keepdim=True)  # (B, M)
        if bool(candidate_mask.all()):
            adjacency, inverse_count, keep = self.normalized_adjacency, None, None
        else:
            keep = candidate_mask.T[..., None].to(hidden.dtype)  # (M, B, 1)
            hidden = hidden * keep
            count = torch.sparse.mm(self.adjacency, keep[..., 0])  # (M, B) valid neighbours per candidate
            adjacency, inverse_count = self.adjacency, (1.0 / count.clamp_min(1.0))[..., None]
        for depth in range(self.num_graph_layers):
            layer = self.graph_layers[0 if len(self.graph_layers) == 1 else depth]
            hidden = layer(hidden, adjacency, inverse_count, keep)
        span_logits = self.span_out(hidden).squeeze(-1).T.masked_fill(~candidate_mask, MASKED_LOGIT)  # (B, M)

        boundary = torch.relu(self.boundary_clip(clip_feats) + self.boundary_sentence(sentence)[:, None])
        boundary = self.boundary_out(boundary).masked_fill(~clip_mask[..., None], MASKED_LOGIT)  # (B, T, 2)
        start_logits, end_logits = boundary[..., 0], boundary[..., 1]
        inside_logits = boundary[..., 2] if self.inside_score else None

        span_scores = torch.sigmoid(span_logits)
        if self.use_boundary_score:
            boundary_prob = torch.sigmoid(start_logits[:, starts]) * torch.sigmoid(end_logits[:, ends])
            span_scores = span_scores * boundary_prob.sqrt()
        if inside_logits is not None:
            span_scores = span_scores * soft_span_iou(torch.sigmoid(inside_logits), clip_mask, self.candidates)
        return GroundingOutput(
            span_logits=span_logits,
            candidates=self.candidates,
            span_scores=span_scores.masked_fill(~candidate_mask, 0.0),
            start_logits=start_logits,
            end_logits=end_logits,
            candidate_mask=candidate_mask,
            clip_mask=clip_mask,
            inside_logits=inside_logits,
        )

    def _boundary_context(self, clip_feats: Tensor, clip_mask: Tensor) -> Tensor:
        """``A v_i + B v_j + C v_{i-1} + D v_{j+1}`` per candidate ``(i, j)``: (B, T, H) -> (M, B, Hm).

        Padded clips are zero (the encoders keep them so), and so are the positions before clip 0 and after
        clip T - 1, so a span that touches either end of its video sees nothing outside it.
        """
        batch_size, num_clips, _ = clip_feats.shape
        values = self.context_value(clip_feats) * clip_mask[..., None].to(clip_feats.dtype)  # (B, T, 4 Hm)
        first, last, before, after = values.transpose(0, 1).chunk(4, dim=-1)  # each (T, B, Hm)
        # index T of the padded tables is a row of zeros: i - 1 = -1 and j + 1 = T both land there
        zero = first.new_zeros(1, batch_size, self.moment_size)
        before = torch.cat([before, zero])
        after = torch.cat([after, zero])
        starts, ends = self.candidates[:, 0], self.candidates[:, 1]
        previous = torch.where(starts > 0, starts - 1, num_clips)
        return first[starts] + last[ends] + before[previous] + after[ends + 1]

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.hidden_size}, num_clips={self.num_clips}, "
            f"candidates={self.num_candidates}, moment_size={self.moment_size}, graph_layers={self.num_graph_layers}"
            + (f", fusion_layers={len(self.fusion_layers)})" if len(self.fusion_layers) else ")")
        )


def soft_span_iou(inside_prob: Tensor, clip_mask: Tensor, candidates: Tensor) -> Tensor:
    """Each candidate's IoU with the moment as the per-clip inside probabilities describe it.

    With ``p_t`` the probability that clip ``t`` is inside the moment, the moment covers ``sum_t p_t`` clips of
    which ``sum_{i<=t<=j} p_t`` lie in candidate ``[i, j]``, so its IoU is
    ``inside / ((j - i + 1) + total - inside)``: 1 for the exact span, lower for a span that also covers
    clips the model thinks are outside, which is what the span classifier alone cannot see.

    Args:
        inside_prob: (B, T) float in [0, 1].
        clip_mask: (B, T) bool, True = real clip (a prefix).
        candidates: (M, 2) int64 ``(start_clip, end_clip)`` inclusive.

    Returns:
        (B, M) float in [0, 1].
    """
    prob = inside_prob.double() * clip_mask
    prefix = torch.nn.functional.pad(prob.cumsum(dim=1), (1, 0))  # (B, T + 1)
    starts, ends = candidates[:, 0], candidates[:, 1]
    inside = prefix[:, ends + 1] - prefix[:, starts]  # (B, M)
    total = prefix[:, -1:]
    length = (ends - starts + 1).double()[None]
    return (inside / (length + total - inside).clamp_min(1e-6)).to(inside_prob.dtype)


def candidate_windows(candidates: Tensor, clip_mask: Tensor, durations: Tensor) -> Tensor:
    """Each candidate's window in seconds, on a grid of ``n`` equal clips over the video's duration.

    Clip ``t`` of a video with ``n`` real clips spans ``[t * d / n, (t + 1) * d / n]``, so candidate
    ``(i, j)`` is ``[i * d / n, (j + 1) * d / n]``.

    Args:
        candidates: (M, 2) int64 ``(start_clip, end_clip)`` inclusive.
        clip_mask: (B, T) bool, True = real clip (a prefix of each row).
        durations: (B,) float, seconds.

    Returns:
        (B, M, 2) float64 ``(start, end)`` in seconds (beyond the duration for candidates past the real clips).
    """
    clip_seconds = durations.double() / clip_mask.sum(dim=1).double()  # (B,)
    edges = torch.stack([candidates[:, 0], candidates[:, 1] + 1], dim=1).double()  # (M, 2)
    return edges[None] * clip_seconds[:, None, None]


def check_durations(durations: Sequence[float] | Tensor, batch_size: int, device: torch.device) -> Tensor:
    """``durations`` as a (B,) float64 tensor on ``device``; :class:`InputError` unless B finite seconds > 0."""
    values = torch.as_tensor(durations, dtype=torch.float64, device=device).reshape(-1)
    if values.shape[0] != batch_size:
        raise InputError(f"durations: expected one per sample ({batch_size}), got {values.shape[0]}")
    bad = ~torch.isfinite(values) | (values <= 0)
    if bad.any():
        index = int(bad.nonzero()[0, 0])
        raise InputError(f"durations: sample {index} has duration {float(values[index])!r}; durations must be seconds > 0")
    return values


def decode_spans(
    output: GroundingOutput,
    durations: Sequence[float] | Tensor,
    top_k: int = 5,
    nms_threshold: float | None = 0.5,
) -> list[list[Span]]:
    """The ``top_k`` best spans of each sample, in seconds, after non-maximum suppression.

    Args:
        output: a :class:`GroundingOutput` of B samples.
        durations: (B,) video durations in seconds; clip indices map to time on the grid of each video's
            real clips (:func:`candidate_windows`).
        top_k: spans kept per sample, >= 1.
        nms_threshold: a kept span removes lower-scored ones whose IoU with it is strictly greater
            (:func:`grounding.eval.nms.batched_nms`); None keeps overlapping spans.

    Returns:
        B lists of :class:`Span` ``(start, end, score)`` in seconds, best first (ties in candidate order).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"decode_spans: top_k must be an integer >= 1, got {top_k!r}")
    scores = output.span_scores.detach()
    seconds = check_durations(durations, scores.shape[0], scores.device)
    windows = candidate_windows(output.candidates, output.clip_mask, seconds).cpu().numpy()
    score_array = scores.double().cpu().numpy()
    valid = output.candidate_mask.cpu().numpy()
    kept = batched_nms(windows, score_array, valid, nms_threshold, max_keep=top_k)
    results: list[list[Span]] = []
    for sample, indices in enumerate(kept):
        indices = indices[indices >= 0]
        results.append(
            [
                Span(float(windows[sample, index, 0]), float(windows[sample, index, 1]), float(score_array[sample, index]))
                for index in indices
            ]
        )
    return results
