"""Fit a grounding checkpoint for ranking: train its retrieval heads, then fit how stage 2 combines the two stages.

What ``grounding fit-ranker`` runs. The grounding model stays frozen: only the coarse-embedding heads
(:data:`RETRIEVAL_HEADS`: the video and query projections and the query's attention pool) are trained, so every
span score, and so every grounding figure, is the checkpoint's own (tested). Two steps:

1. **Heads.** Each training sentence is scored against the embeddings of *every* candidate video (the training
   videos, encoded and pooled once: clip states and, by default, input clip features; half of each pooled vector
   dropped at each step), with HN-NCE (``alpha``, ``beta``; ``alpha = 1, beta = 0`` is InfoNCE). The query's own
   video is a positive, and so is every video the query is known to be true of (multi-positive truth;
   ``multi_positive=False`` leaves those out of the loss instead): a true match is never a negative.
2. **Fusion.** On the sentences of held-out videos (``calibration_fraction``), stage 1 retrieves the top
   ``rerank`` videos and stage 2 scores them; the reranked score is ``a * cosine + b * pooled span log-score``,
   with ``(a, b)`` fitted by the multi-positive log-likelihood of a softmax over those candidates. That softmax is
   then the ranker's ``probability`` of each reranked video (the reliability plot in docs/ranking.md checks it).

The fitted model is saved as a checkpoint with ``metadata["ranking"]`` holding the fusion and how it was fitted.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from grounding.errors import InputError
from grounding.inference import Grounder
from grounding.model import GroundingModel
from grounding.model.config import VIDEO_EMBEDDING_POOLINGS
from grounding.model.losses import hn_nce_loss
from grounding.ranking.build import VideoSource, encode_videos
from grounding.ranking.scoring import RANKING_KEY, EncodedQueries, encode_queries, pooled_scores

RETRIEVAL_HEADS = ("video_projection", "query_projection", "query_pool")
FUSION_RIDGE = 1e-6  # L2 on the two fusion weights (a tie-breaker: 24^2 * 1e-6 is 0.1 % of a typical loss)


@dataclass
class RankerFitSettings:
    """How :func:`fit_ranker` trains and fits.

    Attributes:
        alpha, beta: HN-NCE's (see :func:`grounding.model.losses.hn_nce_loss`); ``1, 0`` is InfoNCE.
        temperature: the contrastive softmax's temperature on cosine similarities.
        epochs, batch_size, learning_rate, weight_decay: the heads' AdamW training (batch = sentences);
            ``epochs=0`` keeps the heads as they are and refits only the fusion and the calibration.
        calibration_fraction: share of the training videos whose sentences fit the fusion instead.
        rerank: stage-2 depth M the fusion is fitted at.
        pooling, pooling_temperature: how span scores become a video score (default: the checkpoint's).
        multi_positive: every video a sentence is true of is a positive (else only its own video, the others
            neither positive nor negative).
        video_pooling: the video embedding's pooling (``mean`` or ``mean-max``, the default; see
            ``GroundingConfig.video_embedding_pooling``); None keeps the checkpoint's.
        video_features: also pool the input clip features into the video embedding (True, the default; see
            ``GroundingConfig.video_embedding_features``); None keeps the checkpoint's. A change of either gives the
            model a new, freshly initialised video projection (the heads are trained anyway) and, with features,
            a standardisation of the pooled vector fitted on the candidate videos.
        embedding_dropout: share of the pooled video vector dropped in each training step (0.5).
        seed: seeds the split, the initial order, the batches and the dropout.

    The defaults are the best variant measured in docs/ranking.md (InfoNCE, multi-positive, mean-max, input
    features pooled too, dropout 0.5).
    """

    alpha: float = 1.0
    beta: float = 0.0
    temperature: float = 0.05
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    calibration_fraction: float = 0.1
    rerank: int = 20
    pooling: str | None = None
    pooling_temperature: float | None = None
    multi_positive: bool = True
    video_pooling: str | None = "mean-max"
    video_features: bool | None = True
    embedding_dropout: float = 0.5
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.alpha <= 1:
            raise InputError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.beta < 0:
            raise InputError(f"beta must be >= 0, got {self.beta}")
        if not self.temperature > 0:
            raise InputError(f"temperature must be > 0, got {self.temperature}")
        if self.epochs < 0:
            raise InputError(f"epochs must be >= 0, got {self.epochs}")
        for name in ("batch_size", "rerank"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.embedding_dropout < 1:
            raise InputError(f"embedding dropout must be in [0, 1), got {self.embedding_dropout}")
        if not 0 < self.calibration_fraction < 1:
            raise InputError(f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}")
        if self.video_pooling not in (None, *VIDEO_EMBEDDING_POOLINGS):
            raise InputError(f"video pooling must be one of {', '.join(VIDEO_EMBEDDING_POOLINGS)}, got {self.video_pooling!r}")


@dataclass
class RankerFitReport:
    """What :func:`fit_ranker` did and measured (all figures on the held-out calibration sentences).

    Attributes:
        fusion: ``{"stage1_weight": a, "stage2_weight": b}`` of the reranked score.
        settings: the settings used (pooling resolved).
        videos, train_queries, calibration_queries: counts.
        epoch_losses: the heads' mean loss per epoch.
        calibration: VR@1 / VR@10 (in %) of stage 1 alone, of stage 2's pooled score alone, and of the fusion,
            over the calibration sentences (VR@10 of stage 2 counts within the top M).
        seconds: wall time.
    """

    fusion: dict[str, float]
    settings: dict[str, Any]
    videos: int
    train_queries: int
    calibration_queries: int
    epoch_losses: list[float] = field(default_factory=list)
    calibration: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def positives_matrix(
    sentences_videos: Sequence[tuple[int, str]], video_ids: Sequence[str], relevant: Mapping[int, Sequence[str]] | None
) -> tuple[Tensor, Tensor]:
    """Which candidate videos each query is true of.

    Args:
        sentences_videos: per query, ``(qid, own video id)``; the own video must be a candidate.
        video_ids: the N candidate videos.
        relevant: qid -> every video the query is true of (multi-positive truth), or None (own video only).

    Returns:
        ``(positives, own)``: (Q, N) bool, and (Q,) int64 the own video's column.
    """
    column = {video_id: position for position, video_id in enumerate(video_ids)}
    positives = torch.zeros(len(sentences_videos), len(video_ids), dtype=torch.bool)
    own = torch.empty(len(sentences_videos), dtype=torch.long)
    for row, (qid, video_id) in enumerate(sentences_videos):
        if video_id not in column:
            raise InputError(f"query {qid}: its video '{video_id}' is not among the encoded videos")
        own[row] = column[video_id]
        positives[row, own[row]] = True
        for other in (relevant or {}).get(qid, ()):
            if other in column:
                positives[row, column[other]] = True
    return positives, own


def set_video_embedding(model: GroundingModel, pooling: str | None, features: bool | None, seed: int = 0) -> bool:
    """Give ``model`` the video-embedding ``pooling`` and ``features`` (None: keep the model's) in place: its config,
    and new seeded retrieval heads of the right width when either changes (the video projection and, with features,
    an identity standardisation of the pooled vector; nothing else is touched). Returns whether it changed."""
    import dataclasses

    from grounding.model.retrieval import retrieval_heads

    pooling = model.config.video_embedding_pooling if pooling is None else pooling
    features = model.config.video_embedding_features if features is None else features
    if (pooling, features) == (model.config.video_embedding_pooling, model.config.video_embedding_features):
        return False
    model.config = dataclasses.replace(model.config, video_embedding_pooling=pooling, video_embedding_features=features)
    device, dtype = model.video_projection.weight.device, model.video_projection.weight.dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = retrieval_heads(model.config)
    model.video_projection = heads["video_projection"].to(device, dtype)
    if "video_embedding_standardizer" in heads:
        model.video_embedding_standardizer = heads["video_embedding_standardizer"].to(device)
    elif hasattr(model, "video_embedding_standardizer"):
        del model.video_embedding_standardizer
    return True


def _describe(pooling: str, features: bool) -> str:
    return f"{pooling} of the clip states" + (" and the input features" if features else "")


def _subset(queries: EncodedQueries, rows: Tensor) -> EncodedQueries:
    return EncodedQueries([queries.sentences[i] for i in rows.tolist()], queries.word_states[rows],
                          queries.word_mask[rows], queries.embeddings[rows])


def train_retrieval_heads(
    model: GroundingModel,
    pooled: Tensor,
    queries: EncodedQueries,
    positives: Tensor,
    own: Tensor,
    settings: RankerFitSettings,
    progress: bool = True,
) -> list[float]:
    """Train :data:`RETRIEVAL_HEADS` in place (everything else stays frozen); returns the mean loss per epoch.

    Args:
        pooled: (N, P) the candidate videos' :meth:`~grounding.model.GroundingModel.pool_video` vectors.
        queries: Q encoded training sentences.
        positives: (Q, N) bool, True where the query is true of the video (never a negative).
        own: (Q,) int64, each query's own video (its positive).
    """
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # the dropout's masks
    heads = [getattr(model, name) for name in RETRIEVAL_HEADS]
    requires_grad_before = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parameters = [parameter for head in heads for parameter in head.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    losses: list[float] = []
    steps = settings.epochs * math.ceil(len(own) / settings.batch_size)
    bar = tqdm(total=steps, desc="fit heads", unit="step", disable=not progress, file=sys.stderr)
    model.eval()  # no dropout: the heads see the states the index will store
    try:
        for _ in range(settings.epochs):
            order = torch.randperm(len(own), generator=generator)
            total, count = 0.0, 0
            for first in range(0, len(order), settings.batch_size):
                rows = order[first : first + settings.batch_size]
                videos = model.project_video(pooled, settings.embedding_dropout)  # (N, H): embed_video's, with dropout
                query = model.embed_query(queries.word_states[rows], queries.word_mask[rows])  # (B, H)
                logits = query @ videos.T / settings.temperature
                positive = positives[rows] if settings.multi_positive else own[rows]
                loss = hn_nce_loss(logits, positive, ~positives[rows], settings.alpha, settings.beta)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
                count += len(rows)
                bar.update(1)
            losses.append(total / max(count, 1))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        bar.close()
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(requires_grad_before[name])
    return losses


def _hits_at(scores: Tensor, positives: Tensor, k: int) -> float:
    """% of rows whose top k columns (by score, ties by column) hold a positive."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    return round(100.0 * float(torch.gather(positives, 1, order).any(dim=1).float().mean()), 2)


@torch.no_grad()
def fit_fusion(
    model: GroundingModel,
    clip_states: Tensor,
    video_vectors: Tensor,
    queries: EncodedQueries,
    positives: Tensor,
    rerank: int,
    pooling: str,
    pooling_temperature: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Fit ``(a, b)`` of ``a * cosine + b * pooled`` over each query's stage-1 top ``rerank`` (see the module doc),
    then the per-video calibration ``P(the video is a true one) = sigmoid(scale * fused + bias)`` by the binary
    log-loss over the same (query, candidate) pairs (Platt scaling; it keeps the order of ``fused``).

    ``clip_states`` (N, T, H) feed stage 2 and ``video_vectors`` (N, P), the videos' ``pool_video``, stage 1.

    Returns:
        ``(fusion, figures)``: ``stage1_weight``, ``stage2_weight``, ``probability_scale``, ``probability_bias`` (the
        last two left out when every held-out candidate is right, or every one wrong); and VR@1 / VR@10 (in %) of
        stage 1, stage 2 alone and the fusion.
    """
    videos = model.project_video(video_vectors)  # = model.embed_video of each video
    query = model.embed_query(queries.word_states, queries.word_mask)
    cosine = query @ videos.T  # (Q, N)
    depth = min(rerank, cosine.shape[1])
    top = torch.argsort(cosine, dim=1, descending=True, stable=True)[:, :depth]  # (Q, M)
    pooled = pooled_scores(
        model, clip_states, queries, torch.arange(len(queries)).repeat_interleave(depth), pooling, pooling_temperature,
        video_index=top.reshape(-1),
    ).view(len(queries), depth).double()
    stage1 = torch.gather(cosine, 1, top).double()
    right = torch.gather(positives, 1, top)
    usable = right.any(dim=1)
    figures = {
        "stage1_vr1": _hits_at(cosine, positives, 1), "stage1_vr10": _hits_at(cosine, positives, 10),
        "stage2_vr1": _hits_at(pooled, right, 1), "stage1_recall_at_rerank": round(100.0 * float(usable.float().mean()), 2),
    }
    a, b = 1.0, 0.0  # stage 1's order
    if bool(usable.any()):
        def listwise_loss(weights: Tensor) -> Tensor:
            fused = weights[0] * stage1[usable] + weights[1] * pooled[usable]
            return (torch.logsumexp(fused, dim=1) - torch.logsumexp(fused.masked_fill(~right[usable], -math.inf), dim=1)).mean()

        a, b = _fit_pair(listwise_loss, "the fusion fit")
    fused = a * stage1 + b * pooled
    figures["fused_vr1"] = _hits_at(fused, right, 1)
    figures["fused_vr10"] = _hits_at(fused, right, 10)
    fusion = {"stage1_weight": a, "stage2_weight": b}
    platt = _platt(fused.reshape(-1), right.reshape(-1).double())
    if platt is None:
        print("not calibrating the probability: the held-out candidates are all right or all wrong (the ranker "
              "will report a softmax over the reranked videos); use more --calibration-fraction or --rerank",
              file=sys.stderr)
    else:
        fusion["probability_scale"], fusion["probability_bias"] = platt
    return fusion, figures


def _platt(scores: Tensor, labels: Tensor) -> tuple[float, float] | None:
    """``(scale, bias)`` minimising the binary log-loss of ``sigmoid(scale * score + bias)`` against 0/1 labels;
    None when the labels are all the same (nothing to calibrate against)."""
    if len(scores) == 0 or labels.min() == labels.max():
        return None
    return _fit_pair(
        lambda parameters: F.binary_cross_entropy_with_logits(parameters[0] * scores + parameters[1], labels),
        "the calibration fit",
    )


def _fit_pair(loss_of: Callable[[Tensor], Tensor], what: str) -> tuple[float, float]:
    """Minimise ``loss_of(p) + FUSION_RIDGE * |p|^2`` over two float64 parameters from ``(1, 0)`` with L-BFGS."""
    parameters = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        optimizer = torch.optim.LBFGS([parameters], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = loss_of(parameters) + FUSION_RIDGE * parameters.square().sum()  # finite when the data separate
            loss.backward()
            return loss

        optimizer.step(closure)
    first, second = (float(value) for value in parameters.detach())
    if not (math.isfinite(first) and math.isfinite(second)):
        raise InputError(f"{what} diverged; use more calibration sentences (--calibration-fraction)")
    return first, second


def split_by_video(video_of_query: Sequence[str], fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train rows, calibration rows) of the queries: the calibration ones are all sentences of a seeded
    ``fraction`` of the videos (at least one video, and at least one left for training)."""
    distinct = list(dict.fromkeys(video_of_query))
    if len(distinct) < 2:
        raise InputError("fitting a ranker needs training sentences on at least 2 videos")
    count = min(max(1, round(fraction * len(distinct))), len(distinct) - 1)
    chosen = {distinct[i] for i in np.random.default_rng(seed).permutation(len(distinct))[:count].tolist()}
    calibration = torch.tensor([i for i, video in enumerate(video_of_query) if video in chosen], dtype=torch.long)
    train = torch.tensor([i for i, video in enumerate(video_of_query) if video not in chosen], dtype=torch.long)
    return train, calibration


def fit_ranker(
    grounder: Grounder,
    source: VideoSource,
    queries: Sequence[tuple[int, str, str]],
    relevant: Mapping[int, Sequence[str]] | None,
    settings: RankerFitSettings | None = None,
    progress: bool = True,
) -> RankerFitReport:
    """Train the retrieval heads of ``grounder.model`` in place and fit the fusion (see the module doc).

    Args:
        grounder: the checkpoint (its model is changed in place: the heads only).
        source: the candidate videos (normally every training video).
        queries: ``(qid, video id, sentence)`` of the training sentences.
        relevant: qid -> every video the query is true of, or None.
        settings: defaults :class:`RankerFitSettings`.
    """
    began = time.perf_counter()
    settings = settings or RankerFitSettings()
    settings.check()
    loss = grounder.model.config.loss
    pooling = settings.pooling or loss.ranking_pooling
    pooling_temperature = settings.pooling_temperature or loss.ranking_pooling_temperature
    model = grounder.model.eval()
    before = (model.config.video_embedding_pooling, model.config.video_embedding_features)
    wanted = (settings.video_pooling or before[0], before[1] if settings.video_features is None else settings.video_features)
    if wanted != before and settings.epochs == 0:
        raise InputError(
            f"the checkpoint's video embedding is {_describe(*before)}; a change to {_describe(*wanted)} needs new "
            "heads trained (epochs >= 1), or keep the checkpoint's (--video-pooling, --video-features)"
        )
    new_heads = set_video_embedding(model, *wanted, seed=settings.seed)
    video_ids, _, states, pooled = encode_videos(grounder, source, progress=progress)
    if not video_ids:
        raise InputError("no video could be encoded; check --features and --annotations")
    clip_states = torch.cat(states).float().cpu()
    video_vectors = torch.cat(pooled).float().cpu()
    if new_heads and model.config.video_embedding_features:
        model.video_embedding_standardizer.fit(video_vectors, "the candidate videos' pooled vectors")
    encoded_videos = set(video_ids)
    kept = [(qid, video, sentence) for qid, video, sentence in queries if video in encoded_videos]
    if not kept:
        raise InputError("no training sentence is about an encoded video; check that --annotations matches --features")
    positives, own = positives_matrix([(qid, video) for qid, video, _ in kept], video_ids, relevant)
    encoded = encode_queries(model, grounder.text_encoder, [sentence for _, _, sentence in kept])
    encoded = EncodedQueries(encoded.sentences, encoded.word_states.cpu(), encoded.word_mask.cpu(), encoded.embeddings.cpu())
    train_rows, calibration_rows = split_by_video([video for _, video, _ in kept], settings.calibration_fraction, settings.seed)
    model.cpu()
    losses = train_retrieval_heads(
        model, video_vectors, _subset(encoded, train_rows), positives[train_rows], own[train_rows], settings, progress
    )
    fusion, figures = fit_fusion(
        model, clip_states, video_vectors, _subset(encoded, calibration_rows), positives[calibration_rows], settings.rerank, pooling,
        pooling_temperature,
    )
    model.to(grounder.device)
    resolved = {**asdict(settings), "pooling": pooling, "pooling_temperature": pooling_temperature}
    return RankerFitReport(
        fusion=fusion, settings=resolved, videos=len(video_ids), train_queries=len(train_rows),
        calibration_queries=len(calibration_rows), epoch_losses=[round(value, 5) for value in losses],
        calibration=figures, seconds=round(time.perf_counter() - began, 2),
    )


def save_fitted(model: GroundingModel, directory: Any, report: RankerFitReport, source_checkpoint: str) -> None:
    """Save the fitted model as a checkpoint: the original metadata plus ``metadata["ranking"]`` (the fusion, the
    settings, the calibration figures and the checkpoint it was fitted from)."""
    metadata = dict(model.pretrained_metadata)
    metadata[RANKING_KEY] = {**report.to_json(), "fitted_from": source_checkpoint}
    model.save_pretrained(directory, metadata)
    model.pretrained_metadata = metadata
