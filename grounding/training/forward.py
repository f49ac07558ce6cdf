"""The training step's forward pass: the model's output as a dict (for DDP), and the negative pairs of the
ranking term."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from grounding.model import GroundingModel, LossConfig
from grounding.model.losses import negative_video_index
from grounding.training.data import GroundingBatch


class TrainingForward(nn.Module):
    """The model with its :class:`GroundingOutput` returned as a dict of its fields.

    DistributedDataParallel finds the output's tensors (to know which parameters will get a gradient, and to
    hook the end of backward) only inside tuples, lists and dicts; inside a dataclass it sees none and never
    all-reduces the gradients, so each process would step on its own share of the batch. The negative pairs of
    the ranking term go through the same call, so DDP sees their gradients too. With ``detach_embeddings``
    (``loss.contrastive_detach``) the retrieval embeddings are computed from detached encoder states.
    """

    def __init__(self, model: GroundingModel, detach_embeddings: bool = False) -> None:
        super().__init__()
        self.model = model
        self.detach_embeddings = detach_embeddings

    def forward(
        self, clip_feats: Tensor, clip_mask: Tensor, word_feats: Tensor, word_mask: Tensor, word_edge_index: Tensor,
        negative_index: Tensor | None = None,
    ) -> dict[str, Any]:
        """The model's output fields (the same numbers as ``model(...)``); with ``negative_index`` (B, n), also each
        query scored on those videos of the batch, reusing the batch's encodings: fields prefixed ``negative_``,
        row ``k * B + i`` = query i with video ``negative_index[i, k]``."""
        model = self.model
        model.check_inputs(clip_feats, clip_mask, word_feats, word_mask, word_edge_index)
        clip_states = model.encode_clips(clip_feats, clip_mask)
        word_states = model.encode_query(word_feats, word_mask, word_edge_index)
        output = model.score_encoded(clip_states, clip_mask, word_states, word_mask)
        fields = {item.name: getattr(output, item.name) for item in dataclasses.fields(output)}
        if self.detach_embeddings:  # the embedding term then trains the embedding heads only
            fields["video_embedding"] = model.embed_video(clip_states.detach(), clip_mask, clip_feats)
            fields["query_embedding"] = model.embed_query(word_states.detach(), word_mask)
        elif model.config.video_embedding_features:  # score_encoded cannot pool features it never sees
            fields["video_embedding"] = model.embed_video(clip_states, clip_mask, clip_feats)
        if negative_index is not None and negative_index.numel():
            videos = negative_index.T.reshape(-1)  # k-major
            queries = torch.arange(clip_feats.shape[0], device=videos.device).repeat(negative_index.shape[1])
            negative = model.score_encoded(clip_states[videos], clip_mask[videos], word_states[queries], word_mask[queries])
            fields.update({f"negative_{item.name}": getattr(negative, item.name) for item in dataclasses.fields(negative)})
        return fields


def negative_pairs(
    batch: GroundingBatch, loss: LossConfig, relevant: Mapping[int, frozenset[str]] | None, device: torch.device
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """What the contrastive terms may treat as negatives in one batch.

    Args:
        batch: the training batch (its ``qids`` and ``video_ids``).
        loss: the loss settings (``ranking_weight``, ``ranking_negatives``, ``contrastive_weight``).
        relevant: qid -> every video the query is true of (multi-positive truth), or None.
        device: where the index goes.

    Returns:
        ``(negative_index, valid, false_negatives)``: the (B, n) videos each query is scored on (on ``device``;
        None when ``loss.ranking_weight`` is 0), (B, n) bool False where that video is the query's own or one it is
        true of, and (B, B) bool True where query i is known to be true of video j (None without ``relevant``).
    """
    false_negatives = None
    if relevant is not None and (loss.contrastive_weight > 0 or loss.ranking_weight > 0):
        false_negatives = torch.tensor(
            [[video in relevant.get(qid, ()) for video in batch.video_ids] for qid in batch.qids], dtype=torch.bool
        )
    if loss.ranking_weight <= 0:
        return None, None, false_negatives
    index = negative_video_index(len(batch), loss.ranking_negatives)
    codes = {name: code for code, name in enumerate(dict.fromkeys(batch.video_ids))}
    ids = torch.tensor([codes[name] for name in batch.video_ids])
    valid = ids[index] != ids[:, None]
    if false_negatives is not None:
        valid &= ~torch.gather(false_negatives, 1, index)
    return index.to(device), valid, false_negatives
