"""From a video file (or clip features) and sentences to spans in seconds: :class:`Grounder`, the predictor.

Three lines::

    from grounding import Grounder

    grounder = Grounder.from_pretrained("runs/rendered-world")        # a run folder (its best/ or last/) or a checkpoint
    spans = grounder.ground("video.mp4", "the red circle spins")      # [Span(start, end, score), ...] best first

A :class:`Grounder` holds a :class:`~grounding.model.GroundingModel` plus what its checkpoint says turns inputs
into model inputs (:class:`~grounding.inference.pipeline.PipelineInfo`: the text encoder, the extraction
settings of the clip features, span decoding). A video file is decoded and featurised in memory exactly as
``grounding extract`` does it (same decoder, backbone and clip plan: :func:`grounding.video.extract_clip_features`),
then resampled to the model's ``num_clips`` as in training. The clip states are computed once per
:class:`EncodedVideo`, so many queries share them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from grounding.data.features import validate_clip_feats
from grounding.data.resample import resample_clips
from grounding.errors import InputError
from grounding.inference.pipeline import PipelineInfo
from grounding.model import GroundingModel, GroundingOutput, Span, candidate_windows, decode_spans
from grounding.model.pretrained import find_checkpoint


@dataclass
class EncodedVideo:
    """A video ready for any number of queries.

    Attributes:
        clip_feats: (T, D) float32 clip features resampled to the model's ``num_clips``.
        clip_mask: (T,) bool, True = real clip.
        duration: the video's length in seconds.
        video_id: a name for messages and outputs.
        clip_states: (T, H) the model's query-independent clip states (filled on first use).
    """

    clip_feats: Tensor
    clip_mask: Tensor
    duration: float
    video_id: str = ""
    clip_states: Tensor | None = None


@dataclass
class GroundingResult:
    """Everything one :meth:`Grounder.predict` call computed, for printing and plotting.

    Attributes:
        video: the :class:`EncodedVideo`.
        queries: the Q sentences.
        spans: per query, its top spans ``Span(start, end, score)`` in seconds, best first, after NMS.
        output: the model's :class:`GroundingOutput` for the Q (video, query) pairs.
        candidate_windows: (M, 2) float64 every candidate's ``(start, end)`` in seconds.
    """

    video: EncodedVideo
    queries: list[str]
    spans: list[list[Span]]
    output: GroundingOutput
    candidate_windows: np.ndarray


class Grounder:
    """A trained model with its text encoder and (lazily) its frame backbone: files and sentences in, spans out.

    Args:
        model: a :class:`GroundingModel`.
        pipeline: what turns inputs into model inputs; default: the one saved with the model's checkpoint
            (``model.pretrained_metadata``).
        device: where to compute; default: the model's device.

    Example::

        grounder = Grounder.from_pretrained("runs/charades")
        video = grounder.encode_video("video.mp4")               # decode + backbone + clip states, once
        for query in ("a person opens the door", "a person sits down"):
            print(grounder.ground(video, query)[0])              # Span(start, end, score), seconds
    """

    def __init__(
        self, model: GroundingModel, pipeline: PipelineInfo | None = None, device: str | torch.device | None = None
    ) -> None:
        self.model = model.eval()
        self.pipeline = pipeline if pipeline is not None else PipelineInfo.from_metadata(model.pretrained_metadata)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self._text_encoder: Any = None
        self._backbone: Any = None

    def __repr__(self) -> str:
        config = self.model.config
        return (
            f"Grounder(num_clips={config.num_clips}, input_dim={config.input_dim}, "
            f"text_encoder={self.pipeline.text_encoder!r}, backbone={self.pipeline.extraction.backbone!r}, "
            f"device={self.device})"
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Grounder:
        """Load a checkpoint folder (a ``grounding train`` run folder picks its ``best``, else ``last``).

        Raises:
            InputError: no checkpoint there, or unreadable files.
            ConfigError: weights that do not match their config.
        """
        folder = find_checkpoint(path)
        return cls(GroundingModel.from_pretrained(folder, map_location=device), device=device)

    # ---- encoders ----
    @property
    def text_encoder(self) -> Any:
        if self._text_encoder is None:
            from grounding.text.encoders import create_text_encoder

            pipeline = self.pipeline
            encoder = create_text_encoder(pipeline.text_encoder, max_words=pipeline.max_words, syntax=pipeline.syntax)
            if encoder.dim != self.model.config.text.input_dim:
                raise InputError(
                    f"text encoder '{self.pipeline.text_encoder}' gives {encoder.dim}-d word features, but the model "
                    f"expects text.input_dim={self.model.config.text.input_dim}; the checkpoint's pipeline does not "
                    "match it"
                )
            self._text_encoder = encoder.to(self.device)
        return self._text_encoder

    def _require_backbone(self, what: str) -> None:
        if self.pipeline.extraction.backbone is None:
            raise InputError(
                f"{what}: this checkpoint records no frame backbone (its features file had no 'backbone' attribute "
                "and data.extraction.backbone was not set), so it cannot extract features from a video; pass clip "
                "features instead (grounding ground --features FILE --video-id ID)"
            )

    def encode_features(self, clip_feats: Any, duration: float, video_id: str = "") -> EncodedVideo:
        """Wrap precomputed clip features.

        Args:
            clip_feats: (T, D) array-like, T >= 1, D = the model's ``input_dim``; resampled to ``num_clips``.
            duration: the video's length in seconds (> 0).
            video_id: a name for messages.

        Raises:
            InputError: wrong shape or width, NaN/inf, or a duration that is not > 0.
        """
        where = f"video '{video_id}'" if video_id else "clip_feats"
        feats = validate_clip_feats(
            clip_feats.detach().cpu().numpy() if isinstance(clip_feats, Tensor) else clip_feats, where,
            expected_dim=self.model.config.input_dim, dim_source="the model's input_dim",
        )
        if not isinstance(duration, (int, float)) or not np.isfinite(duration) or duration <= 0:
            raise InputError(f"{where}: duration must be seconds > 0, got {duration!r}")
        resampled, mask = resample_clips(feats, self.model.config.num_clips)
        return EncodedVideo(torch.from_numpy(resampled), torch.from_numpy(mask), float(duration), video_id)

    def encode_video(self, video: str | os.PathLike[str]) -> EncodedVideo:
        """Decode a video file and extract its clip features in memory, as ``grounding extract`` would with the
        checkpoint's backbone and extraction settings (the same features, to float32 rounding).

        Raises:
            InputError: the checkpoint has no backbone, or the video cannot be decoded (with the reason).
        """
        from grounding.video import create_backbone, extract_clip_features, video_id_for

        path = Path(video)
        self._require_backbone(str(path))
        if not path.is_file():
            raise InputError(f"{path}: no such video file; check the path")
        settings = self.pipeline.extraction
        if self._backbone is None:
            self._backbone = create_backbone(settings.backbone, device=self.device)
        features = extract_clip_features(path, settings, backbone=self._backbone, device=str(self.device))
        return self.encode_features(features.clip_feats, features.duration, video_id_for(path))

    def _as_encoded(self, video: Any) -> EncodedVideo:
        if isinstance(video, EncodedVideo):
            return video
        if isinstance(video, (str, os.PathLike)):
            return self.encode_video(video)
        raise InputError(
            "video must be a file path or an EncodedVideo (from encode_video / encode_features), got "
            f"{type(video).__name__}"
        )

    # ---- prediction ----
    @torch.no_grad()
    def predict(
        self,
        video: Any,
        queries: Sequence[str],
        top_k: int | None = None,
        nms_threshold: float | None | str = "default",
    ) -> GroundingResult:
        """Score every candidate span of ``video`` for each query and keep the top ones.

        Args:
            video: a video file path or an :class:`EncodedVideo`.
            queries: Q sentences.
            top_k: spans per query (default: the checkpoint's, 5).
            nms_threshold: NMS IoU threshold; ``"default"`` = the checkpoint's (train.nms); None = no NMS.

        Returns:
            :class:`GroundingResult`.
        """
        encoded = self._as_encoded(video)
        if isinstance(queries, str):
            queries = [queries]
        queries = list(queries)
        top_k = self.pipeline.top_k if top_k is None else top_k
        nms = self.pipeline.nms if nms_threshold == "default" else nms_threshold
        model = self.model
        clip_mask = encoded.clip_mask.to(self.device)[None]  # (1, T)
        if encoded.clip_states is None:
            encoded.clip_states = model.encode_clips(encoded.clip_feats.to(self.device)[None], clip_mask)[0]
        text = self.text_encoder.encode(queries, device=self.device)
        word_states = model.encode_query(text.word_feats, text.word_mask, text.edge_index)  # (Q, L, H)
        num_queries = len(queries)
        clip_states = encoded.clip_states.to(self.device)[None].expand(num_queries, -1, -1)  # (Q, T, H)
        output = model.score_encoded(clip_states, clip_mask.expand(num_queries, -1), word_states, text.word_mask)
        durations = torch.full((num_queries,), encoded.duration, dtype=torch.float64)
        spans = decode_spans(output, durations, top_k=top_k, nms_threshold=nms)
        windows = candidate_windows(output.candidates, output.clip_mask[:1], durations[:1].to(output.clip_mask.device))
        return GroundingResult(encoded, queries, spans, output, windows[0].cpu().numpy())

    def ground(
        self,
        video: Any,
        query: str | Sequence[str],
        top_k: int | None = None,
        nms_threshold: float | None | str = "default",
    ) -> list[Span] | list[list[Span]]:
        """The best spans for one query (a list of :class:`Span`) or for each of several (a list of lists).

        Spans are ``(start, end, score)`` in seconds within ``[0, duration]``, best first, after NMS.
        """
        result = self.predict(video, [query] if isinstance(query, str) else query, top_k, nms_threshold)
        return result.spans[0] if isinstance(query, str) else result.spans


def time_profile(result: GroundingResult, query_index: int, num_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """For plotting: at each time t, the best score of a candidate span covering t.

    Returns:
        ``(times, scores)``: (num_points,) seconds over ``[0, duration]`` and (num_points,) scores in [0, 1].
    """
    windows = result.candidate_windows  # (M, 2)
    scores = result.output.span_scores[query_index].float().cpu().numpy()  # (M,)
    valid = result.output.candidate_mask[query_index].cpu().numpy()
    times = np.linspace(0.0, result.video.duration, num_points)
    covers = (windows[None, :, 0] <= times[:, None]) & (times[:, None] <= windows[None, :, 1]) & valid[None]
    return times, np.where(covers, scores[None, :], 0.0).max(axis=1)


def score_map(result: GroundingResult, query_index: int) -> np.ndarray:
    """For plotting: the sparse candidates scattered into a (T, T) image, rows = start clip, columns = end clip,
    NaN where there is no candidate."""
    num_clips = result.output.clip_mask.shape[1]
    image = np.full((num_clips, num_clips), np.nan)
    candidates = result.output.candidates.cpu().numpy()
    valid = result.output.candidate_mask[query_index].cpu().numpy()
    scores = result.output.span_scores[query_index].float().cpu().numpy()
    image[candidates[valid, 0], candidates[valid, 1]] = scores[valid]
    return image
